"""Latent neighbour scores: AEDetector score_type 'latent' / 'combined', VAEDetector 'latent'."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

import aedetect.models.neighbours
from aedetect import AEDetector, VAEDetector
from aedetect._persistence import load_detector, save_detector

DIGITS = load_digits()
IMAGES = DIGITS.images / 16.0
LABELS = DIGITS.target
PLAIN = {"batch_norm": False, "dropout": 0.0, "trim_fraction": 0.0, "random_state": 0}


@pytest.fixture(scope="module")
def blobs():
    """Gaussian inliers on a 3-D subspace of 8-D, 15 outliers off it."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 3)) @ rng.normal(size=(3, 8)) + 0.05 * rng.normal(size=(300, 8))
    return np.vstack([X, rng.uniform(-4, 4, size=(15, 8))]), np.r_[np.zeros(300), np.ones(15)]


@pytest.fixture(scope="module")
def combined(blobs):
    X, _ = blobs
    return AEDetector(score_type="combined", max_iter=15, random_state=0).fit(X)


def knn_scores(codes, reference, k, skip_nearest=False):
    """Minus the mean distance to the k nearest reference rows, written with numpy."""
    distances = np.sqrt(((codes[:, None, :] - reference[None, :, :]) ** 2).sum(axis=2))
    nearest = np.sort(distances, axis=1)[:, int(skip_nearest):k + int(skip_nearest)]
    return -nearest.mean(axis=1)


def test_latent_score_is_the_mean_distance_to_the_nearest_training_codes(combined, blobs):
    X, _ = blobs
    detector = combined.set_params(score_type="latent")
    codes = detector.transform(X) / detector.code_scale_
    expected = knn_scores(codes, detector.reference_codes_, k=5)
    np.testing.assert_allclose(detector.score_samples(X), expected, rtol=1e-5, atol=1e-5)
    # The reference is every training code, each dimension scaled to unit spread.
    assert detector.reference_codes_.shape == (len(X), detector.latent_dim_)
    reference = detector.reference_codes_
    mad = np.median(np.abs(reference - np.median(reference, axis=0)), axis=0)
    np.testing.assert_allclose(1.4826 * mad, 1.0, rtol=1e-4)  # robust unit spread
    combined.set_params(score_type="combined")


def test_offset_uses_leave_one_out_training_scores(blobs):
    X, _ = blobs
    detector = AEDetector(score_type="latent", contamination=0.1, max_iter=15,
                          random_state=0).fit(X)
    codes = detector.transform(X) / detector.code_scale_
    leave_one_out = knn_scores(codes, detector.reference_codes_, k=5, skip_nearest=True)
    assert detector.offset_ == pytest.approx(np.percentile(leave_one_out, 10), rel=1e-5)
    # fit_predict labels the training rows by those scores: 10% flagged; predict counts
    # each row's own code among its neighbours, so its training scores are higher.
    flagged = np.mean(detector.fit_predict(X) == -1)
    assert flagged == pytest.approx(0.1, abs=1 / len(X))
    assert np.mean(detector.predict(X) == -1) < flagged
    assert np.all(detector.score_samples(X) > leave_one_out - 1e-6)


def test_combined_is_the_sum_of_the_standardized_terms(combined, blobs):
    X, y = blobs
    scores = {}
    for score_type in ("reconstruction", "latent", "combined"):
        scores[score_type] = combined.set_params(score_type=score_type).score_samples(X)
    error, distance = -scores["reconstruction"], -scores["latent"]
    center, scale = combined.combined_center_, combined.combined_scale_
    expected = -((error - center[0]) / scale[0] + (distance - center[1]) / scale[1])
    np.testing.assert_allclose(scores["combined"], expected, rtol=1e-5, atol=1e-5)
    # Measured AUC-ROC: reconstruction 0.870, latent 0.874, combined 0.906.
    auc = {name: roc_auc_score(y, -values) for name, values in scores.items()}
    assert auc["combined"] > max(auc["reconstruction"], auc["latent"]) + 0.02


def test_combined_centre_and_scale_are_the_robust_statistics_of_the_training_terms(
        combined, blobs):
    X, _ = blobs
    error = combined.error_map(X).mean(axis=1)
    codes = combined.transform(X) / combined.code_scale_
    # each training row measured against the other training codes
    distance = -knn_scores(codes, combined.reference_codes_, k=5, skip_nearest=True)
    terms = np.column_stack([error, distance])
    median = np.median(terms, axis=0)
    mad = 1.4826 * np.median(np.abs(terms - median), axis=0)
    assert combined.combined_center_.shape == combined.combined_scale_.shape == (2,)
    # torch's median of an even count is the lower middle value: compare loosely
    np.testing.assert_allclose(combined.combined_center_, median, rtol=2e-2)
    np.testing.assert_allclose(combined.combined_scale_, mad, rtol=2e-2)
    assert not np.allclose(combined.combined_scale_, terms.std(axis=0), rtol=0.05)


def test_row_alone_scores_as_in_a_batch(combined, blobs):
    X, _ = blobs
    for score_type in ("latent", "combined"):
        combined.set_params(score_type=score_type)
        alone = np.array([combined.score_samples(X[i:i + 1])[0] for i in range(6)])
        np.testing.assert_array_equal(alone, combined.score_samples(X)[:6])
    combined.set_params(score_type="combined")


def test_reference_is_capped_and_seeded(monkeypatch, blobs):
    X, _ = blobs
    monkeypatch.setattr(aedetect.models.neighbours, "MAX_REFERENCE_CODES", 50)
    first = AEDetector(score_type="latent", max_iter=3, random_state=0).fit(X)
    second = AEDetector(score_type="latent", max_iter=3, random_state=0).fit(X)
    assert first.reference_codes_.shape == (50, first.latent_dim_)
    np.testing.assert_array_equal(first.reference_codes_, second.reference_codes_)


def test_saved_detector_keeps_its_reference(tmp_path, combined, blobs):
    X, _ = blobs
    save_detector(combined, tmp_path / "model")
    loaded = load_detector(tmp_path / "model")
    np.testing.assert_array_equal(loaded.reference_codes_, combined.reference_codes_)
    np.testing.assert_array_equal(loaded.score_samples(X), combined.score_samples(X))


def test_reconstruction_fit_keeps_no_codes_and_says_so(blobs):
    X, _ = blobs
    detector = AEDetector(max_iter=2, random_state=0).fit(X)
    assert detector.reference_codes_ is None
    detector.set_params(score_type="latent")
    with pytest.raises(ValueError, match="Set score_type and fit it again"):
        detector.score_samples(X)


@pytest.mark.parametrize("cls, score_type", [(AEDetector, "latent"), (AEDetector, "combined"),
                                             (VAEDetector, "latent")])
def test_too_few_training_rows_for_n_neighbors(cls, score_type):
    detector = cls(score_type=score_type, n_neighbors=10, max_iter=2)
    with pytest.raises(ValueError, match="needs more than n_neighbors reference codes"):
        detector.fit(np.random.RandomState(0).normal(size=(10, 3)))
    assert not hasattr(detector, "module_")


@pytest.fixture(scope="module")
def on_manifold():
    """Inliers in two clusters of a 2-D plane in 10-D; outliers on the same plane,
    between the clusters: reconstructed as well as inliers, but with unusual codes."""
    rng = np.random.RandomState(1)
    basis = rng.normal(size=(2, 10))
    centers = np.array([[-3.0, 0.0], [3.0, 0.0]])
    train = (centers[rng.randint(2, size=600)] + 0.5 * rng.normal(size=(600, 2))) @ basis
    inliers = (centers[rng.randint(2, size=200)] + 0.5 * rng.normal(size=(200, 2))) @ basis
    outliers = rng.uniform([-1.0, -1.0], [1.0, 1.0], size=(40, 2)) @ basis
    noise = 0.02 * rng.normal(size=(840, 10))
    X_test = np.vstack([inliers, outliers]) + noise[600:]
    return train + noise[:600], X_test, np.r_[np.zeros(200), np.ones(40)]


@pytest.mark.parametrize("cls, score_types", [
    (AEDetector, ("reconstruction", "latent", "combined")),
    (VAEDetector, ("elbo", "latent")),
])
def test_latent_scores_find_outliers_on_the_manifold(on_manifold, cls, score_types):
    """Measured AUC-ROC: AE reconstruction 0.857, latent 0.9995, combined 0.9989;
    VAE ELBO 0.35 (the outliers sit where the prior N(0, I) is densest), latent 1.0."""
    train, X_test, y = on_manifold
    detector = cls(latent_dim=2, score_type="latent", max_iter=60, **PLAIN).fit(train)
    auc = {}
    for score_type in score_types:
        detector.set_params(score_type=score_type)
        auc[score_type] = roc_auc_score(y, -detector.score_samples(X_test))
    assert auc["latent"] > 0.99
    assert auc[score_types[0]] < auc["latent"] - 0.1  # reconstruction / ELBO
    if "combined" in auc:
        assert auc["combined"] > 0.98


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cls, score_type", [(AEDetector, "combined"), (VAEDetector, "latent")])
def test_latent_scores_on_cuda(tmp_path, on_manifold, cls, score_type):
    train, X_test, y = on_manifold
    detector = cls(latent_dim=2, score_type=score_type, max_iter=60, device="cuda",
                   **PLAIN).fit(train)
    scores = detector.score_samples(X_test)
    assert roc_auc_score(y, -scores) > 0.98
    alone = np.array([detector.score_samples(X_test[i:i + 1])[0] for i in range(5)])
    np.testing.assert_allclose(alone, scores[:5], rtol=1e-5, atol=1e-5)
    save_detector(detector, tmp_path / "model")
    on_cpu = load_detector(tmp_path / "model", device="cpu")
    np.testing.assert_allclose(on_cpu.score_samples(X_test), scores, rtol=1e-4, atol=1e-4)


def test_n_neighbors_is_checked_against_the_capped_reference(monkeypatch, blobs):
    X, _ = blobs
    monkeypatch.setattr(aedetect.models.neighbours, "MAX_REFERENCE_CODES", 50)
    with pytest.raises(ValueError, match=r"got 50 \(n_samples=315, at most 50 are kept\)"):
        AEDetector(score_type="latent", n_neighbors=50, max_iter=1).fit(X)
