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

from . import _data, _device, _distributed, _streaming, _structure
from ._training import (
    Corruption,
    DivergenceGuard,
    EarlyStopping,
    EntropyStopping,
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
#: A training row with a value beyond this many robust standard deviations (scaled
#: units) is left out of training, when such rows are fewer than half of them: one such
#: value would otherwise pull every batch-norm statistic and weight its batch sees (a
#: row at 1,000 standard deviations adds about ``1e6 / batch_size`` to a variance). It
#: is still scored (it sets ``offset_`` like any row and is an outlier). Past half,
#: values are clipped to it for training instead. Scoring sees values as given.
TRAINING_CLIP = 1e3


def fit_fresh(detector, X, y, partial=False, warm=False):
    """Fit ``detector``, a fresh copy; its callbacks see that copy from start to end.
    Returns the training scores that set ``offset_``.

    ``partial`` (``partial_fit``): one epoch, no validation split, the optimizers kept
    in ``_optimizers_`` for the next call. ``warm``: ``detector`` holds (a copy of) the
    fitted state of the previous fit, whose structure, scaling, weights and optimizers
    the epoch continues from."""
    rows, sample_shape = _data.validate_samples(detector, X, reset=not warm)
    y = detector._validate_target(y, rows.shape[0])
    if not warm:
        detector.__dict__.update(_structure.resolve(detector, *rows.shape, sample_shape))
        detector.device_ = _device.resolve_device(detector.device)
    detector._check_fit_params(rows.shape[0])
    ranks = _distributed.DataParallel.current()  # None unless under torchrun
    callbacks = [*(detector.callbacks or []), *GLOBAL_CALLBACKS]
    if ranks is not None:  # logging and saving on rank 0 only
        ranks.check(detector)
        callbacks = [callback for callback in callbacks if ranks.keeps(callback)]
    error = scores = None
    try:
        call_hooks(callbacks, "on_fit_begin", detector, rows)
        scores = _train_and_calibrate(detector, rows, y, callbacks, partial, warm)
    except BaseException as exc:
        error = exc
    # every callback's on_fit_end runs; the fit fails if any of them raised
    raised = call_end_hooks(callbacks, "on_fit_end", detector, error)
    if error is not None or raised is not None:
        raise error if error is not None else raised
    return scores


def _train_and_calibrate(detector, rows, y, callbacks, partial=False, warm=False):
    rng = check_random_state(detector.random_state)
    seed = int(rng.randint(np.iinfo(np.int32).max))
    done = detector.n_iter_ if warm else 0
    if done:  # a later partial_fit: draws of its own, reproducible from random_state
        seed = int(np.random.SeedSequence([seed, done]).generate_state(1)[0] >> 1)
        rng = np.random.RandomState(seed)
    X_train, y_train, X_val, load_scaled = _training_data(detector, rows, y, rng, seed,
                                                          partial, warm)
    device = detector.device_
    if warm:
        model, generator = detector.module_, torch.Generator(device=device).manual_seed(seed)
        optimizers = getattr(detector, "_optimizers_", None) or model.configure_optimizers(
            detector.learning_rate_init, detector.weight_decay)
    else:
        model, cpu_state = _device.build_seeded(detector._build_model, seed)
        model = model.to(device)
        generator = _device.training_generator(device, seed, cpu_state)
        optimizers = model.configure_optimizers(detector.learning_rate_init,
                                                detector.weight_decay)
    stopping = stopping_rule(detector, X_train, model, partial)
    ranks = _distributed.DataParallel.current()
    progress = ([ProgressBar(type(detector).__name__)]
                if detector.verbose and (ranks is None or ranks.rank == 0) else [])
    trainer = Trainer(
        max_iter=1 if partial else detector.max_iter, batch_size=detector.batch_size,
        generator=generator,
        callbacks=[EpochTimer(), DivergenceGuard(), stopping, *progress, *callbacks],
        chunk_rows=detector._chunk_rows(model), corruption=corruption(detector, X_train),
        estimator=detector, distributed=ranks,
        autocast=torch.bfloat16 if detector.training_precision == "bfloat16" else None,
        torch_compile=detector.torch_compile)
    trainer.fit(model, optimizers, X_train, y_train, X_val)
    detector.history_ = [*(detector.history_ if warm else ()),
                         *({**record, "epoch": record["epoch"] + done}
                           for record in trainer.history)]
    detector.n_iter_ = len(detector.history_)
    detector.loss_curve_ = [record["loss"] for record in detector.history_]
    detector.best_loss_ = float(stopping.best_loss)
    detector.best_epoch_ = None if stopping.best_epoch is None else stopping.best_epoch + done
    if partial:
        detector._optimizers_ = optimizers
    else:
        detector.__dict__.pop("_optimizers_", None)
    detector.module_ = model  # in eval mode from here on: scoring never changes it
    model.calibrate(_streaming.TrainingRows(load_scaled, rows.shape[0], device,
                                            detector._chunk_rows(model)),
                    rng, detector.score_type)
    scores = _training_scores(detector, rows)
    detector.offset_ = contamination_offset(scores[np.isfinite(scores)], detector.contamination)
    detector.score_type_ = detector.score_type
    return scores


#: At most this many training rows, evenly spaced, are scored after every epoch by
#: ``early_stopping='entropy'``, and at most ``ENTROPY_BYTES`` of them (float32) kept on
#: the device (fewer rows for large images).
ENTROPY_ROWS = 10_000
ENTROPY_BYTES = 256 * 2**20


def stopping_rule(detector, X_train, model, partial):
    """The stopping callback: :class:`EntropyStopping` on at most ``ENTROPY_ROWS`` of the
    training rows (and ``ENTROPY_BYTES``) with ``early_stopping='entropy'`` (not in
    ``partial_fit``, one epoch), else :class:`EarlyStopping` (on ``val_loss`` when there
    are validation rows)."""
    if detector.early_stopping != "entropy" or partial:
        return EarlyStopping(detector.tol, detector.n_iter_no_change)
    row_bytes = 4 * int(np.prod(X_train.shape[1:]))
    most = max(2, min(ENTROPY_ROWS, ENTROPY_BYTES // row_bytes))
    step = max(1, -(-X_train.shape[0] // most))
    rows = (X_train[::step] if torch.is_tensor(X_train)
            else X_train.load(X_train.index[::step]))
    return EntropyStopping(rows, detector._chunk_rows(model), detector.tol,
                           detector.n_iter_no_change)


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


def _training_data(detector, rows, y, rng, seed, partial=False, warm=False):
    """``(X_train, y_train, X_val, load_scaled)``: the scaled training and validation
    inputs on the device (streamed chunk by chunk for big ``rows``, see
    ``aedetect._streaming``), and ``load_scaled(index)``, any scaled rows (unclipped)
    for the model's ``calibrate``. Sets ``center_`` and ``scale_`` (``warm``: keeps
    them); ``partial``: no validation rows."""
    rule, names, shape = detector._scaling_rule, getattr(detector, "feature_names_in_",
                                                         None), detector.input_shape_
    streamed, device = _streaming.is_streamed(rows), detector.device_
    if warm:
        scaling = _data.Scaling(detector.center_, detector.scale_)
    else:
        scaling = (_streaming.fit_scaling(rows, rule, seed) if streamed
                   else _data.Scaling.fit(rows, rule))
        detector.center_, detector.scale_ = scaling.center, scaling.scale
    detector._check_rows(rows)
    train, val = ((np.arange(rows.shape[0]), None) if partial
                  else validation_split(detector, rows.shape[0], rng))
    if streamed:
        largest = _streaming.largest_scaled(rows, scaling, shape, names)
        clip, train, val = training_subset(largest, train, val)
        X_train = _streaming.StreamedRows(rows, train, scaling, shape, device, clip, y)
        X_val = None if val is None else _streaming.StreamedRows(
            rows, val, scaling, shape, device, clip).tensor()
        return X_train, None, X_val, lambda index: scaling.transform(np.asarray(rows[index]),
                                                                     shape)
    scaled = scaling.transform(rows, shape, feature_names=names)
    clip, train, val = training_subset(np.abs(scaled.reshape(rows.shape[0], -1)).max(axis=1),
                                       train, val)
    inputs = scaled if clip is None else np.clip(scaled, -clip, clip)
    X_train = torch.as_tensor(inputs[train], device=device)
    X_val = None if val is None else torch.as_tensor(inputs[val], device=device)
    y_train = None if y is None else torch.as_tensor(y[train], device=device)
    return X_train, y_train, X_val, scaled.__getitem__


def training_subset(largest, train, val):
    """``(clip, train, val)`` from each row's largest absolute scaled value: the rows
    beyond ``TRAINING_CLIP`` left out of ``train`` and ``val`` when they are fewer than
    half of each (``clip`` is ``None``), else every row, clipped to ``clip``."""
    extreme = largest > TRAINING_CLIP
    if not extreme.any():
        return None, train, val
    kept_train = train[~extreme[train]]
    kept_val = None if val is None else val[~extreme[val]]
    if (kept_train.size >= max(2, (train.size + 1) // 2)
            and (val is None or kept_val.size >= max(1, (val.size + 1) // 2))):
        return None, kept_train, kept_val
    return TRAINING_CLIP, train, val


def validation_split(detector, n_samples, rng):
    """``(train, validation)`` row indices; validation rows only with
    ``early_stopping=True``."""
    if not _structure.holds_out_rows(detector):
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
    if isinstance(X_train, _streaming.StreamedRows):
        X_train = X_train.sample()
    return Corruption.fit(X_train, detector.noise, detector.noise_type, one_range)
