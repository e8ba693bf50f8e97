"""Datasets: data that ships with the installed packages, shaped for outlier detection."""

import numpy as np
from sklearn.datasets import load_digits
from sklearn.utils import check_random_state


def load_digits_outliers(normal_digits=(0, 1, 2, 3, 4), outlier_digit=7,
                         contamination=0.05, random_state=0, as_frame=False):
    """scikit-learn's 8x8 digits as an outlier-detection problem.

    Every image of ``normal_digits`` is an inlier; images of ``outlier_digit`` are
    sampled so that they make up ``contamination`` of the rows. Pixel values are
    0 to 16. No download: the images ship with scikit-learn.

    Parameters
    ----------
    normal_digits : sequence of int, default=(0, 1, 2, 3, 4)
    outlier_digit : int, default=7
    contamination : float in (0, 0.5), default=0.05
        Share of outliers among the returned rows.
    random_state : int, RandomState instance or None, default=0
        Chooses which outlier images are kept and shuffles the rows.
    as_frame : bool, default=False
        Return ``X`` as a pandas DataFrame with columns ``pixel_0_0`` ... ``pixel_7_7``.

    Returns
    -------
    X : ndarray or DataFrame of shape (n_samples, 64)
    y : ndarray of shape (n_samples,)
        1 for outliers, 0 for inliers (the ADBench convention).
    """
    if not 0.0 < contamination < 0.5:
        raise ValueError(f"contamination must be in (0, 0.5), got {contamination!r}.")
    if outlier_digit in normal_digits:
        raise ValueError(f"outlier_digit={outlier_digit} is also in normal_digits.")
    rng = check_random_state(random_state)
    digits = load_digits(as_frame=as_frame)
    data, target = digits.data, np.asarray(digits.target)
    normal = np.flatnonzero(np.isin(target, normal_digits))
    n_outliers = max(1, int(round(contamination * normal.size / (1 - contamination))))
    candidates = np.flatnonzero(target == outlier_digit)
    outliers = rng.choice(candidates, size=min(n_outliers, candidates.size), replace=False)
    rows = rng.permutation(np.concatenate([normal, outliers]))
    y = (target[rows] == outlier_digit).astype(int)
    X = data.iloc[rows].reset_index(drop=True) if as_frame else data[rows]
    return X, y
