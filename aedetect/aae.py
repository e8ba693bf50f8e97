"""AAEDetector: an adversarial autoencoder whose codes are shaped into a chosen prior."""

import math
from numbers import Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from . import _structure
from ._base import BaseAutoencoderDetector
from ._device import local_generator
from ._docs import fill_docstring
from ._params import (
    SHARED_PARAMETERS,
    Int,
    Parameter,
    check_n_samples,
    constraints,
    make_init,
)
from .models import AdversarialAutoencoder
from .networks import Discriminator
from .priors import make_prior


#: ``latent_dim_`` of ``conditional=True`` when ``latent_dim=None``: with the class given
#: to the decoder the code needs only the style; on the digits a code of 2 or 3 lets 97 %
#: or more of the samples of every class show it, 4 only 86 %, 16 (the usual rule) 30-37 %.
CONDITIONAL_LATENT_DIM = 2


@fill_docstring
class AAEDetector(BaseAutoencoderDetector):
    """Outlier detector built on an adversarial autoencoder with a chosen prior.

    An autoencoder whose encoder is also the generator of a GAN on the latent code:
    a discriminator learns to tell draws of the ``prior`` from the encoder's codes,
    and the encoder learns to fool it, so the codes of the training data come to
    fill the prior. Each mini-batch runs two phases with separate Adam optimizers:

    1. reconstruction: encoder and decoder take one step on the mean squared error
       (learning rate ``learning_rate_init``, L2 penalty ``weight_decay``);
    2. regularization, on sub-batches of 64 rows: the discriminator takes one step
       on binary cross-entropy with logits (prior draws labelled 0.9, one-sided label
       smoothing, with an R1 gradient penalty of weight 1 on them; codes labelled 0),
       then the encoder takes one step making its codes pass for prior draws (label
       1). The discriminator's Adam uses ``adversarial_learning_rate``, the encoder's
       adversarial Adam a tenth of it; both betas (0.5, 0.999). Then the encoder
       takes a prior-matching step on an Adam of its own (``learning_rate_init``):
       the sliced Wasserstein distance between the sub-batch's codes and the
       quantiles of 8 times as many prior draws, along the code axes (the marginals)
       and 32 random unit directions (the joint: the mixture's shares), each
       direction's term divided by the prior's variance along it; for
       ``prior='uniform'`` it compares the encoder's output before the erf map with
       normal draws. Draws and directions come from ``random_state``. Not with
       ``conditional=True``, where the discriminator already judges each class's
       codes against the prior (the step, blind to the class, made the samples of
       the worst class worse and let the class into the code). Every step
       sees the codes in eval mode (no dropout, batch norm's running statistics):
       the discriminator judges what ``transform`` returns, up to the centring.

    After training the codes are centred: ``transform`` subtracts, per dimension, the
    gap between the training rows' and the prior's winsorized means of the encoder's
    output (``module_.code_shift``, before the code map); ``sample`` adds it back
    before the decoder, so reconstructions and the ``'reconstruction'`` score are
    those of the fit without it.

    Each choice was measured (``benchmarks/results/aae/prior_fit.md``): with one
    adversarial step per batch at equal rates the discriminator collapses to a
    constant and the codes drift off the prior; the tuned game alone still leaves
    them off it (KS up to 0.15 per code dimension for the normal prior, 0.34 for the
    mixture); the prior-matching step and the centring bring all three priors within
    the targets (mean within 0.25 prior sd, KS <= 0.10 on digits and breast cancer,
    seeds 0-2).

    ``history_`` records per epoch ``reconstruction``, ``discriminator`` and
    ``generator`` (the three losses), ``prior_match`` (the sliced distance of the
    prior-matching step), ``discriminator_accuracy`` (on its real and
    fake batches) and ``discriminator_advantage``: ``2 log 2 - L_D`` with hard
    labels, 0 when the discriminator cannot tell codes from prior draws (twice the
    Jensen-Shannon divergence between them for an optimal discriminator). ``loss``,
    which the stopping rule watches, is the reconstruction: a discriminator that
    learns raises the advantage long before the codes reach the prior, so a sum
    with it stops training early. With ``early_stopping`` the validation loss is
    the reconstruction error of the held-out rows, whatever ``score_type``.

    ``score_samples`` (higher means more normal) depends on ``score_type``, with
    ``e(x)`` the mean squared reconstruction error over the ``D`` features (in the
    scaled space) and ``s(z)`` the latent score of the code ``z`` (``d`` dimensions):

    - ``'reconstruction'``: ``-e(x)``, as :class:`AEDetector`;
    - ``'latent'``: ``s(z) = 2 * (log p(z) - E[log p(Z)]) / d``, the code's
      log-density under the prior, per dimension and centred on a typical prior draw
      (for the normal prior ``1 - mean((z / prior_scale)^2)``);
    - ``'combined'`` (default): ``-(D * e(x) / sigma2 - d * s(z)) / (D + d)``, where
      ``sigma2 = reconstruction_variance_`` is the median of ``e`` over the training
      rows. Up to a constant this is the log joint density ``log p(x | z) + log
      p(z)`` per dimension, with a Gaussian decoder of variance ``sigma2``: each
      feature and each code dimension counts once, and a row scores low when it is
      badly reconstructed or when its code lies where the prior puts little mass.

    With ``prior='uniform'`` the code is ``prior_scale * erf(h / sqrt(2))`` of the
    encoder's linear output ``h`` (a standard normal ``h`` gives the uniform), so the
    codes stay inside the box, where the log-density is flat: ``s(z)`` is 0 for every
    code, so ``'combined'`` ranks rows as ``'reconstruction'`` does and ``'latent'``
    cannot tell rows apart. A user distribution with bounded support gives codes
    outside the support its lowest latent score on 20000 prior draws minus 1. Every
    score is finite.

    With ``conditional=True``, ``fit(X, y)`` feeds the one-hot class to the decoder
    and to the discriminator, which then tells ``(prior draw, class)`` pairs from
    ``(code, class)`` pairs and so pushes the codes of every class to the same
    prior: the code carries the style and the label the class. The code must be
    small so that the decoder has to rely on the class: ``latent_dim=None`` then
    resolves to 2 (not the usual rule).
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
        ``torch.distributions`` sample from torch's global generator of their
        device: each draw seeds it from the fit's own generator (``random_state``)
        and restores it afterwards.

    prior_scale : float, default=1.0
        Scale of the built-in priors (see ``prior``); ignored for a
        ``Distribution``.

    n_prior_components : int, default=10
        Number of Gaussians of the ``'mixture'`` prior (at least 2).

    conditional : bool, default=False
        Supervised variant: ``fit`` requires ``y``; the decoder and the
        discriminator see the class, and ``latent_dim=None`` means a code of 2.
        When ``False``, ``y`` is ignored.

    score_type : {'combined', 'reconstruction', 'latent'}, default='combined'
        What ``score_samples`` measures (see above). It can be changed after
        ``fit`` with ``set_params`` for ``score_samples``; ``predict`` and
        ``decision_function`` then raise until the detector is refitted (``offset_``
        belongs to the fitted score type).

    discriminator_layer_sizes : tuple of int, default=(64, 64)
        Hidden widths of the discriminator (leaky ReLU, no batch norm).

    adversarial_learning_rate : float, default=1e-3
        Adam's learning rate for the discriminator; the encoder's adversarial step
        uses a tenth of it.

    Attributes
    ----------
{shared_attributes}

    classes_ : ndarray of shape (n_classes,)
        The class labels, with ``conditional=True`` only.

    reconstruction_variance_ : float
        Median over the training rows of the mean squared reconstruction error (a
        median, so one extreme training row cannot inflate it): the variance of the
        decoder's noise in the ``'combined'`` score.

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

    _own_parameters = (
        Parameter("prior", "normal", [StrOptions({"normal", "uniform", "mixture"}),
                                      torch.distributions.Distribution]),
        Parameter("prior_scale", 1.0, [Interval(Real, 0, None, closed="neither")]),
        Parameter("n_prior_components", 10, [Int(2, None, closed="left")]),
        Parameter("conditional", False, ["boolean"]),
        Parameter("score_type", "combined",
                  [StrOptions(set(AdversarialAutoencoder.score_types))]),
        Parameter("discriminator_layer_sizes", (64, 64), [tuple, list]),
        Parameter("adversarial_learning_rate", 1e-3, [Interval(Real, 0, None, closed="neither")]),
    )
    _parameter_constraints = constraints(SHARED_PARAMETERS + _own_parameters)
    __init__ = make_init(SHARED_PARAMETERS + _own_parameters)

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
        known = getattr(self, "classes_", None)  # set: a partial_fit continues
        if known is not None:
            unknown = np.setdiff1d(y, known)
            if unknown.size:
                raise ValueError(f"y has labels {unknown[:5].tolist()} that the first "
                                 f"partial_fit did not see (classes_ = {known.tolist()}); "
                                 "give every class in the first call, or fit again.")
            return np.searchsorted(known, y).astype(np.int64)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        return encoded.astype(np.int64)

    def _check_fit_params(self, n_samples):
        """``discriminator_layer_sizes`` are positive widths; a ``Distribution`` prior
        must be over vectors of ``latent_dim_`` values (with ``latent_dim=None`` its size
        sets ``latent_dim_``); otherwise ``conditional`` with ``latent_dim=None`` means a
        code of ``CONDITIONAL_LATENT_DIM``."""
        _structure.layer_sizes("discriminator_layer_sizes", self.discriminator_layer_sizes)
        if not isinstance(self.prior, torch.distributions.Distribution):
            if self.conditional and self.latent_dim is None:
                self.latent_dim_ = CONDITIONAL_LATENT_DIM
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

    def _build_model(self):
        d = self.latent_dim_
        n_classes = len(self.classes_) if self.conditional else 0
        # The construction order (decoder, discriminator, encoder, prior) fixes which
        # initial weights each network draws from the seeded generator.
        decoder = _structure.decoder(self, d + n_classes)
        discriminator = Discriminator(d + n_classes, _structure.layer_sizes(
            "discriminator_layer_sizes", self.discriminator_layer_sizes))
        encoder = _structure.encoder(self, d)
        prior = make_prior(self.prior, d, self.prior_scale, self.n_prior_components)
        return AdversarialAutoencoder(encoder, decoder, discriminator, prior,
                                      math.prod(self.input_shape_), d, n_classes=n_classes,
                                      trim_fraction=self.trim_fraction,
                                      adversarial_learning_rate=self.adversarial_learning_rate)

    @property
    def reconstruction_variance_(self):
        check_is_fitted(self)
        return float(self.module_.reconstruction_variance)

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
        generator = local_generator(self.device_, random_state)
        with torch.inference_mode():
            codes = self.module_.prior.sample(n_samples, generator=generator)
        model = self.module_
        if labels is None:
            return self._decode(model.decode, codes)
        # the class travels as a last column through the chunked decoding
        codes = torch.cat([codes, torch.as_tensor(labels, dtype=codes.dtype,
                                                  device=codes.device)[:, None]], dim=1)
        return self._decode(lambda z: model.decode(z[:, :-1], z[:, -1].long()), codes)

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
