"""The autoencoder model of :class:`aedetect.AEDetector`."""

import torch

from ..losses import row_squared_error, trimmed_mean
from .base import DetectorModel, robust_center_scale
from .neighbours import LatentNeighbours, reference_index


class AutoencoderModel(DetectorModel):
    """Encoder and decoder trained on the (trimmed) mean squared error.

    Scores, per row (higher is more normal):

    - ``'reconstruction'``: minus the mean squared reconstruction error;
    - ``'latent'``: minus the mean distance of the code to its nearest training codes
      (:class:`~aedetect.models.neighbours.LatentNeighbours`);
    - ``'combined'``: minus the sum of both, each standardized by its median and
      ``1.4826 * MAD`` over the training rows (buffers ``combined_center``,
      ``combined_scale``, set by :meth:`calibrate`; robust, so an extreme training row
      cannot change the weighting).

    Parameters
    ----------
    encoder, decoder : nn.Module
        ``decoder(encoder(x))`` has the shape of ``x``.
    latent_dim : int
        Size of the code.
    trim_fraction : float, default=0.0
        Share of each batch's worst-reconstructed rows left out of the step.
    n_neighbors : int, default=5
        Nearest training codes of the latent score.
    """

    score_types = ("reconstruction", "latent", "combined")

    def __init__(self, encoder, decoder, latent_dim, trim_fraction=0.0, n_neighbors=5):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.trim_fraction = trim_fraction
        self.neighbours = LatentNeighbours(latent_dim, n_neighbors)
        self.register_buffer("combined_center", torch.zeros(2))
        self.register_buffer("combined_scale", torch.ones(2))

    def forward(self, x):
        return self.decoder(self.encoder(x))

    def encode(self, x):
        return self.encoder(x)

    def reconstruct(self, x):
        return self(x)

    def training_losses(self, inputs, target, y, generator):
        return {"loss": trimmed_mean(row_squared_error(self(inputs), target),
                                     self.trim_fraction)}

    def validation_loss(self, x):
        return row_squared_error(self(x), x)

    def score(self, x, score_type="reconstruction", exclude_self=False):
        if score_type == "reconstruction":
            return -row_squared_error(self(x), x)
        self.check_score_type(score_type)
        terms = self._terms(x, exclude_self)
        if score_type == "latent":
            return -terms[:, 1]
        return -((terms - self.combined_center) / self.combined_scale).sum(dim=1)

    def _terms(self, x, exclude_self=False):
        """Per row: the reconstruction error and the latent neighbour distance."""
        codes = self.encoder(x)
        error = row_squared_error(self.decoder(codes), x)
        return torch.stack([error, self.neighbours.distance(codes, exclude_self)], dim=1)

    def feature_terms(self, x, score_type="reconstruction"):
        """Minus the score per feature and, last, the code's part: squared errors over
        the number of features (over ``combined_scale[0]`` for ``'combined'``), the
        neighbour distance (over ``combined_scale[1]``)."""
        self.check_score_type(score_type)
        codes = self.encoder(x)
        errors = (self.decoder(codes) - x).pow(2).flatten(1) / x[0].numel()
        if score_type == "reconstruction":
            return torch.cat([errors, errors.new_zeros(x.shape[0], 1)], dim=1)
        distance = self.neighbours.distance(codes).unsqueeze(1)
        if score_type == "latent":
            return torch.cat([torch.zeros_like(errors), distance], dim=1)
        return torch.cat([errors / self.combined_scale[0], distance / self.combined_scale[1]],
                         dim=1)

    def score_baseline(self, score_type):
        if score_type == "combined":
            return -float((self.combined_center / self.combined_scale).sum())
        return 0.0

    def calibrate(self, apply, rng, score_type):
        """The reference codes, then the combined score's centre and scale over the
        training rows (each measured against the other codes)."""
        if score_type == "reconstruction":
            return
        self.neighbours.fit(apply(self.encoder, reference_index(apply.n_rows, rng)))
        terms = apply(lambda x: self._terms(x, exclude_self=True))
        center, scale = robust_center_scale(terms[torch.isfinite(terms).all(dim=1)])
        self.combined_center, self.combined_scale = center.float(), scale.float()
