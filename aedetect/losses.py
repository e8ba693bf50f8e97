"""The losses of every model, per row where a row can have one (pure torch functions).

The models in :mod:`aedetect.models` build their training losses, their validation
losses and their scores from these, so training and validation are in the same units.
"""

import math

import torch
from torch.nn import functional as F

LOG_2PI = math.log(2.0 * math.pi)


def row_squared_error(reconstruction, target):
    """Per-row mean squared error over every feature (or pixel)."""
    return (reconstruction - target).pow(2).flatten(1).mean(dim=1)


def kept_rows(row_losses, trim_fraction):
    """Indices of the rows of a mini-batch a trimmed mean keeps, or ``None`` for all.

    Robust training: the share ``trim_fraction`` of rows with the largest loss is left
    out, so the rows the model fits worst (likely outliers mixed into the training
    data) pull the weights neither way. Models with several loss terms index each
    term's per-row values with the result.
    """
    if not trim_fraction:
        return None
    keep = max(1, math.ceil((1.0 - trim_fraction) * row_losses.shape[0]))
    return torch.topk(row_losses.detach(), keep, largest=False, sorted=False).indices


def trimmed_mean(row_losses, trim_fraction):
    """Mean of ``row_losses`` over the rows :func:`kept_rows` keeps."""
    kept = kept_rows(row_losses, trim_fraction)
    return row_losses.mean() if kept is None else row_losses[kept].mean()


def gaussian_log_likelihood(target, mean, log_var=None):
    """log N(target; mean, exp(log_var)) per row, summed over features, in nats.

    ``log_var=None`` means unit variance; otherwise it broadcasts against ``target``
    (one log-variance per feature).
    """
    squared = (target - mean).pow(2)
    if log_var is None:
        return -0.5 * (squared + LOG_2PI).flatten(1).sum(dim=1)
    return -0.5 * (squared * torch.exp(-log_var) + log_var + LOG_2PI).flatten(1).sum(dim=1)


def bernoulli_log_likelihood(target, logits):
    """log Bernoulli(target; sigmoid(logits)) per row, summed over features, in nats
    (the binary cross-entropy with a minus sign; ``target`` may be grey levels)."""
    nll = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return -nll.flatten(1).sum(dim=1)


def kl_to_standard_normal(mu, log_var):
    """KL(N(mu, diag(exp(log_var))) || N(0, I)) per row, in nats."""
    return 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(dim=1)


def discriminator_loss(real_logits, fake_logits, real_label=1.0):
    """Binary cross-entropy of a discriminator: ``real_logits`` labelled
    ``real_label`` (below 1 for one-sided label smoothing), ``fake_logits`` 0."""
    return (F.binary_cross_entropy_with_logits(real_logits,
                                               torch.full_like(real_logits, real_label))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def generator_loss(fake_logits):
    """Binary cross-entropy that rewards fakes classified as real (label 1)."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def discriminator_advantage(real_logits, fake_logits):
    """Per fake row: its share of ``2 log 2 - L_D`` with hard labels (the mean over
    the rows is the advantage: 0 when the discriminator cannot tell real from fake,
    twice the Jensen-Shannon divergence between them for an optimal one)."""
    real_half = math.log(2) - F.softplus(-real_logits).mean()
    return real_half + math.log(2) - F.softplus(fake_logits)


def sliced_wasserstein(codes, draws, directions, variances=None):
    """Sliced squared 2-Wasserstein distance between ``codes`` and ``draws``
    (Kolouri et al., 2019): both projected on each column of ``directions`` (unit
    vectors, shape ``(latent_dim, n_directions)``), each projection sorted, the mean
    squared difference of the sorted values over rows and directions. 0 when the two
    samples have the same projections up to the order of the rows. ``draws`` may hold
    ``k`` times as many rows as ``codes``: the ``i``-th smallest code is then compared
    with the ``k * i + k // 2``-th smallest draw (the sample's quantile at the code's
    rank, a steadier target). ``variances`` (one per direction) divides each
    direction's term, so that directions of a large spread do not drown the others."""
    k = draws.shape[0] // codes.shape[0]
    if k < 1 or draws.shape[0] != k * codes.shape[0]:
        raise ValueError(f"sliced_wasserstein needs a whole multiple of the {codes.shape[0]} "
                         f"codes' rows in draws; got {draws.shape[0]}")
    projected = torch.sort(codes @ directions, dim=0).values
    reference = torch.sort(draws @ directions, dim=0).values[k // 2::k]
    squared = (projected - reference).pow(2)
    if variances is not None:
        squared = squared / variances
    return squared.mean()


def slicing_directions(normal):
    """The directions of :func:`sliced_wasserstein`: the coordinate axes (the
    marginals) then the columns of ``normal`` (standard normal draws, shape
    ``(latent_dim, n_random)``) scaled to unit length, i.e. directions uniform on the
    sphere; shape ``(latent_dim, latent_dim + n_random)``."""
    axes = torch.eye(normal.shape[0], dtype=normal.dtype, device=normal.device)
    return torch.cat([axes, normal / normal.norm(dim=0, keepdim=True).clamp(min=1e-12)], dim=1)


def input_gradient_norm(outputs, inputs):
    """Mean over rows of the squared norm of the gradient of ``outputs.sum()`` with
    respect to ``inputs`` (kept in the graph: the R1 penalty of Mescheder et al., 2018,
    on a discriminator's logits at prior draws)."""
    (gradient,) = torch.autograd.grad(outputs.sum(), inputs, create_graph=True)
    return gradient.pow(2).flatten(1).sum(dim=1).mean()
