"""Denoising images with a convolutional autoencoder.

Train ``AEDetector(architecture='conv', noise=...)`` on clean images: during training
each batch is corrupted (Gaussian noise, clipped to the pixel range) and the network
learns to return the clean image. ``reconstruct`` then cleans new noisy images. Saves
``denoising.png``: originals, noisy copies and the denoised reconstructions, one row
each, and prints the mean squared error against the originals before and after.

    python examples/image_denoising.py                            # scikit-learn digits
    python examples/image_denoising.py --dataset fashion-mnist --out results/
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from _common import fit_options, load_images, output_folder, parser  # noqa: E402

from aedetect import AEDetector  # noqa: E402


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
    parse = parser(__doc__, max_iter=30, images=True, max_train=10000)
    parse.add_argument("--noise", type=float, default=0.3, help="Gaussian noise std")
    parse.add_argument("--dropout", type=float, default=0.0,
                       help="dropout rate (default 0: the corruption already regularizes)")
    args = parse.parse_args(argv)

    X_train, _, X_test, _, _ = load_images(args)
    # The corruption regularizes; dropout on top of it blurs the output.
    detector = AEDetector(architecture="conv", conv_channels=(32, 64), latent_dim=32,
                          noise=args.noise, dropout=args.dropout, batch_size=64,
                          **fit_options(args)).fit(X_train)
    rng = np.random.RandomState(0)
    clean = X_test[:10]
    noisy = np.clip(clean + rng.normal(scale=args.noise, size=clean.shape), 0, 1)
    denoised = np.clip(detector.reconstruct(noisy), 0, 1)
    before, after = np.mean((noisy - clean) ** 2), np.mean((denoised - clean) ** 2)
    print(f"{args.dataset}: trained on {len(X_train)} images for {detector.n_iter_} epochs on "
          f"{detector.device_}. Mean squared error against the clean images: noisy "
          f"{before:.4f}, denoised {after:.4f} ({after / before:.0%} of the noise left, dropout {args.dropout}).")
    path = output_folder(args) / "denoising.png"
    plot_rows([clean, noisy, denoised], ["original", "noisy", "denoised"], path)
    print(f"Saved {path}")


if __name__ == "__main__":
    main()
