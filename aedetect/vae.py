"""VAEDetector: a variational autoencoder scored by the evidence lower bound (ELBO)."""

import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted
from torch import nn
from torch.nn import functional as F

from ._base import BaseAutoencoderDetector, check_n_samples
from ._docs import fill_docstring

LOG_2PI = math.log(2.0 * math.pi)

#: Both log-variances (of q(z|x) and of a learned Gaussian p(x|z)) are clamped to this
#: range: a variance between 4.5e-5 and 2.2e4 (a standard deviation between 0.0067 and
#: 148 in scaled units), which keeps the bound finite when a feature is reconstructed
#: exactly (a constant column) and the training stable.
LOG_VAR_RANGE = (-10.0, 10.0)

LIKELIHOODS = ("gaussian", "gaussian_fixed", "bernoulli")
SCORE_TYPES = ("elbo", "iwae", "reconstruction", "latent")

#: Tolerance on the [0, 1] range required by the Bernoulli likelihood (rounding).
_UNIT_TOLERANCE = 1e-6


class VariationalAutoencoder(nn.Module):
    """Gaussian encoder q(z|x), decoder p(x|z) and the fixed noise bank used to score.

    Parameters
    ----------
    encoder : nn.Module
        Maps ``x`` to ``2 * latent_dim`` numbers: the mean and the log-variance of q(z|x).
    decoder : nn.Module
        Maps ``z`` to the decoder output shaped like ``x`` (a mean, or logits).
    output_shape : tuple of int
        Shape of one sample.
    learn_variance : bool
        Add a learned per-feature log-variance ``decoder_log_var`` of p(x|z).
    noise_bank : Tensor of shape (n_draws, latent_dim)
        Standard normal draws reused for every row at scoring time (a buffer, so it
        travels with ``state_dict`` and ``.to(device)``).
    """

    def __init__(self, encoder, decoder, output_shape, learn_variance, noise_bank):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        if learn_variance:
            self.decoder_log_var = nn.Parameter(torch.zeros(tuple(output_shape)))
        else:
            self.register_parameter("decoder_log_var", None)
        self.register_buffer("noise_bank", noise_bank)

    def encode(self, x):
        """Mean and clamped log-variance of q(z|x), each of shape ``(n, latent_dim)``."""
        mu, log_var = self.encoder(x).chunk(2, dim=1)
        return mu, log_var.clamp(*LOG_VAR_RANGE)

    def forward(self, x):
        """Decoder output at the posterior mean."""
        return self.decoder(self.encode(x)[0])


def kl_to_standard_normal(mu, log_var):
    """KL(N(mu, diag(exp(log_var))) || N(0, I)) per row, in nats."""
    return 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(dim=1)


@fill_docstring
class VAEDetector(BaseAutoencoderDetector):
    """Outlier detector scoring rows by a variational autoencoder's evidence lower bound.

    The encoder outputs a Gaussian posterior q(z|x) = N(mu(x), diag(sigma(x)^2)) over
    a ``latent_dim_``-dimensional code with prior p(z) = N(0, I); the decoder defines
    the likelihood p(x|z) (``likelihood``). Training maximizes the ELBO

        E_q[log p(x|z)] - beta * KL(q(z|x) || p(z))

    with one reparameterized draw z = mu + sigma * eps per row and the KL in closed
    form [1]_; ``beta`` weights the KL term [3]_ and no free-bits floor or annealing
    switches it off.

    ``score_samples`` is a Monte-Carlo estimate of a lower bound on log p(x), in
    nats per row (``score_type``): rows the model finds improbable score low. Unlike
    :class:`AEDetector`'s reconstruction error, it also accounts for how unusual the
    code is (the KL term) and, with the default likelihood, weighs each feature's
    error by how well that feature is usually reconstructed (the learned variance).
    With a Gaussian likelihood the bound is on the density of ``X`` in its original
    units: the network models the scaled data ``(X - center_) / scale_`` and the score
    adds the change of units ``-sum(log(scale_))``, so it can be compared with any
    other density model of ``X`` (e.g. ``GaussianMixture.score_samples``).

    Scoring is deterministic: the ``n_draws`` noise vectors eps are drawn once in
    ``fit`` (seeded by ``random_state``) and reused for every row, so a row's score
    does not depend on its batch, the other rows or the number of calls.

    ``history_`` records per epoch ``reconstruction`` (minus E_q[log p(x|z)]),
    ``kl`` and ``loss = reconstruction + beta * kl``, in nats per row of the scaled
    data the network sees.

    Parameters
    ----------
{shared_parameters}

    likelihood : {'gaussian', 'gaussian_fixed', 'bernoulli'}, default='gaussian'
        The decoder's distribution p(x|z), independent over features.

        - ``'gaussian'``: N(decoder mean, sigma_j^2) with one variance per feature
          learned with the network (``decoder_variance_``); for scaled tabular data.
        - ``'gaussian_fixed'``: the same with unit variance in scaled units, i.e. the
          classic "squared error" VAE; the bound is then usually much looser.
        - ``'bernoulli'``: the decoder outputs logits and the reconstruction term is
          the binary cross-entropy; for data in [0, 1] such as pixels. Every value
          must lie in [0, 1] after scaling (a ``ValueError`` says otherwise), and
          ``scaling='auto'`` means no scaling with this likelihood; use
          ``scaling='minmax'`` for other bounded data. The score is then the bound
          on the Bernoulli probability of the scaled data (a true probability for
          binary data; for grey levels the usual cross-entropy surrogate, without
          a change-of-units term).

    beta : float >= 0, default=1.0
        Weight of the KL term during training (beta-VAE; 1 is the true ELBO).
        Scores always use the unweighted bound.

    n_draws : int >= 1, default=10
        Number of noise vectors eps in the scoring bank (Monte-Carlo draws of z per
        row). More draws lower the variance of the estimate and, with
        ``score_type='iwae'``, tighten the bound.

    score_type : {'elbo', 'iwae', 'reconstruction'}, default='elbo'
        What ``score_samples`` returns, per row:

        - ``'elbo'``: mean over the draws of log p(x|z) minus the exact KL term;
        - ``'iwae'``: the importance-weighted bound
          ``log mean_k p(x, z_k) / q(z_k|x)`` [2]_, never looser than the ELBO in
          expectation and tighter with more draws;
        - ``'reconstruction'``: mean over the draws of log p(x|z) only, the
          "reconstruction probability" of [4]_; it ignores how unusual the code is;
        - ``'latent'``: minus the mean distance of the posterior mean (the code of
          ``transform``) to its ``n_neighbors`` nearest training codes, each code
          dimension divided by its spread. Not a bound on log p(x): it asks how
          far a row's code lies from those of the training rows, which on images
          separates similar classes better than the likelihood (see the README's
          image benchmark). ``fit`` keeps the training codes only for this choice.

        It is read when scoring, but ``offset_`` is set in ``fit``: refit after
        changing it if you use ``predict`` or ``decision_function``. Training (and
        early stopping) watch the ELBO whatever the choice.

{neighbour_parameter}

    Attributes
    ----------
{shared_attributes}

{neighbour_attributes}

    noise_bank_ : Tensor of shape (n_draws, latent_dim_)
        The standard normal draws used by every call to ``score_samples`` (on
        ``device_``; it is the buffer ``module_.noise_bank``).

    decoder_variance_ : ndarray of shape (n_features_in_,) or None
        The learned variance of each feature under p(x|z), in scaled units, with
        ``likelihood='gaussian'``; ``None`` otherwise.

    See Also
    --------
    AEDetector : plain autoencoder scored by the reconstruction error.
    AAEDetector : adversarial autoencoder scored by reconstruction and prior fit.
    sklearn.mixture.GaussianMixture : a density model whose ``score_samples`` is
        log p(x) in the same units.

    References
    ----------
    .. [1] Kingma, D. P. and Welling, M. "Auto-encoding variational Bayes."
       ICLR (2014).
    .. [2] Burda, Y., Grosse, R. and Salakhutdinov, R. "Importance weighted
       autoencoders." ICLR (2016).
    .. [3] Higgins, I. et al. "beta-VAE: learning basic visual concepts with a
       constrained variational framework." ICLR (2017).
    .. [4] An, J. and Cho, S. "Variational autoencoder based anomaly detection
       using reconstruction probability." SNU Data Mining Center (2015).

    Examples
    --------
    >>> import numpy as np
    >>> from aedetect import VAEDetector
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(300, 4))
    >>> X[:5] += 6
    >>> detector = VAEDetector(latent_dim=2, max_iter=50, random_state=0).fit(X)
    >>> scores = detector.score_samples(X)   # ELBO in nats, higher = more normal
    >>> bool(scores[:5].max() < np.median(scores[5:]))
    True
    >>> detector.predict(X[:5])
    array([-1, -1, -1, -1, -1])
    >>> detector.sample(3, random_state=0).shape
    (3, 4)
    """

    _parameter_constraints = {
        **BaseAutoencoderDetector._parameter_constraints,
        "likelihood": [StrOptions(set(LIKELIHOODS))],
        "beta": [Interval(Real, 0, None, closed="left")],
        "n_draws": [Interval(Integral, 1, None, closed="left")],
        "score_type": [StrOptions(set(SCORE_TYPES))],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
    }
    _neighbour_score_types = ("latent",)

    def __init__(self, *, hidden_layer_sizes=None, latent_dim=None, activation="relu",
                 dropout="auto", batch_norm="auto", architecture="dense", conv_channels=(32, 64),
                 image_shape=None,
                 scaling="auto", noise=None, noise_type="gaussian", batch_size=256,
                 learning_rate_init=1e-3, weight_decay=0.0, trim_fraction=0.1, max_iter=100,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 tol=1e-4, contamination="auto", device="auto", random_state=None,
                 verbose=0, callbacks=None, likelihood="gaussian", beta=1.0, n_draws=10,
                 score_type="elbo", n_neighbors=5):
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
        self.likelihood = likelihood
        self.beta = beta
        self.n_draws = n_draws
        self.score_type = score_type
        self.n_neighbors = n_neighbors

    # ------------------------------------------------------------ network
    def _build(self, input_shape):
        # One draw from torch's default generator (seeded by fit) seeds the bank, so
        # the bank exists for early stopping's validation scores and the rest of the
        # training randomness does not depend on n_draws.
        bank_seed = int(torch.randint(0, 2**62, (1,)))
        generator = torch.Generator().manual_seed(bank_seed)
        noise_bank = torch.randn(self.n_draws, self.latent_dim_, generator=generator)
        return VariationalAutoencoder(
            self._make_encoder(2 * self.latent_dim_), self._make_decoder(self.latent_dim_),
            input_shape, learn_variance=self.likelihood == "gaussian", noise_bank=noise_bank)

    @property
    def noise_bank_(self):
        check_is_fitted(self, "module_")
        return self.module_.noise_bank

    @property
    def decoder_variance_(self):
        check_is_fitted(self, "module_")
        log_var = self.module_.decoder_log_var
        if log_var is None:
            return None
        variance = log_var.detach().clamp(*LOG_VAR_RANGE).exp()
        return variance.to(torch.float64).cpu().numpy().reshape(-1)

    @property
    def _scaling_rule(self):
        if self.likelihood == "bernoulli" and self.scaling == "auto":
            return None
        return super()._scaling_rule

    # -------------------------------------------------------- likelihood
    def _log_likelihood(self, output, target):
        """log p(target | z) per row in nats, from the decoder ``output``."""
        if self.likelihood == "bernoulli":
            nll = F.binary_cross_entropy_with_logits(output, target, reduction="none")
            return -nll.flatten(1).sum(dim=1)
        squared = (target - output).pow(2)
        if self.likelihood == "gaussian_fixed":
            return -0.5 * (squared + LOG_2PI).flatten(1).sum(dim=1)
        log_var = self.module_.decoder_log_var.clamp(*LOG_VAR_RANGE)
        return -0.5 * (squared * torch.exp(-log_var) + log_var + LOG_2PI).flatten(1).sum(dim=1)

    def _decoder_mean(self, output):
        """Mean of p(x|z) from the decoder output (the logits for Bernoulli)."""
        return torch.sigmoid(output) if self.likelihood == "bernoulli" else output

    @property
    def _log_unit_change(self):
        """``sum(log(scale_))``: log p(X) = log p(scaled X) minus this (Gaussian only)."""
        if self.likelihood == "bernoulli":
            return 0.0
        return float(np.log(self.scale_).sum())

    # ---------------------------------------------------- model contract
    def _train_step(self, x, target, y=None):
        mu, log_var = self.module_.encode(x)
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        reconstruction = -self._log_likelihood(self.module_.decoder(z), target)
        kl = kl_to_standard_normal(mu, log_var)
        kept = self._kept_rows(reconstruction + self.beta * kl)
        if kept is not None:
            reconstruction, kl = reconstruction[kept], kl[kept]
        reconstruction, kl = reconstruction.mean(), kl.mean()
        loss = reconstruction + self.beta * kl
        self._optimize(loss)
        return {"loss": loss.detach(), "reconstruction": reconstruction.detach(),
                "kl": kl.detach()}

    def _score_batch(self, x):
        mu, log_var = self.module_.encode(x)
        if self.score_type == "latent" and self.reference_codes_ is not None:
            return -self._neighbour_distance(mu)
        eps = self.module_.noise_bank                                  # (k, d)
        n, n_draws = x.shape[0], eps.shape[0]
        z = mu.unsqueeze(1) + torch.exp(0.5 * log_var).unsqueeze(1) * eps  # (n, k, d)
        output = self.module_.decoder(z.reshape(n * n_draws, -1))
        target = x.unsqueeze(1).expand(n, n_draws, *x.shape[1:]).reshape(output.shape)
        log_px = self._log_likelihood(output, target).view(n, n_draws)
        if self.score_type == "reconstruction":
            score = log_px.mean(dim=1)
        elif self.score_type in ("elbo", "latent"):  # latent: the ELBO while training
            score = log_px.mean(dim=1) - kl_to_standard_normal(mu, log_var)
        else:
            # log p(z) - log q(z|x) for z = mu + sigma * eps (the 2 pi terms cancel).
            log_ratio = 0.5 * (eps.pow(2).sum(dim=1) - z.pow(2).sum(dim=2)
                               + log_var.sum(dim=1, keepdim=True))
            score = torch.logsumexp(log_px + log_ratio, dim=1) - math.log(n_draws)
        return score - self._log_unit_change

    def _encode_batch(self, x):
        return self.module_.encode(x)[0]

    def _reconstruct_batch(self, x):
        return self._decoder_mean(self.module_(x))

    def _chunk_rows(self):
        # Scoring decodes n_draws codes per row.
        return self._rows_per_chunk(copies=self.module_.noise_bank.shape[0] + 1)

    # -------------------------------------------------- Bernoulli range
    def _fit_scaler(self, X):
        super()._fit_scaler(X)
        self._check_unit_interval(X)

    def _score(self, X):
        self._check_unit_interval(X)
        return super()._score(X)

    def _check_unit_interval(self, X):
        """With ``likelihood='bernoulli'`` the scaled data must lie in [0, 1]."""
        if self.likelihood != "bernoulli" or X.shape[0] == 0:
            return
        scaled = (X - self.center_) / self.scale_
        low, high = float(scaled.min()), float(scaled.max())
        if low < -_UNIT_TOLERANCE or high > 1.0 + _UNIT_TOLERANCE:
            raise ValueError(
                f"likelihood='bernoulli' needs every value in [0, 1] after scaling, but the "
                f"scaled X ranges from {low:.4g} to {high:.4g}. Use scaling=None for data "
                "already in [0, 1] (e.g. pixels divided by 255), scaling='minmax' for other "
                "bounded data (and clip new data to the training range), or "
                "likelihood='gaussian'."
            )

    # ------------------------------------------------------ generation
    def sample(self, n_samples=1, random_state=None):
        """Draw new rows from the model: z ~ N(0, I), then the decoder's mean.

        Parameters
        ----------
        n_samples : int, default=1
            Number of rows to draw.
        random_state : int, RandomState instance or None, default=None
            Draws the codes, as in scikit-learn: an int seeds a local generator
            (global seeds are not touched), so ``sample(n, random_state=0)`` is
            reproducible and its first rows do not depend on ``n``.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features_in_), dtype float64
            The mean of p(x|z) for each drawn code (observation noise is not
            added), in the units of the training data.
        """
        check_is_fitted(self)
        n_samples = check_n_samples(n_samples)
        rng = check_random_state(random_state)
        codes = rng.standard_normal((n_samples, self.latent_dim_))
        return self._decode_rows(self._decode_mean,
                                 torch.from_numpy(codes.astype(np.float32)))

    def inverse_transform(self, X):
        """Decode latent codes (e.g. from ``transform``) to rows: the decoder's mean.

        ``inverse_transform(transform(X))`` equals ``reconstruct(X)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, latent_dim_)
            Latent codes.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features_in_), dtype float64
            The mean of p(x|z) in the units of the training data.
        """
        check_is_fitted(self)
        codes = check_array(X, dtype=[np.float64, np.float32])
        if codes.shape[1] != self.latent_dim_:
            raise ValueError(f"X has {codes.shape[1]} features, but {type(self).__name__} "
                             f"is expecting {self.latent_dim_} latent features as input "
                             "(inverse_transform decodes latent codes).")
        return self._decode_rows(self._decode_mean,
                                 torch.from_numpy(codes.astype(np.float32)))

    def _decode_mean(self, z):
        """Mean of p(x|z) for codes ``z``."""
        return self._decoder_mean(self.module_.decoder(z))
