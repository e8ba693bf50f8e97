"""AEDetector: an autoencoder scored by its reconstruction error."""

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

    Parameters
    ----------
{shared_parameters}

    Attributes
    ----------
{shared_attributes}

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

    def __init__(self, *, hidden_layer_sizes=None, latent_dim=None, activation="relu",
                 dropout=0.2, batch_norm=True, architecture="dense", conv_channels=(32, 64),
                 image_shape=None,
                 scaling="auto", noise=None, noise_type="gaussian", batch_size=256,
                 learning_rate_init=1e-3, weight_decay=0.0, trim_fraction=0.1, max_iter=100,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 tol=1e-4, contamination="auto", device="auto", random_state=None,
                 verbose=0, callbacks=None):
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

    def _build(self, input_shape):
        return Autoencoder(self._make_encoder(self.latent_dim_),
                           self._make_decoder(self.latent_dim_))

    def _train_step(self, x, target, y=None):
        loss = self._batch_loss(row_mean_squared_error(self.module_(x), target))
        self._optimize(loss)
        return {"loss": loss.detach()}

    def _score_batch(self, x):
        return -row_mean_squared_error(self.module_(x), x)

    def _encode_batch(self, x):
        return self.module_.encoder(x)

    def _reconstruct_batch(self, x):
        return self.module_(x)
