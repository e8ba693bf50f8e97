"""Candidate defaults judged on data they were not chosen on (issue 20).

The detectors' defaults were chosen on ten ADBench datasets (``TUNING``); the others in
``../shared/data/adbench`` were not looked at then. This script runs candidate
settings with the protocol of ``adbench.py`` (same split, seeds and output) on all of
them and reports each candidate's mean AUC-ROC and AUC-PR on the ten (in-sample), on
the others (held out) and on all, with its wins against IsolationForest; ``--include``
adds the rows of an ``adbench.py`` CSV (the defaults and the other libraries).

A candidate is kept only for what it gives held out: choosing on the ten and
confirming on the rest.

Example::

    python benchmarks/heldout.py ../shared/data/adbench --out DIR --jobs 2 --threads 1 \\
        --include benchmarks/results/adbench.csv
"""

import copy
import functools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import adbench  # noqa: E402

#: The datasets the defaults were chosen on (issue 6).
TUNING = ("annthyroid", "cardio", "Ionosphere", "letter", "mnist", "optdigits", "pendigits",
          "satellite", "shuttle", "thyroid")

#: name -> list of (detector class, parameters): one entry is that detector, several
#: are an ensemble (see :class:`StandardizedMean`), or a choice among them when the list
#: ends with ``"lowest entropy"`` (:class:`LowestEntropy`). A member's ``seed_offset`` k fits it
#: with ``random_state = seed + 1000 * k`` (an ensemble of seeds); its
#: ``feature_share`` fits it on that share of the columns (:class:`FeatureSubset`);
#: ``entropy_stop`` picks its epoch without labels (:class:`EntropyStopped`); ``quantile``
#: maps the features to normal scores first (:class:`QuantileScaled`).
CANDIDATES = {
    "AE score_type=combined": [("AEDetector", {"score_type": "combined"})],
    "AE previous defaults": [("AEDetector", {"scaling": "standard", "batch_norm": False,
                                             "dropout": 0.0, "trim_fraction": 0.0})],
    "AE trim_fraction=0": [("AEDetector", {"trim_fraction": 0.0})],
    "AE no batch_norm, no dropout": [("AEDetector", {"batch_norm": False, "dropout": 0.0})],
    "AE + VAE": [("AEDetector", {}), ("VAEDetector", {})],
    "VAE scaling=standard": [("VAEDetector", {"scaling": "standard"})],
    "VAE scaling=minmax": [("VAEDetector", {"scaling": "minmax"})],
    "AE scaling=minmax": [("AEDetector", {"scaling": "minmax"})],
    "VAE score_type=latent": [("VAEDetector", {"score_type": "latent"})],
    "AE score_type=latent": [("AEDetector", {"score_type": "latent"})],
    "VAE batch_size=64": [("VAEDetector", {"batch_size": 64})],
    "VAE latent_dim=2": [("VAEDetector", {"latent_dim": 2})],
    "VAE latent_dim=4": [("VAEDetector", {"latent_dim": 4})],
    "AE latent_dim=2": [("AEDetector", {"latent_dim": 2})],
    "VAE latent_dim=2 batch_size=64": [("VAEDetector", {"latent_dim": 2, "batch_size": 64})],
    "VAE latent_dim=2 x3 seeds": [("VAEDetector", {"latent_dim": 2, "seed_offset": k})
                                  for k in range(3)],
    "VAE latent_dim=3": [("VAEDetector", {"latent_dim": 3})],
    # one variance for every feature (the squared error, as PyOD's VAE scores)
    "VAE likelihood=gaussian_fixed": [("VAEDetector", {"likelihood": "gaussian_fixed"})],
    "VAE score_type=reconstruction": [("VAEDetector", {"score_type": "reconstruction"})],
    # feature bagging: five VAEs, each on a random half of the columns
    "VAE feature bagging x5": [("VAEDetector", {"seed_offset": k, "feature_share": 0.5})
                               for k in range(5)],
    # label-free choice of the epoch (EntropyStop)
    "AE entropy stop": [("AEDetector", {"entropy_stop": True})],
    "VAE entropy stop": [("VAEDetector", {"entropy_stop": True})],
    # each feature mapped through its training quantiles to a standard normal first
    "AE quantile": [("AEDetector", {"quantile": True})],
    "VAE quantile": [("VAEDetector", {"quantile": True})],
    "AE entropy stop + VAE": [("AEDetector", {"entropy_stop": True}), ("VAEDetector", {})],
    # denoising training: Gaussian noise of 0.2 scaled units, or a fifth of the values
    # masked to zero
    "AE noise=0.2": [("AEDetector", {"noise": 0.2})],
    "AE mask noise=0.2": [("AEDetector", {"noise": 0.2, "noise_type": "mask"})],
    # the same rule built into the trainer (early_stopping="entropy")
    "AE early_stopping=entropy": [("AEDetector", {"early_stopping": "entropy"})],
    "VAE early_stopping=entropy": [("VAEDetector", {"early_stopping": "entropy"})],
    "AE early_stopping=entropy + VAE latent_dim=2": [
        ("AEDetector", {"early_stopping": "entropy"}), ("VAEDetector", {"latent_dim": 2})],
    "VAE latent_dim=2 early_stopping=entropy": [
        ("VAEDetector", {"latent_dim": 2, "early_stopping": "entropy"})],
    # each feature's squared error ranked among the training rows' (an ECOD-like tail
    # score on the residuals)
    "AE tail residuals": [("AEDetector", {"tail_residuals": True})],
    "AE early_stopping=entropy tail residuals": [
        ("AEDetector", {"early_stopping": "entropy", "tail_residuals": True})],
    # two scalings, whose failures differ (robust: the network sees heavy tails;
    # min-max: it barely sees them)
    "VAE + VAE scaling=minmax": [("VAEDetector", {}), ("VAEDetector", {"scaling": "minmax"})],
    "AE early_stopping=entropy + VAE scaling=minmax": [
        ("AEDetector", {"early_stopping": "entropy"}), ("VAEDetector", {"scaling": "minmax"})],
    "VAE latent_dim=2 + VAE scaling=minmax": [
        ("VAEDetector", {"latent_dim": 2}), ("VAEDetector", {"scaling": "minmax"})],
    "AE early_stopping=entropy + VAE latent_dim=2 + VAE scaling=minmax": [
        ("AEDetector", {"early_stopping": "entropy"}), ("VAEDetector", {"latent_dim": 2}),
        ("VAEDetector", {"scaling": "minmax"})],
    # the same pairs, one member chosen by its training scores' entropy (LowestEntropy)
    "VAE or VAE scaling=minmax, lowest entropy": [
        ("VAEDetector", {}), ("VAEDetector", {"scaling": "minmax"}), "lowest entropy"],
    "AE early_stopping=entropy or VAE scaling=minmax, lowest entropy": [
        ("AEDetector", {"early_stopping": "entropy"}), ("VAEDetector", {"scaling": "minmax"}),
        "lowest entropy"],
    "AE early_stopping=entropy x3 seeds": [
        ("AEDetector", {"early_stopping": "entropy", "seed_offset": k}) for k in range(3)],
}


class EntropyStopped:
    """Label-free choice of the training epoch (EntropyStop, Huang et al., KDD 2024):
    the detector trains one epoch per ``partial_fit`` call, up to its ``max_iter``;
    after each, the training rows' outlier scores (``-score_samples``, shifted to start
    at 0) are normalized to sum to 1 and their entropy computed. The detector of the
    epoch with the lowest entropy is kept; training stops after ``n_iter_no_change``
    epochs without a new low (by more than ``tol`` nats). A low entropy means the
    scores' mass sits on few rows: the normal rows fit, a few stand out."""

    def __init__(self, detector):
        self.detector = detector

    def fit(self, X):
        detector = self.detector
        best, since, self.entropies_ = np.inf, 0, []
        for _ in range(detector.max_iter):
            detector.partial_fit(X)
            scores = -detector.score_samples(X)
            mass = scores - scores.min()
            total = mass.sum()
            p = mass[mass > 0] / total if total > 0 else np.ones(1)
            entropy = float(-(p * np.log(p)).sum())
            self.entropies_.append(entropy)
            if entropy < best - detector.tol:
                best, since, self.best_ = entropy, 0, copy.deepcopy(detector)
                self.best_epoch_ = len(self.entropies_)
            else:
                since += 1
                if since >= detector.n_iter_no_change:
                    break
        return self

    def score_samples(self, X):
        return self.best_.score_samples(X)


class FeatureSubset:
    """A detector on a random subset of the columns (feature bagging, Lazarevic and
    Kumar, KDD 2005): ``ceil(share * n_features)`` of them, at least 2 (all when there
    are fewer), drawn with ``seed``."""

    def __init__(self, detector, share, seed):
        self.detector, self.share, self.seed = detector, share, seed

    def fit(self, X):
        n_features = X.shape[1]
        size = min(n_features, max(2, int(np.ceil(self.share * n_features))))
        rng = np.random.RandomState(self.seed)
        self.columns_ = np.sort(rng.choice(n_features, size, replace=False))
        self.detector.fit(X[:, self.columns_])
        return self

    def score_samples(self, X):
        return self.detector.score_samples(X[:, self.columns_])


class QuantileScaled:
    """A detector on the rows mapped, feature by feature, through the training rows'
    quantiles to a standard normal (``sklearn.preprocessing.QuantileTransformer``, at
    most 1,000 quantiles): what the detector sees no longer depends on each feature's
    units or skew, as IsolationForest's splits do not."""

    def __init__(self, detector, seed):
        self.detector, self.seed = detector, seed

    def fit(self, X):
        from sklearn.preprocessing import QuantileTransformer

        self.quantiles_ = QuantileTransformer(
            n_quantiles=min(1000, len(X)), output_distribution="normal",
            random_state=self.seed).fit(X)
        self.detector.fit(self.quantiles_.transform(X))
        return self

    def score_samples(self, X):
        return self.detector.score_samples(self.quantiles_.transform(X))


class TailResiduals:
    """A detector scored by how unusual each feature's reconstruction error is: for
    every feature, the share of training rows whose squared error there is at least
    the row's (plus one, over n + 1); the score is the sum of the logs of those shares
    (higher = more normal). Every feature counts alike whatever its error's scale, as
    ECOD (Li et al., 2022) treats the inputs' tails."""

    def __init__(self, detector):
        self.detector = detector

    def fit(self, X):
        self.detector.fit(X)
        self.errors_ = np.sort(self.detector.error_map(X), axis=0)
        return self

    def score_samples(self, X):
        errors = self.detector.error_map(X)
        n_rows = self.errors_.shape[0]
        at_least = np.stack([n_rows - np.searchsorted(self.errors_[:, j], errors[:, j], "left")
                             for j in range(errors.shape[1])], axis=1)
        return np.log((at_least + 1.0) / (n_rows + 1.0)).sum(axis=1)


class LowestEntropy:
    """Label-free model selection: each detector fitted, the one whose training rows'
    outlier scores (``-score_samples``) have the lowest entropy kept (the rule of
    ``early_stopping='entropy'`` across models instead of epochs: the scores' mass on
    the fewest rows)."""

    def __init__(self, detectors):
        self.detectors = detectors

    def fit(self, X):
        from aedetect._training import score_entropy

        self.entropies_ = [score_entropy(-detector.fit(X).score_samples(X))
                           for detector in self.detectors]
        self.best_ = self.detectors[int(np.argmin(self.entropies_))]
        return self

    def score_samples(self, X):
        return self.best_.score_samples(X)


class StandardizedMean:
    """An ensemble for measurement: each detector's ``score_samples``, centred and
    scaled by its median and MAD over the training rows, averaged (higher = more
    normal, as each detector's)."""

    def __init__(self, detectors):
        self.detectors = detectors

    def fit(self, X):
        self.scales_ = []
        for detector in self.detectors:
            scores = detector.fit(X).score_samples(X)
            center = np.median(scores)
            spread = np.median(np.abs(scores - center)) * 1.4826
            self.scales_.append((center, spread if spread > 0 else 1.0))
        return self

    def score_samples(self, X):
        return np.mean([(detector.score_samples(X) - center) / spread
                        for detector, (center, spread) in zip(self.detectors, self.scales_)],
                       axis=0)


def make_candidate(members, seed, device):
    import aedetect

    detectors, combine = [], StandardizedMean
    if members[-1] == "lowest entropy":
        members, combine = members[:-1], LowestEntropy
    for name, params in members:
        params = dict(params)
        offset = params.pop("seed_offset", 0)
        share = params.pop("feature_share", None)
        entropy_stop = params.pop("entropy_stop", False)
        quantile = params.pop("quantile", False)
        tail = params.pop("tail_residuals", False)
        member_seed = seed + 1000 * offset
        detector = getattr(aedetect, name)(random_state=member_seed, device=device, **params)
        if entropy_stop:
            detector = EntropyStopped(detector)
        if quantile:
            detector = QuantileScaled(detector, member_seed)
        if tail:
            detector = TailResiduals(detector)
        detectors.append(detector if share is None
                         else FeatureSubset(detector, share, member_seed))
    return detectors[0] if len(detectors) == 1 else combine(detectors)


def registry():
    return {name: adbench.Method(name, functools.partial(make_candidate, members),
                                 adbench.minus_score_samples,
                                 cost=sum(member != "lowest entropy" for member in members))
            for name, members in CANDIDATES.items()}


def summary(rows):
    """Markdown: per method, the mean AUC-ROC / AUC-PR on the tuning datasets, the
    others and all, and the wins against IsolationForest (AUC-ROC, mean over seeds)."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    for column in ("auc_roc", "auc_pr"):
        frame[column] = frame[column].astype(float)
    means = frame.groupby(["dataset", "method"])[["auc_roc", "auc_pr"]].mean().unstack("method")
    tuning = means.index.isin(TUNING)
    lines = [f"In-sample: the {int(tuning.sum())} datasets the defaults were chosen on "
             f"({', '.join(sorted(means.index[tuning]))}); held out: the other "
             f"{int((~tuning).sum())} ({', '.join(sorted(means.index[~tuning]))}).", "",
             "| method | AUC-ROC in-sample | held out | all | AUC-PR in-sample | held out | all "
             "| wins vs IsolationForest (AUC-ROC) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    forest = means["auc_roc"].get("IsolationForest")
    order = means["auc_roc"].mean().sort_values(ascending=False).index
    for method in order:
        roc, pr = means["auc_roc"][method], means["auc_pr"][method]
        wins = ("" if forest is None or method == "IsolationForest" else
                f"{int((roc > forest).sum())} of {int(roc.notna().sum())}")
        lines.append(f"| {method} | {roc[tuning].mean():.3f} | {roc[~tuning].mean():.3f} | "
                     f"{roc.mean():.3f} | {pr[tuning].mean():.3f} | {pr[~tuning].mean():.3f} | "
                     f"{pr.mean():.3f} | {wins} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    argv, include = adbench.take_include(sys.argv[1:] if argv is None else argv)
    rows = adbench.main(argv, registry=registry(), name="heldout", transpose=True,
                        title="Candidate defaults, in-sample and held out",
                        description="Each row is a candidate setting (an ensemble when "
                                    "its name joins detectors with +).")
    if include:
        rows = adbench.read_rows(include) + rows
    args = adbench.build_parser().parse_args(argv)
    text = summary(rows)
    (Path(args.out) / "heldout_summary.md").write_text(
        "# Candidate defaults, in-sample and held out (issue 20)\n\n" + text)
    print(text)


if __name__ == "__main__":
    main()
