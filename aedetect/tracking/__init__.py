"""MLflow for aedetect: tracked training runs and the ``aedetect`` model flavor.

Tracking is a fit callback, :class:`MLflowCallback`, and :func:`autolog`, a switch that
attaches one to every detector's fit. Each fit logs its parameters, the dataset shape,
one batch of metrics per epoch (every loss component, ``val_loss``, ``epoch_time``),
the final ``offset``, ``training_time``, ``best_epoch``, and plots. Runs that aedetect
opens itself go, when MLflow has no tracking URI, to :data:`DEFAULT_TRACKING_URI`.

The flavor (:func:`save_model`, :func:`log_model`, :func:`load_model`) stores a
detector as safetensors weights plus a JSON config (no pickle) and a pyfunc that
returns a DataFrame of scores, decision values and labels.

All MLflow code of aedetect lives in this package and imports MLflow lazily:
``import aedetect`` (or this package) never imports it.
"""

from ._callback import DETECTOR_TAG, MLflowCallback, autolog
from ._flavor import (
    FLAVOR_NAME,
    get_default_pip_requirements,
    infer_signature,
    load_model,
    log_model,
    save_model,
)
from ._store import (
    DEFAULT_ARTIFACT_LOCATION,
    DEFAULT_EXPERIMENT_NAME,
    DEFAULT_TRACKING_URI,
    TrackingWarning,
    get_experiment_id,
    get_tracking_uri,
)

__all__ = [
    "DEFAULT_ARTIFACT_LOCATION", "DEFAULT_EXPERIMENT_NAME", "DEFAULT_TRACKING_URI",
    "DETECTOR_TAG", "FLAVOR_NAME", "MLflowCallback", "TrackingWarning", "autolog",
    "get_default_pip_requirements", "get_experiment_id", "get_tracking_uri",
    "infer_signature", "load_model", "log_model", "save_model",
]
