"""What every detector model is: an ``nn.Module`` that owns its losses and its score.

A model never validates input, scales data or moves it between devices: it receives
float32 tensors of scaled samples, shaped ``(n, *input_shape)``, on its device.
"""

from abc import ABCMeta, abstractmethod

import torch
from torch import nn


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




def exact_batch_norm(model, apply, index):
    """Set the running statistics of the batch-norm layers on ``model.encode``'s path to
    the exact mean and (unbiased) variance of their inputs over the training rows
    ``index``, layer by layer in forward order (each layer sees the inputs the layers
    before it now give). Layers off the encoder's path (decoder, discriminator) keep
    theirs. ``apply(function, index=None)`` runs ``function`` over chunks of the training
    rows (see ``calibrate``).

    Training leaves each layer with a moving average of its last batches' statistics; a
    training row so extreme that its values were clipped (see
    ``aedetect._fitting.TRAINING_CLIP``) inflates it (a row at 1,000 standard deviations
    adds about ``1e6 / batch_size`` to a variance), and the codes, so the latent scores,
    move with it. The fit calls this, with the other rows, only when such rows exist.
    """
    norms = [module for module in model.modules()
             if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats]
    for norm in norms:
        mean, variance = _input_statistics(norm, lambda: apply(model.encode, index=index))
        if mean is None:  # not on the encoder's path
            continue
        norm.running_mean.copy_(mean.to(norm.running_mean.dtype))
        norm.running_var.copy_(variance.to(norm.running_var.dtype))

def _input_statistics(norm, run):
    """Per-channel mean and unbiased variance (float64) of the inputs ``norm`` sees
    while ``run()`` runs, or ``(None, None)`` if it sees none."""
    totals = {"n": 0, "sum": 0.0, "squares": 0.0}

    def accumulate(module, inputs):
        x = inputs[0].detach().to(torch.float64).transpose(0, 1).flatten(1)  # (C, rows)
        totals["n"] += x.shape[1]
        totals["sum"] = totals["sum"] + x.sum(dim=1)
        totals["squares"] = totals["squares"] + x.pow(2).sum(dim=1)

    hook = norm.register_forward_pre_hook(accumulate)
    try:
        run()
    finally:
        hook.remove()
    n = totals["n"]
    if n == 0:
        return None, None
    mean = totals["sum"] / n
    variance = (totals["squares"] / n - mean.pow(2)).clamp(min=0.0) * (n / max(n - 1, 1))
    return mean, variance
