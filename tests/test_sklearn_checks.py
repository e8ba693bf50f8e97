"""scikit-learn's own estimator checks over every public detector, with no expected failures."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from aedetect import AEDetector, EnsembleDetector, VAEDetector
from conftest import DETECTORS


def test_every_public_estimator_is_checked():
    """Every estimator class aedetect exports is in the check suite below."""
    import inspect

    from sklearn.base import BaseEstimator

    import aedetect

    exported = {name for name in aedetect.__all__
                if inspect.isclass(getattr(aedetect, name))
                and issubclass(getattr(aedetect, name), BaseEstimator)}
    assert exported == {cls.__name__ for cls in DETECTORS} | {"EnsembleDetector"}
    assert exported >= {"AEDetector", "VAEDetector", "AAEDetector"}


@parametrize_with_checks([cls(max_iter=5) for cls in DETECTORS] + [EnsembleDetector(
    [("ae", AEDetector(max_iter=5)), ("vae", VAEDetector(max_iter=5))])])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
