"""The `aedetect demo` command: the screening of a bundled table, with its report."""

import re

import numpy as np
import pytest

from aedetect.cli import main
from aedetect.commands.demo import KINDS, load_demo_table
from aedetect.datasets import load_digits_outliers


def test_demo_table_plants_four_errors_of_each_kind():
    table, planted = load_demo_table(random_state=0)
    clean, _ = load_demo_table(random_state=1)
    assert table.shape == (569, 11) and len(planted) == 16
    assert sorted(kind for kind, _ in planted.values()) == sorted(list(KINDS) * 4)
    for row, (kind, text) in planted.items():
        if kind == "sign":
            assert (table.loc[row].drop("diagnosis") < 0).sum() == 1
        if kind == "diagnosis":
            assert text.endswith(table.at[row, "diagnosis"])
    untouched = [row for row in range(569) if row not in planted]
    assert (table.iloc[untouched, 1:] >= 0).all().all()


def test_demo_screens_the_table_and_writes_its_report(capsys, tmp_path):
    report = tmp_path / "demo.html"
    assert main(["demo", "--no-tracking", "--max-iter", "100", "--report", str(report)]) == 0
    out = capsys.readouterr().out
    auc = float(re.search(r"AUC-ROC (\d\.\d+) for the planted errors", out).group(1))
    assert auc > 0.9
    listed = re.findall(r"^ +\d+  row +\d+ .*  (planted|genuine row): (.*)$", out, flags=re.M)
    assert len(listed) == 10
    assert sum(kind == "planted" for kind, _ in listed) >= 7
    assert all(why for _, why in listed)  # every listed row says why
    assert re.search(r"decimal point: 4 of 4 flagged", out)
    text = report.read_text(encoding="utf-8")
    assert "breast_cancer_with_planted_errors.csv" in text and "Model card" in text


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
