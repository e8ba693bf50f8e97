"""``early_stopping='entropy'``: the label-free choice of the epoch (EntropyStop)."""

import copy

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_wine
from sklearn.metrics import roc_auc_score
from sklearn.utils._param_validation import InvalidParameterError

from aedetect import AAEDetector, AEDetector, Callback, VAEDetector
from aedetect._training import EntropyStopping, score_entropy


@pytest.fixture(scope="module")
def wine():
    """ADBench's wine built from scikit-learn's: classes 1 and 2 are the normal rows,
    10 rows of class 0 the outliers (129 rows)."""
    X, classes = load_wine(return_X_y=True)
    outliers = np.random.RandomState(0).choice(np.flatnonzero(classes == 0), 10,
                                               replace=False)
    rows = np.r_[np.flatnonzero(classes != 0), outliers]
    return X[rows], (classes[rows] == 0).astype(int)


class Weights(Callback):
    """A copy of the weights after each epoch (after the stopping rule has run)."""

    def __init__(self):
        self.states = []

    def on_epoch_end(self, trainer, record):
        self.states.append(copy.deepcopy(trainer.model.state_dict()))


def test_score_entropy_is_the_entropy_of_the_shifted_normalized_losses():
    n = 50
    # one row carries all the loss above the smallest: no uncertainty
    assert score_entropy([1.0] * (n - 1) + [3.0]) == 0.0
    # the loss spread evenly over all rows but the smallest one: log(n - 1)
    assert score_entropy([0.0] + [2.0] * (n - 1)) == pytest.approx(np.log(n - 1))
    losses = np.random.RandomState(0).gamma(2.0, size=n)
    p = (losses - losses.min()) / (losses - losses.min()).sum()
    p = p[p > 0]
    assert score_entropy(losses) == pytest.approx(-(p * np.log(p)).sum())
    # in the losses' own units: shifting or scaling them changes nothing
    assert score_entropy(3.0 * losses - 7.0) == pytest.approx(score_entropy(losses))
    # no row stands out: the largest entropy, not the smallest
    assert score_entropy(np.full(n, 2.5)) == pytest.approx(np.log(n))


def test_the_callback_keeps_the_lowest_entropy_epoch_and_stops_after_patience():
    class Model(torch.nn.Linear):
        def validation_loss(self, x):
            return x[:, 0] * self.weight[0, 0]

    rows = torch.tensor([[1.0], [1.0], [1.0], [4.0]])
    model = Model(1, 1)
    trainer = type("T", (), {"model": model, "stop_training": False})()
    stopping = EntropyStopping(rows, chunk_rows=2, tol=1e-3, patience=2)
    stopping.on_train_begin(trainer)
    # the weight scales every loss alike, so the entropy stays; the epochs differ by
    # which rows carry the loss: set the rows, not the weight
    plans = [[1, 2, 3, 4], [1, 1, 1, 4], [1, 2, 2, 4], [1, 2, 3, 3]]
    for epoch, plan in enumerate(plans, start=1):
        rows[:, 0] = torch.tensor(plan, dtype=torch.float32)
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        record = {"epoch": epoch, "loss": 1.0}
        stopping.on_epoch_end(trainer, record)
        assert record["score_entropy"] == pytest.approx(score_entropy(plan))
        assert trainer.stop_training == (epoch == 4)
    assert stopping.best_epoch == 2 and stopping.best_loss == 0.0
    stopping.on_train_end(trainer, None)
    assert model.weight.item() == 2.0  # the weights of epoch 2 are back


def test_the_detector_keeps_the_weights_of_its_lowest_entropy_epoch(wine):
    X, _ = wine
    weights = Weights()
    detector = AEDetector(early_stopping="entropy", tol=0.0, random_state=1,
                          callbacks=[weights]).fit(X)
    entropies = [record["score_entropy"] for record in detector.history_]
    assert detector.best_epoch_ == 1 + int(np.argmin(entropies)) < detector.n_iter_
    assert detector.best_loss_ == min(entropies)
    assert detector.n_iter_ == detector.best_epoch_ + detector.n_iter_no_change
    state = detector.module_.state_dict()
    best, last = weights.states[detector.best_epoch_ - 1], weights.states[-1]
    assert all(torch.equal(state[key], best[key]) for key in best)
    assert not all(torch.equal(best[key], last[key]) for key in best)
    # no rows held out: every row trains, no val_loss
    assert "val_loss" not in detector.history_[-1]
    # the record's entropy is that of the kept weights' losses of the training rows
    model = detector.module_
    x = torch.as_tensor(((X - detector.center_) / detector.scale_).astype(np.float32))
    with torch.no_grad():
        losses = model.validation_loss(x).double().numpy()
    assert score_entropy(losses) == pytest.approx(detector.best_loss_, rel=1e-5)


def test_on_small_data_it_stops_before_the_outliers_are_learned(wine):
    """Issue 20: on wine (129 rows) the plain fit learns to reconstruct the 10 outliers
    (AUC-ROC 0.31-0.76 over seeds); the lowest-entropy epoch still tells them apart."""
    X, y = wine
    aucs, epochs = [], []
    for seed in range(3):
        plain = AEDetector(random_state=seed).fit(X)
        kept = AEDetector(early_stopping="entropy", random_state=seed).fit(X)
        aucs.append(roc_auc_score(y, -kept.score_samples(X)))
        epochs.append((kept.best_epoch_, plain.n_iter_))
    assert min(aucs) > 0.65 and np.mean(aucs) > 0.75, aucs
    assert all(best < ran for best, ran in epochs), epochs


@pytest.mark.parametrize("cls", [VAEDetector, AAEDetector])
def test_every_detector_takes_the_rule(wine, cls):
    X, y = wine
    detector = cls(early_stopping="entropy", max_iter=15, n_iter_no_change=5, tol=0.0,
                   random_state=0).fit(X)
    entropies = [record["score_entropy"] for record in detector.history_]
    assert len(entropies) == detector.n_iter_
    assert detector.best_epoch_ == 1 + int(np.argmin(entropies))
    assert roc_auc_score(y, -detector.score_samples(X)) > 0.6


def test_partial_fit_trains_one_epoch_without_the_rule(wine):
    X, _ = wine
    detector = AEDetector(early_stopping="entropy", random_state=0)
    detector.partial_fit(X).partial_fit(X)
    assert detector.n_iter_ == 2
    assert all("score_entropy" not in record for record in detector.history_)


def test_the_parameter_is_checked_and_cloned(wine):
    X, _ = wine
    detector = AEDetector(early_stopping="entropy", max_iter=3)
    assert clone(detector).get_params()["early_stopping"] == "entropy"
    with pytest.raises(InvalidParameterError, match="early_stopping.*'entropy'"):
        AEDetector(early_stopping="entrop").fit(X)
    # two rows are enough: no rows are held out
    AEDetector(early_stopping="entropy", max_iter=2, batch_norm=False).fit(X[:2])
    with pytest.raises(ValueError, match="early_stopping=True needs at least 3 samples"):
        AEDetector(early_stopping=True, max_iter=2, batch_norm=False).fit(X[:2])


def test_the_loss_plot_draws_the_entropy_on_its_own_axis(wine):
    import matplotlib

    matplotlib.use("Agg")
    from aedetect.plots import plot_loss_curves

    X, _ = wine
    detector = AEDetector(early_stopping="entropy", max_iter=6, random_state=0).fit(X)
    fig = plot_loss_curves(detector.history_, best_epoch=detector.best_epoch_)
    left, right = fig.axes
    assert [line.get_label() for line in left.get_lines()] == [
        "loss", f"best epoch ({detector.best_epoch_})"]
    np.testing.assert_array_equal(right.get_lines()[0].get_ydata(),
                                  [record["score_entropy"] for record in detector.history_])
    assert right.get_ylabel() == "score_entropy (nats)"
    assert [text.get_text() for text in left.get_legend().get_texts()] == [
        "loss", f"best epoch ({detector.best_epoch_})", "score_entropy"]


def test_the_rows_scored_are_bounded_in_number_and_bytes(monkeypatch):
    from aedetect import _fitting

    seen = []
    original = EntropyStopping.__init__

    def spy(self, rows, *args):
        seen.append(tuple(rows.shape))
        original(self, rows, *args)

    monkeypatch.setattr(EntropyStopping, "__init__", spy)
    X = np.random.RandomState(0).normal(size=(1000, 20))
    monkeypatch.setattr(_fitting, "ENTROPY_ROWS", 300)
    AEDetector(early_stopping="entropy", max_iter=2, random_state=0).fit(X)
    monkeypatch.setattr(_fitting, "ENTROPY_BYTES", 100 * 20 * 4)
    AEDetector(early_stopping="entropy", max_iter=2, random_state=0).fit(X)
    # every 4th row (ceil(1000 / 300)), then every 10th (100 rows of 80 bytes)
    assert seen == [(250, 20), (100, 20)]
