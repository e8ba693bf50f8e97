"""A VAE with a 2-D latent space on scikit-learn's 8x8 digits: the learned manifold.

Trains ``VAEDetector`` with a Bernoulli decoder on the pixels scaled to [0, 1], then
saves two figures into ``--out``:

- ``vae_digits_manifold.png``: the decoder's mean image at each point of a grid of
  latent codes placed at normal quantiles (so each cell covers the same prior mass);
- ``vae_digits_codes.png``: the posterior mean of every image, coloured by digit.

Run::

    python examples/vae_digits_manifold.py              # figures in examples_out/
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from _common import fit_options, output_folder, parser  # noqa: E402
from scipy.stats import norm  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from aedetect import VAEDetector  # noqa: E402


def parse_args(argv=None):
    parse = parser(__doc__, max_iter=150)
    parse.add_argument("--grid", type=int, default=15, help="grid points per latent axis")
    return parse.parse_args(argv)


def manifold_figure(detector, n_grid):
    """Decoded images on an ``n_grid x n_grid`` grid of normal quantiles."""
    quantiles = norm.ppf(np.linspace(0.5 / n_grid, 1 - 0.5 / n_grid, n_grid))
    z1, z2 = np.meshgrid(quantiles, quantiles[::-1])  # z2 grows upwards
    codes = np.column_stack([z1.ravel(), z2.ravel()])
    images = detector.inverse_transform(codes).reshape(n_grid, n_grid, 8, 8)
    # A one-pixel grey border around each 8x8 image keeps neighbours apart.
    framed = np.pad(images, ((0, 0), (0, 0), (1, 0), (1, 0)), constant_values=np.nan)
    canvas = framed.transpose(0, 2, 1, 3).reshape(n_grid * 9, n_grid * 9)
    cmap = plt.get_cmap("gray_r").copy()
    cmap.set_bad("#bbbbbb")
    fig, ax = plt.subplots(figsize=(7, 7))
    ax.imshow(canvas, cmap=cmap, vmin=0, vmax=1, extent=(0, n_grid, 0, n_grid),
              interpolation="nearest")
    ticks = np.arange(n_grid) + 0.5
    labels = [f"{q:.1f}" for q in quantiles]
    ax.set_xticks(ticks[::2], labels[::2])
    ax.set_yticks(ticks[::2], labels[::2])
    ax.set_xlabel("z1 (normal quantiles)")
    ax.set_ylabel("z2 (normal quantiles)")
    ax.set_title("Decoder mean over the latent space")
    fig.tight_layout()
    return fig


def codes_figure(codes, digits):
    """Posterior means coloured by digit."""
    fig, ax = plt.subplots(figsize=(7, 6))
    points = ax.scatter(codes[:, 0], codes[:, 1], c=digits, cmap="tab10", s=6, alpha=0.8)
    fig.colorbar(points, ax=ax, ticks=range(10), label="digit")
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_title("Posterior means of the digits (transform)")
    fig.tight_layout()
    return fig


def main(argv=None):
    args = parse_args(argv)
    out = output_folder(args)
    digits = load_digits()
    X = digits.data / 16.0  # pixels in [0, 1] for the Bernoulli likelihood
    detector = VAEDetector(likelihood="bernoulli", latent_dim=2, hidden_layer_sizes=(128, 64),
                           batch_size=64, n_iter_no_change=25, **fit_options(args)).fit(X)
    last = detector.history_[-1]
    print(f"{detector.n_iter_} epochs: reconstruction {last['reconstruction']:.2f} nats, "
          f"KL {last['kl']:.2f} nats per image")
    scores = detector.score_samples(X)
    print(f"ELBO per image: median {np.median(scores):.2f} nats, "
          f"lowest {scores.min():.2f} (image {scores.argmin()}, digit "
          f"{digits.target[scores.argmin()]})")

    paths = {"vae_digits_manifold.png": manifold_figure(detector, args.grid),
             "vae_digits_codes.png": codes_figure(detector.transform(X), digits.target)}
    for name, fig in paths.items():
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        print(f"saved {out / name}")


if __name__ == "__main__":
    main()
