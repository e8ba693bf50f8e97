"""One extreme training value must not disable a detector: every statistic that sets a
threshold or weighs a score is robust, and a training row with a value beyond
``TRAINING_CLIP`` is left out of training."""

import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from aedetect import AAEDetector, AEDetector, VAEDetector

CASES = [(AEDetector, "reconstruction"), (AEDetector, "latent"), (AEDetector, "combined"),
         (VAEDetector, "elbo"), (VAEDetector, "latent"), (AAEDetector, "combined"),
         (AAEDetector, "reconstruction"), (AAEDetector, "latent")]


def _data(rng, weights, n, shift=0.0):
    return np.tanh(rng.normal(size=(n, 3)) @ weights) + 0.05 * rng.normal(size=(n, 8)) + shift


@pytest.fixture(scope="module")
def problem():
    rng = np.random.RandomState(0)
    weights = rng.normal(size=(3, 8))
    X = _data(rng, weights, 400)
    X_test = np.vstack([_data(rng, weights, 200), _data(rng, weights, 50, shift=1.5)])
    return X, X_test, np.r_[np.zeros(200), np.ones(50)]


def _auc(cls, score_type, X, X_test, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "training row cannot be scored"
        detector = cls(score_type=score_type, max_iter=60, random_state=0).fit(X)
    assert np.isfinite(detector.offset_)
    return roc_auc_score(y, -detector.score_samples(X_test))


@pytest.mark.parametrize("cls, score_type", CASES)
def test_one_extreme_training_cell_keeps_the_detector_working(problem, cls, score_type):
    X, X_test, y = problem
    clean = _auc(cls, score_type, X, X_test, y)
    for value in (1e6, 1e20):
        planted = X.copy()
        planted[17, 3] = value
        assert _auc(cls, score_type, planted, X_test, y) >= clean - 0.02, value
