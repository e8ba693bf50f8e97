"""The adversarial autoencoder model of :class:`aedetect.AAEDetector`."""

import math

import torch
from torch.nn import functional as F

from ..losses import (
    discriminator_advantage,
    discriminator_loss,
    generator_loss,
    row_squared_error,
    trimmed_mean,
)
from ..networks import LabelConditioned
from .base import DetectorModel, adam, optimizer_step

#: Real labels of the discriminator (one-sided label smoothing: prior draws are "0.9 real").
REAL_LABEL = 0.9
#: Adam's betas for the two adversarial optimizers (the usual GAN setting).
ADVERSARIAL_BETAS = (0.5, 0.999)
#: Prior draws of the fixed bank the validation loss compares codes with.
N_BANK = 1024
#: Weight of the discriminator's advantage in the watched loss.
ADVANTAGE_WEIGHT = 0.25


class AdversarialAutoencoder(DetectorModel):
    """Encoder, decoder, code discriminator and prior, trained in two phases per batch.

    1. reconstruction: encoder and decoder take one step on the trimmed squared error;
    2. regularization: the discriminator takes one step telling prior draws (label
       0.9) from codes (label 0), then the encoder one step making its codes pass for
       prior draws (label 1).

    The training ``loss`` (what the stopping rule watches) is ``reconstruction + 0.25 *
    discriminator_advantage``; the validation loss is the same per held-out row, its
    code against a fixed bank of prior draws (``prior_bank``). With ``n_classes > 0``
    the decoder and the discriminator also see the one-hot class
    (:class:`~aedetect.networks.LabelConditioned`); scoring then reconstructs each row
    with every class and keeps the best.

    Scores (higher is more normal), with ``e`` the reconstruction error, ``s`` the
    prior's latent score of the code, ``D`` features and ``d`` code dimensions:
    ``'reconstruction'`` is ``-e``, ``'latent'`` is ``s`` and ``'combined'`` is
    ``-(D * e / reconstruction_variance - d * s) / (D + d)``, where the buffer
    ``reconstruction_variance`` (the median of ``e`` over the training rows) is set by
    :meth:`calibrate`.
    """

    score_types = ("combined", "reconstruction", "latent")

    def __init__(self, encoder, decoder, discriminator, prior, n_features, latent_dim,
                 n_classes=0, trim_fraction=0.0, adversarial_learning_rate=1e-3):
        super().__init__()
        self.n_classes = int(n_classes)
        if self.n_classes:
            decoder = LabelConditioned(decoder, self.n_classes)
            discriminator = LabelConditioned(discriminator, self.n_classes)
        self.encoder = encoder
        self.decoder = decoder
        self.discriminator = discriminator
        self.prior = prior
        self.n_features, self.latent_dim = int(n_features), int(latent_dim)
        self.trim_fraction = trim_fraction
        self.adversarial_learning_rate = adversarial_learning_rate
        self.register_buffer("reconstruction_variance", torch.tensor(1.0))
        bank = prior.sample(N_BANK, generator=torch.Generator().manual_seed(0))
        self.register_buffer("prior_bank", bank, persistent=False)

    @property
    def inference_copies(self):
        return max(self.n_classes, 1)  # one decoder pass per class

    def decode(self, z, labels=None):
        return self.decoder(z, labels) if self.n_classes else self.decoder(z)

    def discriminate(self, z, labels=None):
        return self.discriminator(z, labels) if self.n_classes else self.discriminator(z)

    def encode(self, x):
        return self.encoder(x)

    def reconstruct(self, x):
        return self.best_reconstruction(self.encoder(x), x)[1]

    # -------------------------------------------------------------- training
    def configure_optimizers(self, learning_rate, weight_decay):
        """Adam for the autoencoder; Adam with GAN betas for the two adversarial steps."""
        autoencoder = [*self.encoder.parameters(), *self.decoder.parameters()]
        adversarial = {"lr": self.adversarial_learning_rate, "betas": ADVERSARIAL_BETAS}
        return {
            "autoencoder": adam(autoencoder, learning_rate, weight_decay),
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), **adversarial),
            "generator": torch.optim.Adam(self.encoder.parameters(), **adversarial),
        }

    def training_step(self, inputs, target, y, optimizers, generator):
        # 1. reconstruction: encoder and decoder on the squared error.
        codes = self.encoder(inputs)
        errors = row_squared_error(self.decode(codes, y), target)
        reconstruction = trimmed_mean(errors, self.trim_fraction)
        optimizer_step(optimizers["autoencoder"], reconstruction)
        # 2a. discriminator: prior draws are real (smoothed label), codes are fake.
        real = self.discriminate(self.prior.sample(codes.shape[0], generator=generator), y)
        fake = self.discriminate(codes.detach(), y)
        d_loss = discriminator_loss(real, fake, REAL_LABEL)
        optimizer_step(optimizers["discriminator"], d_loss)
        # 2b. generator: the encoder learns to make its codes pass for prior draws.
        g_loss = generator_loss(self.discriminate(self.encoder(inputs), y))
        optimizer_step(optimizers["generator"], g_loss)
        with torch.no_grad():
            accuracy = 0.5 * ((real > 0).float().mean() + (fake < 0).float().mean())
            advantage = 2 * math.log(2) - F.softplus(-real).mean() - F.softplus(fake).mean()
        return {"loss": (reconstruction + ADVANTAGE_WEIGHT * advantage).detach(),
                "reconstruction": reconstruction.detach(),
                "discriminator": d_loss.detach(), "generator": g_loss.detach(),
                "discriminator_accuracy": accuracy, "discriminator_advantage": advantage}

    def validation_loss(self, x):
        """Per row: its reconstruction error plus 0.25 times its share of the
        discriminator's advantage against the fixed bank of prior draws."""
        codes = self.encoder(x)
        error, _, labels = self.best_reconstruction(codes, x)
        bank = self.prior_bank
        bank_labels = torch.arange(bank.shape[0], device=bank.device) % max(self.n_classes, 1)
        advantage = discriminator_advantage(self.discriminate(bank, bank_labels),
                                            self.discriminate(codes, labels))
        return error + ADVANTAGE_WEIGHT * advantage

    # --------------------------------------------------------------- scoring
    def best_reconstruction(self, codes, x):
        """Per-row squared error, reconstruction and class index (``None`` unless
        conditional, where each row takes the class that reconstructs it best)."""
        if not self.n_classes:
            reconstruction = self.decode(codes)
            return row_squared_error(reconstruction, x), reconstruction, None
        best = None
        for k in range(self.n_classes):
            labels = torch.full((codes.shape[0],), k, dtype=torch.long, device=codes.device)
            reconstruction = self.decode(codes, labels)
            error = row_squared_error(reconstruction, x)
            if best is None:
                best = [error, reconstruction, labels]
                continue
            better = error < best[0]
            mask = better.view(-1, *([1] * (x.dim() - 1)))
            best = [torch.where(better, error, best[0]),
                    torch.where(mask, reconstruction, best[1]),
                    torch.where(better, labels, best[2])]
        return tuple(best)

    def score(self, x, score_type="combined", exclude_self=False):
        self.check_score_type(score_type)
        codes = self.encoder(x)
        if score_type == "latent":
            return self.prior.latent_score(codes)
        error = self.best_reconstruction(codes, x)[0]
        if score_type == "reconstruction":
            return -error
        deviation = self.n_features * error / self.reconstruction_variance
        deviation = deviation - self.latent_dim * self.prior.latent_score(codes)
        return -deviation / (self.n_features + self.latent_dim)

    def calibrate(self, apply, rng, score_type):
        """``reconstruction_variance``: the median of the training rows' mean squared
        errors (a median, so an extreme training row cannot inflate it)."""
        errors = apply(lambda x: self.best_reconstruction(self.encoder(x), x)[0])
        errors = errors[torch.isfinite(errors)].double()
        typical = errors.median() if errors.numel() else torch.tensor(1.0)
        self.reconstruction_variance = typical.clamp(min=1e-12).float()
