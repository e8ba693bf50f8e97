"""``torch_compile=True``: the training step as one compiled graph.

Most tests trace the step with dynamo's ``aot_eager`` backend (the whole graph capture,
functionalization included, without inductor's C++ compilation: seconds); one compiles
a tiny network with inductor; the slow ones compile the detectors' default networks.
"""

import copy
import pickle
import shutil

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.utils._param_validation import InvalidParameterError
from torch._dynamo.utils import counters

from aedetect import AAEDetector, AEDetector, VAEDetector, networks
from aedetect._training import Trainer
from aedetect.models import AutoencoderModel, compiled
from aedetect.models.compiled import AdamState, CompiledStep, run_step

#: Inductor compiles C++ on the CPU.
NEEDS_COMPILER = pytest.mark.skipif(
    not any(shutil.which(name) for name in ("g++", "c++", "clang++")),
    reason="torch.compile (inductor) needs a C++ compiler on the CPU; none here")

pytestmark = pytest.mark.filterwarnings(  # torch's compiler imports torch.jit's scripting
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")

DETECTORS = [AEDetector, VAEDetector, AAEDetector]
SMALL = {"hidden_layer_sizes": (16,), "latent_dim": 3}


@pytest.fixture(scope="module")
def rows():
    """Rows near a 3-D subspace of 8-D, then 30 uniform outliers (the last rows)."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(600, 3)) @ rng.normal(size=(3, 8)) + 0.05 * rng.normal(size=(600, 8))
    return np.vstack([X, rng.uniform(-4, 4, size=(30, 8))]).astype(np.float32)


@pytest.fixture
def traced(monkeypatch):
    """Steps traced by dynamo and run by ``aot_eager`` (no C++ compilation), in a fresh
    registry of compiled steps."""
    monkeypatch.setattr(compiled, "COMPILE_OPTIONS", {"fullgraph": True,
                                                       "backend": "aot_eager"})
    monkeypatch.setattr(compiled, "_COMPILED", {})


def _graphs():
    return counters["stats"]["unique_graphs"]


def _fit(cls, X, **params):
    return cls(**{"max_iter": 3, "batch_size": 64, "random_state": 0, **SMALL, **params}).fit(X)


# ------------------------------------------------------------ the parameter
def test_torch_compile_is_validated(rows):
    with pytest.raises(InvalidParameterError, match="'torch_compile' parameter"):
        AEDetector(torch_compile="yes").fit(rows)
    assert AEDetector().get_params()["torch_compile"] is False


def test_a_model_without_a_functional_step_is_refused(rows):
    class Custom(AutoencoderModel):
        def training_step(self, inputs, target, y, optimizers, generator):
            return super().training_step(inputs, target, y, optimizers, generator)

    model = Custom(torch.nn.Linear(8, 2), torch.nn.Linear(2, 8), 2)
    with pytest.raises(ValueError, match="overrides training_step but not functional_step"):
        model.compiled_training_step(model.configure_optimizers(1e-3, 0.0))


def test_optimizers_other_than_plain_adam_are_refused():
    model = AutoencoderModel(torch.nn.Linear(8, 2), torch.nn.Linear(2, 8), 2)
    with pytest.raises(ValueError, match="Adam steps only.*SGD"):
        CompiledStep(model, {"main": torch.optim.SGD(model.parameters(), lr=0.1)})
    with pytest.raises(ValueError, match="sets amsgrad"):
        CompiledStep(model, {"main": torch.optim.Adam(model.parameters(), amsgrad=True)})


def test_an_old_torch_is_refused(monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.8.1+cpu")
    model = AutoencoderModel(torch.nn.Linear(8, 2), torch.nn.Linear(2, 8), 2)
    with pytest.raises(ValueError, match="needs torch 2.9 or later; this is torch 2.8.1"):
        model.compiled_training_step(model.configure_optimizers(1e-3, 0.0))


def test_the_trainer_refuses_what_it_cannot_compile():
    with pytest.raises(ValueError, match="cannot train data-parallel"):
        Trainer(max_iter=1, batch_size=8, generator=torch.Generator(), callbacks=[],
                chunk_rows=8, distributed=object(), torch_compile=True)
    model = torch.nn.Linear(2, 2)
    trainer = Trainer(max_iter=1, batch_size=8, generator=torch.Generator(), callbacks=[],
                      chunk_rows=8, torch_compile=True)
    with pytest.raises(ValueError, match="Linear has no compiled_training_step"):
        trainer.fit(model, {}, torch.zeros(16, 2))


# ------------------------------------------------------------ the draws
@pytest.mark.parametrize("requests", [[("keep_mask", (5, 7)), ("keep_mask", (9,))],
                                      [("normal", (4, 5))]])
def test_step_noise_pools_give_the_draws_of_drawing_as_you_go(requests):
    like = torch.zeros(())

    def ask(noise):
        return [noise.keep_mask(shape, 0.8, like) if kind == "keep_mask"
                else noise.normal(shape, like) for kind, shape in requests]

    drawing = networks.StepNoise(generator=torch.Generator().manual_seed(3))
    first = ask(drawing)
    assert sum(drawing.sizes.values()) == (9 + 3 if "keep_mask" in requests[0] else 20)
    pools = networks.StepNoise.draw_pools(drawing.sizes, torch.Generator().manual_seed(3),
                                          like.device)
    sliced = networks.StepNoise(pools=pools)
    for a, b in zip(first, ask(sliced)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="more random draws"):
        ask(sliced)


def test_keep_masks_keep_their_share_and_differ_between_draws():
    noise = networks.StepNoise(generator=torch.Generator().manual_seed(0))
    masks = [noise.keep_mask((200, 500), 0.8, torch.zeros(())) for _ in range(2)]
    for mask in masks:
        assert mask.dtype == torch.bool
        assert float(mask.float().mean()) == pytest.approx(0.8, abs=0.003)
    assert float((masks[0] == masks[1]).float().mean()) == pytest.approx(0.68, abs=0.01)
    columns = masks[0].float().mean(dim=0)  # no stripes from the 16-bit fields' layout
    assert float(columns.std()) < 0.05


# ------------------------------------------------------------ the functional step
@pytest.mark.parametrize("cls", DETECTORS, ids=lambda cls: cls.__name__)
def test_the_functional_step_is_the_eager_step(cls, rows):
    """Without dropout, ``functional_step`` (torch.func gradients, Adam written out)
    takes the steps ``training_step`` (autograd, torch's Adam) takes, from the same
    draws."""
    model = _fit(cls, rows, max_iter=1, dropout=0.0).module_
    eager, functional = copy.deepcopy(model).train(), copy.deepcopy(model).train()
    optimizers = eager.configure_optimizers(1e-3, 1e-5)
    adam = {name: AdamState(functional, optimizer, name) for name, optimizer in
            functional.configure_optimizers(1e-3, 1e-5).items()}
    X = torch.as_tensor(rows)
    for step in range(5):
        x = X[64 * step:64 * (step + 1)]
        expected = eager.training_step(x, x, None, optimizers,
                                       torch.Generator().manual_seed(step))
        generator = torch.Generator().manual_seed(step)
        draws = functional.step_draws(x.shape[0], generator)
        losses = run_step(functional, x, x, None, networks.StepNoise(generator=generator),
                          adam, draws)
        assert set(losses) == set(expected)
        for name in expected:
            assert float(losses[name]) == pytest.approx(float(expected[name]), rel=1e-4,
                                                        abs=1e-6), name
    for (name, a), b in zip(eager.state_dict().items(), functional.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
    # the functional steps kept Adam's own state: torch's Adam continues from it
    optimizer = next(iter(adam.values()))
    assert all(float(state[0]) == 5 for state in optimizer.states)


# ------------------------------------------------------------ the compiled step
@pytest.mark.parametrize("cls", DETECTORS, ids=lambda cls: cls.__name__)
def test_the_traced_step_is_one_graph_reused_by_the_next_fit(cls, rows, traced):
    before = _graphs()
    first = _fit(cls, rows, torch_compile=True, dropout=0.0)
    assert _graphs() == before + 1  # the whole step, forward to Adam: one graph
    second = _fit(cls, rows, torch_compile=True, dropout=0.0)
    assert _graphs() == before + 1  # another model, the same structure and batch shape
    assert second.loss_curve_ == first.loss_curve_
    eager = _fit(cls, rows, dropout=0.0)
    np.testing.assert_allclose(first.loss_curve_, eager.loss_curve_, rtol=2e-3)
    third = _fit(cls, rows, torch_compile=True, dropout=0.0, batch_size=50)
    assert _graphs() == before + 2  # a batch of another shape: a graph of its own
    assert third.n_iter_ == 3


def test_dropout_and_noise_draw_from_the_fit_generator(rows, traced):
    """With dropout and denoising, a compiled fit is reproducible from random_state,
    touches no global generator, and trains like an uncompiled one."""
    params = {"torch_compile": True, "noise": 0.3, "noise_type": "mask"}
    state = torch.random.get_rng_state()
    first = _fit(AEDetector, rows, **params)
    assert torch.equal(torch.random.get_rng_state(), state)
    np.testing.assert_array_equal(_fit(AEDetector, rows, **params).score_samples(rows),
                                  first.score_samples(rows))
    other = _fit(AEDetector, rows, **{**params, "random_state": 1})
    assert other.loss_curve_ != first.loss_curve_
    eager = _fit(AEDetector, rows, noise=0.3, noise_type="mask")
    np.testing.assert_allclose(first.loss_curve_, eager.loss_curve_, rtol=0.15)


def test_partial_fit_continues_across_compiled_and_eager_steps(rows, traced):
    detector = AEDetector(batch_size=64, random_state=0, torch_compile=True, **SMALL)
    detector.partial_fit(rows)
    detector.set_params(torch_compile=False).partial_fit(rows)
    detector.set_params(torch_compile=True).partial_fit(rows)
    steps = {float(state["step"]) for state in detector._optimizers_["main"].state.values()}
    assert steps == {3 * 10.0} and detector.n_iter_ == 3  # 630 rows: 10 steps an epoch
    assert np.isfinite(detector.score_samples(rows)).all()
    loaded = pickle.loads(pickle.dumps(detector))  # nothing compiled stays on the detector
    np.testing.assert_array_equal(loaded.score_samples(rows), detector.score_samples(rows))


def test_a_compiler_failure_names_the_option(rows, monkeypatch):
    def failing(graph, example_inputs):
        raise OSError("no C++ compiler")

    monkeypatch.setattr(compiled, "COMPILE_OPTIONS", {"fullgraph": True, "backend": failing})
    monkeypatch.setattr(compiled, "_COMPILED", {})
    with pytest.raises(RuntimeError, match="torch_compile=True could not compile the "
                                           "training step of AutoencoderModel"):
        _fit(AEDetector, rows, torch_compile=True)


@NEEDS_COMPILER
def test_inductor_compiles_a_tiny_step_like_the_eager_one(rows):
    """The one test that compiles with inductor (seconds with a warm compiler cache)."""
    params = {"hidden_layer_sizes": (8,), "latent_dim": 2, "dropout": 0.0}
    before = _graphs()
    fitted = _fit(AEDetector, rows, torch_compile=True, **params)
    assert _graphs() <= before + 1
    eager = _fit(AEDetector, rows, **params)
    np.testing.assert_allclose(fitted.loss_curve_, eager.loss_curve_, rtol=1e-3)
    np.testing.assert_allclose(fitted.score_samples(rows), eager.score_samples(rows),
                               rtol=0.02, atol=0.02)


# ------------------------------------------------------------ the default networks
@NEEDS_COMPILER
@pytest.mark.slow
@pytest.mark.parametrize("cls", DETECTORS, ids=lambda cls: cls.__name__)
def test_compiled_fits_train_like_eager_ones(cls, rows):
    """Default networks (batch norm, dropout, trimmed loss), 4 seeds each way: the mean
    loss curves and the mean AUCs agree within the seeds' noise (the draws differ, so
    single fits differ as fits of two seeds do)."""
    y = np.r_[np.zeros(600), np.ones(30)]
    curves, aucs = {}, {}
    for compile_step in (False, True):
        fits = [cls(max_iter=8, batch_size=32, random_state=seed,
                    torch_compile=compile_step).fit(rows) for seed in range(4)]
        curves[compile_step] = np.array([fit.loss_curve_ for fit in fits])
        aucs[compile_step] = [roc_auc_score(y, -fit.score_samples(rows)) for fit in fits]
    means = {key: curve.mean(axis=0) for key, curve in curves.items()}
    noise = np.sqrt(sum(curve.var(axis=0, ddof=1) / 4 for curve in curves.values()))
    assert (np.abs(means[True] - means[False]) <= 3 * noise + 0.01 * means[False]).all(), (
        means, noise)
    assert np.mean(aucs[True]) == pytest.approx(np.mean(aucs[False]), abs=0.02), aucs


@NEEDS_COMPILER
@pytest.mark.slow
@pytest.mark.parametrize("cls", [AEDetector, AAEDetector], ids=lambda cls: cls.__name__)
def test_compiled_bfloat16_training_matches_eager(cls, rows):
    params = {"training_precision": "bfloat16", "dropout": 0.0}
    fitted = _fit(cls, rows, torch_compile=True, **params)
    eager = _fit(cls, rows, **params)
    np.testing.assert_allclose(fitted.loss_curve_, eager.loss_curve_, rtol=0.02)
