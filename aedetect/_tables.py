"""Column kinds and the frames :class:`aedetect.preprocessing.TableEncoder` encodes.

Each column of a table is numeric, boolean, categorical or empty (every value missing);
:func:`prepared` turns a DataFrame into the frame the encoder's ``ColumnTransformer``
sees (floats with NaN, or text with NaN), and :func:`check_kind` refuses a column whose
kind changed since fit, naming it.
"""

import numpy as np
import pandas as pd
from scipy.sparse import issparse

NUMERIC, BOOLEAN, CATEGORICAL, EMPTY = "numeric", "boolean", "categorical", "empty"
#: The category a value unseen in fit becomes: a category of every categorical column
#: that no training row has, so an unseen value sets a column that is 0 in fit.
UNSEEN = "<unseen category>"
_INFERRED_KINDS = {
    "integer": NUMERIC, "floating": NUMERIC, "mixed-integer-float": NUMERIC, "decimal": NUMERIC,
    "boolean": BOOLEAN,
    "string": CATEGORICAL, "mixed": CATEGORICAL, "mixed-integer": CATEGORICAL,
    "bytes": CATEGORICAL, "categorical": CATEGORICAL,
}


def column_kind(series, name):
    """How :class:`~aedetect.preprocessing.TableEncoder` treats a column.

    Parameters
    ----------
    series : pandas.Series
        The column.
    name : str
        Its name, for the error messages.

    Returns
    -------
    kind : {'numeric', 'boolean', 'categorical', 'empty'}
        ``'categorical'`` for text, ``category`` and mixed columns; ``'empty'`` when
        every value is missing.

    Raises
    ------
    ValueError
        For dates, times, durations, periods, intervals and complex numbers, naming
        the column and the fix.
    """
    if series.isna().all():
        return EMPTY
    if isinstance(series.dtype, pd.CategoricalDtype):
        return CATEGORICAL
    inferred = pd.api.types.infer_dtype(series, skipna=True)
    if inferred == "complex":
        raise ValueError(f"Complex data not supported: column {name!r} holds complex numbers. "
                         "Split it into its real and imaginary parts, or drop it.")
    if inferred not in _INFERRED_KINDS:
        raise ValueError(
            f"Column {name!r} holds {inferred} values (dtype {series.dtype}), which "
            "TableEncoder does not encode. Convert it to numbers (for a date, e.g. "
            f"X[{name!r}].dt.dayofweek or the days since a reference date), or to text "
            "for categories, or drop the column.")
    return _INFERRED_KINDS[inferred]


def _category_text(value):
    """Categories are compared as text, so 3, 3.0 and '3' are one category (a CSV read
    with a missing value turns an int column into floats)."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    return str(value)


def as_frame(X, names=None):
    """``X`` as a DataFrame with string column names (``x0``, ... for arrays); with
    ``names`` (transform), exactly those columns, in that order."""
    if isinstance(X, pd.DataFrame):
        bad = [column for column in X.columns if not isinstance(column, str)]
        if bad:
            raise ValueError(f"TableEncoder needs string column names; got {bad[:3]}. Name "
                             "the columns, e.g. X.columns = X.columns.astype(str).")
        frame = X
    elif issparse(X):
        raise TypeError("Sparse input is not supported by TableEncoder: pass a DataFrame or a "
                        "dense array (e.g. X.toarray()).")
    else:
        array = np.asarray(X, dtype=object) if not hasattr(X, "dtype") else np.asarray(X)
        if array.ndim != 2:
            raise ValueError(f"Expected 2D array, got {array.ndim}D array instead. Reshape your "
                             "data, or pass a DataFrame.")
        columns = names if names is not None else [f"x{i}" for i in range(array.shape[1])]
        if len(columns) != array.shape[1]:
            raise ValueError(f"X has {array.shape[1]} features, but TableEncoder is expecting "
                             f"{len(columns)} features as input.")
        frame = pd.DataFrame(array, columns=list(columns))
    if names is not None:
        missing = [name for name in names if name not in frame.columns]
        extra = [name for name in frame.columns if name not in set(names)]
        if missing or extra:
            raise ValueError(f"X has different columns than in fit: missing {missing}, "
                             f"unexpected {extra}. Pass the columns the model was fitted on.")
        frame = frame[list(names)]
    if frame.columns.has_duplicates:
        raise ValueError(f"X has duplicated column names: "
                         f"{sorted(set(frame.columns[frame.columns.duplicated()]))}.")
    return frame


def check_kind(series, name, fitted):
    """Refuse a column whose kind is not the ``fitted`` one (numbers and booleans stand
    for each other; a column missing everywhere fits any kind), naming it."""
    kind = column_kind(series, name)
    if EMPTY in (kind, fitted) or kind == fitted or {kind, fitted} == {NUMERIC, BOOLEAN}:
        return
    if fitted in (NUMERIC, BOOLEAN):
        bad = series[pd.to_numeric(series, errors="coerce").isna() & series.notna()]
        example = (bad if len(bad) else series.dropna()).iloc[0]
        raise ValueError(
            f"Column {name!r} was {fitted} in fit but now holds text (dtype {series.dtype}; "
            f"e.g. {example!r}). Convert it back, e.g. with pd.to_numeric(X[{name!r}], "
            "errors='coerce') to make such values missing.")
    raise ValueError(
        f"Column {name!r} was categorical in fit but is {kind} now (dtype {series.dtype}). "
        f"Pass it as categories, e.g. X[{name!r}].astype('category') or .astype(str).")


def prepared(frame, kinds):
    """The frame ``column_transformer_`` sees: numeric and boolean columns as float64
    with NaN for missing values, categorical ones as text with NaN for missing values."""
    columns = {}
    for name, kind in kinds.items():
        series = frame[name]
        if kind in (NUMERIC, BOOLEAN):
            if series.isna().all():  # any dtype, e.g. object None from a JSON payload
                columns[name] = np.full(len(series), np.nan)
            else:
                columns[name] = series.to_numpy(dtype=np.float64, na_value=np.nan)
                infinite = np.isinf(columns[name])
                if infinite.any():
                    raise ValueError(f"Column {name!r} holds {int(infinite.sum())} infinite "
                                     f"value(s) (first in row {int(np.argmax(infinite))}). "
                                     "Replace them with finite values or NaN (missing).")
        elif kind == CATEGORICAL:  # text of each distinct value, NaN (code -1) last
            codes, uniques = pd.factorize(series.astype(object), use_na_sentinel=True)
            texts = np.array([*map(_category_text, uniques), np.nan], dtype=object)
            columns[name] = texts[codes]
    return pd.DataFrame(columns, index=frame.index)


def categories(values):
    """The categories of a prepared column: its texts in order, :data:`UNSEEN` (no
    training row has it, so it is infrequent or a column of zeros in fit), then NaN
    when values are missing (scikit-learn wants it last)."""
    texts = sorted({value for value in values if isinstance(value, str)} - {UNSEEN})
    return np.array([*texts, UNSEEN, *([np.nan] if values.isna().any() else [])],
                    dtype=object)
