"""What a detector's fit puts into an MLflow run: the pieces the callback and the
search logging share. Every function takes a client and a run id; none handles faults
(the callers do)."""

import os
import tempfile
import threading
import time
import warnings
from typing import NamedTuple

import numpy as np

#: Run tag naming the detector whose fit a run holds.
DETECTOR_TAG = "aedetect.detector"
#: The fitted values logged as params at the end of a fit (not one-step metrics, which
#: MLflow's UI would draw as one-bar charts).
FITTED_PARAMS = ("offset_", "n_iter_", "best_epoch_", "best_loss_")


def run_tags(detector, extra=None):
    """Tags of a new run: MLflow's context tags (``mlflow.user``, ``mlflow.source.name``,
    ``mlflow.source.type``, the git commit when there is one), as ``mlflow.start_run``
    sets them, then the detector's, then ``extra``."""
    from mlflow.tracking.context.registry import resolve_tags

    name = type(detector).__name__
    return resolve_tags({DETECTOR_TAG: name, "estimator_name": name,
                         "estimator_class": f"{type(detector).__module__}."
                                            f"{type(detector).__qualname__}",
                         **(extra or {})})


def start_params(detector, X):
    """Params logged when a fit starts: ``get_params()`` (without ``callbacks``), the
    dataset shape and the resolved structure, as strings."""
    params = {name: value for name, value in detector.get_params(deep=False).items()
              if name != "callbacks"}
    params.update(n_samples=X.shape[0], n_features=X.shape[1])
    for name in ("input_shape_", "hidden_layer_sizes_", "latent_dim_"):
        if hasattr(detector, name):
            params[name] = getattr(detector, name)
    return {name: str(value)[:6000] for name, value in params.items()}


def start_entities(detector, params):
    """``params`` and the detector's tags (its class, the aedetect version) as MLflow
    entities, for the first write of a fit."""
    from mlflow.entities import Param, RunTag

    from .. import __version__

    tags = [RunTag(DETECTOR_TAG, type(detector).__name__),
            RunTag("aedetect.version", __version__)]
    return [Param(k, v) for k, v in params.items()], tags


def log_training_data(client, run_id, detector, X):
    """Log the training data as the run input ``train`` (a DataFrame with the
    detector's column names when it has them)."""
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    client.log_inputs(run_id, [DatasetInput(
        training_dataset(detector, X)._to_mlflow_entity(),
        tags=[InputTag(MLFLOW_DATASET_CONTEXT, "train")])])


def training_dataset(detector, X):
    """``X`` as an MLflow dataset named ``train``: a pandas dataset with the column
    names of a detector fitted on a DataFrame, else a numpy dataset."""
    import mlflow.data

    names = getattr(detector, "feature_names_in_", None)
    if names is not None and getattr(X, "ndim", 0) == 2:
        import pandas as pd

        return mlflow.data.from_pandas(pd.DataFrame(X, columns=list(names), copy=False),
                                       name="train")
    return mlflow.data.from_numpy(X, name="train")


def epoch_metrics(record, stamp=None):
    """One epoch's record of ``history_`` as MLflow metrics at ``step=epoch``."""
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000) if stamp is None else stamp
    step = int(record["epoch"])
    return [Metric("epoch_time" if key == "time" else key, float(value), stamp, step)
            for key, value in record.items() if key != "epoch"]


def end_params(detector, seconds=None):
    """The fitted values (:data:`FITTED_PARAMS`) and ``training_time_s``, as strings."""
    params = {name: repr(float(getattr(detector, name))) if name in ("offset_", "best_loss_")
              else str(int(getattr(detector, name))) for name in FITTED_PARAMS}
    if seconds is not None:
        params["training_time_s"] = f"{seconds:.3f}"
    return params


def end_entities(detector, metrics=(), seconds=None, params=(), tags=()):
    """``(metrics, params, tags)`` of the last write of a fit: the pending epoch
    ``metrics``, ``params`` and ``tags``, the end-of-fit params and the device tag
    (values copied: the detector may change after)."""
    from mlflow.entities import Param, RunTag

    params = [*params, *(Param(k, v) for k, v in end_params(detector, seconds).items())]
    return list(metrics), params, [*tags, RunTag("aedetect.device", str(detector.device_))]


def log_end(client, run_id, detector, metrics=(), seconds=None, params=(), tags=()):
    """Log :func:`end_entities` in one call (each write to a SQLite store costs a
    commit)."""
    client.log_batch(run_id, *end_entities(detector, metrics, seconds, params, tags))


class PlotInputs(NamedTuple):
    """What the two plots of a fit need, copied from the fitted detector."""

    name: str  # the detector's class
    history: list
    best_epoch: object
    scores: np.ndarray  # training scores
    offset: float


def plot_inputs(detector, X):
    """The plots' inputs of a fitted ``detector``: copies of ``history_``, the training
    scores of ``X``, ``offset_`` and ``best_epoch_``, so that they can be drawn later,
    on another thread, whatever happens to the detector meanwhile (a refit)."""
    return PlotInputs(type(detector).__name__,
                      [dict(record) for record in detector.history_], detector.best_epoch_,
                      np.array(detector._score_rows(X), dtype=np.float64),
                      float(detector.offset_))


#: One figure rendered at a time, on whichever thread (matplotlib is not thread-safe).
_RENDER_LOCK = threading.Lock()


def log_figures(client, run_id, inputs):
    """Render :class:`PlotInputs` into ``plots/loss_curves.png`` and
    ``plots/score_histogram.png`` and log both in one call."""
    from ..plots import plot_loss_curves, plot_score_histogram

    with tempfile.TemporaryDirectory(prefix="aedetect-plots-") as folder:
        with _RENDER_LOCK:
            plot_loss_curves(inputs.history, best_epoch=inputs.best_epoch,
                             title=f"{inputs.name} training").savefig(
                os.path.join(folder, "loss_curves.png"))
            plot_score_histogram(inputs.scores, inputs.offset,
                                 title=f"{inputs.name} scores, training data").savefig(
                os.path.join(folder, "score_histogram.png"))
        client.log_artifacts(run_id, folder, "plots")


def log_plots(client, run_id, detector, X):
    """Log ``plots/loss_curves.png`` and ``plots/score_histogram.png`` (the training
    scores of ``X`` with the ``offset_`` threshold) now, on this thread."""
    log_figures(client, run_id, plot_inputs(detector, X))


def log_detector_model(client, run_id, detector, name="model"):
    """Log ``detector`` as the MLflow model ``name`` of the run (the aedetect flavor)."""
    import mlflow
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    from ._flavor import log_model

    uri = client.tracking_uri
    with warnings.catch_warnings():  # the signature is explicit: MLflow's advice is moot
        warnings.filterwarnings("ignore", message=".*An input example was not provided")
        if uri == mlflow.get_tracking_uri():
            return log_model(detector, name=name, run_id=run_id)
        with _use_tracking_uri(uri):  # Model.log uses the global URI: use the client's
            return log_model(detector, name=name, run_id=run_id)
