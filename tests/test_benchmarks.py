"""Smoke tests of the benchmark code (benchmarks/) on tiny generated data."""

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import adbench  # noqa: E402
import speed  # noqa: E402

HAS_PYOD = importlib.util.find_spec("pyod") is not None


@pytest.fixture
def tiny_dir(tmp_path):
    """One ADBench-style file: 190 Gaussian inliers and 10 far outliers in 5-D."""
    rng = np.random.RandomState(0)
    X = np.vstack([rng.normal(size=(190, 5)), rng.normal(6.0, 1.0, size=(10, 5))])
    y = np.r_[np.zeros(190, dtype=int), np.ones(10, dtype=int)]
    np.savez(tmp_path / "7_tiny.npz", X=X.astype(np.float32), y=y)
    return tmp_path


def test_split_is_stratified_and_seeded(tiny_dir):
    X, y = adbench.load_dataset(tiny_dir / "7_tiny.npz")
    assert X.dtype == np.float64 and adbench.dataset_name("7_tiny.npz") == "tiny"
    X_train, X_test, y_train, y_test = adbench.split(X, y, seed=0)
    assert (len(y_test), int(y_test.sum()), int(y_train.sum())) == (60, 3, 7)
    np.testing.assert_array_equal(adbench.split(X, y, seed=0)[1], X_test)
    assert not np.array_equal(adbench.split(X, y, seed=1)[1], X_test)


def test_adbench_protocol_end_to_end(tiny_dir):
    out = tiny_dir / "results"
    rows = adbench.main([str(tiny_dir), "--out", str(out), "--seeds", "0", "1",
                         "--methods", "AEDetector", "IsolationForest", "--threads", "1"])
    assert len(rows) == 4
    with open(out / "adbench.csv", newline="") as handle:
        written = list(csv.DictReader(handle))
    assert [list(row) for row in written[:1]] == [adbench.CSV_FIELDS]
    assert {(row["method"], row["seed"]) for row in written} == {
        (m, s) for m in ("AEDetector", "IsolationForest") for s in ("0", "1")}
    for row in written:
        # Far outliers: both methods must rank them first (a sign error gives ~0).
        assert float(row["auc_roc"]) > 0.95 and float(row["auc_pr"]) > 0.6, row
        assert float(row["fit_seconds"]) > 0 and float(row["score_seconds"]) > 0
    report = (out / "adbench.md").read_text()
    assert "| dataset | AEDetector | IsolationForest |" in report
    assert "**mean (1 datasets)**" in report and "- Versions:" in report
    # The report can be rebuilt from the CSV alone, keeping the machine description.
    adbench.main([str(tiny_dir), "--out", str(out), "--report-only"])
    assert (out / "adbench.md").read_text() == report


def test_unknown_method_is_refused(tiny_dir):
    with pytest.raises(SystemExit, match="Unknown method"):
        adbench.main([str(tiny_dir), "--out", str(tiny_dir), "--methods", "NoSuchMethod"])


def test_markdown_mean_skips_unfinished_datasets():
    rows = [{"dataset": d, "method": m, "auc_roc": v}
            for d, m, v in [("a", "X", 0.6), ("a", "Y", 0.8), ("b", "X", 1.0)]]
    table = adbench.markdown_table(rows, "auc_roc", methods=["Y", "X"])
    assert table.splitlines()[0] == "| dataset | Y | X |"
    assert table.splitlines()[-1] == "| **mean (1 datasets)** | **0.800** | **0.600** |"


def test_speed_contender_has_pyods_default_architecture():
    torch.set_num_threads(1)
    X = speed.synthetic(300)
    assert X.shape == (300, speed.N_FEATURES) and X.dtype == np.float32
    detector = speed.make_contender("AE", "aedetect", epochs=2, batch_size=64, device="cpu")
    seconds = speed.timed_fit(detector, X, "aedetect")
    assert seconds > 0 and detector.n_iter_ == 2 and "_train" not in vars(detector)
    assert detector.hidden_layer_sizes_ == (64,) and detector.latent_dim_ == 32
    widths = [(m.in_features, m.out_features) for m in detector.module_.modules()
              if isinstance(m, torch.nn.Linear)]
    assert widths == [(50, 64), (64, 32), (32, 64), (64, 50)]
    kinds = {type(m).__name__ for m in detector.module_.modules()}
    assert {"BatchNorm1d", "Dropout"} <= kinds


@pytest.mark.skipif(not HAS_PYOD, reason="PyOD is the benchmark extra: pip install "
                                         "'aedetect[bench]'")
@pytest.mark.parametrize("pair", ["AE", "VAE"])
def test_speed_pairs_have_equal_linear_layers(pair):
    ours = speed.make_contender(pair, "aedetect", 1, 64, "cpu").fit(speed.synthetic(200))
    theirs = speed.make_contender(pair, "pyod", 1, 64, "cpu")
    theirs.feature_size = speed.N_FEATURES
    theirs.build_model()

    def shapes(module):
        return sorted(tuple(m.weight.shape) for m in module.modules()
                      if isinstance(m, torch.nn.Linear))

    mine = shapes(ours.module_)
    if pair == "VAE":
        # PyOD's separate mean and log-variance heads are our one head of twice the size.
        mine.remove((2 * ours.latent_dim_, 32))
        mine += [(ours.latent_dim_, 32)] * 2
    assert sorted(mine) == shapes(theirs.model)


def test_heldout_summary_splits_tuning_from_held_out_and_counts_wins():
    import heldout

    rows = []
    for dataset, forest, ours in [("cardio", 0.9, 0.8), ("letter", 0.6, 0.7),
                                  ("wine", 0.7, 0.9), ("glass", 0.8, 0.6)]:
        for seed, jitter in ((0, -0.01), (1, 0.01)):
            rows += [{"dataset": dataset, "seed": seed, "method": "IsolationForest",
                      "auc_roc": forest + jitter, "auc_pr": forest / 2},
                     {"dataset": dataset, "seed": seed, "method": "AE + VAE",
                      "auc_roc": ours + jitter, "auc_pr": ours / 2}]
    text = heldout.summary(rows)
    line = next(line for line in text.splitlines() if line.startswith("| AE + VAE"))
    # in-sample: cardio, letter (0.75); held out: wine, glass (0.75); wins: letter, wine
    assert line == "| AE + VAE | 0.750 | 0.750 | 0.750 | 0.375 | 0.375 | 0.375 | 2 of 4 |"
    forest = next(line for line in text.splitlines() if line.startswith("| IsolationForest"))
    assert forest.startswith("| IsolationForest | 0.750 | 0.750 |")
    assert "held out: the other 2 (glass, wine)" in text


def test_heldout_ensemble_averages_standardized_scores():
    import heldout
    from aedetect import AEDetector, VAEDetector

    X = np.random.RandomState(0).normal(size=(200, 4))
    ensemble = heldout.make_candidate([("AEDetector", {"max_iter": 3}),
                                       ("VAEDetector", {"max_iter": 3})], 0, "cpu").fit(X)
    ae = AEDetector(max_iter=3, random_state=0, device="cpu").fit(X)
    vae = VAEDetector(max_iter=3, random_state=0, device="cpu").fit(X)
    parts = []
    for detector in (ae, vae):
        train = detector.score_samples(X)
        center = np.median(train)
        parts.append((detector.score_samples(X[:20]) - center)
                     / (np.median(np.abs(train - center)) * 1.4826))
    np.testing.assert_allclose(ensemble.score_samples(X[:20]), np.mean(parts, axis=0))


def test_heldout_feature_subset_fits_and_scores_the_same_columns():
    import heldout
    from aedetect import AEDetector

    X = np.random.RandomState(0).normal(size=(200, 9))
    member = heldout.make_candidate([("AEDetector", {"max_iter": 3, "feature_share": 0.5,
                                                     "seed_offset": 1})], 0, "cpu").fit(X)
    assert len(member.columns_) == 5 and len(set(member.columns_)) == 5
    alone = AEDetector(max_iter=3, random_state=1000, device="cpu").fit(X[:, member.columns_])
    np.testing.assert_array_equal(member.score_samples(X[:20]),
                                  alone.score_samples(X[:20, member.columns_]))
    narrow = heldout.FeatureSubset(AEDetector(max_iter=1), 0.1, 0).fit(X[:, :3])
    assert len(narrow.columns_) == 2  # at least two columns


def test_heldout_entropy_stop_keeps_the_epoch_of_lowest_score_entropy():
    import heldout
    from aedetect import AEDetector

    rng = np.random.RandomState(0)
    X = np.vstack([rng.normal(size=(190, 4)), rng.normal(6, 1, size=(10, 4))])
    stopped = heldout.make_candidate([("AEDetector", {"max_iter": 30, "n_iter_no_change": 3,
                                                      "entropy_stop": True})], 0, "cpu").fit(X)
    entropies = stopped.entropies_
    assert stopped.best_epoch_ == int(np.argmin(entropies)) + 1
    assert len(entropies) == 30 or len(entropies) - stopped.best_epoch_ >= 3
    assert stopped.best_.n_iter_ == stopped.best_epoch_  # one epoch per partial_fit
    replay = AEDetector(max_iter=30, n_iter_no_change=3, random_state=0, device="cpu")
    for _ in range(stopped.best_epoch_):
        replay.partial_fit(X)
    np.testing.assert_allclose(stopped.score_samples(X), replay.score_samples(X), rtol=1e-6)


def test_member_scores_reproduce_the_ensemble_detector(tiny_dir, monkeypatch, capsys):
    """Scores saved per member, combined offline, give EnsembleDetector's AUC exactly."""
    import ensemble_selection
    import member_scores
    from sklearn.metrics import roc_auc_score

    from aedetect import AEDetector, EnsembleDetector, VAEDetector

    monkeypatch.setattr(member_scores, "MEMBERS", {
        "ae": ("AEDetector", {"max_iter": 3}), "vae": ("VAEDetector", {"max_iter": 3})})
    out = tiny_dir / "members"
    member_scores.main([str(tiny_dir), "--out", str(out), "--seeds", "0", "--threads", "1"])
    assert sorted(p.name for p in (out / "tiny" / "seed0").iterdir()) == ["ae.npz", "vae.npz"]
    offline = ensemble_selection.evaluate(ensemble_selection.load_members(out),
                                          ("ae", "vae"))["tiny"][0]
    X, y = adbench.load_dataset(tiny_dir / "7_tiny.npz")
    X_train, X_test, _, y_test = adbench.split(X, y, 0)
    ensemble = EnsembleDetector([("ae", AEDetector(max_iter=3)),
                                 ("vae", VAEDetector(max_iter=3))], random_state=0)
    assert offline == roc_auc_score(y_test, -ensemble.fit(X_train).score_samples(X_test))
    member_scores.main([str(tiny_dir), "--out", str(out), "--seeds", "0", "--threads", "1"])
    assert "0 fits to run" in capsys.readouterr().out  # resumes: nothing fitted twice


def test_leave_one_dataset_out_picks_on_the_others_only():
    import ensemble_selection

    table = {"A": {"d1": (0.9,), "d2": (0.5,), "d3": (0.9,)},
             "B": {"d1": (0.6,), "d2": (0.9,), "d3": (0.6,)}}
    picks = ensemble_selection.leave_one_out(
        {name: {d: (auc, auc / 2) for d, (auc,) in results.items()}
         for name, results in table.items()}, ["d1", "d2", "d3"])
    assert {d: (name, auc) for d, (name, auc, _) in picks.items()} == {
        "d1": ("B", 0.6), "d2": ("A", 0.5), "d3": ("B", 0.6)}
