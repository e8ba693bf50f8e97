"""MLflow tracking of fits: the callback, autolog, the default store, faults.

Against real SQLite stores in temporary directories (see tracking_support.py);
searches are in test_tracking_search.py, models in test_tracking_models.py, real
servers in test_tracking_servers.py.
"""

import json
import os
import pickle
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import aedetect
from aedetect import AEDetector, tracking
from aedetect._fitting import GLOBAL_CALLBACKS
from aedetect.plots import plot_loss_curves, plot_score_histogram
from tracking_support import (  # noqa: F401 - fixtures are used by name
    HTTP_VARIABLES,
    REPO,
    SMALL,
    CountingClient,
    StopAt,
    clean_mlflow_state,
    empty_db,
    free_port,
    is_png,
    make_data,
    store,
)

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*An input example was not provided")


def test_callback_logs_a_fit_with_its_epochs_in_one_write(store):
    client = CountingClient(store.uri)
    callback = tracking.MLflowCallback(client=client, experiment_id=store.experiment_id,
                                       run_name="logged")
    X = make_data()
    detector = AEDetector(early_stopping=True, callbacks=[callback], **SMALL).fit(X)
    tracking.flush()  # the plots and the end of the run come from the worker

    run = client.get_run(callback.run_id_)
    assert run.info.status == "FINISHED" and run.info.run_name == "logged"
    assert run.info.experiment_id == store.experiment_id
    params = run.data.params
    assert params["max_iter"] == "6" and params["hidden_layer_sizes"] == "(16, 8)"
    assert params["n_samples"] == "160" and params["n_features"] == "5"
    assert params["latent_dim_"] == str(detector.latent_dim_) and "callbacks" not in params
    assert run.data.tags["estimator_class"] == "aedetect.ae.AEDetector"
    # MLflow's context tags, as mlflow.start_run sets them ("Created by", "Source")
    assert run.data.tags["mlflow.user"] and run.data.tags["mlflow.source.type"] == "LOCAL"
    assert run.data.tags["mlflow.source.name"]
    # a short fit sends all its epochs in one write, at the end, steps preserved
    epoch_batches = [steps for steps in client.batches if steps and steps[0] >= 1]
    assert epoch_batches == [list(range(1, detector.n_iter_ + 1))]
    for key in ("loss", "val_loss"):
        history = client.get_metric_history(callback.run_id_, key)
        assert [m.step for m in history] == list(range(1, detector.n_iter_ + 1))
        assert [m.value for m in history] == [record[key] for record in detector.history_]
    assert len(client.get_metric_history(callback.run_id_, "epoch_time")) == detector.n_iter_
    # single end-of-fit values are params, not one-bar metric charts
    assert sorted(run.data.metrics) == ["epoch_time", "loss", "val_loss"]
    assert float(params["offset_"]) == detector.offset_
    assert float(params["best_loss_"]) == detector.best_loss_
    assert params["best_epoch_"] == str(detector.best_epoch_)
    assert params["n_iter_"] == str(detector.n_iter_)
    assert 0 < float(params["training_time_s"]) < 60
    dataset = run.inputs.dataset_inputs[0].dataset
    assert json.loads(dataset.profile)["features_shape"] == [160, 5]
    plots = client.download_artifacts(callback.run_id_, "plots", str(store.root / "dl"))
    assert sorted(os.listdir(plots)) == ["loss_curves.png", "score_histogram.png"]
    assert all(is_png(Path(plots, name)) for name in os.listdir(plots))
    assert not any(name in os.environ for name in HTTP_VARIABLES)


def test_callback_survives_clone_and_pickle(store):
    callback = tracking.MLflowCallback(client=store.client, experiment_id=store.experiment_id,
                                       run_name="a", log_plots=False)
    detector = AEDetector(callbacks=[callback], **SMALL)
    copy = clone(detector).callbacks[0]
    assert copy is not callback and copy.client is store.client
    assert copy.experiment_id == store.experiment_id and copy.run_name == "a"
    X = make_data()
    detector.fit(X)
    restored = pickle.loads(pickle.dumps(detector))
    assert restored.callbacks[0].run_name == "a" and restored.callbacks[0].log_plots is False
    np.testing.assert_array_equal(restored.score_samples(X), detector.score_samples(X))


def test_default_store_is_mlflows_own_for_every_entry_point(tmp_path, monkeypatch, empty_db):
    monkeypatch.chdir(tmp_path)
    shutil.copy(empty_db, tmp_path / "mlflow.db")  # skip the schema migrations
    assert tracking.get_tracking_uri() == mlflow.get_tracking_uri()
    assert tracking.get_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    X = make_data()
    with tracking.autolog(run_name="auto", log_models=False):
        assert len(GLOBAL_CALLBACKS) == 1
        detector = AEDetector(**SMALL).fit(X)
    assert GLOBAL_CALLBACKS == []
    AEDetector(**SMALL).fit(X)  # autolog is off again: no second run
    callback = tracking.MLflowCallback(run_name="callback", log_plots=False)
    AEDetector(callbacks=[callback], **SMALL).fit(X)
    with mlflow.start_run(run_name="mine") as mine:  # a plain MLflow run, same store
        pass
    info = tracking.log_model(detector, name="outside")  # no run: MLflow's logged model
    tracking.flush()

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("aedetect")
    assert experiment.experiment_id != "0"
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert Path(experiment.artifact_location) == tmp_path / "mlruns" / experiment.experiment_id
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["auto", "callback"]
    assert all(run.info.status == "FINISHED" for run in runs.values())
    assert float(runs["auto"].data.params["offset_"]) == detector.offset_
    assert client.get_run(mine.info.run_id).info.run_name == "mine"
    assert client.get_logged_model(info.model_id).name == "outside"
    plots = Path(runs["auto"].info.artifact_uri.removeprefix("file://")) / "plots"
    assert is_png(plots / "loss_curves.png") and is_png(plots / "score_histogram.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db", "mlruns"]
    bin_dir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", bin_dir + os.pathsep + os.environ.get("PATH", ""))
    assert tracking._store.ui_command(tracking.get_tracking_uri()) == "mlflow ui"
    assert tracking._store.ui_command("sqlite:////elsewhere/mlflow.db") == (
        "mlflow ui --backend-store-uri sqlite:////elsewhere/mlflow.db")
    assert tracking.experiment_url(experiment.experiment_id) == (
        f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs"
        "?workflowType=machine_learning")


def test_a_dataframe_fit_logs_its_column_names_and_flushes_on_schedule(store, monkeypatch):
    X = pd.DataFrame(make_data(), columns=[f"sensor_{i}" for i in range(5)])
    client = CountingClient(store.uri)
    callback = tracking.MLflowCallback(client=client, experiment_id=store.experiment_id,
                                       log_plots=False, flush_interval=0)
    detector = AEDetector(callbacks=[callback], **SMALL).fit(X)
    run = client.get_run(callback.run_id_)
    (dataset_input,) = run.inputs.dataset_inputs
    schema = json.loads(dataset_input.dataset.schema)["mlflow_colspec"]
    assert [column["name"] for column in schema] == list(X.columns)
    assert dataset_input.dataset.name == "train"
    # flush_interval=0: one write per epoch, as it ends
    epoch_batches = [steps for steps in client.batches if steps and steps[0] >= 1]
    assert epoch_batches == [[epoch] for epoch in range(1, detector.n_iter_ + 1)]
    assert [m.value for m in client.get_metric_history(callback.run_id_, "loss")] == (
        detector.loss_curve_)


def test_active_run_then_nested_run_for_a_refit(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    X = make_data()
    tracking.autolog(log_plots=False, log_models=False)
    with mlflow.start_run(experiment_id=store.experiment_id) as parent:
        AEDetector(**SMALL).fit(X)
        AEDetector(**{**SMALL, "max_iter": 3}).fit(X)
        assert store.client.get_run(parent.info.run_id).info.status == "RUNNING"
    tracking.autolog(disable=True)
    assert GLOBAL_CALLBACKS == []
    parent_run = store.client.get_run(parent.info.run_id)
    assert parent_run.data.params["max_iter"] == "6"
    (child,) = store.client.search_runs(
        [store.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert child.data.params["max_iter"] == "3" and child.info.status == "FINISHED"


@pytest.mark.parametrize("error, status", [(RuntimeError("boom"), "FAILED"),
                                           (KeyboardInterrupt(), "KILLED")])
def test_failed_fit_ends_its_run_and_keeps_the_detector(store, error, status):
    X = make_data()
    detector = AEDetector(**SMALL).fit(X)
    before = detector.score_samples(X)
    callback = tracking.MLflowCallback(client=store.client, experiment_id=store.experiment_id)
    detector.set_params(callbacks=[callback, StopAt(2, error)], max_iter=10)
    with pytest.raises(type(error)):
        detector.fit(X)
    run = store.client.get_run(callback.run_id_)
    assert run.info.status == status
    assert run.data.tags["aedetect.error"].startswith(type(error).__name__)
    assert [m.step for m in store.client.get_metric_history(run.info.run_id, "loss")] == [1, 2]
    assert detector.max_iter == 10 and detector.n_iter_ == 6
    np.testing.assert_array_equal(detector.score_samples(X), before)


def test_unreachable_server_warns_once_and_training_completes():
    X = make_data()
    reference = AEDetector(**SMALL).fit(X).score_samples(X)
    client = MlflowClient(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    detector = AEDetector(callbacks=[tracking.MLflowCallback(client=client)], **SMALL)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detector.fit(X)
    seconds = time.perf_counter() - start
    ours = [w for w in caught if issubclass(w.category, tracking.TrackingWarning)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    message = str(ours[0].message)
    assert "Not logged: the run (nothing of this fit was logged)" in message
    assert "epochs 1-6" in message and "completed normally" in message
    assert seconds < 20  # MLflow alone would retry for minutes
    np.testing.assert_array_equal(detector.score_samples(X), reference)
    assert not any(name in os.environ for name in HTTP_VARIABLES)


def test_deleted_experiment_is_reported_not_raised(store):
    experiment_id = store.client.create_experiment("deleted")
    store.client.delete_experiment(experiment_id)
    callback = tracking.MLflowCallback(client=store.client, experiment_name="deleted")
    with pytest.warns(tracking.TrackingWarning, match="experiment 'deleted' is deleted"):
        detector = AEDetector(**{**SMALL, "max_iter": 2}).set_params(callbacks=[callback])
        detector.fit(make_data())
    assert callback.run_id_ is None and detector.n_iter_ == 2


def test_plots_draw_curves_and_threshold():
    X = make_data()
    y = np.zeros(len(X), dtype=int)
    y[:8] = 1
    detector = AEDetector(early_stopping=True, **SMALL).fit(X)
    fig = plot_loss_curves(detector.history_, best_epoch=detector.best_epoch_)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == [
        "loss", "val_loss", f"best epoch ({detector.best_epoch_})"]
    np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), detector.loss_curve_)
    scores = detector.score_samples(X)
    fig = plot_score_histogram(scores, detector.offset_, y=y, clip_quantile=None)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    flagged = np.mean(scores < detector.offset_)
    offset_label = f"offset_ = {detector.offset_:.4g} ({flagged:.1%} flagged)"
    assert labels == ["inliers (152)", "outliers (8)", offset_label]
    # the default clips the heavy outlier tail at the 1% quantile, left of offset_
    ax = plot_score_histogram(scores, detector.offset_, y=y).axes[0]
    low = min(np.quantile(scores, 0.01),
              detector.offset_ - 0.02 * (scores.max() - detector.offset_))
    n_low = int(np.sum(scores < low))
    assert n_low >= 1 and ax.get_legend_handles_labels()[1][2:] == [
        f"{n_low} rows below {low:.4g} in the first bin", offset_label]
    assert sum(patch.get_height() for patch in ax.patches) == len(X)
    with pytest.raises(ValueError, match="y has 3 values"):
        plot_score_histogram(scores, y=[0, 1, 0])


def test_import_aedetect_does_not_import_mlflow():
    code = ("import sys, aedetect, aedetect.tracking, aedetect.plots; "
            "assert 'mlflow' not in sys.modules and 'matplotlib' not in sys.modules")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


class FailAtEnd(aedetect.Callback):
    """A user callback whose on_fit_end raises; records what it saw."""

    def __init__(self):
        self.seen = []

    def on_fit_end(self, detector, error):
        self.seen.append(error)
        raise RuntimeError("end hook failed")


class SeeEnd(aedetect.Callback):
    def __init__(self):
        self.seen = []

    def on_fit_end(self, detector, error):
        self.seen.append(error)


def test_a_failing_end_hook_fails_the_fit_and_loses_nothing(store):
    X = make_data()
    detector = AEDetector(**SMALL).fit(X)
    before = detector.score_samples(X)
    failing, later = FailAtEnd(), SeeEnd()
    callback = tracking.MLflowCallback(client=store.client, experiment_id=store.experiment_id,
                                       log_plots=False)
    detector.set_params(callbacks=[failing, later, callback], max_iter=3)
    with pytest.raises(RuntimeError, match="end hook failed"):
        detector.fit(X)
    assert failing.seen == [None]  # training itself succeeded
    assert isinstance(later.seen[0], RuntimeError)  # every end hook ran, and saw the failure
    assert store.client.get_run(callback.run_id_).info.status == "FAILED"
    assert detector.n_iter_ == 6  # the previous fit is kept
    np.testing.assert_array_equal(detector.score_samples(X), before)


class BrokenMetrics(MlflowClient):
    """Logs runs and parameters, fails on every metric."""

    def log_batch(self, run_id, metrics=(), params=(), tags=(), **kwargs):
        if metrics:
            raise OSError("disk full")
        return super().log_batch(run_id, metrics=metrics, params=params, tags=tags, **kwargs)


def test_tracking_warning_as_error_fails_the_fit_and_the_run(store):
    X = make_data()
    detector = AEDetector(**SMALL).fit(X)
    before = detector.score_samples(X)
    callback = tracking.MLflowCallback(client=BrokenMetrics(store.uri),
                                       experiment_id=store.experiment_id, log_plots=False)
    detector.set_params(callbacks=[callback], max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", tracking.TrackingWarning)
        with pytest.raises(tracking.TrackingWarning, match="disk full"):
            detector.fit(X)
    assert store.client.get_run(callback.run_id_).info.status == "FAILED"
    np.testing.assert_array_equal(detector.score_samples(X), before)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs an unwritable /proc")
def test_an_unusable_sqlite_store_warns_at_once_and_the_fit_carries_on(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////proc/mlflow.db")
    start = time.perf_counter()
    with pytest.warns(tracking.TrackingWarning, match="cannot open the SQLite tracking store"):
        detector = AEDetector(**SMALL, callbacks=[tracking.MLflowCallback()]).fit(make_data())
    assert time.perf_counter() - start < 20  # MLflow alone retries for about 100 s
    assert detector.n_iter_ == SMALL["max_iter"]


def test_a_sqlite_store_in_a_new_directory_is_created(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}")
    callback = tracking.MLflowCallback(log_plots=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", tracking.TrackingWarning)
        AEDetector(**SMALL, callbacks=[callback]).fit(make_data())
    assert callback.run_id_ and (tmp_path / "new" / "mlflow.db").is_file()


class SlowClock:
    """Stands in for the callback's clock: each reading is 4 s later."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 4.0
        return self.now


def test_a_long_fit_writes_its_metrics_every_flush_interval(store, monkeypatch):
    from aedetect.tracking import _callback

    monkeypatch.setattr(_callback, "_clock", SlowClock())
    client = CountingClient(store.uri)
    callback = tracking.MLflowCallback(client=client, experiment_id=store.experiment_id,
                                       log_plots=False, flush_interval=10)
    AEDetector(callbacks=[callback], **SMALL).fit(make_data())
    # 4 s per clock reading, one reading per epoch: a write every third epoch
    epoch_batches = [steps for steps in client.batches if steps and steps[0] >= 1]
    assert epoch_batches == [[1, 2, 3], [4, 5, 6]]


def test_with_mlflow_sklearn_autolog_the_detector_logs_into_a_child_run(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", store.experiment_id)
    X = make_data()
    mlflow.sklearn.autolog(log_models=False, log_datasets=False, silent=True)
    try:
        with tracking.autolog(log_plots=False, log_models=False):
            with warnings.catch_warnings():
                warnings.simplefilter("error", tracking.TrackingWarning)
                pipe = make_pipeline(StandardScaler(),
                                     AEDetector(scaling=None, verbose=0, **SMALL)).fit(X)
    finally:
        mlflow.sklearn.autolog(disable=True)
    runs = store.client.search_runs([store.experiment_id], "tags.mlflow.autologging = 'sklearn'")
    sklearn_run = max(runs, key=lambda run: run.info.start_time)
    assert sklearn_run.data.params["verbose"] == "False"  # the pipeline's own param, kept
    (child,) = store.client.search_runs(
        [store.experiment_id], f"tags.mlflow.parentRunId = '{sklearn_run.info.run_id}'")
    assert child.data.params["verbose"] == "0" and child.info.status == "FINISHED"
    assert child.data.params["n_iter_"] == str(pipe[-1].n_iter_)
    assert len(store.client.get_metric_history(child.info.run_id, "loss")) == SMALL["max_iter"]


def test_a_run_with_a_clashing_param_gets_a_child_run(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    with mlflow.start_run(experiment_id=store.experiment_id) as parent:
        mlflow.log_param("max_iter", "1000")  # the user's own meaning of the name
        callback = tracking.MLflowCallback(log_plots=False)
        AEDetector(callbacks=[callback], **SMALL).fit(make_data())
    assert callback.run_id_ != parent.info.run_id
    child = store.client.get_run(callback.run_id_)
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.params["max_iter"] == "6"


def test_autolog_logs_the_model_by_default(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", store.experiment_id)
    X = make_data()
    with tracking.autolog(log_plots=False):
        detector = AEDetector(**SMALL).fit(X)
    model = mlflow.last_logged_model()
    run = store.client.get_run(model.source_run_id)
    assert run.data.params["n_iter_"] == str(detector.n_iter_) and model.name == "model"
    loaded = tracking.load_model(f"models:/{model.model_id}")
    np.testing.assert_array_equal(loaded.score_samples(X), detector.score_samples(X))


def test_printed_commands_work_without_activating_the_environment(monkeypatch, tmp_path):
    """Outside the environment's PATH, the printed command names the environment's own
    program, which exists and runs."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    command = tracking._store.ui_command("sqlite:///mlflow.db")
    program = command.split()[0]
    assert program != "mlflow" and Path(program).name == "mlflow"
    assert Path(program).resolve() == (Path(sys.executable).parent / "mlflow").resolve()
    result = subprocess.run([program, "--version"], capture_output=True, text=True,
                            timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0 and "version" in result.stdout
