"""Do AAEDetector's codes match its prior at the defaults? One change at a time.

For each variant (a set of parameters and of the training constants of
``aedetect.models.aae``), dataset, prior and seed: fit ``AAEDetector`` with only
``prior`` and ``random_state`` set (plus the variant's changes), take
``transform(X)`` of the training rows and measure, per code dimension:

- ``mean_dev``: ``|mean - prior mean| / prior sd`` (target <= 0.25);
- ``ks``: the Kolmogorov-Smirnov statistic against the prior's marginal (target <= 0.10);
- ``wrong_family``: the dimensions whose shape (codes standardized by their own mean
  and sd) is closer to the other family (normal vs uniform) than to the prior's
  (target 0);
- ``share_err``: for the mixture, the largest gap in points between the share of codes
  nearest a component and its weight (target <= 5).

Every figure is the worst over the dimensions; the markdown report shows the worst
over the seeds. Datasets: scikit-learn's digits / 16 (1797 x 64, code size 16) and
breast cancer standardized (569 x 30, code size 7).

    python benchmarks/aae_prior_fit.py --variants before defaults --priors normal
    python benchmarks/aae_prior_fit.py --report-only
"""

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.preprocessing import StandardScaler

from aedetect import AAEDetector
from aedetect.models import aae as aae_model
from aedetect.priors import mixture_means

OUT = Path(__file__).resolve().parent / "results" / "aae"
FIELDS = ["variant", "dataset", "prior", "seed", "latent_dim", "mean_dev", "ks",
          "wrong_family", "share_err", "accuracy", "epochs", "seconds"]
#: The training constants of aedetect.models.aae before issue 13.
BEFORE = {"EVAL_CODES": False, "GENERATOR_LR_FACTOR": 1.0, "GRADIENT_PENALTY": 0.0,
          "ADVANTAGE_WEIGHT": 0.25, "ADVERSARIAL_BATCH": None, "REAL_LABEL": 0.9,
          "PRIOR_MATCH_WEIGHT": 0.0, "PRIOR_MATCH_DIRECTIONS": 32, "PRIOR_MATCH_LR_FACTOR": 1.0,
          "PRIOR_MATCH_SCALED": False, "PRIOR_MATCH_SPACE": "code",
          "PRIOR_MATCH_DRAWS": 1, "PRIOR_MATCH_STEPS": 1, "PRIOR_MATCH_BY_PRIOR": {},
          "CENTRE_CODES": False}
EVAL = {**BEFORE, "EVAL_CODES": True}
FULL = {"n_iter_no_change": 1000}  # no stopping: all 100 epochs
CANDIDATE = {**EVAL, "GENERATOR_LR_FACTOR": 0.1, "GRADIENT_PENALTY": 1.0,
             "ADVANTAGE_WEIGHT": 0.0}
#: The adversarial game of the defaults before the prior-matching step (issue 13's
#: ``candidate_adv_batch_64``); the ``swd_*`` variants add the sliced Wasserstein step.
ADVERSARIAL = {**CANDIDATE, "ADVERSARIAL_BATCH": 64}
SWD = {**ADVERSARIAL, "PRIOR_MATCH_WEIGHT": 1.0}
SWD_KEPT = {**SWD, "PRIOR_MATCH_SCALED": True, "PRIOR_MATCH_SPACE": "encoder",
            "PRIOR_MATCH_DRAWS": 8}
#: Each variant: estimator parameters and training constants of aedetect.models.aae
#: (every constant named, so a variant does not change when the defaults do).
#: ``defaults`` patches nothing. Rows of variants not listed here were measured with
#: knobs since removed (see results/aae/README.md).
VARIANTS = {
    "before": {"patch": BEFORE},
    "eval_codes": {"patch": EVAL},
    # one change each on top of eval_codes
    "g_lr_x0.25": {"patch": {**EVAL, "GENERATOR_LR_FACTOR": 0.25}},
    "g_lr_x0.1": {"patch": {**EVAL, "GENERATOR_LR_FACTOR": 0.1}},
    "g_lr_x0.03": {"patch": {**EVAL, "GENERATOR_LR_FACTOR": 0.03}},
    "r1_1": {"patch": {**EVAL, "GRADIENT_PENALTY": 1.0}},
    "d_256x256": {"patch": EVAL, "params": {"discriminator_layer_sizes": (256, 256)}},
    "no_label_smoothing": {"patch": {**EVAL, "REAL_LABEL": 1.0}},
    "batch_64": {"patch": EVAL, "params": {"batch_size": 64}},
    "d_lr_5e-3_g_lr_1e-3": {"patch": {**EVAL, "GENERATOR_LR_FACTOR": 0.2},
                            "params": {"adversarial_learning_rate": 5e-3}},
    "epochs_300_no_stop": {"patch": EVAL,
                           "params": {"max_iter": 300, "n_iter_no_change": 1000}},
    # without the stopping rule (all 100 epochs)
    "g_lr_x0.25_full": {"patch": {**EVAL, "GENERATOR_LR_FACTOR": 0.25}, "params": FULL},
    "g_lr_x0.1_full": {"patch": {**EVAL, "GENERATOR_LR_FACTOR": 0.1}, "params": FULL},
    "g_lr_x0.1_r1_full": {"patch": {**EVAL, "GENERATOR_LR_FACTOR": 0.1,
                                    "GRADIENT_PENALTY": 1.0}, "params": FULL},
    "g_lr_x0.1_r1_10_full": {"patch": {**EVAL, "GENERATOR_LR_FACTOR": 0.1,
                                       "GRADIENT_PENALTY": 10.0}, "params": FULL},
    "g_lr_x0.2_r1_full": {"patch": {**EVAL, "GENERATOR_LR_FACTOR": 0.2,
                                    "GRADIENT_PENALTY": 1.0}, "params": FULL},
    # the stopping rule on the reconstruction alone
    "g_lr_x0.1_r1_watch_reconstruction": {"patch": CANDIDATE},
    "candidate": {"patch": CANDIDATE},
    "candidate_g_lr_x0.3": {"patch": {**CANDIDATE, "GENERATOR_LR_FACTOR": 0.3}},
    "candidate_g_lr_x0.3_r1_0.1": {"patch": {**CANDIDATE, "GENERATOR_LR_FACTOR": 0.3,
                                             "GRADIENT_PENALTY": 0.1}},
    # adversarial steps on sub-batches
    "candidate_adv_batch_32": {"patch": {**CANDIDATE, "ADVERSARIAL_BATCH": 32}},
    "candidate_adv_batch_64": {"patch": {**CANDIDATE, "ADVERSARIAL_BATCH": 64}},
    "candidate_adv_batch_64_g_lr_x0.3": {"patch": {**CANDIDATE, "ADVERSARIAL_BATCH": 64,
                                                   "GENERATOR_LR_FACTOR": 0.3}},
    # + the prior-matching step (sliced Wasserstein distance, its own Adam of the
    # encoder at learning_rate_init x PRIOR_MATCH_LR_FACTOR, after each sub-batch's
    # adversarial steps); one change at a time
    "swd_step": {"patch": SWD},
    "swd_step_lr_x0.3": {"patch": {**SWD, "PRIOR_MATCH_LR_FACTOR": 0.3}},
    "swd_step_lr_x3": {"patch": {**SWD, "PRIOR_MATCH_LR_FACTOR": 3.0}},
    "swd_step_no_generator": {"patch": {**SWD, "GENERATOR_LR_FACTOR": 1e-9}},
    # each direction's term divided by the prior's variance along it
    "swd_step_scaled": {"patch": {**SWD, "PRIOR_MATCH_SCALED": True}},
    # the uniform's encoder output before the erf map against normal draws
    "swd_step_scaled_pre_map": {"patch": {**SWD, "PRIOR_MATCH_SCALED": True,
                                          "PRIOR_MATCH_SPACE": "encoder"}},
    # the i-th smallest code against the quantile of 8x (32x) as many draws: the defaults
    "swd_step_scaled_pre_map_draws_8": {"patch": SWD_KEPT},
    "swd_step_scaled_pre_map_draws_32": {"patch": {**SWD_KEPT, "PRIOR_MATCH_DRAWS": 32}},
    "swd_step_scaled_pre_map_draws_8_lr_x2": {"patch": {**SWD_KEPT,
                                                        "PRIOR_MATCH_LR_FACTOR": 2.0}},
    "swd_step_scaled_pre_map_draws_8_lr_x3": {"patch": {**SWD_KEPT,
                                                        "PRIOR_MATCH_LR_FACTOR": 3.0}},
    "swd_step_scaled_pre_map_draws_8_g_lr_x0.03": {"patch": {**SWD_KEPT,
                                                             "GENERATOR_LR_FACTOR": 0.03}},
    # the uniform and mixture priors only (PRIOR_MATCH_BY_PRIOR; the normal's unchanged)
    "um_match_steps_2": {"patch": {**SWD_KEPT, "PRIOR_MATCH_BY_PRIOR": {
        "UniformPrior": {"PRIOR_MATCH_STEPS": 2}, "MixturePrior": {"PRIOR_MATCH_STEPS": 2}}}},
    "um_directions_64": {"patch": {**SWD_KEPT, "PRIOR_MATCH_BY_PRIOR": {
        "UniformPrior": {"PRIOR_MATCH_DIRECTIONS": 64},
        "MixturePrior": {"PRIOR_MATCH_DIRECTIONS": 64}}}},
    "u_code_space": {"patch": {**SWD_KEPT, "PRIOR_MATCH_BY_PRIOR": {
        "UniformPrior": {"PRIOR_MATCH_SPACE": "code"}}}},
    "m_lr_x0.5": {"patch": {**SWD_KEPT, "PRIOR_MATCH_BY_PRIOR": {
        "MixturePrior": {"PRIOR_MATCH_LR_FACTOR": 0.5}}}},
    "m_lr_x1.25": {"patch": {**SWD_KEPT, "PRIOR_MATCH_BY_PRIOR": {
        "MixturePrior": {"PRIOR_MATCH_LR_FACTOR": 1.25}}}},
    "m_lr_x1.5": {"patch": {**SWD_KEPT, "PRIOR_MATCH_BY_PRIOR": {
        "MixturePrior": {"PRIOR_MATCH_LR_FACTOR": 1.5}}}},
    "u_lr_x1.5": {"patch": {**SWD_KEPT, "PRIOR_MATCH_BY_PRIOR": {
        "UniformPrior": {"PRIOR_MATCH_LR_FACTOR": 1.5}}}},
    # the defaults without the centring of the codes after training
    "uncentred": {"patch": {"CENTRE_CODES": False}},
    "defaults": {},
}


def load(name):
    """Training rows of dataset ``name``."""
    if name == "digits":
        return load_digits(return_X_y=True)[0] / 16.0
    if name == "breast_cancer":
        return StandardScaler().fit_transform(load_breast_cancer(return_X_y=True)[0])
    raise ValueError(f"unknown dataset {name!r}")


def marginal(prior, scale=1.0):
    """``(mean, sd, cdf, other_cdf)`` of one standardized code dimension: the prior's
    shape and the other family's (both with mean 0 and sd 1)."""
    normal, uniform = stats.norm(), stats.uniform(-math.sqrt(3), 2 * math.sqrt(3))
    if prior == "normal":
        return 0.0, scale, normal.cdf, uniform.cdf
    return 0.0, scale / math.sqrt(3), uniform.cdf, normal.cdf


def prior_fit(codes, prior, n_components=10, scale=1.0):
    """The four figures of the module docstring for ``codes`` of a fit with ``prior``."""
    if prior == "mixture":
        means = mixture_means(codes.shape[1], n_components, scale).numpy()
        draws = means[np.random.RandomState(0).randint(n_components, size=200000)]
        draws = draws + scale * np.random.RandomState(1).normal(size=draws.shape)
        sd = draws.std(axis=0)
        mean_dev = np.abs(codes.mean(axis=0) - draws.mean(axis=0)) / sd
        ks = [stats.ks_2samp(codes[:, j], draws[:, j]).statistic for j in range(codes.shape[1])]
        nearest = ((codes[:, None] - means[None]) ** 2).sum(axis=2).argmin(axis=1)
        shares = np.bincount(nearest, minlength=n_components) / len(codes)
        return {"mean_dev": mean_dev.max(), "ks": max(ks), "wrong_family": "",
                "share_err": 100 * np.abs(shares - 1 / n_components).max()}
    mean, sd, cdf, other_cdf = marginal(prior, scale)
    mean_dev = np.abs(codes.mean(axis=0) - mean) / sd
    ks = [stats.kstest((codes[:, j] - mean) / sd, cdf).statistic for j in range(codes.shape[1])]
    shape = (codes - codes.mean(axis=0)) / codes.std(axis=0)
    wrong = sum(stats.kstest(shape[:, j], other_cdf).statistic
                < stats.kstest(shape[:, j], cdf).statistic for j in range(codes.shape[1]))
    return {"mean_dev": mean_dev.max(), "ks": max(ks), "wrong_family": int(wrong),
            "share_err": ""}


def run_one(variant, dataset, prior, seed):
    """One fit of ``variant``; returns its CSV row."""
    spec = VARIANTS[variant]
    saved = {name: getattr(aae_model, name) for name in spec.get("patch", {})}
    try:
        for name, value in spec.get("patch", {}).items():
            setattr(aae_model, name, value)
        X = load(dataset)
        start = time.perf_counter()
        detector = AAEDetector(prior=prior, random_state=seed, **spec.get("params", {})).fit(X)
        seconds = time.perf_counter() - start
    finally:
        for name, value in saved.items():
            setattr(aae_model, name, value)
    figures = prior_fit(detector.transform(X), prior)
    return {"variant": variant, "dataset": dataset, "prior": prior, "seed": seed,
            "latent_dim": detector.latent_dim_, **figures,
            "accuracy": detector.history_[-1]["discriminator_accuracy"],
            "epochs": detector.n_iter_, "seconds": seconds}


def report(rows):
    """Markdown: per variant, dataset and prior, the worst figure over the seeds."""
    groups = {}
    for row in rows:
        groups.setdefault((row["variant"], row["dataset"], row["prior"]), []).append(row)
    lines = ["| variant | dataset | prior | seeds | mean_dev (<=0.25) | KS (<=0.10) | "
             "wrong family (0) | share err pts (<=5) | D accuracy | epochs | s/fit | pass |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    order = list(VARIANTS)
    for key in sorted(groups, key=lambda k: (order.index(k[0]) if k[0] in order else 99,
                                             k[1], k[2])):
        group = groups[key]

        def worst(name, reduce=max):
            values = [float(r[name]) for r in group if r[name] != ""]
            return reduce(values) if values else None

        mean_dev, ks = worst("mean_dev"), worst("ks")
        wrong, share = worst("wrong_family"), worst("share_err")
        ok = mean_dev <= 0.25 and ks <= 0.10 and (wrong or 0) == 0 and (share or 0) <= 5
        cell = [f"{mean_dev:.2f}", f"{ks:.3f}", "" if wrong is None else f"{wrong:.0f}",
                "" if share is None else f"{share:.1f}",
                f"{np.mean([float(r['accuracy']) for r in group]):.2f}",
                f"{np.mean([float(r['epochs']) for r in group]):.0f}",
                f"{np.mean([float(r['seconds']) for r in group]):.1f}"]
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {len(group)} | "
                     + " | ".join(cell) + f" | {'yes' if ok else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--datasets", nargs="+", default=["digits", "breast_cancer"])
    parser.add_argument("--priors", nargs="+", default=["normal", "uniform", "mixture"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "prior_fit.csv"
    rows = list(csv.DictReader(path.open())) if path.exists() else []
    if not args.report_only:
        for variant in args.variants:
            for dataset in args.datasets:
                for prior in args.priors:
                    for seed in args.seeds:
                        row = run_one(variant, dataset, prior, seed)
                        rows = [r for r in rows if (r["variant"], r["dataset"], r["prior"],
                                                    str(r["seed"])) != (variant, dataset,
                                                                        prior, str(seed))]
                        rows.append({k: (f"{v:.4f}" if isinstance(v, float) else v)
                                     for k, v in row.items()})
                        print(row, file=sys.stderr, flush=True)
                        with path.open("w", newline="") as f:
                            writer = csv.DictWriter(f, FIELDS)
                            writer.writeheader()
                            writer.writerows(rows)
    (args.out / "prior_fit.md").write_text(report(rows))
    print(report(rows))


if __name__ == "__main__":
    main()
