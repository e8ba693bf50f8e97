"""Pure PyTorch building blocks: encoders, decoders and heads.

Nothing here trains, validates input or moves data between devices. The detectors
(``ae.py``, ``vae.py``, ``aae.py``) assemble these blocks through
:func:`build_encoder` and :func:`build_decoder`, so a new architecture added here is
available to every detector.
"""

import math

import torch
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "selu": nn.SELU,
}

ARCHITECTURES = ("dense", "conv")


class Dropout(nn.Module):
    """Dropout whose masks come from ``generator`` when one is set (the trainer sets the
    fit's own generator for the duration of training), else from torch's global one.

    The mask is drawn as PyTorch's CPU dropout draws it (``bernoulli_(1 - p)``, divided
    by ``1 - p``), so a seeded CPU fit draws the same masks either way. ``generator``
    may also be a :class:`StepNoise` (inside a compiled training step), which draws the
    mask (:meth:`StepNoise.keep_mask`). Identity in eval mode.
    """

    def __init__(self, p=0.5):
        super().__init__()
        self.p = float(p)
        self.generator = None

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        if self.generator is None:
            return nn.functional.dropout(x, self.p, training=True)
        keep = 1.0 - self.p
        if isinstance(self.generator, torch.Generator):
            mask = torch.empty_like(x).bernoulli_(keep, generator=self.generator).div_(keep)
        else:
            mask = self.generator.keep_mask(x.shape, keep, x).to(x.dtype) / keep
        return x * mask

    def extra_repr(self):
        return f"p={self.p}"


def set_dropout_generator(module, generator):
    """Point every :class:`Dropout` in ``module`` at ``generator`` (a ``torch.Generator``
    or a :class:`StepNoise`; ``None`` to reset)."""
    for layer in module.modules():
        if isinstance(layer, Dropout):
            layer.generator = generator


def normal(shape, like, generator):
    """Standard normal draws of ``shape`` on ``like``'s device and in its dtype, from
    ``generator``: a ``torch.Generator`` (``None``: torch's global one) or a
    :class:`StepNoise`."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)
    return generator.normal(shape, like).to(like.dtype)


class StepNoise:
    """The random draws of one training step, for a step that ``torch.compile`` compiles:
    a compiled graph cannot draw from a ``torch.Generator``, so the draws are made
    before the step and handed out in the order the step asks for them.

    Two kinds: :meth:`keep_mask` (dropout's Bernoulli masks, from random 64-bit words,
    four 16-bit draws each: half the generator's work of one float per draw, ``keep``
    rounded to a multiple of 2**-16) and :meth:`normal` (float32 standard normals).
    ``StepNoise(generator=g)`` draws each request from ``g`` as it comes and counts, in
    ``sizes``, what was asked for; ``StepNoise(pools=StepNoise.draw_pools(sizes, g,
    device))`` slices draws made at once for a step that asks for the same ones (a
    compiled step of the shapes whose ``sizes`` were counted). From the same generator
    state the two give the same words when a step asks for words only, and the same
    normals when it asks for normals once (torch draws short runs of normals otherwise).
    """

    def __init__(self, generator=None, pools=None):
        self.generator = generator
        self.pools = pools
        self.sizes = {"words": 0, "normal": 0}

    @staticmethod
    def draw_pools(sizes, generator, device):
        """``{'words': ..., 'normal': ...}``: ``sizes`` random int64 words and normals."""
        words = torch.empty(sizes["words"], dtype=torch.int64, device=device)
        return {"words": words.random_(-2**63, None, generator=generator),
                "normal": torch.randn(sizes["normal"], generator=generator, device=device)}

    def keep_mask(self, shape, keep, like):
        """A bool mask of ``shape``, each value True with probability ``keep``."""
        shape = tuple(shape)
        n = math.prod(shape)
        words = self._take("words", -(-n // 4), like)
        shifts = torch.arange(0, 64, 16, device=words.device).unsqueeze(1)
        fields = (words.unsqueeze(0) >> shifts) & 0xFFFF  # draw i: field i // m of word i % m
        return (fields.flatten()[:n] < round(keep * 65536)).view(shape)

    def normal(self, shape, like):
        shape = tuple(shape)
        return self._take("normal", math.prod(shape), like).view(shape)

    def _take(self, kind, n, like):
        start = self.sizes[kind]
        self.sizes[kind] = start + n
        if self.pools is None:
            return StepNoise.draw_pools({"words": 0, "normal": 0, kind: n}, self.generator,
                                        like.device)[kind]
        pool = self.pools[kind]
        if start + n > pool.shape[0]:
            raise RuntimeError(f"The training step asked for more random draws ({kind}) than "
                               f"the {pool.shape[0]} drawn for it.")
        return pool[start:start + n]


def dense_stack(sizes, activation="relu", dropout=0.0, batch_norm=False):
    """Linear layers ``sizes[0] -> sizes[1] -> ...`` each followed by an activation.

    With ``batch_norm`` a ``BatchNorm1d`` sits between the linear layer and the
    activation; with ``dropout > 0`` a ``Dropout`` follows the activation. In eval
    mode batch norm uses its running statistics, so a single row scores the same
    alone as in a batch.
    """
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers.append(nn.Linear(n_in, n_out, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(n_out))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(Dropout(dropout))
    return nn.Sequential(*layers)


class DenseEncoder(nn.Module):
    """Flatten the input, run a stack of hidden layers, end in a linear head.

    The head is linear (no activation) so the output can be a code, or the
    concatenated mean and log-variance of a Gaussian posterior.
    """

    def __init__(self, input_shape, out_dim, hidden_layer_sizes, activation="relu",
                 dropout=0.0, batch_norm=False):
        super().__init__()
        sizes = [math.prod(input_shape), *hidden_layer_sizes]
        self.body = dense_stack(sizes, activation, dropout, batch_norm)
        self.head = nn.Linear(sizes[-1], out_dim)

    def forward(self, x):
        return self.head(self.body(x.flatten(1)))


class DenseDecoder(nn.Module):
    """Map a code (optionally concatenated with a condition) back to ``output_shape``.

    ``output_activation`` is ``None`` (linear output: scaled tabular data, or logits)
    or ``"sigmoid"`` (data in [0, 1] such as pixels).
    """

    def __init__(self, in_dim, output_shape, hidden_layer_sizes, activation="relu",
                 dropout=0.0, batch_norm=False, output_activation=None):
        super().__init__()
        self.output_shape = tuple(output_shape)
        sizes = [in_dim, *hidden_layer_sizes]
        self.body = dense_stack(sizes, activation, dropout, batch_norm)
        self.head = nn.Linear(sizes[-1], math.prod(self.output_shape))
        self.output_activation = output_activation

    def forward(self, z):
        out = self.head(self.body(z)).view(-1, *self.output_shape)
        if self.output_activation == "sigmoid":
            out = torch.sigmoid(out)
        return out


def conv_feature_sizes(image_size, n_stages):
    """Spatial sizes ``[(H, W), ...]`` before and after each of ``n_stages`` poolings.

    Pooling halves each side rounding up (``ceil_mode``), so no pixel is dropped
    and a side never shrinks below 1: 28 -> 14 -> 7 -> 4, 8 -> 4 -> 2 -> 1 -> 1.
    """
    sizes = [tuple(image_size)]
    for _ in range(n_stages):
        sizes.append(tuple(-(-side // 2) for side in sizes[-1]))
    return sizes


def conv_stage(n_in, n_out, activation="relu", dropout=0.0, batch_norm=False):
    """A 3x3 convolution (same padding) followed by optional batch norm, the activation
    and optional dropout."""
    layers = [nn.Conv2d(n_in, n_out, kernel_size=3, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(n_out))
    layers.append(ACTIVATIONS[activation]())
    if dropout > 0:
        layers.append(Dropout(dropout))
    return layers


class ConvEncoder(nn.Module):
    """Convolution stages, each a 3x3 convolution, the activation and a 2x2 max-pooling,
    then dense layers ``hidden_layer_sizes`` and a linear head of size ``out_dim``.

    ``input_shape`` is ``(channels, height, width)``; stage ``i`` has
    ``conv_channels[i]`` channels. Any image size works: pooling rounds up (see
    :func:`conv_feature_sizes`).
    """

    def __init__(self, input_shape, out_dim, hidden_layer_sizes, conv_channels=(32, 64),
                 activation="relu", dropout=0.0, batch_norm=False):
        super().__init__()
        channels, *image_size = input_shape
        layers, n_in = [], channels
        for n_out in conv_channels:
            layers += conv_stage(n_in, n_out, activation, dropout, batch_norm)
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
            n_in = n_out
        self.features = nn.Sequential(*layers)
        smallest = conv_feature_sizes(image_size, len(conv_channels))[-1]
        sizes = [n_in * math.prod(smallest), *hidden_layer_sizes]
        self.body = dense_stack(sizes, activation, dropout, batch_norm)
        self.head = nn.Linear(sizes[-1], out_dim)

    def forward(self, x):
        return self.head(self.body(self.features(x).flatten(1)))


class ConvDecoder(nn.Module):
    """The mirror of :class:`ConvEncoder`: dense layers up to the smallest feature
    map, then per stage a nearest-neighbour upsampling to the exact size the encoder
    had there and a 3x3 convolution; the last convolution outputs the image channels.

    Upsampling to recorded sizes (not by a factor) undoes the rounded-up pooling
    exactly, so odd sides need no padding or cropping. ``output_activation`` is
    ``None`` (linear) or ``"sigmoid"`` (pixels in [0, 1]).
    """

    def __init__(self, in_dim, output_shape, hidden_layer_sizes, conv_channels=(32, 64),
                 activation="relu", dropout=0.0, batch_norm=False, output_activation=None):
        super().__init__()
        channels, *image_size = output_shape
        sizes = conv_feature_sizes(image_size, len(conv_channels))
        self.map_shape = (conv_channels[-1], *sizes[-1])
        dense_sizes = [in_dim, *hidden_layer_sizes]
        self.body = dense_stack(dense_sizes, activation, dropout, batch_norm)
        self.head = nn.Sequential(nn.Linear(dense_sizes[-1], math.prod(self.map_shape)),
                                  ACTIVATIONS[activation]())
        n_stages = len(conv_channels)
        outputs = [*conv_channels[-2::-1], channels]
        layers = []
        for i, (n_in, n_out) in enumerate(zip(conv_channels[::-1], outputs)):
            layers.append(nn.Upsample(size=sizes[n_stages - 1 - i], mode="nearest"))
            if i < n_stages - 1:
                layers += conv_stage(n_in, n_out, activation, dropout, batch_norm)
            else:
                layers.append(nn.Conv2d(n_in, n_out, kernel_size=3, padding=1))
        self.features = nn.Sequential(*layers)
        self.output_activation = output_activation

    def forward(self, z):
        out = self.head(self.body(z)).view(-1, *self.map_shape)
        out = self.features(out)
        if self.output_activation == "sigmoid":
            out = torch.sigmoid(out)
        return out


def build_encoder(architecture, input_shape, out_dim, hidden_layer_sizes, conv_channels=(32, 64),
                  **options):
    """Encoder for ``architecture`` mapping inputs of ``input_shape`` to ``out_dim``.

    ``conv_channels`` is used by ``architecture='conv'`` only, whose ``input_shape``
    is ``(channels, height, width)``.
    """
    if architecture == "dense":
        return DenseEncoder(input_shape, out_dim, hidden_layer_sizes, **options)
    if architecture == "conv":
        return ConvEncoder(input_shape, out_dim, hidden_layer_sizes, conv_channels, **options)
    raise ValueError(f"Unknown architecture {architecture!r}; expected one of {ARCHITECTURES}.")


def build_decoder(architecture, in_dim, output_shape, hidden_layer_sizes,
                  output_activation=None, conv_channels=(32, 64), **options):
    """Decoder for ``architecture`` mapping ``in_dim`` codes to ``output_shape``.

    ``hidden_layer_sizes`` and ``conv_channels`` are given in encoder order; the
    decoder mirrors them.
    """
    mirrored = list(hidden_layer_sizes)[::-1]
    if architecture == "dense":
        return DenseDecoder(in_dim, output_shape, mirrored,
                            output_activation=output_activation, **options)
    if architecture == "conv":
        return ConvDecoder(in_dim, output_shape, mirrored, tuple(conv_channels),
                           output_activation=output_activation, **options)
    raise ValueError(f"Unknown architecture {architecture!r}; expected one of {ARCHITECTURES}.")


class Discriminator(nn.Module):
    """An MLP classifying codes: one logit per row (positive = "drawn from the prior").

    No batch normalization: the discriminator sees prior draws and codes in separate
    batches, and batch statistics would let it tell them apart by the batch alone.
    ``leaky_relu`` is the usual activation of GAN discriminators (gradients flow for
    every input).
    """

    def __init__(self, in_dim, hidden_layer_sizes=(64, 64), activation="leaky_relu",
                 dropout=0.0):
        super().__init__()
        sizes = [in_dim, *hidden_layer_sizes]
        self.body = dense_stack(sizes, activation, dropout, batch_norm=False)
        self.head = nn.Linear(sizes[-1], 1)

    def forward(self, z):
        return self.head(self.body(z)).squeeze(-1)


class LabelConditioned(nn.Module):
    """Feed a class to a module: ``module(concat(z, one_hot(labels)))``.

    Conditions a decoder (code + class -> output) or a discriminator (code + class ->
    logit). ``module`` must accept inputs of size ``in_dim + n_classes`` (build it with
    that input size); ``labels`` are integer class indices in ``[0, n_classes)``.
    """

    def __init__(self, module, n_classes):
        super().__init__()
        self.module = module
        self.n_classes = int(n_classes)

    def forward(self, z, labels):
        one_hot = nn.functional.one_hot(labels.long(), self.n_classes).to(z.dtype)
        return self.module(torch.cat([z, one_hot], dim=1))
