"""A fitted preprocessing + detector pipeline saves, loads and serves without pickle."""

import json
import os
import shutil
import warnings
import zipfile

import mlflow
import numpy as np
import pandas as pd
import pytest
import skops.io
from mlflow.tracking import MlflowClient
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from aedetect import AAEDetector, AEDetector, tracking
from aedetect._persistence import load_detector, save_detector
from aedetect._pipelines import PIPELINE_FILE, PREPROCESSING_FILE
from aedetect.explain import explain
from aedetect.preprocessing import make_pipeline


def mixed_table(n=150, seed=0):
    rng = np.random.RandomState(seed)
    frame = pd.DataFrame({
        "color": rng.choice(["red", "green", "blue"], n),
        "shape": pd.Categorical(rng.choice(["round", "square"], n)),
        "count": pd.array(rng.randint(0, 9, n), dtype="Int64"),
        "flag": rng.rand(n) > 0.5,
        "size": rng.normal(10, 2, n),
    })
    frame.loc[3, "count"] = pd.NA
    frame.loc[4, "color"] = None
    frame.loc[[5, 6], "size"] = np.nan
    return frame


@pytest.fixture(scope="module")
def fitted():
    table = mixed_table()
    return table, make_pipeline(AAEDetector(max_iter=5, random_state=0)).fit(table)


def test_pipeline_round_trip_scores_bit_for_bit(fitted, tmp_path):
    table, pipe = fitted
    save_detector(pipe, tmp_path / "pipe")
    assert sorted(os.listdir(tmp_path / "pipe")) == ["detector", PIPELINE_FILE,
                                                     PREPROCESSING_FILE]
    loaded = load_detector(tmp_path / "pipe")
    assert isinstance(loaded, Pipeline) and [n for n, _ in loaded.steps] == ["preprocess",
                                                                             "detector"]
    np.testing.assert_array_equal(loaded.score_samples(table), pipe.score_samples(table))
    np.testing.assert_array_equal(loaded.predict(table), pipe.predict(table))
    pd.testing.assert_frame_equal(explain(loaded, table), explain(pipe, table))
    with pytest.raises(ValueError, match="already exists and is not empty"):
        save_detector(pipe, tmp_path / "pipe")


def test_mlflow_flavor_and_pyfunc_take_the_raw_mixed_table(fitted, tmp_path):
    table, pipe = fitted
    tracking.save_model(pipe, tmp_path / "model")
    assert not list((tmp_path / "model").rglob("*.pkl"))
    loaded = tracking.load_model(str(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.score_samples(table), pipe.score_samples(table))
    model = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    assert model.metadata.get_input_schema().input_names() == list(table.columns)
    expected = pipe.score_samples(table.head(10))
    out = model.predict(table.head(10))
    np.testing.assert_array_equal(out["score"], expected)
    np.testing.assert_array_equal(out["label"], pipe.predict(table.head(10)))
    # as a JSON payload arrives: object columns, None for gaps, columns in another order
    as_json = table.head(10).astype(object).where(table.head(10).notna(), None)
    np.testing.assert_allclose(model.predict(as_json[table.columns[::-1]])["score"], expected)
    with pytest.raises(mlflow.exceptions.MlflowException, match="Column 'size' was numeric"):
        model.predict(as_json.assign(size="n/a"))


def test_log_model_into_a_run(fitted, tmp_path, monkeypatch):
    table, pipe = fitted
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    experiment = MlflowClient(uri).create_experiment("t", artifact_location=str(tmp_path / "a"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run(experiment_id=experiment) as run:
            info = tracking.log_model(pipe, name="model", input_example=table.head(3))
    assert "aedetect" in info.flavors
    loaded = tracking.load_model(f"runs:/{run.info.run_id}/model", dst_path=str(tmp_path / "d"))
    np.testing.assert_array_equal(loaded.score_samples(table), pipe.score_samples(table))


def _double(X):
    return 2 * X


def test_an_unfitted_pipeline_or_one_needing_pickle_is_refused(tmp_path):
    with pytest.raises(Exception, match="not fitted"):
        save_detector(make_pipeline(AEDetector()), tmp_path / "a")
    X = np.random.RandomState(0).rand(60, 3)
    custom = Pipeline([("double", FunctionTransformer(_double)),
                       ("detector", AEDetector(max_iter=2, random_state=0))]).fit(X)
    with pytest.raises(ValueError, match=r"without pickle.*test_pipeline_files._double"):
        save_detector(custom, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_altered_files_are_refused_by_name(fitted, tmp_path):
    table, pipe = fitted
    save_detector(pipe, tmp_path / "good")

    def altered(name, change):
        target = tmp_path / name
        shutil.copytree(tmp_path / "good", target)
        change(target)
        return target

    def hostile_preprocessing(target):   # a step that would call os.system when used
        steps = Pipeline([("preprocess", FunctionTransformer(os.system))])
        (target / PREPROCESSING_FILE).write_bytes(skops.io.dumps(steps))

    def steps_mismatch(target):
        config = json.loads((target / PIPELINE_FILE).read_text())
        config["steps"] = ["other", "detector"]
        (target / PIPELINE_FILE).write_text(json.dumps(config))

    def broken_zip(target):
        (target / PREPROCESSING_FILE).write_bytes(b"PK\x03\x04 not a zip")

    with pytest.raises(ValueError, match=r"preprocessing.skops: holds types outside the "
                                         r"allow-list: \[.*system"):
        load_detector(altered("hostile", hostile_preprocessing))
    with pytest.raises(ValueError, match=r"does not hold the steps \['other'\]"):
        load_detector(altered("mismatch", steps_mismatch))
    with pytest.raises(ValueError, match="not a readable skops file"):
        load_detector(altered("zip", broken_zip))
    with pytest.raises(ValueError, match="pipeline.json is not valid JSON"):
        load_detector(altered("json", lambda t: (t / PIPELINE_FILE).write_text("{")))
    assert zipfile.is_zipfile(tmp_path / "good" / PREPROCESSING_FILE)
