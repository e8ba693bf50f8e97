"""AEDetector: an autoencoder scored by its reconstruction error."""

from numbers import Integral

import torch
from sklearn.utils._param_validation import Interval, StrOptions

from ._base import BaseAutoencoderDetector, row_mean_squared_error
from ._docs import fill_docstring
from .networks import Autoencoder


@fill_docstring
class AEDetector(BaseAutoencoderDetector):
    """Outlier detector scoring rows by how badly an autoencoder reconstructs them.

    The encoder compresses each row to ``latent_dim_`` numbers and the decoder
    rebuilds it; trained on mostly normal data, the network reconstructs normal
    rows well and unusual rows badly. With ``noise`` set it is a denoising
    autoencoder. Training minimizes the mean squared error, trimmed by default:
    the share ``trim_fraction`` of each mini-batch's worst-reconstructed rows is
    left out of the step, so outliers in the training data stay badly reconstructed.

    ``score_samples`` is minus the per-row mean squared reconstruction error over
    the features, in the scaled space (``scaling``): with the default robust
    scaling (median and interquartile range) every feature carries the same weight
    whatever its unit, and no other per-feature weighting is applied (weighting each
    feature by its typical training error was measured and lowered the benchmark
    mean). Higher means more normal.

    ``score_type='latent'`` scores a row by where its code falls instead: minus the
    mean distance to its ``n_neighbors`` nearest training codes (each code dimension
    divided by its spread). A row the network reconstructs well can still have a code
    unlike any training code; on one-class Fashion-MNIST this separates similar
    garments (shirts from T-shirts) better than the reconstruction error.
    ``score_type='combined'`` adds both: minus the sum of the reconstruction error and
    the neighbour distance, each standardized by its mean and standard deviation over
    the training rows (``combined_center_``, ``combined_scale_``; each training row
    measured against the other training codes).

    Parameters
    ----------
{shared_parameters}

    score_type : {'reconstruction', 'latent', 'combined'}, default='reconstruction'
        What ``score_samples`` returns, per row: minus the mean squared
        reconstruction error, minus the mean distance of the code to its nearest
        training codes, or minus the sum of both standardized (see above). The
        latent scores need the training codes, kept by ``fit`` only for them: a
        detector fitted with ``'reconstruction'`` must be refitted to use them.
        Training (and early stopping) watch the reconstruction error whatever the
        choice. ``offset_`` is set in ``fit``: refit after changing it if you use
        ``predict`` or ``decision_function``.

{neighbour_parameter}

    Attributes
    ----------
{shared_attributes}

{neighbour_attributes}

    combined_center_, combined_scale_ : ndarray of shape (2,)
        Mean and standard deviation over the training rows of the reconstruction
        error and of the neighbour distance (set with ``reference_codes_``).

    See Also
    --------
    VAEDetector : variational autoencoder scored by the evidence lower bound.
    AAEDetector : adversarial autoencoder scored by reconstruction and prior fit.
    sklearn.ensemble.IsolationForest : the same scoring conventions.

    References
    ----------
    .. [1] Hinton, G. E. and Salakhutdinov, R. R. "Reducing the dimensionality of
       data with neural networks." Science 313 (2006).
    .. [2] Vincent, P. et al. "Extracting and composing robust features with
       denoising autoencoders." ICML (2008).

    Examples
    --------
    >>> import numpy as np
    >>> from aedetect import AEDetector
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(200, 4))
    >>> X[:5] += 6
    >>> detector = AEDetector(max_iter=30, random_state=0).fit(X)
    >>> bool(detector.score_samples(X[:5]).mean() < detector.score_samples(X[5:]).mean())
    True
    >>> detector.predict(X[:5])
    array([-1, -1, -1, -1, -1])
    """

    _parameter_constraints = {
        **BaseAutoencoderDetector._parameter_constraints,
        "score_type": [StrOptions({"reconstruction", "latent", "combined"})],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
    }
    _neighbour_score_types = ("latent", "combined")

    def __init__(self, *, hidden_layer_sizes=None, latent_dim=None, activation="relu",
                 dropout="auto", batch_norm="auto", architecture="dense", conv_channels=(32, 64),
                 image_shape=None,
                 scaling="auto", noise=None, noise_type="gaussian", batch_size=256,
                 learning_rate_init=1e-3, weight_decay=0.0, trim_fraction=0.1, max_iter=100,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 tol=1e-4, contamination="auto", device="auto", random_state=None,
                 verbose=0, callbacks=None, score_type="reconstruction", n_neighbors=5):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.latent_dim = latent_dim
        self.activation = activation
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.architecture = architecture
        self.conv_channels = conv_channels
        self.image_shape = image_shape
        self.scaling = scaling
        self.noise = noise
        self.noise_type = noise_type
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.weight_decay = weight_decay
        self.trim_fraction = trim_fraction
        self.max_iter = max_iter
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.contamination = contamination
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.score_type = score_type
        self.n_neighbors = n_neighbors

    def _build(self, input_shape):
        return Autoencoder(self._make_encoder(self.latent_dim_),
                           self._make_decoder(self.latent_dim_))

    def _train_step(self, x, target, y=None):
        loss = self._batch_loss(row_mean_squared_error(self.module_(x), target))
        self._optimize(loss)
        return {"loss": loss.detach()}

    def _score_batch(self, x):
        if self.score_type == "reconstruction" or self.reference_codes_ is None:
            return -row_mean_squared_error(self.module_(x), x)  # (None while training)
        terms = self._score_terms(x)
        if self.score_type == "latent":
            return -terms[:, 1]
        center = torch.from_numpy(self.combined_center_).to(x.device, x.dtype)
        scale = torch.from_numpy(self.combined_scale_).to(x.device, x.dtype)
        return -((terms - center) / scale).sum(dim=1)

    def _score_terms(self, x):
        """Per row: the reconstruction error and the latent neighbour distance."""
        codes = self.module_.encoder(x)
        error = row_mean_squared_error(self.module_.decoder(codes), x)
        return torch.stack([error, self._neighbour_distance(codes)], dim=1)

    def _fit_neighbours(self, X, rng):
        super()._fit_neighbours(X, rng)
        terms = self._map_batches(X, self._score_terms)
        scale = terms.std(axis=0)
        scale[~(scale > 1e-12)] = 1.0
        self.combined_center_, self.combined_scale_ = terms.mean(axis=0), scale

    def _encode_batch(self, x):
        return self.module_.encoder(x)

    def _reconstruct_batch(self, x):
        return self.module_(x)
