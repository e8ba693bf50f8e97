"""AAEDetector: an adversarial autoencoder whose codes are shaped into a chosen prior."""

import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d
from torch import nn
from torch.nn import functional as F

from ._base import BaseAutoencoderDetector, check_n_samples, row_mean_squared_error
from ._docs import fill_docstring
from .networks import Discriminator, LabelConditioned
from .priors import make_prior

#: Real labels of the discriminator (one-sided label smoothing: prior draws are "0.9 real").
REAL_LABEL = 0.9
#: Adam's betas for the two adversarial optimizers (the usual GAN setting).
ADVERSARIAL_BETAS = (0.5, 0.999)
#: Prior draws of the fixed bank used for the validation loss during training.
N_BANK = 1024
#: Weight of the discriminator's advantage in the watched loss (see ``AAEDetector``).
ADVANTAGE_WEIGHT = 0.25
class AdversarialAutoencoder(nn.Module):
    """Encoder, decoder, code discriminator and prior.

    With ``n_classes > 0`` the decoder and the discriminator also see the one-hot
    class (:class:`~aedetect.networks.LabelConditioned`): the discriminator then
    tells ``(prior draw, class)`` pairs from ``(code, class)`` pairs, which pushes the
    codes of every class to the same prior, so the code carries no class.
    """

    def __init__(self, encoder, decoder, discriminator, prior, n_classes=0):
        super().__init__()
        self.n_classes = int(n_classes)
        if self.n_classes:
            decoder = LabelConditioned(decoder, self.n_classes)
            discriminator = LabelConditioned(discriminator, self.n_classes)
        self.encoder = encoder
        self.decoder = decoder
        self.discriminator = discriminator
        self.prior = prior

    def decode(self, z, labels=None):
        return self.decoder(z, labels) if self.n_classes else self.decoder(z)

    def discriminate(self, z, labels=None):
        return self.discriminator(z, labels) if self.n_classes else self.discriminator(z)


@fill_docstring
class AAEDetector(BaseAutoencoderDetector):
    """Outlier detector built on an adversarial autoencoder with a chosen prior.

    An autoencoder whose encoder is also the generator of a GAN on the latent code:
    a discriminator learns to tell draws of the ``prior`` from the encoder's codes,
    and the encoder learns to fool it, so the codes of the training data come to
    fill the prior. Each mini-batch runs two phases with separate Adam optimizers:

    1. reconstruction: encoder and decoder take one step on the mean squared error
       (learning rate ``learning_rate_init``, L2 penalty ``weight_decay``);
    2. regularization: the discriminator takes one step on binary cross-entropy
       with logits (prior draws labelled 0.9, one-sided label smoothing; codes
       labelled 0), then the encoder takes one step making its codes pass for prior
       draws (label 1). Both use ``adversarial_learning_rate`` and betas (0.5, 0.999).

    These defaults were measured to be stable: the discriminator's accuracy on the
    last epoch stays between 0.5 and 0.66 and the codes match the prior (see the
    README for the numbers). A smaller adversarial learning rate (2e-4) lets the
    discriminator win (accuracy 0.8 to 0.93) and the codes drift off the prior.

    ``history_`` records per epoch ``reconstruction``, ``discriminator`` and
    ``generator`` (the three losses), ``discriminator_accuracy`` (on its real and
    fake batches) and ``discriminator_advantage``: ``2 log 2 - L_D`` with hard
    labels, 0 when the discriminator cannot tell codes from prior draws (twice the
    Jensen-Shannon divergence between them for an optimal discriminator). ``loss``,
    which the stopping rule watches, is ``reconstruction + 0.25 *
    discriminator_advantage``: the reconstruction alone levels off while the codes
    are still moving to the prior, and the raw GAN losses oscillate by design. With
    ``early_stopping`` the validation loss is the same quantity on the held-out rows
    (their codes against a fixed bank of prior draws), whatever ``score_type``.

    ``score_samples`` (higher means more normal) depends on ``score_type``, with
    ``e(x)`` the mean squared reconstruction error over the ``D`` features (in the
    scaled space) and ``s(z)`` the latent score of the code ``z`` (``d`` dimensions):

    - ``'reconstruction'``: ``-e(x)``, as :class:`AEDetector`;
    - ``'latent'``: ``s(z) = 2 * (log p(z) - E[log p(Z)]) / d``, the code's
      log-density under the prior, per dimension and centred on a typical prior draw
      (for the normal prior ``1 - mean((z / prior_scale)^2)``);
    - ``'combined'`` (default): ``-(D * e(x) / sigma2 - d * s(z)) / (D + d)``, where
      ``sigma2 = reconstruction_variance_`` is the mean of ``e`` over the training
      rows. Up to a constant this is the log joint density ``log p(x | z) + log
      p(z)`` per dimension, with a Gaussian decoder of variance ``sigma2``: each
      feature and each code dimension counts once, and a row scores low when it is
      badly reconstructed or when its code lies where the prior puts little mass.

    The uniform prior's log-density is ``-inf`` outside its box, so its ``s(z)`` is
    0 inside and minus the mean squared distance outside, in units of its standard
    deviation ``prior_scale / sqrt(3)``. A user distribution with bounded support
    gives codes outside the support its lowest latent score on 20000 prior draws
    minus 1. Every score is finite.

    With ``conditional=True``, ``fit(X, y)`` feeds the one-hot class to the decoder
    and to the discriminator, which then tells ``(prior draw, class)`` pairs from
    ``(code, class)`` pairs and so pushes the codes of every class to the same
    prior: the code carries the style and the label the class (keep ``latent_dim``
    small, say 2 to 8, so that the decoder has to rely on the class).
    ``sample(n, y=...)`` generates the requested classes. Scoring needs no labels:
    a row's reconstruction error is the smallest over the classes (the class that
    explains the row best), so scoring costs one decoder pass per class.

    Parameters
    ----------
{shared_parameters}

    prior : {'normal', 'uniform', 'mixture'} or torch.distributions.Distribution, \
default='normal'
        The distribution the codes are shaped into. ``'normal'``:
        ``N(0, prior_scale^2 I)``. ``'uniform'``: uniform on
        ``[-prior_scale, prior_scale]^d``. ``'mixture'``: ``n_prior_components``
        equally weighted Gaussians of standard deviation ``prior_scale`` whose
        means are evenly spaced on a circle in the first two code dimensions,
        neighbours ``4 * prior_scale`` apart (on a line when ``d = 1``). A
        ``Distribution`` must have ``batch_shape ()`` and ``event_shape
        (latent_dim,)``; with ``latent_dim=None`` its size sets ``latent_dim_``.
        It is sampled with torch's default generator, which ``fit`` seeds from
        ``random_state``.

    prior_scale : float, default=1.0
        Scale of the built-in priors (see ``prior``); ignored for a
        ``Distribution``.

    n_prior_components : int, default=10
        Number of Gaussians of the ``'mixture'`` prior (at least 2).

    conditional : bool, default=False
        Supervised variant: ``fit`` requires ``y``; the decoder and the
        discriminator see the class.
        When ``False``, ``y`` is ignored.

    score_type : {'combined', 'reconstruction', 'latent'}, default='combined'
        What ``score_samples`` measures (see above). It can be changed after
        ``fit`` with ``set_params``.

    discriminator_layer_sizes : tuple of int, default=(64, 64)
        Hidden widths of the discriminator (leaky ReLU, no batch norm).

    adversarial_learning_rate : float, default=1e-3
        Adam's learning rate for the discriminator and for the encoder's
        adversarial step.

    Attributes
    ----------
{shared_attributes}

    classes_ : ndarray of shape (n_classes,)
        The class labels, with ``conditional=True`` only.

    reconstruction_variance_ : float
        Mean over the training rows of the mean squared reconstruction error: the
        variance of the decoder's noise in the ``'combined'`` score.

    See Also
    --------
    AEDetector : plain autoencoder scored by the reconstruction error.
    VAEDetector : variational autoencoder scored by the evidence lower bound.

    References
    ----------
    .. [1] Makhzani, A., Shlens, J., Jaitly, N., Goodfellow, I. and Frey, B.
       "Adversarial autoencoders." arXiv:1511.05644 (2015).
    .. [2] Goodfellow, I. et al. "Generative adversarial nets." NeurIPS (2014).
    .. [3] Salimans, T. et al. "Improved techniques for training GANs."
       NeurIPS (2016) (one-sided label smoothing).

    Examples
    --------
    >>> import numpy as np
    >>> from aedetect import AAEDetector
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(300, 6))
    >>> X[:5] += 6
    >>> detector = AAEDetector(latent_dim=2, max_iter=30, random_state=0).fit(X)
    >>> bool(detector.score_samples(X[:5]).max() < detector.score_samples(X[5:]).min())
    True
    >>> detector.transform(X).shape
    (300, 2)
    >>> detector.sample(3, random_state=0).shape
    (3, 6)
    """

    _parameter_constraints = {
        **BaseAutoencoderDetector._parameter_constraints,
        "prior": [StrOptions({"normal", "uniform", "mixture"}), torch.distributions.Distribution],
        "prior_scale": [Interval(Real, 0, None, closed="neither")],
        "n_prior_components": [Interval(Integral, 2, None, closed="left")],
        "conditional": ["boolean"],
        "score_type": [StrOptions({"combined", "reconstruction", "latent"})],
        "discriminator_layer_sizes": [tuple, list],
        "adversarial_learning_rate": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, *, hidden_layer_sizes=None, latent_dim=None, activation="relu",
                 dropout="auto", batch_norm="auto", architecture="dense", conv_channels=(32, 64),
                 image_shape=None,
                 scaling="auto", noise=None, noise_type="gaussian", batch_size=256,
                 learning_rate_init=1e-3, weight_decay=0.0, trim_fraction=0.1, max_iter=100,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 tol=1e-4, contamination="auto", device="auto", random_state=None,
                 verbose=0, callbacks=None, prior="normal", prior_scale=1.0,
                 n_prior_components=10, conditional=False, score_type="combined",
                 discriminator_layer_sizes=(64, 64), adversarial_learning_rate=1e-3):
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
        self.prior = prior
        self.prior_scale = prior_scale
        self.n_prior_components = n_prior_components
        self.conditional = conditional
        self.score_type = score_type
        self.discriminator_layer_sizes = discriminator_layer_sizes
        self.adversarial_learning_rate = adversarial_learning_rate

    # ------------------------------------------------------------ structure
    def _validate_target(self, y, n_samples):
        """Class indices into ``classes_`` when ``conditional``; ``None`` otherwise."""
        if not self.conditional:
            self.__dict__.pop("classes_", None)
            return None
        if y is None:
            raise ValueError(f"{type(self).__name__}(conditional=True) needs class labels: "
                             "call fit(X, y) with y of shape (n_samples,), or set "
                             "conditional=False.")
        y = column_or_1d(y, warn=True)
        if y.shape[0] != n_samples:
            raise ValueError(f"y has {y.shape[0]} labels but X has {n_samples} rows; "
                             "pass one label per row.")
        check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        return encoded.astype(np.int64)

    def _check_structure(self, X):
        super()._check_structure(X)
        if not isinstance(self.prior, torch.distributions.Distribution):
            return
        batch_shape, event_shape = tuple(self.prior.batch_shape), tuple(self.prior.event_shape)
        if batch_shape or len(event_shape) != 1:
            hint = (" Wrap it as torch.distributions.Independent(prior, 1)."
                    if len(batch_shape) == 1 and not event_shape else "")
            raise ValueError(f"prior must be a distribution over vectors, with batch_shape () "
                             f"and event_shape (latent_dim,); got batch_shape {batch_shape} "
                             f"and event_shape {event_shape}.{hint}")
        if self.latent_dim is None:
            self.latent_dim_ = event_shape[0]
        elif event_shape[0] != self.latent_dim_:
            raise ValueError(f"prior has event_shape {event_shape} but latent_dim="
                             f"{self.latent_dim}; use a prior with event_shape "
                             f"({self.latent_dim},) or set latent_dim={event_shape[0]} "
                             "(or None, to take the prior's size).")

    def _build(self, input_shape):
        d = self.latent_dim_
        n_classes = len(self.classes_) if self.conditional else 0
        decoder = self._make_decoder(d + n_classes)
        discriminator = Discriminator(d + n_classes, tuple(self.discriminator_layer_sizes))
        return AdversarialAutoencoder(self._make_encoder(d), decoder, discriminator,
                                      make_prior(self.prior, d, self.prior_scale,
                                                 self.n_prior_components), n_classes)

    def _make_optimizers(self, module):
        """Adam for the autoencoder; Adam with GAN betas for the two adversarial steps."""
        autoencoder = [*module.encoder.parameters(), *module.decoder.parameters()]
        adversarial = {"lr": self.adversarial_learning_rate, "betas": ADVERSARIAL_BETAS}
        return {
            "autoencoder": self._adam(autoencoder),
            "discriminator": torch.optim.Adam(module.discriminator.parameters(), **adversarial),
            "generator": torch.optim.Adam(module.encoder.parameters(), **adversarial),
        }

    # -------------------------------------------------------------- training
    def _train_step(self, x, target, y=None):
        net = self.module_
        # 1. reconstruction: encoder and decoder on the squared error.
        codes = net.encoder(x)
        reconstruction = net.decode(codes, y)
        reconstruction_loss = self._batch_loss(row_mean_squared_error(reconstruction, target))
        self._optimize(reconstruction_loss, "autoencoder")
        # 2a. discriminator: prior draws are real (smoothed label), codes are fake.
        real = net.discriminate(net.prior.sample(codes.shape[0]), y)
        fake = net.discriminate(codes.detach(), y)
        discriminator_loss = (
            F.binary_cross_entropy_with_logits(real, torch.full_like(real, REAL_LABEL))
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
        self._optimize(discriminator_loss, "discriminator")
        # 2b. generator: the encoder learns to make its codes pass for prior draws.
        fooled = net.discriminate(net.encoder(x), y)
        generator_loss = F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
        self._optimize(generator_loss, "generator")
        accuracy = 0.5 * ((real > 0).float().mean() + (fake < 0).float().mean())
        advantage = 2 * math.log(2) - F.softplus(-real).mean() - F.softplus(fake).mean()
        return {"loss": (reconstruction_loss + ADVANTAGE_WEIGHT * advantage).detach(),
                "reconstruction": reconstruction_loss.detach(),
                "discriminator": discriminator_loss.detach(),
                "generator": generator_loss.detach(),
                "discriminator_accuracy": accuracy.detach(),
                "discriminator_advantage": advantage.detach()}

    def _train(self, X_train, y_train, X_val, callbacks):
        """The base loop, then ``reconstruction_variance_`` for the combined score.

        While training, ``reconstruction_variance_`` is ``None`` and the scores the
        base turns into the validation loss follow the watched ``loss``: minus the
        reconstruction error and the weighted discriminator's advantage
        (:meth:`_advantage`).
        """
        self.reconstruction_variance_ = None
        if X_val is not None:
            self._prior_bank = self.module_.prior.sample(N_BANK)
        super()._train(X_train, y_train, X_val, callbacks)
        self.__dict__.pop("_prior_bank", None)
        self.module_.eval()
        total = 0.0
        with torch.inference_mode():
            for batch in torch.split(X_train, self._chunk_rows()):
                codes = self.module_.encoder(batch)
                total += float(self._reconstruction_errors(codes, batch)[0].sum())
        self.reconstruction_variance_ = max(total / X_train.shape[0], 1e-12)

    def _advantage(self, codes, labels):
        """Each code's share of the discriminator's advantage ``2 log 2 - L_D``.

        ``L_D`` is the discriminator's cross-entropy with hard labels: the prior half
        on the fixed bank of prior draws (with classes cycling through ``classes_``
        when conditional), the code half on ``codes``. The mean over the rows is the
        advantage: 0 when the discriminator cannot tell codes from prior draws,
        ``2 * JS(codes, prior)`` for an optimal discriminator.
        """
        net, bank = self.module_, self._prior_bank
        bank_labels = torch.arange(bank.shape[0], device=bank.device) % max(net.n_classes, 1)
        prior_half = math.log(2) - F.softplus(-net.discriminate(bank, bank_labels)).mean()
        return prior_half + math.log(2) - F.softplus(net.discriminate(codes, labels))

    # --------------------------------------------------------------- scoring
    def _reconstruction_errors(self, codes, x):
        """Per-row squared error, reconstruction and class index (``None`` unless
        conditional, where each row takes the class that reconstructs it best)."""
        net = self.module_
        if not net.n_classes:
            reconstruction = net.decode(codes)
            return row_mean_squared_error(reconstruction, x), reconstruction, None
        best = None
        for k in range(net.n_classes):
            labels = torch.full((codes.shape[0],), k, dtype=torch.long, device=codes.device)
            reconstruction = net.decode(codes, labels)
            error = row_mean_squared_error(reconstruction, x)
            if best is None:
                best = [error, reconstruction, labels]
                continue
            better = error < best[0]
            mask = better.view(-1, *([1] * (x.dim() - 1)))
            best = [torch.where(better, error, best[0]),
                    torch.where(mask, reconstruction, best[1]),
                    torch.where(better, labels, best[2])]
        return tuple(best)

    def _score_batch(self, x):
        net = self.module_
        codes = net.encoder(x)
        if self.reconstruction_variance_ is None:  # training: the validation loss
            error, _, labels = self._reconstruction_errors(codes, x)
            return -(error + ADVANTAGE_WEIGHT * self._advantage(codes, labels))
        if self.score_type == "latent":
            return net.prior.latent_score(codes)
        error = self._reconstruction_errors(codes, x)[0]
        if self.score_type == "reconstruction":
            return -error
        n_features, latent_dim = math.prod(self.input_shape_), self.latent_dim_
        deviation = n_features * error / self.reconstruction_variance_
        deviation = deviation - latent_dim * net.prior.latent_score(codes)
        return -deviation / (n_features + latent_dim)

    def _encode_batch(self, x):
        return self.module_.encoder(x)

    def _reconstruct_batch(self, x):
        return self._reconstruction_errors(self.module_.encoder(x), x)[1]

    # -------------------------------------------------------------- sampling
    def sample(self, n_samples=1, y=None, random_state=None):
        """Decode draws of the prior: new rows in the units of the training data.

        Parameters
        ----------
        n_samples : int, default=1
            Number of rows to generate.
        y : label or array-like of shape (n_samples,), default=None
            With ``conditional=True``: the class of each row (one label for all rows,
            or one per row); ``None`` cycles through ``classes_`` in order. Only
            allowed when ``conditional=True``.
        random_state : int, RandomState instance or None, default=None
            Seeds the prior draws (locally: global seeds are left untouched).

        Returns
        -------
        X_sampled : ndarray of shape (n_samples, n_features_in_), dtype float64
        """
        check_is_fitted(self)
        n_samples = check_n_samples(n_samples)
        labels = self._sample_labels(n_samples, y)
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
        devices = [self.device_.index] if self.device_.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(seed)
            codes = self.module_.prior.sample(n_samples)
        if labels is not None:
            labels = torch.as_tensor(labels)
        return self._decode_rows(self.module_.decode, codes, labels)

    def _sample_labels(self, n_samples, y):
        """Class indices of the rows to sample (``None`` when not conditional)."""
        if not self.conditional:
            if y is not None:
                raise ValueError("y can only be given to sample() when the detector was "
                                 "fitted with conditional=True.")
            return None
        if y is None:
            return np.arange(n_samples) % len(self.classes_)
        y = np.asarray(y)
        y = np.full(n_samples, y.item(), dtype=y.dtype) if y.ndim == 0 else column_or_1d(y)
        if y.shape[0] != n_samples:
            raise ValueError(f"y has {y.shape[0]} labels but n_samples={n_samples}; pass "
                             "one label, or one per row.")
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(f"y contains labels {unknown.tolist()} not seen in fit; "
                             f"known classes: {self.classes_.tolist()}.")
        return np.searchsorted(self.classes_, y)
