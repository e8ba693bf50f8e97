"""Which run a fit or a search logs into: the one place that joins, nests or creates."""

from . import _logging
from ._logging import DETECTOR_TAG
from ._store import check_sqlite_store, get_experiment_id, get_tracking_uri


def store_client(client=None):
    """``client``, or a client of :func:`get_tracking_uri`; a SQLite store that cannot be
    opened raises ``OSError`` at once (MLflow would retry for ~100 s)."""
    from mlflow import MlflowClient

    if client is None:
        uri = get_tracking_uri()
        check_sqlite_store(uri)  # before the client exists
        return MlflowClient(uri)
    check_sqlite_store(client.tracking_uri)
    return client


def open_run(client, detector, params, *, run_id=None, experiment_id=None,
             experiment_name=None, run_name=None, tags=None):
    """The run to log ``params`` of ``detector`` into: ``(run_id, experiment_id, owned)``.

    The target is ``run_id``, else the active run (``mlflow.start_run()``) when it is in
    the client's store. The target is joined unless it already holds an aedetect fit,
    was opened by an MLflow autologging integration (``mlflow.autologging`` tag), or
    holds one of ``params`` with another value: then a nested child run of it is
    created. With no target, a new run in ``experiment_id`` (or the experiment
    ``experiment_name``). New runs carry :func:`_logging.run_tags` and ``tags``;
    ``owned`` says the caller created it (and ends it).
    """
    import mlflow
    from mlflow.utils.mlflow_tags import MLFLOW_AUTOLOGGING, MLFLOW_PARENT_RUN_ID

    extra = dict(tags or {})
    active = mlflow.active_run()
    target = run_id
    if target is None and active and client.tracking_uri == mlflow.get_tracking_uri():
        target = active.info.run_id
    if target is not None:
        run = client.get_run(target)
        logged = run.data.params
        clash = any(logged.get(name, value) != value for name, value in params.items())
        experiment_id = run.info.experiment_id
        if not (DETECTOR_TAG in run.data.tags or MLFLOW_AUTOLOGGING in run.data.tags
                or clash):
            return target, experiment_id, False
        extra[MLFLOW_PARENT_RUN_ID] = target
    else:
        experiment_id = experiment_id or get_experiment_id(client, experiment_name)
    run = client.create_run(experiment_id, run_name=run_name,
                            tags=_logging.run_tags(detector, extra))
    return run.info.run_id, experiment_id, True
