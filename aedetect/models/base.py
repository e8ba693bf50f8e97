"""What every detector model is: an ``nn.Module`` that owns its losses and its score.

A model never validates input, scales data or moves it between devices: it receives
float32 tensors of scaled samples, shaped ``(n, *input_shape)``, on its device.
"""

import contextlib
from abc import ABCMeta, abstractmethod

import torch
from torch import nn

from .compiled import CompiledStep, descend


def adam(parameters, lr, weight_decay=0.0, **options):
    """Adam on ``parameters``, fused into one kernel per step where this torch build
    supports it for their device (CPU since torch 2.4, CUDA): with many small layers the
    per-tensor loop is the slowest part of a step."""
    parameters = list(parameters)
    options = {"lr": lr, "weight_decay": weight_decay, **options}
    try:
        return torch.optim.Adam(parameters, fused=True, **options)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(parameters, **options)


#: 1.4826 * MAD estimates the standard deviation of a normal distribution.
MAD_TO_STD = 1.4826


def robust_center_scale(values):
    """Per column of ``values`` (float64): the median and ``1.4826 * MAD``, falling back
    to the standard deviation where the MAD is 0, and to 1 where that is 0 too.

    The calibration of the scores uses these, so one extreme training row cannot
    shift a centre or inflate a scale (a mean or a standard deviation can be moved
    arbitrarily far by a single value).
    """
    values = values.double()
    center = values.median(dim=0).values
    scale = MAD_TO_STD * (values - center).abs().median(dim=0).values
    flat = ~(scale > 1e-12)
    if bool(flat.any()) and values.shape[0] > 1:
        scale[flat] = values[:, flat].std(dim=0, unbiased=False)
    scale[~(scale > 1e-12)] = 1.0
    return center, scale


def winsorized_mean(values, share):
    """Per column of ``values``, the mean of the values clipped to the column's ``share``
    and ``1 - share`` quantiles, computed in float64 and returned as float32; rows with
    a value that is not finite are left out (zeros when none is left)."""
    values = values.double()
    values = values[torch.isfinite(values).all(dim=1)]
    if not values.shape[0]:
        return torch.zeros(values.shape[1], dtype=torch.float32, device=values.device)
    cut = int(share * values.shape[0])  # rows cut off each tail (kthvalue: no size limit)
    low = values.kthvalue(cut + 1, dim=0).values
    high = values.kthvalue(values.shape[0] - cut, dim=0).values
    return torch.maximum(torch.minimum(values, high), low).mean(dim=0).float()


@contextlib.contextmanager
def module_mode(module, training):
    """``module`` in train (``training=True``) or eval mode for the block, then back."""
    previous = module.training
    module.train(training)
    try:
        yield module
    finally:
        module.train(previous)


def optimizer_step(optimizer, loss):
    """One gradient step of ``optimizer`` on ``loss``."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


class DetectorModel(nn.Module, metaclass=ABCMeta):
    """Base class of the models: the contract the trainer and the estimators rely on.

    Training (called by :class:`aedetect._training.Trainer`):

    - ``configure_optimizers(learning_rate, weight_decay) -> dict`` of optimizers;
      by default one Adam, ``"main"``, over every parameter;
    - ``training_step(inputs, target, y, optimizers, generator) -> dict`` of detached
      0-d loss tensors, ``"loss"`` the total; by default one step of ``"main"`` on the
      ``"loss"`` of :meth:`training_losses`. ``inputs`` may be corrupted (denoising),
      ``target`` is clean; every random draw uses ``generator``;
    - ``validation_loss(x) -> (n,)``: per row, in the units of the training ``loss``
      (untrimmed, deterministic).

    Fitted model (eval mode; called by the estimators):

    - ``calibrate(apply, rng, score_type)``: after training, fit the buffers the
      score needs from the training rows; ``apply(function, index=None)`` returns
      ``function`` applied chunk by chunk to the scaled training rows (or to the rows
      ``index``), concatenated;
    - ``score(x, score_type, exclude_self=False) -> (n,)``: higher is more normal;
      ``exclude_self`` is set only while the training rows themselves are scored;
    - ``encode(x)``: the latent code; ``reconstruct(x)``: the decoder's mean, in the
      scaled space;
    - ``feature_terms(x, score_type) -> (n, n_features + 1)``: minus the score split
      into one term per feature (flattened) and, last, the code's term, so that
      ``-score(x) == feature_terms(x).sum(dim=1) + score_baseline(score_type)``
      (used by :mod:`aedetect.explain`); ``score_baseline`` is the part that is the
      same for every row (0 by default).

    Compiled training (``torch_compile=True``, see :mod:`aedetect.models.compiled`):

    - ``functional_step(inputs, target, y, noise, adam, draws) -> dict``: the step of
      ``training_step`` written with :func:`~aedetect.models.compiled.descend` (one
      ``torch.func.grad`` and Adam update per optimizer), its draws from ``noise`` (a
      :class:`~aedetect.networks.StepNoise`) and ``draws``; by default the one step
      of ``"main"``. A model that overrides ``training_step`` overrides this too;
    - ``step_draws(n_rows, generator) -> tuple``: draws the step needs that come from
      elsewhere (the AAE's prior), made before the compiled call (none by default).

    ``inference_copies`` is how many decoder passes one row costs when scored (it
    sizes the inference chunks).
    """

    #: The values of ``score_type`` this model can score.
    score_types = ()
    inference_copies = 1

    def configure_optimizers(self, learning_rate, weight_decay):
        return {"main": adam(self.parameters(), learning_rate, weight_decay)}

    def training_step(self, inputs, target, y, optimizers, generator):
        """One step of ``"main"`` on the ``"loss"`` of ``self.training_losses(inputs,
        target, y, generator)`` (a dict of 0-d tensors), which a model with one
        optimizer defines; a model with several phases overrides this step instead."""
        losses = self.training_losses(inputs, target, y, generator)
        optimizer_step(optimizers["main"], losses["loss"])
        return {name: value.detach() for name, value in losses.items()}

    def functional_step(self, inputs, target, y, noise, adam, draws):
        """The default ``training_step`` for :class:`~aedetect.models.compiled.CompiledStep`:
        one Adam step of ``adam["main"]`` on the ``"loss"`` of ``training_losses``."""

        def objective():
            losses = self.training_losses(inputs, target, y, noise)
            return losses["loss"], losses

        return descend(self, adam["main"], objective)

    def step_draws(self, n_rows, generator):
        """Draws a compiled step of ``n_rows`` rows takes as inputs (none by default)."""
        return ()

    def compiled_training_step(self, optimizers):
        """``training_step`` with ``optimizers``, compiled by ``torch.compile``."""
        return CompiledStep(self, optimizers)

    @abstractmethod
    def validation_loss(self, x):
        """Per-row loss of held-out rows, in the units of the training ``"loss"``."""

    @abstractmethod
    def score(self, x, score_type, exclude_self=False):
        """Per-row score, higher is more normal."""

    @abstractmethod
    def encode(self, x):
        """The latent code of each row."""

    @abstractmethod
    def reconstruct(self, x):
        """The decoder's mean for each row, in the scaled space."""

    def calibrate(self, apply, rng, score_type):
        """Fit the score's buffers on the training rows (nothing to fit by default)."""

    def score_baseline(self, score_type):
        """The part of minus the score that is the same for every row (see
        ``feature_terms``)."""
        return 0.0

    def check_score_type(self, score_type):
        if score_type not in self.score_types:
            raise ValueError(f"score_type={score_type!r} is not one of {self.score_types} "
                             f"for {type(self).__name__}.")
