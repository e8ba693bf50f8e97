"""The adversarial autoencoder model of :class:`aedetect.AAEDetector`."""

import math

import torch
from torch.nn import functional as F

from ..losses import (
    discriminator_advantage,
    discriminator_loss,
    generator_loss,
    input_gradient_norm,
    row_squared_error,
    sliced_wasserstein,
    slicing_directions,
    trimmed_mean,
)
from ..networks import LabelConditioned
from ..priors import code_unmap
from .base import DetectorModel, adam, module_mode, optimizer_step, winsorized_mean
from .compiled import descend, input_gradient
from .neighbours import reference_index

#: Real labels of the discriminator (one-sided label smoothing: prior draws are "0.9 real").
REAL_LABEL = 0.9
#: Adam's betas for the two adversarial optimizers (the usual GAN setting).
ADVERSARIAL_BETAS = (0.5, 0.999)
#: Prior draws of the fixed bank the validation loss compares codes with.
N_BANK = 1024
#: Weight of the discriminator's advantage in the watched loss. 0: the stopping rule
#: watches the reconstruction alone (a discriminator that learns raises the advantage,
#: and with it a watched sum, long before the codes have reached the prior).
ADVANTAGE_WEIGHT = 0.0
#: Regularization phase on eval-mode codes (no dropout, batch norm's running statistics):
#: the discriminator sees exactly what ``transform`` returns.
EVAL_CODES = True
#: Rows per regularization step: each batch is split into sub-batches of this size
#: (``None``: the whole batch), so the adversarial game gets more steps per epoch.
ADVERSARIAL_BATCH = 64
#: Weight of the R1 gradient penalty on prior draws (0: none).
GRADIENT_PENALTY = 1.0
#: The generator's learning rate as a share of ``adversarial_learning_rate``.
GENERATOR_LR_FACTOR = 0.1
#: Weight of the direct prior-matching step (0: none, the adversarial game alone): after
#: the encoder's adversarial step, each sub-batch takes one more step of the encoder, on
#: its own Adam, on this times the sliced Wasserstein distance
#: (:func:`~aedetect.losses.sliced_wasserstein`) between its eval-mode codes and
#: ``PRIOR_MATCH_DRAWS`` times as many prior draws. Adam's steps hardly depend on the
#: weight; the step's learning rate, ``PRIOR_MATCH_LR_FACTOR``, sets its strength.
PRIOR_MATCH_WEIGHT = 1.0
#: Random unit directions of the sliced distance, besides the coordinate axes (fresh
#: ones each step, from the fit's generator).
PRIOR_MATCH_DIRECTIONS = 32
#: Prior draws of the sliced distance per code: the ``i``-th smallest code projection is
#: compared with the matching quantile of that many times more draws (a steadier target
#: than as many draws, which a 10-component mixture splits unevenly at 64 rows).
PRIOR_MATCH_DRAWS = 8
#: Each direction's term divided by the prior's variance along it (estimated on the
#: fixed bank of prior draws): for the mixture prior the directions across the
#: components' circle would otherwise drown the others.
PRIOR_MATCH_SCALED = True
#: Where the sliced distance compares: ``'code'``, the codes against prior draws;
#: ``'encoder'``, the encoder's output before the prior's ``code_map`` against the draws
#: through its inverse ``code_unmap`` (the same for the normal and mixture priors; for
#: the uniform, normal draws against the pre-erf output, whose gradient does not fade
#: at the box's faces).
PRIOR_MATCH_SPACE = "encoder"
#: The prior-matching step's learning rate as a share of ``learning_rate_init``.
PRIOR_MATCH_LR_FACTOR = 1.0
#: Prior-matching steps per sub-batch (each on fresh draws and directions).
PRIOR_MATCH_STEPS = 1
#: Centre the codes after training (:meth:`AdversarialAutoencoder.calibrate`): the
#: encoder's output minus ``code_shift``, the gap between the training rows' and the
#: prior's winsorized means before the code map (the decoder still gets what it was
#: trained on). Training leaves single dimensions up to 0.25 prior sd off, KS near 0.10;
#: centred, the digits' worst KS is 0.051 (``benchmarks/results/aae/README.md``).
CENTRE_CODES = True
#: Share of rows each winsorized mean of the centring cuts off each tail, per dimension.
CENTRE_WINSOR = 0.01
#: Prior draws the centring estimates the prior's mean from (fixed seed).
CENTRE_DRAWS = 65_536

#: Per prior (its class name): the ``PRIOR_MATCH_*`` constants that differ from the
#: module's for it (the normal prior, the default, takes the module's). The uniform and
#: the mixture take a faster step (``benchmarks/results/aae/README.md``: the mixture's
#: KS 0.122 -> 0.111 on the digits and 0.130 -> 0.107 on breast cancer, its mean on
#: the digits 0.32 -> 0.25 prior sd; the uniform's family on breast cancer met).
PRIOR_MATCH_BY_PRIOR = {
    "UniformPrior": {"PRIOR_MATCH_LR_FACTOR": 2.0},
    "MixturePrior": {"PRIOR_MATCH_LR_FACTOR": 1.5},
}


class AdversarialAutoencoder(DetectorModel):
    """Encoder, decoder, code discriminator and prior, trained in two phases per batch.

    1. reconstruction: encoder and decoder take one step on the trimmed squared error;
    2. regularization, on sub-batches of ``ADVERSARIAL_BATCH`` rows: the discriminator
       takes one step telling prior draws (label 0.9, with an R1 penalty of weight
       ``GRADIENT_PENALTY`` on them) from codes (label 0), then the encoder one step
       (learning rate ``GENERATOR_LR_FACTOR`` times the discriminator's) making its
       codes pass for prior draws (label 1), then (``PRIOR_MATCH_WEIGHT > 0``, not
       conditional) the encoder ``PRIOR_MATCH_STEPS`` prior-matching steps on its own Adam
       (``PRIOR_MATCH_LR_FACTOR`` times ``learning_rate_init``; these constants per
       prior: ``PRIOR_MATCH_BY_PRIOR``): the sliced Wasserstein distance
       (:func:`~aedetect.losses.sliced_wasserstein`) between the sub-batch's codes
       and the quantiles of ``PRIOR_MATCH_DRAWS`` times as many prior draws, along the
       coordinate axes (the marginals) and ``PRIOR_MATCH_DIRECTIONS`` random unit
       directions (the joint, e.g. the mixture's shares), each direction's term
       divided by the prior's variance along it (``PRIOR_MATCH_SCALED``), compared
       before the prior's ``code_map`` (``PRIOR_MATCH_SPACE``: for the uniform prior,
       the encoder's output against normal draws). Draws and directions come from the
       fit's generator. All three steps see the codes the encoder gives in eval mode,
       i.e. what :meth:`encode` (``transform``) returns before the centring. The game
       alone leaves codes off the prior (KS up to 0.34 per dimension); the step brings
       them near it (``benchmarks/results/aae/prior_fit.md``).

    After training, :meth:`calibrate` centres the codes (``CENTRE_CODES``):
    :meth:`encode` subtracts ``code_shift`` from the encoder's output before the code
    map and :meth:`decode` undoes it, so the decoder sees what it was trained on
    (training and scoring reconstruct through :meth:`_trained_code`).

    The training ``loss`` (what the stopping rule watches) is ``reconstruction +
    ADVANTAGE_WEIGHT * discriminator_advantage`` (the reconstruction at the default
    weight 0); the validation loss is the same per held-out row, its code against a
    fixed bank of prior draws (``prior_bank``). With ``n_classes > 0``
    the decoder and the discriminator also see the one-hot class
    (:class:`~aedetect.networks.LabelConditioned`); scoring then reconstructs each row
    with every class and keeps the best. ``benchmarks/aae_prior_fit.py`` measures
    each of these choices (``benchmarks/results/aae/``).

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
        self.register_buffer("code_shift", torch.zeros(self.latent_dim))
        bank = prior.sample(N_BANK, generator=torch.Generator().manual_seed(0))
        self.register_buffer("prior_bank", bank, persistent=False)

    @property
    def inference_copies(self):
        return max(self.n_classes, 1)  # one decoder pass per class

    @property
    def _matching(self):
        """Whether the regularization phase takes the prior-matching step:
        ``PRIOR_MATCH_WEIGHT > 0`` and not conditional (there the discriminator already
        judges every class's codes against the prior; the step, blind to the class,
        measured worse samples: 92.5 % of the worst class read as requested on seed 1
        instead of 98 %, and the code told the class 13 % of the time, not 8 %)."""
        return bool(PRIOR_MATCH_WEIGHT) and not self.n_classes

    def _match_option(self, name):
        """The constant ``name`` (``PRIOR_MATCH_*``) for this model's prior:
        ``PRIOR_MATCH_BY_PRIOR``'s entry for the prior's class, else the module's."""
        own = PRIOR_MATCH_BY_PRIOR.get(type(self.prior).__name__, {})
        if name in own:
            return own[name]
        return {"PRIOR_MATCH_DIRECTIONS": PRIOR_MATCH_DIRECTIONS,  # globals(): not traceable
                "PRIOR_MATCH_DRAWS": PRIOR_MATCH_DRAWS,
                "PRIOR_MATCH_SPACE": PRIOR_MATCH_SPACE,
                "PRIOR_MATCH_LR_FACTOR": PRIOR_MATCH_LR_FACTOR,
                "PRIOR_MATCH_STEPS": PRIOR_MATCH_STEPS}[name]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # files saved before the centring have no code_shift: uncentred codes, as then
        state_dict.setdefault(prefix + "code_shift", torch.zeros_like(self.code_shift))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def decode(self, z, labels=None):
        """The decoder's output for codes ``z`` as :meth:`encode` returns them: the
        centring (``code_shift``) is undone before the decoder."""
        z = self.prior.code_map(code_unmap(self.prior, z) + self.code_shift)
        return self._decode_trained(z, labels)

    def _decode_trained(self, z, labels=None):
        """The decoder on codes as training sees them (:meth:`_trained_code`)."""
        return self.decoder(z, labels) if self.n_classes else self.decoder(z)

    def discriminate(self, z, labels=None):
        return self.discriminator(z, labels) if self.n_classes else self.discriminator(z)

    def encode(self, x):
        """The code (``transform``): the encoder's output, centred by ``code_shift``
        (set by :meth:`calibrate`), through the prior's ``code_map``."""
        return self.prior.code_map(self.encoder(x) - self.code_shift)

    def _trained_code(self, x):
        """The code training works on (the discriminator, the matching step and the
        decoder see it): the encoder's output through the code map, not centred."""
        return self.prior.code_map(self.encoder(x))

    def _codes(self, x):
        """``(code, decoder input)`` of rows ``x``: :meth:`encode`'s code and the one
        the decoder was trained on, from one pass of the encoder."""
        output = self.encoder(x)
        return self.prior.code_map(output - self.code_shift), self.prior.code_map(output)

    def reconstruct(self, x):
        return self.best_reconstruction(self._trained_code(x), x)[1]

    # -------------------------------------------------------------- training
    def configure_optimizers(self, learning_rate, weight_decay):
        """Adam for the autoencoder; Adam with GAN betas for the two adversarial steps.

        The adversarial two are torch's per-tensor Adam: the fused one is about 12% faster
        per eager step but rounds differently, and the prior-fit tests of the defaults
        (``tests/test_aae.py``, slow) sit close enough to their bounds to notice."""
        autoencoder = [*self.encoder.parameters(), *self.decoder.parameters()]
        adversarial = {"lr": self.adversarial_learning_rate, "betas": ADVERSARIAL_BETAS}
        matching = {}
        if self._matching:
            rate = self._match_option("PRIOR_MATCH_LR_FACTOR") * learning_rate
            matching["prior_match"] = torch.optim.Adam(self.encoder.parameters(), lr=rate)
        return {**matching,
            "autoencoder": adam(autoencoder, learning_rate, weight_decay),
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), **adversarial),
            "generator": torch.optim.Adam(self.encoder.parameters(), **{
                **adversarial, "lr": GENERATOR_LR_FACTOR * self.adversarial_learning_rate}),
        }

    def training_step(self, inputs, target, y, optimizers, generator):
        # 1. reconstruction: encoder and decoder on the squared error.
        codes = self._trained_code(inputs)
        errors = row_squared_error(self._decode_trained(codes, y), target)
        reconstruction = trimmed_mean(errors, self.trim_fraction)
        optimizer_step(optimizers["autoencoder"], reconstruction)
        # 2. regularization, in sub-batches of at most ADVERSARIAL_BATCH rows.
        parts = [self._regularization_step(inputs[index], None if y is None else y[index],
                                           optimizers, generator)
                 for index in torch.split(torch.arange(inputs.shape[0], device=inputs.device),
                                          ADVERSARIAL_BATCH or inputs.shape[0])]
        return _step_losses(reconstruction.detach(), parts, inputs.shape[0])

    def _match_draws(self, n_rows, generator, n_sets=None):
        """The draws of the prior-matching step of ``n_rows`` codes:
        ``PRIOR_MATCH_DRAWS * n_rows`` prior draws and the standard normal draws of the
        random directions (``n_sets`` sets of them, or one set without a leading
        dimension)."""
        draws = self.prior.sample(self._match_option("PRIOR_MATCH_DRAWS") * n_rows,
                                  generator=generator)
        shape = (self.latent_dim, self._match_option("PRIOR_MATCH_DIRECTIONS"))
        normal = torch.randn(*(() if n_sets is None else (n_sets,)), *shape,
                             generator=generator, device=draws.device)
        return draws, normal

    def _prior_match(self, inputs, draws, normal):
        """The sliced Wasserstein distance between the eval-mode codes of ``inputs``
        (before the code map: ``PRIOR_MATCH_SPACE``) and ``draws`` along the axes and
        the directions of ``normal``."""
        with module_mode(self.encoder, training=not EVAL_CODES):
            output = self.encoder(inputs)
        if self._match_option("PRIOR_MATCH_SPACE") == "encoder":
            return self._sliced_distance(output, draws, normal, unmap=True)
        return self._sliced_distance(self.prior.code_map(output), draws, normal)

    def _sliced_distance(self, codes, draws, normal, unmap=False):
        """:func:`~aedetect.losses.sliced_wasserstein` of ``codes`` and ``draws`` along
        the axes and the directions of ``normal`` (scaled: ``PRIOR_MATCH_SCALED``); with
        ``unmap`` the draws (and the bank) go through the prior's ``code_unmap``."""
        directions = slicing_directions(normal)
        draws = code_unmap(self.prior, draws.detach()) if unmap else draws.detach()
        variances = None
        if PRIOR_MATCH_SCALED:
            bank = code_unmap(self.prior, self.prior_bank) if unmap else self.prior_bank
            bank = bank - bank.mean(dim=0)
            variances = (bank @ directions).pow(2).mean(dim=0).clamp(min=1e-12)
        return sliced_wasserstein(codes, draws, directions, variances)

    def _regularization_step(self, inputs, y, optimizers, generator):
        """One discriminator step then one generator step on the codes ``transform``
        returns (the encoder in eval mode: no dropout, batch norm's running statistics),
        then (``PRIOR_MATCH_WEIGHT``) the encoder's prior-matching step."""
        with module_mode(self.encoder, training=not EVAL_CODES):
            codes = self._trained_code(inputs)
        # the discriminator: prior draws are real (smoothed label), codes are fake.
        draws = self.prior.sample(codes.shape[0], generator=generator)
        match = ([self._match_draws(codes.shape[0], generator)
                  for _ in range(self._match_option("PRIOR_MATCH_STEPS"))]
                 if self._matching else None)
        draws.requires_grad_(GRADIENT_PENALTY > 0)
        real = self.discriminate(draws, y)
        fake = self.discriminate(codes.detach(), y)
        d_loss = discriminator_loss(real, fake, REAL_LABEL)
        penalty = (GRADIENT_PENALTY / 2 * input_gradient_norm(real, draws)
                   if GRADIENT_PENALTY > 0 else 0.0)
        optimizer_step(optimizers["discriminator"], d_loss + penalty)
        # the generator: the encoder learns to make its codes pass for prior draws.
        g_loss = generator_loss(self.discriminate(codes, y))
        optimizer_step(optimizers["generator"], g_loss)
        distance = None
        for pair in match or ():  # the prior-matching steps, after that one
            distance = self._prior_match(inputs, *pair)
            optimizer_step(optimizers["prior_match"], PRIOR_MATCH_WEIGHT * distance)
            distance = distance.detach()
        return _regularization_stats(d_loss.detach(), g_loss.detach(), real.detach(),
                                     fake.detach(), inputs.shape[0], distance)

    # ------------------------------------------------------ compiled training
    def step_draws(self, n_rows, generator):
        """The draws of a compiled step (made eagerly: a prior may sample through
        ``torch.distributions``): the discriminator's prior draws, then with
        ``PRIOR_MATCH_WEIGHT`` those of the prior-matching steps and the normal draws of
        their random directions (one set per sub-batch)."""
        draws = self.prior.sample(n_rows, generator=generator)
        if not self._matching:
            return (draws,)
        n_sets = -(-n_rows // (ADVERSARIAL_BATCH or n_rows))
        return (draws, *(part for _ in range(self._match_option("PRIOR_MATCH_STEPS"))
                         for part in self._match_draws(n_rows, generator, n_sets)))

    def functional_step(self, inputs, target, y, noise, adam, draws):
        """:meth:`training_step` for ``torch_compile=True``: the same phases, each an
        Adam step of :func:`~aedetect.models.compiled.descend`; the draws of every
        sub-batch come from ``draws`` (:meth:`step_draws`) and the R1 penalty's input
        gradient from ``torch.func``."""

        def reconstruction():
            errors = row_squared_error(self._decode_trained(self._trained_code(inputs), y),
                                       target)
            loss = trimmed_mean(errors, self.trim_fraction)
            return loss, loss

        loss = descend(self, adam["autoencoder"], reconstruction)
        size, k = ADVERSARIAL_BATCH or inputs.shape[0], self._match_option("PRIOR_MATCH_DRAWS")
        parts = []
        for number, start in enumerate(range(0, inputs.shape[0], size)):
            rows = slice(start, start + size)
            match = ([(prior[k * start:k * (start + size)], normal[number])
                      for prior, normal in zip(draws[1::2], draws[2::2])]
                     if self._matching else None)
            parts.append(self._functional_regularization(
                inputs[rows], None if y is None else y[rows], draws[0][rows], adam, match))
        return _step_losses(loss, parts, inputs.shape[0])

    def _functional_regularization(self, inputs, y, draws, adam, match=None):
        """:meth:`_regularization_step` for :meth:`functional_step` (``match``: the
        prior-matching steps' draws, one pair per step, or ``None`` for no such step)."""

        def codes():
            with module_mode(self.encoder, training=not EVAL_CODES):
                return self._trained_code(inputs)

        fake_codes = codes()

        def discriminator():
            if GRADIENT_PENALTY > 0:
                real, gradient = input_gradient(lambda z: self.discriminate(z, y), draws)
                penalty = GRADIENT_PENALTY / 2 * gradient.pow(2).flatten(1).sum(dim=1).mean()
            else:
                real, penalty = self.discriminate(draws, y), 0.0
            fake = self.discriminate(fake_codes, y)
            loss = discriminator_loss(real, fake, REAL_LABEL)
            return loss + penalty, (loss, real, fake)

        d_loss, real, fake = descend(self, adam["discriminator"], discriminator)

        def generator():
            loss = generator_loss(self.discriminate(codes(), y))
            return loss, loss

        g_loss = descend(self, adam["generator"], generator)
        distance = None
        for pair in match or ():

            def prior_match(pair=pair):
                distance = self._prior_match(inputs, *pair)
                return PRIOR_MATCH_WEIGHT * distance, distance

            distance = descend(self, adam["prior_match"], prior_match)
        return _regularization_stats(d_loss, g_loss, real, fake, inputs.shape[0], distance)

    def validation_loss(self, x):
        """Per row: its reconstruction error plus ``ADVANTAGE_WEIGHT`` times its share of
        the discriminator's advantage against the fixed bank of prior draws (the
        reconstruction error alone at the default weight 0)."""
        codes = self._trained_code(x)
        error, _, labels = self.best_reconstruction(codes, x)
        if not ADVANTAGE_WEIGHT:
            return error
        bank = self.prior_bank
        bank_labels = torch.arange(bank.shape[0], device=bank.device) % max(self.n_classes, 1)
        advantage = discriminator_advantage(self.discriminate(bank, bank_labels),
                                            self.discriminate(codes, labels))
        return error + ADVANTAGE_WEIGHT * advantage

    # --------------------------------------------------------------- scoring
    def best_reconstruction(self, codes, x):
        """Per-row squared error, reconstruction and class index (``None`` unless
        conditional, where each row takes the class that reconstructs it best), from
        the decoder inputs ``codes`` (:meth:`_trained_code`)."""
        if not self.n_classes:
            reconstruction = self._decode_trained(codes)
            return row_squared_error(reconstruction, x), reconstruction, None
        best = None
        for k in range(self.n_classes):
            labels = torch.full((codes.shape[0],), k, dtype=torch.long, device=codes.device)
            reconstruction = self._decode_trained(codes, labels)
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
        if score_type == "latent":
            return self.prior.latent_score(self.encode(x))
        codes, trained = self._codes(x)
        error = self.best_reconstruction(trained, x)[0]
        if score_type == "reconstruction":
            return -error
        deviation = self.n_features * error / self.reconstruction_variance
        deviation = deviation - self.latent_dim * self.prior.latent_score(codes)
        return -deviation / (self.n_features + self.latent_dim)

    def calibrate(self, apply, rng, score_type):
        """``code_shift`` (``CENTRE_CODES``): per dimension, the winsorized mean of the
        encoder's output over the training rows (at most ``MAX_REFERENCE_CODES`` of
        them, drawn with ``rng``) minus that of the prior's draws before the code map;
        ``reconstruction_variance``: the median of the training rows' mean squared
        errors (a median, so an extreme training row cannot inflate it)."""
        if CENTRE_CODES:
            outputs = apply(self.encoder, reference_index(apply.n_rows, rng))
            device = self.code_shift.device
            draws = self.prior.sample(CENTRE_DRAWS, generator=torch.Generator(
                device=device).manual_seed(0)).to(device)  # fixed seed: the same every fit
            self.code_shift = (winsorized_mean(outputs, CENTRE_WINSOR)
                               - winsorized_mean(code_unmap(self.prior, draws), CENTRE_WINSOR))
        errors = apply(lambda x: self.best_reconstruction(self._trained_code(x), x)[0])
        errors = errors[torch.isfinite(errors)].double()
        typical = errors.median() if errors.numel() else torch.tensor(1.0)
        self.reconstruction_variance = typical.clamp(min=1e-12).float()

    def feature_terms(self, x, score_type="combined"):
        """Minus the score per feature (squared errors, weighted as in ``score``) and,
        last, the code's part (minus the weighted latent score: below 0 for a code more
        typical than an average prior draw)."""
        self.check_score_type(score_type)
        codes, trained = self._codes(x)
        latent = self.prior.latent_score(codes).unsqueeze(1)
        if score_type == "latent":
            return torch.cat([x.new_zeros(x.shape[0], x[0].numel()), -latent], dim=1)
        reconstruction = self.best_reconstruction(trained, x)[1]
        errors = (reconstruction - x).pow(2).flatten(1) / x[0].numel()
        if score_type == "reconstruction":
            return torch.cat([errors, torch.zeros_like(latent)], dim=1)
        total = self.n_features + self.latent_dim
        return torch.cat([errors * (self.n_features / total) / self.reconstruction_variance,
                          -latent * (self.latent_dim / total)], dim=1)


def _regularization_stats(d_loss, g_loss, real, fake, rows, prior_match=None):
    """The losses of one regularization step (detached tensors) and its row count;
    ``prior_match``: the sliced distance of its prior-matching step (``None``: none)."""
    accuracy = 0.5 * ((real > 0).float().mean() + (fake < 0).float().mean())
    advantage = 2 * math.log(2) - F.softplus(-real).mean() - F.softplus(fake).mean()
    stats = {"discriminator": d_loss, "generator": g_loss,
             "discriminator_accuracy": accuracy, "discriminator_advantage": advantage,
             "rows": rows}
    if prior_match is not None:
        stats["prior_match"] = prior_match
    return stats


def _step_losses(reconstruction, parts, n_rows):
    """The losses of a step: its reconstruction and each regularization loss averaged
    over the sub-batches' rows; ``loss`` adds ``ADVANTAGE_WEIGHT`` times the advantage."""
    stats = {name: sum(part[name] * part["rows"] for part in parts) / n_rows
             for name in parts[0] if name != "rows"}
    return {"loss": reconstruction + ADVANTAGE_WEIGHT * stats["discriminator_advantage"],
            "reconstruction": reconstruction, **stats}
