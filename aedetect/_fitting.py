"""One fit of a detector: validated data -> scaling -> model -> trainer -> calibration
-> threshold.

:func:`fit_fresh` runs on a fresh copy of the detector (see
``BaseAutoencoderDetector._fit_and_score``), so it sets fitted attributes freely; the
copy replaces the detector's fitted state only when the whole fit succeeded. The
detector contributes its model (``_build_model``) and its checks; the model its losses,
step and calibration; the trainer the loop.
"""

import sys
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from . import _data, _device, _structure
from .models.base import exact_batch_norm
from ._training import (
    Corruption,
    DivergenceGuard,
    EarlyStopping,
    EpochTimer,
    ProgressBar,
    Trainer,
    call_end_hooks,
    call_hooks,
)
from .thresholds import contamination_offset

#: Callbacks every fit runs after the detector's own ``callbacks`` (the switch of
#: ``aedetect.tracking.autolog`` lives here).
GLOBAL_CALLBACKS = []
#: Training inputs are clipped to this many robust standard deviations (scaled units):
#: one extreme value cannot overflow float32 inside the network while it trains (it
#: is left out of the steps by the trimmed loss anyway), and after training the
#: encoder's batch-norm statistics are recomputed without such rows
#: (``exact_batch_norm``); scoring sees values as given.
TRAINING_CLIP = 1e3


def fit_fresh(detector, X, y):
    """Fit ``detector``, a fresh copy; its callbacks see that copy from start to end.
    Returns the training scores that set ``offset_``."""
    rows, sample_shape = _data.validate_samples(detector, X, reset=True)
    y = detector._validate_target(y, rows.shape[0])
    detector.__dict__.update(_structure.resolve(detector, *rows.shape, sample_shape))
    detector._check_fit_params(rows.shape[0])
    detector.device_ = _device.resolve_device(detector.device)
    callbacks = [*(detector.callbacks or []), *GLOBAL_CALLBACKS]
    error = scores = None
    try:
        call_hooks(callbacks, "on_fit_begin", detector, rows)
        scores = _train_and_calibrate(detector, rows, y, callbacks)
    except BaseException as exc:
        error = exc
    # every callback's on_fit_end runs; the fit fails if any of them raised
    raised = call_end_hooks(callbacks, "on_fit_end", detector, error)
    if error is not None or raised is not None:
        raise error if error is not None else raised
    return scores


def _train_and_calibrate(detector, rows, y, callbacks):
    rng = check_random_state(detector.random_state)
    seed = int(rng.randint(np.iinfo(np.int32).max))
    scaling = _data.Scaling.fit(rows, detector._scaling_rule)
    detector.center_, detector.scale_ = scaling.center, scaling.scale
    detector._check_rows(rows)
    scaled = scaling.transform(rows, detector.input_shape_,
                               feature_names=getattr(detector, "feature_names_in_", None))
    train, val = validation_split(detector, rows.shape[0], rng)
    device = detector.device_
    extreme = np.flatnonzero(np.abs(scaled.reshape(rows.shape[0], -1)).max(axis=1)
                             > TRAINING_CLIP)
    clipped = (np.clip(scaled, -TRAINING_CLIP, TRAINING_CLIP)
               if extreme.size else scaled)  # no copy when in range
    X_train = torch.as_tensor(clipped[train], device=device)
    X_val = None if val is None else torch.as_tensor(clipped[val], device=device)
    y_train = None if y is None else torch.as_tensor(y[train], device=device)
    model, cpu_state = _device.build_seeded(detector._build_model, seed)
    model = model.to(device)
    stopping = EarlyStopping(detector.tol, detector.n_iter_no_change)
    progress = [ProgressBar(type(detector).__name__)] if detector.verbose else []
    trainer = Trainer(
        max_iter=detector.max_iter, batch_size=detector.batch_size,
        generator=_device.training_generator(device, seed, cpu_state),
        callbacks=[EpochTimer(), DivergenceGuard(), stopping, *progress, *callbacks],
        chunk_rows=detector._chunk_rows(model), corruption=corruption(detector, X_train),
        estimator=detector)
    trainer.fit(model, model.configure_optimizers(detector.learning_rate_init,
                                                  detector.weight_decay),
                X_train, y_train, X_val)
    detector.history_, detector.n_iter_ = trainer.history, len(trainer.history)
    detector.loss_curve_ = [record["loss"] for record in trainer.history]
    detector.best_loss_, detector.best_epoch_ = float(stopping.best_loss), stopping.best_epoch
    detector.module_ = model  # in eval mode from here on: scoring never changes it
    if extreme.size and rows.shape[0] - extreme.size >= 2:
        # batch-norm statistics of the rows the network can represent (see exact_batch_norm)
        exact_batch_norm(model, TrainingRows(clipped, device, detector._chunk_rows(model)),
                         np.setdiff1d(np.arange(rows.shape[0]), extreme))
    model.calibrate(TrainingRows(scaled, device, detector._chunk_rows(model)), rng,
                    detector.score_type)
    scores = _training_scores(detector, rows)
    detector.offset_ = contamination_offset(scores[np.isfinite(scores)], detector.contamination)
    detector.score_type_ = detector.score_type
    return scores


def user_stacklevel():
    """``stacklevel`` of the first frame outside aedetect and scikit-learn (the user's
    call to ``fit``), so that warnings point at it."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] in (
            "aedetect", "sklearn"):
        frame, level = frame.f_back, level + 1
    return level


def _training_scores(detector, rows):
    """Scores of the training rows, each against the other training codes. A row that
    cannot be scored (its values overflow float32 inside the network) is an outlier:
    its score is ``-inf`` and a warning names it; ``offset_`` comes from the others.
    All scores equal means the model cannot tell rows apart: a warning says so."""
    scores = detector._score_rows(rows, exclude_self=True, check=False)
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size == scores.size:
        raise ValueError("No training row could be scored: the values overflow float32 inside "
                         "the network. Clip or rescale extreme values before fitting.")
    if bad.size:
        scores[bad] = -np.inf
        warnings.warn(f"{bad.size} training row(s) cannot be scored (rows "
                      f"{', '.join(map(str, bad[:10]))}{' ...' if bad.size > 10 else ''}): "
                      "their values overflow float32 inside the network. They count as "
                      "outliers (fit_predict labels them -1) and do not set offset_.",
                      UserWarning, stacklevel=user_stacklevel())
    finite = scores[np.isfinite(scores)]
    if finite.size > 1 and np.ptp(finite) <= 1e-12 * max(1.0, float(np.abs(finite).max())):
        warnings.warn(f"{type(detector).__name__} gives every training row the same score "
                      f"({finite[0]:.4g}): the model cannot tell rows apart (training "
                      "collapsed, or the training rows are all alike), so predict flags "
                      "all rows or none. Check the data, or lower learning_rate_init.",
                      ConvergenceWarning, stacklevel=user_stacklevel())
    return scores


def validation_split(detector, n_samples, rng):
    """``(train, validation)`` row indices; no validation rows without early stopping."""
    if not detector.early_stopping:
        return np.arange(n_samples), None
    perm = rng.permutation(n_samples)
    n_val = min(max(1, int(round(detector.validation_fraction * n_samples))), n_samples - 2)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def corruption(detector, X_train):
    """Denoising corruption of the inputs, or ``None``: clipped per feature, or over
    all pixels for images scaled alike everywhere (``'auto'`` for conv, or ``None``),
    so a pixel that is always dark in training still gets noise."""
    if not detector.noise:
        return None
    one_range = (len(detector.input_shape_) == 3
                 and detector._scaling_rule in ("global_minmax", None))
    return Corruption.fit(X_train, detector.noise, detector.noise_type, one_range)


class TrainingRows:
    """``apply(function, index=None)`` of a model's ``calibrate``: ``function`` of the
    scaled training rows (or the rows ``index``) on the device, chunk by chunk."""

    def __init__(self, scaled, device, chunk):
        self.scaled, self.device, self.chunk = scaled, device, chunk
        self.n_rows = scaled.shape[0]

    def __call__(self, function, index=None):
        rows = self.scaled if index is None else self.scaled[index]
        return _data.map_chunks(
            function, rows.shape[0], self.chunk,
            lambda start, stop: torch.from_numpy(np.ascontiguousarray(rows[start:stop]))
            .to(self.device))
