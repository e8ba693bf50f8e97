"""Save each candidate ensemble member's scores, so that ensembles are compared offline.

For every ADBench dataset and seed (the protocol of ``adbench.py``: a stratified 70/30
split, seeds 0-2), each member in ``MEMBERS`` is fitted once on the training split and
its ``score_samples`` on the training and the test rows are written to
``OUT/<dataset>/seed<k>/<member>.npz`` (with ``y_test`` and the fit time). Existing files
are kept, so an interrupted run resumes. ``ensemble_selection.py`` then scores every
combination of members from these files: choosing an ensemble costs one fit per member,
not one per combination.

Example::

    python benchmarks/member_scores.py ../shared/data/adbench --out DIR --jobs 2 --threads 1
"""

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import adbench  # noqa: E402

#: member name -> (detector class, parameters). The names are file names.
MEMBERS = {
    "AE": ("AEDetector", {}),
    "AE-entropy": ("AEDetector", {"early_stopping": "entropy"}),
    "AE-entropy-minmax": ("AEDetector", {"early_stopping": "entropy", "scaling": "minmax"}),
    "VAE": ("VAEDetector", {}),
    "VAE-ld2": ("VAEDetector", {"latent_dim": 2}),
    "VAE-minmax": ("VAEDetector", {"scaling": "minmax"}),
    "VAE-ld2-minmax": ("VAEDetector", {"latent_dim": 2, "scaling": "minmax"}),
    # a second pool, added after the first had been scored: other scalings and scores
    "VAE-standard": ("VAEDetector", {"scaling": "standard"}),
    "AE-entropy-standard": ("AEDetector", {"early_stopping": "entropy",
                                           "scaling": "standard"}),
    "VAE-latent": ("VAEDetector", {"score_type": "latent"}),
    "AE-entropy-combined": ("AEDetector", {"early_stopping": "entropy",
                                           "score_type": "combined"}),
}


def member_path(out, dataset, seed, member):
    return Path(out) / dataset / f"seed{seed}" / f"{member}.npz"


def run_member(task):
    path, seed, member, out, threads = task
    import torch

    import aedetect

    torch.set_num_threads(threads)
    X, y = adbench.load_dataset(path)
    X_train, X_test, _, y_test = adbench.split(X, y, seed)
    class_name, params = MEMBERS[member]
    detector = getattr(aedetect, class_name)(random_state=seed, **params)
    start = time.perf_counter()
    detector.fit(X_train)
    fit_seconds = time.perf_counter() - start
    target = member_path(out, adbench.dataset_name(path), seed, member)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial.npz")
    np.savez(partial, train_scores=detector.score_samples(X_train),
             test_scores=detector.score_samples(X_test), y_test=y_test,
             fit_seconds=fit_seconds)
    os.replace(partial, target)
    return f"{adbench.dataset_name(path):>12} seed {seed} {member:<18} fit {fit_seconds:.1f}s"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", nargs="?", default=adbench.default_data_dir())
    parser.add_argument("--out", required=True, help="folder for the score files")
    parser.add_argument("--members", nargs="+", default=list(MEMBERS), choices=list(MEMBERS))
    parser.add_argument("--datasets", nargs="+", default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args(argv)
    paths = adbench.find_datasets(args.data_dir, args.datasets)
    tasks = [(path, seed, member, args.out, args.threads)
             for path in paths for seed in args.seeds for member in args.members
             if not member_path(args.out, adbench.dataset_name(path), seed, member).exists()]
    tasks.sort(key=lambda task: os.path.getsize(task[0]), reverse=True)
    print(f"{len(tasks)} fits to run -> {args.out}", flush=True)
    if args.jobs == 1:
        adbench.warm_up(args.threads, pyod=False)
        results = map(run_member, tasks)
    else:
        pool = multiprocessing.get_context("spawn").Pool(
            args.jobs, initializer=adbench.warm_up, initargs=(args.threads, False))
        results = pool.imap_unordered(run_member, tasks)
    for done, line in enumerate(results, 1):
        print(f"[{done}/{len(tasks)}] {line}", flush=True)


if __name__ == "__main__":
    main()
