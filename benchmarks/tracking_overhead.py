"""What MLflow logging costs a fit: a 50-epoch fit on 500 rows, with and without tracking.

Four settings run alternately (plain; tracked, the epoch metrics written in one batch;
tracked with one write per epoch, ``flush_interval=0``; the default callback with its
plots), each tracked fit in its own fresh run of a SQLite store in a temporary
directory, after one warm-up fit of each (MLflow's import and the store's schema are
paid once per process, not per fit). Torch uses one thread. Reported per setting: the
median, min and max seconds of ``fit``, the overhead of the medians against the plain
median, and the median over rounds of (tracked / plain - 1) within a round. Every
tracked run is checked to hold all 50 steps of ``loss``.

Example::

    python benchmarks/tracking_overhead.py --out benchmarks/results --repeats 9
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

SETTINGS = ("plain", "tracked", "tracked, a write per epoch", "tracked + plots")


def fit_once(setting, X, client, experiment_id):
    from aedetect import AEDetector
    from aedetect.tracking import MLflowCallback

    callbacks = None
    if setting != "plain":
        callback = MLflowCallback(client=client, experiment_id=experiment_id,
                                  log_plots=setting == "tracked + plots",
                                  flush_interval=0 if "per epoch" in setting else 10.0)
        callbacks = [callback]
    detector = AEDetector(max_iter=50, n_iter_no_change=1000, random_state=0,
                          device="cpu", callbacks=callbacks)
    start = time.perf_counter()
    detector.fit(X)
    seconds = time.perf_counter() - start
    if callbacks:
        steps = [m.step for m in client.get_metric_history(callback.run_id_, "loss")]
        assert steps == list(range(1, 51)), steps
    return seconds


def measure(repeats, n_rows=500, n_features=20):
    """Seconds of each fit, by setting (lists aligned by repeat)."""
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


def report(times, repeats, n_features):
    import mlflow

    plain = statistics.median(times["plain"])
    lines = [f"## 500 x {n_features} rows", "",
             f"A 50-epoch `AEDetector` fit on 500 x {n_features} rows, per-epoch metrics logged "
             f"to a SQLite store; {repeats} alternating runs per setting, torch with 1 thread "
             f"(torch {torch.__version__}, mlflow {mlflow.__version__}, "
             f"{time.strftime('%Y-%m-%d')}, load average {os.getloadavg()[0]:.1f} at the end).",
             "",
             "Command: `python benchmarks/tracking_overhead.py --out benchmarks/results "
             f"--repeats {repeats} --features {n_features}`", "",
             "| setting | median fit s | min | max | overhead of the medians | median of the "
             "paired overheads |", "|---|---:|---:|---:|---:|---:|"]
    for setting in SETTINGS:
        values = times[setting]
        median = statistics.median(values)
        overhead = paired = ""
        if setting != "plain":
            overhead = f"{(median / plain - 1) * 100:+.0f}%"
            ratios = [value / base for value, base in zip(values, times["plain"])]
            paired = f"{(statistics.median(ratios) - 1) * 100:+.0f}%"
        lines.append(f"| {setting} | {median:.3f} | {min(values):.3f} | {max(values):.3f} "
                     f"| {overhead} | {paired} |")
    lines += ["", "\"tracked\": `MLflowCallback(log_plots=False)` (run, params, dataset, 50 "
              "epochs of metrics written in one batch at the end, end-of-fit params); \"a write "
              "per epoch\": the same with `flush_interval=0` (what every fit did before); "
              "\"tracked + plots\": the default callback, adding the two PNG plots and their "
              "scoring pass."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for tracking_overhead.md")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--features", type=int, nargs="+", default=[20, 64])
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    parts = ["# Tracking overhead", "",
             "The paired overhead compares each tracked fit with the plain fit of the same "
             "round (both saw the same machine load); on a shared machine it is the steadier "
             "figure.", ""]
    for n_features in args.features:
        parts.append(report(measure(args.repeats, n_features=n_features), args.repeats,
                            n_features))
    text = "\n".join(parts)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "tracking_overhead.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
