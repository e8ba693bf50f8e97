"""AAEDetector on scikit-learn's 8x8 digits: codes that fill the prior, and new digits.

Writes into --out:

- ``aae_latent.png``: the 2-D codes of every digit for the normal, uniform and mixture
  priors, over draws of each prior (the codes fill the prior);
- ``aae_samples.png``: a grid of digits decoded from draws of the normal prior;
- ``aae_conditional.png``: the conditional model, one row of samples per class;

and prints each model's discriminator accuracy on the last epoch and the outlier
detection AUC of the default detector on digits 0-4 with 5 % of sevens mixed in.

Run: ``python examples/aae_digits.py`` (figures in ``examples_out/``; about a minute on
one CPU core).
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import fit_options, output_folder, parser  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from aedetect import AAEDetector  # noqa: E402
from aedetect.datasets import load_digits_outliers  # noqa: E402

PRIORS = ("normal", "uniform", "mixture")


def parse_args(argv=None):
    return parser(__doc__, max_iter=100).parse_args(argv)


def prior_draws(detector, n_draws, seed):
    """Draws of the fitted detector's prior (the same distribution the codes match)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return detector.module_.prior.sample(n_draws).cpu().numpy()


def plot_latent(models, X, y, path):
    """Top row: draws of each prior; bottom row: the codes of the digits, same axes."""
    figure, axes = plt.subplots(2, len(models), figsize=(4.5 * len(models), 9),
                                sharex="col", sharey="col", constrained_layout=True)
    for column, (prior, detector) in enumerate(models.items()):
        draws = prior_draws(detector, len(X), 1)
        codes = detector.transform(X)
        axes[0, column].scatter(draws[:, 0], draws[:, 1], s=3, c="gray")
        axes[0, column].set_title(f"prior='{prior}': {len(X)} prior draws")
        points = axes[1, column].scatter(codes[:, 0], codes[:, 1], s=3, c=y, cmap="tab10")
        axes[1, column].set_title(f"prior='{prior}': codes of the {len(X)} digits")
        low, high = np.percentile(draws, [0.5, 99.5], axis=0)
        margin = 0.15 * (high - low)
        axes[0, column].set_xlim(low[0] - margin[0], high[0] + margin[0])
        axes[0, column].set_ylim(low[1] - margin[1], high[1] + margin[1])
    figure.colorbar(points, ax=axes[1], label="digit", ticks=range(10), shrink=0.8)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_images(images, n_rows, path, title, row_labels=None):
    n_cols = len(images) // n_rows
    figure, axes = plt.subplots(n_rows, n_cols, figsize=(n_cols * 0.8, n_rows * 0.8 + 0.5))
    for index, ax in enumerate(axes.ravel()):
        ax.imshow(np.clip(images[index], 0, 16).reshape(8, 8), cmap="gray_r", vmin=0, vmax=16)
        ax.set_xticks([])
        ax.set_yticks([])
        if row_labels is not None and index % n_cols == 0:
            ax.set_ylabel(str(row_labels[index // n_cols]), rotation=0, labelpad=10)
    figure.suptitle(title)
    figure.subplots_adjust(left=0.06, right=0.98, bottom=0.02, top=0.92, wspace=0.1, hspace=0.1)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv=None):
    args = parse_args(argv)
    output_folder(args)
    torch.set_num_threads(1)  # tiny networks: one thread is fastest
    X, y = load_digits(return_X_y=True)
    common = dict(latent_dim=2, batch_size=128, **fit_options(args))

    models = {prior: AAEDetector(prior=prior, **common).fit(X) for prior in PRIORS}
    for prior, detector in models.items():
        accuracy = detector.history_[-1]["discriminator_accuracy"]
        print(f"prior={prior!r}: {detector.n_iter_} epochs, discriminator accuracy on the "
              f"last epoch {accuracy:.2f} (0.5 = it cannot tell codes from prior draws)")
    plot_latent(models, X, y, args.out / "aae_latent.png")

    samples = models["normal"].sample(100, random_state=args.random_state)
    plot_images(samples, 10, args.out / "aae_samples.png", "Decoded draws of the normal prior")

    conditional = AAEDetector(conditional=True, **common).fit(X, y)
    labels = np.repeat(conditional.classes_, 10)
    samples = conditional.sample(len(labels), y=labels, random_state=args.random_state)
    plot_images(samples, 10, args.out / "aae_conditional.png",
                "conditional=True: one row of samples per class", row_labels=conditional.classes_)

    X_out, y_out = load_digits_outliers()
    detector = AAEDetector(**fit_options(args)).fit(X_out)  # defaults at --max-iter 100
    for score_type in ("combined", "reconstruction", "latent"):
        scores = detector.set_params(score_type=score_type).score_samples(X_out)
        print(f"digits 0-4 with 5% sevens, score_type={score_type!r}: "
              f"AUC {roc_auc_score(y_out, -scores):.3f}")
    print(f"figures written to {args.out}/")


if __name__ == "__main__":
    main()
