"""What every example shares: one set of command-line flags and the image data.

Every example takes ``--out`` (folder for its figures, default ``examples_out``),
``--max-iter`` (training epochs), ``--random-state``, ``--device`` and ``--quiet`` (no
progress bar; by default each fit shows one). The image examples add ``--dataset``
(``digits``, scikit-learn's 8x8 digits, or ``fashion-mnist``), ``--data-dir`` (the
Fashion-MNIST idx files, default ``../shared/data/fashion-mnist`` beside the checkout)
and ``--max-train`` (training images, 0 for all).
"""

import argparse
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from aedetect.datasets import FASHION_MNIST_CLASSES, load_fashion_mnist

DEFAULT_OUT = Path("examples_out")
DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "fashion-mnist"
DATASETS = ("digits", "fashion-mnist")


def parser(doc, max_iter, images=False, max_train=0):
    """The examples' argument parser: the common flags, plus the image flags."""
    first = doc.strip().split("\n\n")[0]
    parse = argparse.ArgumentParser(description=first)
    parse.add_argument("--out", type=Path, default=DEFAULT_OUT,
                       help=f"folder for the figures, created if missing (default {DEFAULT_OUT})")
    parse.add_argument("--max-iter", type=int, default=max_iter,
                       help=f"training epochs (default {max_iter})")
    parse.add_argument("--random-state", type=int, default=0, help="seed (default 0)")
    parse.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    parse.add_argument("--quiet", action="store_true", help="no progress bar")
    if images:
        parse.add_argument("--dataset", choices=DATASETS, default="digits",
                           help="digits (ships with scikit-learn) or fashion-mnist")
        parse.add_argument("--data-dir", type=Path, default=DEFAULT_DATA,
                           help="folder of the Fashion-MNIST idx files")
        parse.add_argument("--max-train", type=int, default=max_train,
                           help=f"training images, 0 for all (default {max_train})")
    return parse


def fit_options(args):
    """The detector parameters every example takes from the common flags."""
    return dict(max_iter=args.max_iter, random_state=args.random_state, device=args.device,
                verbose=0 if args.quiet else 1)


def load_images(args, limit=True):
    """``(X_train, y_train, X_test, y_test, class_names)``: images ``(n, H, W)`` with
    pixels in [0, 1]; with ``limit``, at most ``--max-train`` training images."""
    if args.dataset == "digits":
        digits = load_digits()
        images, labels = digits.images / 16.0, digits.target
        split = (images[:1200], labels[:1200], images[1200:], labels[1200:])
        names = [str(digit) for digit in range(10)]
    else:
        split = (*load_fashion_mnist(args.data_dir, "train"),
                 *load_fashion_mnist(args.data_dir, "test"))
        names = list(FASHION_MNIST_CLASSES)
    X_train, y_train, X_test, y_test = split
    keep = slice(args.max_train or None) if limit else slice(None)
    return X_train[keep], y_train[keep], X_test, np.asarray(y_test), names


def output_folder(args):
    """``--out``, created if missing."""
    args.out.mkdir(parents=True, exist_ok=True)
    return args.out
