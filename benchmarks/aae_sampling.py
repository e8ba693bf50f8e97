"""AAEDetector's samples at the defaults, on scikit-learn's digits / 16.

For each seed:

- conditional (``AAEDetector(conditional=True)``): 200 samples requested per class; the
  share a classifier trained on the data (standardized logistic regression) reads as
  the requested class, for the worst class and on average; and the 3-fold accuracy of
  a logistic regression predicting the class from the codes (chance 0.10: the code
  should carry style, not class);
- unconditional (``AAEDetector()`` and ``VAEDetector()`` for comparison): the mean
  top-class probability the classifier gives 2000 samples from the prior.

Only ``conditional`` and ``random_state`` are set. Writes ``sampling.csv`` and
``sampling.md`` under ``benchmarks/results/aae/``.

    python benchmarks/aae_sampling.py --seeds 0 1 2
"""

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from aedetect import AAEDetector, VAEDetector

OUT = Path(__file__).resolve().parent / "results" / "aae"
N_PER_CLASS = 200


def classifier(X, y):
    """The digit classifier the samples are judged by."""
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)


def conditional_figures(X, y, judge, seed):
    """Worst and mean per-class share of samples read as the requested class, and the
    class accuracy of a classifier on the codes."""
    detector = AAEDetector(conditional=True, random_state=seed).fit(X, y)
    labels = np.repeat(detector.classes_, N_PER_CLASS)
    read = judge.predict(detector.sample(len(labels), y=labels, random_state=seed))
    per_class = [np.mean(read[labels == k] == k) for k in detector.classes_]
    codes = detector.transform(X)
    leak = cross_val_score(LogisticRegression(max_iter=2000), codes, y, cv=3).mean()
    return {"worst_class_rate": min(per_class), "mean_class_rate": float(np.mean(per_class)),
            "code_class_accuracy": leak}


def confidence(detector, judge, seed):
    """Mean top-class probability of 2000 prior samples."""
    samples = detector.sample(2000, random_state=seed)
    return float(judge.predict_proba(samples).max(axis=1).mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    judge = classifier(X, y)
    rows = []
    for seed in args.seeds:
        row = {"seed": seed, **conditional_figures(X, y, judge, seed)}
        row["aae_confidence"] = confidence(AAEDetector(random_state=seed).fit(X), judge, seed)
        row["vae_confidence"] = confidence(VAEDetector(random_state=seed).fit(X), judge, seed)
        print(row, flush=True)
        rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "sampling.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows({k: (f"{v:.4f}" if isinstance(v, float) else v)
                          for k, v in row.items()} for row in rows)
    names = list(rows[0])[1:]
    lines = ["| seed | " + " | ".join(names) + " |", "| ---: " + "| ---: " * len(names) + "|"]
    lines += [f"| {r['seed']} | " + " | ".join(f"{r[n]:.3f}" for n in names) + " |" for r in rows]
    lines.append("| mean | " + " | ".join(f"{np.mean([r[n] for r in rows]):.3f}"
                                         for n in names) + " |")
    text = "\n".join(lines) + "\n"
    (args.out / "sampling.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
