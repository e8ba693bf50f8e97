"""Where aedetect logs: MLflow's own store, experiments, bounded HTTP calls."""

import contextlib
import os
import shutil
import sys
import threading
from pathlib import Path

#: MLflow's own default store (``mlflow.get_tracking_uri()`` with nothing configured):
#: ``mlflow.db`` in the working directory, artifacts in ``mlruns/`` beside it. Every
#: aedetect entry point and plain ``mlflow.start_run()`` use it, and ``mlflow ui`` run
#: in that directory shows it.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
#: Where MLflow puts the artifacts of experiments created on :data:`DEFAULT_TRACKING_URI`.
DEFAULT_ARTIFACT_LOCATION = "mlruns"
#: Experiment of the runs aedetect creates, unless told otherwise.
DEFAULT_EXPERIMENT_NAME = "aedetect"
#: Experiment tag that makes MLflow's UI show an experiment as classic model
#: development (its training runs) rather than a GenAI overview.
EXPERIMENT_KIND_TAG = ("mlflow.experimentKind", "custom_model_development")
#: Address of ``mlflow ui`` when started with its defaults.
DEFAULT_UI = "http://127.0.0.1:5000"


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


def get_tracking_uri():
    """The tracking URI aedetect logs to when not given a client: MLflow's own.

    ``MLFLOW_TRACKING_URI`` or ``mlflow.set_tracking_uri`` when set, else MLflow's
    default, :data:`DEFAULT_TRACKING_URI` (``mlflow.db`` in the working directory, as
    an absolute URI; MLflow keeps ``./mlruns`` instead when that directory already
    holds a file store). Runs opened with ``mlflow.start_run()`` go to the same store.

    Returns
    -------
    uri : str
    """
    import mlflow

    return mlflow.get_tracking_uri()


def experiment_url(experiment_id, server=DEFAULT_UI):
    """Address of an experiment's training runs table in MLflow's UI.

    MLflow 3's UI opens on a GenAI view unless told otherwise; this address selects
    the runs table and the "machine learning" workflow.

    Parameters
    ----------
    experiment_id : str
    server : str, default="http://127.0.0.1:5000"
        Where ``mlflow ui`` (or ``mlflow server``) listens.

    Returns
    -------
    url : str
    """
    return (f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs"
            "?workflowType=machine_learning")


def ui_command(uri):
    """The ``mlflow ui`` command that shows the store ``uri``: plain ``mlflow ui`` (run in
    the working directory) when ``uri`` is MLflow's default store there, else with
    ``--backend-store-uri``.

    Parameters
    ----------
    uri : str

    Returns
    -------
    command : str
    """
    default = f"sqlite:///{Path(DEFAULT_TRACKING_URI[len('sqlite:///'):]).resolve()}"
    mlflow = shell_program("mlflow")
    if str(uri) in (DEFAULT_TRACKING_URI, default):
        return f"{mlflow} ui"
    return f"{mlflow} ui --backend-store-uri {uri}"


def shell_program(name):
    """How to call this Python environment's program ``name`` from a plain shell: the
    bare name when it is the one ``PATH`` finds (the environment is active), else its
    path (relative when under the working directory, e.g. ``.venv/bin/mlflow``), so a
    printed command works as printed.

    Parameters
    ----------
    name : str

    Returns
    -------
    command : str
    """
    ours = Path(sys.executable).parent / name
    if not ours.exists():
        return name
    found = shutil.which(name)
    if found is not None and Path(found).resolve() == ours.resolve():
        return name
    try:
        relative = os.path.relpath(ours)
    except ValueError:  # another drive (Windows)
        return str(ours)
    return str(ours) if relative.startswith("..") else relative


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
        else ``"aedetect"``. A new experiment is tagged as classic model
        development (:data:`EXPERIMENT_KIND_TAG`), so MLflow's UI shows its runs.

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
        try:
            return client.create_experiment(name, tags=dict([EXPERIMENT_KIND_TAG]))
        except MlflowException:  # created meanwhile by another process
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage != "active":
        raise ValueError(f"MLflow experiment {name!r} is deleted; restore it with "
                         f"MlflowClient().restore_experiment({experiment.experiment_id!r}) "
                         "or choose another experiment.")
    return experiment.experiment_id


def _short(exc, limit=300):
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."


def not_logged(skipped):
    """The items of a "Not logged:" list, epochs collapsed into one range
    (``['the parameters', 'the metrics of epochs 1-12', ...]``)."""
    items, epochs = [], []
    for item in skipped:
        if item.startswith("epoch "):
            if not epochs:
                items.append(None)
            epochs.append(item.split()[1])
        else:
            items.append(item)
    if epochs:
        span = f"epochs {epochs[0]}-{epochs[-1]}" if len(epochs) > 1 else f"epoch {epochs[0]}"
        items[items.index(None)] = f"the metrics of {span}"
    return items


def _failure_message(detector, log, uri, error):
    """The one TrackingWarning of a fit: what failed and everything not logged."""
    items = not_logged(log.skipped)
    run = f" (run {log.run_id})" if log.run_id else ""
    outcome = ("The fit itself completed normally and the detector is unaffected."
               if error is None else "The fit's own error is raised as usual.")
    return (f"MLflow logging of {type(detector).__name__}.fit to {uri}{run} failed and was "
            f"stopped: {_short(log.error)}. Not logged: {'; '.join(items)}. {outcome}")
