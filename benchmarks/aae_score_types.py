"""Where AAEDetector's prior term helps detection: its three score types from one fit.

The ADBench protocol of ``adbench.py`` (stratified 70/30 split per seed, fit on the
training part without labels, AUC-ROC on the test part with the outliers positive):
one ``AAEDetector(random_state=seed)`` per dataset and seed, then the test part scored
with ``score_type`` ``'combined'`` (the default), ``'reconstruction'`` (no prior term)
and ``'latent'`` (the prior term alone), via ``set_params`` on the fitted detector.
Writes ``score_types.csv`` and ``score_types.md`` under ``benchmarks/results/aae/``.

    python benchmarks/aae_score_types.py ../shared/data/adbench --datasets cardio letter
"""

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adbench import dataset_name, default_data_dir, find_datasets, load_dataset, split  # noqa: E402

from aedetect import AAEDetector  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "aae"
SCORE_TYPES = ("combined", "reconstruction", "latent")


def run_one(path, seed):
    """AUC-ROC of each score type of one fit."""
    X, y = load_dataset(path)
    X_train, X_test, _, y_test = split(X, y, seed)
    detector = AAEDetector(random_state=seed).fit(X_train)
    row = {"dataset": dataset_name(path), "seed": seed}
    for score_type in SCORE_TYPES:
        scores = detector.set_params(score_type=score_type).score_samples(X_test)
        row[score_type] = roc_auc_score(y_test, -scores)
    return row


def report(rows):
    """Markdown: mean over the seeds per dataset, and the prior term's effect."""
    datasets = sorted({row["dataset"] for row in rows}, key=str.lower)
    lines = ["| dataset | combined (default) | reconstruction | latent | prior term |",
             "| --- | ---: | ---: | ---: | --- |"]
    means = {score_type: [] for score_type in SCORE_TYPES}
    for dataset in datasets:
        group = [row for row in rows if row["dataset"] == dataset]
        cells = {t: np.mean([float(row[t]) for row in group]) for t in SCORE_TYPES}
        for t in SCORE_TYPES:
            means[t].append(cells[t])
        change = cells["combined"] - cells["reconstruction"]
        effect = "helps" if change > 0.005 else "hurts" if change < -0.005 else "neutral"
        lines.append(f"| {dataset} | " + " | ".join(f"{cells[t]:.3f}" for t in SCORE_TYPES)
                     + f" | {effect} ({change:+.3f}) |")
    lines.append("| **mean** | " + " | ".join(f"**{np.mean(means[t]):.3f}**"
                                              for t in SCORE_TYPES) + " | |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", nargs="?", default=default_data_dir())
    parser.add_argument("--datasets", nargs="+", default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in find_datasets(args.data_dir, args.datasets):
        for seed in args.seeds:
            rows.append(run_one(path, seed))
            print(rows[-1], flush=True)
            with (args.out / "score_types.csv").open("w", newline="") as f:
                writer = csv.DictWriter(f, list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
    (args.out / "score_types.md").write_text(report(rows))
    print(report(rows))


if __name__ == "__main__":
    main()
