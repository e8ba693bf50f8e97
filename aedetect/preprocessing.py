"""Default preprocessing for tables: mixed columns and missing values, built from
scikit-learn's parts.

:class:`TableEncoder` looks at the columns of the DataFrame it is fitted on and builds
(``column_transformer_``, a plain scikit-learn ``ColumnTransformer``):

- numeric and boolean columns (numpy, pandas nullable ``Int64`` / ``Float64`` /
  ``boolean``): ``SimpleImputer(strategy="median", add_indicator=True)``: a missing
  value becomes the column's median, and a 0/1 indicator column says it was missing;
- text, ``category`` and mixed columns: ``OneHotEncoder(handle_unknown=
  "infrequent_if_exist", min_frequency=..., max_categories=..., sparse_output=False)``:
  always dense, rare categories grouped into one "infrequent" column, a missing value
  its own category. A category unseen in fit becomes :data:`UNSEEN`, a category every
  column has and no training row: it falls in the infrequent column (its own column with
  ``min_frequency=None``), so an unseen value sets a column that is 0, or rarely 1, in
  fit; a warning names the column.

Scaling is left to the detector (its ``scaling``, robust by default), so every encoded
column counts alike in the score. :func:`make_pipeline` puts the two in a scikit-learn
``Pipeline``. To replace the default, put any transformer before the detector yourself;
:func:`aedetect.explain.explain` maps the columns of scikit-learn's usual encoders back.
"""

import warnings
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from . import _tables
from ._tables import BOOLEAN, CATEGORICAL, EMPTY, NUMERIC, UNSEEN, column_kind

__all__ = ["UNSEEN", "TableEncoder", "column_kind", "make_pipeline"]


class TableEncoder(TransformerMixin, BaseEstimator):
    """Dense numeric encoding of a mixed table, built from scikit-learn's parts.

    Fitting looks at each column (see :func:`column_kind`) and fits
    ``column_transformer_``: median imputation with missing-indicator columns for
    numeric and boolean columns, one-hot encoding with infrequent-category grouping for
    the others (see the module docstring). Columns missing in every training row are
    left out, with a warning naming them. At transform, the columns must be those seen
    in fit (in any order), each of the same kind: a column that was numeric in fit and
    holds text now (a stray ``'n/a'`` in a CSV) raises a ``ValueError`` naming it;
    numbers and booleans may stand for each other, and a column missing in every row
    fits any kind.

    Parameters
    ----------
    min_frequency : int or float, default=0.01
        Categories in fewer training rows than this (a float: this share of the rows)
        are grouped into one infrequent category. ``None``: no grouping.
    max_categories : int, default=20
        At most this many one-hot columns per categorical column (the rarest categories
        are grouped). ``None``: no limit.

    Attributes
    ----------
    column_transformer_ : ColumnTransformer
        The fitted scikit-learn encoding (``'numeric'`` and ``'categorical'`` parts).
    column_kinds_ : dict
        Column name (``x0``, ``x1``, ... for an array) -> ``'numeric'``,
        ``'boolean'``, ``'categorical'`` or ``'empty'``, in the order of the columns.
    feature_names_in_ : ndarray of str
        Column names seen in fit; only when fitted on a DataFrame.
    n_features_in_ : int
        Number of columns seen in fit.

    Examples
    --------
    >>> import pandas as pd
    >>> from aedetect.preprocessing import TableEncoder
    >>> X = pd.DataFrame({"size": [1.0, None, 3.0], "color": ["red", "blue", "red"]})
    >>> TableEncoder().fit_transform(X).shape
    (3, 4)
    """

    _parameter_constraints = {
        "min_frequency": [Interval(Integral, 1, None, closed="left"),
                          Interval(Real, 0, 1, closed="neither"), None],
        "max_categories": [Interval(Integral, 2, None, closed="left"), None],
    }

    def __init__(self, *, min_frequency=0.01, max_categories=20):
        self.min_frequency = min_frequency
        self.max_categories = max_categories

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Choose the encoding of each column of ``X`` and fit it.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            The training table.
        y : ignored
            Not used, present for API consistency.

        Returns
        -------
        self : TableEncoder
        """
        frame = _tables.as_frame(X)
        if frame.shape[1] < 1:
            raise ValueError(f"Found array with 0 feature(s) (shape={frame.shape}) while a "
                             "minimum of 1 is required by TableEncoder.")
        if frame.shape[0] < 2:
            raise ValueError(f"Found array with {frame.shape[0]} sample(s) (shape="
                             f"{frame.shape}) while a minimum of 2 is required by TableEncoder "
                             f"(n_samples={frame.shape[0]}).")
        kinds = {name: column_kind(frame[name], name) for name in frame.columns}
        empty = [name for name, kind in kinds.items() if kind == EMPTY]
        if len(empty) == len(kinds):
            raise ValueError("Every column of X is missing in every row: nothing to encode.")
        if empty:
            warnings.warn(f"Column(s) {empty} are missing in every training row and are left "
                          "out: their values are ignored when scoring. Drop them, or fit on "
                          "rows where they are filled.", UserWarning, stacklevel=2)
        numeric = [name for name, kind in kinds.items() if kind in (NUMERIC, BOOLEAN)]
        categorical = [name for name, kind in kinds.items() if kind == CATEGORICAL]
        prepared = _tables.prepared(frame, kinds)
        identifiers = [name for name in categorical
                       if len(frame) >= 20 and prepared[name].nunique() > 0.5 * len(frame)]
        if identifiers:
            warnings.warn(f"Column(s) {identifiers} hold a different text in most rows "
                          "(identifiers?): their categories hold no pattern to learn, only "
                          "rare columns. Drop identifier columns before fitting.", UserWarning,
                          stacklevel=2)
        encoder = OneHotEncoder(categories=[_tables.categories(prepared[name])
                                            for name in categorical],
                                handle_unknown="infrequent_if_exist",
                                min_frequency=self.min_frequency,
                                max_categories=self.max_categories, sparse_output=False)
        parts = [("numeric", SimpleImputer(strategy="median", add_indicator=True), numeric),
                 ("categorical", encoder, categorical)]
        transformer = ColumnTransformer([part for part in parts if part[2]], remainder="drop")
        self.column_transformer_ = transformer.fit(prepared)
        self.column_kinds_ = kinds
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = len(kinds)
        return self

    def transform(self, X):
        """Encode ``X`` as the dense float64 matrix the detector takes.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Rows with the columns seen in fit.

        Returns
        -------
        X_encoded : ndarray of shape (n_samples, n_encoded), dtype float64
        """
        check_is_fitted(self)
        frame = _tables.as_frame(X, list(self.column_kinds_))
        for name, fitted in self.column_kinds_.items():
            _tables.check_kind(frame[name], name, fitted)
        prepared = _tables.prepared(frame, self.column_kinds_)
        self._map_unseen(prepared)
        return self.column_transformer_.transform(prepared).astype(np.float64, copy=False)

    def _map_unseen(self, prepared):
        """Categories not seen in fit become :data:`UNSEEN` (in place), with a warning."""
        parts = self.column_transformer_.named_transformers_
        if "categorical" not in parts:
            return
        encoder = parts["categorical"]
        for name, categories, rare in zip(encoder.feature_names_in_, encoder.categories_,
                                          encoder.infrequent_categories_):
            values = prepared[name]
            unseen = ~values.isin(categories)  # a missing value unseen in fit counts too
            if unseen.any():
                examples = sorted({"missing" if pd.isna(v) else v for v in values[unseen]})[:3]
                grouped = rare is not None and UNSEEN in rare
                encoding = ("the infrequent category (rare in fit)" if grouped else
                            f"{UNSEEN!r}, a column that is 0 in every training row")
                warnings.warn(f"Column {name!r}: {int(unseen.sum())} row(s) hold categories "
                              f"not seen in fit (e.g. {examples}); they are encoded as "
                              f"{encoding}.", UserWarning, stacklevel=3)
                prepared.loc[unseen.to_numpy(), name] = UNSEEN

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        return tags

    def get_feature_names_out(self, input_features=None):
        """Names of the encoded columns (``numeric__age``, ``categorical__color_red``, ...).

        Parameters
        ----------
        input_features : ignored
            Present for API consistency.

        Returns
        -------
        feature_names_out : ndarray of str
        """
        check_is_fitted(self)
        return self.column_transformer_.get_feature_names_out()


def make_pipeline(detector, preprocessor=None):
    """A scikit-learn ``Pipeline`` of a table preprocessing and a detector.

    Parameters
    ----------
    detector : BaseAutoencoderDetector
        An unfitted (or fitted, it is refitted by ``fit``) aedetect detector. Keep its
        own scaling (the default): the preprocessing does not scale.
    preprocessor : transformer, default=None
        ``None``: ``TableEncoder()``. Any scikit-learn transformer with dense output.

    Returns
    -------
    pipeline : sklearn.pipeline.Pipeline
        Steps ``'preprocess'`` and ``'detector'``; ``fit``, ``score_samples``,
        ``decision_function`` and ``predict`` take the raw DataFrame.

    Examples
    --------
    >>> import pandas as pd
    >>> from aedetect import AEDetector
    >>> from aedetect.preprocessing import make_pipeline
    >>> X = pd.DataFrame({"size": [1.0, 2.0, None, 4.0] * 10,
    ...                   "color": ["red", "blue", "red", None] * 10})
    >>> pipe = make_pipeline(AEDetector(max_iter=2, random_state=0)).fit(X)
    >>> pipe.score_samples(X).shape
    (40,)
    """
    from ._base import BaseAutoencoderDetector

    if not isinstance(detector, BaseAutoencoderDetector):
        raise TypeError(f"detector must be an aedetect detector (AEDetector, VAEDetector, "
                        f"AAEDetector), got {type(detector).__name__}.")
    preprocessor = TableEncoder() if preprocessor is None else preprocessor
    return Pipeline([("preprocess", preprocessor), ("detector", detector)])
