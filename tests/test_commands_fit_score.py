"""``aedetect fit`` then ``aedetect score``: train once, score many files in chunks."""

import numpy as np
import pandas as pd
import pytest

from aedetect.cli import main
from commands_support import PLANTED, mixed_table, run_cli


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A model fitted by ``aedetect fit`` on a mixed CSV, calibrated for fpr=0.05."""
    tmp = tmp_path_factory.mktemp("fit")
    mixed_table().to_csv(tmp / "train.csv", index=False)
    mixed_table(n_rows=199, seed=1).drop(index=list(PLANTED)).to_csv(tmp / "clean.csv",
                                                                     index=False)
    assert main(["fit", str(tmp / "train.csv"), "--max-iter", "20", "--fpr", "0.05",
                 "--calibration", str(tmp / "clean.csv"), "--out", str(tmp / "model")]) == 0
    return tmp


def test_fit_writes_a_model_directory_without_pickle(fitted):
    files = sorted(p.relative_to(fitted / "model").as_posix()
                   for p in (fitted / "model").rglob("*") if p.is_file())
    assert "MLmodel" in files and any(f.endswith("weights.safetensors") for f in files)
    assert not [f for f in files if f.endswith((".pkl", ".pickle"))]


def test_score_streams_chunks_and_matches_screen(fitted, tmp_path):
    new = mixed_table(seed=2)
    new[new.columns[::-1]].to_parquet(tmp_path / "new.parquet")  # any column order
    done = run_cli("score", fitted / "model", "new.parquet", "--out", "scored.csv",
                   "--chunk-rows", "64", "--progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("scored ") == 4  # 240 rows in chunks of 64
    scored = pd.read_csv(tmp_path / "scored.csv")
    assert list(scored["row"]) == list(range(240))
    assert "rank" not in scored and scored["p_value"].between(1 / 197, 1).all()
    assert set(scored.nsmallest(3, "score")["row"]) == set(PLANTED)
    # the same rows scored in one piece by screen with the same options and seed
    mixed_table().to_csv(tmp_path / "train.csv", index=False)
    assert main(["screen", str(fitted / "train.csv"), "--max-iter", "20", "--fpr", "0.05",
                 "--calibration", str(fitted / "clean.csv"), "--out",
                 str(tmp_path / "screened.csv")]) == 0
    assert main(["score", str(fitted / "model"), str(fitted / "train.csv"), "--out",
                 str(tmp_path / "again.csv"), "--chunk-rows", "100"]) == 0
    screened, again = (pd.read_csv(tmp_path / name) for name in ("screened.csv", "again.csv"))
    np.testing.assert_allclose(again["score"], screened["score"], rtol=1e-6)
    assert (again["top1_column"] == screened["top1_column"]).all()
    np.testing.assert_allclose(again["p_value"], screened["p_value"])


def test_score_names_missing_and_extra_columns_and_writes_nothing(fitted, tmp_path, capsys):
    other = mixed_table().drop(columns=["site"]).assign(colour="red")
    other.to_csv(tmp_path / "other.csv", index=False)
    out = tmp_path / "scored.csv"
    assert main(["score", str(fitted / "model"), str(tmp_path / "other.csv"), "--out",
                 str(out)]) == 2
    err = capsys.readouterr().err
    assert "missing ['site'], extra ['colour']" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == [tmp_path / "other.csv"]


def test_score_refuses_a_column_whose_type_changed(fitted, tmp_path, capsys):
    bad = mixed_table()
    bad["temperature"] = bad["temperature"].astype(str)
    bad.loc[3, "temperature"] = "unknown"  # "n/a" would be read as missing
    bad.to_csv(tmp_path / "bad.csv", index=False)
    assert main(["score", str(fitted / "model"), str(tmp_path / "bad.csv"), "--out",
                 str(tmp_path / "s.csv"), "--chunk-rows", "100"]) == 2
    err = capsys.readouterr().err
    assert "Column 'temperature' was numeric in fit but now holds text" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_fit_never_overwrites_a_model(fitted, capsys):
    assert main(["fit", str(fitted / "train.csv"), "--max-iter", "2", "--out",
                 str(fitted / "model")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["score", str(fitted / "train.csv"), str(fitted / "train.csv"), "--out",
                 str(fitted / "x.csv")]) == 2
    assert "not a model directory" in capsys.readouterr().err


def _write_idx(path, images):
    header = bytes([0, 0, 0x08, images.ndim]) + b"".join(
        int(side).to_bytes(4, "big") for side in images.shape)
    path.write_bytes(header + images.astype(np.uint8).tobytes())


@pytest.mark.slow
def test_images_screen_fit_and_score_with_conv(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    normal = digits.images[digits.target == 0][:150]
    odd = np.zeros((4, 8, 8))
    odd[:, :, 3:5] = 16.0  # bars: nothing like a zero
    images = np.concatenate([normal, odd]).astype(np.float32)
    np.savez(tmp_path / "digits.npz", X=images)
    done = run_cli("screen", "digits.npz", "--architecture", "conv", "--max-iter", "30",
                   "--out", "scored.csv", "--report", "report.html", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    scored = pd.read_csv(tmp_path / "scored.csv")
    assert len(scored) == 154 and "top1_column" not in scored
    assert set(scored.nsmallest(4, "score")["row"]) == {150, 151, 152, 153}
    text = (tmp_path / "report.html").read_text()
    assert "The most anomalous images" in text and text.count("data:image/png;base64,") == 3
    _write_idx(tmp_path / "new-images-idx3-ubyte", images[::-1])
    assert main(["fit", str(tmp_path / "digits.npz"), "--architecture", "conv",
                 "--max-iter", "30", "--out", str(tmp_path / "model")]) == 0
    assert main(["score", str(tmp_path / "model"), str(tmp_path / "new-images-idx3-ubyte"),
                 "--out", str(tmp_path / "new.csv")]) == 0
    new = pd.read_csv(tmp_path / "new.csv")
    np.testing.assert_allclose(new["score"], scored["score"][::-1], rtol=1e-5)


def test_conv_on_a_table_is_refused(tmp_path, capsys):
    mixed_table().to_csv(tmp_path / "t.csv", index=False)
    assert main(["screen", str(tmp_path / "t.csv"), "--architecture", "conv"]) == 2
    assert "--architecture conv is for images" in capsys.readouterr().err


def test_fit_early_stopping_entropy_keeps_the_lowest_entropy_epoch(tmp_path):
    """``--early-stopping entropy`` reaches the detector and travels with the model."""
    from aedetect.commands.fit import detector_of
    from aedetect.tracking import load_model

    mixed_table().to_csv(tmp_path / "train.csv", index=False)
    assert main(["fit", str(tmp_path / "train.csv"), "--max-iter", "30",
                 "--early-stopping", "entropy", "--out", str(tmp_path / "model")]) == 0
    detector = detector_of(load_model(str(tmp_path / "model"), device="cpu"))
    entropies = [record["score_entropy"] for record in detector.history_]
    assert detector.early_stopping == "entropy" and len(entropies) == detector.n_iter_
    assert detector.best_loss_ == pytest.approx(min(entropies))
    done = run_cli("fit", "train.csv", "--early-stopping", "sometimes", "--out", "other",
                   cwd=tmp_path)
    assert done.returncode == 2 and "invalid choice: 'sometimes'" in done.stderr
    assert not (tmp_path / "other").exists()
