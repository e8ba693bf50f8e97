"""scikit-learn's own estimator checks over every public detector, with no expected failures."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from conftest import DETECTORS


def test_every_public_detector_is_discovered():
    names = {cls.__name__ for cls in DETECTORS}
    assert "AEDetector" in names


@parametrize_with_checks([cls(max_iter=5) for cls in DETECTORS])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
