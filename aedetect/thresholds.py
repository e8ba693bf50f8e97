"""Turning scores into labels.

Every detector's ``score_samples`` is higher for more normal rows. A threshold is an
*offset*: rows whose score falls below it are outliers, so
``decision_function = score_samples - offset_`` is negative for outliers.

- :func:`contamination_offset`: the ``contamination`` quantile of the training scores
  (the same rule as scikit-learn's ``IsolationForest``), or the ``'auto'`` rule.
- :func:`auto_offset`: a robust "three sigma" rule that needs no guess of the outlier
  share: ``median - 3 * MAD_sigma`` of the training scores, where
  ``MAD_sigma = 1.4826 * median(|s - median(s)|)`` estimates the standard deviation of
  the normal part without being pulled by the outliers (Hampel's identifier).
- :func:`fpr_offset`: calibration on held-out *normal* data, choosing the offset that
  flags a target false-positive rate of them.
"""

import numpy as np

MAD_TO_SIGMA = 1.4826
AUTO_N_SIGMA = 3.0


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


def fpr_offset(normal_scores, fpr):
    """Offset that flags a fraction ``fpr`` of held-out normal rows as outliers.

    Parameters
    ----------
    normal_scores : array-like of shape (n_samples,)
        ``score_samples`` of data known (or assumed) to be normal, ideally not the
        training data, whose scores are optimistic.
    fpr : float in (0, 1)
        Target false-positive rate.

    Returns
    -------
    offset : float
        Set it as a detector's ``offset_`` to use it with ``predict``.
    """
    normal_scores = np.asarray(normal_scores, dtype=np.float64).ravel()
    if normal_scores.size == 0:
        raise ValueError("fpr_offset needs at least one normal score, got an empty array.")
    if not np.all(np.isfinite(normal_scores)):
        raise ValueError("fpr_offset got non-finite scores (NaN or inf).")
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"fpr must be in (0, 1), got {fpr!r}.")
    return float(np.quantile(normal_scores, fpr))
