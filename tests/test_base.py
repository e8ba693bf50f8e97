"""Behaviour of the shared contract, over every public detector."""

import io
import os
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.metrics import make_scorer, roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from aedetect import AEDetector
from aedetect._fitting import corruption
from aedetect._training import Callback
from aedetect._device import resolve_device

FAST = {"max_iter": 15, "random_state": 0}


@pytest.fixture(scope="module")
def blobs():
    """Gaussian inliers on a 3-D subspace of 8-D, 15 outliers off it."""
    rng = np.random.RandomState(0)
    Z = rng.normal(size=(300, 3))
    X = Z @ rng.normal(size=(3, 8)) + 0.05 * rng.normal(size=(300, 8))
    outliers = rng.uniform(-4, 4, size=(15, 8))
    y = np.r_[np.zeros(300), np.ones(15)]
    return np.vstack([X, outliers]), y


def test_same_random_state_gives_identical_scores(detector_class, blobs):
    X, _ = blobs
    first = detector_class(**FAST).fit(X).score_samples(X)
    second = detector_class(**FAST).fit(X).score_samples(X)
    assert first.dtype == np.float64 and first.shape == (X.shape[0],)
    np.testing.assert_array_equal(first, second)
    other = detector_class(max_iter=15, random_state=1).fit(X).score_samples(X)
    assert not np.array_equal(first, other)


def test_global_rng_untouched(detector_class, blobs):
    X, _ = blobs
    torch.manual_seed(123)
    np.random.seed(123)
    expected_torch, expected_np = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(123)
    detector_class(**FAST).fit(X)
    np.testing.assert_array_equal(torch.rand(3), expected_torch)
    np.testing.assert_array_equal(np.random.rand(3), expected_np)


def test_scores_do_not_depend_on_batch_or_repeat(detector_class, blobs):
    X, _ = blobs
    detector = detector_class(**FAST).fit(X)
    full = detector.score_samples(X)
    alone = np.array([detector.score_samples(X[i:i + 1])[0] for i in range(0, 40, 7)])
    np.testing.assert_allclose(alone, full[0:40:7], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(detector.score_samples(X), full)
    np.testing.assert_allclose(detector.score_samples(X[::-1])[::-1], full, rtol=1e-5, atol=1e-6)


def test_outliers_score_lower(detector_class, blobs):
    X, y = blobs
    detector = detector_class(random_state=0).fit(X)  # default training budget
    assert roc_auc_score(y, -detector.score_samples(X)) > 0.9


def test_contract_relations(detector_class, blobs):
    X, _ = blobs
    detector = detector_class(contamination=0.1, **FAST).fit(X)
    scores = detector.score_samples(X)
    decision = detector.decision_function(X)
    np.testing.assert_allclose(decision, scores - detector.offset_)
    labels = detector.predict(X)
    assert set(np.unique(labels)) == {-1, 1}
    np.testing.assert_array_equal(labels == -1, decision < 0)
    assert abs((labels == -1).sum() - 0.1 * X.shape[0]) <= 1
    np.testing.assert_array_equal(detector_class(contamination=0.1, **FAST).fit_predict(X),
                                  labels)
    codes = detector.transform(X)
    assert codes.shape == (X.shape[0], detector.latent_dim_)
    assert detector.reconstruct(X).shape == X.shape


def test_default_contamination_auto_rule(blobs):
    X, _ = blobs
    detector = AEDetector(**FAST).fit(X)
    scores = detector.score_samples(X)
    median = np.median(scores)
    expected = median - 3 * 1.4826 * np.median(np.abs(scores - median))
    assert detector.offset_ == pytest.approx(expected)


def test_history_and_early_stopping_restore_best(blobs):
    X, _ = blobs
    detector = AEDetector(max_iter=40, early_stopping=True, n_iter_no_change=3,
                          random_state=0).fit(X)
    assert detector.n_iter_ == len(detector.history_) == len(detector.loss_curve_)
    record = detector.history_[0]
    assert {"epoch", "loss", "val_loss", "time"} <= set(record)
    val = [r["val_loss"] for r in detector.history_]
    assert detector.best_loss_ == pytest.approx(min(val))
    assert val[detector.best_epoch_ - 1] == pytest.approx(min(val))
    assert detector.loss_curve_[-1] < detector.loss_curve_[0]


def test_training_reduces_reconstruction_error(blobs):
    X, _ = blobs
    short = AEDetector(max_iter=1, random_state=0).fit(X)
    long = AEDetector(max_iter=80, random_state=0).fit(X)
    assert long.score_samples(X).mean() > short.score_samples(X).mean()


def test_batch_norm_scores_single_rows(blobs):
    X, _ = blobs
    detector = AEDetector(batch_norm=True, dropout=0.2, batch_size=31, **FAST).fit(X)
    alone = detector.score_samples(X[:1])
    np.testing.assert_allclose(alone, detector.score_samples(X)[:1], rtol=1e-5)


def test_pandas_in_and_feature_names(detector_class, blobs):
    X, _ = blobs
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    detector = detector_class(**FAST).fit(frame)
    np.testing.assert_array_equal(detector.feature_names_in_, frame.columns)
    np.testing.assert_array_equal(detector.score_samples(frame),
                                  detector_class(**FAST).fit(X).score_samples(X))
    with pytest.raises(ValueError, match="feature names"):
        detector.score_samples(frame.rename(columns={"f0": "other"}))
    names = detector.get_feature_names_out()
    assert len(names) == detector.latent_dim_
    assert names[0].startswith(detector_class.__name__.lower())


def test_clone_and_pickle_round_trip(detector_class, blobs):
    X, _ = blobs
    detector = detector_class(latent_dim=3, **FAST)
    copy = clone(detector)
    assert copy.get_params() == detector.get_params() and not hasattr(copy, "offset_")
    detector.fit(X)
    restored = pickle.loads(pickle.dumps(detector))
    np.testing.assert_array_equal(restored.score_samples(X), detector.score_samples(X))
    np.testing.assert_array_equal(restored.predict(X), detector.predict(X))


def test_pipeline_with_scaler(blobs):
    X, y = blobs
    pipe = make_pipeline(StandardScaler(), AEDetector(scaling=None, max_iter=60, random_state=0))
    pipe.fit(X)
    assert pipe.predict(X).shape == (X.shape[0],)
    assert roc_auc_score(y, -pipe.score_samples(X)) > 0.9


def test_grid_search_with_auc_scorer(blobs):
    X, y = blobs
    auc = make_scorer(roc_auc_score, response_method="decision_function")
    search = GridSearchCV(AEDetector(max_iter=20, random_state=0),
                          {"latent_dim": [1, 3]}, scoring=auc,
                          cv=StratifiedKFold(3, shuffle=True, random_state=0))
    search.fit(X, 1 - y)  # inliers are the positive class for a higher-is-normal score
    assert search.best_score_ > 0.85
    # the refitted best detector is trained on all the data with the best parameters
    best = search.best_estimator_
    assert best.latent_dim == search.best_params_["latent_dim"] and best.n_features_in_ == 8
    assert roc_auc_score(y, -best.score_samples(X)) > 0.85


def test_auc_floor_one_class_digits():
    """Train on one digit (zeros), score the rest: other digits are outliers."""
    X, y = load_digits(return_X_y=True)
    train = np.flatnonzero(y == 0)[:150]
    test = np.setdiff1d(np.arange(len(y)), train)
    detector = AEDetector(random_state=0).fit(X[train])
    assert roc_auc_score(y[test] != 0, -detector.score_samples(X[test])) > 0.97


def test_denoising_noise_is_clipped_and_training_only(blobs):
    X, _ = blobs
    detector = AEDetector(noise=0.3, **FAST).fit(X)
    np.testing.assert_array_equal(detector.score_samples(X), detector.score_samples(X))
    target = torch.as_tensor(((X - detector.center_) / detector.scale_).astype(np.float32))
    corrupt = corruption(detector, target)
    # dense rows: each feature is clipped to its own training range
    np.testing.assert_array_equal(corrupt.low, target.amin(dim=0))
    np.testing.assert_array_equal(corrupt.high, target.amax(dim=0))
    noisy = corrupt(target, torch.Generator().manual_seed(0))
    assert not torch.equal(noisy, target)
    assert torch.all(noisy <= target.amax(dim=0)) and torch.all(noisy >= target.amin(dim=0))
    assert float((noisy - target).abs().max()) > 0.3
    masked = AEDetector(noise=0.5, noise_type="mask", **FAST)
    masked.input_shape_ = detector.input_shape_
    zeroed = (corruption(masked, target)(target, torch.Generator().manual_seed(0)) == 0)
    assert 0.4 < zeroed.float().mean().item() < 0.6
    assert corruption(AEDetector(), target) is None


def test_callbacks_see_every_epoch(blobs):
    X, _ = blobs

    class Recorder(Callback):
        def __init__(self):
            self.events = []

        def on_fit_begin(self, detector, X):
            self.events.append(("begin", X.shape))

        def on_epoch_end(self, trainer, record):
            self.events.append(("epoch", record["epoch"]))

        def on_fit_end(self, detector, error):
            self.events.append(("end", error))

    recorder = Recorder()
    detector = AEDetector(max_iter=4, n_iter_no_change=100, callbacks=[recorder]).fit(X)
    assert recorder.events[0] == ("begin", X.shape)
    assert [e[1] for e in recorder.events[1:-1]] == [1, 2, 3, 4]
    assert recorder.events[-1] == ("end", None)
    assert detector.n_iter_ == 4


def test_verbose_progress_bar(blobs, capsys):
    X, _ = blobs
    AEDetector(max_iter=2, verbose=1).fit(X)
    err = capsys.readouterr().err
    assert "AEDetector" in err and "loss" in err


@pytest.mark.gpu
def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and torch.backends.mps.is_available():
        expected = "mps"
    assert resolve_device("auto").type == expected
    detector = AEDetector(max_iter=1, device="auto")
    detector.fit(np.random.RandomState(0).normal(size=(20, 3)))
    assert detector.device == "auto" and detector.device_.type == expected


def test_auto_device_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert resolve_device("auto") == torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


def test_threshold_belongs_to_the_fitted_score_type(blobs):
    X, _ = blobs
    detector = AEDetector(score_type="combined", contamination=0.1, **FAST)
    assert np.mean(detector.fit_predict(X) == -1) == pytest.approx(0.1, abs=0.01)
    assert detector.predict(X[:5]).shape == (5,)
    latent = detector.set_params(score_type="latent").score_samples(X)  # needs no refit
    assert latent.shape == (X.shape[0],)
    for method in (detector.predict, detector.decision_function):
        with pytest.raises(ValueError, match="offset_ was set in fit for "
                                             "score_type='combined'.*Fit it again"):
            method(X)
    # a refit thresholds the new score type
    assert np.mean(detector.fit_predict(X) == -1) == pytest.approx(0.1, abs=0.01)
    assert detector.score_type_ == "latent" and detector.predict(X[:5]).shape == (5,)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_requested_without_cuda():
    with pytest.raises(ValueError, match="CUDA is not available"):
        AEDetector(device="cuda").fit(np.zeros((10, 2)))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_fit_matches_contract_and_pickles_to_cpu(detector_class, blobs):
    X, y = blobs
    detector = detector_class(device="cuda", random_state=0).fit(X)
    assert detector.device_.type == "cuda"
    # The exact floors are pinned on the CPU; on CUDA the random streams differ.
    assert roc_auc_score(y, -detector.score_samples(X)) > 0.8
    single = np.array([detector.score_samples(X[i:i + 1])[0] for i in range(5)])
    np.testing.assert_allclose(single, detector.score_samples(X)[:5], rtol=1e-5, atol=1e-6)
    state = pickle.dumps(detector)
    restored = pickle.loads(state)
    assert restored.device_.type == "cuda"
    np.testing.assert_allclose(restored.score_samples(X), detector.score_samples(X), rtol=1e-5)
    # The same bytes load on a machine without CUDA, onto the CPU, with the same scores.
    code = ("import pickle, sys, numpy as np, torch; assert not torch.cuda.is_available(); "
            "d, X = pickle.loads(sys.stdin.buffer.read()); print(d.device_.type); "
            "np.save(sys.stdout.buffer, d.score_samples(X))")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-c", code], input=pickle.dumps((detector, X)),
                            capture_output=True, env=env, check=True)
    assert result.stdout.startswith(b"cpu\n")
    cpu_scores = np.load(io.BytesIO(result.stdout[4:]))
    np.testing.assert_allclose(cpu_scores, detector.score_samples(X), rtol=1e-4, atol=1e-6)
