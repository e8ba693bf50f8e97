"""Fits whose rows are too big to copy stream them (``aedetect._streaming``): the same
detectors, trained chunk by chunk from the unscaled rows (a ``numpy.memmap`` too)."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from aedetect import AAEDetector, AEDetector, VAEDetector, _data, _streaming
from aedetect._fitting import TRAINING_CLIP


def _problem(seed=0, n=3000):
    rng = np.random.RandomState(seed)
    weights = rng.normal(size=(3, 10))

    def rows(m, shift=0.0):
        return (np.tanh(rng.normal(size=(m, 3)) @ weights) + 0.05 * rng.normal(size=(m, 10))
                + shift).astype(np.float32)

    X_test = np.vstack([rows(400), rows(100, shift=1.0)])
    return rows(n), X_test, np.r_[np.zeros(400), np.ones(100)]


@pytest.fixture
def streamed(monkeypatch):
    """Every fit streams, in chunks of 500 rows of 10 features."""
    monkeypatch.setattr(_streaming, "STREAMED_BYTES", 0)
    monkeypatch.setattr(_streaming, "TRAINING_CHUNK_BYTES", 500 * 10 * 4)


def _chunks_seen(monkeypatch):
    seen = []
    original = _streaming.StreamedRows.epoch

    def epoch(self, generator):
        for chunk, labels in original(self, generator):
            seen.append(chunk.shape[0])
            yield chunk, labels

    monkeypatch.setattr(_streaming.StreamedRows, "epoch", epoch)
    return seen


@pytest.mark.parametrize("cls, score_type", [(AEDetector, "reconstruction"),
                                             (AEDetector, "combined"),
                                             (VAEDetector, "elbo"), (AAEDetector, "combined")])
def test_a_streamed_fit_detects_like_an_in_memory_one(monkeypatch, cls, score_type):
    X, X_test, y = _problem()
    options = dict(score_type=score_type, max_iter=15, random_state=0)
    in_memory = roc_auc_score(y, -cls(**options).fit(X).score_samples(X_test))
    monkeypatch.setattr(_streaming, "STREAMED_BYTES", 0)
    monkeypatch.setattr(_streaming, "TRAINING_CHUNK_BYTES", 500 * 10 * 4)
    seen = _chunks_seen(monkeypatch)
    detector = cls(**options).fit(X)
    assert seen and max(seen) == 500 and sum(seen) == detector.n_iter_ * X.shape[0]
    streamed = roc_auc_score(y, -detector.score_samples(X_test))
    assert streamed > 0.9 and abs(streamed - in_memory) < 0.03
    assert np.isfinite(detector.offset_)


def test_streamed_fits_are_reproducible(streamed):
    X, X_test, _ = _problem(n=1200)
    a = AEDetector(max_iter=3, random_state=1).fit(X).score_samples(X_test)
    b = AEDetector(max_iter=3, random_state=1).fit(X).score_samples(X_test)
    np.testing.assert_array_equal(a, b)


def test_a_memmap_fits_without_a_copy(tmp_path, streamed, monkeypatch):
    X, X_test, y = _problem(n=2000)
    mapped = np.lib.format.open_memmap(tmp_path / "rows.npy", mode="w+", dtype=np.float32,
                                       shape=X.shape)
    mapped[:] = X
    mapped.flush()
    rows = np.load(tmp_path / "rows.npy", mmap_mode="r")
    read = []
    original = _streaming.StreamedRows.load

    def load(self, index):
        assert np.shares_memory(self.rows, rows)  # the file's pages, never a copy
        read.append(len(index))
        return original(self, index)

    monkeypatch.setattr(_streaming.StreamedRows, "load", load)
    detector = AEDetector(max_iter=10, early_stopping=True, random_state=0).fit(rows)
    assert max(read) == 500 and 200 in read  # the training chunks; the validation rows
    assert roc_auc_score(y, -detector.score_samples(X_test)) > 0.9


def test_streamed_scaling_statistics(monkeypatch):
    X = np.random.RandomState(0).lognormal(size=(5000, 4)).astype(np.float32)
    monkeypatch.setattr(_streaming, "TRAINING_CHUNK_BYTES", 300 * 4 * 4)
    for rule in ("standard", "minmax", "global_minmax", None):
        exact = _data.Scaling.fit(X.astype(np.float64), rule)
        chunked = _streaming.fit_scaling(X, rule, seed=0)
        np.testing.assert_allclose(chunked.center, exact.center, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(chunked.scale, exact.scale, rtol=1e-7)
    # the robust rule: exact up to SCALING_SAMPLE_ROWS rows, a random sample beyond
    exact = _data.Scaling.fit(X, "robust")
    np.testing.assert_array_equal(_streaming.fit_scaling(X, "robust", 0).center, exact.center)
    monkeypatch.setattr(_streaming, "SCALING_SAMPLE_ROWS", 2000)
    sampled = _streaming.fit_scaling(X, "robust", 0)
    assert not np.array_equal(sampled.center, exact.center)
    np.testing.assert_allclose(sampled.center, exact.center, rtol=0.1)
    np.testing.assert_allclose(sampled.scale, exact.scale, rtol=0.15)


def test_streamed_extreme_rows_are_left_out(streamed, monkeypatch):
    X, X_test, y = _problem(n=1500)
    X[7, 2] = 1e9
    loaded = []
    original = _streaming.StreamedRows.load

    def load(self, index):
        loaded.append(np.asarray(index))
        return original(self, index)

    monkeypatch.setattr(_streaming.StreamedRows, "load", load)
    detector = AEDetector(max_iter=4, early_stopping=False, random_state=0).fit(X)
    trained = np.concatenate(loaded)
    assert 7 not in trained and trained.size == 4 * (X.shape[0] - 1)
    assert np.argmin(detector.score_samples(X)) == 7
    assert TRAINING_CLIP < 1e9


def test_streamed_conditional_aae_and_denoising(streamed):
    X, X_test, y = _problem(n=1500)
    labels = (X[:, 0] > np.median(X[:, 0])).astype(int)
    detector = AAEDetector(conditional=True, max_iter=3, random_state=0).fit(X, labels)
    assert np.isfinite(detector.score_samples(X_test)).all()
    denoising = AEDetector(noise=0.2, max_iter=5, random_state=0).fit(X)
    assert roc_auc_score(y, -denoising.score_samples(X_test)) > 0.85


def test_write_memmap_from_a_generator(tmp_path):
    import pandas as pd

    from aedetect.datasets import write_memmap

    X, _, _ = _problem(n=1000)
    chunks = (pd.DataFrame(part) if i % 2 else part
              for i, part in enumerate(np.array_split(X, 7)))
    rows = write_memmap(chunks, tmp_path / "rows.f32")
    assert isinstance(rows, np.memmap) and rows.shape == X.shape and rows.dtype == np.float32
    np.testing.assert_array_equal(rows, X.astype(np.float32))
    with pytest.raises(ValueError, match="same columns"):
        write_memmap([X, X[:, :4]], tmp_path / "bad.f32")
    with pytest.raises(ValueError, match="2-D"):
        write_memmap([X[0]], tmp_path / "bad.f32")
    with pytest.raises(ValueError, match="no rows"):
        write_memmap([], tmp_path / "bad.f32")


def test_entropy_stopping_on_streamed_rows(streamed, monkeypatch):
    """``early_stopping='entropy'`` scores evenly spaced training rows after each epoch,
    read once (``ENTROPY_ROWS`` of them) and kept on the device."""
    from aedetect import _fitting

    monkeypatch.setattr(_fitting, "ENTROPY_ROWS", 700)
    X, X_test, y = _problem(n=2000)
    detector = AEDetector(max_iter=8, n_iter_no_change=3, early_stopping="entropy", tol=0.0,
                          random_state=0).fit(X)
    entropies = [record["score_entropy"] for record in detector.history_]
    # 2000 rows, every third: 667 rows, so the entropy is below log(667)
    assert all(0 < value < np.log(667) for value in entropies)
    assert detector.best_epoch_ == 1 + int(np.argmin(entropies))
    assert roc_auc_score(y, -detector.score_samples(X_test)) > 0.9
