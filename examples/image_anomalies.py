"""One-class image screening: the most and least anomalous test images.

Train a convolutional ``AEDetector`` on the training images of one class only, score
the whole test split and show the test images it finds most normal and most
anomalous, with the per-pixel error maps (``error_map``) of the anomalous ones: they
show where the reconstruction fails. Prints the AUC-ROC of telling the other classes
from the trained one. Saves ``anomalies.png``.

    python examples/image_anomalies.py                                 # digits, class 0
    python examples/image_anomalies.py --dataset fashion-mnist --normal-class 7
    python examples/image_anomalies.py --dataset fashion-mnist --data-dir DIR --out results/

``--max-train`` caps the training images of the class.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from _common import fit_options, load_images, output_folder, parser  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from aedetect import AEDetector  # noqa: E402


def show(axes, images, titles, cmap="gray", vmax=1.0):
    for ax, image, title in zip(axes, images, titles):
        ax.imshow(image, cmap=cmap, vmin=0, vmax=vmax)
        ax.set_title(title, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])


def main(argv=None):
    parse = parser(__doc__, max_iter=40, images=True)
    parse.add_argument("--normal-class", type=int, default=0, help="the class trained on")
    parse.add_argument("--show", type=int, default=8, help="images per row")
    args = parse.parse_args(argv)

    X_train, y_train, X_test, y_test, names = load_images(args, limit=False)
    normal = X_train[y_train == args.normal_class][: args.max_train or None]
    detector = AEDetector(architecture="conv", conv_channels=(32, 64), latent_dim=16,
                          batch_size=64, **fit_options(args)).fit(normal)
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
    path = output_folder(args) / "anomalies.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"Saved {path}")


if __name__ == "__main__":
    main()
