"""Latent neighbour scores: how far a code lies from the codes of the training rows."""

import torch
from torch import nn

from .base import robust_center_scale

#: At most this many training rows (drawn with the fit's ``random_state``) give the
#: reference codes: it bounds their memory and the scoring time.
MAX_REFERENCE_CODES = 10_000
#: Rows compared with every reference code at once (bounds the distance matrix).
NEIGHBOUR_CHUNK_ROWS = 1024


def mean_neighbour_distance(codes, reference, n_neighbors, skip_nearest=False):
    """Mean Euclidean distance of each row of ``codes`` to its ``n_neighbors`` nearest
    rows of ``reference``, skipping the nearest one first when ``skip_nearest``.

    Distances are computed directly (not through a matrix product), so a row's result
    does not depend on the rows scored with it. Under ``torch.export`` the rows are one
    chunk (a split into a data-dependent number of chunks has no dynamic-batch export).
    """
    skip = int(skip_nearest)
    parts = []
    chunks = [codes] if _exporting() else codes.split(NEIGHBOUR_CHUNK_ROWS)
    for chunk in chunks:
        distances = torch.cdist(chunk, reference, compute_mode="donot_use_mm_for_euclid_dist")
        nearest = distances.topk(n_neighbors + skip, dim=1, largest=False, sorted=True).values
        parts.append(nearest[:, skip:].mean(dim=1))
    return torch.cat(parts)


def _exporting():
    is_exporting = getattr(torch.compiler, "is_exporting", None)
    return bool(is_exporting is not None and is_exporting())


def check_n_neighbors(n_neighbors, n_samples, score_type):
    """``n_neighbors`` must leave at least one other reference code per training row."""
    n_reference = min(n_samples, MAX_REFERENCE_CODES)
    if n_neighbors >= n_reference:
        raise ValueError(
            f"score_type={score_type!r} compares each code with its n_neighbors="
            f"{n_neighbors} nearest training codes, other than its own, so it needs "
            f"more than n_neighbors reference codes; got {n_reference} (n_samples="
            f"{n_samples}, at most {MAX_REFERENCE_CODES} are kept). Lower n_neighbors "
            "or use more training data.")


class LatentNeighbours(nn.Module):
    """The training codes (buffer ``codes``, each dimension divided by ``scale``, its
    robust spread over them (``1.4826 * MAD``, see
    :func:`~aedetect.models.base.robust_center_scale`), so every latent dimension counts
    alike and one extreme code does not squash the others) and the
    distance of new codes to their ``n_neighbors`` nearest ones.

    Empty (no codes) until :meth:`fit`; a loaded state dict brings its own number of
    codes.
    """

    def __init__(self, latent_dim, n_neighbors):
        super().__init__()
        self.n_neighbors = int(n_neighbors)
        self.register_buffer("codes", torch.zeros(0, latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    @property
    def fitted(self):
        return self.codes.shape[0] > 0

    def fit(self, codes):
        _, scale = robust_center_scale(codes)
        self.codes = (codes.double() / scale).float()
        self.scale = scale.float()

    def distance(self, codes, exclude_self=False):
        """Mean distance of each code to its nearest reference codes; ``exclude_self``
        leaves the nearest one out (a training row scored against the others)."""
        if not self.fitted:
            raise ValueError(
                "This latent score needs the training codes, which fit keeps only when "
                "score_type asks for them; this detector was fitted with another "
                "score_type. Set score_type and fit it again.")
        return mean_neighbour_distance(codes / self.scale, self.codes, self.n_neighbors,
                                       skip_nearest=exclude_self)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "codes")
        if saved is not None:  # the number of reference codes is the fitted one
            self.codes = torch.empty_like(saved, device=self.codes.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def reference_index(n_samples, rng):
    """Rows that give the reference codes: all, or ``MAX_REFERENCE_CODES`` drawn with
    the numpy ``rng`` (in order)."""
    import numpy as np

    if n_samples <= MAX_REFERENCE_CODES:
        return None
    return np.sort(rng.choice(n_samples, MAX_REFERENCE_CODES, replace=False))
