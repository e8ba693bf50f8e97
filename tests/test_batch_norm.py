"""A training row so extreme that its values are clipped (beyond 1,000 robust standard
deviations) inflates batch norm's moving statistics; after training the encoder's
statistics are recomputed exactly over the other rows (``exact_batch_norm``). Fits
without such rows keep their trained statistics."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from aedetect import AAEDetector, AEDetector, Callback, VAEDetector


class FinalTrainingState(Callback):
    """The model's state when the training loop ends (before any recomputation)."""

    def on_train_end(self, trainer, error):
        self.state = copy.deepcopy(trainer.model.state_dict())


def _rows(planted=None, n=300, seed=0):
    rng = np.random.RandomState(seed)
    X = np.tanh(rng.normal(size=(n, 3)) @ rng.normal(size=(3, 8))) + 0.05 * rng.normal(
        size=(n, 8))
    if planted is not None:
        X[17, 3] = planted
    return X


def _statistics(state):
    """The batch-norm statistics of a state dict (calibration buffers set after
    training, such as the AAE's reconstruction variance, left out)."""
    return {key: value for key, value in state.items()
            if key.endswith(("running_mean", "running_var"))}


def _unchanged(model, state):
    ours = _statistics(model.state_dict())
    return bool(ours) and all(torch.equal(value, state[key]) for key, value in ours.items())


@pytest.mark.parametrize("cls", [AEDetector, VAEDetector, AAEDetector])
@pytest.mark.parametrize("planted", [None, 50.0])
def test_representable_data_keeps_the_trained_statistics(cls, planted):
    final = FinalTrainingState()
    detector = cls(max_iter=8, batch_norm=True, random_state=0,
                   callbacks=[final]).fit(_rows(planted))
    assert _unchanged(detector.module_, final.state)


@pytest.mark.parametrize("cls", [AEDetector, VAEDetector, AAEDetector])
def test_clipped_rows_leave_the_encoder_statistics(cls):
    X = _rows(planted=1e6)
    final = FinalTrainingState()
    detector = cls(max_iter=8, random_state=0, callbacks=[final]).fit(X)
    model = detector.module_
    encoder = [(name, module) for name, module in model.named_modules()
               if isinstance(module, nn.BatchNorm1d) and name.startswith("encoder")]
    first = encoder[0][0]
    # training left the first layer's variance inflated; the fit recomputed it
    assert float(final.state[f"{first}.running_var"].max()) > 100.0
    assert float(dict(encoder)[first].running_var.max()) < 10.0
    # exactly the statistics of the other rows' inputs, layer after layer
    others = np.delete(X, 17, axis=0)
    x = torch.as_tensor(((others - detector.center_) / detector.scale_).astype(np.float32))
    seen = {}
    hooks = [module.register_forward_pre_hook(
        lambda module, inputs, name=name: seen.__setitem__(name, inputs[0].double()))
        for name, module in encoder]
    with torch.no_grad():
        model.encode(x)
    for hook in hooks:
        hook.remove()
    assert len(seen) == len(encoder) >= 2
    for name, module in encoder:
        np.testing.assert_allclose(module.running_mean.double(), seen[name].mean(dim=0),
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(module.running_var.double(),
                                   seen[name].var(dim=0, unbiased=True), rtol=1e-4, atol=1e-6)
    # layers off the encoder's path keep their trained statistics
    rest = [name for name, module in model.named_modules()
            if isinstance(module, nn.BatchNorm1d) and not name.startswith("encoder")]
    assert rest
    for name in rest:
        assert torch.equal(model.state_dict()[f"{name}.running_var"],
                           final.state[f"{name}.running_var"])


def test_models_without_batch_norm_are_untouched():
    final = FinalTrainingState()
    detector = AEDetector(max_iter=5, batch_norm=False, random_state=0,
                          callbacks=[final]).fit(_rows(planted=1e6))
    state = detector.module_.state_dict()
    assert all(torch.equal(state[key], final.state[key]) for key in state)
