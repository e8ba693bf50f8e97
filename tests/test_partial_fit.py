"""``partial_fit``: one epoch per chunk, continuing weights and optimizer state."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from aedetect import AAEDetector, AEDetector, VAEDetector


def _problem(seed=0, n=2000):
    rng = np.random.RandomState(seed)
    weights = rng.normal(size=(3, 10))

    def rows(m, shift=0.0):
        return (np.tanh(rng.normal(size=(m, 3)) @ weights) + 0.05 * rng.normal(size=(m, 10))
                + shift)

    X_test = np.vstack([rows(400), rows(100, shift=1.0)])
    return rows(n), X_test, np.r_[np.zeros(400), np.ones(100)]


@pytest.mark.parametrize("cls", [AEDetector, VAEDetector, AAEDetector])
def test_chunks_train_like_a_fit(cls):
    X, X_test, y = _problem()
    detector = cls(random_state=0)
    for epoch in range(8):
        for chunk in np.array_split(X, 4):
            detector.partial_fit(chunk)
    assert detector.n_iter_ == 32 and [r["epoch"] for r in detector.history_] == list(
        range(1, 33))
    assert detector.loss_curve_[-1] < detector.loss_curve_[0]
    streamed = roc_auc_score(y, -detector.score_samples(X_test))
    fitted = roc_auc_score(y, -cls(max_iter=8, random_state=0).fit(X).score_samples(X_test))
    assert streamed > 0.9 and streamed > fitted - 0.05
    assert np.isfinite(detector.offset_) and detector.predict(X_test).shape == (500,)


def test_the_optimizer_state_carries_over():
    X, _, _ = _problem(n=400)
    detector = AEDetector(random_state=0).partial_fit(X)
    optimizer = detector._optimizers_["main"]
    steps = [state["step"] for state in optimizer.state.values()]
    detector.partial_fit(X)
    after = [state["step"] for state in detector._optimizers_["main"].state.values()]
    assert all(float(b) == 2 * float(a) for a, b in zip(steps, after))
    # the optimizer updates the detector's own weights
    first = next(iter(detector._optimizers_["main"].param_groups[0]["params"]))
    assert any(first is p for p in detector.module_.parameters())


def test_scaling_comes_from_the_first_chunk():
    X, _, _ = _problem(n=600)
    detector = AEDetector(random_state=0).partial_fit(X[:300])
    center = detector.center_.copy()
    detector.partial_fit(X[300:] * 10)
    np.testing.assert_array_equal(detector.center_, center)


def test_partial_fit_after_fit_continues_the_weights():
    X, _, _ = _problem(n=400)
    detector = AEDetector(max_iter=3, random_state=0).fit(X)
    before = {k: v.clone() for k, v in detector.module_.state_dict().items()}
    detector.partial_fit(X)
    assert detector.n_iter_ == 4
    changed = [not torch.equal(before[k], v) for k, v in detector.module_.state_dict().items()]
    assert any(changed)
    # a full fit starts again and forgets the optimizer
    detector.fit(X)
    assert detector.n_iter_ == 3 and not hasattr(detector, "_optimizers_")


def test_partial_fit_is_reproducible():
    X, X_test, _ = _problem(n=600)

    def run():
        detector = AEDetector(random_state=3)
        for chunk in np.array_split(X, 3):
            detector.partial_fit(chunk)
        return detector.score_samples(X_test)

    np.testing.assert_array_equal(run(), run())


def test_a_failed_partial_fit_changes_nothing():
    X, X_test, _ = _problem(n=400)
    detector = AEDetector(random_state=0).partial_fit(X)
    scores, n_iter = detector.score_samples(X_test), detector.n_iter_
    with pytest.raises(ValueError, match="features"):
        detector.partial_fit(X[:, :5])
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError):
        detector.partial_fit(bad)
    assert detector.n_iter_ == n_iter
    np.testing.assert_array_equal(detector.score_samples(X_test), scores)


def test_pickled_detectors_continue_with_a_fresh_optimizer():
    X, _, _ = _problem(n=400)
    detector = AEDetector(random_state=0).partial_fit(X)
    loaded = pickle.loads(pickle.dumps(detector))
    assert not hasattr(loaded, "_optimizers_")
    loaded.partial_fit(X)
    assert loaded.n_iter_ == 2


def test_pickling_or_copying_leaves_the_original_its_optimizer():
    """Pickling (or ``copy.deepcopy``) a detector between ``partial_fit`` calls leaves
    the original's optimizer state alone: its next call continues as without it."""
    import copy

    X, X_test, _ = _problem(n=400)
    plain, copied = AEDetector(random_state=0), AEDetector(random_state=0)
    for _ in range(3):
        plain.partial_fit(X)
        copied.partial_fit(X)
        pickle.dumps(copied)
        copy.deepcopy(copied)
    assert hasattr(copied, "_optimizers_")
    np.testing.assert_array_equal(copied.score_samples(X_test), plain.score_samples(X_test))


def test_conditional_aae_keeps_the_classes_of_the_first_call():
    X, _, _ = _problem(n=600)
    labels = np.where(X[:, 0] > np.median(X[:, 0]), "high", "low")
    detector = AAEDetector(conditional=True, random_state=0).partial_fit(X[:300], labels[:300])
    detector.partial_fit(X[300:][labels[300:] == "low"], labels[300:][labels[300:] == "low"])
    assert list(detector.classes_) == ["high", "low"]
    with pytest.raises(ValueError, match="did not see"):
        detector.partial_fit(X[:10], ["other"] * 10)
