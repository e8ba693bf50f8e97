"""A training row with a value beyond ``TRAINING_CLIP`` robust standard deviations is
left out of training (one such value would pull every batch-norm statistic and weight
its batch sees) but still scored; when such rows are half or more, training clips them
instead."""

import warnings

import numpy as np
import pytest
from torch import nn

from aedetect import AAEDetector, AEDetector, Callback, VAEDetector
from aedetect._fitting import TRAINING_CLIP, training_subset


class SeenRows(Callback):
    """The largest absolute input value and the number of rows the training steps saw."""

    def __init__(self):
        self.rows, self.largest = 0, 0.0

    def on_train_begin(self, trainer):
        step = trainer.model.training_step

        def counting(inputs, target, *args):
            self.rows += inputs.shape[0]
            self.largest = max(self.largest, float(inputs.abs().max()))
            return step(inputs, target, *args)

        trainer.model.training_step = counting

    def on_train_end(self, trainer, error):
        del trainer.model.training_step


def _rows(n=300, seed=0):
    rng = np.random.RandomState(seed)
    return np.tanh(rng.normal(size=(n, 3)) @ rng.normal(size=(3, 8))) + 0.05 * rng.normal(
        size=(n, 8))


@pytest.mark.parametrize("cls", [AEDetector, VAEDetector, AAEDetector])
def test_an_extreme_row_is_scored_but_not_trained_on(cls):
    X = _rows()
    X[17, 3] = 1e6
    seen = SeenRows()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        detector = cls(max_iter=3, early_stopping=False, random_state=0,
                       callbacks=[seen]).fit(X)
    assert seen.rows == 3 * (X.shape[0] - 1)
    assert seen.largest < 50.0
    # batch norm never saw it: the first encoder layer's variance is an ordinary one
    norm = next(module for name, module in detector.module_.named_modules()
                if isinstance(module, nn.BatchNorm1d) and name.startswith("encoder"))
    assert float(norm.running_var.max()) < 10.0
    # it is scored, and it is the least normal training row
    scores = detector.score_samples(X)
    assert np.argmin(scores) == 17
    assert detector.predict(X[17:18])[0] == -1


def test_rows_in_range_train_as_they_are():
    X = _rows()
    X[17, 3] = 50.0  # far out, but representable: trained on like any row
    seen = SeenRows()
    AEDetector(max_iter=2, early_stopping=False, random_state=0, callbacks=[seen]).fit(X)
    assert seen.rows == 2 * X.shape[0]
    assert seen.largest > 20.0  # scaled units


def _largest(n, extreme):
    largest = np.ones(n, dtype=np.float32)
    largest[extreme] = 10 * TRAINING_CLIP
    return largest


def test_validation_rows_beyond_the_clip_are_left_out_too():
    clip, train, val = training_subset(_largest(10, [1, 8]), np.arange(0, 6), np.arange(6, 10))
    assert clip is None
    np.testing.assert_array_equal(train, [0, 2, 3, 4, 5])
    np.testing.assert_array_equal(val, [6, 7, 9])


def test_when_most_rows_are_extreme_they_are_clipped_instead():
    clip, train, val = training_subset(_largest(10, np.arange(6)), np.arange(10), None)
    assert clip == TRAINING_CLIP and val is None
    np.testing.assert_array_equal(train, np.arange(10))


def test_no_extreme_row_means_every_row():
    train, val = np.arange(3), np.array([3])
    clip, kept_train, kept_val = training_subset(np.ones(4), train, val)
    assert clip is None and kept_train is train and kept_val is val
