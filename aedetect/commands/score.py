"""Scoring rows: the result columns every command writes, and ``aedetect score
MODEL_DIR DATA --out SCORED``, which streams the file in chunks (bounded memory).

Result columns, in this order: ``row`` (0-based position in the input file),
``score`` (``score_samples``, higher = more normal), ``decision`` (``score - offset_``,
negative = outlier), ``label`` (+1 inlier, -1 outlier), ``rank`` (``aedetect screen``
only: 1 = most anomalous), ``p_value`` (calibrated models only: the split-conformal
p-value against the calibration rows), and for tables ``top1_column``,
``top1_share``, ... : the columns that weigh most in the row's anomaly score
(:func:`aedetect.explain.explain`) and their shares of it. Then the input columns.
"""

import sys
import time

import numpy as np

from . import CommandError, io
from .fit import check_columns, detector_of, encoded

#: Rows per chunk when scoring a file.
CHUNK_ROWS = 50_000


def top_columns(contributions, top):
    """The ``top`` largest contributions of each row: names and shares of the row's
    anomaly score above the baseline (negative terms count as 0)."""
    import pandas as pd

    values = np.clip(contributions.to_numpy(dtype=np.float64), 0.0, None)
    totals = values.sum(axis=1, keepdims=True)
    shares = np.divide(values, totals, out=np.zeros_like(values), where=totals > 0)
    top = min(top, values.shape[1])
    order = np.argsort(-shares, axis=1, kind="stable")[:, :top]
    names = np.asarray(contributions.columns, dtype=object)
    columns = {}
    for k in range(top):
        columns[f"top{k + 1}_column"] = names[order[:, k]]
        columns[f"top{k + 1}_share"] = np.round(np.take_along_axis(
            shares, order[:, k:k + 1], axis=1)[:, 0], 4)
    return pd.DataFrame(columns, index=contributions.index)


def results(estimator, X, first_row=0, top=3):
    """The result columns (no ``rank``) of the rows ``X``, numbered from ``first_row``,
    and the per-column contributions (``None`` for images)."""
    import pandas as pd

    from ..explain import explain

    detector = detector_of(estimator)
    rows = encoded(estimator, X)
    scores = detector.score_samples(rows)
    frame = pd.DataFrame({"row": np.arange(first_row, first_row + len(scores)),
                          "score": scores, "decision": scores - detector.offset_})
    frame["label"] = np.where(frame["decision"] < 0, -1, 1)
    if getattr(detector, "calibration_scores_", None) is not None:
        from ..thresholds import conformal_p_values

        frame["p_value"] = conformal_p_values(detector.calibration_scores_, scores)
    contributions = None
    if isinstance(X, pd.DataFrame):
        contributions = explain(estimator, X)
        contributions.index = frame.index
        frame = frame.join(top_columns(contributions, top))
    return frame, contributions


def with_inputs(frame, X):
    """The result columns followed by the input columns (a table's)."""
    import pandas as pd

    if not isinstance(X, pd.DataFrame):
        return frame
    inputs = X.reset_index(drop=True)
    clash = [name for name in inputs.columns if name in set(frame.columns)]
    inputs = inputs.rename(columns={name: f"input_{name}" for name in clash})
    return pd.concat([frame.reset_index(drop=True), inputs], axis=1)


def load(model_dir):
    """The fitted estimator saved by ``aedetect fit`` (or ``tracking.save_model``)."""
    from pathlib import Path

    from ..tracking import load_model

    path = Path(model_dir)
    if not (path / "MLmodel").is_file():
        raise CommandError(f"{path}: not a model directory (no MLmodel file). Make one with "
                           "aedetect fit DATA --out MODEL_DIR.")
    return load_model(str(path), device="cpu")


def _kinds(estimator):
    """Column name -> kind (``'numeric'``, ``'categorical'``, ...) of the model's encoder."""
    steps = getattr(estimator, "steps", [])
    return getattr(steps[0][1], "column_kinds_", {}) if steps else {}


def _category_text(value):
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def aligned(frame, kinds):
    """The columns of ``frame`` in the types of fit, where that loses nothing: numbers
    stored as text become numbers (every value parses), numbers in a categorical
    column become their text (``3`` and ``'3'`` are one category). Anything else is
    left for the encoder, which refuses a changed type naming the column."""
    import pandas as pd

    frame = frame.copy()
    for name, kind in kinds.items():
        series = frame[name]
        numeric = pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)
        if kind in ("numeric", "boolean") and not numeric:
            values = pd.to_numeric(series, errors="coerce")
            if values.notna().sum() == series.notna().sum():
                frame[name] = values
        elif kind == "categorical" and numeric:
            frame[name] = series.astype(object).map(
                lambda v: v if pd.isna(v) else _category_text(v))
    return frame


def _chunks(estimator, path, chunk_rows):
    if io.kind_of(path) == "images":
        if hasattr(estimator, "steps"):
            raise CommandError(f"{path} holds images but the model was fitted on a table.")
        images, _ = io.read_images(path)
        for start in range(0, images.shape[0], chunk_rows):
            yield images[start:start + chunk_rows], images.shape[0]
        return
    if not hasattr(estimator, "steps"):
        raise CommandError(f"{path} is a table but the model was fitted on images.")
    expected = [str(name) for name in estimator.feature_names_in_]
    check_columns(expected, io.columns_of(path), path)
    kinds = _kinds(estimator)
    text = {name: str for name, kind in kinds.items() if kind == "categorical"}
    for frame in io.iter_table(path, chunk_rows, dtypes=text):
        yield aligned(frame[expected], kinds), None


def run(args):
    """``aedetect score MODEL_DIR DATA --out SCORED``."""
    from .fit import show_progress

    out = io.check_output(args.out)
    tick = time.perf_counter()
    estimator = load(args.model_dir)
    loading = time.perf_counter() - tick
    path = io.check_input(args.data)
    progress = show_progress(args)
    start, n_rows, n_flagged = time.perf_counter(), 0, 0
    spent = {"score and explain": 0.0, "write": 0.0}
    with io.atomic_file(out) as staging:
        writer = io.TableWriter(staging)
        try:
            for X, total in _chunks(estimator, path, args.chunk_rows):
                tick = time.perf_counter()
                frame, _ = results(estimator, X, first_row=n_rows, top=args.top)
                spent["score and explain"] += time.perf_counter() - tick
                tick = time.perf_counter()
                writer.write(with_inputs(frame, X))
                spent["write"] += time.perf_counter() - tick
                n_rows += len(frame)
                n_flagged += int((frame["label"] == -1).sum())
                if progress:
                    of = f"/{total}" if total else ""
                    print(f"scored {n_rows}{of} rows ({n_rows / (time.perf_counter() - start):,.0f}"
                          " rows/s)", file=sys.stderr, flush=True)
        finally:
            writer.close()
    seconds = time.perf_counter() - start
    print(f"Scored {n_rows} rows of {path} in {seconds:.1f} s "
          f"({n_rows / max(seconds, 1e-9):,.0f} rows/s): {n_flagged} flagged as outliers "
          f"({n_flagged / max(1, n_rows):.2%}). Wrote {out}.")
    spent = {"load model": loading, "read": seconds - sum(spent.values()), **spent}
    print("Time: " + ", ".join(f"{step} {value:.1f} s" for step, value in spent.items()) + ".")
    return 0
