"""Image input for the detectors: the shapes users pass, turned into rows and back.

A detector sees every input as 2-D rows (one flattened sample per row, C order), so
validation, scaling and feature names stay scikit-learn's. Images arrive as
``(n, height, width)`` or ``(n, channels, height, width)`` arrays (channels first,
PyTorch's layout), or as rows with the detector's ``image_shape`` parameter. The
functions here flatten image arrays, resolve the per-sample shape the network sees
(``input_shape_``, always ``(channels, height, width)`` for images) and validate the
parameters that depend on it. Pure functions, no state.
"""

import math
from numbers import Integral

import numpy as np


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
