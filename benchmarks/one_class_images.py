"""One-class image screening on Fashion-MNIST: conv autoencoders against IsolationForest.

The protocol of the one-class image literature (Ruff et al. 2018, Golan and El-Yaniv
2018): for each class, train on that class's training images only, score the whole
test split (10,000 images), and measure the AUC-ROC of telling the other nine classes
(outliers) from the held-out images of the class. Repeated over seeds.

    python benchmarks/one_class_images.py                 # everything, GPU when present
    python benchmarks/one_class_images.py --classes 0 1 --max-train 500 --epochs 2

Methods (``--methods``):

- ``conv_ae``: :class:`aedetect.AEDetector` with ``architecture='conv'``, score minus
  the per-image mean squared reconstruction error;
- ``conv_vae``: :class:`aedetect.VAEDetector` with the same network, scored by its
  ELBO (only when this aedetect has ``VAEDetector``);
- ``iforest``: scikit-learn's ``IsolationForest`` on the raw pixels.

Writes ``<name>.csv`` (one row per method, class and seed: AUC-ROC, AUC-PR, fit and
scoring seconds, epochs run) and ``<name>.md`` (per-class means, the overall mean and
timings, with the settings and the machine) into ``--out``.
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


def available_methods():
    """The methods this installation can run (``conv_vae`` needs ``VAEDetector``)."""
    return [m for m in METHODS if m != "conv_vae" or hasattr(aedetect, "VAEDetector")]


def make_detector(method, args, seed):
    """A fresh, unfitted model for ``method``; its scores are higher for normal images."""
    if method == "iforest":
        return IsolationForest(n_estimators=args.n_estimators, random_state=seed, n_jobs=-1)
    cls = aedetect.AEDetector if method == "conv_ae" else aedetect.VAEDetector
    return cls(architecture="conv", conv_channels=tuple(args.conv_channels),
               latent_dim=args.latent_dim, noise=args.noise or None, noise_type=args.noise_type,
               max_iter=args.epochs, batch_size=args.batch_size,
               learning_rate_init=args.learning_rate, n_iter_no_change=args.epochs, tol=0.0,
               device=args.device, random_state=seed)


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
            "epochs": getattr(model, "n_iter_", None),
            "device": str(getattr(model, "device_", "cpu"))}


def run(args):
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
    return pd.DataFrame(rows)


def table(frame):
    """A DataFrame as a markdown table (index included), floats to 4 decimals."""
    frame = frame.reset_index()
    cells = [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row]
             for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |",
             "|" + "|".join("---" for _ in frame.columns) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def markdown(results, args):
    """The per-class table, the means and the timings, with how they were made."""
    per_class = results.pivot_table(index=["class", "class_name"], columns="method",
                                    values="auc_roc", aggfunc="mean")[list(args.methods)]
    per_seed = results.groupby(["method", "seed"])["auc_roc"].mean().groupby("method")
    summary = pd.DataFrame({
        "mean AUC-ROC": per_seed.mean(),
        "std over seeds": per_seed.std(ddof=0),
        "mean AUC-PR": results.groupby("method")["auc_pr"].mean(),
        "fit s / class": results.groupby("method")["fit_s"].mean(),
        "score s / 10k": results.groupby("method")["score_s"].mean(),
    }).loc[list(args.methods)]
    devices = ", ".join(sorted(set(results["device"])))
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    lines = [
        "# One-class Fashion-MNIST",
        "",
        "Train on one class's training images, score the 10,000 test images, the other "
        "nine classes are the outliers; AUC-ROC (higher is better).",
        "",
        f"Command: `python benchmarks/one_class_images.py {' '.join(sys.argv[1:])}`".rstrip(),
        "",
        f"Settings: classes {list(args.classes)}, seeds {list(args.seeds)}, training images "
        f"per class {'all' if not args.max_train else f'at most {args.max_train}'}; conv "
        f"networks: channels {tuple(args.conv_channels)}, latent_dim {args.latent_dim}, "
        f"{args.epochs} epochs, batch {args.batch_size}, learning rate {args.learning_rate}, "
        f"noise {args.noise} ({args.noise_type}); IsolationForest {args.n_estimators} trees.",
        f"Machine: {platform.platform()}, Python {platform.python_version()}, torch "
        f"{torch.__version__}, aedetect {aedetect.__version__}, devices {devices}, GPU {gpu}.",
        "",
        "## Summary",
        "",
        table(summary),
        "",
        "## AUC-ROC per class (mean over seeds)",
        "",
        table(per_class),
        "",
    ]
    return "\n".join(lines)


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
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--conv-channels", nargs="+", type=int, default=[32, 64, 128])
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--noise", type=float, default=0.0,
                        help="denoising corruption during training, 0 for none")
    parser.add_argument("--noise-type", choices=("gaussian", "mask"), default="gaussian")
    parser.add_argument("--n-estimators", type=int, default=100, help="IsolationForest trees")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--name", default="one_class_fashion_mnist",
                        help="base name of the CSV and markdown files")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if "conv_vae" in args.methods and not hasattr(aedetect, "VAEDetector"):
        raise SystemExit("conv_vae needs aedetect.VAEDetector, which this aedetect lacks; "
                         "drop it from --methods.")
    results = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    results.to_csv(args.out / f"{args.name}.csv", index=False)
    report = markdown(results, args)
    (args.out / f"{args.name}.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
