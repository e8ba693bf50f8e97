"""The one trainer and its callback protocol.

:class:`Trainer` owns the loop: epochs, shuffled mini-batches drawn by index from
tensors already on the device, the model's step, the validation loss and the per-epoch
``history``. It never knows which model it trains: a model (see
:mod:`aedetect.models`) brings ``training_step``, ``validation_loss`` and
``configure_optimizers``.

Everything around the loop is a :class:`Callback`: epoch timing (:class:`EpochTimer`),
the divergence guard (:class:`DivergenceGuard`), the stopping rules (:class:`EarlyStopping`
on a loss, :class:`EntropyStopping` on the spread of the training rows' losses), the
progress bar (:class:`ProgressBar`), MLflow
logging (``aedetect.tracking.MLflowCallback``) and any user callback. Every hook of
:class:`Callback` does nothing by default, so a callback overrides only what it needs.
"""

import contextlib
import copy
import math
import time

import numpy as np
import torch

from . import networks
from ._data import map_chunks


class Callback:
    """Base class of fit callbacks: every hook does nothing by default.

    The detector calls ``on_fit_begin`` and ``on_fit_end`` around the whole fit
    (validation, training, calibration, threshold); the trainer calls the other hooks
    around the training loop. ``trainer.estimator`` is the detector being fitted,
    ``trainer.model`` the module being trained, ``trainer.history`` the records of the
    epochs so far; setting ``trainer.stop_training = True`` ends training after the
    current epoch. The detector a fit hands to its callbacks is the one being fitted;
    it replaces the fitted state of the detector ``fit`` was called on only when the
    whole fit succeeds.
    """

    def on_fit_begin(self, detector, X):
        """Before training; ``X`` is the validated 2-D training data."""

    def on_train_begin(self, trainer):
        """Before the first epoch."""

    def on_epoch_begin(self, trainer, epoch):
        """Before each epoch (numbered from 1)."""

    def on_batch_begin(self, trainer, batch):
        """Before each optimizer step; ``batch`` counts the epoch's steps from 0."""

    def on_batch_end(self, trainer, batch, losses):
        """After each step; ``losses`` maps names to detached 0-d tensors (on the
        device: reading them synchronizes it)."""

    def on_epoch_end(self, trainer, record):
        """After each epoch; ``record`` holds ``epoch``, every loss averaged over the
        rows, ``val_loss`` when there is a validation set and ``time``."""

    def on_train_end(self, trainer, error):
        """After the loop, also when it failed (``error`` is the exception, or ``None``)."""

    def on_fit_end(self, detector, error):
        """After the fit, also when it failed (``error`` is the exception, or ``None``)."""


def call_hooks(callbacks, hook, *args):
    """Call ``hook`` on every callback. Objects that do not derive from
    :class:`Callback` may define only some of the hooks."""
    for callback in callbacks:
        function = getattr(callback, hook, None)
        if function is not None:
            function(*args)


def call_end_hooks(callbacks, hook, subject, error):
    """Call an end hook (``on_train_end``, ``on_fit_end``) on every callback, even when
    one of them raises: each later callback sees the fit's ``error`` or, failing that,
    the first callback's exception (so an MLflow run ends FAILED when a callback before
    it failed). Returns that first exception, for the caller to raise."""
    raised = None
    for callback in callbacks:
        function = getattr(callback, hook, None)
        if function is None:
            continue
        try:
            function(subject, error if error is not None else raised)
        except Exception as exc:  # noqa: BLE001 - re-raised by the caller after the rest
            raised = raised or exc
    return raised


class EpochTimer(Callback):
    """Puts each epoch's wall-clock seconds in its record as ``time``."""

    def on_epoch_begin(self, trainer, epoch):
        self._start = time.perf_counter()

    def on_epoch_end(self, trainer, record):
        record["time"] = time.perf_counter() - self._start


class DivergenceGuard(Callback):
    """Stops training with a ``ValueError`` when a loss of the epoch is not finite, or
    when ``loss`` has exploded: risen above its first epoch's value by more than
    ``factor`` times that value's size (at least 1).

    The detector being fitted keeps its previous fitted state (a failed fit changes
    nothing).
    """

    def __init__(self, factor=1e3):
        self.factor = factor

    def on_train_begin(self, trainer):
        self._first = None

    def on_epoch_end(self, trainer, record):
        name = type(trainer.estimator).__name__ if trainer.estimator is not None else "model"
        bad = [key for key, value in record.items() if not math.isfinite(value)]
        if bad:
            raise ValueError(
                f"Training of {name} diverged at epoch {record['epoch']}: {', '.join(bad)} "
                "became non-finite. Lower learning_rate_init or check that the input has no "
                "extreme values; the detector keeps its previous state.")
        loss = record["loss"]
        if self._first is None:
            self._first = loss
        elif loss - self._first > self.factor * max(abs(self._first), 1.0):
            raise ValueError(
                f"Training of {name} diverged at epoch {record['epoch']}: the loss exploded "
                f"from {self._first:.4g} at epoch 1 to {loss:.4g}. Lower learning_rate_init; "
                "the detector keeps its previous state.")


class EarlyStopping(Callback):
    """Stop when the watched loss has not improved by ``tol`` for ``patience`` epochs.

    The watched loss is ``val_loss`` when the epochs have one, else ``loss``. With a
    validation loss the weights of the best epoch are restored at the end (as
    scikit-learn's ``MLPRegressor(early_stopping=True)`` does).

    Attributes
    ----------
    best_loss : float
        Lowest watched loss so far (``inf`` before the first epoch).
    best_epoch : int or None
        Its epoch.
    """

    def __init__(self, tol=1e-4, patience=10):
        self.tol = tol
        self.patience = patience

    def on_train_begin(self, trainer):
        self.best_loss, self.best_epoch, self._best_state, self._waited = np.inf, None, None, 0

    def watch(self, trainer, record):
        """``(watched loss, whether its best epoch's weights are restored)``."""
        validated = "val_loss" in record
        return (record["val_loss"] if validated else record["loss"]), validated

    def on_epoch_end(self, trainer, record):
        watched, restore = self.watch(trainer, record)
        if watched < self.best_loss - self.tol:
            self.best_loss, self.best_epoch, self._waited = watched, record["epoch"], 0
            if restore:
                self._best_state = copy.deepcopy(trainer.model.state_dict())
        else:
            self._waited += 1
        if self._waited >= self.patience:
            trainer.stop_training = True

    def on_train_end(self, trainer, error):
        if error is None and self._best_state is not None:
            trainer.model.load_state_dict(self._best_state)
        self._best_state = None


def score_entropy(losses):
    """Entropy (nats) of per-row losses as a distribution over the rows: shifted to
    start at 0 and normalized to sum to 1. Low when a few rows carry the loss; the
    largest, ``log(n)``, when no row stands out (every loss equal)."""
    mass = np.asarray(losses, dtype=np.float64)
    mass = mass - mass.min()
    total = mass.sum()
    if not total > 0:
        return float(np.log(mass.size))
    p = mass[mass > 0] / total
    return float(-(p * np.log(p)).sum())


class EntropyStopping(EarlyStopping):
    """Label-free choice of the epoch (EntropyStop, Huang et al., KDD 2024): after each
    epoch, the model's per-row loss (``validation_loss``, in eval mode) of the
    ``rows`` (training rows, on the device) as a distribution over them, and its
    entropy (:func:`score_entropy`), put in the epoch's record as ``score_entropy``.
    The weights of the epoch with the lowest entropy are restored at the end;
    training stops after ``patience`` epochs without a new low by more than ``tol``.

    A low entropy means the loss sits on few rows: the normal rows are fitted and a
    few stand out, before the network learns to reconstruct those too.

    Attributes
    ----------
    best_loss : float
        Lowest entropy so far (``inf`` before the first epoch).
    best_epoch : int or None
        Its epoch.
    """

    def __init__(self, rows, chunk_rows, tol=1e-4, patience=10):
        super().__init__(tol, patience)
        self.rows = rows
        self.chunk_rows = chunk_rows

    def watch(self, trainer, record):
        model = trainer.model
        model.eval()
        losses = map_chunks(model.validation_loss, self.rows.shape[0], self.chunk_rows,
                            lambda start, stop: self.rows[start:stop], host=True)
        record["score_entropy"] = score_entropy(losses)
        return record["score_entropy"], True


class ProgressBar(Callback):
    """A tqdm bar over the epochs showing the losses of the last one."""

    def __init__(self, description=None):
        self.description = description

    def on_train_begin(self, trainer):
        from tqdm.auto import tqdm

        self._bar = tqdm(total=trainer.max_iter, desc=self.description, unit="epoch")

    def on_epoch_end(self, trainer, record):
        self._bar.update(1)
        self._bar.set_postfix({k: f"{v:.4g}" for k, v in record.items() if k != "epoch"})

    def on_train_end(self, trainer, error):
        done = len(trainer.history)
        if error is None and done < trainer.max_iter:  # early stopping, or a callback
            self._bar.set_description_str(
                f"{self.description + ': ' if self.description else ''}stopped early at "
                f"epoch {done} of {trainer.max_iter}", refresh=True)
        self._bar.close()


class Corruption:
    """Denoising input: ``noise`` added (Gaussian, in scaled units) or a share ``noise``
    of the values zeroed (``'mask'``), then clipped to ``[low, high]``: the training
    data's range, per feature or one range for all pixels."""

    def __init__(self, noise, noise_type, low, high):
        self.noise, self.noise_type, self.low, self.high = noise, noise_type, low, high

    @classmethod
    def fit(cls, X_train, noise, noise_type, one_range):
        """The corruption for training rows ``X_train`` (a tensor); ``one_range`` clips
        every value to the overall range instead of each feature's."""
        if one_range:
            return cls(noise, noise_type, X_train.amin(), X_train.amax())
        return cls(noise, noise_type, X_train.amin(dim=0), X_train.amax(dim=0))

    def __call__(self, x, generator):
        if self.noise_type == "gaussian":
            draws = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            noisy = x + self.noise * draws
        else:
            draws = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            noisy = x * (draws >= self.noise)
        return torch.clamp(noisy, self.low, self.high)


class LossSums:
    """An epoch's sum of each loss times its batch's rows: float32, added in the order
    of the steps, starting from 0 (its mean over the rows is the epoch's loss).

    On the device, each step adds its losses as they come (two small tensor operations
    per loss, none waiting for the device). On the CPU, where those operations cost
    about 3.6 us per loss and step (11 us of the VAE's compiled step of 230 us), the
    losses wait in a list and are added every ``FLUSH`` steps by numpy: the same
    float32 products and additions in the same order, so the same sums, bit for bit.
    """

    FLUSH = 512

    def __init__(self, device):
        self.deferred = torch.device(device).type == "cpu"
        self.sums, self.pending, self.rows = {}, [], []

    def add(self, losses, n_rows):
        if not self.deferred:
            for name, value in losses.items():
                self.sums[name] = self.sums.get(name, 0.0) + value.detach().float() * n_rows
            return
        self.pending.append(losses)
        self.rows.append(n_rows)
        if len(self.pending) >= self.FLUSH:
            self._flush()

    def _flush(self):
        names = dict.fromkeys(name for losses in self.pending for name in losses)
        for name in names:
            steps = [i for i, losses in enumerate(self.pending) if name in losses]
            values = torch.stack([self.pending[i][name].detach().float() for i in steps])
            rows = np.array([self.rows[i] for i in steps], dtype=np.float32)
            products = values.numpy() * rows  # float32, as value * n_rows on a tensor
            start = self.sums.get(name, torch.zeros((), dtype=torch.float32))
            products = np.concatenate([start.numpy().reshape(1), products])
            self.sums[name] = torch.from_numpy(np.add.accumulate(products)[-1:].reshape(()))
        self.pending, self.rows = [], []

    def totals(self):
        """``{name: 0-d float32 tensor}``, the sums so far."""
        if self.pending:
            self._flush()
        return self.sums


def batch_indices(n_rows, batch_size, generator):
    """A shuffled split of ``range(n_rows)`` into index batches; a trailing batch of one
    row joins the previous one, so batch norm always sees at least two rows."""
    perm = torch.randperm(n_rows, generator=generator, device=generator.device)
    batches = list(torch.split(perm, batch_size))
    if len(batches) > 1 and batches[-1].numel() == 1:
        batches[-2] = torch.cat(batches[-2:])
        batches.pop()
    return batches


class Trainer:
    """Mini-batch training of a model with callbacks.

    Parameters
    ----------
    max_iter : int
        Maximum number of epochs.
    batch_size : int
        Rows per optimizer step.
    generator : torch.Generator
        The source of every random draw of training (shuffling, corruption, dropout,
        the model's own noise), on the training device.
    callbacks : list of Callback
        Called in order at every hook.
    chunk_rows : int
        Rows per chunk of the validation loss.
    corruption : Corruption, default=None
        Applied to the inputs (not the targets) of every step.
    estimator : object, default=None
        The detector being fitted, for the callbacks; the trainer never reads it.
    autocast : torch.dtype, default=None
        Mixed precision: the steps run under ``torch.autocast`` of the training
        device with this dtype (``torch.bfloat16``); ``None`` trains in float32. The
        validation loss is always computed in float32.
    distributed : aedetect._distributed.DataParallel, default=None
        The ranks of a data-parallel fit (see :mod:`aedetect._distributed`): each
        rank trains on its share of every epoch's batches, the gradients are averaged
        before every optimizer step and the epoch's records over the ranks.
        ``callbacks`` are then this rank's (the fit leaves the logging ones to rank 0).
    torch_compile : bool, default=False
        Run the model's ``compiled_training_step`` (one ``torch.compile`` graph per
        step, see :mod:`aedetect.models.compiled`) instead of its ``training_step``.
        Not with ``distributed`` (its gradient averaging hooks the optimizers' steps).

    Attributes
    ----------
    history : list of dict
        One record per epoch (see :meth:`Callback.on_epoch_end`).
    stop_training : bool
        Set by a callback to end training after the current epoch.
    """

    def __init__(self, *, max_iter, batch_size, generator, callbacks, chunk_rows,
                 corruption=None, estimator=None, autocast=None, distributed=None,
                 torch_compile=False):
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.generator = generator
        self.callbacks = list(callbacks)
        self.chunk_rows = chunk_rows
        self.corruption = corruption
        self.estimator = estimator
        self.autocast = autocast
        self.distributed = distributed
        self.torch_compile = torch_compile
        if torch_compile and distributed is not None:
            raise ValueError(
                "torch_compile=True cannot train data-parallel under torchrun: the compiled "
                "step updates the weights itself, where the ranks average their gradients "
                "in the optimizers' steps. Use torch_compile=False.")
        if distributed is not None:  # after every other callback's on_epoch_end
            from ._distributed import StopOnAnyRank

            self.callbacks.append(StopOnAnyRank(distributed))

    def fit(self, model, optimizers, X_train, y_train=None, X_val=None):
        """Train ``model`` in place with ``optimizers`` (from its ``configure_optimizers``)
        on tensors already on its device; return ``history``."""
        self.model, self.history, self.stop_training = model, [], False
        self.optimizers = optimizers
        self._compiled_step = None
        if self.torch_compile:
            if not hasattr(model, "compiled_training_step"):
                raise ValueError(f"torch_compile=True needs a model with a compiled step "
                                 f"(an aedetect DetectorModel); {type(model).__name__} has "
                                 "no compiled_training_step. Use torch_compile=False.")
            self._compiled_step = model.compiled_training_step(optimizers)
        # shuffling draws from ``generator``; the steps' own draws (dropout, corruption,
        # the model's noise) from ``_step_generator``: the same one, except that each
        # rank of a data-parallel fit has its own
        self._step_generator, hooks = self.generator, []
        if self.distributed is not None:
            self.distributed.check_same_start(model, X_train, type(self.estimator).__name__)
            self._step_generator = self.distributed.step_generator(self.generator)
            hooks = self.distributed.average_gradients(optimizers)
        networks.set_dropout_generator(model, self._step_generator)
        error = None
        try:
            call_hooks(self.callbacks, "on_train_begin", self)
            self._loop(X_train, y_train, X_val)
        except BaseException as exc:
            error = exc
        for hook in hooks:
            hook.remove()
        networks.set_dropout_generator(model, None)
        model.eval()
        raised = call_end_hooks(self.callbacks, "on_train_end", self, error)
        if error is not None or raised is not None:
            raise error if error is not None else raised
        return self.history

    def _loop(self, X_train, y_train, X_val):
        for epoch in range(1, self.max_iter + 1):
            call_hooks(self.callbacks, "on_epoch_begin", self, epoch)
            record = {"epoch": epoch, **self._train_pass(X_train, y_train)}
            if X_val is not None:
                record["val_loss"] = self._validation_loss(X_val)
            self.history.append(record)
            call_hooks(self.callbacks, "on_epoch_end", self, record)
            if self.stop_training:
                break

    def _train_pass(self, X_train, y_train):
        """One epoch: over the tensor ``X_train``, or over each chunk of streamed rows
        (``aedetect._streaming.StreamedRows``, chunks in a random order, each with its
        labels); the mean of each loss over the rows."""
        if torch.is_tensor(X_train):
            return self._train_epoch(X_train, y_train)
        totals, n_rows = {}, 0
        for chunk, labels in X_train.epoch(self.generator):
            for name, mean in self._train_epoch(chunk, labels).items():
                totals[name] = totals.get(name, 0.0) + mean * chunk.shape[0]
            n_rows += chunk.shape[0]
        return {name: total / n_rows for name, total in totals.items()}

    def _train_epoch(self, X_train, y_train):
        """One pass over the shuffled batches (this rank's share of them in a
        data-parallel fit): the mean of each loss over the rows (of every rank).
        Nothing in the loop waits for the device: the sums stay on it until the end."""
        self.model.train()
        ranks, generator = self.distributed, self._step_generator
        batches = (batch_indices(X_train.shape[0], self.batch_size, self.generator)
                   if ranks is None else
                   ranks.batches(X_train.shape[0], self.batch_size, self.generator))
        precision = (contextlib.nullcontext() if self.autocast is None else
                     torch.autocast(X_train.device.type, dtype=self.autocast))
        sums, n_rows = LossSums(X_train.device), 0
        for batch, index in enumerate(batches):
            call_hooks(self.callbacks, "on_batch_begin", self, batch)
            target = X_train[index]
            inputs = target if self.corruption is None else self.corruption(target, generator)
            labels = None if y_train is None else y_train[index]
            with precision:
                step = self._compiled_step or self.model.training_step
                losses = step(inputs, target, labels, self.optimizers, generator)
            sums.add(losses, index.numel())
            n_rows += index.numel()
            call_hooks(self.callbacks, "on_batch_end", self, batch, losses)
        totals = sums.totals()
        if ranks is not None:
            return ranks.reduce_epoch(totals, n_rows, self.model)
        return {name: float(total) / X_train.shape[0] for name, total in totals.items()}

    def _validation_loss(self, X_val):
        """Mean of the model's per-row validation loss over the held-out rows."""
        self.model.eval()
        losses = map_chunks(self.model.validation_loss, X_val.shape[0], self.chunk_rows,
                            lambda start, stop: X_val[start:stop])
        return float(losses.sum()) / X_val.shape[0]
