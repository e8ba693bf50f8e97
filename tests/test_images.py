"""Images: the conv architecture, image input forms, error maps and denoising, for every
public detector (the tiny 8x8 digits of scikit-learn keep this fast)."""

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from aedetect import AEDetector
from aedetect._fitting import corruption
from aedetect.networks import ConvDecoder, ConvEncoder, conv_feature_sizes
from conftest import DETECTORS

DIGITS = load_digits()
IMAGES = DIGITS.images / 16.0  # (1797, 8, 8) in [0, 1]
LABELS = DIGITS.target
SMALL = {"architecture": "conv", "conv_channels": (4, 8), "max_iter": 2, "batch_size": 64,
         "random_state": 0}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """8x8 convolutions gain nothing from intra-op threads, and on a busy 2-core machine
    two threads spin against each other (measured: 7 s on one thread, up to 47 s on two
    for the one-class test)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def fitted_conv(one_thread):
    """One small conv detector of each class, fitted on (n, 8, 8) images."""
    return {cls: cls(**SMALL).fit(IMAGES[:200]) for cls in DETECTORS}


# ----------------------------------------------------------------- networks
@pytest.mark.parametrize("side, expected", [(28, [28, 14, 7, 4]), (8, [8, 4, 2, 1]),
                                            (1, [1, 1, 1, 1])])
def test_pooling_rounds_up_and_never_vanishes(side, expected):
    sizes = conv_feature_sizes((side, side), 3)
    assert [s[0] for s in sizes] == expected


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 7, 9), (2, 1, 5)])
def test_conv_decoder_mirrors_encoder_for_odd_sizes(shape):
    encoder = ConvEncoder(shape, 6, (16,), conv_channels=(4, 8, 8))
    decoder = ConvDecoder(6, shape, (16,), conv_channels=(4, 8, 8), output_activation="sigmoid")
    x = torch.rand(5, *shape)
    with torch.no_grad():
        out = decoder(encoder(x))
    assert out.shape == x.shape
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0


# -------------------------------------------------------------- input forms
FORMS = {
    "n,H,W": (lambda X: X, {}),
    "n,C,H,W": (lambda X: X[:, None], {}),
    "rows+(H,W)": (lambda X: X.reshape(len(X), -1), {"image_shape": (8, 8)}),
    "rows+(C,H,W)": (lambda X: X.reshape(len(X), -1), {"image_shape": (1, 8, -1)}),
}


@pytest.mark.parametrize("form", FORMS)
def test_shapes_in_and_out_for_each_input_form(detector_class, form):
    as_form, extra = FORMS[form]
    X = as_form(IMAGES[:120])
    detector = detector_class(**SMALL, **extra).fit(X)
    assert detector.input_shape_ == (1, 8, 8)
    assert detector.n_features_in_ == 64
    assert detector.score_samples(X).shape == (120,)
    assert detector.predict(X).shape == (120,)
    assert detector.transform(X).shape == (120, detector.latent_dim_)
    assert detector.reconstruct(X).shape == X.shape
    assert detector.error_map(X).shape == X.shape


def test_every_form_gives_the_same_scores(detector_class, fitted_conv):
    detector = fitted_conv[detector_class]
    X = IMAGES[200:260]
    reference = detector.score_samples(X)
    for as_form, _ in FORMS.values():
        np.testing.assert_array_equal(detector.score_samples(as_form(X)), reference)


def test_scores_are_per_image_and_reproducible(detector_class, fitted_conv):
    detector = fitted_conv[detector_class]
    X = IMAGES[200:240]
    batch = detector.score_samples(X)
    alone = np.array([detector.score_samples(X[i:i + 1])[0] for i in range(5)])
    # Same value up to float rounding: CPU convolution kernels block differently by batch size.
    np.testing.assert_allclose(alone, batch[:5], rtol=1e-6)
    refit = clone(detector).fit(IMAGES[:200])
    np.testing.assert_array_equal(refit.score_samples(X), batch)


def test_multichannel_odd_sized_images(detector_class):
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(40, 3, 7, 5)).astype(np.float32)
    detector = detector_class(**SMALL).fit(X)
    assert detector.input_shape_ == (3, 7, 5)
    assert detector.n_features_in_ == 105
    assert detector.reconstruct(X).shape == (40, 3, 7, 5)
    assert detector.error_map(X[:3].reshape(3, -1)).shape == (3, 105)


def test_dense_architecture_flattens_images():
    """The dense network on images is exactly the dense network on the flattened rows."""
    X = IMAGES[:150]
    params = {"max_iter": 3, "random_state": 0}
    on_images = AEDetector(**params).fit(X)
    on_rows = AEDetector(**params).fit(X.reshape(150, 64))
    assert on_images.input_shape_ == (1, 8, 8) and on_rows.input_shape_ == (64,)
    np.testing.assert_array_equal(on_images.score_samples(X), on_rows.score_samples(X))
    assert on_images.reconstruct(X).shape == (150, 8, 8)


def test_error_map_is_the_score_per_pixel_and_finds_the_defect():
    clean = IMAGES[LABELS == 0]
    detector = AEDetector(architecture="conv", conv_channels=(8, 16), latent_dim=8,
                          max_iter=40, batch_size=32, random_state=0).fit(clean[:150])
    test = clean[150:].copy()
    maps = detector.error_map(test)
    np.testing.assert_allclose(-maps.mean(axis=(1, 2)), detector.score_samples(test),
                               rtol=1e-6)
    defective = test.copy()
    defective[:, 3:5, 3:5] = 1.0  # a bright square inside the hole of every zero
    defect_maps = detector.error_map(defective)
    inside = defect_maps[:, 3:5, 3:5].mean()
    outside = np.delete(defect_maps.reshape(len(test), -1), [27, 28, 35, 36], axis=1).mean()
    assert inside > 10 * outside
    assert (detector.score_samples(defective) < detector.score_samples(test)).all()


# ------------------------------------------------------------------ scaling
def test_auto_scaling_for_conv_is_one_range_over_all_pixels():
    """0..16 pixels and the same images in [0, 1] give the same network and scores."""
    raw = AEDetector(**SMALL).fit(DIGITS.images[:100])
    np.testing.assert_array_equal(raw.center_, np.zeros(64))
    np.testing.assert_array_equal(raw.scale_, np.full(64, 16.0))
    unit = AEDetector(**SMALL).fit(IMAGES[:100])
    np.testing.assert_allclose(raw.score_samples(DIGITS.images[100:150]),
                               unit.score_samples(IMAGES[100:150]), rtol=1e-5)
    np.testing.assert_allclose(raw.reconstruct(DIGITS.images[100:150]),
                               16 * unit.reconstruct(IMAGES[100:150]), rtol=1e-5, atol=1e-6)
    identity = AEDetector(**{**SMALL, "scaling": None}).fit(DIGITS.images[:100])
    np.testing.assert_array_equal(identity.scale_, np.ones(64))


def test_corruption_stays_in_the_pixel_range():
    detector = AEDetector(**{**SMALL, "noise": 0.5}).fit(IMAGES[:100])
    rows = (IMAGES[100:200].reshape(100, -1) - detector.center_) / detector.scale_
    x = torch.as_tensor(rows.reshape(100, 1, 8, 8).astype(np.float32))
    corrupt = corruption(detector, x)
    # images scaled alike everywhere: one range for every pixel, so a pixel that is
    # always dark in training still gets noise
    assert corrupt.low.dim() == 0 and float(corrupt.high) == float(x.max())
    noisy = corrupt(x, torch.Generator().manual_seed(0))
    masking = corruption(detector.set_params(noise_type="mask", noise=0.25), x)(
        torch.ones_like(x), torch.Generator().manual_seed(0))
    assert float(noisy.min()) == 0.0 and float(noisy.max()) == 1.0
    always_dark = (x == 0).all(dim=0)
    assert bool(always_dark.any()) and float(noisy[:, always_dark].max()) > 0
    assert float((noisy - x).abs().mean()) > 0.2
    assert abs(float((masking == 0).float().mean()) - 0.25) < 0.02


# ---------------------------------------------------------------- denoising
def test_denoising_brings_noisy_images_closer_to_the_clean_ones():
    """Measured: the noisy test images are at mean squared error 0.050 from the clean
    ones, their reconstructions at 0.027 (8x8 digits, Gaussian noise 0.3)."""
    rng = np.random.RandomState(0)
    train, test = IMAGES[:1200], IMAGES[1200:1500]
    # The corruption is the regularizer here: dropout on top of it blurs the output
    # (measured 0.033 with the default dropout=0.2, 0.026 without).
    detector = AEDetector(architecture="conv", conv_channels=(16, 32), latent_dim=16,
                          noise=0.3, dropout=0.0, max_iter=25, batch_size=32,
                          learning_rate_init=3e-3, random_state=0).fit(train)
    noisy = np.clip(test + rng.normal(scale=0.3, size=test.shape), 0, 1)
    denoised = detector.reconstruct(noisy)
    noisy_error = np.mean((noisy - test) ** 2)
    denoised_error = np.mean((denoised - test) ** 2)
    assert denoised_error < 0.65 * noisy_error
    assert np.mean((detector.reconstruct(test) - test) ** 2) < denoised_error


# ---------------------------------------------------------- one-class AUC
def test_one_class_digits_auc():
    """For each digit, train on 100 of its images; every other test digit is an outlier.
    Measured AUC-ROC with the conv defaults (no batch norm, no dropout): mean 0.974,
    lowest 0.947 (digit 9); with batch norm and dropout 0.2: mean 0.977."""
    aucs = []
    for digit in range(10):
        train = IMAGES[:1200][LABELS[:1200] == digit][:100]
        test, outlier = IMAGES[1200:], LABELS[1200:] != digit
        detector = AEDetector(architecture="conv", conv_channels=(16, 32), latent_dim=8,
                              max_iter=20, batch_size=16, learning_rate_init=3e-3,
                              random_state=0).fit(train)
        aucs.append(roc_auc_score(outlier, -detector.score_samples(test)))
    assert np.mean(aucs) >= 0.96
    assert min(aucs) >= 0.93


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("params, X, message", [
    ({"architecture": "conv"}, IMAGES[:10].reshape(10, -1), "needs images"),
    ({"image_shape": (8, 7)}, IMAGES[:10].reshape(10, -1), "holds 56 values but X has 64"),
    ({"image_shape": (3, -1)}, IMAGES[:10].reshape(10, -1), "not a multiple of 3"),
    ({"image_shape": (-1, -1)}, IMAGES[:10].reshape(10, -1), "one of which may be -1"),
    ({"image_shape": (8, 8, 1, 1)}, IMAGES[:10].reshape(10, -1), "must be"),
    ({"image_shape": (4, 16)}, IMAGES[:10], r"images of shape \(8, 8\) but image_shape"),
    ({"architecture": "conv", "conv_channels": ()}, IMAGES[:10], "non-empty sequence"),
    ({"architecture": "conv", "conv_channels": (8, 0)}, IMAGES[:10], "positive ints"),
    ({}, np.zeros((10, 1, 2, 8, 8)), r"got an array of shape \(10, 1, 2, 8, 8\)"),
], ids=["conv-rows", "shape-size", "minus-one", "two-minus-one", "4d", "disagree", "empty",
        "zero", "5d"])
def test_bad_image_input_raises_clear_errors(params, X, message):
    with pytest.raises(ValueError, match=message):
        AEDetector(**{**SMALL, **params}).fit(X)


def test_predict_on_images_of_another_shape_raises(fitted_conv):
    detector = fitted_conv[AEDetector]
    with pytest.raises(ValueError, match=r"fitted on images of shape \(1, 8, 8\)"):
        detector.score_samples(np.zeros((3, 4, 16)))
    with pytest.raises(ValueError, match="expecting 64 features"):
        detector.score_samples(np.zeros((3, 63)))


# ------------------------------------------------- pipelines and pickling
def test_rows_with_image_shape_work_in_a_pipeline():
    rows = DIGITS.data[:200]  # raw 0..16 pixels, flattened
    pipeline = make_pipeline(FunctionTransformer(lambda X: X / 16.0),
                             AEDetector(**SMALL, image_shape=(8, 8)))
    scores = pipeline.fit(rows).score_samples(rows)
    direct = AEDetector(**SMALL).fit(IMAGES[:200]).score_samples(IMAGES[:200])
    np.testing.assert_allclose(scores, direct, rtol=1e-6)


def test_conv_detector_pickles(detector_class, fitted_conv):
    detector = fitted_conv[detector_class]
    loaded = pickle.loads(pickle.dumps(detector))
    np.testing.assert_array_equal(loaded.score_samples(IMAGES[:20]),
                                  detector.score_samples(IMAGES[:20]))


# ------------------------------------------------------ scikit-learn checks
# scikit-learn's checks call fit on 2-D data with 1, 2, 3, 4, 5 or 10 features, so no
# fixed image_shape suits them all: image_shape=(8, 8) rightly rejects 5-feature rows.
# image_shape=(1, -1) reads every row as a one-pixel-high image of its own width, so
# the conv network runs inside every check (pooling keeps sides of 1) and every check
# applies; none is skipped or expected to fail. Image arrays (n, H, W) are outside
# scikit-learn's 2-D API and are covered by the tests above.
@parametrize_with_checks([cls(architecture="conv", image_shape=(1, -1), conv_channels=(4,),
                              max_iter=3) for cls in DETECTORS])
def test_sklearn_checks_conv_rows_with_image_shape(estimator, check):
    check(estimator)


# ---------------------------------------------------------------- benchmark
def _one_class_benchmark(tmp_path):
    """``benchmarks/one_class_images.py`` as a module, and a fake Fashion-MNIST folder
    (random pixels)."""
    import importlib.util
    from pathlib import Path

    from test_datasets import fake_fashion_mnist

    (tmp_path / "data").mkdir()
    data = fake_fashion_mnist(tmp_path / "data", n_train=60, n_test=50)
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "one_class_images.py"
    spec = importlib.util.spec_from_file_location("one_class_images", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench, data


def test_one_class_benchmark_runs_and_reports(tmp_path):
    """The benchmark script end to end on a fake Fashion-MNIST folder (random pixels)."""
    bench, data = _one_class_benchmark(tmp_path)
    common = ["--data-dir", str(data), "--out", str(tmp_path / "out"), "--epochs", "1",
              "--conv-channels", "4", "--classes", "0", "3", "--methods", "conv_ae", "iforest"]
    assert bench.main(common + ["--seeds", "0"]) == 0
    assert bench.main(common + ["--seeds", "1", "--append"]) == 0
    results = pd.read_csv(tmp_path / "out" / "one_class_fashion_mnist.csv")
    # (3 conv_ae score types + iforest) x 2 classes x 2 seeds
    assert len(results) == 16
    assert set(results["method"]) == {"conv_ae:combined", "conv_ae:reconstruction",
                                      "conv_ae:latent", "iforest:score_samples"}
    assert set(results["n_train"]) == {6}
    assert results["auc_roc"].between(0, 1).all()
    report = (tmp_path / "out" / "one_class_fashion_mnist.md").read_text()
    assert "| conv_ae:combined |" in report and "| 3 | Dress |" in report
    # Runs made apart (one per seed) merge into one report.
    out = str(tmp_path / "out")
    assert bench.main(["--merge", f"{out}/one_class_fashion_mnist.csv", "--out", out,
                       "--name", "merged", "--set", "conv_ae.latent_dim=4"]) == 0
    assert len(pd.read_csv(tmp_path / "out" / "merged.csv")) == 16
    with pytest.raises(SystemExit, match="METHOD.PARAMETER=VALUE"):
        bench.main(common + ["--set", "latent_dim=4"])


def test_one_class_benchmark_runs_the_conv_ensemble(tmp_path):
    """``conv_ensemble``: EnsembleDetector of the conv AE and VAE with their settings."""
    bench, data = _one_class_benchmark(tmp_path)
    args = bench.build_parser().parse_args(["--epochs", "1", "--conv-channels", "4"])
    args.overrides = {}
    ensemble = bench.make_detector("conv_ensemble", args, seed=0)
    assert [name for name, _ in ensemble.estimators] == ["conv_ae", "conv_vae"]
    assert ensemble.estimators[1][1].get_params()["likelihood"] == "bernoulli"
    assert ensemble.estimators[0][1].score_type == "combined"
    assert [m.random_state for _, m in ensemble.estimators] == [0, 0]
    args.overrides = bench.parse_overrides(["conv_ensemble.members=('conv_vae', 'conv_vae')"])
    seeds = bench.make_detector("conv_ensemble", args, seed=3)
    assert [(name, m.random_state) for name, m in seeds.estimators] == [("conv_vae", 3),
                                                                        ("conv_vae1", 1003)]
    assert bench.main(["--data-dir", str(data), "--out", str(tmp_path / "out"), "--epochs",
                       "1", "--conv-channels", "4", "--classes", "0", "--seeds", "0",
                       "--methods", "conv_ensemble"]) == 0
    results = pd.read_csv(tmp_path / "out" / "one_class_fashion_mnist.csv")
    assert list(results["method"]) == ["conv_ensemble:mean"]
    assert results["auc_roc"].between(0, 1).all() and results["epochs_run"].isna().all()
