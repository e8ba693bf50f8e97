"""One-class image screening on Fashion-MNIST: conv autoencoders against IsolationForest.

The protocol of the one-class image literature (Ruff et al. 2018, Golan and El-Yaniv
2018): for each class, train on that class's training images only (6,000), score the
whole test split (10,000 images), and measure the AUC-ROC of telling the other nine
classes (outliers) from the held-out images of the class. Repeated over seeds.

    PYTHONPATH=. python benchmarks/one_class_images.py          # everything, GPU if any
    PYTHONPATH=. python benchmarks/one_class_images.py --classes 0 1 --max-train 500 --epochs 2

Methods (``--methods``):

- ``conv_ae``: :class:`aedetect.AEDetector` with ``architecture='conv'``, scored by minus
  the per-image mean squared reconstruction error;
- ``conv_vae``: :class:`aedetect.VAEDetector` with the same network, scored by its
  ELBO (available when this aedetect has ``VAEDetector``);
- ``iforest``: scikit-learn's ``IsolationForest`` on the raw pixels.

Writes ``<name>.csv`` (one row per method, class and seed: AUC-ROC, AUC-PR, fit and
scoring seconds, epochs run, the settings) after every fit, and ``<name>.md`` (the
overall and per-class means and the timings, with the settings and the machine) into
``--out``. ``--append`` adds to an existing CSV, so a long run can be split into
several commands (for example one per seed) and still give one report.
"""

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score

import aedetect
from aedetect.datasets import FASHION_MNIST_CLASSES, load_fashion_mnist

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "fashion-mnist"
METHODS = ("conv_ae", "conv_vae", "iforest")
KEY = ["method", "class", "seed"]


def available_methods():
    """The methods this installation can run (``conv_vae`` needs ``VAEDetector``)."""
    return [m for m in METHODS if m != "conv_vae" or hasattr(aedetect, "VAEDetector")]


def settings(method, args):
    """The parameters that define ``method`` in this run (recorded with every result)."""
    if method == "iforest":
        return {"n_estimators": args.n_estimators}
    found = {"conv_channels": tuple(args.conv_channels), "latent_dim": args.latent_dim,
             "scaling": args.scaling, "noise": args.noise or None,
             "noise_type": args.noise_type, "max_iter": args.epochs,
             "batch_size": args.batch_size, "learning_rate_init": args.learning_rate}
    if method == "conv_vae":
        found["likelihood"] = args.vae_likelihood
    return found


def make_detector(method, args, seed):
    """A fresh, unfitted model for ``method``; its scores are higher for normal images."""
    if method == "iforest":
        return IsolationForest(**settings(method, args), random_state=seed, n_jobs=-1)
    cls = aedetect.AEDetector if method == "conv_ae" else aedetect.VAEDetector
    scaling = None if args.scaling == "none" else args.scaling
    return cls(architecture="conv", **{**settings(method, args), "scaling": scaling},
               n_iter_no_change=args.epochs, tol=0.0, device=args.device, random_state=seed)


def run_one(method, args, seed, X_train, X_test, is_outlier):
    """Fit on ``X_train``, score ``X_test``; one result row."""
    model = make_detector(method, args, seed)
    if method == "iforest":  # raw pixels as rows
        X_train, X_test = X_train.reshape(len(X_train), -1), X_test.reshape(len(X_test), -1)
    start = time.perf_counter()
    model.fit(X_train)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    outlyingness = -model.score_samples(X_test)
    score_s = time.perf_counter() - start
    return {"method": method, "auc_roc": roc_auc_score(is_outlier, outlyingness),
            "auc_pr": average_precision_score(is_outlier, outlyingness),
            "fit_s": fit_s, "score_s": score_s, "n_train": len(X_train),
            "epochs_run": getattr(model, "n_iter_", None),
            "device": str(getattr(model, "device_", "cpu")),
            "settings": repr(settings(method, args))}


def run(args, previous):
    """Every (seed, class, method) of ``args``; saves the CSV after each fit."""
    X_train_all, y_train_all = load_fashion_mnist(args.data_dir, "train")
    X_test, y_test = load_fashion_mnist(args.data_dir, "test")
    rows = []
    for seed in args.seeds:
        rng = np.random.RandomState(seed)
        for label in args.classes:
            X_train = X_train_all[y_train_all == label]
            if args.max_train and len(X_train) > args.max_train:
                X_train = X_train[np.sort(rng.choice(len(X_train), args.max_train, False))]
            for method in args.methods:
                row = run_one(method, args, seed, X_train, X_test, y_test != label)
                row.update({"class": label, "class_name": FASHION_MNIST_CLASSES[label],
                            "seed": seed})
                rows.append(row)
                print(f"seed {seed} class {label} {FASHION_MNIST_CLASSES[label]:<12} "
                      f"{method:<9} AUC-ROC {row['auc_roc']:.4f}  fit {row['fit_s']:7.1f} s  "
                      f"on {row['device']}", flush=True)
                save_csv(combine(previous, pd.DataFrame(rows)), args)
    return combine(previous, pd.DataFrame(rows))


def combine(previous, new):
    """``previous`` rows, replaced by ``new`` ones with the same method, class and seed."""
    if previous is None or previous.empty:
        return new
    frame = pd.concat([previous, new], ignore_index=True)
    return frame.drop_duplicates(subset=KEY, keep="last").sort_values(KEY, ignore_index=True)


def save_csv(results, args):
    args.out.mkdir(parents=True, exist_ok=True)
    results.to_csv(args.out / f"{args.name}.csv", index=False)


def table(frame):
    """A DataFrame as a markdown table (index included), floats to 4 decimals."""
    frame = frame.reset_index()
    cells = [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row]
             for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |",
             "|" + "|".join("---" for _ in frame.columns) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def markdown(results):
    """The summary, the per-class table and how the numbers were made."""
    methods = [m for m in METHODS if m in set(results["method"])]
    per_class = results.pivot_table(index=["class", "class_name"], columns="method",
                                    values="auc_roc", aggfunc="mean")[methods]
    per_seed = results.groupby(["method", "seed"])["auc_roc"].mean().groupby("method")
    by_method = results.groupby("method")
    summary = pd.DataFrame({
        "mean AUC-ROC": per_seed.mean(),
        "std over seeds": per_seed.std(ddof=0),
        "mean AUC-PR": by_method["auc_pr"].mean(),
        "fit s / class": by_method["fit_s"].mean(),
        "score s / test split": by_method["score_s"].mean(),
        "runs": by_method.size(),
    }).loc[methods]
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    lines = [
        "# One-class Fashion-MNIST",
        "",
        "Train on one class's training images, score the 10,000 test images; the other "
        "nine classes are the outliers. AUC-ROC, higher is better.",
        "",
        f"Classes {sorted(set(results['class']))}, seeds {sorted(set(results['seed']))}, "
        f"training images per class {sorted(set(results['n_train']))}, devices "
        f"{sorted(set(results['device']))}.",
        f"Machine of the last run: {platform.platform()}, Python "
        f"{platform.python_version()}, torch {torch.__version__}, aedetect "
        f"{aedetect.__version__}, GPU {gpu}.",
        "",
        "## Summary",
        "",
        table(summary),
        "",
        "## AUC-ROC per class (mean over seeds)",
        "",
        table(per_class),
        "",
        "## Settings",
        "",
    ]
    for method in methods:
        for setting in sorted(set(results.loc[results["method"] == method, "settings"])):
            lines.append(f"- `{method}`: `{setting}`")
    return "\n".join(lines + [""])


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA,
                        help="folder with the four Fashion-MNIST idx files "
                             "(default ../shared/data/fashion-mnist next to the repository)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=available_methods())
    parser.add_argument("--classes", nargs="+", type=int, default=list(range(10)),
                        choices=range(10), metavar="CLASS")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--max-train", type=int, default=0,
                        help="training images per class, 0 for all 6,000 (default 0)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--conv-channels", nargs="+", type=int, default=[32, 64])
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--scaling", choices=("standard", "auto", "minmax", "none"),
                        default="standard",
                        help="'standard' weighs each pixel's error by its spread in the "
                             "trained class (default)")
    parser.add_argument("--noise", type=float, default=0.0,
                        help="denoising corruption during training, 0 for none")
    parser.add_argument("--noise-type", choices=("gaussian", "mask"), default="gaussian")
    parser.add_argument("--vae-likelihood", default="gaussian",
                        help="VAEDetector's likelihood (default gaussian)")
    parser.add_argument("--n-estimators", type=int, default=100, help="IsolationForest trees")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--name", default="one_class_fashion_mnist",
                        help="base name of the CSV and markdown files")
    parser.add_argument("--append", action="store_true",
                        help="add to the rows of an existing <name>.csv")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if "conv_vae" in args.methods and not hasattr(aedetect, "VAEDetector"):
        raise SystemExit("conv_vae needs aedetect.VAEDetector, which this aedetect lacks; "
                         "drop it from --methods.")
    csv = args.out / f"{args.name}.csv"
    previous = pd.read_csv(csv) if args.append and csv.exists() else None
    results = run(args, previous)
    report = markdown(results)
    (args.out / f"{args.name}.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
