"""The 2-D latent space of a convolutional VAE trained on Fashion-MNIST.

Train ``VAEDetector(architecture='conv', latent_dim=2)`` and save two figures in one
PNG, ``latent_manifold.png``:

- left: the codes (``transform``, the posterior means) of test images, coloured by
  class; the prior is a standard normal, so they spread around the origin;
- right: the learned manifold: a grid of codes at the standard normal's quantiles,
  decoded to images with ``inverse_transform`` (Kingma and Welling 2014, figure 4).

    python examples/vae_latent_manifold.py --out results/
    python examples/vae_latent_manifold.py --max-train 60000 --epochs 30 --out results/
"""

import argparse
from pathlib import Path
from statistics import NormalDist

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from aedetect import VAEDetector  # noqa: E402
from aedetect.datasets import FASHION_MNIST_CLASSES, load_fashion_mnist  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "fashion-mnist"


def manifold(detector, n_grid):
    """Decoded images of an ``n_grid`` x ``n_grid`` grid of codes, tiled into one image."""
    quantiles = [NormalDist().inv_cdf(p) for p in np.linspace(0.05, 0.95, n_grid)]
    codes = np.array([[x, y] for y in quantiles[::-1] for x in quantiles])
    images = detector.inverse_transform(codes).reshape(n_grid, n_grid, 28, 28)
    return images.transpose(0, 2, 1, 3).reshape(n_grid * 28, n_grid * 28)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for the PNG")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--max-train", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--grid", type=int, default=15, help="decoded images per side")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    X_train, _ = load_fashion_mnist(args.data_dir, "train")
    X_test, y_test = load_fashion_mnist(args.data_dir, "test")
    detector = VAEDetector(architecture="conv", conv_channels=(32, 64), latent_dim=2,
                           likelihood="bernoulli", max_iter=args.epochs, batch_size=128,
                           device=args.device, random_state=0).fit(X_train[: args.max_train])
    print(f"Trained on {min(args.max_train, len(X_train))} images for {detector.n_iter_} "
          f"epochs on {detector.device_}; final loss {detector.loss_curve_[-1]:.2f} nats.")
    codes = detector.transform(X_test)

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 6.2))
    points = left.scatter(codes[:, 0], codes[:, 1], c=y_test, cmap="tab10", s=3, alpha=0.6)
    handles = [plt.Line2D([], [], marker="o", ls="", color=points.cmap(points.norm(k)))
               for k in range(10)]
    left.legend(handles, FASHION_MNIST_CLASSES, fontsize=7, loc="upper right", markerscale=1)
    left.set(title="Test codes (posterior means)", xlabel="z1", ylabel="z2")
    right.imshow(manifold(detector, args.grid), cmap="gray", vmin=0, vmax=1)
    right.set(title="Decoded grid of codes (5% to 95% prior quantiles)", xticks=[], yticks=[])
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "latent_manifold.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"Saved {path}")


if __name__ == "__main__":
    main()
