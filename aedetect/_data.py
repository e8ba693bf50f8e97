"""The data boundary: input validation, image shapes, scaling and scoring chunks.

Image input. A detector sees every input as 2-D rows (one flattened sample per row, C order), so
validation, scaling and feature names stay scikit-learn's. Images arrive as
``(n, height, width)`` or ``(n, channels, height, width)`` arrays (channels first,
PyTorch's layout), or as rows with the detector's ``image_shape`` parameter. The
functions here flatten image arrays, resolve the per-sample shape the network sees
(``input_shape_``, always ``(channels, height, width)`` for images) and validate the
parameters that depend on it.

Scaling: :class:`Scaling` holds the per-feature ``center`` and ``scale`` a detector
learns in ``fit`` (its rules are documented there). Chunks: :func:`chunk_rows` sizes
the inference chunks by a memory budget and :func:`map_chunks` is the one loop that
applies a function to them (used for scoring, encoding, calibration and the
validation loss alike). Nothing here trains or knows a model.
"""

import math
from numbers import Integral

import numpy as np
import torch
from sklearn.utils.validation import validate_data

#: Bytes of activations one inference chunk may use (inputs, hidden layers, outputs).
SCORING_MEMORY_BUDGET = 64 * 2**20
#: On the CPU: bytes of the widest layer's activations in one inference chunk (a
#: cache-sized working set; see :func:`chunk_rows`) ...
CPU_CHUNK_BYTES = 2 * 2**20
#: ... and the fewest rows such a chunk has (each chunk costs Python and dispatch).
MIN_CPU_CHUNK_ROWS = 512
#: Inference chunks smaller than this are padded (see :func:`padded`).
MIN_SCORING_ROWS = 16
#: Interquartile range of a standard normal: IQR / 1.349 estimates its standard deviation.
IQR_TO_STD = 1.3489795
SCALING_RULES = ("robust", "standard", "minmax", "global_minmax", None)


def split_image_input(X):
    """Flatten an image array into rows.

    Returns ``(rows, sample_shape)``: for a ``(n, H, W)`` or ``(n, C, H, W)`` array,
    the ``(n, C*H*W)`` rows and the per-sample shape as given (``(H, W)`` or
    ``(C, H, W)``); for anything else, ``X`` unchanged and ``None`` (scikit-learn's
    validation then handles it, including its "Expected 2D array" errors).
    """
    shape = getattr(X, "shape", None)
    if shape is None and isinstance(X, (list, tuple)):
        try:
            array = np.asarray(X)
        except ValueError:  # ragged nested lists: let scikit-learn report them
            return X, None
        if array.ndim >= 3:
            X, shape = array, array.shape
    if shape is None or len(shape) <= 2:
        return X, None
    if len(shape) > 4:
        raise ValueError(
            f"Expected 2D rows, (n_samples, height, width) or (n_samples, channels, height, "
            f"width) images, got an array of shape {tuple(shape)}. Reshape X to one of these.")
    if len(shape) == 4 and shape[-1] in (1, 3, 4) and shape[1] not in (1, 3, 4):
        raise ValueError(
            f"X has shape {tuple(shape)}: channels-last images (n_samples, height, width, "
            "channels), it seems, but aedetect takes images channels first, as PyTorch does: "
            "pass X.transpose(0, 3, 1, 2), of shape (n_samples, channels, height, width).")
    rows = np.asarray(X).reshape(shape[0], math.prod(shape[1:]))
    return rows, tuple(int(side) for side in shape[1:])


def as_chw(shape):
    """``(H, W)`` -> ``(1, H, W)``; ``(C, H, W)`` unchanged."""
    shape = tuple(shape)
    return (1, *shape) if len(shape) == 2 else shape


def resolve_image_shape(image_shape, n_features):
    """The ``image_shape`` parameter as ``(C, H, W)`` for rows of ``n_features`` values.

    One side may be ``-1``: it is inferred from ``n_features`` as in
    ``numpy.reshape``, so ``image_shape=(1, -1)`` treats each row as a one-pixel-high
    image of any width.
    """
    shape = tuple(image_shape)
    valid = len(shape) in (2, 3) and all(
        isinstance(side, Integral) and (side > 0 or side == -1) for side in shape)
    if not valid or shape.count(-1) > 1:
        raise ValueError(f"image_shape must be (height, width) or (channels, height, width) of "
                         f"positive ints, one of which may be -1; got {image_shape!r}.")
    known = math.prod(side for side in shape if side != -1)
    if -1 in shape:
        if n_features % known:
            raise ValueError(f"image_shape={image_shape!r} cannot hold {n_features} features per "
                             f"row: {n_features} is not a multiple of {known}.")
        shape = tuple(n_features // known if side == -1 else side for side in shape)
    elif known != n_features:
        raise ValueError(f"image_shape={image_shape!r} holds {known} values but X has "
                         f"{n_features} features per row.")
    return as_chw(int(side) for side in shape)


def resolve_input_shape(image_shape, sample_shape, n_features, architecture):
    """Shape of one sample as the network sees it (``input_shape_``).

    ``sample_shape`` is the per-image shape of an image array passed to ``fit``
    (``None`` for rows). Images give ``(C, H, W)``; plain rows give
    ``(n_features,)``, which only the dense architecture accepts.
    """
    if image_shape is not None:
        shape = resolve_image_shape(image_shape, n_features)
        if sample_shape is not None and as_chw(sample_shape) != shape:
            raise ValueError(f"X holds images of shape {sample_shape} but image_shape="
                             f"{image_shape!r}; drop image_shape or make them agree.")
        return shape
    if sample_shape is not None:
        return as_chw(sample_shape)
    if architecture == "conv":
        raise ValueError("architecture='conv' needs images: pass X of shape (n_samples, height, "
                         "width) or (n_samples, channels, height, width), or rows together with "
                         "image_shape=(height, width) or (channels, height, width).")
    return (n_features,)


def check_sample_shape(sample_shape, input_shape, estimator_name):
    """At predict time, images must have the shape the detector was fitted on."""
    if len(input_shape) == 3 and as_chw(sample_shape) != tuple(input_shape):
        raise ValueError(f"X holds images of shape {sample_shape}, but {estimator_name} was "
                         f"fitted on images of shape {tuple(input_shape)} (channels, height, "
                         "width).")


def check_conv_channels(conv_channels):
    """``conv_channels`` as a tuple of positive ints, one per convolution stage."""
    channels = tuple(conv_channels)
    if not channels or not all(isinstance(c, Integral) and c > 0 for c in channels):
        raise ValueError("conv_channels must be a non-empty sequence of positive ints (one per "
                         f"convolution stage), got {conv_channels!r}.")
    return tuple(int(c) for c in channels)


def widest_activation(input_shape, hidden_layer_sizes, conv_channels=None):
    """Largest number of values one sample occupies in any layer (for chunked scoring)."""
    from .networks import conv_feature_sizes

    widest = max(math.prod(input_shape), *hidden_layer_sizes, 1)
    if conv_channels:
        sizes = conv_feature_sizes(input_shape[1:], len(conv_channels))
        widest = max(widest, *(c * math.prod(s) for c, s in zip(conv_channels, sizes)))
    return widest


# ------------------------------------------------------------------ validation
def validate_samples(estimator, X, reset):
    """``(rows, sample_shape)``: validated 2-D float rows of ``X`` and the per-image
    shape of an image array as given (``None`` for rows).

    ``n_features_in_`` counts the values of one sample, so a detector fitted on
    ``(n, C, H, W)`` images also scores the same images flattened to rows. With
    ``reset`` (``fit``) at least two samples are required.
    """
    rows, sample_shape = split_image_input(X)
    if not reset and sample_shape is not None:
        check_sample_shape(sample_shape, estimator.input_shape_, type(estimator).__name__)
    rows = validate_data(estimator, rows, reset=reset, dtype=[np.float64, np.float32],
                         ensure_min_samples=2 if reset else 1)
    return rows, sample_shape


def shaped(rows, sample_shape):
    """Rows back in the per-sample shape the user gave (unchanged for plain rows)."""
    return rows if sample_shape is None else rows.reshape(rows.shape[0], *sample_shape)


# --------------------------------------------------------------------- scaling
class Scaling:
    """Per-feature ``center`` and ``scale``: the network sees ``(X - center) / scale``.

    ``'robust'``: median and interquartile range / 1.349 (the standard deviation for
    Gaussian data), falling back to the standard deviation where the quartiles
    coincide; ``'standard'``: mean and standard deviation; ``'minmax'``: minimum and
    range; ``'global_minmax'`` (``'auto'`` for convolutions): the minimum and range
    over all values, the same for every pixel, so images keep their structure and
    land in [0, 1]; ``None``: identity. Constant features get a scale of 1.
    """

    def __init__(self, center, scale):
        self.center = np.asarray(center, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self._tensors = None  # center and scale as tensors, made on first use

    @classmethod
    def fit(cls, X, rule):
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
        elif rule is None:
            center, scale = np.zeros(n_features), np.ones(n_features)
        else:
            raise ValueError(f"Unknown scaling rule {rule!r}; expected one of {SCALING_RULES}.")
        scale[~(scale > 1e-12)] = 1.0
        return cls(center, scale)

    def transform(self, X, input_shape, start=0, feature_names=None):
        """Scaled float32 array shaped ``(n, *input_shape)``.

        The network computes in float32: a value that does not fit there after scaling
        raises a ``ValueError`` naming its row (counted from ``start``) and column
        (by name when ``feature_names`` are given).
        """
        return self.tensor(X, input_shape, start, feature_names).numpy()

    def tensor(self, X, input_shape, start=0, feature_names=None):
        """:meth:`transform` as a float32 CPU tensor (sharing its memory).

        The same numbers either way: ``(X - center) / scale`` in float64, rounded to
        float32. For float32 or float64 numpy rows torch computes it, about twice as
        fast as numpy, whose mixed float32 - float64 subtraction goes through its
        casting buffers; other input (read-only arrays, other dtypes) takes numpy's
        path.
        """
        if (isinstance(X, np.ndarray) and X.dtype in (np.float32, np.float64)
                and X.flags.writeable and all(stride >= 0 for stride in X.strides)):
            if self._tensors is None:
                self._tensors = (torch.tensor(self.center), torch.tensor(self.scale))
            center, scale = self._tensors
            # float64 - float64 center: a new tensor, so the in-place division never
            # touches X (float32 X is promoted, as numpy promotes it)
            scaled = torch.sub(torch.from_numpy(X), center).div_(scale)
            scaled = scaled.to(torch.float32, memory_format=torch.contiguous_format)
            array = scaled.numpy()
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                array = ((X - self.center) / self.scale).astype(np.float32, copy=False)
            scaled = torch.from_numpy(np.ascontiguousarray(array))
        if not np.isfinite(array).all():
            _raise_out_of_float32(X, array, start, feature_names)
        return scaled.reshape(-1, *input_shape)

    def inverse(self, rows):
        """Scaled rows (flattened samples) back in the units of ``X``."""
        return rows * self.scale + self.center


def _raise_out_of_float32(X, scaled, start, feature_names):
    bad = np.argwhere(~np.isfinite(scaled))
    row, column = (int(i) for i in bad[0])
    name = repr(str(feature_names[column])) if feature_names is not None else column
    raise ValueError(
        f"X[{start + row}, {name}] = {X[row, column]:.4g} does not fit in float32 after "
        f"scaling (it becomes {scaled[row, column]}; float32 holds magnitudes up to about "
        f"3.4e38), and the network computes in float32 ({len(bad)} such value(s) in these "
        "rows). Clip, rescale or log-transform such values before fitting or scoring.")


def check_scores(scores, start=0):
    """Scores must be finite: a row that cannot be scored is neither an inlier nor an
    outlier, so it raises a ``ValueError`` naming the rows (never a NaN label)."""
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        rows = ", ".join(str(start + i) for i in bad[:10]) + (" ..." if bad.size > 10 else "")
        raise ValueError(
            f"{bad.size} row(s) cannot be scored: their score is not finite (rows {rows}); "
            "their values, although within float32's range, overflow inside the network. "
            "Clip or rescale extreme values before scoring (or refit on data of that scale).")
    return scores


# ---------------------------------------------------------------------- chunks
def chunk_rows(input_shape, hidden_layer_sizes, latent_dim, conv_channels=None, copies=1,
               device=None):
    """Rows per inference chunk: ``copies`` float32 activations of the widest layer,
    four layers' worth, fit in ``SCORING_MEMORY_BUDGET`` (a model that decodes
    several codes per row asks for as many copies).

    On the CPU (``device``), fewer: the widest layer's ``copies`` activations of one
    chunk fit in ``CPU_CHUNK_BYTES``, so that a chunk's layers run from the cache, with
    at least ``MIN_CPU_CHUNK_ROWS`` rows (see ``benchmarks/results/step_overhead.md``:
    PyOD's AutoEncoder network scores 1.5x faster in chunks of 4,096 rows than of
    65,536). A multiple of ``MIN_SCORING_ROWS`` rows: the CPU's matrix product
    handles rows in small blocks, and a row at another place in them can differ in the
    last float32 bit (measured with torch 2.13: chunks of an odd number of rows changed
    the scores of about 1% of the rows), so with whole blocks in every chunk each row
    scores as it would with all rows in one chunk.
    """
    widest = max(widest_activation(input_shape, hidden_layer_sizes, conv_channels),
                 2 * latent_dim)
    rows = max(1, SCORING_MEMORY_BUDGET // (4 * 4 * widest * copies))
    if device is not None and torch.device(device).type == "cpu":
        rows = min(rows, max(MIN_CPU_CHUNK_ROWS, CPU_CHUNK_BYTES // (4 * widest * copies)))
    return rows - rows % MIN_SCORING_ROWS if rows >= MIN_SCORING_ROWS else rows


def padded(function, x):
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


def map_chunks(function, n_rows, chunk, load, host=False):
    """``function`` applied to ``load(start, stop)`` for consecutive chunks of ``chunk``
    rows out of ``n_rows``, in inference mode, short chunks padded (:func:`padded`);
    the outputs are concatenated along the first dimension: as a tensor on the device,
    or with ``host`` as a float64 numpy array (each chunk copied off the device as it
    is done, so device memory stays bounded)."""
    parts = []
    with torch.inference_mode():
        for start in range(0, n_rows, chunk):
            out = padded(function, load(start, min(start + chunk, n_rows)))
            parts.append(out.to(torch.float64).cpu().numpy() if host else out)
    return np.concatenate(parts) if host else torch.cat(parts)
