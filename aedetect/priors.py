"""Priors over the latent code of :class:`aedetect.AAEDetector`, as torch modules.

Each prior is an ``nn.Module`` (its constants are buffers, so it moves with the network
to the device and is saved in the ``state_dict``) with three methods:

- ``sample(n, generator=None)``: ``n`` codes drawn with ``generator`` (a
  ``torch.Generator`` on the prior's device; ``None``: torch's global one);
- ``latent_score(z)``: how typical each code is, finite for every input, higher is
  more typical, ``2 * (log p(z) - E[log p(Z)]) / latent_dim`` for priors with a
  density: 0 for a code as likely as an average draw of the prior. For the normal prior
  it is ``1 - mean((z / scale)^2)``. Where the log-density is ``-inf`` (outside a
  bounded support) the score stays finite: see :class:`UniformPrior` and
  :class:`DistributionPrior`;
- ``code_map(h)``: the map from the encoder's linear output to the code. The identity,
  except for :class:`UniformPrior`, whose map sends a standard normal to the uniform
  (an encoder's linear output takes a roughly normal shape easily, a box hardly).
  ``code_unmap(z)`` is its inverse (the identity for the others; where a prior has no
  such method the identity is assumed).

The detector's ``score_samples`` uses ``latent_score`` as the code's part of the score.
"""

import math

import torch
from torch import nn

#: Prior draws used to estimate the mean log-density of a mixture or user prior.
N_PRIOR_DRAWS = 20000


class NormalPrior(nn.Module):
    """``N(0, scale^2 I)``. Latent score: ``1 - mean((z / scale)^2)``."""

    def __init__(self, latent_dim, scale):
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.register_buffer("scale", torch.tensor(float(scale)))

    def sample(self, n, generator=None):
        return self.scale * torch.randn(n, self.latent_dim, generator=generator,
                                        device=self.scale.device)

    def latent_score(self, z):
        return 1.0 - (z / self.scale).pow(2).mean(dim=1)

    def code_map(self, h):
        return h


class UniformPrior(nn.Module):
    """Uniform on the box ``[-scale, scale]^d``.

    Its log-density is flat inside the box and ``-inf`` outside, so the latent score
    is a soft version: 0 inside, minus the mean squared distance outside the box
    in units of the uniform's standard deviation ``scale / sqrt(3)``. The code map
    ``scale * erf(h / sqrt(2))`` sends ``h ~ N(0, 1)`` to the uniform on the box, so
    codes never leave it and their latent score is 0.
    """

    def __init__(self, latent_dim, scale):
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.register_buffer("scale", torch.tensor(float(scale)))

    def sample(self, n, generator=None):
        u = torch.rand(n, self.latent_dim, generator=generator, device=self.scale.device)
        return self.scale * (2.0 * u - 1.0)

    def latent_score(self, z):
        outside = (z.abs() - self.scale).clamp(min=0.0)
        return -(outside * math.sqrt(3.0) / self.scale).pow(2).mean(dim=1)

    def code_map(self, h):
        return self.scale * torch.erf(h / math.sqrt(2.0))

    def code_unmap(self, z):
        """The inverse of :meth:`code_map`, finite on the closed box (its faces go to
        about +-5.3, the map's value there in float32)."""
        inside = (z / self.scale).clamp(-1.0 + 1e-7, 1.0 - 1e-7)
        return math.sqrt(2.0) * torch.erfinv(inside)

def code_unmap(prior, z):
    """``prior.code_unmap(z)``: codes back to the encoder's output, or ``z`` itself for a
    prior without the method (its code map is the identity)."""
    unmap = getattr(prior, "code_unmap", None)
    return z if unmap is None else unmap(z)


def mixture_means(latent_dim, n_components, scale):
    """Means of the mixture prior: neighbours ``4 * scale`` apart.

    On a circle of radius ``2 * scale / sin(pi / n_components)`` in the first two
    latent dimensions (on a line when ``latent_dim == 1``); other coordinates are 0.
    """
    means = torch.zeros(n_components, latent_dim, dtype=torch.float64)
    if latent_dim == 1:
        means[:, 0] = 4.0 * scale * (torch.arange(n_components) - (n_components - 1) / 2)
    else:
        angles = 2 * math.pi * torch.arange(n_components, dtype=torch.float64) / n_components
        radius = 2.0 * scale / math.sin(math.pi / n_components)
        means[:, 0], means[:, 1] = radius * torch.cos(angles), radius * torch.sin(angles)
    return means.float()


class MixturePrior(nn.Module):
    """Equal-weight mixture of ``N(mean_k, scale^2 I)`` (see :func:`mixture_means`).

    Latent score: ``2 * (log p(z) - E[log p(Z)]) / latent_dim``; the expectation is
    estimated once from draws of a generator with a fixed seed (no global randomness).
    """

    def __init__(self, latent_dim, n_components, scale):
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.register_buffer("means", mixture_means(latent_dim, n_components, scale))
        self.register_buffer("scale", torch.tensor(float(scale)))
        draws = self._draw(N_PRIOR_DRAWS, torch.Generator().manual_seed(0))
        self.register_buffer("mean_log_density", self.log_density(draws).mean())

    def _draw(self, n, generator=None):
        device = self.means.device
        index = torch.randint(self.means.shape[0], (n,), device=device, generator=generator)
        noise = torch.randn(n, self.latent_dim, device=device, generator=generator)
        return self.means[index] + self.scale * noise

    def sample(self, n, generator=None):
        return self._draw(n, generator)

    def log_density(self, z):
        squared = ((z[:, None, :] - self.means[None]) / self.scale).pow(2).sum(dim=2)
        constant = (math.log(self.means.shape[0])
                    + self.latent_dim * (torch.log(self.scale) + 0.5 * math.log(2 * math.pi)))
        return torch.logsumexp(-0.5 * squared, dim=1) - constant

    def latent_score(self, z):
        return 2.0 * (self.log_density(z) - self.mean_log_density) / self.latent_dim

    def code_map(self, h):
        return h


class DistributionPrior(nn.Module):
    """A user's ``torch.distributions.Distribution`` with ``event_shape == (latent_dim,)``.

    ``torch.distributions`` sample only from torch's global generators: with a
    ``generator``, :meth:`sample` seeds the global one of the distribution's device
    from it and restores that generator's state afterwards. Latent
    score: ``2 * (log p(z) - E[log p(Z)]) / latent_dim``, the expectation estimated
    from draws at fit time. Codes outside the support (where ``log p = -inf``) get
    ``floor``: the lowest latent score of those draws minus 1.
    """

    def __init__(self, distribution, latent_dim):
        super().__init__()
        self.distribution = distribution
        self.latent_dim = int(latent_dim)
        draws = distribution.sample((N_PRIOR_DRAWS,))
        self.home = draws.device
        log_p = distribution.log_prob(draws).float()
        mean_log_density = log_p.mean()
        scores = 2.0 * (log_p - mean_log_density) / self.latent_dim
        self.register_buffer("mean_log_density", mean_log_density.cpu())
        self.register_buffer("floor", scores.min().cpu() - 1.0)
        self.register_buffer("anchor", draws[0].float().cpu())

    def sample(self, n, generator=None):
        if generator is None:
            draws = self.distribution.sample((n,))
        else:
            seed = int(torch.randint(2**62, (1,), generator=generator,
                                     device=generator.device))
            draws = _sample_seeded(self.distribution, n, seed, self.home)
        return draws.to(self.floor.device, torch.float32)

    def latent_score(self, z):
        codes = z.to(self.home)
        inside = self.distribution.support.check(codes)
        if inside.dim() > 1:
            inside = inside.flatten(1).all(dim=1)
        safe = torch.where(inside[:, None], codes, self.anchor.to(self.home, codes.dtype))
        log_p = self.distribution.log_prob(safe).to(z.device, z.dtype)
        scores = 2.0 * (log_p - self.mean_log_density) / self.latent_dim
        keep = inside.to(z.device) & torch.isfinite(scores)
        return torch.where(keep, scores, self.floor)

    def code_map(self, h):
        return h


def _sample_seeded(distribution, n, seed, device):
    """``n`` draws of ``distribution`` with the global generator of ``device`` seeded
    with ``seed``; that generator's state is restored afterwards."""
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device.index or 0] if cuda else [],
                               device_type="cuda"):
        if cuda:
            torch.cuda.default_generators[device.index or 0].manual_seed(seed)
        else:
            torch.random.default_generator.manual_seed(seed)
        return distribution.sample((n,))


def make_prior(prior, latent_dim, scale=1.0, n_components=10):
    """The prior module for ``prior``: ``'normal'``, ``'uniform'``, ``'mixture'`` or a
    ``torch.distributions.Distribution`` (already checked to have ``event_shape
    == (latent_dim,)``)."""
    if isinstance(prior, torch.distributions.Distribution):
        return DistributionPrior(prior, latent_dim)
    if prior == "uniform":
        return UniformPrior(latent_dim, scale)
    if prior == "mixture":
        return MixturePrior(latent_dim, n_components, scale)
    if prior == "normal":
        return NormalPrior(latent_dim, scale)
    raise ValueError(f"Unknown prior {prior!r}; expected 'normal', 'uniform', 'mixture' or a "
                     "torch.distributions.Distribution.")
