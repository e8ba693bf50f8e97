"""Threshold rules turning scores into labels (:mod:`aedetect.thresholds`): the
contamination and 'auto' rules of outlier mode, the conformal rank, p-values and
Benjamini-Hochberg of novelty mode. The detector's ``calibrate``, ``p_values`` and
``predict_fdr``, and the rates they promise, are measured in ``test_calibration.py``."""

import numpy as np
import pytest
from scipy import stats

from aedetect.thresholds import (
    auto_offset,
    benjamini_hochberg,
    conformal_p_values,
    contamination_offset,
    fpr_offset,
    rows_needed,
)


def test_contamination_quantile_flags_that_share():
    scores = np.random.RandomState(0).normal(size=1000)
    for share in (0.01, 0.1, 0.5):
        offset = contamination_offset(scores, share)
        assert (scores < offset).sum() == int(share * 1000)


def test_auto_rule_is_robust_three_sigma():
    rng = np.random.RandomState(0)
    normal = rng.normal(loc=5.0, scale=2.0, size=20000)
    clean = auto_offset(normal)
    assert clean == pytest.approx(5.0 - 3 * 2.0, abs=0.1)
    assert (normal < clean).mean() == pytest.approx(0.00135, abs=0.001)
    # 5% wild outliers move it by a quarter of a sigma (a mean-and-std rule would
    # move by about 10**5 sigma) and still flag under 1% of the normal rows.
    polluted = auto_offset(np.r_[normal, np.full(1000, -1e6)])
    assert abs(polluted - clean) < 0.5
    assert (normal < polluted).mean() < 0.01
    assert auto_offset(np.ones(10)) == 1.0


def test_fpr_offset_is_the_conformal_rank():
    normal = np.random.RandomState(1).permutation(5000).astype(float)
    # k = floor(0.05 * 5001) = 250: the 250th smallest score, 249 rows below it
    assert fpr_offset(normal, 0.05) == 249.0
    assert fpr_offset(np.arange(199.0), 0.05) == 9.0  # 10 of 200 ranks flagged
    assert fpr_offset(np.arange(100.0), 0.29) == 28.0  # 0.29 * 101 = 29.29: k = 29


@pytest.mark.parametrize("fpr, needed", [(0.01, 99), (0.05, 19), (0.1, 9), (0.29, 3),
                                         (0.5, 1), (0.9, 1)])
def test_rows_needed_is_the_fewest_that_reach_the_target(fpr, needed):
    assert rows_needed(fpr) == needed
    fpr_offset(np.arange(float(needed)), fpr)
    if needed > 1:
        with pytest.raises(ValueError, match=f"needs at least {needed} normal rows"):
            fpr_offset(np.arange(needed - 1.0), fpr)


def test_conformal_p_values_count_calibration_scores_at_or_below():
    calibration = [3.0, 1.0, 2.0, 2.0]
    p = conformal_p_values(calibration, [0.0, 1.0, 2.0, 2.5, 9.0])
    np.testing.assert_allclose(p, np.array([1, 2, 4, 4, 5]) / 5)


def test_benjamini_hochberg_matches_scipy_adjusted_p_values():
    rng = np.random.RandomState(0)
    for m in (1, 7, 100):
        p = np.r_[rng.uniform(size=m), rng.uniform(0, 0.01, size=m // 3)]
        p[rng.randint(p.size, size=2)] = p[0]  # ties
        for alpha in (0.05, 0.2):
            np.testing.assert_array_equal(benjamini_hochberg(p, alpha),
                                          stats.false_discovery_control(p) <= alpha)
    assert benjamini_hochberg([], 0.1).shape == (0,)


@pytest.mark.parametrize("call, error, message", [
    (lambda: fpr_offset([], 0.1), ValueError, "needs at least 9 normal rows.* got 0"),
    (lambda: fpr_offset([1.0] * 20 + [np.nan], 0.1), ValueError, "non-finite .* 20"),
    (lambda: fpr_offset([1.0, 2.0], 1.5), ValueError, "fpr must be in"),
    (lambda: fpr_offset([1.0, 2.0], "0.1"), TypeError, "fpr must be a float"),
    (lambda: conformal_p_values([], [1.0]), ValueError, "empty"),
    (lambda: conformal_p_values([1.0], [np.inf]), ValueError, "scores has non-finite"),
    (lambda: benjamini_hochberg([0.1, np.nan], 0.1), ValueError, r"in \[0, 1\]"),
    (lambda: benjamini_hochberg([0.1], 0.0), ValueError, "alpha must be in"),
    (lambda: contamination_offset([1.0], 0.9), ValueError, "contamination must be in"),
    (lambda: contamination_offset([1.0], "most"), ValueError, "contamination must be 'auto'"),
])
def test_threshold_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()
