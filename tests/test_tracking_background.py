"""The plots of a tracked fit are drawn after ``fit`` returns, on the tracking worker:
``aedetect.tracking.flush``, failures, refits, ``asynchronous=False``, process exit.

The plot functions are replaced by gated or failing stand-ins (monkeypatch on
``aedetect.plots``, which the worker reads when it draws); see tracking_support.py for
the stores.
"""

import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest
from sklearn.base import clone

import aedetect.plots
from aedetect import AEDetector, tracking
from tracking_support import (  # noqa: F401 - fixtures are used by name
    REPO,
    SMALL,
    clean_mlflow_state,
    empty_db,
    make_data,
    store,
)

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*An input example was not provided")


class GatedPlots:
    """Stands in for ``plot_loss_curves``: records what it is given and on which thread,
    and waits for ``release()`` before drawing (at most ``wait`` seconds)."""

    def __init__(self, monkeypatch, wait=60):
        self.real, self.wait, self.gate = aedetect.plots.plot_loss_curves, wait, threading.Event()
        self.calls = []
        monkeypatch.setattr(aedetect.plots, "plot_loss_curves", self)

    def __call__(self, history, **kwargs):
        self.calls.append({"history": history, "thread": threading.current_thread(), **kwargs})
        self.gate.wait(self.wait)
        return self.real(history, **kwargs)

    def release(self):
        self.gate.set()


def plot_names(client, run_id):
    return sorted(item.path for item in client.list_artifacts(run_id, "plots"))


def test_fit_returns_before_the_plots_and_flush_waits_for_them(store, monkeypatch):
    callback = tracking.MLflowCallback(client=store.client, experiment_id=store.experiment_id)
    gated = GatedPlots(monkeypatch)
    try:
        start = time.perf_counter()
        detector = AEDetector(callbacks=[callback], **SMALL).fit(make_data())
        seconds = time.perf_counter() - start
        assert seconds < 30
        # the worker logs the last batch (the fitted values, the epochs) before it draws
        deadline = time.monotonic() + 30
        while not gated.calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gated.calls and gated.calls[0]["thread"] is not threading.current_thread()
        run = store.client.get_run(callback.run_id_)
        # everything but the plots is in; the run waits for them
        assert run.info.status == "RUNNING"
        assert run.data.params["n_iter_"] == str(detector.n_iter_)
        assert len(store.client.get_metric_history(callback.run_id_, "loss")) == 6
        assert plot_names(store.client, callback.run_id_) == []
        with pytest.raises(TimeoutError, match="still running after 0.1 s"):
            tracking.flush(timeout=0.1)
    finally:
        gated.release()
    with warnings.catch_warnings():
        warnings.simplefilter("error", tracking.TrackingWarning)
        tracking.flush()
    assert gated.calls[0]["thread"] is not threading.main_thread()
    assert store.client.get_run(callback.run_id_).info.status == "FINISHED"
    assert plot_names(store.client, callback.run_id_) == [
        "plots/loss_curves.png", "plots/score_histogram.png"]
    tracking.flush()  # nothing left: returns at once


def test_a_refit_right_after_does_not_change_the_first_runs_plots(store, monkeypatch):
    shown = []
    real_histogram = aedetect.plots.plot_score_histogram
    monkeypatch.setattr(aedetect.plots, "plot_score_histogram", lambda scores, offset, **kw: (
        shown.append((scores.copy(), offset)) or real_histogram(scores, offset, **kw)))
    gated = GatedPlots(monkeypatch)
    callback = tracking.MLflowCallback(client=store.client, experiment_id=store.experiment_id)
    X = make_data()
    detector = AEDetector(callbacks=[callback], early_stopping=True, **SMALL)
    try:
        detector.fit(X)
        first = {"run": callback.run_id_, "loss": list(detector.loss_curve_),
                 "offset": detector.offset_, "best": detector.best_epoch_}
        detector.set_params(max_iter=3, random_state=1).fit(X)  # while the plots wait
        second_run = callback.run_id_
    finally:
        gated.release()
    tracking.flush()
    assert second_run != first["run"] and len(gated.calls) == 2
    history = gated.calls[0]["history"]
    assert [record["loss"] for record in history] == first["loss"]
    assert gated.calls[0]["best_epoch"] == first["best"]
    assert len(gated.calls[1]["history"]) == 3
    assert shown[0][1] == first["offset"] != shown[1][1] == detector.offset_
    assert float(store.client.get_run(first["run"]).data.params["offset_"]) == shown[0][1]
    assert not np.array_equal(shown[0][0], shown[1][0])
    for run_id in (first["run"], second_run):
        assert store.client.get_run(run_id).info.status == "FINISHED"
        assert len(plot_names(store.client, run_id)) == 2


class NoArtifacts(MlflowClient):
    """Logs everything but artifacts."""

    def log_artifacts(self, *args, **kwargs):
        raise OSError("artifact store full")


@pytest.mark.parametrize("where", ["drawing", "upload"])
def test_a_failing_plot_job_warns_from_flush_and_still_ends_the_run(store, monkeypatch,
                                                                     where):
    def broken(*args, **kwargs):
        raise RuntimeError("no fonts")

    client = store.client
    if where == "drawing":
        monkeypatch.setattr(aedetect.plots, "plot_score_histogram", broken)
    else:
        client = NoArtifacts(store.uri)
    callback = tracking.MLflowCallback(client=client, experiment_id=store.experiment_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error", tracking.TrackingWarning)  # none inside fit
        detector = AEDetector(callbacks=[callback], **SMALL).fit(make_data())
    with pytest.warns(tracking.TrackingWarning) as caught:
        tracking.flush()
    (warning,) = caught
    message = str(warning.message)
    assert f"AEDetector.fit to {store.uri} (run {callback.run_id_})" in message
    assert ("no fonts" if where == "drawing" else "artifact store full") in message
    assert "Not logged: the plots. The fit itself completed normally" in message
    assert warning.filename == __file__  # points at the flush() call
    run = store.client.get_run(callback.run_id_)
    assert run.info.status == "FINISHED"
    assert run.data.params["n_iter_"] == str(detector.n_iter_)
    assert plot_names(store.client, callback.run_id_) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error", tracking.TrackingWarning)
        tracking.flush()  # reported once


@pytest.mark.parametrize("entry", ["callback", "autolog"])
def test_asynchronous_false_logs_everything_inside_fit(store, monkeypatch, entry):
    gated = GatedPlots(monkeypatch)
    gated.release()  # never waits: a synchronous fit would wait for it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", store.experiment_id)
    X = make_data()
    if entry == "callback":
        callback = tracking.MLflowCallback(asynchronous=False)
        detector = AEDetector(callbacks=[callback], **SMALL)
        assert clone(detector).callbacks[0].asynchronous is False
        detector.fit(X)
        run_id = callback.run_id_
    else:
        with tracking.autolog(asynchronous=False, log_models=False, run_name="sync"):
            AEDetector(**SMALL).fit(X)
        (run,) = store.client.search_runs([store.experiment_id],
                                          "attributes.run_name = 'sync'")
        run_id = run.info.run_id
    # no flush: the run is complete when fit returns
    assert gated.calls[0]["thread"] is threading.current_thread()
    assert store.client.get_run(run_id).info.status == "FINISHED"
    assert len(plot_names(store.client, run_id)) == 2


def test_autolog_draws_its_plots_on_the_worker_by_default(store, monkeypatch):
    gated = GatedPlots(monkeypatch)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    try:
        with tracking.autolog(experiment_id=store.experiment_id, log_models=False,
                              run_name="async"):
            AEDetector(**SMALL).fit(make_data())
        (run,) = store.client.search_runs([store.experiment_id],
                                          "attributes.run_name = 'async'")
        assert run.info.status == "RUNNING"
    finally:
        gated.release()
    tracking.flush()
    assert gated.calls[0]["thread"] is not threading.main_thread()
    assert store.client.get_run(run.info.run_id).info.status == "FINISHED"


def test_a_synchronous_warning_turned_into_an_error_fails_fit_and_run(store, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(aedetect.plots, "plot_score_histogram", broken)
    callback = tracking.MLflowCallback(client=store.client, experiment_id=store.experiment_id,
                                       asynchronous=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", tracking.TrackingWarning)
        with pytest.raises(tracking.TrackingWarning, match="Not logged: the plots"):
            AEDetector(callbacks=[callback], **SMALL).fit(make_data())
    assert store.client.get_run(callback.run_id_).info.status == "FAILED"


def test_when_the_worker_refuses_jobs_the_fit_logs_the_plots_itself(store, monkeypatch):
    from aedetect.tracking import _background

    monkeypatch.setattr(_background, "submit", lambda job: False)  # interpreter shutdown
    gated = GatedPlots(monkeypatch)
    gated.release()
    callback = tracking.MLflowCallback(client=store.client, experiment_id=store.experiment_id)
    AEDetector(callbacks=[callback], **SMALL).fit(make_data())
    assert gated.calls[0]["thread"] is threading.current_thread()
    assert store.client.get_run(callback.run_id_).info.status == "FINISHED"
    assert len(plot_names(store.client, callback.run_id_)) == 2


EXIT_SCRIPT = """
import sys, time
import numpy as np
import aedetect.plots
from aedetect import AEDetector
from aedetect.tracking import MLflowCallback

real = aedetect.plots.plot_score_histogram
calls = []

def slow_then_broken(scores, offset, **kwargs):
    calls.append(1)
    time.sleep(2)
    if len(calls) == 2:
        raise RuntimeError("broken on purpose")
    return real(scores, offset, **kwargs)

aedetect.plots.plot_score_histogram = slow_then_broken
X = np.random.RandomState(0).normal(size=(100, 4))
for name in ("slow", "broken"):
    callback = MLflowCallback(run_name=name)
    AEDetector(max_iter=3, random_state=0, callbacks=[callback]).fit(X)
    print(name, callback.run_id_, flush=True)
print("fitted", flush=True)
"""


def test_process_exit_waits_for_the_plots_and_reports_failures(tmp_path, empty_db):
    shutil.copy(empty_db, tmp_path / "mlflow.db")
    (tmp_path / "fit.py").write_text(textwrap.dedent(EXIT_SCRIPT))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    done = subprocess.run([sys.executable, "fit.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = dict(line.split() for line in done.stdout.splitlines() if line != "fitted")
    assert done.stdout.splitlines()[-1] == "fitted"  # fit returned; exit did the rest
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert client.get_run(runs["slow"]).info.status == "FINISHED"
    assert plot_names(client, runs["slow"]) == [
        "plots/loss_curves.png", "plots/score_histogram.png"]
    # the failure nobody flushed is reported at exit, and its run is ended
    assert client.get_run(runs["broken"]).info.status == "FINISHED"
    assert plot_names(client, runs["broken"]) == []
    assert "TrackingWarning" in done.stderr and f"(run {runs['broken']})" in done.stderr
    assert "broken on purpose" in done.stderr
