"""Fit and score a float32 memmap bigger than the scaled copies a fit would otherwise make.

Writes ``--rows`` x 50 synthetic rows (a 3-dimensional curved manifold plus noise, as
the tests use) to a ``.npy`` file in a temporary folder, opens it with
``np.load(..., mmap_mode="r")``, then in this process:

1. fits ``AEDetector`` on the memmap (streamed: ``aedetect._streaming``);
2. scores every row of the memmap;
3. fits the same detector in memory on a random subsample of ``--subsample`` rows
   for ``--subsample-epochs`` epochs (a subsample needs more epochs than the whole);
4. compares the two on 20,000 held-out rows, 10% of them shifted (AUC-ROC).

Peak anonymous memory is sampled from ``/proc/self/status`` (``RssAnon``: the
memmap's file pages are not counted, they belong to the page cache) every 10 ms during
each step; rows per second count rows x epochs for training.

Example::

    python benchmarks/out_of_core.py --rows 10000000 --out benchmarks/results
"""

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

N_FEATURES = 50


def rss_anon_bytes():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status (Linux only)")


class PeakMemory:
    """The largest ``RssAnon`` seen while the ``with`` block runs."""

    def __enter__(self):
        self.peak, self._done = rss_anon_bytes(), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._done.wait(0.01):
            self.peak = max(self.peak, rss_anon_bytes())

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, rss_anon_bytes())


def make_rows(rng, weights, n, shift=0.0):
    latent = rng.normal(size=(n, 3))
    rows = np.tanh(latent @ weights) + 0.05 * rng.normal(size=(n, N_FEATURES)) + shift
    return rows.astype(np.float32)


def write_memmap(path, n_rows, weights, seed, chunk=500_000):
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                    shape=(n_rows, N_FEATURES))
    for start in range(0, n_rows, chunk):
        stop = min(start + chunk, n_rows)
        out[start:stop] = make_rows(rng, weights, stop - start)
    out.flush()
    del out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--subsample", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=1, help="epochs of the streamed fit")
    parser.add_argument("--subsample-epochs", type=int, default=20,
                        help="epochs of the in-memory fit on the subsample")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="folder for out_of_core.md")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from sklearn.metrics import roc_auc_score

    from aedetect import AEDetector

    rng = np.random.default_rng(0)
    weights = rng.normal(size=(3, N_FEATURES))
    X_test = np.vstack([make_rows(rng, weights, 18_000), make_rows(rng, weights, 2_000, 0.1)])
    y_test = np.r_[np.zeros(18_000), np.ones(2_000)]
    options = dict(max_iter=args.epochs, batch_size=args.batch_size, random_state=0)
    lines = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rows.npy"
        write_memmap(path, args.rows, weights, seed=1)
        rows = np.load(path, mmap_mode="r")
        gib = rows.nbytes / 2**30
        base = rss_anon_bytes()
        with PeakMemory() as fit_memory:
            start = time.perf_counter()
            detector = AEDetector(**options).fit(rows)
            fit_seconds = time.perf_counter() - start
        with PeakMemory() as score_memory:
            start = time.perf_counter()
            scores = detector.score_samples(rows)
            score_seconds = time.perf_counter() - start
        assert scores.shape == (args.rows,) and np.isfinite(scores).all()
        streamed_auc = roc_auc_score(y_test, -detector.score_samples(X_test))
        sample = np.sort(np.random.default_rng(2).choice(args.rows, args.subsample,
                                                         replace=False))
        in_memory = np.asarray(rows[sample])
        del rows, scores
    start = time.perf_counter()
    small = AEDetector(**{**options, "max_iter": args.subsample_epochs}).fit(in_memory)
    small_seconds = time.perf_counter() - start
    small_auc = roc_auc_score(y_test, -small.score_samples(X_test))

    lines += [
        f"{args.rows:,} x {N_FEATURES} float32 rows in a memmap ({gib:.2f} GiB), "
        f"`AEDetector(max_iter={args.epochs}, batch_size={args.batch_size})`, "
        f"torch {torch.__version__} with {args.threads} thread(s); RssAnon before the fit "
        f"{base / 2**20:.0f} MiB.",
        "",
        "| step | seconds | rows per second | peak RssAnon |",
        "| --- | ---: | ---: | ---: |",
        f"| fit (streamed) | {fit_seconds:.1f} | {args.rows * detector.n_iter_ / fit_seconds:,.0f}"
        f" | {fit_memory.peak / 2**30:.2f} GiB |",
        f"| score_samples, every row | {score_seconds:.1f} | {args.rows / score_seconds:,.0f} | "
        f"{score_memory.peak / 2**30:.2f} GiB |",
        f"| fit in memory, {args.subsample:,} rows, {small.n_iter_} epochs | "
        f"{small_seconds:.1f} | "
        f"{args.subsample * small.n_iter_ / small_seconds:,.0f} | |",
        "",
        f"AUC-ROC on 20,000 held-out rows (10% shifted by 0.1): streamed fit on all rows "
        f"{streamed_auc:.4f}, in-memory fit on {args.subsample:,} rows {small_auc:.4f}.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        out = Path(args.out) / "out_of_core.md"
        out.write_text("# Out-of-core fit (issue 17)\n\nCommand: `python benchmarks/out_of_core.py "
                       f"--rows {args.rows} --epochs {args.epochs} --subsample {args.subsample} "
                       f"--subsample-epochs {args.subsample_epochs} --batch-size "
                       f"{args.batch_size} --threads {args.threads} --out {args.out}`\n\n"
                       + text + "\n")


if __name__ == "__main__":
    main()
