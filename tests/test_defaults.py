"""The default rules chosen by the benchmark (issue 6): robust scaling, trimmed
training, size rules, shared defaults and the fused optimizer."""

import inspect

import numpy as np
import pytest
import torch

from aedetect import AEDetector
from aedetect._data import IQR_TO_STD
from aedetect._structure import default_hidden_sizes, default_latent_dim
from aedetect.losses import kept_rows, trimmed_mean
from aedetect.models.base import adam
from aedetect.networks import Dropout

# Every detector's signature starts with the base's parameters, up to ``callbacks``.
_ALL = list(inspect.signature(AEDetector).parameters)
SHARED = _ALL[:_ALL.index("callbacks") + 1]


def test_every_detector_shares_the_default_of_every_shared_parameter(detector_class):
    ours = inspect.signature(detector_class).parameters
    reference = inspect.signature(AEDetector).parameters
    assert list(ours)[:len(SHARED)] == SHARED
    for name in SHARED:
        assert ours[name].default == reference[name].default, name


def test_benchmarked_defaults():
    params = AEDetector().get_params()
    assert params["scaling"] == "auto" and params["batch_norm"] == "auto"
    assert params["dropout"] == "auto" and params["trim_fraction"] == 0.1
    assert params["max_iter"] == 100 and params["batch_size"] == 256


def _layers(detector, kind):
    return [m for m in detector.module_.modules() if isinstance(m, kind)]


def test_auto_regularizes_dense_networks_only():
    rng = np.random.RandomState(0)
    dense = AEDetector(max_iter=1, random_state=0).fit(rng.normal(size=(40, 6)))
    assert {m.p for m in _layers(dense, Dropout)} == {0.2}
    assert _layers(dense, torch.nn.BatchNorm1d)
    conv = AEDetector(architecture="conv", conv_channels=(4,), max_iter=1,
                      random_state=0).fit(rng.rand(20, 8, 8))
    assert not _layers(conv, Dropout)
    assert not _layers(conv, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))
    explicit = AEDetector(architecture="conv", conv_channels=(4,), dropout=0.1,
                          batch_norm=True, max_iter=1, random_state=0).fit(rng.rand(20, 8, 8))
    assert {m.p for m in _layers(explicit, Dropout)} == {0.1}
    assert _layers(explicit, torch.nn.BatchNorm2d)


@pytest.mark.parametrize("n_features, hidden, latent", [
    (2, (16, 8), 2), (6, (24, 12), 2), (21, (84, 42), 5), (100, (256, 128), 25),
    (1000, (256, 128), 32)])
def test_default_size_rules(n_features, hidden, latent):
    assert default_hidden_sizes(n_features) == hidden
    assert default_latent_dim(n_features) == latent


# ------------------------------------------------------------- scaling
def test_robust_scaling_is_median_and_iqr_with_fallbacks():
    rng = np.random.RandomState(0)
    X = np.column_stack([rng.normal(5, 2, 400),               # ordinary feature
                         (rng.rand(400) < 0.1) * 3.0,          # quartiles coincide
                         np.full(400, 7.0)])                   # constant
    detector = AEDetector(max_iter=1, random_state=0).fit(X)
    q25, q75 = np.percentile(X[:, 0], [25, 75])
    np.testing.assert_allclose(detector.center_, np.median(X, axis=0))
    np.testing.assert_allclose(detector.scale_, [(q75 - q25) / IQR_TO_STD, X[:, 1].std(), 1.0])
    assert abs(detector.scale_[0] - 2.0) < 0.25                # estimates the std


def test_robust_scaling_ignores_outliers_that_standard_scaling_follows():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(500, 3))
    X[:25] += 50.0                                             # 5% far outliers
    robust = AEDetector(max_iter=1, random_state=0).fit(X)
    standard = AEDetector(scaling="standard", max_iter=1, random_state=0).fit(X)
    assert np.all(np.abs(robust.center_) < 0.3) and np.all(robust.scale_ < 1.3)
    assert np.all(standard.center_ > 2.0) and np.all(standard.scale_ > 10.0)


# ------------------------------------------------------------ trimming
def test_trimmed_loss_drops_the_largest_rows_from_the_gradient():
    x = torch.arange(8, dtype=torch.float32, requires_grad=True)
    row_losses = x.pow(2)
    loss = trimmed_mean(row_losses, 0.25)
    assert float(loss.detach()) == pytest.approx(np.mean(np.arange(6) ** 2))  # ceil(0.75 * 8)
    loss.backward()
    assert torch.all(x.grad[6:] == 0) and torch.all(x.grad[1:6] > 0)
    assert kept_rows(row_losses, 0.0) is None
    plain = trimmed_mean(row_losses.detach(), 0.0)
    assert float(plain) == float(row_losses.detach().mean())


def test_trimming_keeps_training_outliers_badly_reconstructed():
    # 5% scattered outliers mixed into the training rows: with the trimmed loss the
    # network learns them less, so their error stands further above the inliers'.
    for seed in range(3):
        rng = np.random.RandomState(seed)
        inliers = np.tanh(rng.normal(size=(475, 2)) @ rng.normal(size=(2, 8)))
        inliers += 0.05 * rng.normal(size=inliers.shape)
        X = np.vstack([inliers, rng.uniform(-1.5, 1.5, size=(25, 8))])
        separation = {}
        for trim in (0.0, 0.1):
            error = -AEDetector(trim_fraction=trim, max_iter=100, random_state=0).fit(
                X).score_samples(X)
            separation[trim] = np.median(error[475:]) / np.median(error[:475])
        assert separation[0.1] > separation[0.0] > 5.0, (seed, separation)


def test_trim_fraction_is_validated():
    with pytest.raises(ValueError, match="trim_fraction"):
        AEDetector(trim_fraction=0.5).fit(np.zeros((10, 2)))


# ----------------------------------------------------------- optimizer
def test_adam_is_fused_where_torch_supports_it():
    optimizer = adam(torch.nn.Linear(3, 2).parameters(), 0.01, 0.1)
    assert optimizer.defaults["lr"] == 0.01 and optimizer.defaults["weight_decay"] == 0.1
    version = tuple(int(part) for part in torch.__version__.split(".")[:2])
    if version >= (2, 4):
        assert optimizer.defaults["fused"] is True
