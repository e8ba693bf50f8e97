"""``aedetect demo``: the screening of a bundled table, with its report.

The table is scikit-learn's breast cancer data (569 tumours: the ten "mean" cell
measurements and the diagnosis as text), bundled with scikit-learn, into which
:func:`load_demo_table` plants 16 data errors of four kinds that a screening should
catch. The demo screens it as ``aedetect screen`` would, writes the report, and says
for each listed row why it is anomalous: the planted error, or, for a genuine row, its
most unusual value.
"""

import argparse
import sys

import numpy as np

#: The planted errors: kind -> how it is made (4 rows each).
KINDS = {
    "decimal point": "one measurement multiplied by 10",
    "sign": "one measurement made negative",
    "geometry": "mean perimeter halved: it no longer matches mean radius and area",
    "diagnosis": "diagnosis flipped on a clear-cut tumour",
}


def load_demo_table(random_state=0):
    """The demo table and what was planted in it.

    Parameters
    ----------
    random_state : int, default=0
        Chooses the rows and columns of the planted errors.

    Returns
    -------
    table : DataFrame of shape (569, 11)
        ``diagnosis`` ('benign' / 'malignant') and the ten ``mean ...`` measurements.
    planted : dict
        Row -> (kind, description) of each of the 16 planted errors.
    """
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    measures = [name for name in data.data.columns if name.startswith("mean ")]
    table = data.data[measures].copy()
    table.insert(0, "diagnosis", np.where(data.target == 1, "benign", "malignant"))
    rng = np.random.RandomState(random_state)
    radius = table["mean radius"].to_numpy()
    clear = np.r_[np.argsort(np.where(data.target == 0, -radius, np.inf))[:20],
                  np.argsort(np.where(data.target == 1, radius, np.inf))[:20]]
    flips = rng.choice(clear, 4, replace=False)
    others = rng.choice(np.setdiff1d(np.arange(len(table)), clear), 12, replace=False)
    planted = {}
    for k, row in enumerate(others):
        column = measures[rng.randint(len(measures))]
        if k < 4:
            table.loc[row, column] *= 10
            planted[int(row)] = ("decimal point", f"{column} x 10")
        elif k < 8:
            table.loc[row, column] *= -1
            planted[int(row)] = ("sign", f"{column} made negative")
        else:
            table.loc[row, "mean perimeter"] = round(table.loc[row, "mean perimeter"] / 2, 2)
            planted[int(row)] = ("geometry", "mean perimeter halved")
    for row in flips:
        was = table.loc[row, "diagnosis"]
        table.loc[row, "diagnosis"] = "benign" if was == "malignant" else "malignant"
        planted[int(row)] = ("diagnosis", f"{was} recorded as {table.loc[row, 'diagnosis']}")
    return table, planted


def _why(row, result, planted):
    """Why a listed row is anomalous: the planted error, or its most unusual value."""
    table = result.data.frame
    if row in planted:
        return f"planted: {planted[row][1]}"
    column = result.frame.at[row, "top1_column"]
    if column not in table.columns:
        return "genuine row: an unusual combination of values"
    value = table.at[row, column]
    if isinstance(value, str):
        share = (table[column] == value).mean()
        return f"genuine row: {column} = {value} ({share:.0%} of rows)"
    percentile = (table[column] < value).mean()
    return (f"genuine row: {column} = {value:.4g}, higher than {percentile:.1%} of rows"
            if percentile >= 0.5 else
            f"genuine row: {column} = {value:.4g}, lower than {1 - percentile:.1%} of rows")


def run(args):
    """``aedetect demo``."""
    from sklearn.metrics import roc_auc_score

    from .fit import Data
    from .report import write_report
    from .screen import screen

    table, planted = load_demo_table(args.random_state)
    data = Data.from_frame(table, "breast_cancer_with_planted_errors.csv")
    print(f"Data: scikit-learn's breast cancer table ({len(table)} tumours: diagnosis and "
          f"{table.shape[1] - 1} cell measurements) with {len(planted)} planted errors, 4 of "
          f"each kind: {'; '.join(f'{k} ({v})' for k, v in KINDS.items())}.")
    callback = None
    if not args.no_tracking:
        from ..tracking import MLflowCallback

        callback = MLflowCallback(run_name="aedetect demo", tags={"aedetect.command": "demo"})
    options = argparse.Namespace(model="ae", architecture="dense", contamination=0.03,
                                 fpr=None, calibration=None, max_iter=args.max_iter,
                                 early_stopping="off",
                                 random_state=args.random_state, device=args.device, top=3)
    result = screen(options, data, [callback] if callback else [], progress=True)
    frame = result.frame
    y = np.isin(frame["row"], list(planted)).astype(int)
    flagged = frame["label"].to_numpy() == -1
    hits = int(y[flagged].sum())
    print(f"AEDetector: {result.detector.n_iter_} epochs in {result.timings['fit']:.1f} s. "
          f"AUC-ROC {roc_auc_score(y, -frame['score']):.3f} for the planted errors; flagged "
          f"{flagged.sum()} rows (contamination 0.03), {hits} of them planted "
          f"(precision {hits / max(1, flagged.sum()):.2f}, recall {hits / y.sum():.2f}).")
    for kind in KINDS:
        rows = [row for row, (k, _) in planted.items() if k == kind]
        found = int(frame.loc[rows, "label"].eq(-1).sum())
        print(f"  {kind:13s}: {found} of 4 flagged, ranks "
              f"{sorted(frame.loc[rows, 'rank'].tolist())}")
    print(f"The {args.show} most anomalous rows (rank, row, top column and its share, why):")
    for _, row in result.most_anomalous(args.show).iterrows():
        print(f"  {int(row['rank']):3d}  row {int(row['row']):3d}  {row['top1_column']:>20s} "
              f"{row['top1_share']:4.0%}  {_why(int(row['row']), result, planted)}")
    write_report(result, args.report)
    print(f"Report: {args.report} (open it in a browser).")
    if callback is not None:
        from ..cli import _print_tracking

        if callback.run_id_ is not None:
            callback.log_metrics({"auc_roc": roc_auc_score(y, -frame["score"]),
                                  "precision": hits / max(1, flagged.sum()),
                                  "recall": hits / y.sum()})
            import mlflow

            mlflow.MlflowClient(callback.tracking_uri_).log_artifact(callback.run_id_,
                                                                     str(args.report))
        _print_tracking(callback)
    sys.stdout.flush()
    return 0
