"""Shared helpers and fixtures of the MLflow tests (tests/test_tracking*.py).

The stores are SQLite files in temporary directories: the schema is created once per
session and copied, since MLflow's migrations take ~10 s. Test modules import the
fixtures they use (``from tracking_support import store, ...``).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from aedetect import tracking
from aedetect._fitting import GLOBAL_CALLBACKS

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HTTP_VARIABLES = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT",
                  "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR")
SMALL = {"max_iter": 6, "hidden_layer_sizes": (16, 8), "random_state": 0}
_TEMPLATE = {}


def make_data(n=160, n_features=5, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, n_features))
    X[:8] += 5.0
    return X


@pytest.fixture(autouse=True)
def clean_mlflow_state(monkeypatch):
    """No tracking URI or HTTP settings from outside; autolog always switched off after,
    and the background logging of the test's fits done before the next test starts."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID",
                 *HTTP_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    yield
    tracking.flush(timeout=120)
    GLOBAL_CALLBACKS.clear()
    while mlflow.active_run():
        mlflow.end_run()


@pytest.fixture(scope="session")
def empty_db(tmp_path_factory):
    """An MLflow SQLite database with its schema created (copied by the stores); made
    once per session even though several modules import this fixture."""
    if "path" not in _TEMPLATE:
        path = tmp_path_factory.mktemp("template") / "mlflow.db"
        MlflowClient(f"sqlite:///{path}").search_experiments()
        _TEMPLATE["path"] = path
    return _TEMPLATE["path"]


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


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def post(url, body, content_type="application/json"):
    request = urllib.request.Request(url, data=body.encode(), method="POST",
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
