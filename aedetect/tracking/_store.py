"""Where aedetect logs: the default store, experiments, bounded HTTP calls."""

import contextlib
import os
import threading
from pathlib import Path

#: Tracking store used when MLflow has no tracking URI configured (relative to the
#: working directory), with artifacts in :data:`DEFAULT_ARTIFACT_LOCATION`.
DEFAULT_TRACKING_URI = "sqlite:///mlflow/mlflow.db"
DEFAULT_ARTIFACT_LOCATION = "mlflow/artifacts"
#: Experiment of the runs aedetect creates, unless told otherwise.
DEFAULT_EXPERIMENT_NAME = "aedetect"


class TrackingWarning(UserWarning):
    """MLflow logging failed; the fit itself completed normally."""


_LIMITS_LOCK = threading.Lock()
_limits = {"users": 0, "added": []}


@contextlib.contextmanager
def _http_limits(max_retries, timeout):
    """Bound MLflow's HTTP retries and timeout for the calls inside, then restore.

    MLflow reads these environment variables at every request; by default it retries
    for minutes. Variables the user has set are left as they are; concurrent fits
    (threads) share one setting, removed when the last one leaves.
    """
    wanted = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": max_retries,
              "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": 1,
              "MLFLOW_HTTP_REQUEST_TIMEOUT": timeout}
    with _LIMITS_LOCK:
        if _limits["users"] == 0:
            _limits["added"] = [name for name in wanted if name not in os.environ]
            for name in _limits["added"]:
                os.environ[name] = str(wanted[name])
        _limits["users"] += 1
    try:
        yield
    finally:
        with _LIMITS_LOCK:
            _limits["users"] -= 1
            if _limits["users"] == 0:
                for name in _limits["added"]:
                    os.environ.pop(name, None)


def _tracking_uri_is_set():
    try:
        from mlflow.tracking._tracking_service.utils import is_tracking_uri_set
    except ImportError:  # MLflow moved its helper: fall back on the documented variable
        return bool(os.environ.get("MLFLOW_TRACKING_URI"))
    return is_tracking_uri_set()


def _default_store_uri():
    """:data:`DEFAULT_TRACKING_URI` made absolute (MLflow caches stores by URI)."""
    return f"sqlite:///{Path(DEFAULT_TRACKING_URI[len('sqlite:///'):]).resolve()}"


def get_tracking_uri():
    """The tracking URI aedetect logs to when not given a client.

    MLflow's own when one is configured (``MLFLOW_TRACKING_URI`` or
    ``mlflow.set_tracking_uri``), else :data:`DEFAULT_TRACKING_URI` in the working
    directory, as an absolute URI (its ``mlflow/`` directory is created).

    Returns
    -------
    uri : str
    """
    import mlflow

    if _tracking_uri_is_set():
        return mlflow.get_tracking_uri()
    Path(DEFAULT_ARTIFACT_LOCATION).mkdir(parents=True, exist_ok=True)
    return _default_store_uri()


def check_sqlite_store(uri):
    """Fail at once, with ``OSError``, when ``uri`` is a SQLite store that cannot be
    opened (a directory that cannot be created or written): MLflow would retry for about
    100 s before giving up. Other URIs are left to MLflow (HTTP calls are bounded by
    :func:`_http_limits`)."""
    import sqlite3

    if not str(uri).startswith("sqlite:///"):
        return
    path = Path(str(uri)[len("sqlite:///"):].split("?")[0])
    if str(path) in ("", ":memory:"):
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # as MLflow does
        sqlite3.connect(f"file:{path}?mode=rwc", uri=True, timeout=5).close()
    except (OSError, sqlite3.Error) as exc:
        raise OSError(f"cannot open the SQLite tracking store {path} ({exc}); check that "
                      "its directory exists and is writable") from None


def get_experiment_id(client=None, name=None):
    """Id of the experiment ``name``, created when missing (never experiment 0).

    Parameters
    ----------
    client : mlflow.MlflowClient, default=None
        ``None`` uses a client of :func:`get_tracking_uri`.
    name : str, default=None
        ``None``: ``MLFLOW_EXPERIMENT_ID`` if set, else ``MLFLOW_EXPERIMENT_NAME``,
        else ``"aedetect"``. In the default store its artifacts go to
        ``mlflow/artifacts``.

    Returns
    -------
    experiment_id : str
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = client or MlflowClient(get_tracking_uri())
    if name is None and os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return os.environ["MLFLOW_EXPERIMENT_ID"]
    name = name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT_NAME
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = None
        if client.tracking_uri in (DEFAULT_TRACKING_URI, _default_store_uri()):
            location = str(Path(DEFAULT_ARTIFACT_LOCATION).resolve())
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException:  # created meanwhile by another process
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage != "active":
        raise ValueError(f"MLflow experiment {name!r} is deleted; restore it with "
                         f"MlflowClient().restore_experiment({experiment.experiment_id!r}) "
                         "or choose another experiment.")
    return experiment.experiment_id

