"""The network shape of a detector: resolved from its parameters and the data in ``fit``.

Functions of the estimator's parameters (read, never changed) that return the resolved
values (``input_shape_``, ``hidden_layer_sizes_``, ``latent_dim_``) and build the
encoder and decoder of :mod:`aedetect.networks` every detector uses.
"""

import warnings
from numbers import Integral

import numpy as np

from . import _data, networks


def default_hidden_sizes(n_features):
    """Default widths: four times the input, then twice, clipped to [16, 256] and
    [8, 128] (chosen on the ADBench datasets, see ``benchmarks/README.md``)."""
    first = int(np.clip(4 * n_features, 16, 256))
    second = int(np.clip(2 * n_features, 8, 128))
    return (first, second)


def default_latent_dim(n_features):
    """Default code size: a quarter of the features, between 2 and 32."""
    return int(np.clip(n_features // 4, 2, 32))


def resolve(estimator, n_samples, n_features, sample_shape):
    """``{"input_shape_", "hidden_layer_sizes_", "latent_dim_"}`` for data of
    ``n_samples`` samples of ``n_features`` values (``sample_shape``: the per-image
    shape of an image array, or ``None``), validating the parameters they depend on.

    ``input_shape_`` is ``(C, H, W)`` for images (an image array given to ``fit``, or
    rows with ``image_shape``) and ``(n_features,)`` for plain rows.
    """
    input_shape = _data.resolve_input_shape(estimator.image_shape, sample_shape, n_features,
                                            estimator.architecture)
    _data.check_conv_channels(estimator.conv_channels)
    if holds_out_rows(estimator) and n_samples < 3:
        raise ValueError("early_stopping=True needs at least 3 samples (2 to train, 1 to "
                         f"validate), got n_samples={n_samples}.")
    if estimator.batch_size < 2 and network_options(estimator)["batch_norm"]:
        raise ValueError(
            f"batch_size={estimator.batch_size} cannot train with batch normalization, which "
            "needs at least 2 rows per batch (batch_norm='auto' turns it on for the dense "
            "architecture). Use batch_size >= 2, or batch_norm=False.")
    if estimator.latent_dim is not None and estimator.latent_dim >= n_features:
        warnings.warn(
            f"latent_dim={estimator.latent_dim} is not smaller than the {n_features} "
            "features: the autoencoder can learn to copy its input, and its reconstruction "
            "error then says little about outliers. Use a latent_dim below n_features.",
            UserWarning, stacklevel=_fitting_stacklevel())
    return {"input_shape_": input_shape,
            "hidden_layer_sizes_": _hidden_sizes(estimator, n_features),
            "latent_dim_": estimator.latent_dim or default_latent_dim(n_features)}


def _fitting_stacklevel():
    from ._fitting import user_stacklevel

    return user_stacklevel() + 1


def _hidden_sizes(estimator, n_features):
    if estimator.hidden_layer_sizes is None:
        if estimator.architecture == "conv":
            return ()  # the convolutions do the work; one linear map to the code
        return default_hidden_sizes(n_features)
    return layer_sizes("hidden_layer_sizes", estimator.hidden_layer_sizes)


def layer_sizes(name, sizes):
    """The layer widths of parameter ``name`` as a tuple of positive ints, or a
    ``ValueError`` naming it."""
    array = np.atleast_1d(np.asarray(sizes, dtype=object))
    valid = array.ndim == 1 and all(isinstance(s, Integral) and not isinstance(s, bool)
                                    and s > 0 for s in array.tolist())
    if not valid:
        raise ValueError(f"{name} must be a sequence of positive ints (one width per layer), "
                         f"got {sizes!r}.")
    return tuple(int(s) for s in array)


def network_options(estimator):
    """Layer options; ``'auto'`` regularizes dense networks (batch norm, dropout 0.2:
    they lifted the tabular benchmark) and leaves convolutional ones plain (on images
    they blur the reconstructions; see the README's image section)."""
    dense = estimator.architecture == "dense"
    dropout = (0.2 if dense else 0.0) if estimator.dropout == "auto" else estimator.dropout
    batch_norm = dense if estimator.batch_norm == "auto" else estimator.batch_norm
    return {"activation": estimator.activation, "dropout": dropout, "batch_norm": batch_norm}


def conv_channels(estimator):
    """The convolution channels, or ``None`` for the dense architecture."""
    return tuple(estimator.conv_channels) if estimator.architecture == "conv" else None


def encoder(estimator, out_dim):
    """The encoder of a detector whose structure is resolved, with ``out_dim`` outputs."""
    return networks.build_encoder(estimator.architecture, estimator.input_shape_, out_dim,
                                  estimator.hidden_layer_sizes_,
                                  conv_channels=tuple(estimator.conv_channels),
                                  **network_options(estimator))


def decoder(estimator, in_dim):
    """The decoder of a detector whose structure is resolved, from ``in_dim`` inputs."""
    return networks.build_decoder(estimator.architecture, in_dim, estimator.input_shape_,
                                  estimator.hidden_layer_sizes_,
                                  conv_channels=tuple(estimator.conv_channels),
                                  **network_options(estimator))


def holds_out_rows(estimator):
    """Whether a fit holds out validation rows: ``early_stopping=True``, not
    ``'entropy'`` (which watches the training rows)."""
    return estimator.early_stopping != "entropy" and bool(estimator.early_stopping)


def scaling_rule(estimator):
    """The resolved ``scaling``: ``'auto'`` is ``'robust'`` for dense networks and one
    min-max range over all pixels (``'global_minmax'``) for convolutions."""
    if estimator.scaling == "auto":
        return "robust" if estimator.architecture == "dense" else "global_minmax"
    return estimator.scaling
