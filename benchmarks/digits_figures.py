"""The digits figures the README quotes, measured in one run.

scikit-learn's 8x8 digits (no download): digits 0-4 with 5 % of sevens mixed into the
training data (``load_digits_outliers``), AUC-ROC of the sevens on the training rows
(``-score_samples``), and one-class digit 1 (trained on 120 images of the digit 1, the
other digits are the outliers). Writes ``digits_figures.md`` into ``--out``.

    python benchmarks/digits_figures.py --out benchmarks/results
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

from aedetect import AAEDetector, AEDetector, VAEDetector
from aedetect.datasets import load_digits_outliers


def auc(detector, X, y):
    return roc_auc_score(y, -detector.score_samples(X))


def likelihoods(rows):
    """VAEDetector's likelihoods against AEDetector, defaults otherwise (seed 0)."""
    X, y = load_digits_outliers(random_state=0)
    cases = [("VAEDetector(likelihood='bernoulli') on X / 16",
              lambda: VAEDetector(likelihood="bernoulli", random_state=0), X / 16),
             ("VAEDetector() (gaussian) on X", lambda: VAEDetector(random_state=0), X),
             ("AEDetector() on X", lambda: AEDetector(random_state=0), X)]
    for name, make, data in cases:
        rows.append(("digits 0-4 + 5% sevens, seed 0", name,
                     f"{auc(make().fit(data), data, y):.3f}"))


def pixel_regularizers(rows):
    """A dense Bernoulli VAE on digit pixels with and without batch norm and dropout."""
    X, y = load_digits_outliers(random_state=0)
    for label, extra in (("with batch norm and dropout 0.2", {}),
                         ("without", {"batch_norm": False, "dropout": 0.0})):
        aucs = [auc(VAEDetector(likelihood="bernoulli", max_iter=60, batch_size=64,
                                random_state=seed, **extra).fit(X / 16), X / 16, y)
                for seed in range(3)]
        rows.append(("digits 0-4 + 5% sevens, seeds 0/1/2",
                     f"dense Bernoulli VAE, 60 epochs, batch 64, {label}",
                     " / ".join(f"{value:.3f}" for value in aucs)))


def aae(rows):
    """AAEDetector at its defaults: the three score types of the same fits."""
    X, y = load_digits_outliers()
    per_type = {name: [] for name in ("combined", "reconstruction", "latent")}
    for seed in range(3):
        detector = AAEDetector(random_state=seed).fit(X)
        for name in per_type:
            per_type[name].append(auc(detector.set_params(score_type=name), X, y))
    for name, values in per_type.items():
        rows.append(("digits 0-4 + 5% sevens, seeds 0/1/2 (mean)",
                     f"AAEDetector(), score_type={name!r}",
                     " / ".join(f"{v:.3f}" for v in values) + f" ({np.mean(values):.3f})"))
    digits = load_digits()
    ones, others = np.flatnonzero(digits.target == 1), np.flatnonzero(digits.target != 1)
    detector = AAEDetector(random_state=0).fit(digits.data[ones[:120]])
    test = digits.data[np.r_[ones[120:], others]]
    truth = np.r_[np.zeros(len(ones) - 120), np.ones(len(others))]
    for name in ("combined", "latent"):
        rows.append(("one-class digit 1 (120 training images), seed 0",
                     f"AAEDetector(), score_type={name!r}",
                     f"{auc(detector.set_params(score_type=name), test, truth):.3f}"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start, rows = time.perf_counter(), []
    for part in (likelihoods, pixel_regularizers, aae):
        part(rows)
    lines = ["# Digits figures quoted in the README", "",
             f"`python benchmarks/digits_figures.py` (torch {torch.__version__}, one thread, "
             f"{time.perf_counter() - start:.0f} s). AUC-ROC of the outliers.", "",
             "| data | detector | AUC-ROC |", "| --- | --- | ---: |",
             *(f"| {data} | {name} | {value} |" for data, name, value in rows), ""]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "digits_figures.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
