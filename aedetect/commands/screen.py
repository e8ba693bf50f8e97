"""``aedetect screen DATA``: fit a detector on a file and score every row of it.

Prints the most anomalous rows with the columns that weigh most in their scores;
``--out`` writes every row (see :mod:`.score` for the columns), ``--report`` the HTML
report (:mod:`.report`), ``--mlflow`` logs the run, the model and the report.
"""

import sys
import time

import numpy as np

from . import io
from .fit import Data, check_threshold_options, detector_of, fit_estimator, show_progress
from .fit import threshold_text
from .score import CHUNK_ROWS, results, with_inputs


class Screening:
    """The outcome of a screening: the fitted estimator, the result columns (with
    ``rank``), the contributions and the timings, for the summary and the report."""

    def __init__(self, data, estimator, frame, contributions, timings):
        self.data, self.estimator, self.frame = data, estimator, frame
        self.contributions, self.timings = contributions, timings
        self.detector = detector_of(estimator)

    def most_anomalous(self, n):
        return self.frame.sort_values("rank").head(n)


def screen(args, data, callbacks=(), progress=False):
    """Fit on ``data`` and score all of its rows, in chunks (progress per chunk)."""
    import pandas as pd

    estimator, fit_seconds = fit_estimator(args, data, callbacks, progress)
    start = time.perf_counter()
    frames, contributions = [], []
    X = data.X
    for first in range(0, data.n_rows, CHUNK_ROWS):
        part = X.iloc[first:first + CHUNK_ROWS] if data.kind == "table" else \
            X[first:first + CHUNK_ROWS]
        frame, terms = results(estimator, part, first_row=first, top=args.top)
        frames.append(frame)
        contributions.append(terms)
        if progress:
            print(f"scored {min(first + CHUNK_ROWS, data.n_rows)}/{data.n_rows} rows",
                  file=sys.stderr, flush=True)
    frame = pd.concat(frames, ignore_index=True)
    ranks = np.empty(len(frame), dtype=np.int64)
    ranks[np.argsort(frame["score"].to_numpy(), kind="stable")] = np.arange(1, len(frame) + 1)
    frame.insert(4, "rank", ranks)
    terms = None if contributions[0] is None else pd.concat(contributions, ignore_index=True)
    timings = {"read": data.seconds, "fit": fit_seconds, "score": time.perf_counter() - start}
    return Screening(data, estimator, frame, terms, timings)


def summary(result, show):
    """The lines printed after a screening."""
    detector, frame = result.detector, result.frame
    flagged = int((frame["label"] == -1).sum())
    lines = [f"Screened {result.data.path} ({result.data.shape_text()}) with "
             f"{type(detector).__name__}: {detector.n_iter_} epochs, fit "
             f"{result.timings['fit']:.1f} s, scoring {result.timings['score']:.1f} s.",
             f"Threshold: {threshold_text(detector)}; {flagged} rows flagged as outliers "
             f"({flagged / len(frame):.2%}).",
             f"The {min(show, len(frame))} most anomalous rows (rank, row, score"
             f"{', p-value' if 'p_value' in frame else ''}, columns weighing most):"]
    if result.data.y is not None and 0 < result.data.y.sum() < len(frame):
        from sklearn.metrics import roc_auc_score

        lines.insert(2, f"The file's labels y (1 = outlier): AUC-ROC "
                        f"{roc_auc_score(result.data.y, -frame['score']):.3f}.")
    tops = sorted(name for name in frame.columns if name.endswith("_column"))
    for _, row in result.most_anomalous(show).iterrows():
        text = f"  {int(row['rank']):4d}  row {int(row['row']):7d}  score {row['score']:10.4f}"
        if "p_value" in frame:
            text += f"  p {row['p_value']:.4f}"
        parts = [f"{row[name]} {row[name.replace('_column', '_share')]:.0%}" for name in tops]
        lines.append(text + ("  " + ", ".join(parts) if parts else ""))
    return lines


def run(args):
    """``aedetect screen DATA [...]``."""
    check_threshold_options(args)
    out = io.check_output(args.out) if args.out else None
    report = io.check_output(args.report, (".html",)) if args.report else None
    data = Data(args.data)
    callback = None
    if args.mlflow:
        from ..tracking import MLflowCallback

        callback = MLflowCallback(run_name=f"aedetect screen {data.path.name}",
                                  tags={"aedetect.command": "screen"})
    result = screen(args, data, [callback] if callback else [], show_progress(args))
    for line in summary(result, args.show):
        print(line)
    if out is not None:
        start = time.perf_counter()
        with io.atomic_file(out) as staging:
            writer = io.TableWriter(staging)
            writer.write(with_inputs(result.frame, data.frame))
            writer.close()
        result.timings["write"] = time.perf_counter() - start
        print(f"Wrote every row with its score, decision, label, rank and top columns to {out}.")
    if report is not None:
        from .report import write_report

        start = time.perf_counter()
        write_report(result, report)
        result.timings["report"] = time.perf_counter() - start
        print(f"Wrote the report to {report} (one self-contained HTML file).")
    if callback is not None:
        start = time.perf_counter()
        log_to_mlflow(callback, result, report)
        result.timings["mlflow"] = time.perf_counter() - start
    print("Time: " + ", ".join(f"{step} {seconds:.1f} s"
                               for step, seconds in result.timings.items()) + ".")
    return 0


def log_to_mlflow(callback, result, report):
    """Log the fitted model, the flag counts and the report into the fit's run."""
    from ..tracking import log_model

    if callback.run_id_ is None:
        print("MLflow: the run was not logged (see the warning above).")
        return
    import os
    import warnings

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    frame = result.frame
    callback.log_metrics({"n_flagged": float((frame["label"] == -1).sum()),
                          "flagged_share": float((frame["label"] == -1).mean())})
    mlflow.set_tracking_uri(callback.tracking_uri_)
    mlflow.set_experiment(experiment_id=callback.experiment_id_)  # the model beside its run
    with warnings.catch_warnings():  # MLflow asks for an input example; none is needed
        warnings.filterwarnings("ignore", message=".*input example was not provided")
        log_model(result.estimator, name="model", run_id=callback.run_id_)
    if report is not None:
        mlflow.MlflowClient(callback.tracking_uri_).log_artifact(callback.run_id_, str(report))
    print(f"MLflow: run {callback.run_id_} logged to {callback.tracking_uri_} (parameters, "
          f"losses, the model{' and the report' if report else ''}).")
