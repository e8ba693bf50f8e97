"""Training rows that do not fit in memory twice: a fit whose rows take more than
``STREAMED_BYTES`` (a ``numpy.memmap`` of a file bigger than memory, say) never holds a
scaled copy of them. Scaling statistics come from one pass over the rows (the robust
rule's quantiles from at most ``SCALING_SAMPLE_ROWS`` rows drawn at random); training
reads, scales and moves ``TRAINING_CHUNK_BYTES`` of rows at a time, the chunks of an
epoch in a random order and the rows of a chunk shuffled; calibration and the training
scores run chunk by chunk as scoring always does.

Smaller fits hold the scaled rows on the device and shuffle all of them every epoch
(``aedetect._fitting``); both paths give a detector of the same kind.
"""

import numpy as np
import torch

from . import _data

#: Training rows above this many bytes are streamed instead of copied (scaled) whole.
STREAMED_BYTES = 256 * 2**20
#: Rows per training chunk: this many bytes of float32 inputs.
TRAINING_CHUNK_BYTES = 64 * 2**20
#: The robust rule's median and quartiles of a streamed fit come from at most this
#: many rows drawn at random (their sampling error is about 0.3% of a standard
#: deviation); the other rules' statistics are exact.
SCALING_SAMPLE_ROWS = 100_000


def is_streamed(rows):
    return rows.nbytes > STREAMED_BYTES


def fit_scaling(rows, rule, seed):
    """The ``Scaling`` of ``rows`` under ``rule``, in passes over chunks of rows."""
    n_rows, n_features = rows.shape
    if rule == "robust":
        sample = np.sort(np.random.default_rng(seed).choice(
            n_rows, size=min(n_rows, SCALING_SAMPLE_ROWS), replace=False))
        return _data.Scaling.fit(np.asarray(rows[sample]), rule)
    if rule is None:
        return _data.Scaling(np.zeros(n_features), np.ones(n_features))
    low, high = np.full(n_features, np.inf), np.full(n_features, -np.inf)
    total, squares = np.zeros(n_features), np.zeros(n_features)
    for start, stop in _blocks(n_rows, _rows_per_chunk(n_features)):
        block = np.asarray(rows[start:stop], dtype=np.float64)
        low, high = np.minimum(low, block.min(axis=0)), np.maximum(high, block.max(axis=0))
        total += block.sum(axis=0)
        squares += np.square(block).sum(axis=0)
    if rule == "standard":
        mean = total / n_rows
        center, scale = mean, np.sqrt(np.maximum(squares / n_rows - mean**2, 0.0))
    elif rule == "minmax":
        center, scale = low, high - low
    elif rule == "global_minmax":
        center = np.full(n_features, low.min())
        scale = np.full(n_features, high.max() - low.min())
    else:
        raise ValueError(f"Unknown scaling rule {rule!r}; expected one of "
                         f"{_data.SCALING_RULES}.")
    scale = np.asarray(scale, dtype=np.float64)
    scale[~(scale > 1e-12)] = 1.0
    return _data.Scaling(center, scale)


def largest_scaled(rows, scaling, input_shape, feature_names=None):
    """The largest absolute scaled value of each row (float32 overflow raises, naming
    the value, as ``Scaling.transform`` does)."""
    out = np.empty(rows.shape[0], dtype=np.float32)
    for start, stop in _blocks(rows.shape[0], _rows_per_chunk(rows.shape[1])):
        scaled = scaling.transform(rows[start:stop], input_shape, start, feature_names)
        out[start:stop] = np.abs(scaled.reshape(stop - start, -1)).max(axis=1)
    return out


class StreamedRows:
    """The training rows ``index`` of ``rows``, scaled chunk by chunk on the way to the
    device; :meth:`epoch` gives one epoch's chunks for the trainer.

    ``clip`` bounds the scaled values (``None``: as they are); ``labels`` are the
    targets of all rows (or ``None``)."""

    def __init__(self, rows, index, scaling, input_shape, device, clip=None, labels=None):
        self.rows, self.index, self.scaling = rows, np.asarray(index), scaling
        self.input_shape, self.device, self.clip, self.labels = input_shape, device, clip, labels
        self.chunk = _rows_per_chunk(int(np.prod(input_shape)))
        self.n_rows = self.index.size

    @property
    def shape(self):
        return (self.n_rows, *self.input_shape)

    def load(self, index):
        """Scaled float32 tensor of the rows ``index`` (sorted), on the device."""
        scaled = self.scaling.transform(np.asarray(self.rows[index]), self.input_shape)
        if self.clip is not None:
            np.clip(scaled, -self.clip, self.clip, out=scaled)
        return torch.from_numpy(np.ascontiguousarray(scaled)).to(self.device)

    def epoch(self, generator):
        """``(inputs, labels)`` per chunk: the chunks (consecutive training rows) in a
        random order drawn from ``generator``."""
        blocks = list(_blocks(self.n_rows, self.chunk))
        order = torch.randperm(len(blocks), generator=generator, device=generator.device)
        for position in order.tolist():
            start, stop = blocks[position]
            index = self.index[start:stop]
            labels = None if self.labels is None else torch.as_tensor(
                self.labels[index], device=self.device)
            yield self.load(index), labels

    def sample(self):
        """At most ``SCALING_SAMPLE_ROWS`` of the rows, evenly spaced, as one tensor (the
        ranges of the denoising noise)."""
        step = max(1, -(-self.n_rows // SCALING_SAMPLE_ROWS))
        return self.load(self.index[::step])

    def tensor(self):
        """All the rows as one tensor (the validation rows), read and scaled chunk by
        chunk (no float64 copy of them all)."""
        return torch.cat([self.load(self.index[start:stop])
                          for start, stop in _blocks(self.n_rows, self.chunk)])


class TrainingRows:
    """``apply(function, index=None)`` of a model's ``calibrate``: ``function`` of the
    scaled training rows (or the rows ``index``) on the device, chunk by chunk.
    ``load(index)`` gives the scaled rows ``index`` (an array or a slice)."""

    def __init__(self, load, n_rows, device, chunk):
        self.load, self.n_rows, self.device, self.chunk = load, n_rows, device, chunk

    def __call__(self, function, index=None):
        n_rows = self.n_rows if index is None else len(index)

        def load(start, stop):
            rows = slice(start, stop) if index is None else index[start:stop]
            return torch.from_numpy(np.ascontiguousarray(self.load(rows))).to(self.device)

        return _data.map_chunks(function, n_rows, self.chunk, load)


def _rows_per_chunk(n_values):
    return max(1, TRAINING_CHUNK_BYTES // (4 * n_values))


def _blocks(n_rows, chunk):
    return [(start, min(start + chunk, n_rows)) for start in range(0, n_rows, chunk)]
