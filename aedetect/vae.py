"""VAEDetector: a variational autoencoder scored by the evidence lower bound (ELBO)."""

from numbers import Real

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted

from . import _structure
from ._base import BaseAutoencoderDetector
from ._docs import fill_docstring
from .ae import LatentNeighbourAttributes
from ._params import (
    N_NEIGHBORS,
    SHARED_PARAMETERS,
    Int,
    Parameter,
    check_n_samples,
    constraints,
    make_init,
)
from .models import VariationalAutoencoder
from .models.neighbours import check_n_neighbors
from .models.vae import LIKELIHOODS, LOG_VAR_RANGE

SCORE_TYPES = VariationalAutoencoder.score_types

#: Tolerance on the [0, 1] range required by the Bernoulli likelihood (rounding).
_UNIT_TOLERANCE = 1e-6


@fill_docstring
class VAEDetector(LatentNeighbourAttributes, BaseAutoencoderDetector):
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
    data the network sees; with ``early_stopping`` ``val_loss`` is the same quantity
    on the held-out rows, with the draws of the noise bank (no change of units).

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

        It is read when scoring, but ``offset_`` is set in ``fit`` for the fitted
        choice: after changing it, ``predict`` and ``decision_function`` raise until
        the detector is refitted. Training (and early stopping) watch the ELBO
        whatever the choice.

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

    _own_parameters = (
        Parameter("likelihood", "gaussian", [StrOptions(set(LIKELIHOODS))]),
        Parameter("beta", 1.0, [Interval(Real, 0, None, closed="left")]),
        Parameter("n_draws", 10, [Int(1, None, closed="left")]),
        Parameter("score_type", "elbo", [StrOptions(set(SCORE_TYPES))]),
        N_NEIGHBORS,
    )
    _parameter_constraints = constraints(SHARED_PARAMETERS + _own_parameters)
    __init__ = make_init(SHARED_PARAMETERS + _own_parameters)

    def _check_fit_params(self, n_samples):
        if self.score_type == "latent":
            check_n_neighbors(self.n_neighbors, n_samples, self.score_type)

    def _build_model(self):
        # One draw of the seeded global CPU generator seeds the bank, so the rest of the
        # training randomness does not depend on n_draws.
        # (the bank is drawn on the CPU even when loading builds the model on "meta")
        bank_seed = int(torch.randint(0, 2**62, (1,), device="cpu"))
        generator = torch.Generator().manual_seed(bank_seed)
        noise_bank = torch.randn(self.n_draws, self.latent_dim_, generator=generator,
                                 device="cpu")
        log_unit_change = 0.0 if self.likelihood == "bernoulli" else np.log(self.scale_).sum()
        return VariationalAutoencoder(
            _structure.encoder(self, 2 * self.latent_dim_),
            _structure.decoder(self, self.latent_dim_), self.input_shape_, self.likelihood,
            noise_bank, log_unit_change=log_unit_change, beta=self.beta,
            trim_fraction=self.trim_fraction, n_neighbors=self.n_neighbors)

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

    # -------------------------------------------------- Bernoulli range
    @property
    def _scaling_rule(self):
        if self.likelihood == "bernoulli" and self.scaling == "auto":
            return None
        return super()._scaling_rule

    def _check_rows(self, rows):
        self._check_unit_interval(rows)

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
        return self._decode(self.module_.decode_mean, torch.from_numpy(codes.astype(np.float32)))

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
        return self._decode(self.module_.decode_mean, torch.from_numpy(codes.astype(np.float32)))
