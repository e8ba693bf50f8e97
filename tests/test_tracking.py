"""MLflow tracking and the aedetect model flavor, against real stores and servers.

The default suite uses SQLite stores in temporary directories (the schema is created
once and copied, since MLflow's migrations take ~10 s). Tests marked slow start real
``mlflow ui`` / ``mlflow server`` / ``mlflow models serve`` processes on 127.0.0.1.
"""

import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone

import aedetect
from aedetect import AEDetector, tracking
from aedetect._fitting import GLOBAL_CALLBACKS
from aedetect.plots import plot_loss_curves, plot_score_histogram
from aedetect.tracking._flavor import _PYFUNC_CODE as PYFUNC_CODE

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# MLflow's advice to log an input example, which the tests leave out on purpose
pytestmark = pytest.mark.filterwarnings("ignore:.*An input example was not provided")
HTTP_VARIABLES = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT",
                  "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR")
SMALL = {"max_iter": 6, "hidden_layer_sizes": (16, 8), "random_state": 0}


def make_data(n=160, n_features=5, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, n_features))
    X[:8] += 5.0
    return X


@pytest.fixture(autouse=True)
def clean_mlflow_state(monkeypatch):
    """No tracking URI or HTTP settings from outside; autolog always switched off after."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID",
                 *HTTP_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    yield
    GLOBAL_CALLBACKS.clear()
    while mlflow.active_run():
        mlflow.end_run()


@pytest.fixture(scope="session")
def empty_db(tmp_path_factory):
    """An MLflow SQLite database with its schema created (copied by the stores)."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory, empty_db):
    """A SQLite tracking store with an experiment ``tests``."""
    root = tmp_path_factory.mktemp("store")
    shutil.copy(empty_db, root / "mlflow.db")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("tests", artifact_location=str(root / "artifacts"))
    return SimpleNamespace(uri=uri, client=client, experiment_id=experiment_id, root=root)


class CountingClient(MlflowClient):
    """A real client that also records what each ``log_batch`` call carried."""

    def __init__(self, tracking_uri):
        super().__init__(tracking_uri)
        self.batches = []

    def log_batch(self, run_id, metrics=(), params=(), tags=(), **kwargs):
        self.batches.append(sorted({metric.step for metric in metrics}))
        return super().log_batch(run_id, metrics=metrics, params=params, tags=tags, **kwargs)


class StopAt:
    """A user callback that raises ``error`` at the end of epoch ``epoch``."""

    def __init__(self, epoch, error):
        self.epoch, self.error = epoch, error

    def on_epoch_end(self, trainer, record):
        if record["epoch"] == self.epoch:
            raise self.error


def is_png(path):
    return Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def assert_no_pickle(directory):
    """No file is a pickle or a torch.save archive (which holds a pickle)."""
    files = [path for path in Path(directory).rglob("*") if path.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        if path.suffix == ".safetensors":
            # An 8-byte little-endian header length (any first byte), then a JSON header.
            header = int.from_bytes(data[:8], "little")
            assert data[8:9] == b"{" and json.loads(data[8:8 + header]), path
            continue
        assert data[:1] != b"\x80" and data[:2] != b"PK", f"{path} looks like a pickle"
        assert path.suffix not in {".pkl", ".pickle", ".pt", ".pth", ".joblib"}, path


# --------------------------------------------------------------- tracking
def test_callback_logs_a_fit_with_one_batch_per_epoch(store):
    client = CountingClient(store.uri)
    callback = tracking.MLflowCallback(client=client, experiment_id=store.experiment_id,
                                       run_name="logged")
    X = make_data()
    detector = AEDetector(early_stopping=True, callbacks=[callback], **SMALL).fit(X)

    run = client.get_run(callback.run_id_)
    assert run.info.status == "FINISHED" and run.info.run_name == "logged"
    assert run.info.experiment_id == store.experiment_id
    params = run.data.params
    assert params["max_iter"] == "6" and params["hidden_layer_sizes"] == "(16, 8)"
    assert params["n_samples"] == "160" and params["n_features"] == "5"
    assert params["latent_dim_"] == str(detector.latent_dim_) and "callbacks" not in params
    assert run.data.tags["estimator_class"] == "aedetect.ae.AEDetector"
    # exactly one log_batch per epoch, carrying that epoch's step only
    epoch_batches = [steps for steps in client.batches if steps and steps[0] >= 1]
    assert epoch_batches == [[epoch] for epoch in range(1, detector.n_iter_ + 1)]
    for key in ("loss", "val_loss"):
        history = client.get_metric_history(callback.run_id_, key)
        assert [m.step for m in history] == list(range(1, detector.n_iter_ + 1))
        assert [m.value for m in history] == [record[key] for record in detector.history_]
    assert len(client.get_metric_history(callback.run_id_, "epoch_time")) == detector.n_iter_
    metrics = run.data.metrics
    assert metrics["offset"] == detector.offset_
    assert metrics["best_epoch"] == detector.best_epoch_ and metrics["n_iter"] == detector.n_iter_
    assert 0 < metrics["training_time"] < 60
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


def test_default_store_with_autolog(tmp_path, monkeypatch, empty_db):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlflow").mkdir()
    shutil.copy(empty_db, tmp_path / "mlflow" / "mlflow.db")  # skip the schema migrations
    X = make_data()
    with tracking.autolog(run_name="auto"):
        assert len(GLOBAL_CALLBACKS) == 1
        detector = AEDetector(**SMALL).fit(X)
    assert GLOBAL_CALLBACKS == []
    AEDetector(**SMALL).fit(X)  # autolog is off again: no second run

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("aedetect")
    assert experiment.experiment_id != "0"
    assert Path(experiment.artifact_location) == tmp_path / "mlflow" / "artifacts"
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "auto"
    assert run.data.metrics["offset"] == detector.offset_
    plots = tmp_path / "mlflow" / "artifacts" / run.info.run_id / "artifacts" / "plots"
    assert is_png(plots / "loss_curves.png") and is_png(plots / "score_histogram.png")
    assert client.search_runs(["0"]) == [] and not (tmp_path / "mlruns").exists()


def test_active_run_then_nested_run_for_a_refit(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    X = make_data()
    tracking.autolog(log_plots=False)
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


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


# ------------------------------------------------------------------ flavor
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
    with pytest.raises(MlflowException, match="must be one of"):
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
    assert model.metadata.get_input_schema().inputs[0].type == np.dtype("float64")
    for batch in (X, pd.DataFrame(X)):
        np.testing.assert_array_equal(model.predict(batch)["score"], detector.score_samples(X))


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


# ------------------------------------------------------------ real servers
def start_server(args, cwd, port, env=None, wait=120):
    """Start an MLflow server process on 127.0.0.1:port; wait until it answers."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           # `mlflow models serve` runs `uvicorn` from PATH: the one beside this Python
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           **(env or {})}
    process = subprocess.Popen([sys.executable, "-m", "mlflow", *args, "--host", "127.0.0.1",
                                "--port", str(port)], cwd=cwd, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = process.stderr.read().decode()[-2000:]
            raise RuntimeError(f"mlflow {args[0]} exited: {error}")
        for path in ("/health", "/ping"):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1):
                    return process
            except OSError:
                pass
        time.sleep(0.3)
    stop_server(process)
    raise RuntimeError(f"mlflow {args[0]} did not answer within {wait} s")


def stop_server(process):
    """Kill the server and the workers it started (its own process group)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory, empty_db):
    """The README's ``mlflow ui`` on a default store that already holds one aedetect run."""
    root = tmp_path_factory.mktemp("ui")
    (root / "mlflow").mkdir()
    shutil.copy(empty_db, root / "mlflow" / "mlflow.db")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        callback = tracking.MLflowCallback(run_name="default-store")
        AEDetector(callbacks=[callback], **SMALL).fit(make_data())
    finally:
        os.chdir(cwd)
    port = free_port()
    process = start_server(["ui", "--backend-store-uri", tracking.DEFAULT_TRACKING_URI,
                            "--workers", "1"], cwd=root, port=port)
    yield SimpleNamespace(uri=f"http://127.0.0.1:{port}", run_id=callback.run_id_, root=root)
    stop_server(process)


@pytest.mark.slow
def test_mlflow_ui_shows_default_store_runs_and_artifacts(ui_server):
    client = MlflowClient(ui_server.uri)
    run = client.get_run(ui_server.run_id)
    assert run.info.status == "FINISHED" and run.data.params["max_iter"] == "6"
    assert {a.path for a in client.list_artifacts(ui_server.run_id, "plots")} == {
        "plots/loss_curves.png", "plots/score_histogram.png"}
    url = (f"{ui_server.uri}/get-artifact?path=plots/loss_curves.png"
           f"&run_uuid={ui_server.run_id}")
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_logging_over_http(ui_server):
    client = MlflowClient(ui_server.uri)
    callback = tracking.MLflowCallback(client=client, experiment_name="over-http")
    detector = AEDetector(callbacks=[callback], **SMALL).fit(make_data())
    run = client.get_run(callback.run_id_)
    assert run.info.status == "FINISHED" and run.data.metrics["offset"] == detector.offset_
    history = client.get_metric_history(callback.run_id_, "loss")
    assert [m.value for m in history] == detector.loss_curve_
    assert len(client.list_artifacts(callback.run_id_, "plots")) == 2


class KillServer:
    """A user callback that kills the tracking server at the end of epoch ``epoch``."""

    def __init__(self, process, epoch):
        self.process, self.epoch = process, epoch

    def on_epoch_end(self, trainer, record):
        if record["epoch"] == self.epoch:
            stop_server(self.process)


@pytest.mark.slow
def test_server_dying_mid_fit(tmp_path, empty_db):
    shutil.copy(empty_db, tmp_path / "mlflow.db")
    port = free_port()
    process = start_server(["server", "--backend-store-uri", f"sqlite:///{tmp_path}/mlflow.db",
                            "--workers", "1"], cwd=tmp_path, port=port)
    try:
        X = make_data()
        reference = AEDetector(**{**SMALL, "max_iter": 12}).fit(X).score_samples(X)
        client = MlflowClient(f"http://127.0.0.1:{port}")
        callback = tracking.MLflowCallback(client=client, experiment_name="dies")
        detector = AEDetector(callbacks=[KillServer(process, 3), callback],
                              **{**SMALL, "max_iter": 12})
        start = time.perf_counter()
        with pytest.warns(tracking.TrackingWarning) as caught:
            detector.fit(X)
        seconds = time.perf_counter() - start
    finally:
        stop_server(process)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert f"(run {callback.run_id_})" in message
    assert ("Not logged: the metrics of epochs 3-12; the final metrics; the plots; the end of "
            f"run {callback.run_id_} (it stays RUNNING)") in message
    assert seconds < 30
    np.testing.assert_array_equal(detector.score_samples(X), reference)


def post(url, body, content_type="application/json"):
    request = urllib.request.Request(url, data=body.encode(), method="POST",
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.slow
def test_serving_answers_invocations_and_rejects_bad_payloads(tmp_path):
    X = make_data()
    detector = AEDetector(**SMALL).fit(X)
    tracking.save_model(detector, tmp_path / "model")
    port = free_port()
    process = start_server(["models", "serve", "-m", str(tmp_path / "model"),
                            "--env-manager", "local"], cwd=tmp_path, port=port)
    url = f"http://127.0.0.1:{port}/invocations"
    try:
        status, body = post(url, json.dumps({"inputs": X[:10].tolist()}))
        assert status == 200
        out = pd.DataFrame(body["predictions"])
        np.testing.assert_allclose(out["score"], detector.score_samples(X[:10]), rtol=1e-12)
        np.testing.assert_array_equal(out["label"], detector.predict(X[:10]))
        status, body = post(url, json.dumps({"dataframe_split": {"data": X[:3].tolist()},
                                             "params": {"output": "score"}}))
        assert status == 200 and list(body["predictions"][0]) == ["score"]
        for bad in ("{not json", json.dumps({"inputs": [[1.0, 2.0]]}),
                    json.dumps({"inputs": [[float("nan"), 1.0, 2.0, 3.0, 4.0]]}),
                    json.dumps({"inputs": [["a", "b", "c", "d", "e"]]}),
                    json.dumps({"inputs": X[:2].tolist(), "params": {"output": "proba"}})):
            status, body = post(url, bad)
            assert status == 400, (bad, status, body)
    finally:
        stop_server(process)


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
