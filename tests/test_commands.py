"""``aedetect screen`` and the command's errors, run as the real command on real files."""

import html.parser

import numpy as np
import pandas as pd
import pytest

from aedetect.cli import build_parser, main
from commands_support import PLANTED, mixed_table, run_cli


def test_screen_csv_scores_every_row_and_names_the_planted_column(tmp_path):
    mixed_table().to_csv(tmp_path / "data.csv", index=False)
    done = run_cli("screen", "data.csv", "--max-iter", "40", "--out", "scored.csv",
                   "--report", "report.html", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    scored = pd.read_csv(tmp_path / "scored.csv")
    assert len(scored) == 240 and list(scored["row"]) == list(range(240))
    assert list(scored.columns[:5]) == ["row", "score", "decision", "label", "rank"]
    assert sorted(scored["rank"]) == list(range(1, 241))
    np.testing.assert_allclose(scored["score"].rank(method="first"), scored["rank"].rank())
    planted = scored.loc[list(PLANTED)]
    assert set(planted["rank"]) == {1, 2, 3}
    assert (planted["label"] == -1).all() and (planted["top1_column"] == "pressure").all()
    assert (planted["top1_share"] > 0.5).all()
    shares = scored[["top1_share", "top2_share", "top3_share"]]
    assert (shares.diff(axis=1).iloc[:, 1:] <= 1e-9).all().all()  # largest first
    assert (shares.sum(axis=1) <= 1 + 1e-3).all()
    assert ((scored["decision"] < 0) == (scored["label"] == -1)).all()
    assert scored["site"].isna().sum() > 0  # the input columns follow, gaps kept
    assert "rank, row, score" in done.stdout and "pressure" in done.stdout
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "report.html",
                                                          "scored.csv"]


class _Checker(html.parser.HTMLParser):
    """Collects the visible text and every src/href; fails on unbalanced tags."""

    VOID = {"img", "meta", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.text, self.links = [], [], []

    def handle_starttag(self, tag, attrs):
        self.links += [value for name, value in attrs if name in ("src", "href")]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"

    def handle_data(self, data):
        if self.stack and self.stack[-1] not in ("style", "title"):
            self.text.append(data)


def check_report(path):
    """Parse a report: balanced tags, every figure inlined, the visible text."""
    checker = _Checker()
    checker.feed(path.read_text(encoding="utf-8"))
    checker.close()
    assert checker.stack == []
    assert checker.links and all(link.startswith("data:image/png;base64,")
                                 for link in checker.links)
    return " ".join(" ".join(checker.text).split()), len(checker.links)


def test_screen_parquet_calibrated_gives_p_values_and_report(tmp_path):
    table = mixed_table(seed=0)
    table.set_axis(table.index + 1000).to_parquet(tmp_path / "data.parquet")  # own index
    mixed_table(n_rows=199, seed=1).drop(index=list(PLANTED)).to_parquet(
        tmp_path / "clean.parquet")
    assert main(["screen", str(tmp_path / "data.parquet"), "--max-iter", "30", "--fpr", "0.05",
                 "--calibration", str(tmp_path / "clean.parquet"), "--out",
                 str(tmp_path / "scored.parquet"), "--report", str(tmp_path / "r.html")]) == 0
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    assert list(scored["row"]) == list(range(240))
    assert scored["p_value"].between(1 / 197, 1).all()
    np.testing.assert_allclose(scored.loc[list(PLANTED), "p_value"], 1 / 197)
    assert scored["shift"].tolist() == table["shift"].tolist()  # the inputs, text kept
    text, n_figures = check_report(tmp_path / "r.html")
    assert n_figures == 3
    for words in ("most anomalous rows", "Which columns make rows anomalous",
                  "Training curve", "Model card", "calibrated for a false-positive rate of 0.05",
                  "AEDetector", "240 rows x 6 columns", "pressure"):
        assert words in text


def _write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


@pytest.mark.parametrize("content, args, message", [
    (None, [], "no such file"),
    (b"", [], "the file is empty"),
    (b"a,b,c\n", [], "header but no rows"),
    ("t,city\n1,K\xf6ln\n2,Z\xfcrich\n".encode("latin1"), [], "not UTF-8"),
    (b"a,b\n1,2\n3,4\n", ["--model", "svm"], "unknown model 'svm'"),
    (b"a,b\n1,\n3,\n2,\n", [], "column(s) ['b'] are missing in every row"),
    (b"a,b\n1,2\n3,4\n", ["--fpr", "0.1"], "--fpr F and --calibration CLEAN go together"),
    (b"a,b\n1,2\n3,4\n", ["--out", "x.json"], "must end in .csv or .parquet"),
])
def test_screen_errors_are_one_line(tmp_path, capsys, content, args, message):
    path = str(tmp_path / "data.csv") if content is None else _write(tmp_path, "data.csv",
                                                                     content)
    assert main(["screen", path, "--max-iter", "2", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("aedetect screen: error:")


def test_user_error_in_a_subprocess_has_no_traceback_and_leaves_no_output(tmp_path):
    _write(tmp_path, "data.csv", b"when,where\n2026-01-01,a\n2026-01-02,b\n")
    pd.DataFrame({"when": pd.to_datetime(["2026-01-01", "2026-01-02"] * 5),
                  "n": range(10)}).to_parquet(tmp_path / "dates.parquet")
    done = run_cli("screen", "dates.parquet", "--max-iter", "2", "--out", "scored.csv",
                   cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "Column 'when' holds datetime64 values" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "scored.csv").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_help_and_version_are_plain_text(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("aedetect 0.")
    help_text = build_parser().format_help()
    for command in ("screen", "fit", "score", "demo"):
        assert command in help_text
    assert "\x1b" not in help_text
    screen_help = build_parser()._subparsers._group_actions[0].choices["screen"].format_help()
    for option in ("--contamination", "--fpr", "--calibration", "--report", "--mlflow",
                   "--progress", "--model"):
        assert option in screen_help


@pytest.mark.slow
def test_screen_mlflow_logs_the_run_the_model_and_the_report(tmp_path):
    import mlflow

    mixed_table().to_csv(tmp_path / "data.csv", index=False)
    done = run_cli("screen", "data.csv", "--max-iter", "5", "--mlflow", "--report", "r.html",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run_id = next(line.split()[2] for line in done.stdout.splitlines()
                  if line.startswith("MLflow: run "))
    run = client.get_run(run_id)
    assert run.data.tags["aedetect.command"] == "screen"
    assert run.data.metrics["n_flagged"] >= 3 and "loss" in run.data.metrics
    assert "r.html" in [item.path for item in client.list_artifacts(run_id)]
    from aedetect.tracking import load_model

    models = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert models[0].source_run_id == run_id
    pipeline = load_model(models[0].artifact_location)  # a local folder: no global URI
    assert set(pipeline.feature_names_in_) == set(mixed_table().columns)


@pytest.mark.parametrize("model, name", [("vae", "VAEDetector"), ("aae", "AAEDetector")])
def test_screen_other_models_name_the_planted_column(tmp_path, capsys, model, name):
    mixed_table().to_csv(tmp_path / "data.csv", index=False)
    assert main(["screen", str(tmp_path / "data.csv"), "--model", model, "--max-iter", "30",
                 "--contamination", "0.05", "--out", str(tmp_path / "s.csv")]) == 0
    assert f"with {name}" in capsys.readouterr().out
    scored = pd.read_csv(tmp_path / "s.csv")
    assert (scored["label"] == -1).sum() == 12  # 5% of 240
    planted = scored.loc[list(PLANTED)]
    assert (planted["label"] == -1).all() and (planted["top1_column"] == "pressure").all()
    names = set(scored[["top1_column", "top2_column", "top3_column"]].to_numpy().ravel())
    assert names <= {*mixed_table().columns, "(code)"}


def test_the_parser_imports_nothing_heavy():
    """``import aedetect`` and ``aedetect screen --help`` load neither torch, scikit-learn,
    MLflow, pandas nor numpy (the detectors are imported on first use), so help is
    instant; the detectors still import from the package."""
    import subprocess
    import sys

    code = ("import sys\n"
            "import aedetect\n"
            "from aedetect.cli import main\n"
            "try:\n    main(['screen', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'sklearn', 'mlflow', 'pandas', 'numpy')"
            " if m in sys.modules))\n"
            "from aedetect import AEDetector, Callback\n"
            "print(AEDetector.__module__, Callback.__module__, 'torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--calibration CLEAN" in done.stdout
    lines = done.stdout.strip().splitlines()
    assert lines[-2] == "[]"
    assert lines[-1] == "aedetect.ae aedetect._training True"
