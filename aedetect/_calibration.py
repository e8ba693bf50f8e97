"""Novelty mode: thresholds and p-values calibrated on held-out normal rows.

:class:`CalibrationMixin` gives every detector ``calibrate`` (sets ``offset_`` for a
target false-positive rate and keeps the calibration scores), ``p_values`` (split
conformal p-values of new rows) and ``predict_fdr`` (labels that control the false
discovery rate of a batch). The rules themselves live in :mod:`aedetect.thresholds`;
this module only connects them to a fitted detector.
"""

import math
import warnings

import numpy as np
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from . import _data, thresholds


def _fewest(ratio):
    """``ceil(ratio)``, forgiving rounding error (``50 / 0.1`` is 500, not 501)."""
    return math.ceil(ratio * (1 - 1e-9))


class CalibrationMixin:
    """``calibrate``, ``p_values`` and ``predict_fdr`` of the detectors."""

    def calibrate(self, X, fpr):
        """Set ``offset_`` from held-out normal rows for a target false-positive rate.

        Novelty mode: ``X`` holds rows known to be normal that the detector was not
        trained on. Their scores set ``offset_`` by the split-conformal rule
        (:func:`aedetect.thresholds.fpr_offset`), so a new normal row is flagged by
        ``predict`` with probability at most ``fpr`` (exactly ``fpr`` when
        ``fpr * (n + 1)`` is a whole number); they are kept in
        ``calibration_scores_`` for ``p_values`` and ``predict_fdr``, and
        ``threshold_`` records the calibration. A later ``fit`` discards all three.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), or images
            Held-out normal rows: at least ``ceil(1 / fpr) - 1`` of them (99 for
            ``fpr=0.01``). Training rows score optimistically and would flag more
            new normal rows than ``fpr``.
        fpr : float in (0, 1)
            Target false-positive rate.

        Returns
        -------
        self : object
            The detector, calibrated.
        """
        check_is_fitted(self)
        self._check_score_type("calibrate")
        fpr = thresholds.check_rate(fpr, "fpr")
        rows = _data.validate_samples(self, X, reset=False)[0]
        needed = thresholds.rows_needed(fpr)
        if rows.shape[0] < needed:
            raise ValueError(
                f"calibrate(X, fpr={fpr}) needs at least {needed} held-out normal rows "
                f"(n + 1 >= 1 / fpr), got {rows.shape[0]}. Pass more rows, or use "
                f"fpr >= {1.0 / (rows.shape[0] + 1):.4g} (1 / (n + 1)).")
        scores = np.sort(self._score_rows(rows))  # a non-finite score raises, naming rows
        # one step: other threads see the old or the new threshold, never a mix
        self.__dict__.update(offset_=thresholds.fpr_offset(scores, fpr),
                             calibration_scores_=scores,
                             threshold_=thresholds.calibrated_threshold(fpr, scores.size))
        return self

    def p_values(self, X):
        """Split-conformal p-value of each row against the calibration scores.

        ``(1 + #{calibration_scores_ <= score}) / (n + 1)``: small for rows that
        score lower (are less normal) than most calibration rows. For a new normal
        row ``P(p <= t) <= t``, so ``p <= fpr`` flags normal rows at rate ``fpr``
        (``predict`` after ``calibrate(X_cal, fpr)`` flags exactly those rows).

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), or images
            Rows, or images of the shape seen in ``fit``.

        Returns
        -------
        p_values : ndarray of shape (n_samples,), values in [1 / (n + 1), 1]
        """
        check_is_fitted(self)
        calibration = self._calibration_scores("p_values")
        return thresholds.conformal_p_values(calibration, self.score_samples(X))

    def predict_fdr(self, X, alpha=0.1):
        """Label a batch so that at most ``alpha`` of the flagged rows are expected
        to be normal (Benjamini-Hochberg on the conformal ``p_values``).

        Unlike ``predict``, whose labels hold a false-positive rate per row, this
        bounds the false discovery rate of the batch: the expected share of normal
        rows among those labelled -1 is at most ``alpha`` (times the share of normal
        rows in the batch). A row's label depends on the other rows of the batch.
        A single outlier can be flagged only when ``1 / (n + 1) <= alpha / m``, for
        ``n`` calibration rows and a batch of ``m``: a warning says when the
        calibration is too small for the batch.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), or images
            The batch of rows to screen.
        alpha : float in (0, 1), default=0.1
            Target false discovery rate.

        Returns
        -------
        labels : ndarray of shape (n_samples,), values in {-1, +1}
            -1 for the rows flagged as outliers.
        """
        alpha = thresholds.check_rate(alpha, "alpha")
        p_values = self.p_values(X)
        n, m = self.calibration_scores_.size, p_values.size
        if m > alpha * (n + 1) * (1 + 1e-9):  # one p-value 1 / (n + 1) is not enough
            warnings.warn(
                f"predict_fdr(alpha={alpha}) on {m} rows against {n} calibration rows "
                f"flags nothing unless at least {_fewest(m / (alpha * (n + 1)))} rows "
                "score below every calibration row (the smallest p-value is 1 / (n + 1)). "
                f"To flag a single outlier, calibrate on at least {_fewest(m / alpha) - 1} "
                "held-out normal rows, or screen smaller batches.", UserWarning, stacklevel=2)
        labels = np.ones(p_values.shape[0], dtype=int)
        labels[thresholds.benjamini_hochberg(p_values, alpha)] = -1
        return labels

    def _check_score_type(self, method):
        if self.score_type != self.score_type_:
            raise ValueError(
                f"{method} uses the score the {type(self).__name__} was fitted with "
                f"(score_type_={self.score_type_!r}), but score_type is now "
                f"{self.score_type!r}. Set score_type back, or fit again with this "
                "score_type before calibrating.")

    def _calibration_scores(self, method):
        if getattr(self, "calibration_scores_", None) is None:
            raise NotFittedError(
                f"This {type(self).__name__} has no calibration scores: call "
                f"calibrate(X_normal, fpr) with held-out normal rows before {method}.")
        self._check_score_type(method)
        return self.calibration_scores_
