"""Why a row is flagged: each input column's part of its anomaly score.

:func:`explain` splits a row's anomaly score, minus ``score_samples``, into one term per
column the user passed in (and one for the latent code when the score has a code part),
in the user's column names: the columns a preprocessing step makes out of one input
column (the one-hot columns of a category, a missing-value indicator) are summed back
into it. The model supplies the split (``feature_terms`` of :mod:`aedetect.models`);
this module maps encoded columns back to input columns.
"""

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.utils.validation import check_is_fitted

from . import _data
from ._base import BaseAutoencoderDetector
from .preprocessing import TableEncoder

#: Name of the latent code's entry (parentheses: it cannot be mistaken for a column).
CODE = "(code)"


def explain(estimator, X):
    """Each input column's part of each row's anomaly score.

    The anomaly score is ``-score_samples(X)`` (higher = more anomalous). It is split
    into one term per input column plus, for scores with a code part (the AAE's
    ``'combined'`` and every ``'latent'`` score, the VAE's ELBO: its KL term), the
    entry ``'(code)'``; the rest is a constant, the same for every row,
    ``result.attrs["baseline"]``:

    ``result.sum(axis=1) + result.attrs["baseline"] == -estimator.score_samples(X)``
    (up to float32 rounding). For an :class:`~aedetect.EnsembleDetector` each
    member's terms are divided by its ``scales_`` and averaged, as its score is. Per detector, a column's term is: AE, its squared
    reconstruction error over the number of features; VAE, its part of minus
    log p(x|z) that depends on the row, ``(x_j - mean_j)^2 / (2 var_j)`` averaged
    over the noise bank; AAE, its weighted squared error. Errors are measured in the
    detector's scaled space, so every column counts alike whatever its unit. The
    ``(code)`` entry can be negative (an AAE code more typical than an average prior
    draw); the column terms of the reconstruction scores cannot.

    Parameters
    ----------
    estimator : BaseAutoencoderDetector, EnsembleDetector or Pipeline
        A fitted detector or ensemble, or a fitted ``Pipeline`` ending in one. The steps before
        the detector must let each encoded column be traced to one input column:
        :class:`~aedetect.preprocessing.TableEncoder`, ``ColumnTransformer``,
        ``OneHotEncoder``, ``SimpleImputer``, ``MissingIndicator``, ``'passthrough'``
        and one-to-one transformers such as ``StandardScaler`` (their
        ``get_feature_names_out`` keeps the names).
    X : {array-like, DataFrame} of shape (n_samples, n_features)
        Rows as the estimator takes them (the raw table for a pipeline).

    Returns
    -------
    contributions : DataFrame of shape (n_samples, n_columns [+ 1])
        Index: ``X``'s index (a ``RangeIndex`` for arrays); columns: the input
        columns, in order (``x0``, ``x1``, ... for arrays), then ``'(code)'`` when
        the score has a code part. ``contributions.idxmax(axis=1)`` names the column
        that weighs most in each row's score.

    Examples
    --------
    >>> import numpy as np
    >>> from aedetect import AEDetector
    >>> from aedetect.explain import explain
    >>> X = np.random.RandomState(0).normal(size=(100, 3))
    >>> detector = AEDetector(max_iter=5, random_state=0).fit(X)
    >>> explain(detector, X[:2]).shape
    (2, 3)
    """
    if isinstance(estimator, Pipeline):
        detector, steps = estimator.steps[-1][1], [step for _, step in estimator.steps[:-1]]
    else:
        detector, steps = estimator, []
    from .ensemble import EnsembleDetector

    if isinstance(detector, EnsembleDetector):
        check_is_fitted(detector)
        members = list(zip(detector.estimators_, detector.centers_, detector.scales_))
    elif isinstance(detector, BaseAutoencoderDetector):
        check_is_fitted(detector)
        members = [(detector, 0.0, 1.0)]
    else:
        raise TypeError(f"explain needs an aedetect detector (or EnsembleDetector) or a "
                        f"Pipeline ending in one, got {type(detector).__name__}.")
    names = _input_names(estimator, X, steps, detector)
    sources = np.arange(len(names))
    encoded = X
    for step in steps:
        if step is None or step == "passthrough":
            continue
        sources = sources[_sources(step, len(sources))]
        encoded = step.transform(encoded)
    rows = _data.validate_samples(detector, encoded, reset=False)[0]
    # an ensemble's anomaly score is the mean over members of (-score - center) / scale:
    # each member's terms divided by its scale, averaged; the centers join the baseline
    grouped, code, baseline, has_code = 0.0, 0.0, 0.0, False
    for member, center, scale in members:
        terms, member_baseline = _member_terms(member, rows)
        if sources.shape[0] != terms.shape[1] - 1:
            raise ValueError(f"The steps before the detector give {terms.shape[1] - 1} "
                             f"columns but their column map has {sources.shape[0]}.")
        columns = np.zeros((terms.shape[0], len(names)))
        np.add.at(columns.T, sources, terms[:, :-1].T)
        grouped = grouped + columns / scale / len(members)
        code = code + terms[:, -1] / scale / len(members)
        baseline += (member_baseline + center) / scale / len(members)
        has_code = has_code or member.score_type != "reconstruction"
    frame = pd.DataFrame(grouped, columns=list(names),
                         index=X.index if isinstance(X, pd.DataFrame) else None)
    if has_code:
        frame[CODE] = code
    frame.attrs["baseline"] = float(baseline)
    return frame


def _member_terms(detector, rows):
    """One detector's per-feature terms of validated ``rows`` (the code's part last) and
    its constant baseline."""
    detector._check_rows(rows)
    model, score_type = detector.module_, detector.score_type
    if not hasattr(model, "feature_terms"):
        raise TypeError(f"The model of this {type(detector).__name__} ({type(model).__name__}) "
                        "does not split its score per feature (no feature_terms method).")
    terms = detector._inference(lambda x: model.feature_terms(x, score_type), rows)
    return terms, float(model.score_baseline(score_type))


def _input_names(estimator, X, steps, detector):
    names = getattr(steps[0] if steps else detector, "feature_names_in_", None)
    if names is None and isinstance(X, pd.DataFrame):
        names = X.columns
    if names is None:
        first = steps[0] if steps else detector
        names = [f"x{i}" for i in range(first.n_features_in_)]
    return [str(name) for name in names]


def _sources(step, n_inputs):
    """For each output column of the fitted ``step``, the index of the input column it
    comes from (an int array)."""
    if step is None or step == "passthrough":
        return np.arange(n_inputs)
    if isinstance(step, TableEncoder):
        kept = [i for i, kind in enumerate(step.column_kinds_.values()) if kind != "empty"]
        return np.asarray(kept, dtype=int)[_sources(step.column_transformer_, len(kept))]
    if isinstance(step, Pipeline):
        sources = np.arange(n_inputs)
        for _, inner in step.steps:
            sources = sources[_sources(inner, len(sources))]
        return sources
    if isinstance(step, ColumnTransformer):
        return _column_transformer_sources(step)
    if isinstance(step, OneHotEncoder):
        counts = []
        infrequent = getattr(step, "infrequent_categories_", None)  # absent without grouping
        for i, categories in enumerate(step.categories_):
            rare = None if infrequent is None else infrequent[i]
            count = len(categories) if rare is None else len(categories) - len(rare) + 1
            dropped = step.drop_idx_ is not None and step.drop_idx_[i] is not None
            counts.append(count - int(dropped))
        return np.repeat(np.arange(n_inputs), counts)
    if isinstance(step, SimpleImputer):
        kept = np.arange(n_inputs)
        if not step.keep_empty_features and step.strategy != "constant":
            kept = kept[~np.isnan(step.statistics_.astype(float))]
        indicated = step.indicator_.features_ if step.add_indicator else []
        return np.concatenate([kept, np.asarray(indicated, dtype=int)])
    if isinstance(step, MissingIndicator):
        return np.asarray(step.features_, dtype=int)
    return _one_to_one_sources(step, n_inputs)


def _column_transformer_sources(transformer):
    n_outputs = max((part.stop for part in transformer.output_indices_.values()), default=0)
    sources = np.full(n_outputs, -1)
    for name, step, _ in transformer.transformers_:
        inputs = np.asarray(transformer._transformer_to_input_indices[name], dtype=int)
        part = transformer.output_indices_[name]
        if step == "drop" or part.stop == part.start:
            continue
        sources[part] = inputs[_sources(step, len(inputs))]
    return sources


def _one_to_one_sources(step, n_inputs):
    names = [f"x{i}" for i in range(n_inputs)]
    try:
        out = list(step.get_feature_names_out(names))
    except (AttributeError, TypeError, ValueError):
        out = None
    if out == names:
        return np.arange(n_inputs)
    if n_inputs == 1 and out is not None:
        return np.zeros(len(out), dtype=int)
    raise ValueError(
        f"explain cannot tell which input column each output column of "
        f"{type(step).__name__} comes from (only encoders that keep columns apart can be "
        "traced back: TableEncoder, ColumnTransformer, OneHotEncoder, SimpleImputer, "
        "MissingIndicator, one-to-one transformers). Explain the detector on the "
        "transformed data instead.")
