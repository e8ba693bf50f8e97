"""AAEDetector: codes that match the prior, a healthy adversarial game, conditional
sampling, outlier detection, determinism and the error messages."""

import copy
import math
import pickle

import numpy as np
import pytest
import torch
from scipy import special, stats
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from aedetect import AAEDetector
from aedetect.datasets import load_digits_outliers
from aedetect.losses import sliced_wasserstein, slicing_directions
from aedetect.models import aae as aae_model
from aedetect.priors import MixturePrior, NormalPrior, UniformPrior, make_prior, mixture_means

# A simple dataset with a 2-D latent structure: a standard normal pushed through a random
# linear map and tanh into 8 features, plus a little noise (the default code size for 8
# features is 2).
N_ROWS = 400


def manifold_data(n_rows=N_ROWS, seed=0):
    rng = np.random.RandomState(seed)
    t = rng.normal(size=(n_rows, 2))
    weights = rng.normal(size=(2, 8))
    return np.tanh(t @ weights) + 0.05 * rng.normal(size=(n_rows, 8))


def breast_cancer():
    """The standardized tabular dataset of the prior checks: 569 rows, 30 features,
    default code size 7."""
    return StandardScaler().fit_transform(load_breast_cancer(return_X_y=True)[0])


def prior_figures(codes, prior):
    """The figures of issue 13 for codes of the default prior (scale 1, 10 mixture
    components), each the worst over the code dimensions: ``mean_dev``, ``|mean - prior
    mean| / prior sd``; ``ks``, the KS statistic against the prior's marginal (for the
    mixture, two-sample against 200000 prior draws); ``wrong_family``, the number of
    dimensions whose shape (codes standardized by their own mean and sd) is closer to
    the other family (normal vs uniform) than to the prior's; ``share_err`` (mixture),
    the largest gap in points between the share of codes nearest a component and its
    weight."""
    columns = range(codes.shape[1])
    if prior == "mixture":
        means = mixture_means(codes.shape[1], 10, 1.0).numpy()
        draws = means[np.random.RandomState(0).randint(10, size=200000)]
        draws = draws + np.random.RandomState(1).normal(size=draws.shape)
        nearest = ((codes[:, None] - means[None]) ** 2).sum(axis=2).argmin(axis=1)
        shares = np.bincount(nearest, minlength=10) / len(codes)
        return {"mean_dev": (np.abs(codes.mean(axis=0) - draws.mean(axis=0))
                             / draws.std(axis=0)).max(),
                "ks": max(stats.ks_2samp(codes[:, j], draws[:, j]).statistic for j in columns),
                "share_err": 100 * np.abs(shares - 0.1).max()}
    normal, uniform = stats.norm(), stats.uniform(-math.sqrt(3), 2 * math.sqrt(3))
    sd, cdf, other = ((1.0, normal.cdf, uniform.cdf) if prior == "normal"
                      else (1 / math.sqrt(3), uniform.cdf, normal.cdf))
    shape = (codes - codes.mean(axis=0)) / codes.std(axis=0)
    return {"mean_dev": np.abs(codes.mean(axis=0)).max() / sd,
            "ks": max(stats.kstest(codes[:, j] / sd, cdf).statistic for j in columns),
            "wrong_family": sum(stats.kstest(shape[:, j], other).statistic
                                < stats.kstest(shape[:, j], cdf).statistic for j in columns)}


def test_prior_figures_tell_a_match_from_a_miss():
    """The measure the prior tests rely on: draws of the prior pass the issue's targets,
    a shifted cloud and the other family fail them."""
    rng = np.random.RandomState(0)
    normal, uniform = rng.normal(size=(2000, 4)), rng.uniform(-1, 1, size=(2000, 4))
    for draws, prior in ((normal, "normal"), (uniform, "uniform")):
        figures = prior_figures(draws, prior)
        assert figures["mean_dev"] < 0.1 and figures["ks"] < 0.05, prior
        assert figures["wrong_family"] == 0, prior
    assert prior_figures(normal + 0.5, "normal")["mean_dev"] > 0.25
    assert prior_figures(normal + 0.5, "normal")["ks"] > 0.10
    assert prior_figures(uniform * math.sqrt(3), "normal")["wrong_family"] == 4
    assert prior_figures(normal / math.sqrt(3), "uniform")["wrong_family"] == 4
    means = mixture_means(4, 10, 1.0).numpy()
    mixture = means[rng.randint(10, size=2000)] + rng.normal(size=(2000, 4))
    figures = prior_figures(mixture, "mixture")
    assert figures["mean_dev"] < 0.1 and figures["ks"] < 0.05 and figures["share_err"] < 3
    lopsided = mixture[np.argsort(np.arctan2(mixture[:, 1], mixture[:, 0]))[:1500]]
    assert prior_figures(lopsided, "mixture")["share_err"] > 5
    assert prior_figures(rng.normal(size=(2000, 4)), "mixture")["ks"] > 0.10


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These networks are tiny and the batches small: one thread is fastest, and on a
    busy machine two threads spinning on two cores can make training ten times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def X_manifold():
    return manifold_data()


@pytest.fixture(scope="module")
def normal_fit(X_manifold):
    return AAEDetector(prior="normal", random_state=0).fit(X_manifold)


@pytest.fixture(scope="module")
def uniform_fit(X_manifold):
    return AAEDetector(prior="uniform", random_state=0).fit(X_manifold)


@pytest.fixture(scope="module")
def digits():
    return load_digits(return_X_y=True)


@pytest.fixture(scope="module")
def conditional_fit(digits):
    X, y = digits
    return AAEDetector(conditional=True, random_state=0).fit(X / 16, y)


@pytest.fixture(scope="module")
def conditional_quick(digits):
    """For the mechanics of conditional scoring: a few epochs are enough."""
    X, y = digits
    return AAEDetector(conditional=True, max_iter=5, random_state=0).fit(X / 16, y)


# ------------------------------------------------------------ codes vs the prior
def test_discriminator_sees_what_transform_returns(X_manifold):
    """The regularization phase judges eval-mode codes: the inputs the discriminator
    gets for the codes are ``transform``'s output before the centring (a constant shift
    per dimension, ``code_shift``, set after training), not the train-mode codes
    (dropout and batch statistics make those differ)."""
    detector = AAEDetector(random_state=0, max_iter=2).fit(X_manifold)
    model = detector.module_
    x = torch.as_tensor(((X_manifold[:64] - detector.center_) / detector.scale_)
                        .astype(np.float32))
    seen = []
    hook = model.discriminator.register_forward_pre_hook(
        lambda module, args: seen.append(args[0].detach().clone()))
    optimizers = model.configure_optimizers(0.0, 0.0)  # lr 0 everywhere: weights stay
    for optimizer in optimizers.values():
        for group in optimizer.param_groups:
            group["lr"] = 0.0
    model.train()
    with torch.no_grad():
        train_codes = model.encode(x)
    model.training_step(x, x, None, optimizers, torch.Generator().manual_seed(0))
    hook.remove()
    model.eval()
    with torch.no_grad():
        eval_codes = model.encode(x)  # batch norm's running statistics after the step
        eval_codes = eval_codes + model.code_shift  # the normal prior: no code map
    assert model.code_shift.abs().max() > 0  # fit set it
    # calls: prior draws, the codes, the codes again (generator step)
    torch.testing.assert_close(seen[1], eval_codes)
    torch.testing.assert_close(seen[2], eval_codes)
    assert not torch.allclose(seen[1], train_codes, atol=1e-3)


def _fit_codes(X, prior, seed):
    return AAEDetector(prior=prior, random_state=seed).fit(X).transform(X)


# Measured with benchmarks/aae_prior_fit.py (benchmarks/results/aae/prior_fit.md, the
# ``defaults`` rows); the targets: mean_dev <= 0.25, ks <= 0.10, wrong_family 0,
# share_err <= 5.
@pytest.mark.parametrize("prior", ["normal", "uniform"])
def test_codes_match_the_prior_at_the_defaults(prior, monkeypatch):
    """Standardized breast cancer, only prior and random_state set, seed 0. Measured
    (normal) mean within 0.008 prior sd, KS 0.045; (uniform) 0.012, KS 0.051, every
    dimension closer to a uniform's shape. The control: the same fit without the
    prior-matching step (the adversarial game and the centring) misses (measured KS
    0.102 and 0.179, 0 and 7 dimensions of the wrong family)."""
    X = breast_cancer()
    figures = prior_figures(_fit_codes(X, prior, 0), prior)
    assert figures["mean_dev"] <= 0.25 and figures["ks"] <= 0.10, figures
    assert figures["wrong_family"] == 0, figures
    monkeypatch.setattr(aae_model, "PRIOR_MATCH_WEIGHT", 0.0)
    alone = prior_figures(_fit_codes(X, prior, 0), prior)
    assert alone["ks"] > figures["ks"] + 0.03, (alone, figures)


@pytest.mark.parametrize("prior", ["normal", "uniform"])
def test_centring_moves_the_codes_and_nothing_else(prior, monkeypatch):
    """``code_shift`` (set after training) moves ``transform``'s codes onto the prior's
    mean; training, the reconstructions and the reconstruction score are those of the
    same fit without it, and ``decode`` undoes the shift (``decode(transform(x))`` is
    the reconstruction, so prior draws reach the decoder where its codes were)."""
    X = breast_cancer()
    centred = AAEDetector(prior=prior, max_iter=15, random_state=0).fit(X)
    monkeypatch.setattr(aae_model, "CENTRE_CODES", False)
    plain = AAEDetector(prior=prior, max_iter=15, random_state=0).fit(X)
    shift = centred.module_.code_shift.numpy()
    assert not plain.module_.code_shift.any() and np.abs(shift).max() > 0.02
    np.testing.assert_array_equal(centred.reconstruct(X), plain.reconstruct(X))
    for detector in (centred, plain):
        detector.set_params(score_type="reconstruction")
    np.testing.assert_array_equal(centred.score_samples(X), plain.score_samples(X))
    codes, before = centred.transform(X), plain.transform(X)
    if prior == "uniform":  # the shift applies before the erf map
        codes, before = (np.sqrt(2) * special.erfinv(np.clip(c, -1 + 1e-6, 1 - 1e-6))
                         for c in (codes, before))
    np.testing.assert_allclose(codes + shift, before, atol=2e-4)
    assert np.abs(codes.mean(axis=0)).max() < 0.03  # the prior's mean, 0
    assert np.abs(before.mean(axis=0)).max() > 0.03
    model = centred.module_
    x = torch.as_tensor(((X - centred.center_) / centred.scale_).astype(np.float32))
    with torch.no_grad():
        np.testing.assert_allclose(model.decode(model.encode(x)).numpy(),
                                   model.reconstruct(x).numpy(), atol=1e-4)


def test_files_without_code_shift_load_uncentred():
    """A model saved before the centring existed has no ``code_shift``: it loads with
    zeros (its codes as they were)."""
    model = AAEDetector(max_iter=1, random_state=0).fit(breast_cancer()[:100]).module_
    state = {k: v for k, v in model.state_dict().items() if k != "code_shift"}
    copy_ = copy.deepcopy(model)
    copy_.load_state_dict(state)
    assert not copy_.code_shift.any() and model.code_shift.any()


@pytest.mark.slow
@pytest.mark.parametrize("prior", ["normal", "uniform", "mixture"])
def test_codes_match_the_prior_on_digits_over_three_seeds(digits, prior):
    """digits / 16 (code size 16), the defaults, seeds 0-2; the issue's targets. Measured:
    (normal) mean within 0.006 prior sd, KS <= 0.027, every dimension closer to a
    normal's shape than to a uniform's; (uniform) mean within 0.017, KS <= 0.035, no
    dimension of the wrong family; (mixture) mean within 0.008, KS <= 0.051, share
    errors <= 1.9 points. Before the centring: KS 0.086 / 0.102 / 0.111."""
    X = digits[0] / 16
    for seed in range(3):
        codes = _fit_codes(X, prior, seed)
        figures = prior_figures(codes, prior)
        assert figures["mean_dev"] <= 0.25 and figures["ks"] <= 0.10, (seed, figures)
        if prior == "mixture":
            assert figures["share_err"] <= 5, (seed, figures)
        else:
            assert figures["wrong_family"] == 0, (seed, figures)
        if prior == "uniform":
            assert np.all(np.abs(codes) <= 1)  # the erf map keeps codes in the box


@pytest.mark.slow
@pytest.mark.parametrize("prior", ["normal", "uniform", "mixture"])
def test_codes_match_the_prior_on_breast_cancer_over_three_seeds(prior):
    """Standardized breast cancer (code size 7), seeds 0-2; the issue's targets.
    Measured: (normal) mean within 0.010, KS <= 0.069, no dimension of the wrong family;
    (uniform) mean within 0.026, KS <= 0.065, no dimension of the wrong family; (mixture)
    mean within 0.009, KS <= 0.097, share errors <= 2.8 points. Before the centring the
    mixture's KS was 0.107."""
    X = breast_cancer()
    for seed in range(3):
        figures = prior_figures(_fit_codes(X, prior, seed), prior)
        assert figures["mean_dev"] <= 0.25, (seed, figures)
        assert figures["ks"] <= 0.10, (seed, figures)
        if prior == "mixture":
            assert figures["share_err"] <= 5, (seed, figures)
        else:
            assert figures["wrong_family"] == 0, (seed, figures)


def test_adversarial_losses_finite_and_discriminator_does_not_win(normal_fit, uniform_fit):
    for detector in (normal_fit, uniform_fit):
        keys = {"loss", "reconstruction", "discriminator", "generator",
                "discriminator_accuracy", "discriminator_advantage"}
        assert keys <= set(detector.history_[-1])
        for record in detector.history_:
            assert all(math.isfinite(record[key]) for key in keys)
        last = detector.history_[-1]
        # 0.5 is a discriminator that cannot tell, 1 one that wins outright.
        assert last["discriminator_accuracy"] < 0.85
        # Cross-entropy of a discriminator at chance is 2 log 2 = 1.39; one that wins
        # outright drives it towards 0.
        assert last["discriminator"] > 0.8
        # the stopping rule watches the reconstruction
        assert last["loss"] == pytest.approx(last["reconstruction"], rel=1e-6)


# ------------------------------------------------------------------ conditional
@pytest.mark.slow
def test_conditional_sampling_produces_the_requested_class(conditional_fit, digits):
    X, y = digits
    X = X / 16
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)
    labels = np.repeat(conditional_fit.classes_, 100)
    samples = conditional_fit.sample(len(labels), y=labels, random_state=0)
    assert samples.shape == (len(labels), 64)
    read = classifier.predict(samples)
    # Chance is 0.1; every class measured >= 0.98 on seeds 0-2 (200 samples each).
    for k in conditional_fit.classes_:
        assert np.mean(read[labels == k] == k) >= 0.9, k


@pytest.mark.slow
def test_conditional_code_carries_style_not_class(conditional_fit, digits):
    X, y = digits
    codes = conditional_fit.transform(X / 16)
    accuracy = cross_val_score(LogisticRegression(max_iter=1000), codes, y, cv=3).mean()
    assert accuracy < 0.2  # chance is 0.1; measured 0.07 to 0.09 on seeds 0-2


def test_conditional_scoring_needs_no_labels(conditional_quick, digits):
    X, y = digits
    X = X / 16
    scores = conditional_quick.score_samples(X[:50])
    assert scores.dtype == np.float64 and np.all(np.isfinite(scores))
    alone = np.array([conditional_quick.score_samples(X[i:i + 1])[0] for i in range(5)])
    np.testing.assert_array_equal(alone, scores[:5])
    assert conditional_quick.reconstruct(X[:5]).shape == (5, 64)
    cycled = conditional_quick.sample(20, random_state=0)
    assert cycled.shape == (20, 64)


def test_conditional_scoring_takes_the_best_class_of_every_class(conditional_quick, digits):
    X, _ = digits
    model, rows = conditional_quick.module_, X[:60] / 16
    x = torch.as_tensor(((rows - conditional_quick.center_) / conditional_quick.scale_)
                        .astype(np.float32))
    with torch.no_grad():
        codes = model.encode(x)
        errors = torch.stack([
            (model.decode(codes, torch.full((60,), k)) - x).pow(2).mean(dim=1)
            for k in range(len(conditional_quick.classes_))], dim=1).numpy()
    reconstruction = -conditional_quick.set_params(
        score_type="reconstruction").score_samples(rows)
    conditional_quick.set_params(score_type="combined")
    np.testing.assert_allclose(reconstruction, errors.min(axis=1), rtol=1e-5)
    # the best class differs between rows: every class is tried, not only the first
    assert len(np.unique(errors.argmin(axis=1))) > 1


def test_conditional_code_size_rule(digits):
    """With the class given to the decoder the code needs only the style: 2 by default
    (the usual rule would give 16 here), an explicit latent_dim wins."""
    X, y = digits
    assert AAEDetector(conditional=True, max_iter=1).fit(X[:200], y[:200]).latent_dim_ == 2
    assert AAEDetector(max_iter=1).fit(X[:200]).latent_dim_ == 16
    assert AAEDetector(conditional=True, latent_dim=5, max_iter=1).fit(
        X[:200], y[:200]).latent_dim_ == 5


def test_conditional_label_errors(digits):
    X, y = digits
    with pytest.raises(ValueError, match="needs class labels"):
        AAEDetector(conditional=True, max_iter=1).fit(X)
    with pytest.raises(ValueError, match="labels but X has"):
        AAEDetector(conditional=True, max_iter=1).fit(X, y[:-1])
    with pytest.raises(ValueError, match="Unknown label type"):
        AAEDetector(conditional=True, max_iter=1).fit(X, np.linspace(0, 1, len(X)))
    detector = AAEDetector(conditional=True, latent_dim=2, max_iter=1).fit(X[:200], y[:200])
    with pytest.raises(ValueError, match="not seen in fit"):
        detector.sample(2, y=[3, 11])
    with pytest.raises(ValueError, match="n_samples=3"):
        detector.sample(3, y=[1, 2])


def test_y_is_ignored_without_conditional(X_manifold):
    y = np.arange(len(X_manifold)) % 3
    params = dict(latent_dim=2, max_iter=3, random_state=0)
    with_y = AAEDetector(**params).fit(X_manifold, y)
    without = AAEDetector(**params).fit(X_manifold)
    np.testing.assert_array_equal(with_y.score_samples(X_manifold),
                                  without.score_samples(X_manifold))
    assert not hasattr(with_y, "classes_")
    with pytest.raises(ValueError, match="conditional=True"):
        with_y.sample(2, y=[0, 1])


# --------------------------------------------------------------------- detection
def test_auc_one_class_digits(digits):
    """Trained on 120 images of the digit 1; the other digits are the outliers."""
    X, y = digits
    rng = np.random.RandomState(0)
    ones = rng.permutation(np.flatnonzero(y == 1))
    others = rng.permutation(np.flatnonzero(y != 1))[:200]
    detector = AAEDetector(random_state=0).fit(X[ones[:120]])
    X_test = X[np.r_[ones[120:], others]]
    truth = np.r_[np.zeros(len(ones) - 120), np.ones(len(others))]
    floors = {"combined": 0.95, "reconstruction": 0.95, "latent": 0.85}  # see digits_figures.md
    for score_type, floor in floors.items():
        scores = detector.set_params(score_type=score_type).score_samples(X_test)
        assert roc_auc_score(truth, -scores) > floor, score_type


@pytest.mark.slow
def test_auc_contaminated_digits():
    """Digits 0-4 with 5 % of sevens mixed into the training data."""
    X, y = load_digits_outliers()
    # One seed's AUC moves with the CPU's rounding (seed 0: 0.704 on one machine, 0.662
    # on another), so the floor holds the mean of three: measured 0.777 (0.770, 0.765,
    # 0.795) with the torch 2.13 CPU wheel (0.708 before issue 13's training changes).
    aucs = []
    for seed in range(3):
        detector = AAEDetector(random_state=seed).fit(X)
        aucs.append(roc_auc_score(y, -detector.score_samples(X)))
        labels = detector.predict(X)
        assert np.mean(labels[y == 1] == -1) > np.mean(labels[y == 0] == -1)
    assert np.mean(aucs) > 0.73, aucs


def test_combined_score_is_the_documented_combination(normal_fit, X_manifold):
    detector = copy.deepcopy(normal_fit)
    reconstruction = detector.set_params(score_type="reconstruction").score_samples(X_manifold)
    latent = detector.set_params(score_type="latent").score_samples(X_manifold)
    combined = detector.set_params(score_type="combined").score_samples(X_manifold)
    n_features, d = 8, 2
    expected = -(n_features * -reconstruction / detector.reconstruction_variance_
                 - d * latent) / (n_features + d)
    np.testing.assert_allclose(combined, expected, rtol=1e-5, atol=1e-6)
    codes = detector.transform(X_manifold)
    np.testing.assert_allclose(latent, 1 - (codes ** 2).mean(axis=1), rtol=1e-5, atol=1e-6)
    # the typical training error: a median, which one extreme row cannot inflate
    median = np.quantile(-reconstruction, 0.5, method="lower")  # torch's median of an even count
    assert detector.reconstruction_variance_ == pytest.approx(median, rel=1e-4)


def test_scores_finite_far_outside_a_bounded_prior(uniform_fit, X_manifold):
    far = X_manifold[:5] * 50
    detector = copy.deepcopy(uniform_fit)
    # the erf map keeps every code in the box, however far the row
    assert np.all(np.abs(detector.transform(far)) <= 1)
    assert np.all(np.abs(detector.transform(X_manifold)) < 1)
    for score_type in ("combined", "latent"):
        scores = detector.set_params(score_type=score_type).score_samples(far)
        assert scores.dtype == np.float64 and np.all(np.isfinite(scores))
    prior = UniformPrior(2, 1.0)
    z = torch.tensor([[0.5, -0.5], [2.0, 0.0], [4.0, 0.0]])
    # 0 inside the box; outside, minus the mean squared distance in units of 1/sqrt(3).
    expected = torch.tensor([0.0, -(3.0 * 1.0) / 2, -(3.0 * 9.0) / 2])
    torch.testing.assert_close(prior.latent_score(z), expected)


# ----------------------------------------------------------- determinism, subsets
def test_same_seed_same_everything(X_manifold):
    params = dict(latent_dim=2, max_iter=5, random_state=3)
    state = torch.random.get_rng_state()
    first = AAEDetector(**params).fit(X_manifold)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    second = AAEDetector(**params).fit(X_manifold)
    np.testing.assert_array_equal(first.score_samples(X_manifold),
                                  second.score_samples(X_manifold))
    np.testing.assert_array_equal(first.transform(X_manifold), second.transform(X_manifold))
    np.testing.assert_array_equal(first.sample(7, random_state=0),
                                  second.sample(7, random_state=0))
    assert first.history_[-1]["loss"] == second.history_[-1]["loss"]
    assert torch.equal(state, torch.random.get_rng_state())
    other = AAEDetector(**{**params, "random_state": 4}).fit(X_manifold)
    assert not np.array_equal(first.score_samples(X_manifold), other.score_samples(X_manifold))
    assert not np.array_equal(first.sample(7, random_state=0), first.sample(7, random_state=1))


@pytest.mark.parametrize("score_type", ["combined", "reconstruction", "latent"])
def test_scores_are_subset_invariant(normal_fit, X_manifold, score_type):
    detector = copy.deepcopy(normal_fit).set_params(score_type=score_type)
    X = X_manifold[:41]
    full = detector.score_samples(X)
    for size in (1, 2, 3, 5, 16):
        parts = np.concatenate([detector.score_samples(X[i:i + size])
                                for i in range(0, len(X), size)])
        np.testing.assert_array_equal(parts, full)
    np.testing.assert_array_equal(detector.score_samples(X[::-1]), full[::-1])
    np.testing.assert_array_equal(detector.transform(X[:1]), detector.transform(X)[:1])


# ----------------------------------------------------------------------- priors
def test_prior_latent_scores_are_centred_on_prior_draws():
    with torch.random.fork_rng():
        torch.manual_seed(5)
        for prior in (NormalPrior(3, 2.0), UniformPrior(3, 2.0), MixturePrior(3, 5, 0.5),
                      make_prior(torch.distributions.MultivariateNormal(
                          torch.zeros(3), torch.eye(3) * 0.3), 3)):
            draws = prior.sample(20000)
            assert draws.shape == (20000, 3)
            assert abs(float(prior.latent_score(draws).mean())) < 0.05
    assert float(NormalPrior(2, 1.0).latent_score(torch.zeros(1, 2))) == 1.0


def test_mixture_means_are_four_scales_apart():
    means = mixture_means(3, 6, 0.5)
    gaps = torch.cdist(means, means) + torch.eye(6) * 100
    torch.testing.assert_close(gaps.min(dim=1).values, torch.full((6,), 2.0))
    assert torch.all(means[:, 2] == 0)
    line = mixture_means(1, 3, 1.0)
    torch.testing.assert_close(line[:, 0], torch.tensor([-4.0, 0.0, 4.0]))


def test_uniform_code_unmap_inverts_the_code_map():
    prior = UniformPrior(3, 2.0)
    draws = prior.sample(1000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(prior.code_map(prior.code_unmap(draws)), draws)
    faces = prior.code_unmap(torch.tensor([[-2.0, 2.0, 0.0]]))
    assert torch.all(torch.isfinite(faces)) and float(faces[0, 1]) > 4
    # the unmapped uniform is a standard normal
    h = prior.code_unmap(prior.sample(20000, generator=torch.Generator().manual_seed(1)))
    assert stats.kstest(h[:, 0].numpy(), "norm").statistic < 0.015


# ------------------------------------------------------ the prior-matching step
def test_sliced_wasserstein_is_zero_for_the_same_sample_and_grows_with_a_shift():
    generator = torch.Generator().manual_seed(0)
    draws = torch.randn(64, 3, generator=generator)
    directions = slicing_directions(torch.randn(3, 5, generator=generator))
    assert directions.shape == (3, 8)
    torch.testing.assert_close(directions[:, :3], torch.eye(3))
    torch.testing.assert_close(directions.norm(dim=0), torch.ones(8))
    shuffled = draws[torch.randperm(64, generator=generator)]
    assert float(sliced_wasserstein(shuffled, draws, directions)) == pytest.approx(0, abs=1e-12)
    # a shift by c along the first axis: c^2 on that axis, (c u_1)^2 along direction u
    shift = torch.tensor([0.5, 0.0, 0.0])
    expected = float((0.5 * directions[0]).pow(2).mean())
    assert float(sliced_wasserstein(draws + shift, draws, directions)) == pytest.approx(expected)
    # k times as many draws: each code against the draws' quantile at its rank
    many = torch.randn(8 * 64, 3, generator=generator)
    near = float(sliced_wasserstein(draws, many, directions))
    far = float(sliced_wasserstein(2 * draws, many, directions))
    assert near < 0.2 < 0.5 < far  # 64 draws of N(0, 1) vs its 512-draw quantiles; doubled
    variances = torch.full((8,), 4.0)
    assert float(sliced_wasserstein(2 * draws, many, directions, variances)) == \
        pytest.approx(far / 4)
    with pytest.raises(ValueError, match="whole multiple"):
        sliced_wasserstein(draws, many[:100], directions)


def test_prior_matching_step_is_on_and_draws_from_the_fit_generator(X_manifold):
    """At the defaults each sub-batch takes the prior-matching step (its distance in
    ``history_``, falling as the codes reach the prior); its draws and directions come
    from the fit's generator: torch's global one is untouched, a seed repeats the fit."""
    assert aae_model.PRIOR_MATCH_WEIGHT > 0
    state = torch.random.get_rng_state()
    first = AAEDetector(max_iter=15, random_state=0).fit(X_manifold)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert "prior_match" in first.module_.configure_optimizers(1e-3, 0.0)
    curve = [record["prior_match"] for record in first.history_]
    assert all(math.isfinite(value) for value in curve)
    assert curve[-1] < 0.5 * curve[0]
    again = AAEDetector(max_iter=15, random_state=0).fit(X_manifold)
    np.testing.assert_array_equal(again.transform(X_manifold), first.transform(X_manifold))
    other = AAEDetector(max_iter=15, random_state=1).fit(X_manifold)
    assert [r["prior_match"] for r in other.history_] != curve


def test_conditional_fits_take_no_prior_matching_step(conditional_quick):
    """With conditional=True the discriminator judges each class's codes against the
    prior; the class-blind matching step is off (it measured worse samples)."""
    assert "prior_match" not in conditional_quick.history_[-1]
    assert "prior_match" not in conditional_quick.module_.configure_optimizers(1e-3, 0.0)


def test_user_distribution_prior(X_manifold):
    prior = torch.distributions.Independent(
        torch.distributions.Normal(torch.zeros(3), torch.full((3,), 0.5)), 1)
    detector = AAEDetector(prior=prior, max_iter=3, random_state=0).fit(X_manifold)
    assert detector.latent_dim_ == 3  # taken from the prior
    assert detector.transform(X_manifold).shape == (len(X_manifold), 3)
    assert detector.sample(4, random_state=0).shape == (4, 8)
    scores = detector.score_samples(X_manifold)
    assert np.all(np.isfinite(scores))
    restored = pickle.loads(pickle.dumps(detector))
    np.testing.assert_array_equal(restored.score_samples(X_manifold), scores)
    cloned = clone(detector)
    assert cloned.prior is not prior and cloned.prior.event_shape == prior.event_shape


# inside the box the uniform's density is flat: every training code scores alike (the
# detector warns that its training scores cannot tell rows apart)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_user_prior_with_bounded_support_gives_finite_scores(X_manifold):
    prior = torch.distributions.Independent(
        torch.distributions.Uniform(-torch.ones(2), torch.ones(2)), 1)
    detector = AAEDetector(prior=prior, score_type="latent", max_iter=3,
                           random_state=0).fit(X_manifold)
    far = detector.score_samples(X_manifold * 100)
    assert np.all(np.isfinite(far))
    floor = float(detector.module_.prior.floor)
    codes = detector.transform(X_manifold * 100)
    outside = np.any(np.abs(codes) > 1, axis=1)
    assert outside.any()
    np.testing.assert_allclose(far[outside], floor)


def test_user_prior_shape_errors(X_manifold):
    per_dimension = torch.distributions.Normal(torch.zeros(2), torch.ones(2))
    with pytest.raises(ValueError, match="Independent"):
        AAEDetector(prior=per_dimension, max_iter=1).fit(X_manifold)
    vector = torch.distributions.MultivariateNormal(torch.zeros(3), torch.eye(3))
    with pytest.raises(ValueError, match=r"event_shape \(3,\) but latent_dim=2"):
        AAEDetector(prior=vector, latent_dim=2, max_iter=1).fit(X_manifold)


def test_invalid_parameters_are_named(X_manifold):
    with pytest.raises(ValueError, match="'prior' parameter"):
        AAEDetector(prior="cauchy").fit(X_manifold)
    with pytest.raises(ValueError, match="'n_prior_components' parameter"):
        AAEDetector(n_prior_components=1).fit(X_manifold)
    with pytest.raises(ValueError, match="'score_type' parameter"):
        AAEDetector(score_type="elbo").fit(X_manifold)


# ------------------------------------------------------------------ the rest
def test_sample_is_in_the_original_units(X_manifold):
    X = 1000.0 + 50.0 * X_manifold
    detector = AAEDetector(random_state=0).fit(X)
    samples = detector.sample(500, random_state=0)
    assert samples.shape == (500, 8)
    # Within half a standard deviation of the data's mean, feature by feature.
    assert np.all(np.abs(samples.mean(axis=0) - X.mean(axis=0)) < 0.5 * X.std(axis=0))
    assert np.all(samples.std(axis=0) < 2 * X.std(axis=0))
    with pytest.raises(ValueError, match="positive int"):
        detector.sample(0)


def test_early_stopping_watches_reconstruction_and_advantage(X_manifold):
    detector = AAEDetector(latent_dim=2, early_stopping=True, max_iter=8,
                           random_state=0).fit(X_manifold)
    assert all(math.isfinite(r["val_loss"]) for r in detector.history_)
    assert detector.best_loss_ == min(r["val_loss"] for r in detector.history_)
    assert not hasattr(detector, "_prior_bank")
    assert detector.reconstruction_variance_ > 0


def test_prior_match_options_per_prior_leave_the_normal_prior_alone(X_manifold):
    """PRIOR_MATCH_BY_PRIOR: the uniform's and the mixture's faster prior-matching step;
    the normal prior (the default) takes the module's constants."""
    rates = {}
    for prior in ("normal", "uniform", "mixture"):
        model = AAEDetector(prior=prior, max_iter=1, random_state=0).fit(X_manifold[:100]).module_
        rates[prior] = model.configure_optimizers(1e-3, 0.0)["prior_match"].param_groups[0]["lr"]
    assert rates == pytest.approx({"normal": 1e-3, "uniform": 2e-3, "mixture": 1.5e-3})


def test_functional_step_takes_the_eager_steps_with_two_matching_steps(X_manifold, monkeypatch):
    """PRIOR_MATCH_STEPS > 1 (per prior): the compiled path's draws (``step_draws``) and
    steps are the eager ones, from the same generator."""
    from aedetect import networks
    from aedetect.models.compiled import AdamState, run_step

    monkeypatch.setitem(aae_model.PRIOR_MATCH_BY_PRIOR, "UniformPrior",
                        {"PRIOR_MATCH_LR_FACTOR": 2.0, "PRIOR_MATCH_STEPS": 2})
    X = torch.as_tensor(X_manifold[:320], dtype=torch.float32)
    model = AAEDetector(prior="uniform", max_iter=1, dropout=0.0, batch_size=64,
                        random_state=0).fit(X.numpy()).module_
    eager, functional = copy.deepcopy(model).train(), copy.deepcopy(model).train()
    optimizers = eager.configure_optimizers(1e-3, 1e-5)
    adam = {name: AdamState(functional, optimizer, name) for name, optimizer in
            functional.configure_optimizers(1e-3, 1e-5).items()}
    for step in range(3):
        x = X[64 * step:64 * (step + 1)]
        expected = eager.training_step(x, x, None, optimizers,
                                       torch.Generator().manual_seed(step))
        generator = torch.Generator().manual_seed(step)
        draws = functional.step_draws(x.shape[0], generator)
        assert len(draws) == 5  # discriminator draws, then two (draws, directions) pairs
        losses = run_step(functional, x, x, None, networks.StepNoise(generator=generator),
                          adam, draws)
        for name in expected:
            assert float(losses[name]) == pytest.approx(float(expected[name]), rel=1e-4,
                                                        abs=1e-6), name
    for (name, a), b in zip(eager.state_dict().items(), functional.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
