"""One-class image screening on Fashion-MNIST: conv autoencoders against IsolationForest.

The protocol of the one-class image literature (Ruff et al. 2018, Golan and El-Yaniv
2018): for each class, train on that class's training images only (6,000), score the
whole test split (10,000 images), and measure the AUC-ROC of telling the other nine
classes (outliers) from the held-out images of the class. Repeated over seeds.

    PYTHONPATH=. python benchmarks/one_class_images.py          # everything, GPU if any
    PYTHONPATH=. python benchmarks/one_class_images.py --classes 0 1 --max-train 500 --epochs 2

Methods (``--methods``), each with its own settings (``SETTINGS``; change one with
``--set METHOD.PARAMETER=VALUE``):

- ``conv_ae``: :class:`aedetect.AEDetector` with ``architecture='conv'``; one fit is
  scored three ways (``score_type``): ``combined`` (the reconstruction error plus the
  distance of the code to its nearest training codes, each standardized),
  ``reconstruction`` and ``latent``;
- ``conv_vae``: :class:`aedetect.VAEDetector` with the same network and a Bernoulli
  likelihood, scored by ``latent`` (the neighbour distance of the posterior mean) and
  by its ``elbo``;
- ``conv_ensemble``: :class:`aedetect.EnsembleDetector` of the two above (their
  settings, each scored by its fitted ``score_type``), standardized scores averaged;
  ``--set "conv_ensemble.members=('conv_vae', 'conv_vae', 'conv_vae')"`` makes it three
  conv VAEs of seeds ``seed``, ``seed + 1000``, ``seed + 2000``;
- ``iforest``: scikit-learn's ``IsolationForest`` on the raw pixels.

The result rows are named ``method:score_type`` (``conv_ae:combined``...).

Writes ``<name>.csv`` (one row per method, score type, class and seed: AUC-ROC,
AUC-PR, fit and scoring seconds, epochs run, the settings) after every fit, and
``<name>.md`` (the overall and per-class means and the timings, with the settings and
the machine) into ``--out``. ``--append`` adds to an existing CSV; ``--merge`` makes
the report from CSVs of runs made in parallel (for example one per seed and method).
"""

import argparse
import ast
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
METHODS = ("conv_ae", "conv_vae", "conv_ensemble", "iforest")
KEY = ["method", "class", "seed"]

#: Each method's settings; the network and training settings were chosen on seed 0
#: (see benchmarks/README.md). ``score_type`` is the one fitted; ``SCORE_TYPES`` lists
#: every score type a fit is also scored by.
SETTINGS = {
    "conv_ae": {"conv_channels": (32, 64), "latent_dim": 32, "scaling": "standard",
                "batch_norm": False, "dropout": 0.0, "trim_fraction": 0.0,
                "max_iter": 30, "batch_size": 128, "learning_rate_init": 2e-3,
                "score_type": "combined", "n_neighbors": 5},
    "conv_vae": {"conv_channels": (32, 64), "latent_dim": 16, "scaling": "auto",
                 "likelihood": "bernoulli", "batch_norm": False, "dropout": 0.0,
                 "trim_fraction": 0.0, "max_iter": 30, "batch_size": 128,
                 "learning_rate_init": 2e-3, "score_type": "latent", "n_neighbors": 5},
    "conv_ensemble": {"members": ("conv_ae", "conv_vae")},
    "iforest": {"n_estimators": 100},
}
SCORE_TYPES = {"conv_ae": ("combined", "reconstruction", "latent"),
               "conv_vae": ("latent", "elbo"), "conv_ensemble": ("mean",),
               "iforest": ("score_samples",)}
DETECTORS = {"conv_ae": "AEDetector", "conv_vae": "VAEDetector"}


def available_methods():
    """The methods this installation can run (``conv_vae`` needs ``VAEDetector``)."""
    return [m for m in METHODS if m == "iforest" or m == "conv_ae" or hasattr(
        aedetect, {"conv_vae": "VAEDetector", "conv_ensemble": "EnsembleDetector"}[m])]


def parse_overrides(items):
    """``["conv_ae.latent_dim=16", ...]`` -> ``{"conv_ae": {"latent_dim": 16}}``."""
    overrides = {}
    for item in items:
        target, sep, text = item.partition("=")
        method, dot, name = target.partition(".")
        if not (sep and dot) or method not in METHODS or not name:
            raise SystemExit(f"--set takes METHOD.PARAMETER=VALUE with METHOD one of "
                             f"{METHODS}, got {item!r}.")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text  # a bare word such as standard
        overrides.setdefault(method, {})[name] = value
    return overrides


def settings(method, args):
    """The parameters that define ``method`` in this run (recorded with every result)."""
    found = dict(SETTINGS[method])
    if method == "iforest":
        found["n_estimators"] = args.n_estimators
    elif method == "conv_ensemble":
        members = args.overrides.get(method, {}).get("members", found["members"])
        found = {"members": tuple(members),
                 **{name: settings(name, args) for name in dict.fromkeys(members)}}
    else:
        found.update({"max_iter": args.epochs, "batch_size": args.batch_size,
                      "learning_rate_init": args.learning_rate,
                      "conv_channels": tuple(args.conv_channels)})
        if args.noise:
            found.update({"noise": args.noise, "noise_type": args.noise_type})
    if args.flip:
        found["flip"] = True  # a setting of the benchmark, not of the detector
    found.update(args.overrides.get(method, {}))
    return found


def make_detector(method, args, seed):
    """A fresh, unfitted model for ``method``; its scores are higher for normal images."""
    params = settings(method, args)
    params.pop("flip", None)
    if method == "iforest":
        return IsolationForest(**params, random_state=seed, n_jobs=-1)
    if method == "conv_ensemble":
        # a method named k times is k members with seeds seed, seed + 1000, ...
        names = list(params["members"])
        members = [(f"{name}{names[:i].count(name) or ''}",
                    make_detector(name, args, seed + 1000 * names[:i].count(name)))
                   for i, name in enumerate(names)]
        return aedetect.EnsembleDetector(members)
    if params.get("scaling") == "none":
        params["scaling"] = None
    cls = getattr(aedetect, DETECTORS[method])
    return cls(architecture="conv", **params, n_iter_no_change=params["max_iter"], tol=0.0,
               device=args.device, random_state=seed)


def run_one(method, args, seed, X_train, X_test, is_outlier):
    """Fit on ``X_train``, score ``X_test`` with every score type; one row for each."""
    model = make_detector(method, args, seed)
    if method == "iforest":  # raw pixels as rows
        X_train, X_test = X_train.reshape(len(X_train), -1), X_test.reshape(len(X_test), -1)
    if args.flip:  # train on the images and their mirror images
        X_train = np.concatenate([X_train, mirrored(X_train, method)])
    start = time.perf_counter()
    model.fit(X_train)
    fit_s = time.perf_counter() - start
    rows = []
    for score_type in SCORE_TYPES[method]:
        if method not in ("iforest", "conv_ensemble"):
            model.set_params(score_type=score_type)
        start = time.perf_counter()
        outlyingness = -model.score_samples(X_test)
        if args.flip:  # and score each test image as the mean with its mirror image
            outlyingness = (outlyingness - model.score_samples(mirrored(X_test, method))) / 2
        score_s = time.perf_counter() - start
        rows.append({"method": f"{method}:{score_type}",
                     "auc_roc": roc_auc_score(is_outlier, outlyingness),
                     "auc_pr": average_precision_score(is_outlier, outlyingness),
                     "fit_s": fit_s, "score_s": score_s, "n_train": len(X_train),
                     "epochs_run": getattr(model, "n_iter_", None),
                     "device": str(getattr(getattr(model, "estimators_", [model])[0],
                                           "device_", "cpu")),
                     "settings": repr(settings(method, args))})
    return rows


def mirrored(X, method):
    """The images of ``X`` flipped left to right (rows of pixels for ``iforest``)."""
    images = X.reshape(len(X), 28, 28) if method == "iforest" else X
    flipped = np.ascontiguousarray(images[:, :, ::-1])
    return flipped.reshape(X.shape)


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
                for row in run_one(method, args, seed, X_train, X_test, y_test != label):
                    row.update({"class": label, "class_name": FASHION_MNIST_CLASSES[label],
                                "seed": seed})
                    rows.append(row)
                    print(f"seed {seed} class {label} {FASHION_MNIST_CLASSES[label]:<12} "
                          f"{row['method']:<24} AUC-ROC {row['auc_roc']:.4f}  "
                          f"fit {row['fit_s']:7.1f} s  on {row['device']}", flush=True)
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
    methods = sorted(set(results["method"]),
                     key=lambda m: (METHODS.index(m.split(":")[0]), m))
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
    for method in METHODS:
        used = results.loc[results["method"].str.split(":").str[0] == method, "settings"]
        for setting in sorted(set(used)):
            lines.append(f"- `{method}` (fitted once, scored by "
                         f"{', '.join(SCORE_TYPES[method])}): `{setting}`")
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
    parser.add_argument("--noise", type=float, default=0.0,
                        help="denoising corruption during training, 0 for none")
    parser.add_argument("--noise-type", choices=("gaussian", "mask"), default="gaussian")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="METHOD.PARAMETER=VALUE",
                        help="change one setting of one method, e.g. conv_ae.latent_dim=16 "
                             "(repeatable; VALUE is a Python literal or a bare word)")
    parser.add_argument("--flip", action="store_true",
                        help="augment: train on each image and its mirror image, score "
                             "each test image as the mean over it and its mirror image")
    parser.add_argument("--n-estimators", type=int, default=100, help="IsolationForest trees")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--name", default="one_class_fashion_mnist",
                        help="base name of the CSV and markdown files")
    parser.add_argument("--append", action="store_true",
                        help="add to the rows of an existing <name>.csv")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="CSV",
                        help="run nothing: combine these result CSVs into <name>.csv/.md")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.overrides = parse_overrides(args.overrides)
    if args.merge:
        results = None
        for path in args.merge:
            results = combine(results, pd.read_csv(path))
        save_csv(results, args)
        report = markdown(results)
        (args.out / f"{args.name}.md").write_text(report)
        print(report)
        return 0
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
