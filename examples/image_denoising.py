"""Denoising images with a convolutional autoencoder.

Train ``AEDetector(architecture='conv', noise=...)`` on clean images: during training
each batch is corrupted (Gaussian noise, clipped to the pixel range) and the network
learns to return the clean image. ``reconstruct`` then cleans new noisy images. Saves
``denoising.png``: originals, noisy copies and the denoised reconstructions, one row
each, and prints the mean squared error against the originals before and after.

    python examples/image_denoising.py --out results/             # scikit-learn digits
    python examples/image_denoising.py --dataset fashion-mnist --out results/
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from aedetect import AEDetector  # noqa: E402
from aedetect.datasets import load_fashion_mnist  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "fashion-mnist"


def load_images(args):
    """Training and test images with pixels in [0, 1], shaped (n, H, W)."""
    if args.dataset == "digits":
        images = load_digits().images / 16.0
        return images[:1400], images[1400:]
    X_train, _ = load_fashion_mnist(args.data_dir, "train")
    X_test, _ = load_fashion_mnist(args.data_dir, "test")
    return X_train[: args.max_train], X_test


def plot_rows(rows, names, path):
    n_cols = rows[0].shape[0]
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(n_cols * 1.1, len(rows) * 1.25))
    for r, (images, name) in enumerate(zip(rows, names)):
        for c in range(n_cols):
            axes[r, c].imshow(images[c], cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for the PNG")
    parser.add_argument("--dataset", choices=("digits", "fashion-mnist"), default="digits")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--max-train", type=int, default=10000)
    parser.add_argument("--noise", type=float, default=0.3, help="Gaussian noise std")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    X_train, X_test = load_images(args)
    # The corruption regularizes; dropout on top of it blurs the output.
    detector = AEDetector(architecture="conv", conv_channels=(32, 64), latent_dim=32,
                          noise=args.noise, dropout=0.0, max_iter=args.epochs,
                          batch_size=64, device=args.device, random_state=0).fit(X_train)
    rng = np.random.RandomState(0)
    clean = X_test[:10]
    noisy = np.clip(clean + rng.normal(scale=args.noise, size=clean.shape), 0, 1)
    denoised = np.clip(detector.reconstruct(noisy), 0, 1)
    before, after = np.mean((noisy - clean) ** 2), np.mean((denoised - clean) ** 2)
    print(f"{args.dataset}: trained on {len(X_train)} images for {detector.n_iter_} epochs on "
          f"{detector.device_}. Mean squared error against the clean images: noisy "
          f"{before:.4f}, denoised {after:.4f} ({after / before:.0%} of the noise left).")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "denoising.png"
    plot_rows([clean, noisy, denoised], ["original", "noisy", "denoised"], path)
    print(f"Saved {path}")


if __name__ == "__main__":
    main()
