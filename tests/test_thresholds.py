"""Threshold rules turning scores into labels."""

import numpy as np
import pytest

from aedetect.thresholds import auto_offset, contamination_offset, fpr_offset


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


def test_fpr_offset_calibrates_on_normal_data():
    normal = np.random.RandomState(1).normal(size=5000)
    offset = fpr_offset(normal, 0.05)
    assert (normal < offset).mean() == pytest.approx(0.05, abs=0.002)


@pytest.mark.parametrize("call, message", [
    (lambda: fpr_offset([], 0.1), "empty"),
    (lambda: fpr_offset([1.0, np.nan], 0.1), "non-finite"),
    (lambda: fpr_offset([1.0, 2.0], 1.5), "fpr must be in"),
    (lambda: contamination_offset([1.0], 0.9), "contamination must be in"),
    (lambda: contamination_offset([1.0], "most"), "contamination must be 'auto'"),
])
def test_threshold_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
