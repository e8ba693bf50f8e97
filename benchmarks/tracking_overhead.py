"""What MLflow logging costs a fit: a 50-epoch fit on 500 rows, with and without tracking.

Five settings run alternately (plain; tracked, the epoch metrics written in one batch;
tracked with one write per epoch, ``flush_interval=0``; the default callback with its
plots, drawn on the tracking worker after ``fit`` returns; the same with
``asynchronous=False``, drawn inside ``fit``), each tracked fit in its own fresh run of
a SQLite store in a temporary directory, after one warm-up fit of each (MLflow's import
and the store's schema are paid once per process, not per fit). Torch uses one thread.
Reported per setting: the median, min and max seconds of the ``fit`` call, the overhead
of the medians against the plain median, the median over rounds of (tracked / plain - 1)
within a round, and the same two for the time from the start of ``fit`` until
``aedetect.tracking.flush()`` returns (everything logged and the run ended). Each
tracked fit is flushed before the next fit starts, so no fit shares the CPU with an
earlier fit's plots. Every tracked run is checked to hold all 50 steps of ``loss`` and
to be FINISHED.

Example::

    OMP_NUM_THREADS=1 python benchmarks/tracking_overhead.py --out benchmarks/results \
        --repeats 9 --features 64
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

SETTINGS = ("plain", "tracked", "tracked, a write per epoch", "tracked + plots",
            "tracked + plots, asynchronous=False")


def fit_once(setting, X, client, experiment_id):
    """Seconds of the ``fit`` call, and from its start until ``flush()`` returns."""
    from aedetect import AEDetector
    from aedetect.tracking import MLflowCallback, flush

    callbacks = None
    if setting != "plain":
        callback = MLflowCallback(client=client, experiment_id=experiment_id,
                                  log_plots="plots" in setting,
                                  flush_interval=0 if "per epoch" in setting else 10.0,
                                  asynchronous="asynchronous=False" not in setting)
        callbacks = [callback]
    detector = AEDetector(max_iter=50, n_iter_no_change=1000, random_state=0,
                          device="cpu", callbacks=callbacks)
    start = time.perf_counter()
    detector.fit(X)
    seconds = time.perf_counter() - start
    flush()
    until_flushed = time.perf_counter() - start
    if callbacks:
        steps = [m.step for m in client.get_metric_history(callback.run_id_, "loss")]
        assert steps == list(range(1, 51)), steps
        assert client.get_run(callback.run_id_).info.status == "FINISHED"
    return seconds, until_flushed


def measure(repeats, n_rows=500, n_features=20):
    """Seconds of each fit and until its flush, by setting (lists of pairs aligned by
    repeat)."""
    from mlflow import MlflowClient

    torch.set_num_threads(1)
    X = np.random.RandomState(0).normal(size=(n_rows, n_features))
    with tempfile.TemporaryDirectory() as tmp:
        client = MlflowClient(f"sqlite:///{Path(tmp, 'mlflow.db')}")
        experiment_id = client.create_experiment("overhead",
                                                 artifact_location=str(Path(tmp, "art")))
        for setting in SETTINGS:  # warm-up: imports, schema, first run
            fit_once(setting, X, client, experiment_id)
        times = {setting: [] for setting in SETTINGS}
        for repeat in range(repeats):
            order = SETTINGS if repeat % 2 == 0 else SETTINGS[::-1]
            for setting in order:
                times[setting].append(fit_once(setting, X, client, experiment_id))
    return times


def _overheads(values, plain):
    """The overhead of the medians and the median of the paired overheads."""
    median = statistics.median(values)
    paired = statistics.median(value / base for value, base in zip(values, plain))
    return f"{(median / statistics.median(plain) - 1) * 100:+.0f}%", f"{(paired - 1) * 100:+.0f}%"


def report(times, repeats, n_features):
    import mlflow

    plain = [fit for fit, _ in times["plain"]]
    lines = [f"## 500 x {n_features} rows", "",
             f"A 50-epoch `AEDetector` fit on 500 x {n_features} rows, per-epoch metrics logged "
             f"to a SQLite store; {repeats} alternating runs per setting, torch with 1 thread "
             f"(torch {torch.__version__}, mlflow {mlflow.__version__}, "
             f"{time.strftime('%Y-%m-%d')}, load average {os.getloadavg()[0]:.1f} at the end).",
             "",
             "Command: `OMP_NUM_THREADS=1 python benchmarks/tracking_overhead.py --out "
             f"benchmarks/results --repeats {repeats} --features {n_features}`", "",
             "| setting | median fit s | min | max | overhead of the medians | median of the "
             "paired overheads | median s until `flush()` returns | its overheads (medians, "
             "paired) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for setting in SETTINGS:
        fits = [fit for fit, _ in times[setting]]
        flushed = [until for _, until in times[setting]]
        cells = ["", "", "", ""]
        if setting != "plain":
            cells = [*_overheads(fits, plain), f"{statistics.median(flushed):.3f}",
                     ", ".join(_overheads(flushed, plain))]
        lines.append(f"| {setting} | {statistics.median(fits):.3f} | {min(fits):.3f} "
                     f"| {max(fits):.3f} | " + " | ".join(cells) + " |")
    lines += ["", "\"tracked\": `MLflowCallback(log_plots=False)` (run, params, dataset, 50 "
              "epochs of metrics written in one batch at the end, end-of-fit params); \"a write "
              "per epoch\": the same with `flush_interval=0` (what every fit did before); "
              "\"tracked + plots\": the default callback, adding the scoring pass of the "
              "histogram inside `fit`, and the last batch (epochs, end-of-fit params), the "
              "two PNG plots and the end of the run on the tracking worker after `fit` "
              "returns; \"asynchronous=False\": the same, all "
              "inside `fit` (what the default did before). The time until `flush()` returns "
              "counts from the start of `fit`: what a script that waits for everything to be "
              "logged pays."]
    return "\n".join(lines) + "\n"


HEADER = ("# Tracking overhead\n\nThe paired overhead compares each tracked fit with the "
          "plain fit of the same round (both saw the same machine load); on a shared machine "
          "it is the steadier figure.\n")


def merged(path, sections):
    """The results file with ``sections`` (by number of features) replacing those of the
    same size in ``path``, the others kept: one size can be measured at a time."""
    kept = {}
    if path.exists():
        for part in path.read_text().split("\n## ")[1:]:
            size = int(part.split()[2])  # "500 x 64 rows ..."
            kept[size] = "## " + part.rstrip("\n") + "\n"
    kept.update(sections)
    return "\n".join([HEADER, *(kept[size] for size in sorted(kept))])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="folder of tracking_overhead.md (sections of other sizes kept)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--features", type=int, nargs="+", default=[20, 64])
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sections = {n_features: report(measure(args.repeats, n_features=n_features), args.repeats,
                                   n_features) for n_features in args.features}
    print("\n".join(sections.values()))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "tracking_overhead.md"
        path.write_text(merged(path, sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
