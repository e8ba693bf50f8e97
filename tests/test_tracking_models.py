"""The aedetect MLflow flavor: saving, loading, the pyfunc, its outputs, evaluation."""

import json
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from aedetect import AEDetector, tracking
from aedetect.tracking._flavor import _PYFUNC_CODE as PYFUNC_CODE
from tracking_support import (  # noqa: F401 - fixtures are used by name
    SMALL,
    StopAt,
    assert_no_pickle,
    clean_mlflow_state,
    empty_db,
    make_data,
    store,
)

mlflow = pytest.importorskip("mlflow")
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.pyfunc import scoring_server  # noqa: E402
from mlflow.types import DataType  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*An input example was not provided")


def test_save_load_round_trip_without_pickle(detector_class, tmp_path):
    X = make_data()
    detector = detector_class(batch_norm=True, **SMALL).fit(X)
    tracking.save_model(detector, tmp_path / "model")
    assert_no_pickle(tmp_path / "model")
    rng_state = torch.get_rng_state()
    loaded = tracking.load_model(str(tmp_path / "model"))
    assert torch.equal(torch.get_rng_state(), rng_state)  # the user's RNG is untouched
    assert type(loaded) is detector_class
    assert loaded.get_params() == detector.get_params()
    np.testing.assert_array_equal(loaded.score_samples(X), detector.score_samples(X))
    np.testing.assert_array_equal(loaded.decision_function(X), detector.decision_function(X))
    np.testing.assert_array_equal(loaded.predict(X), detector.predict(X))
    np.testing.assert_array_equal(loaded.transform(X), detector.transform(X))
    assert loaded.history_ == detector.history_ and loaded.input_shape_ == detector.input_shape_


def test_save_refuses_parameters_that_need_pickle(tmp_path):
    X = make_data()
    detector = AEDetector(**{**SMALL, "random_state": np.random.RandomState(0)}).fit(X)
    with pytest.raises(ValueError, match="parameter random_state=RandomState"):
        tracking.save_model(detector, tmp_path / "a")
    with pytest.raises(ValueError, match="not fitted yet"):
        tracking.save_model(AEDetector(), tmp_path / "b")
    detector = AEDetector(callbacks=[StopAt(99, RuntimeError())], **SMALL).fit(X)
    tracking.save_model(detector, tmp_path / "c")  # callbacks are not part of a model
    assert tracking.load_model(str(tmp_path / "c")).callbacks is None


def test_pyfunc_returns_scores_decisions_and_labels(tmp_path):
    X = pd.DataFrame(make_data(), columns=[f"f{i}" for i in range(5)])
    detector = AEDetector(**SMALL).fit(X)
    tracking.save_model(detector, tmp_path / "model")
    assert_no_pickle(tmp_path / "model")
    model = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    frame = X.iloc[::-1, ::-1]  # columns out of order: matched by name
    out = model.predict(frame)
    assert list(out.columns) == ["score", "decision", "label"]
    np.testing.assert_array_equal(out["score"], detector.score_samples(X.iloc[::-1]))
    np.testing.assert_array_equal(out["label"], detector.predict(X.iloc[::-1]))
    assert out["label"].dtype == np.int64 and (out["label"] == -1).sum() >= 5
    labels = model.predict(X, params={"output": "label"})
    assert list(labels.columns) == ["label"]
    with pytest.raises(MlflowException, match="params 'output' must be one of"):
        model.predict(X, params={"output": "proba"})
    bad = X.iloc[:2].copy()
    bad.iloc[0, 0] = np.nan
    with pytest.raises(MlflowException, match="NaN"):
        model.predict(bad)
    # a value that cannot be scored is refused (as by predict), never labelled or NaN
    bad.iloc[0, 0] = 1e39
    with pytest.raises(MlflowException, match=r"X\[0, 'f0'\] = 1e\+39 does not fit in float32"):
        model.predict(bad)
    bad.iloc[0, 0] = 1e30
    with pytest.raises(MlflowException, match="cannot be scored"):
        model.predict(bad, params={"output": "label"})
    with pytest.raises(MlflowException):
        model.predict(X.drop(columns="f0"))


def test_pyfunc_of_an_array_fit_takes_float64_arrays_and_frames(tmp_path):
    X = make_data()
    detector = AEDetector(**SMALL).fit(X)
    tracking.save_model(detector, tmp_path / "model")
    model = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    schema = model.metadata.get_input_schema()
    assert [spec.type for spec in schema.inputs] == [DataType.double] * 5
    assert not schema.has_input_names()
    for batch in (X, pd.DataFrame(X), pd.DataFrame(X, columns=list("abcde"))):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "X has feature names" from a CSV header
            np.testing.assert_array_equal(model.predict(batch)["score"],
                                          detector.score_samples(X))


def test_log_model_into_the_active_run(store, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    X = make_data()
    detector = AEDetector(**SMALL).fit(X)
    with mlflow.start_run(experiment_id=store.experiment_id) as run:
        info = tracking.log_model(detector, name="model", input_example=X[:3])
    assert info.run_id == run.info.run_id and "aedetect" in info.flavors
    loaded = tracking.load_model(info.model_uri, dst_path=str(tmp_path / "a"))
    np.testing.assert_array_equal(loaded.score_samples(X), detector.score_samples(X))
    assert_no_pickle(tmp_path / "a")
    by_run = tracking.load_model(f"runs:/{run.info.run_id}/model", dst_path=str(tmp_path / "b"))
    np.testing.assert_array_equal(by_run.score_samples(X), detector.score_samples(X))
    mlflow.pyfunc.save_model(tmp_path / "other", python_model=str(PYFUNC_CODE),
                             pip_requirements=["aedetect"])
    with pytest.raises(ValueError, match="no 'aedetect' flavor"):
        tracking.load_model(str(tmp_path / "other"))



def test_an_ensemble_is_logged_served_and_loaded_like_a_detector(store, monkeypatch, tmp_path):
    from aedetect import EnsembleDetector, VAEDetector

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    X = make_data()
    ensemble = EnsembleDetector([("ae", AEDetector(**SMALL)), ("vae", VAEDetector(**SMALL))],
                                random_state=0).fit(X)
    with mlflow.start_run(experiment_id=store.experiment_id):
        info = tracking.log_model(ensemble, name="model", input_example=X[:3])
    served = mlflow.pyfunc.load_model(info.model_uri).predict(pd.DataFrame(X))
    np.testing.assert_allclose(served["score"], ensemble.score_samples(X))
    np.testing.assert_array_equal(served["label"], ensemble.predict(X))
    loaded = tracking.load_model(info.model_uri, dst_path=str(tmp_path / "a"))
    assert isinstance(loaded, EnsembleDetector)
    np.testing.assert_array_equal(loaded.score_samples(X), ensemble.score_samples(X))
    assert_no_pickle(tmp_path / "a")


def outlier_data(n=300, n_features=5, n_outliers=30, seed=0):
    """Gaussian inliers and shifted outliers; y = 1 for outliers."""
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, n_features))
    X[:n_outliers] += 3.0
    y = np.zeros(n, dtype=int)
    y[:n_outliers] = 1
    return X, y


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A detector fitted on an array and saved, with its data (y = 1 for outliers)."""
    X, y = outlier_data()
    detector = AEDetector(contamination=0.1, **{**SMALL, "max_iter": 30}).fit(X)
    path = tmp_path_factory.mktemp("saved") / "model"
    tracking.save_model(detector, path)
    return detector, X, y, str(path)


def test_pyfunc_output_chosen_at_load_time_and_per_call(saved):
    detector, X, y, path = saved
    decision = detector.decision_function(X)
    outlier = (detector.predict(X) == -1).astype(int)
    model = mlflow.pyfunc.load_model(path, model_config={"output": "classifier"})
    out = model.predict(X)
    assert list(out.columns) == ["outlier", "outlier_probability"]
    np.testing.assert_array_equal(out["outlier"], outlier)
    probability = out["outlier_probability"].to_numpy()
    np.testing.assert_allclose(probability, 1 / (1 + np.exp(decision)), rtol=1e-12)
    # the probability orders rows as -score_samples does, and crosses 0.5 at the threshold
    assert np.all((probability > 0.5) == (outlier == 1))
    order = np.argsort(detector.score_samples(X), kind="stable")  # most outlying first
    assert np.all(np.diff(probability[order]) <= 0)
    # per call, params win over the load-time choice
    scores = model.predict(X, params={"output": "score"})
    np.testing.assert_array_equal(scores["score"], detector.score_samples(X))
    labels = mlflow.pyfunc.load_model(path, model_config={"output": "outlier"}).predict(X)
    assert isinstance(labels, pd.Series) and labels.name == "outlier"
    np.testing.assert_array_equal(labels, outlier)
    default = mlflow.pyfunc.load_model(path).predict(X[:4])
    assert list(default.columns) == ["score", "decision", "label"]
    with pytest.raises(MlflowException, match="model_config 'output' must be one of"):
        mlflow.pyfunc.load_model(path, model_config={"output": "proba"})


def test_evaluate_as_a_classifier_draws_roc_and_pr_curves(saved, store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    detector, X, y, path = saved
    data = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])]).assign(y=y)
    scores = detector.score_samples(X)
    with mlflow.start_run(experiment_id=store.experiment_id):
        result = mlflow.models.evaluate(path, data, targets="y", model_type="classifier",
                                        evaluators="aedetect")
    # 1 = outlier is the positive class: the AUCs are those of -score_samples
    assert result.metrics["roc_auc"] == pytest.approx(roc_auc_score(y, -scores), abs=1e-9)
    assert result.metrics["roc_auc"] > 0.9
    assert result.metrics["precision_recall_auc"] > 0.6
    outlier = (detector.predict(X) == -1).astype(int)
    assert result.metrics["true_positives"] == np.sum((outlier == 1) & (y == 1))
    assert result.metrics["false_positives"] == np.sum((outlier == 1) & (y == 0))
    assert {"roc_curve_plot", "precision_recall_curve_plot", "confusion_matrix"} <= set(
        result.artifacts)
    assert average_precision_score(y, -scores) > 0.6
    # MLflow's own evaluators, with the label output chosen at load time
    with mlflow.start_run(experiment_id=store.experiment_id):
        plain = mlflow.models.evaluate(path, data, targets="y", model_type="classifier",
                                       evaluators="default", model_config={"output": "outlier"})
    assert plain.metrics["recall_score"] == pytest.approx(result.metrics["recall_score"])
    assert "roc_auc" not in plain.metrics  # MLflow asks only scikit-learn models for these


def test_the_aedetect_evaluator_leaves_other_models_alone():
    from aedetect.tracking._evaluation import OutlierEvaluator

    other = SimpleNamespace(metadata=SimpleNamespace(flavors={"python_function": {}}))
    assert OutlierEvaluator().evaluate(model=other, model_type="classifier") is None


def served(model, body, content_type):
    response = scoring_server.invocations(body, content_type, model,
                                          model.metadata.get_input_schema())
    return response.status, response.response


def test_serving_payloads_of_an_array_fit_csv_json_and_frames(saved):
    detector, X, y, path = saved
    model = mlflow.pyfunc.load_model(path)
    expected = detector.score_samples(X[:4])
    frame = pd.DataFrame(X[:4])
    payloads = [
        (frame.to_csv(index=False), "text/csv"),
        (frame.set_axis(list("abcde"), axis=1).to_csv(index=False), "text/csv"),
        (json.dumps({"inputs": X[:4].tolist()}), "application/json"),
        (json.dumps({"dataframe_split": {"data": X[:4].tolist()}}), "application/json"),
        (json.dumps({"dataframe_records": frame.to_dict("records")}), "application/json"),
    ]
    for body, content_type in payloads:
        status, text = served(model, body, content_type)
        assert status == 200, text
        scores = pd.DataFrame(json.loads(text)["predictions"])["score"]
        np.testing.assert_allclose(scores, expected, rtol=1e-12)
    status, text = served(model, frame.to_csv(index=False), "text/csv")
    with pytest.raises(MlflowException, match="declares 5 inputs"):
        served(model, pd.DataFrame(X[:2, :3]).to_csv(index=False), "text/csv")
