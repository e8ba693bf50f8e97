"""Turning scores into labels.

Every detector's ``score_samples`` is higher for more normal rows. A threshold is an
*offset*: rows whose score falls below it are outliers, so
``decision_function = score_samples - offset_`` is negative for outliers.

Outlier mode (the default: the training data may hold outliers) sets the offset from the
training scores in ``fit``:

- :func:`contamination_offset`: the ``contamination`` quantile of the training scores
  (the same rule as scikit-learn's ``IsolationForest``), or the ``'auto'`` rule.
- :func:`auto_offset`: a robust "three sigma" rule that needs no guess of the outlier
  share: ``median - 3 * MAD_sigma`` of the training scores, where
  ``MAD_sigma = 1.4826 * median(|s - median(s)|)`` estimates the standard deviation of
  the normal part without being pulled by the outliers (Hampel's identifier).

Novelty mode calibrates on held-out *normal* rows (``detector.calibrate``), by split
conformal inference (Vovk et al., 2005; Bates et al., 2023):

- :func:`conformal_p_values`: ``p(s) = (1 + #{calibration scores <= s}) / (n + 1)``;
  for a new normal row exchangeable with the calibration rows, ``P(p <= t) <= t``.
- :func:`fpr_offset`: the offset that flags exactly the rows with ``p <= fpr``, so a
  new normal row is flagged with probability ``floor(fpr * (n + 1)) / (n + 1) <= fpr``.
- :func:`benjamini_hochberg`: the rows of a batch to flag so that the expected share
  of normal rows among the flagged (the false discovery rate) is at most ``alpha``.

References
----------
V. Vovk, A. Gammerman, G. Shafer, *Algorithmic Learning in a Random World*, 2005.
Y. Benjamini, Y. Hochberg, "Controlling the false discovery rate", JRSS B, 1995.
S. Bates, E. Candes, L. Lei, Y. Romano, M. Sesia, "Testing for outliers with conformal
p-values", Annals of Statistics, 2023.
"""

import math
from numbers import Integral, Real

import numpy as np

MAD_TO_SIGMA = 1.4826
AUTO_N_SIGMA = 3.0
#: ``floor(fpr * (n + 1))`` tolerates this rounding error (``0.29 * 100`` is 28.99...).
_RANK_TOLERANCE = 1e-9


def labels_from_decision(decision):
    """+1 where ``decision >= 0`` (inliers), -1 where it is negative (outliers)."""
    labels = np.ones(decision.shape[0], dtype=int)
    labels[decision < 0] = -1
    return labels


def auto_offset(scores):
    """Offset of the ``'auto'`` rule: ``median - 3 * 1.4826 * MAD`` of ``scores``.

    When the scores have no spread (MAD of zero) the offset is the median, so no
    training row is flagged.
    """
    scores = np.asarray(scores, dtype=np.float64)
    median = np.median(scores)
    mad = np.median(np.abs(scores - median))
    return float(median - AUTO_N_SIGMA * MAD_TO_SIGMA * mad)


def contamination_offset(scores, contamination):
    """Offset for a ``contamination`` in (0, 0.5] or ``'auto'``.

    With a float, ``contamination * 100`` percent of ``scores`` fall below the offset.
    """
    if isinstance(contamination, str):
        if contamination != "auto":
            raise ValueError(
                f"contamination must be 'auto' or a float in (0, 0.5], got {contamination!r}."
            )
        return auto_offset(scores)
    if not 0.0 < contamination <= 0.5:
        raise ValueError(f"contamination must be in (0, 0.5], got {contamination!r}.")
    return float(np.percentile(scores, 100.0 * contamination))


def check_rate(value, name):
    """``value`` as a float in (0, 1), or a TypeError / ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a float in (0, 1), got {type(value).__name__} "
                        f"{value!r}.")
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}.")
    return float(value)


def rows_needed(fpr):
    """Fewest calibration scores ``n`` for which a target ``fpr`` is reachable:
    ``floor(fpr * (n + 1)) >= 1``, i.e. ``n + 1 >= 1 / fpr`` (99 rows for 0.01)."""
    return max(1, math.ceil((1.0 - _RANK_TOLERANCE) / check_rate(fpr, "fpr")) - 1)


def _finite_scores(scores, name):
    scores = np.asarray(scores, dtype=np.float64).ravel()
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise ValueError(f"{name} has non-finite values (NaN or inf) at positions "
                         f"{', '.join(map(str, bad[:10]))}{' ...' if bad.size > 10 else ''}.")
    return scores


def fpr_offset(normal_scores, fpr):
    """Offset that flags a new normal row with probability at most ``fpr``.

    The split-conformal threshold: the ``k``-th smallest of the ``n`` normal scores
    with ``k = floor(fpr * (n + 1))``. A row scoring below it has conformal p-value
    ``<= fpr`` (see :func:`conformal_p_values`); a new row exchangeable with the
    calibration rows is flagged with probability ``k / (n + 1)``, which is ``fpr`` when
    ``fpr * (n + 1)`` is a whole number and never more.

    Parameters
    ----------
    normal_scores : array-like of shape (n_samples,)
        ``score_samples`` of held-out rows known (or assumed) to be normal, not the
        training rows, whose scores are optimistic. At least :func:`rows_needed`
        ``(fpr)`` of them.
    fpr : float in (0, 1)
        Target false-positive rate.

    Returns
    -------
    offset : float
        A detector's ``offset_`` for that rate (``detector.calibrate`` sets it).

    Examples
    --------
    >>> fpr_offset(range(199), fpr=0.05)    # 10th smallest: flags 10 of every 200
    9.0
    """
    fpr = check_rate(fpr, "fpr")
    normal_scores = _finite_scores(normal_scores, "normal_scores")
    n, needed = normal_scores.size, rows_needed(fpr)
    if n < needed:
        raise ValueError(
            f"fpr={fpr} needs at least {needed} normal rows to calibrate on (n + 1 >= "
            f"1 / fpr), got {n}. Calibrate on more held-out normal rows, or use "
            f"fpr >= {1.0 / (n + 1):.4g} (1 / (n + 1)).")
    rank = min(n, math.floor(fpr * (n + 1) + _RANK_TOLERANCE))
    return float(np.partition(normal_scores, rank - 1)[rank - 1])


def conformal_p_values(calibration_scores, scores):
    """Split-conformal p-values of ``scores`` against normal calibration scores.

    ``p(s) = (1 + #{calibration scores <= s}) / (n + 1)``: scores are higher for more
    normal rows, so a row scoring below every calibration row gets the smallest value,
    ``1 / (n + 1)``. If the row is normal (exchangeable with the calibration rows),
    ``P(p <= t) <= t`` for every ``t``: its p-value is (discretely) uniform.

    Parameters
    ----------
    calibration_scores : array-like of shape (n_calibration,)
        ``score_samples`` of held-out normal rows.
    scores : array-like of shape (n_samples,)
        ``score_samples`` of the rows to test.

    Returns
    -------
    p_values : ndarray of shape (n_samples,), values in [1 / (n + 1), 1]

    Examples
    --------
    >>> conformal_p_values([1.0, 2.0, 3.0], [0.5, 2.0, 9.0])
    array([0.25, 0.75, 1.  ])
    """
    calibration = np.sort(_finite_scores(calibration_scores, "calibration_scores"))
    if calibration.size == 0:
        raise ValueError("conformal_p_values needs calibration scores, got an empty array.")
    scores = _finite_scores(scores, "scores")
    below = np.searchsorted(calibration, scores, side="right")
    return (1.0 + below) / (calibration.size + 1.0)


def benjamini_hochberg(p_values, alpha):
    """Which tests to reject so that the false discovery rate is at most ``alpha``.

    The Benjamini-Hochberg step-up rule: with the ``m`` p-values sorted,
    ``p_(1) <= ... <= p_(m)``, reject the ``k`` smallest for the largest ``k`` with
    ``p_(k) <= alpha * k / m``. With conformal p-values of one batch against the same
    calibration rows, the expected share of normal rows among the flagged is at most
    ``alpha * m0 / m`` (``m0`` normal rows in the batch; Bates et al., 2023).

    Parameters
    ----------
    p_values : array-like of shape (n_samples,)
        Values in [0, 1].
    alpha : float in (0, 1)
        Target false discovery rate.

    Returns
    -------
    discoveries : ndarray of shape (n_samples,), dtype bool
        True for the rejected tests (the rows to flag as outliers).

    Examples
    --------
    >>> benjamini_hochberg([0.001, 0.02, 0.04, 0.5], alpha=0.1)
    array([ True,  True,  True, False])
    """
    alpha = check_rate(alpha, "alpha")
    p_values = np.asarray(p_values, dtype=np.float64).ravel()
    if np.any(~(p_values >= 0.0) | ~(p_values <= 1.0)):  # NaN fails both
        raise ValueError("p_values must lie in [0, 1] (no NaN).")
    m = p_values.size
    discoveries = np.zeros(m, dtype=bool)
    if m == 0:
        return discoveries
    ordered = np.sort(p_values)
    passing = np.flatnonzero(ordered <= alpha * np.arange(1, m + 1) / m)
    if passing.size:
        discoveries[p_values <= ordered[passing[-1]]] = True
    return discoveries


# --------------------------------------------------------------- provenance
#: ``threshold_["method"]`` values, and the keys each record holds.
THRESHOLD_KEYS = {"contamination": ("method", "contamination", "n_rows"),
                  "auto": ("method", "n_rows"),
                  "fpr": ("method", "fpr", "n_rows")}


def training_threshold(contamination, n_rows):
    """The ``threshold_`` record of a fit: ``offset_`` came from ``n_rows`` training
    scores by the ``contamination`` rule."""
    if isinstance(contamination, str):
        return {"method": "auto", "n_rows": int(n_rows)}
    return {"method": "contamination", "contamination": float(contamination),
            "n_rows": int(n_rows)}


def calibrated_threshold(fpr, n_rows):
    """The ``threshold_`` record of ``calibrate``: ``offset_`` came from ``n_rows``
    held-out normal scores for a target false-positive rate ``fpr``."""
    return {"method": "fpr", "fpr": float(fpr), "n_rows": int(n_rows)}


def is_threshold_record(record):
    """Whether ``record`` is a ``threshold_`` that :func:`training_threshold` or
    :func:`calibrated_threshold` could have made (loading checks saved files with it)."""
    if not isinstance(record, dict) or record.get("method") not in THRESHOLD_KEYS:
        return False
    method, n_rows = record["method"], record.get("n_rows")
    if set(record) != set(THRESHOLD_KEYS[method]) or isinstance(n_rows, bool) or not (
            isinstance(n_rows, Integral) and n_rows >= 1):
        return False
    value = record.get(method)
    if method == "auto":
        return True
    if isinstance(value, bool) or not isinstance(value, Real):
        return False
    if method == "contamination":
        return 0.0 < value <= 0.5
    return 0.0 < value < 1.0 and n_rows >= rows_needed(value)
