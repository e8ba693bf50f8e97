"""MLflow against real servers on 127.0.0.1: ``mlflow ui``, ``mlflow server`` and
``mlflow models serve`` (all slow: each starts a process)."""

import json
import os
import shutil
import time
import urllib.request
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from aedetect import AEDetector, tracking
from tracking_support import (  # noqa: F401 - fixtures are used by name
    SMALL,
    clean_mlflow_state,
    empty_db,
    free_port,
    make_data,
    post,
    start_server,
    stop_server,
)

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*An input example was not provided")


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory, empty_db):
    """The README's plain ``mlflow ui``, started in a directory where aedetect fitted with
    its defaults and the user opened a run of their own."""
    root = tmp_path_factory.mktemp("ui")
    shutil.copy(empty_db, root / "mlflow.db")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        callback = tracking.MLflowCallback(run_name="default-store")
        AEDetector(callbacks=[callback], **SMALL).fit(make_data())
        tracking.flush()  # the plots are logged after the fit, before the store moves on
        with mlflow.start_run(run_name="users-own") as own:
            mlflow.log_param("note", "mine")
    finally:
        os.chdir(cwd)
    port = free_port()
    process = start_server(["ui", "--workers", "1"], cwd=root, port=port)
    yield SimpleNamespace(uri=f"http://127.0.0.1:{port}", run_id=callback.run_id_, root=root,
                          experiment_id=callback.experiment_id_, own_run_id=own.info.run_id)
    stop_server(process)


@pytest.mark.slow
def test_mlflow_ui_shows_default_store_runs_and_artifacts(ui_server):
    client = MlflowClient(ui_server.uri)
    run = client.get_run(ui_server.run_id)
    assert run.info.status == "FINISHED" and run.data.params["max_iter"] == "6"
    assert run.data.tags["mlflow.user"] and run.data.tags["mlflow.source.name"]
    assert client.get_run(ui_server.own_run_id).data.params["note"] == "mine"  # same store
    assert {a.path for a in client.list_artifacts(ui_server.run_id, "plots")} == {
        "plots/loss_curves.png", "plots/score_histogram.png"}
    url = (f"{ui_server.uri}/get-artifact?path=plots/loss_curves.png"
           f"&run_uuid={ui_server.run_id}")
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read()[:4] == b"\x89PNG"
    # the documented address: the UI's page (a hash route, resolved by its JavaScript)
    # and the experiment it names, tagged so that the UI opens it on its training runs
    page = tracking.experiment_url(ui_server.experiment_id, ui_server.uri)
    with urllib.request.urlopen(page, timeout=10) as response:
        assert response.status == 200 and b"<div id=\"root\"" in response.read()
    experiment = client.get_experiment(ui_server.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


@pytest.mark.slow
def test_logging_over_http(ui_server):
    client = MlflowClient(ui_server.uri)
    callback = tracking.MLflowCallback(client=client, experiment_name="over-http")
    detector = AEDetector(callbacks=[callback], **SMALL).fit(make_data())
    tracking.flush()
    run = client.get_run(callback.run_id_)
    assert run.info.status == "FINISHED"
    assert float(run.data.params["offset_"]) == detector.offset_
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
            tracking.flush()  # the last write is the worker's: its failure warns here
        seconds = time.perf_counter() - start
    finally:
        stop_server(process)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert f"(run {callback.run_id_})" in message
    # the params and epochs wait for one write at the end, which finds the server gone
    assert ("Not logged: the parameters; the metrics of epochs 1-12; the final params; the "
            f"plots; the end of run {callback.run_id_} (it stays RUNNING)") in message
    assert seconds < 30
    np.testing.assert_array_equal(detector.score_samples(X), reference)


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
        status, body = post(url, pd.DataFrame(X[:4]).to_csv(index=False), "text/csv")
        assert status == 200  # CSV with a header line, as DataFrame.to_csv writes it
        np.testing.assert_allclose(pd.DataFrame(body["predictions"])["score"],
                                   detector.score_samples(X[:4]), rtol=1e-12)
        for bad in ("{not json", json.dumps({"inputs": [[1.0, 2.0]]}),
                    json.dumps({"inputs": [[float("nan"), 1.0, 2.0, 3.0, 4.0]]}),
                    json.dumps({"inputs": [["a", "b", "c", "d", "e"]]}),
                    json.dumps({"inputs": X[:2].tolist(), "params": {"output": "proba"}})):
            status, body = post(url, bad)
            assert status == 400, (bad, status, body)
    finally:
        stop_server(process)
