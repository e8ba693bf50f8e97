"""The trainer and its callbacks, the models' training and validation losses, seeding
and fitting beside scoring threads."""

import copy
import math
import threading

import numpy as np
import pytest
import torch
from sklearn.utils import check_random_state

from aedetect import AAEDetector, AEDetector, VAEDetector
from aedetect._fitting import validation_split
from aedetect._training import Callback, DivergenceGuard, EarlyStopping, Trainer, batch_indices


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 3)) @ rng.normal(size=(3, 8)) + 0.05 * rng.normal(size=(300, 8))
    return np.vstack([X, rng.uniform(-4, 4, size=(15, 8))])


class Recorder(Callback):
    """Records every hook and a copy of the weights after each epoch."""

    def __init__(self):
        self.events, self.states = [], []

    def on_fit_begin(self, detector, X):
        self.events.append("fit_begin")

    def on_train_begin(self, trainer):
        self.events.append("train_begin")

    def on_epoch_begin(self, trainer, epoch):
        self.events.append(f"epoch_begin {epoch}")

    def on_batch_end(self, trainer, batch, losses):
        assert set(losses) >= {"loss"} and all(v.dim() == 0 for v in losses.values())
        self.events.append("batch")

    def on_epoch_end(self, trainer, record):
        self.events.append(f"epoch_end {record['epoch']}")
        self.states.append(copy.deepcopy(trainer.model.state_dict()))

    def on_train_end(self, trainer, error):
        self.events.append(f"train_end {error!r}")

    def on_fit_end(self, detector, error):
        self.events.append(f"fit_end {error!r}")


def test_callback_hooks_run_in_order_and_defaults_do_nothing(blobs):
    recorder = Recorder()
    AEDetector(max_iter=2, batch_size=100, n_iter_no_change=100, random_state=0,
               callbacks=[recorder, Callback()]).fit(blobs)
    batches = ["batch"] * 4  # 315 rows in batches of 100: the last 15 form their own
    assert recorder.events == ["fit_begin", "train_begin",
                               "epoch_begin 1", *batches, "epoch_end 1",
                               "epoch_begin 2", *batches, "epoch_end 2",
                               "train_end None", "fit_end None"]


def test_a_callback_can_stop_training(blobs):
    class StopAfterTwo(Callback):
        def on_epoch_end(self, trainer, record):
            trainer.stop_training = record["epoch"] == 2

    detector = AEDetector(max_iter=50, callbacks=[StopAfterTwo()], random_state=0).fit(blobs)
    assert detector.n_iter_ == 2


def test_early_stopping_restores_the_weights_of_the_best_epoch(blobs):
    recorder = Recorder()
    detector = AEDetector(max_iter=60, early_stopping=True, n_iter_no_change=5, tol=0.0,
                          learning_rate_init=0.02, random_state=0,
                          callbacks=[recorder]).fit(blobs)
    val = [record["val_loss"] for record in detector.history_]
    assert detector.best_epoch_ == 1 + int(np.argmin(val)) < detector.n_iter_
    best = recorder.states[detector.best_epoch_ - 1]
    last = recorder.states[-1]
    state = detector.module_.state_dict()
    assert all(torch.equal(state[key], best[key]) for key in best)
    assert not all(torch.equal(best[key], last[key]) for key in best)


def _validation_rows(detector, X):
    """The rows fit held out: the same draws of ``random_state`` as ``fit``."""
    rng = check_random_state(detector.random_state)
    rng.randint(np.iinfo(np.int32).max)
    return X[validation_split(detector, X.shape[0], rng)[1]]


def test_validation_loss_is_the_held_out_error_lower_is_better(blobs):
    detector = AEDetector(max_iter=30, early_stopping=True, n_iter_no_change=100,
                          random_state=0).fit(blobs)
    val = [record["val_loss"] for record in detector.history_]
    assert min(val) > 0 and val[-1] < val[0]  # an error that training lowers
    # after restoring the best epoch, the held-out rows' mean error is its val_loss
    held_out = _validation_rows(detector, blobs)
    assert -detector.score_samples(held_out).mean() == pytest.approx(detector.best_loss_,
                                                                     rel=1e-5)


def test_vae_validation_loss_is_in_the_units_of_the_training_loss(blobs):
    params = {"max_iter": 40, "early_stopping": True, "n_iter_no_change": 100,
              "random_state": 0}
    plain = VAEDetector(**params).fit(blobs)
    scaled = VAEDetector(**params).fit(blobs * 1000.0)
    for detector in (plain, scaled):
        last = detector.history_[-1]
        # same quantity on other rows: within a factor, not off by sum(log scale_)
        assert 0.5 < last["val_loss"] / last["loss"] < 2.0, last
    # the network sees the same scaled data, so the curves do not change with the units
    np.testing.assert_allclose([r["val_loss"] for r in plain.history_],
                               [r["val_loss"] for r in scaled.history_], rtol=1e-3)
    held_out = _validation_rows(plain, blobs)
    model = plain.module_
    x = torch.as_tensor(((held_out - plain.center_) / plain.scale_).astype(np.float32))
    with torch.no_grad():
        expected = model.validation_loss(x).mean()
        elbo = model.score(x, "elbo") + model.log_unit_change  # beta=1: minus the ELBO
    assert plain.history_[-1]["val_loss"] == pytest.approx(float(expected), rel=1e-5)
    assert float(expected) == pytest.approx(-float(elbo.mean()), rel=1e-5)


def test_aae_watches_the_reconstruction(blobs):
    """Issue 13: a discriminator that learns raises its advantage long before the codes
    reach the prior, so the AAE's watched loss is the reconstruction alone."""
    detector = AAEDetector(latent_dim=2, max_iter=12, tol=0.0, n_iter_no_change=100,
                           random_state=0).fit(blobs)
    for record in detector.history_:
        assert record["loss"] == pytest.approx(record["reconstruction"], rel=1e-6)
        assert np.isfinite(record["discriminator_advantage"])
    watched = [record["loss"] for record in detector.history_]
    assert detector.best_epoch_ == 1 + int(np.argmin(watched))
    assert detector.best_loss_ == pytest.approx(min(watched))


def test_early_stopping_callback_stops_after_patience():
    class Model(torch.nn.Module):
        pass

    trainer = type("T", (), {"model": Model(), "stop_training": False})()
    stopping = EarlyStopping(tol=0.1, patience=2)
    stopping.on_train_begin(trainer)
    for epoch, loss in enumerate([1.0, 0.5, 0.45, 0.44], start=1):
        stopping.on_epoch_end(trainer, {"epoch": epoch, "loss": loss})
    assert stopping.best_epoch == 2 and stopping.best_loss == 0.5 and trainer.stop_training


def test_batches_cover_every_row_once_and_merge_a_lone_last_row():
    generator = torch.Generator().manual_seed(0)
    batches = batch_indices(11, 5, generator)
    assert [len(b) for b in batches] == [5, 6]
    assert sorted(torch.cat(batches).tolist()) == list(range(11))


def test_divergence_keeps_the_previous_fit(blobs):
    detector = AEDetector(max_iter=3, random_state=0).fit(blobs)
    before = detector.score_samples(blobs)
    with pytest.raises(ValueError, match="diverged at epoch 1"):
        detector.set_params(learning_rate_init=1e30).fit(blobs * 1e30)
    np.testing.assert_array_equal(detector.score_samples(blobs), before)


def test_fit_never_touches_global_generators(detector_class, blobs):
    cpu = torch.random.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    detector_class(max_iter=3, random_state=0, noise=0.1).fit(blobs)
    assert torch.equal(torch.random.get_rng_state(), cpu)
    for before, after in zip(cuda, torch.cuda.get_rng_state_all()):
        assert torch.equal(before, after)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_on_either_device_leaves_every_cuda_generator_alone(detector_class, blobs):
    cuda = torch.cuda.get_rng_state_all()
    cpu = torch.random.get_rng_state()
    for device in ("cpu", "cuda"):
        detector_class(max_iter=2, random_state=0, device=device).fit(blobs)
    assert torch.equal(torch.random.get_rng_state(), cpu)
    assert all(torch.equal(a, b) for a, b in zip(cuda, torch.cuda.get_rng_state_all()))


def test_scoring_from_another_thread_during_fit(blobs):
    """A thread scoring while the detector refits sees the previous model, and the
    refit is the same as an undisturbed one."""
    params = {"max_iter": 25, "random_state": 0, "dropout": 0.2}
    detector = AEDetector(**params).fit(blobs[:200])
    previous = detector.score_samples(blobs)
    undisturbed = AEDetector(**params).fit(blobs).score_samples(blobs)
    seen, started, done = [], threading.Event(), threading.Event()

    class Signal(Callback):
        def on_epoch_end(self, trainer, record):
            started.set()

    def score_while_fitting():
        started.wait(30)
        while not done.is_set():
            seen.append(detector.score_samples(blobs))

    thread = threading.Thread(target=score_while_fitting)
    thread.start()
    detector.set_params(callbacks=[Signal()]).fit(blobs)
    done.set()
    thread.join(30)
    assert seen, "the scoring thread never ran during the fit"
    for scores in seen[:-1]:  # the last call may have started after the commit
        np.testing.assert_array_equal(scores, previous)
    np.testing.assert_array_equal(detector.score_samples(blobs), undisturbed)


def test_trainer_trains_any_model_with_the_contract():
    class Mean(torch.nn.Module):
        """Learns the mean of its rows: the trainer knows nothing else about it."""

        def __init__(self):
            super().__init__()
            self.mu = torch.nn.Parameter(torch.zeros(2))

        def configure_optimizers(self, learning_rate, weight_decay):
            return {"main": torch.optim.SGD(self.parameters(), lr=learning_rate)}

        def training_step(self, inputs, target, y, optimizers, generator):
            loss = (inputs - self.mu).pow(2).sum(dim=1).mean()
            optimizers["main"].zero_grad()
            loss.backward()
            optimizers["main"].step()
            return {"loss": loss.detach()}

        def validation_loss(self, x):
            return (x - self.mu).pow(2).sum(dim=1)

    X = torch.randn(200, 2, generator=torch.Generator().manual_seed(0)) + 3.0
    model = Mean()
    history = Trainer(max_iter=30, batch_size=50, generator=torch.Generator().manual_seed(0),
                      callbacks=[], chunk_rows=64).fit(
        model, model.configure_optimizers(0.1, 0.0), X, X_val=X[:40])
    assert len(history) == 30 and not model.training
    np.testing.assert_allclose(model.mu.detach().numpy(), X.mean(dim=0).numpy(), atol=0.15)
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert math.isfinite(history[-1]["loss"])


# ----------------------------------------------------- gaps found by mutation testing
def test_denoising_corrupts_the_training_inputs(blobs):
    clean = AEDetector(max_iter=5, random_state=0).fit(blobs)
    noisy = AEDetector(max_iter=5, random_state=0, noise=2.0).fit(blobs)
    assert noisy.loss_curve_ != clean.loss_curve_
    assert noisy.loss_curve_[-1] > clean.loss_curve_[-1]  # the inputs are harder to rebuild


def test_early_stopping_needs_a_strict_improvement():
    trainer = type("T", (), {"model": torch.nn.Linear(1, 1), "stop_training": False})()
    stopping = EarlyStopping(tol=0.0, patience=2)
    stopping.on_train_begin(trainer)
    for epoch in (1, 2, 3):
        stopping.on_epoch_end(trainer, {"epoch": epoch, "loss": 1.0})
    assert stopping.best_epoch == 1 and trainer.stop_training
    stopping.on_train_end(trainer, None)
    assert stopping._best_state is None


def test_divergence_messages_name_the_detector_or_the_model():
    class Exploding(torch.nn.Module):
        def training_step(self, inputs, target, y, optimizers, generator):
            return {"loss": torch.tensor(float("inf"))}

        def validation_loss(self, x):
            return x.sum(dim=1)

    trainer = Trainer(max_iter=2, batch_size=4, generator=torch.Generator(),
                      callbacks=[DivergenceGuard()], chunk_rows=8)
    with pytest.raises(ValueError, match="Training of model diverged at epoch 1"):
        trainer.fit(Exploding(), {}, torch.zeros(8, 2))
    with pytest.raises(ValueError, match="Training of AEDetector diverged"):
        AEDetector(learning_rate_init=1e36, max_iter=20).fit(np.random.RandomState(0).rand(50, 3))


def test_aae_step_reports_the_discriminators_accuracy_and_advantage():
    from aedetect.losses import discriminator_advantage
    from aedetect.models import AdversarialAutoencoder
    from aedetect.priors import NormalPrior

    class Far(torch.nn.Module):  # codes far from the prior: an easy discriminator
        def __init__(self):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.full((2,), 100.0))

        def forward(self, x):
            return x[:, :2] * 0 + self.bias

    discriminator = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.Flatten(0))
    with torch.no_grad():
        discriminator[0].weight.fill_(-0.05)
        discriminator[0].bias.fill_(3.0)
    model = AdversarialAutoencoder(Far(), torch.nn.Linear(2, 4), discriminator,
                                   NormalPrior(2, 1.0), n_features=4, latent_dim=2)
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    prior_draws = NormalPrior(2, 1.0).sample(64, torch.Generator().manual_seed(1))
    with torch.no_grad():
        real, fake = discriminator(prior_draws), discriminator(Far()(x))
    losses = model.training_step(x, x, None, model.configure_optimizers(1e-3, 0.0), generator)
    assert float(losses["discriminator_accuracy"]) == 1.0
    expected = float(discriminator_advantage(real, fake).mean())
    assert float(losses["discriminator_advantage"]) == pytest.approx(expected, rel=1e-5)
    zero = discriminator_advantage(torch.zeros(8), torch.zeros(8))
    np.testing.assert_allclose(zero.numpy(), 0.0, atol=1e-7)


def test_conditional_aae_with_early_stopping(blobs):
    y = np.arange(len(blobs)) % 3
    detector = AAEDetector(conditional=True, latent_dim=2, early_stopping=True, max_iter=3,
                           random_state=0).fit(blobs, y)
    assert all(math.isfinite(record["val_loss"]) for record in detector.history_)


def test_the_prior_bank_is_the_same_for_every_fit(blobs):
    first = AAEDetector(early_stopping=True, max_iter=1, random_state=0).fit(blobs)
    second = AAEDetector(early_stopping=True, max_iter=1, random_state=1).fit(blobs)
    assert torch.equal(first.module_.prior_bank, second.module_.prior_bank)


def test_adam_falls_back_when_fused_is_refused(monkeypatch):
    from aedetect.models import base

    real = torch.optim.Adam

    def no_fused(parameters, fused=False, **options):
        if fused:
            raise RuntimeError("fused=True is not supported here")
        return real(parameters, **options)

    monkeypatch.setattr(base.torch.optim, "Adam", no_fused)
    optimizer = base.adam(torch.nn.Linear(2, 2).parameters(), 0.01)
    assert optimizer.defaults["lr"] == 0.01 and not optimizer.defaults.get("fused")


def test_a_score_type_a_model_does_not_know_is_named(blobs):
    detector = AEDetector(max_iter=1, random_state=0).fit(blobs)
    with pytest.raises(ValueError, match=r"score_type='elbo' is not one of .* for "
                                         r"AutoencoderModel"):
        detector.module_.score(torch.zeros(2, 8), "elbo")


def test_vae_reference_codes_are_capped_and_seeded(monkeypatch, blobs):
    import aedetect.models.neighbours

    monkeypatch.setattr(aedetect.models.neighbours, "MAX_REFERENCE_CODES", 50)
    first = VAEDetector(score_type="latent", max_iter=2, random_state=0).fit(blobs)
    second = VAEDetector(score_type="latent", max_iter=2, random_state=0).fit(blobs)
    assert first.reference_codes_.shape == (50, first.latent_dim_)
    np.testing.assert_array_equal(first.reference_codes_, second.reference_codes_)


def test_a_gpu_fit_unpickles_on_the_cpu_with_a_warning(blobs, monkeypatch):
    import pickle

    detector = AEDetector(max_iter=2, random_state=0).fit(blobs)
    state = dict(detector.__getstate__())
    state["device_"] = torch.device("cuda", 0)  # as pickled on a GPU machine
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    restored = AEDetector.__new__(AEDetector)
    with pytest.warns(UserWarning, match="fitted on cuda:0, which is not available"):
        restored.__setstate__(state)
    assert restored.device_.type == "cpu"
    np.testing.assert_array_equal(restored.score_samples(blobs), detector.score_samples(blobs))
    assert pickle.loads(pickle.dumps(restored)).device_.type == "cpu"


# ------------------------------------------------ second round of mutation survivors
def test_robust_center_scale_and_its_fallbacks():
    from aedetect.models.base import robust_center_scale

    values = torch.tensor([[0.0, 5.0, 1.0], [0.0, 5.0, 2.0], [0.0, 5.0, 3.0], [0.0, 5.0, 4.0],
                           [1.0, 5.0, 100.0]])
    center, scale = robust_center_scale(values)
    np.testing.assert_allclose(center.numpy(), [0.0, 5.0, 3.0])
    # MAD 0 -> population std (0.4); constant -> 1; else 1.4826 * MAD (MAD of col 3 is 1)
    np.testing.assert_allclose(scale.numpy(), [0.4, 1.0, 1.4826], rtol=1e-6)
    _, two = robust_center_scale(torch.tensor([[0.0], [4.0]]))  # MAD of two rows is 0
    assert float(two[0]) == pytest.approx(2.0)  # their population std


def test_aae_reconstruction_variance_is_the_median_training_error():
    model = AAEDetector(max_iter=1, random_state=0).fit(np.random.RandomState(0).rand(40, 4)
                                                         ).module_

    class Rows:
        n_rows = 5

        def __call__(self, function, index=None):
            if function is model.encoder:  # the centring's encoder outputs
                return torch.full((5, model.latent_dim), 0.3)
            return torch.tensor([0.01, 0.02, 0.005, 9.0, 0.01])

    model.calibrate(Rows(), None, "combined")
    assert float(model.reconstruction_variance) == pytest.approx(0.01)
    # the codes' mean 0.3 against the normal prior's 0 (65,536 draws: within 0.01)
    np.testing.assert_allclose(model.code_shift.numpy(), 0.3, atol=0.01)


def test_aae_step_trims_the_reconstruction_loss():
    from aedetect.models import AdversarialAutoencoder
    from aedetect.priors import NormalPrior

    encoder, decoder = torch.nn.Linear(4, 2), torch.nn.Linear(2, 4)
    model = AdversarialAutoencoder(encoder, decoder, torch.nn.Sequential(
        torch.nn.Linear(2, 1), torch.nn.Flatten(0)), NormalPrior(2, 1.0), n_features=4,
        latent_dim=2, trim_fraction=0.5)
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    x[0] += 100.0
    with torch.no_grad():
        errors = (decoder(encoder(x)) - x).pow(2).mean(dim=1)
    kept = errors.sort().values[:4].mean()
    losses = model.training_step(x, x, None, model.configure_optimizers(1e-3, 0.0),
                                 torch.Generator().manual_seed(0))
    assert float(losses["reconstruction"]) == pytest.approx(float(kept), rel=1e-5)


def test_every_end_hook_runs_and_batches_are_numbered(blobs):
    class NoEndHook:
        def on_epoch_end(self, trainer, record):
            pass

    recorder, batches = Recorder(), []

    class Batches(Callback):
        def on_batch_end(self, trainer, batch, losses):
            batches.append(batch)

    AEDetector(max_iter=1, batch_size=100, random_state=0,
               callbacks=[NoEndHook(), Batches(), recorder]).fit(blobs)
    assert batches == [0, 1, 2, 3]
    assert recorder.events[-2:] == ["train_end None", "fit_end None"]


def test_epoch_times_are_durations(blobs):
    detector = AEDetector(max_iter=3, random_state=0).fit(blobs)
    assert all(0 <= record["time"] < 60 for record in detector.history_)


def test_explosion_is_relative_to_the_first_loss():
    trainer = type("T", (), {"estimator": None})()
    guard = DivergenceGuard()
    guard.on_train_begin(trainer)
    guard.on_epoch_end(trainer, {"epoch": 1, "loss": 10.0})
    guard.on_epoch_end(trainer, {"epoch": 2, "loss": 5000.0})  # 500x: below 1000x
    with pytest.raises(ValueError, match="exploded from 10 at epoch 1"):
        guard.on_epoch_end(trainer, {"epoch": 3, "loss": 20000.0})


def test_patience_counts_from_the_last_improvement():
    trainer = type("T", (), {"model": torch.nn.Linear(1, 1), "stop_training": False})()
    stopping = EarlyStopping(patience=2)
    assert EarlyStopping().tol == 1e-4
    stopping.on_train_begin(trainer)
    for epoch, loss in enumerate([1.0, 0.5, 0.5], start=1):
        stopping.on_epoch_end(trainer, {"epoch": epoch, "loss": loss})
        assert not trainer.stop_training
    stopping.on_epoch_end(trainer, {"epoch": 4, "loss": 0.5})
    assert trainer.stop_training and stopping.best_epoch == 2


def test_vae_validation_loss_is_per_row(blobs):
    detector = VAEDetector(max_iter=5, random_state=0).fit(blobs)
    x = torch.as_tensor(((blobs - detector.center_) / detector.scale_).astype(np.float32))
    with torch.no_grad():
        per_row = detector.module_.validation_loss(x).numpy()
        elbo = (detector.module_.score(x, "elbo") + detector.module_.log_unit_change).numpy()
    assert per_row.shape == (len(blobs),)
    np.testing.assert_allclose(per_row, -elbo, rtol=1e-4, atol=1e-4)


def test_progress_bar_says_when_training_stopped_early(capsys):
    X = np.random.RandomState(0).normal(size=(120, 4))
    detector = AEDetector(max_iter=50, tol=10.0, n_iter_no_change=2, verbose=1,
                          random_state=0).fit(X)
    assert detector.n_iter_ < 50
    shown = capsys.readouterr().err
    assert f"AEDetector: stopped early at epoch {detector.n_iter_} of 50" in shown
    AEDetector(max_iter=3, verbose=1, random_state=0).fit(X)
    assert "stopped early" not in capsys.readouterr().err
