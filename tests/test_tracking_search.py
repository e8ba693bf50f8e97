"""autolog and scikit-learn's searches: one parent run, one child run per candidate."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import make_scorer, roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from aedetect import AEDetector, tracking
from tracking_support import (  # noqa: F401 - fixtures are used by name
    SMALL,
    clean_mlflow_state,
    empty_db,
    make_data,
    store,
)

mlflow = pytest.importorskip("mlflow")

pytestmark = pytest.mark.filterwarnings("ignore:.*An input example was not provided")
AUC = make_scorer(roc_auc_score, response_method="decision_function")


def labelled_data():
    X = make_data(n=120, n_features=4)
    y = np.ones(len(X), dtype=int)
    y[:8] = 0  # inliers are the positive class of a higher-is-normal score
    return X, y


def runs_by_name(store, filter_string=""):
    runs = store.client.search_runs([store.experiment_id], filter_string)
    return {run.info.run_name: run for run in runs}


def test_grid_search_gives_a_parent_with_the_summary_and_a_child_per_candidate(store,
                                                                               monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    X, y = labelled_data()
    search = GridSearchCV(AEDetector(**{**SMALL, "max_iter": 3}), {"latent_dim": [1, 2, 3]},
                          scoring=AUC, cv=StratifiedKFold(2, shuffle=True, random_state=0))
    with tracking.autolog(experiment_id=store.experiment_id, run_name="grid"):
        search.fit(X, y)
    runs = runs_by_name(store)
    # no run per cross-validation fit: the parent and the three candidates only
    assert sorted(runs) == ["grid", "grid-0", "grid-1", "grid-2"]
    parent = runs["grid"]
    assert parent.info.status == "FINISHED" and "mlflow.parentRunId" not in parent.data.tags
    assert parent.data.tags["aedetect.search"] == "GridSearchCV"
    assert parent.data.params["best_latent_dim"] == str(search.best_params_["latent_dim"])
    assert parent.data.metrics["best_cv_score"] == pytest.approx(search.best_score_)
    # the refitted best detector's training, fitted values and model
    best = search.best_estimator_
    history = store.client.get_metric_history(parent.info.run_id, "loss")
    assert [m.value for m in history] == best.loss_curve_
    assert [m.step for m in history] == [1, 2, 3]
    assert float(parent.data.params["offset_"]) == best.offset_
    model = mlflow.last_logged_model()
    assert model.source_run_id == parent.info.run_id
    loaded = tracking.load_model(f"models:/{model.model_id}")
    np.testing.assert_array_equal(loaded.score_samples(X), best.score_samples(X))
    # cv_results_ as a table
    path = store.client.download_artifacts(parent.info.run_id, "cv_results.csv",
                                           str(store.root / "grid"))
    table = pd.read_csv(path)
    np.testing.assert_allclose(table["mean_test_score"], search.cv_results_["mean_test_score"])
    for index, latent_dim in enumerate([1, 2, 3]):
        child = runs[f"grid-{index}"]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.params["latent_dim"] == str(latent_dim)
        assert child.data.params["max_iter"] == "3"  # the other parameters too
        assert child.data.metrics["mean_test_score"] == pytest.approx(
            search.cv_results_["mean_test_score"][index])
        assert child.data.metrics["rank_test_score"] == search.cv_results_["rank_test_score"][
            index]
        assert child.info.status == "FINISHED"


def test_a_search_over_a_pipeline_inside_an_active_run(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    X, y = labelled_data()
    pipe = make_pipeline(StandardScaler(), AEDetector(scaling=None, **{**SMALL, "max_iter": 2}))
    search = GridSearchCV(pipe, {"aedetector__latent_dim": [1, 2]}, scoring=AUC,
                          cv=StratifiedKFold(2, shuffle=True, random_state=0))
    with mlflow.start_run(experiment_id=store.experiment_id, run_name="mine") as mine:
        with tracking.autolog(log_models=False, log_plots=False):
            search.fit(X, y)
    children = store.client.search_runs(
        [store.experiment_id], f"tags.mlflow.parentRunId = '{mine.info.run_id}'")
    assert len(children) == 2  # the user's run is the parent
    assert {run.data.params["aedetector__latent_dim"] for run in children} == {"1", "2"}
    mine = store.client.get_run(mine.info.run_id)
    assert mine.data.params["best_aedetector__latent_dim"] == str(
        search.best_params_["aedetector__latent_dim"])
    assert mine.data.params["n_iter_"] == str(search.best_estimator_[-1].n_iter_)


def test_a_search_without_autolog_logs_nothing(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    before = len(store.client.search_runs([store.experiment_id]))
    X, y = labelled_data()
    GridSearchCV(AEDetector(**{**SMALL, "max_iter": 2}), {"latent_dim": [1, 2]},
                 scoring=AUC,
                          cv=StratifiedKFold(2, shuffle=True, random_state=0)).fit(X, y)
    assert len(store.client.search_runs([store.experiment_id])) == before


def test_a_search_with_mlflow_sklearn_autolog_also_on_loses_nothing(store, monkeypatch):
    import warnings

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", store.experiment_id)
    X, y = labelled_data()
    search = GridSearchCV(AEDetector(**{**SMALL, "max_iter": 2}), {"latent_dim": [1, 2]},
                          scoring=AUC, cv=StratifiedKFold(2, shuffle=True, random_state=0))
    mlflow.sklearn.autolog(log_models=False, log_datasets=False, silent=True)
    try:
        with tracking.autolog(log_models=False, log_plots=False, run_name="both"):
            with warnings.catch_warnings():
                warnings.simplefilter("error", tracking.TrackingWarning)
                search.fit(X, y)
    finally:
        mlflow.sklearn.autolog(disable=True)
    runs = store.client.search_runs([store.experiment_id])
    ours = next(run for run in runs if run.info.run_name == "both")
    assert ours.data.params["best_latent_dim"] == str(search.best_params_["latent_dim"])
    children = [run for run in runs
                if run.data.tags.get("mlflow.parentRunId") == ours.info.run_id]
    assert len(children) == 2
    # every run aedetect made ends FINISHED (MLflow's own sklearn runs are not checked:
    # its queued writes of the same dataset from several threads can collide in SQLite,
    # "UNIQUE constraint failed: datasets...", and end one of them FAILED)
    assert all(run.info.status == "FINISHED" for run in [ours, *children]), [
        (run.info.run_name, run.info.status, run.data.tags.get("mlflow.autologging"))
        for run in runs]
    theirs = [run for run in runs if run.data.tags.get("mlflow.autologging") == "sklearn"
              and "mlflow.parentRunId" not in run.data.tags]
    assert theirs and "best_cv_score" in theirs[-1].data.metrics  # MLflow's own tree too


def test_a_failing_search_ends_its_run_failed(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    X, y = labelled_data()
    search = GridSearchCV(AEDetector(**{**SMALL, "max_iter": 2}), {"latent_dim": [0]},
                          scoring=AUC, cv=StratifiedKFold(2, shuffle=True, random_state=0),
                          error_score="raise")
    with tracking.autolog(experiment_id=store.experiment_id, run_name="broken"):
        with pytest.raises(ValueError, match="latent_dim"):
            search.fit(X, y)
    (run,) = store.client.search_runs([store.experiment_id], "attributes.run_name = 'broken'")
    assert run.info.status == "FAILED"
    assert "latent_dim" in run.data.tags["aedetect.error"]
