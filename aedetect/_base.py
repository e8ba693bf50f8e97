"""The scikit-learn outlier-detector contract and the one training loop.

:class:`BaseAutoencoderDetector` owns everything that is the same for every detector:
parameter validation, the numpy/pandas <-> tensor boundary, scaling, device choice,
seeding, the mini-batch loop with early stopping, batched scoring and thresholds.
A detector (``ae.py``, ``vae.py``, ``aae.py``) contributes only:

- ``_build(input_shape) -> torch.nn.Module``: its network (built on the CPU);
- ``_train_step(x, target, y) -> dict`` of detached loss tensors (key ``"loss"`` is the
  total), updating the weights through ``self._optimize(loss)`` or its own optimizers;
- ``_score_batch(x) -> Tensor`` of shape ``(n,)``: higher means more normal;
- ``_encode_batch(x) -> Tensor`` of shape ``(n, latent_dim)``: the latent code;
- ``_reconstruct_batch(x) -> Tensor`` shaped like ``x``: the reconstruction (the
  decoder's mean), in the scaled space the network sees.

Detectors with latent neighbour scores (``score_type`` in ``_neighbour_score_types``)
get the training codes kept after training (``reference_codes_``) and
``_neighbour_distance(codes)`` from here.

Model files never validate input or move data between devices; this file never knows
which model it trains.
"""

import copy
import math
import time
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    OutlierMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _images, networks
from .thresholds import contamination_offset

#: Bytes of activations one scoring chunk may use (inputs, hidden layers, outputs).
SCORING_MEMORY_BUDGET = 64 * 2**20
#: Scoring chunks smaller than this are padded (see :func:`_padded`).
MIN_SCORING_ROWS = 16

#: Callbacks every fit runs after the detector's own ``callbacks`` (the switch of
#: ``aedetect.tracking.autolog`` lives here).
GLOBAL_CALLBACKS = []

#: At most this many training rows (drawn with ``random_state``) give the reference
#: codes of the latent neighbour scores: it bounds their memory and scoring time.
MAX_REFERENCE_CODES = 10_000
#: Rows compared with every reference code at once (bounds the distance matrix).
NEIGHBOUR_CHUNK_ROWS = 1024

#: Interquartile range of a standard normal: IQR / 1.349 estimates its standard deviation.
IQR_TO_STD = 1.3489795


def resolve_device(device):
    """``"auto"`` -> cuda, then mps, then cpu; any other string must name an available device."""
    if isinstance(device, str) and device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a valid torch device; use 'auto', 'cpu', 'cuda', "
            "'cuda:N' or 'mps'."
        ) from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was requested but CUDA is not available; "
                             "use device='auto' or 'cpu'.")
        if resolved.index is None:
            resolved = torch.device("cuda", torch.cuda.current_device())
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r} was requested but MPS is not available; "
                         "use device='auto' or 'cpu'.")
    return resolved


def _batches(perm, batch_size):
    """Split a permutation into index batches; a trailing batch of one row joins the
    previous batch, so batch norm always sees at least two rows."""
    batches = list(torch.split(perm, batch_size))
    if len(batches) > 1 and batches[-1].numel() == 1:
        batches[-2] = torch.cat(batches[-2:])
        batches.pop()
    return batches


class BaseAutoencoderDetector(ClassNamePrefixFeaturesOutMixin, TransformerMixin, OutlierMixin,
                              BaseEstimator):
    """Base class of the autoencoder detectors. Not for direct use.

    See :class:`aedetect.AEDetector` for the parameters shared by every detector.
    """

    _parameter_constraints = {
        "hidden_layer_sizes": ["array-like", None],
        "latent_dim": [Interval(Integral, 1, None, closed="left"), None],
        "activation": [StrOptions(set(networks.ACTIVATIONS))],
        "dropout": [Interval(Real, 0, 1, closed="left"), StrOptions({"auto"})],
        "batch_norm": ["boolean", StrOptions({"auto"})],
        "architecture": [StrOptions(set(networks.ARCHITECTURES))],
        "image_shape": [tuple, list, None],
        "conv_channels": [tuple, list],
        "scaling": [StrOptions({"auto", "robust", "standard", "minmax"}), None],
        "noise": [Interval(Real, 0, None, closed="left"), None],
        "noise_type": [StrOptions({"gaussian", "mask"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "trim_fraction": [Interval(Real, 0, 0.5, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "contamination": [StrOptions({"auto"}), Interval(Real, 0, 0.5, closed="right")],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "callbacks": [list, tuple, None],
    }

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None):
        """Fit the autoencoder on ``X`` and set the threshold ``offset_``.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), or images
            Training data, assumed mostly normal: rows, or an image array of shape
            (n_samples, height, width) or (n_samples, channels, height, width).
        y : ignored
            Not used, present for API consistency (see ``AAEDetector(conditional=True)``).

        Returns
        -------
        self : object
            The fitted detector.
        """
        self._fit_and_score(X, y)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def _fit_and_score(self, X, y):
        """``fit``; returns the training scores that set ``offset_``."""
        saved_state = dict(self.__dict__)
        try:
            X = self._validate_input(X, reset=True)
            y = self._validate_target(y, X.shape[0])
            self._check_structure(X)
            device = resolve_device(self.device)
        except BaseException:
            self._restore(saved_state)
            raise
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        callbacks = list(self.callbacks or []) + GLOBAL_CALLBACKS
        error = None
        try:
            fork_devices = [device.index] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=fork_devices):
                torch.manual_seed(seed)
                for callback in callbacks:
                    _call(callback, "on_fit_begin", self, X)
                scores = self._fit(X, y, device, rng, callbacks)
        except BaseException as exc:
            error = exc
            self._restore(saved_state)
            raise
        finally:
            self.__dict__.pop("_optimizers", None)
            for callback in callbacks:
                _call(callback, "on_fit_end", self, error)
        return scores

    def _restore(self, saved_state):
        """Put back the state from before a failed ``fit``: a failure loses nothing."""
        self.__dict__.clear()
        self.__dict__.update(saved_state)

    def _fit(self, X, y, device, rng, callbacks):
        self.device_ = device
        self._fit_scaler(X)
        X_scaled = self._scale(X)
        train_idx, val_idx = self._split(X.shape[0], rng)
        X_train = torch.as_tensor(X_scaled[train_idx], device=device)
        X_val = torch.as_tensor(X_scaled[val_idx], device=device) if val_idx is not None else None
        y_train = None if y is None else torch.as_tensor(y[train_idx], device=device)
        self._set_clip_range(X_train)
        self.module_ = self._build(self.input_shape_).to(device)
        self._optimizers = self._make_optimizers(self.module_)
        if self._neighbour_score_types:
            self.reference_codes_ = None  # none while training (validation scores)
        self._train(X_train, y_train, X_val, callbacks)
        self.module_.eval()
        self._scoring_training_rows = True  # neighbour scores leave each row itself out
        if self._uses_neighbours():
            self._fit_neighbours(X, rng)
        scores = self._score(X)
        del self._scoring_training_rows
        self.offset_ = contamination_offset(scores, self.contamination)
        return scores

    # ------------------------------------------------- latent neighbours
    #: ``score_type`` values scored by the distance of a code to its nearest training
    #: codes (detectors that offer them set this).
    _neighbour_score_types = ()
    #: True only while ``fit`` scores the training rows themselves.
    _scoring_training_rows = False

    def _uses_neighbours(self):
        return bool(self._neighbour_score_types) and self.score_type in self._neighbour_score_types

    def _check_neighbours(self, n_samples):
        """``n_neighbors`` must leave at least one other reference code per row."""
        n_reference = min(n_samples, MAX_REFERENCE_CODES)
        if self._uses_neighbours() and self.n_neighbors >= n_reference:
            raise ValueError(
                f"score_type={self.score_type!r} compares each code with its n_neighbors="
                f"{self.n_neighbors} nearest training codes, other than its own, so it needs "
                f"more than n_neighbors reference codes; got {n_reference} (n_samples="
                f"{n_samples}, at most {MAX_REFERENCE_CODES} are kept). Lower n_neighbors "
                "or use more training data.")

    def _fit_neighbours(self, X, rng):
        """Keep the codes of the training rows (at most ``MAX_REFERENCE_CODES``, drawn
        with ``rng``), each dimension divided by its standard deviation over them
        (``code_scale_``), so that every latent dimension counts alike."""
        if X.shape[0] > MAX_REFERENCE_CODES:
            X = X[np.sort(rng.choice(X.shape[0], MAX_REFERENCE_CODES, replace=False))]
        codes = self._map_batches(X, self._encode_batch)
        scale = codes.std(axis=0)
        scale[~(scale > 1e-12)] = 1.0
        self.code_scale_ = scale
        self.reference_codes_ = (codes / scale).astype(np.float32)

    def _neighbour_distance(self, codes):
        """Mean Euclidean distance of each code (scaled by ``code_scale_``) to its
        ``n_neighbors`` nearest reference codes; while ``fit`` scores the training rows,
        the nearest one (the row itself) is left out."""
        reference = torch.from_numpy(self.reference_codes_).to(codes.device)
        scale = torch.from_numpy(self.code_scale_).to(codes.device, codes.dtype)
        return mean_neighbour_distance(codes / scale, reference, self.n_neighbors,
                                       skip_nearest=self._scoring_training_rows)

    def _train(self, X_train, y_train, X_val, callbacks):
        self.history_ = []
        best_loss, best_state, no_improvement = np.inf, None, 0
        epochs = range(1, self.max_iter + 1)
        if self.verbose:
            from tqdm.auto import tqdm

            epochs = tqdm(epochs, desc=type(self).__name__, unit="epoch")
        for epoch in epochs:
            record = self._run_epoch(epoch, X_train, y_train, X_val)
            self.history_.append(record)
            watched = record["val_loss"] if X_val is not None else record["loss"]
            if watched < best_loss - self.tol:
                best_loss, no_improvement = watched, 0
                self.best_epoch_ = epoch
                if X_val is not None:
                    best_state = copy.deepcopy(self.module_.state_dict())
            else:
                no_improvement += 1
            if self.verbose:
                epochs.set_postfix({k: f"{v:.4g}" for k, v in record.items() if k != "epoch"})
            for callback in callbacks:
                _call(callback, "on_epoch_end", self, record)
            if no_improvement >= self.n_iter_no_change:
                break
        self.n_iter_ = len(self.history_)
        self.best_loss_ = float(best_loss)
        self.loss_curve_ = [record["loss"] for record in self.history_]
        if best_state is not None:
            self.module_.load_state_dict(best_state)

    def _run_epoch(self, epoch, X_train, y_train, X_val):
        start = time.perf_counter()
        self.module_.train()
        n_train = X_train.shape[0]
        perm = torch.randperm(n_train, device=X_train.device)
        totals = {}
        for idx in _batches(perm, self.batch_size):
            target = X_train[idx]
            losses = self._train_step(self._corrupt(target), target,
                                      None if y_train is None else y_train[idx])
            for name, value in losses.items():
                totals[name] = totals.get(name, 0.0) + value.detach() * idx.numel()
        record = {"epoch": epoch}
        record.update({name: float(total) / n_train for name, total in totals.items()})
        if X_val is not None:
            record["val_loss"] = self._validation_loss(X_val)
        record["time"] = time.perf_counter() - start
        bad = [name for name, value in record.items() if not math.isfinite(value)]
        if bad:
            raise ValueError(
                f"Training of {type(self).__name__} diverged at epoch {epoch}: "
                f"{', '.join(bad)} became non-finite. Lower learning_rate_init or check "
                "that the input has no extreme values; the detector keeps its previous state."
            )
        return record

    def _validation_loss(self, X_val):
        """Minus the mean score of the held-out rows, scored in memory-bounded chunks."""
        self.module_.eval()
        with torch.inference_mode():
            chunks = X_val.split(self._chunk_rows())
            total = sum(self._score_batch(chunk).sum() for chunk in chunks)
        return -float(total) / X_val.shape[0]

    def _set_clip_range(self, X_train):
        """Range the corrupted inputs are clipped to: per feature, or one range over all
        pixels for images scaled alike everywhere (``'auto'`` for conv, or ``None``), so
        a pixel that is always dark in training still gets noise."""
        if len(self.input_shape_) == 3 and self._scaling_rule in ("global_minmax", None):
            self._clip_low, self._clip_high = X_train.amin(), X_train.amax()
        else:
            self._clip_low, self._clip_high = X_train.amin(dim=0), X_train.amax(dim=0)

    def _corrupt(self, x):
        """Denoising input: noise added during training only, clipped to the data range."""
        if not self.noise:
            return x
        if self.noise_type == "gaussian":
            noisy = x + self.noise * torch.randn_like(x)
        else:
            noisy = x * (torch.rand_like(x) >= self.noise)
        return torch.clamp(noisy, self._clip_low, self._clip_high)

    def _make_optimizers(self, module):
        """One Adam optimizer over every parameter; detectors with more override this."""
        return {"main": self._adam(module.parameters())}

    def _adam(self, parameters, lr=None):
        """Adam on ``parameters`` (already on ``device_``), fused into one kernel per
        step where this torch build supports it for the device (CPU since torch 2.4,
        CUDA): many small layers make the per-tensor loop the slowest part of a step."""
        parameters = list(parameters)
        options = {"lr": self.learning_rate_init if lr is None else lr,
                   "weight_decay": self.weight_decay}
        try:
            return torch.optim.Adam(parameters, fused=True, **options)
        except (RuntimeError, TypeError, ValueError):
            return torch.optim.Adam(parameters, **options)

    def _batch_loss(self, row_losses):
        """Mean of the per-row losses of a mini-batch over the rows ``_kept_rows`` keeps."""
        kept = self._kept_rows(row_losses)
        return row_losses.mean() if kept is None else row_losses[kept].mean()

    def _kept_rows(self, row_losses):
        """Indices of the rows of a mini-batch that train the model, or ``None`` for all.

        Robust training (``trim_fraction``): the share of rows with the largest loss
        is left out (a trimmed mean), so that the rows the model reconstructs worst,
        likely outliers mixed into the training data, pull the weights neither way.
        Detectors with several loss terms index each term's per-row values with it.
        """
        if not self.trim_fraction:
            return None
        keep = max(1, math.ceil((1.0 - self.trim_fraction) * row_losses.shape[0]))
        return torch.topk(row_losses.detach(), keep, largest=False, sorted=False).indices

    def _optimize(self, loss, name="main"):
        """One gradient step of optimizer ``name`` on ``loss``."""
        optimizer = self._optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    # ------------------------------------------------------------ structure
    def _check_structure(self, X):
        """Validate the parameters that depend on the data; set the resolved shapes.

        ``input_shape_`` is ``(C, H, W)`` for images (an image array given to ``fit``,
        or rows with ``image_shape``) and ``(n_features,)`` for plain rows.
        """
        n_features = X.shape[1]
        sample_shape = self.__dict__.pop("_fit_sample_shape", None)
        self.input_shape_ = _images.resolve_input_shape(self.image_shape, sample_shape,
                                                        n_features, self.architecture)
        _images.check_conv_channels(self.conv_channels)
        self.hidden_layer_sizes_ = self._resolve_hidden_sizes(n_features)
        self.latent_dim_ = self.latent_dim or self._default_latent_dim(n_features)
        self._check_neighbours(X.shape[0])
        if self.early_stopping and X.shape[0] < 3:
            raise ValueError("early_stopping=True needs at least 3 samples (2 to train, 1 to "
                             f"validate), got n_samples={X.shape[0]}.")

    def _resolve_hidden_sizes(self, n_features):
        if self.hidden_layer_sizes is None:
            if self.architecture == "conv":
                return ()  # the convolutions do the work; one linear map to the code
            return self._default_hidden_sizes(n_features)
        sizes = np.atleast_1d(np.asarray(self.hidden_layer_sizes))
        if sizes.ndim != 1 or not all(isinstance(s, Integral) and s > 0 for s in sizes.tolist()):
            raise ValueError("hidden_layer_sizes must be a sequence of positive ints, got "
                             f"{self.hidden_layer_sizes!r}.")
        return tuple(int(s) for s in sizes)

    @staticmethod
    def _default_hidden_sizes(n_features):
        """Default widths: four times the input, then twice, clipped to [16, 256] and
        [8, 128] (chosen on the ADBench datasets, see ``benchmarks/README.md``)."""
        first = int(np.clip(4 * n_features, 16, 256))
        second = int(np.clip(2 * n_features, 8, 128))
        return (first, second)

    @staticmethod
    def _default_latent_dim(n_features):
        """Default code size: a quarter of the features, between 2 and 32."""
        return int(np.clip(n_features // 4, 2, 32))

    def _network_options(self):
        """Layer options; ``'auto'`` regularizes dense networks (batch norm, dropout
        0.2: they lifted the tabular benchmark) and leaves convolutional ones plain (on
        images they blur the reconstructions; see the README's image section)."""
        dense = self.architecture == "dense"
        dropout = (0.2 if dense else 0.0) if self.dropout == "auto" else self.dropout
        batch_norm = dense if self.batch_norm == "auto" else self.batch_norm
        return {"activation": self.activation, "dropout": dropout, "batch_norm": batch_norm}

    def _make_encoder(self, out_dim):
        return networks.build_encoder(self.architecture, self.input_shape_, out_dim,
                                      self.hidden_layer_sizes_,
                                      conv_channels=tuple(self.conv_channels),
                                      **self._network_options())

    def _make_decoder(self, in_dim, output_activation=None):
        return networks.build_decoder(self.architecture, in_dim, self.input_shape_,
                                      self.hidden_layer_sizes_,
                                      output_activation=output_activation,
                                      conv_channels=tuple(self.conv_channels),
                                      **self._network_options())

    # ---------------------------------------------------- data boundary
    def _validate_input(self, X, reset):
        """Validated 2-D rows of ``X``; image arrays are flattened (see ``_validate_images``)."""
        return self._validate_images(X, reset)[0]

    def _validate_images(self, X, reset):
        """``(rows, sample_shape)``: validated 2-D rows and the per-image shape of an
        image array as given (``None`` for rows).

        ``n_features_in_`` counts the values of one sample, so a detector fitted on
        ``(n, C, H, W)`` images also scores the same images flattened to rows.
        """
        rows, sample_shape = _images.split_image_input(X)
        if not reset and sample_shape is not None:
            _images.check_sample_shape(sample_shape, self.input_shape_, type(self).__name__)
        rows = validate_data(self, rows, reset=reset, dtype=[np.float64, np.float32],
                             ensure_min_samples=2 if reset else 1)
        if reset:
            self._fit_sample_shape = sample_shape
        return rows, sample_shape

    def _validate_target(self, y, n_samples):
        """Targets are ignored unless a detector uses them (``AAEDetector``)."""
        return None

    def _split(self, n_samples, rng):
        if not self.early_stopping:
            return np.arange(n_samples), None
        perm = rng.permutation(n_samples)
        n_val = min(max(1, int(round(self.validation_fraction * n_samples))), n_samples - 2)
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])

    @property
    def _scaling_rule(self):
        if self.scaling == "auto":
            return "robust" if self.architecture == "dense" else "global_minmax"
        return self.scaling

    def _fit_scaler(self, X):
        """Per-feature ``center_`` and ``scale_`` applied before the network.

        ``'robust'``: median and interquartile range / 1.349 (the standard deviation
        for Gaussian data), falling back to the standard deviation where the quartiles
        coincide; ``'standard'``: mean and standard deviation; ``'minmax'``: minimum and
        range; ``'global_minmax'`` (``'auto'`` for convolutions): the minimum and range
        over all values, the same for every pixel, so images keep their structure and
        land in [0, 1]; ``None``: identity. Constant features get a scale of 1.
        """
        rule = self._scaling_rule
        n_features = X.shape[1]
        if rule == "robust":
            center = np.median(X, axis=0).astype(np.float64)
            q25, q75 = np.percentile(X, [25, 75], axis=0)
            scale = (q75 - q25).astype(np.float64) / IQR_TO_STD
            tied = ~(scale > 1e-12)
            scale[tied] = X[:, tied].std(axis=0, dtype=np.float64)
        elif rule == "standard":
            center, scale = X.mean(axis=0, dtype=np.float64), X.std(axis=0, dtype=np.float64)
        elif rule == "minmax":
            center = X.min(axis=0).astype(np.float64)
            scale = X.max(axis=0).astype(np.float64) - center
        elif rule == "global_minmax":
            low, high = float(X.min()), float(X.max())
            center, scale = np.full(n_features, low), np.full(n_features, high - low)
        else:
            center, scale = np.zeros(n_features), np.ones(n_features)
        scale[~(scale > 1e-12)] = 1.0
        self.center_, self.scale_ = center, scale

    def _scale(self, X):
        """Scaled float32 array shaped ``(n, *input_shape_)``."""
        scaled = ((X - self.center_) / self.scale_).astype(np.float32, copy=False)
        return scaled.reshape(-1, *self.input_shape_)

    def _to_tensor(self, X):
        return torch.from_numpy(np.ascontiguousarray(self._scale(X))).to(self.device_)

    def _chunk_rows(self):
        """Rows per scoring chunk (detectors that expand each row override this)."""
        return self._rows_per_chunk(copies=1)

    def _rows_per_chunk(self, copies):
        """Rows such that ``copies`` float32 activations of the widest layer, four
        layers' worth, fit in ``SCORING_MEMORY_BUDGET``."""
        conv_channels = self.conv_channels if self.architecture == "conv" else None
        widest = _images.widest_activation(self.input_shape_, self.hidden_layer_sizes_,
                                           conv_channels)
        widest = max(widest, 2 * self.latent_dim_)
        return max(1, SCORING_MEMORY_BUDGET // (4 * 4 * widest * copies))

    def _map_batches(self, X, function):
        """Apply ``function`` to tensors of chunks of ``X``; concatenate as float64 numpy."""
        self.module_.eval()
        chunk = self._chunk_rows()
        parts = []
        with torch.inference_mode():
            for start in range(0, X.shape[0], chunk):
                out = _padded(function, self._to_tensor(X[start:start + chunk]))
                parts.append(out.to(torch.float64).cpu().numpy())
        return np.concatenate(parts)

    def _score(self, X):
        """Scores of validated, unscaled ``X`` (no validation: ``fit`` reuses it)."""
        if self._uses_neighbours() and getattr(self, "reference_codes_", None) is None:
            raise ValueError(
                f"score_type={self.score_type!r} needs the training codes, which fit keeps "
                "only when score_type asks for them; this detector was fitted with another "
                "score_type. Fit it again with this score_type.")
        return self._map_batches(X, self._score_batch)

    # ------------------------------------------------------------ public
    def score_samples(self, X):
        """Normality score of each row: higher means more normal.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), or images
            Rows, or images of the shape seen in ``fit`` (one result per image).

        Returns
        -------
        scores : ndarray of shape (n_samples,), dtype float64
        """
        check_is_fitted(self)
        return self._score(self._validate_input(X, reset=False))

    def decision_function(self, X):
        """``score_samples(X) - offset_``: negative for outliers.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), or images
            Rows, or images of the shape seen in ``fit`` (one result per image).

        Returns
        -------
        decision : ndarray of shape (n_samples,), dtype float64
        """
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """Label each row: +1 for inliers, -1 for outliers.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), or images
            Rows, or images of the shape seen in ``fit`` (one result per image).

        Returns
        -------
        labels : ndarray of shape (n_samples,), values in {-1, +1}
        """
        return _labels(self.decision_function(X))

    def fit_predict(self, X, y=None):
        """Fit on ``X``, then label its samples: +1 for inliers, -1 for outliers.

        The labels come from the training scores ``fit`` set ``offset_`` with: the
        same as ``fit(X).predict(X)``, without scoring ``X`` twice, except with latent
        neighbour scores (``score_type='latent'`` or ``'combined'``), where each
        training sample is measured against the other training codes, so the share
        flagged matches ``contamination`` (``predict`` on the training data counts
        each row's own code among its neighbours and flags fewer).

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), or images
            Training data (see ``fit``).
        y : ignored
            Passed to ``fit``.

        Returns
        -------
        labels : ndarray of shape (n_samples,), values in {-1, +1}
        """
        return _labels(self._fit_and_score(X, y) - self.offset_)

    def transform(self, X):
        """Latent code of each row.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), or images
            Rows, or images of the shape seen in ``fit`` (one result per image).

        Returns
        -------
        codes : ndarray of shape (n_samples, latent_dim_), dtype float64
        """
        check_is_fitted(self)
        return self._map_batches(self._validate_input(X, reset=False), self._encode_batch)

    def reconstruct(self, X):
        """The network's reconstruction of each sample, in the units and shape of ``X``.

        With denoising training (``noise``) this is the cleaned input.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), or images
            Rows, or an image array of shape (n_samples, height, width) or
            (n_samples, channels, height, width).

        Returns
        -------
        X_reconstructed : ndarray of the shape of ``X``, dtype float64
        """
        check_is_fitted(self)
        X, sample_shape = self._validate_images(X, reset=False)
        scaled = self._map_batches(X, self._reconstruct_batch).reshape(X.shape[0], -1)
        return _shaped(scaled * self.scale_ + self.center_, sample_shape)

    def error_map(self, X):
        """Squared reconstruction error of every value (pixel) of every sample.

        The error is measured where the network works, in the scaled space
        ``(X - center_) / scale_`` (for ``architecture='conv'`` the default scaling
        maps the training pixels to [0, 1]): ``(x - reconstruct(x))**2``.
        ``AEDetector.score_samples`` is minus its mean over each sample (with the
        default ``score_type='reconstruction'``); otherwise it shows where a sample
        is reconstructed badly.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), or images
            Rows, or an image array of shape (n_samples, height, width) or
            (n_samples, channels, height, width).

        Returns
        -------
        errors : ndarray of the shape of ``X``, dtype float64
            For rows with ``image_shape``, reshape with
            ``errors.reshape(-1, *detector.input_shape_)`` to get images.
        """
        check_is_fitted(self)
        X, sample_shape = self._validate_images(X, reset=False)
        errors = self._map_batches(X, self._squared_error_batch).reshape(X.shape[0], -1)
        return _shaped(errors, sample_shape)

    def _squared_error_batch(self, x):
        return (self._reconstruct_batch(x) - x).pow(2)

    def _decode_rows(self, decode, codes, labels=None):
        """Rows in the user's units from ``decode(z)`` (or ``decode(z, labels)``) of
        ``codes``, chunk by chunk within the scoring memory budget, as float64 numpy."""
        self.module_.eval()
        chunk = self._rows_per_chunk(copies=1)
        parts = []
        with torch.inference_mode():
            for start in range(0, codes.shape[0], chunk):
                z = codes[start:start + chunk].to(self.device_)
                out = (decode(z) if labels is None
                       else decode(z, labels[start:start + chunk].to(self.device_)))
                parts.append(out.to(torch.float64).cpu().numpy().reshape(z.shape[0], -1))
        return np.concatenate(parts) * self.scale_ + self.center_

    @property
    def _n_features_out(self):
        """Columns of ``transform``: the code size (named by ``get_feature_names_out``)."""
        return self.latent_dim_

    # ----------------------------------------------------------- pickling
    def __getstate__(self):
        """Pickle with every tensor and module on the CPU, so a GPU fit loads anywhere."""
        state = super().__getstate__()
        if state.get("device_") is not None and torch.device(state["device_"]).type != "cpu":
            state = {key: _to_cpu(value) for key, value in state.items()}
        return state

    def __setstate__(self, state):
        device = state.get("device_")
        if device is not None and torch.device(device).type != "cpu":
            try:
                target = resolve_device(device)
            except ValueError:
                warnings.warn(f"This detector was fitted on {device}, which is not available; "
                              "it is loaded on the CPU.", UserWarning)
                target = torch.device("cpu")
            state = {key: _to_device(value, target) for key, value in state.items()}
            state["device_"] = target
        super().__setstate__(state)


def row_mean_squared_error(reconstruction, target):
    """Per-row mean squared error over every feature (or pixel)."""
    return (reconstruction - target).pow(2).flatten(1).mean(dim=1)


def mean_neighbour_distance(codes, reference, n_neighbors, skip_nearest=False):
    """Mean Euclidean distance of each row of ``codes`` to its ``n_neighbors`` nearest
    rows of ``reference``, skipping the nearest one first when ``skip_nearest``.

    Distances are computed directly (not through a matrix product), so a row's result
    does not depend on the rows scored with it.
    """
    skip = int(skip_nearest)
    parts = []
    for chunk in codes.split(NEIGHBOUR_CHUNK_ROWS):
        distances = torch.cdist(chunk, reference, compute_mode="donot_use_mm_for_euclid_dist")
        nearest = distances.topk(n_neighbors + skip, dim=1, largest=False, sorted=True).values
        parts.append(nearest[:, skip:].mean(dim=1))
    return torch.cat(parts)


def check_n_samples(n_samples):
    """``n_samples`` of ``sample()`` as an int, or a ValueError naming the problem."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, Integral) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}.")
    return int(n_samples)


def _padded(function, x):
    """``function(x)`` with fewer than ``MIN_SCORING_ROWS`` rows padded by repeating the
    last row, then cut back.

    PyTorch's CPU matrix product picks its kernel, and so its order of summation, by the
    number of rows: a row scored alone, or in a short last chunk, would differ in the
    last float32 bit from the same row in a full batch. Measured: below 4 rows with the
    torch 2.13 CPU wheel on an AVX2 machine, below 16 rows with torch 2.11 (MKL,
    AVX-512); padding to 16 keeps every score independent of its batch on both.
    """
    n_rows = x.shape[0]
    if n_rows >= MIN_SCORING_ROWS:
        return function(x)
    index = torch.arange(MIN_SCORING_ROWS, device=x.device).clamp(max=n_rows - 1)
    return function(x[index])[:n_rows]


def _labels(decision):
    """+1 where ``decision >= 0`` (inliers), -1 where it is negative (outliers)."""
    labels = np.ones(decision.shape[0], dtype=int)
    labels[decision < 0] = -1
    return labels


def _shaped(rows, sample_shape):
    """Rows back in the per-sample shape the user gave (unchanged for plain rows)."""
    return rows if sample_shape is None else rows.reshape(rows.shape[0], *sample_shape)


def _to_cpu(value):
    if isinstance(value, torch.nn.Module):
        return copy.deepcopy(value).to("cpu")
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu")
    return value


def _to_device(value, device):
    if isinstance(value, (torch.nn.Module, torch.Tensor)):
        return value.to(device)
    return value


def _call(callback, method, *args):
    """Call ``callback.method(*args)`` when the callback defines that method."""
    function = getattr(callback, method, None)
    if function is not None:
        function(*args)
