"""One-class image screening: the most and least anomalous test images.

Train a convolutional ``AEDetector`` on the training images of one class only, score
the whole test split and show the test images it finds most normal and most
anomalous, with the per-pixel error maps (``error_map``) of the anomalous ones: they
show where the reconstruction fails. Prints the AUC-ROC of telling the other classes
from the trained one. Saves ``anomalies.png``.

    python examples/image_anomalies.py --out results/                  # digits, class 0
    python examples/image_anomalies.py --dataset fashion-mnist --normal-class 7 --out results/
    python examples/image_anomalies.py --dataset fashion-mnist --data-dir DIR --out results/
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from aedetect import AEDetector  # noqa: E402
from aedetect.datasets import FASHION_MNIST_CLASSES, load_fashion_mnist  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "fashion-mnist"


def load_images(args):
    """(train images, train labels, test images, test labels, class names), pixels in [0, 1]."""
    if args.dataset == "digits":
        digits = load_digits()
        images, labels = digits.images / 16.0, digits.target
        return images[:1200], labels[:1200], images[1200:], labels[1200:], list(map(str, range(10)))
    X_train, y_train = load_fashion_mnist(args.data_dir, "train")
    X_test, y_test = load_fashion_mnist(args.data_dir, "test")
    return X_train, y_train, X_test, y_test, list(FASHION_MNIST_CLASSES)


def show(axes, images, titles, cmap="gray", vmax=1.0):
    for ax, image, title in zip(axes, images, titles):
        ax.imshow(image, cmap=cmap, vmin=0, vmax=vmax)
        ax.set_title(title, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for the PNG")
    parser.add_argument("--dataset", choices=("digits", "fashion-mnist"), default="digits")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--normal-class", type=int, default=0)
    parser.add_argument("--max-train", type=int, default=0,
                        help="training images of the class, 0 for all")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--show", type=int, default=8, help="images per row")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    X_train, y_train, X_test, y_test, names = load_images(args)
    normal = X_train[y_train == args.normal_class][: args.max_train or None]
    detector = AEDetector(architecture="conv", conv_channels=(32, 64), latent_dim=16,
                          max_iter=args.epochs, batch_size=64, device=args.device,
                          random_state=0).fit(normal)
    scores = detector.score_samples(X_test)  # higher = more normal
    auc = roc_auc_score(y_test != args.normal_class, -scores)
    print(f"Trained on {len(normal)} images of class {names[args.normal_class]!r} for "
          f"{detector.n_iter_} epochs; AUC-ROC for the other classes as outliers: {auc:.3f}.")

    order = np.argsort(scores)
    worst, best = order[: args.show], order[::-1][: args.show]
    maps = detector.error_map(X_test[worst])
    fig, axes = plt.subplots(3, args.show, figsize=(args.show * 1.2, 4.6))
    show(axes[0], X_test[best], [f"{names[y_test[i]]}\n{scores[i]:.3f}" for i in best])
    show(axes[1], X_test[worst], [f"{names[y_test[i]]}\n{scores[i]:.3f}" for i in worst])
    show(axes[2], maps, ["error map"] * args.show, cmap="inferno", vmax=float(maps.max()))
    for ax, label in zip(axes[:, 0], ["least\nanomalous", "most\nanomalous", "where"]):
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(f"Trained on {names[args.normal_class]!r} only: AUC-ROC {auc:.3f}", fontsize=9)
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "anomalies.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"Saved {path}")


if __name__ == "__main__":
    main()
