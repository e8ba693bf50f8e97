"""The `aedetect demo` command: the main job on bundled data."""

import re

import numpy as np
import pytest

from aedetect.cli import main
from aedetect.datasets import load_digits_outliers


def test_demo_reports_auc_and_flagged_rows(capsys):
    assert main(["demo", "--max-iter", "30", "--show", "3"]) == 0
    out = capsys.readouterr().out
    auc = float(re.search(r"AUC-ROC (\d\.\d+)", out).group(1))
    assert auc > 0.7
    assert re.search(r"Flagged \d+ rows as outliers", out)
    assert len(re.findall(r"^  row ", out, flags=re.M)) == 3


def test_digits_outliers_dataset():
    X, y = load_digits_outliers(contamination=0.1, random_state=0)
    assert X.shape[1] == 64 and X.shape[0] == y.shape[0]
    assert y.mean() == pytest.approx(0.1, abs=0.01)
    X2, y2 = load_digits_outliers(contamination=0.1, random_state=0)
    np.testing.assert_array_equal(X, X2)
    frame, _ = load_digits_outliers(as_frame=True)
    assert list(frame.columns[:2]) == ["pixel_0_0", "pixel_0_1"]
    with pytest.raises(ValueError, match="also in normal_digits"):
        load_digits_outliers(normal_digits=(1, 2), outlier_digit=2)
