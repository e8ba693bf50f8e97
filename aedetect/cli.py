"""The ``aedetect`` command (also ``python -m aedetect``)."""

import argparse
import sys
import time

import numpy as np


def demo(args):
    """Fit a detector on the bundled digits, print its AUC and the flagged rows."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from . import AEDetector
    from .datasets import load_digits_outliers

    X, y = load_digits_outliers(as_frame=True, random_state=args.random_state)
    print(f"Data: scikit-learn digits 0-4 as inliers, digit 7 as outliers: "
          f"{X.shape[0]} rows x {X.shape[1]} pixels, {y.sum()} outliers ({y.mean():.1%}).")
    callback = None
    if not args.no_tracking:
        from .tracking import MLflowCallback

        callback = MLflowCallback(run_name="aedetect demo", tags={"aedetect.command": "demo"})
    detector = AEDetector(max_iter=args.max_iter, random_state=args.random_state,
                          contamination=args.contamination, device=args.device,
                          callbacks=[callback] if callback else None)
    start = time.perf_counter()
    labels = detector.fit_predict(X)
    seconds = time.perf_counter() - start
    scores = detector.score_samples(X)
    logging_note = " (including MLflow logging)" if callback is not None else ""
    print(f"AEDetector: {detector.n_iter_} epochs on {detector.device_} in {seconds:.1f} s"
          f"{logging_note}.")
    print(f"AUC-ROC {roc_auc_score(y, -scores):.3f}, "
          f"AUC-PR {average_precision_score(y, -scores):.3f} "
          "(score_samples is higher for normal rows, so -score ranks outliers first).")
    flagged = np.flatnonzero(labels == -1)
    hits = int(y[flagged].sum())
    print(f"Flagged {flagged.size} rows as outliers (contamination={args.contamination!r}, "
          f"offset_={detector.offset_:.4f}); {hits} of them are true outliers "
          f"(precision {hits / max(1, flagged.size):.2f}, recall {hits / y.sum():.2f}).")
    order = flagged[np.argsort(scores[flagged])][: args.show]
    print(f"The {order.size} most anomalous flagged rows (row, score, true label):")
    for row in order:
        print(f"  row {row:5d}  score {scores[row]:9.4f}  {'outlier' if y[row] else 'inlier'}")
    if callback is not None:
        if callback.run_id_ is not None:
            callback.log_metrics({"auc_roc": roc_auc_score(y, -scores),
                                  "auc_pr": average_precision_score(y, -scores),
                                  "precision": hits / max(1, flagged.size),
                                  "recall": hits / y.sum()})
        _print_tracking(callback)
    return 0


def _print_tracking(callback):
    """Say where the demo's MLflow run is and how to look at it."""
    from .tracking import DEFAULT_TRACKING_URI
    from .tracking._store import _default_store_uri

    run_id = callback.run_id_
    if run_id is None:
        print("MLflow: the run was not logged (see the warning above).")
        return
    uri = callback.tracking_uri_
    if uri == _default_store_uri():
        uri = DEFAULT_TRACKING_URI
        where = "(artifacts in mlflow/artifacts)"
    else:
        where = "(MLFLOW_TRACKING_URI)"
    print(f"MLflow: run {run_id} logged to {uri} {where}, with its parameters, per-epoch "
          "losses, AUC and plots.")
    if uri.startswith("http"):
        print(f"Look at it: open {uri} in a browser.")
    else:
        print(f"Look at it: mlflow ui --backend-store-uri {uri}  then open http://127.0.0.1:5000")


def _contamination(text):
    return text if text == "auto" else float(text)


def build_parser():
    parser = argparse.ArgumentParser(prog="aedetect", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("demo", help="fit AEDetector on bundled data and report")
    run.add_argument("--max-iter", type=int, default=100, help="epochs (default 100)")
    run.add_argument("--contamination", type=_contamination, default="auto",
                     help="'auto' or a float in (0, 0.5] (default auto)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    run.add_argument("--random-state", type=int, default=0)
    run.add_argument("--show", type=int, default=10, help="flagged rows to list (default 10)")
    run.add_argument("--no-tracking", action="store_true",
                     help="do not log the run to MLflow (default: log to MLFLOW_TRACKING_URI "
                          "or sqlite:///mlflow/mlflow.db)")
    run.set_defaults(handler=demo)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
