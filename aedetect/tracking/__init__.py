"""MLflow for aedetect: tracked training runs and the ``aedetect`` model flavor.

Tracking is a fit callback, :class:`MLflowCallback`, and :func:`autolog`, a switch that
attaches one to every detector's fit (and follows ``GridSearchCV`` /
``RandomizedSearchCV``). Each fit logs its parameters, the dataset, the per-epoch
metrics (every loss component, ``val_loss``, ``epoch_time``), the fitted values
(``offset_``, ``n_iter_``, ...) as params, plots, and under autolog the model. Runs go
to MLflow's own tracking URI (:func:`get_tracking_uri`; by default ``mlflow.db`` in
the working directory, :data:`DEFAULT_TRACKING_URI`), the store ``mlflow ui`` opens.
The plots are drawn and the run is ended on a worker thread after ``fit`` returns;
:func:`flush` waits for it (``MLflowCallback(asynchronous=False)`` does it all inside
``fit``).

The flavor (:func:`save_model`, :func:`log_model`, :func:`load_model`) stores a
detector as safetensors weights plus a JSON config (no pickle) and a pyfunc that
returns a DataFrame of scores, decision values and labels, or for
``mlflow.models.evaluate`` an outlier flag and probability.

All MLflow code of aedetect lives in this package and imports MLflow lazily:
``import aedetect`` (or this package) never imports it.
"""

from ._autolog import autolog
from ._background import flush
from ._callback import MLflowCallback
from ._flavor import (
    FLAVOR_NAME,
    get_default_pip_requirements,
    infer_signature,
    load_model,
    log_model,
    save_model,
)
from ._logging import DETECTOR_TAG
from ._spark import spark_udf
from ._store import (
    DEFAULT_ARTIFACT_LOCATION,
    DEFAULT_EXPERIMENT_NAME,
    DEFAULT_TRACKING_URI,
    TrackingWarning,
    experiment_url,
    get_experiment_id,
    get_tracking_uri,
)

__all__ = [
    "DEFAULT_ARTIFACT_LOCATION", "DEFAULT_EXPERIMENT_NAME", "DEFAULT_TRACKING_URI",
    "DETECTOR_TAG", "FLAVOR_NAME", "MLflowCallback", "TrackingWarning", "autolog",
    "experiment_url", "flush", "get_default_pip_requirements", "get_experiment_id",
    "get_tracking_uri", "infer_signature", "load_model", "log_model", "save_model",
    "spark_udf",
]
