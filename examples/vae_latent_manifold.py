"""The 2-D latent space of a convolutional VAE trained on images.

Train ``VAEDetector(architecture='conv', latent_dim=2)`` and save two figures in one
PNG, ``latent_manifold.png``:

- left: the codes (``transform``, the posterior means) of test images, coloured by
  class; the prior is a standard normal, so they spread around the origin;
- right: the learned manifold: a grid of codes at the standard normal's quantiles,
  decoded to images with ``inverse_transform`` (Kingma and Welling 2014, figure 4).

    python examples/vae_latent_manifold.py                      # digits, seconds
    python examples/vae_latent_manifold.py --dataset fashion-mnist --out results/
    python examples/vae_latent_manifold.py --dataset fashion-mnist --max-train 60000 --max-iter 30
"""

from statistics import NormalDist

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from _common import fit_options, load_images, output_folder, parser  # noqa: E402

from aedetect import VAEDetector  # noqa: E402


def manifold(detector, n_grid):
    """Decoded images of an ``n_grid`` x ``n_grid`` grid of codes, tiled into one image."""
    quantiles = [NormalDist().inv_cdf(p) for p in np.linspace(0.05, 0.95, n_grid)]
    codes = np.array([[x, y] for y in quantiles[::-1] for x in quantiles])
    height, width = detector.input_shape_[-2:]
    images = detector.inverse_transform(codes).reshape(n_grid, n_grid, height, width)
    return images.transpose(0, 2, 1, 3).reshape(n_grid * height, n_grid * width)


def main(argv=None):
    parse = parser(__doc__, max_iter=20, images=True, max_train=10000)
    parse.add_argument("--grid", type=int, default=15, help="decoded images per side")
    args = parse.parse_args(argv)

    X_train, _, X_test, y_test, names = load_images(args)
    detector = VAEDetector(architecture="conv", conv_channels=(32, 64), latent_dim=2,
                           likelihood="bernoulli", batch_size=128,
                           **fit_options(args)).fit(X_train)
    print(f"Trained on {len(X_train)} {args.dataset} images for {detector.n_iter_} "
          f"epochs on {detector.device_}; final loss {detector.loss_curve_[-1]:.2f} nats.")
    codes = detector.transform(X_test)

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 6.2))
    points = left.scatter(codes[:, 0], codes[:, 1], c=y_test, cmap="tab10", s=3, alpha=0.6)
    handles = [plt.Line2D([], [], marker="o", ls="", color=points.cmap(points.norm(k)))
               for k in range(10)]
    left.legend(handles, names, fontsize=7, loc="upper right", markerscale=1)
    left.set(title="Test codes (posterior means)", xlabel="z1", ylabel="z2")
    right.imshow(manifold(detector, args.grid), cmap="gray", vmin=0, vmax=1)
    right.set(title="Decoded grid of codes (5% to 95% prior quantiles)", xticks=[], yticks=[])
    fig.tight_layout()
    path = output_folder(args) / "latent_manifold.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"Saved {path}")


if __name__ == "__main__":
    main()
