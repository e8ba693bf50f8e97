"""The variational autoencoder model of :class:`aedetect.VAEDetector`."""

import math

import torch
from torch import nn
from torch.nn import functional as F

from .. import networks
from ..losses import (
    LOG_2PI,
    bernoulli_log_likelihood,
    gaussian_log_likelihood,
    kept_rows,
    kl_to_standard_normal,
)
from .base import DetectorModel
from .neighbours import LatentNeighbours, reference_index

#: Both log-variances (of q(z|x) and of a learned Gaussian p(x|z)) are clamped to this
#: range: a variance between 4.5e-5 and 2.2e4 (a standard deviation between 0.0067 and
#: 148 in scaled units), which keeps the bound finite when a feature is reconstructed
#: exactly (a constant column) and the training stable.
LOG_VAR_RANGE = (-10.0, 10.0)
LIKELIHOODS = ("gaussian", "gaussian_fixed", "bernoulli")


class VariationalAutoencoder(DetectorModel):
    """Gaussian encoder q(z|x), decoder p(x|z), and the fixed noise bank used to score.

    Training minimizes ``reconstruction + beta * kl`` per row (minus E_q[log p(x|z)]
    with one reparameterized draw, and the closed-form KL to N(0, I)), trimmed. The
    validation loss is the same quantity with the draws of the noise bank, so the two
    are in the same units (nats per row of the scaled data).

    Scores (higher is more normal), each minus ``log_unit_change`` (``sum(log
    scale_)`` of the detector's scaling for Gaussian likelihoods, so the bound is on the
    density of the data in its own units):

    - ``'elbo'``: mean over the draws of log p(x|z), minus the exact KL;
    - ``'iwae'``: the importance-weighted bound ``log mean_k p(x, z_k) / q(z_k|x)``;
    - ``'reconstruction'``: mean over the draws of log p(x|z);
    - ``'latent'``: minus the distance of the posterior mean to the nearest training
      codes (not a bound; no unit change).

    Parameters
    ----------
    encoder : nn.Module
        Maps ``x`` to ``2 * latent_dim`` numbers: the mean and log-variance of q(z|x).
    decoder : nn.Module
        Maps ``z`` to the decoder output shaped like ``x`` (a mean, or logits).
    output_shape : tuple of int
        Shape of one sample.
    likelihood : {'gaussian', 'gaussian_fixed', 'bernoulli'}
        p(x|z); ``'gaussian'`` learns one log-variance per feature (``decoder_log_var``).
    noise_bank : Tensor of shape (n_draws, latent_dim)
        Standard normal draws reused for every row at scoring time (a buffer).
    log_unit_change : float, default=0.0
        Subtracted from the bounds (see above).
    beta : float, default=1.0
        Weight of the KL term in training and in the validation loss.
    trim_fraction : float, default=0.0
        Share of each batch's rows with the largest loss left out of the step.
    n_neighbors : int, default=5
        Nearest training codes of the latent score.
    """

    score_types = ("elbo", "iwae", "reconstruction", "latent")

    def __init__(self, encoder, decoder, output_shape, likelihood, noise_bank,
                 log_unit_change=0.0, beta=1.0, trim_fraction=0.0, n_neighbors=5):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood
        self.n_features = math.prod(output_shape)
        self.beta = beta
        self.trim_fraction = trim_fraction
        if likelihood == "gaussian":
            self.decoder_log_var = nn.Parameter(torch.zeros(tuple(output_shape)))
        else:
            self.register_parameter("decoder_log_var", None)
        self.register_buffer("noise_bank", noise_bank)
        self.register_buffer("log_unit_change", torch.tensor(float(log_unit_change)))
        self.neighbours = LatentNeighbours(noise_bank.shape[1], n_neighbors)

    @property
    def inference_copies(self):
        return self.noise_bank.shape[0] + 1  # scoring decodes every draw of the bank

    # --------------------------------------------------------------- pieces
    def encode_posterior(self, x):
        """Mean and clamped log-variance of q(z|x), each of shape ``(n, latent_dim)``."""
        mu, log_var = self.encoder(x).chunk(2, dim=1)
        return mu, log_var.clamp(*LOG_VAR_RANGE)

    def encode(self, x):
        return self.encode_posterior(x)[0]

    def log_likelihood(self, output, target):
        """log p(target | z) per row in nats, from the decoder ``output``."""
        if self.likelihood == "bernoulli":
            return bernoulli_log_likelihood(target, output)
        if self.likelihood == "gaussian_fixed":
            return gaussian_log_likelihood(target, output)
        return gaussian_log_likelihood(target, output,
                                       self.decoder_log_var.clamp(*LOG_VAR_RANGE))

    def decode_mean(self, z):
        """Mean of p(x|z) for codes ``z`` (the sigmoid of the logits for Bernoulli)."""
        output = self.decoder(z)
        return torch.sigmoid(output) if self.likelihood == "bernoulli" else output

    def reconstruct(self, x):
        return self.decode_mean(self.encode(x))

    def forward(self, x):
        """Decoder output at the posterior mean."""
        return self.decoder(self.encode(x))

    # -------------------------------------------------------------- training
    def training_losses(self, inputs, target, y, generator):
        mu, log_var = self.encode_posterior(inputs)
        eps = networks.normal(mu.shape, mu, generator)
        z = mu + torch.exp(0.5 * log_var) * eps
        reconstruction = -self.log_likelihood(self.decoder(z), target)
        kl = kl_to_standard_normal(mu, log_var)
        kept = kept_rows(reconstruction + self.beta * kl, self.trim_fraction)
        if kept is not None:
            reconstruction, kl = reconstruction[kept], kl[kept]
        reconstruction, kl = reconstruction.mean(), kl.mean()
        return {"loss": reconstruction + self.beta * kl, "reconstruction": reconstruction,
                "kl": kl}

    def validation_loss(self, x):
        log_px, mu, log_var, _ = self._bank_draws(x)
        return -log_px.mean(dim=1) + self.beta * kl_to_standard_normal(mu, log_var)

    # --------------------------------------------------------------- scoring
    def _bank_draws(self, x):
        """``(log p(x|z_k) of shape (n, k), mu, log_var, z)`` for the bank's draws."""
        mu, log_var = self.encode_posterior(x)
        eps = self.noise_bank                                              # (k, d)
        n, n_draws = x.shape[0], eps.shape[0]
        z = mu.unsqueeze(1) + torch.exp(0.5 * log_var).unsqueeze(1) * eps  # (n, k, d)
        output = self.decoder(z.reshape(n * n_draws, -1))
        target = x.unsqueeze(1).expand(n, n_draws, *x.shape[1:]).reshape(output.shape)
        return self.log_likelihood(output, target).view(n, n_draws), mu, log_var, z

    def score(self, x, score_type="elbo", exclude_self=False):
        self.check_score_type(score_type)
        if score_type == "latent":
            return -self.neighbours.distance(self.encode(x), exclude_self)
        log_px, mu, log_var, z = self._bank_draws(x)
        if score_type == "reconstruction":
            score = log_px.mean(dim=1)
        elif score_type == "elbo":
            score = log_px.mean(dim=1) - kl_to_standard_normal(mu, log_var)
        else:
            # log p(z) - log q(z|x) for z = mu + sigma * eps (the 2 pi terms cancel).
            eps = self.noise_bank
            log_ratio = 0.5 * (eps.pow(2).sum(dim=1) - z.pow(2).sum(dim=2)
                               + log_var.sum(dim=1, keepdim=True))
            score = torch.logsumexp(log_px + log_ratio, dim=1) - math.log(eps.shape[0])
        return score - self.log_unit_change

    def feature_terms(self, x, score_type="elbo"):
        """Minus the score per feature and, last, the code's part. Per feature: the
        row-dependent part of minus log p(x_j|z) averaged over the bank's draws (for
        ``'iwae'`` weighted by the draws' importance weights), i.e. ``(x_j - mean)^2 / (2
        var_j)`` for Gaussians, the cross-entropy for Bernoulli; the constants are in
        :meth:`score_baseline`. Code: the KL for ``'elbo'``, the neighbour distance for
        ``'latent'``, the remainder of the bound for ``'iwae'``."""
        self.check_score_type(score_type)
        n, n_features = x.shape[0], x[0].numel()
        if score_type == "latent":
            distance = self.neighbours.distance(self.encode(x)).unsqueeze(1)
            return torch.cat([x.new_zeros(n, n_features), distance], dim=1)
        mu, log_var = self.encode_posterior(x)
        eps = self.noise_bank
        z = mu.unsqueeze(1) + torch.exp(0.5 * log_var).unsqueeze(1) * eps  # (n, k, d)
        output = self.decoder(z.reshape(n * eps.shape[0], -1)).reshape(n, eps.shape[0], -1)
        target = x.flatten(1).unsqueeze(1).expand_as(output)
        if self.likelihood == "bernoulli":
            terms = F.binary_cross_entropy_with_logits(output, target, reduction="none")
        else:
            terms = 0.5 * (target - output).pow(2)
            if self.likelihood == "gaussian":
                terms = terms * torch.exp(-self.decoder_log_var.clamp(*LOG_VAR_RANGE)).flatten()
        if score_type == "iwae":
            log_px = -terms.sum(dim=2) - (self.score_baseline("iwae") - self.log_unit_change)
            log_ratio = 0.5 * (eps.pow(2).sum(dim=1) - z.pow(2).sum(dim=2)
                               + log_var.sum(dim=1, keepdim=True))
            weights = torch.softmax(log_px + log_ratio, dim=1).unsqueeze(2)
            features = (weights * terms).sum(dim=1)
            rest = -self.score(x, "iwae") - self.score_baseline("iwae") - features.sum(dim=1)
            return torch.cat([features, rest.unsqueeze(1)], dim=1)
        code = kl_to_standard_normal(mu, log_var) if score_type == "elbo" else mu.new_zeros(n)
        return torch.cat([terms.mean(dim=1), code.unsqueeze(1)], dim=1)

    def score_baseline(self, score_type):
        """``sum_j (log var_j + log 2 pi) / 2 + log_unit_change`` for Gaussians (0 for
        Bernoulli and for ``'latent'``)."""
        if score_type == "latent":
            return 0.0
        baseline = float(self.log_unit_change)
        if self.likelihood == "gaussian":
            log_var = self.decoder_log_var.clamp(*LOG_VAR_RANGE)
            baseline += 0.5 * float((log_var.detach() + LOG_2PI).sum())
        elif self.likelihood == "gaussian_fixed":
            baseline += 0.5 * LOG_2PI * self.n_features
        return baseline

    def calibrate(self, apply, rng, score_type):
        """The reference codes (posterior means) for ``score_type='latent'``."""
        if score_type == "latent":
            self.neighbours.fit(apply(self.encode, reference_index(apply.n_rows, rng)))
