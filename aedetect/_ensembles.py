"""Saving a fitted :class:`~aedetect.EnsembleDetector`: no pickle.

A saved ensemble is a directory:

- ``ensemble.json``: the members' names, the ensemble's parameters (``contamination``,
  ``device``, ``random_state``), its fitted numbers (each member's training-score
  median and MAD, ``offset_``, ``threshold_``, the calibration scores), the features
  seen in ``fit`` and the aedetect version;
- ``members/<i>/``: each member, as :mod:`aedetect._persistence` writes a detector
  (JSON config plus safetensors weights, checked by :mod:`aedetect._loading`).

:func:`aedetect._persistence.save_detector` and ``load_detector`` hand ensembles to
this module, so the MLflow flavor saves, logs, loads and serves them like detectors.
Loading checks every field before it is used and builds nothing a file names.
"""

import json
import math
from numbers import Integral
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch
from sklearn.utils.validation import check_is_fitted

from .thresholds import is_threshold_record

ENSEMBLE_FILE = "ensemble.json"
MEMBERS_DIRECTORY = "members"
FORMAT_VERSION = 1
MAX_CONFIG_BYTES = 64 * 2**20
MAX_MEMBERS = 256


def is_ensemble(estimator):
    from .ensemble import EnsembleDetector

    return isinstance(estimator, EnsembleDetector)


def _numbers(values):
    return [float(value) for value in np.asarray(values, dtype=np.float64).ravel()]


def save_ensemble(ensemble, directory):
    """Write a fitted ensemble to ``directory`` (a new or empty directory, written
    atomically: a failed save leaves nothing, an existing model is never touched)."""
    from . import __version__
    from ._persistence import atomic_directory, save_detector

    check_is_fitted(ensemble)
    random_state = ensemble.random_state
    if random_state is not None and not isinstance(random_state, Integral):
        raise ValueError(
            f"Cannot save EnsembleDetector: random_state={random_state!r} is a "
            f"{type(random_state).__name__}, which cannot be stored without pickle. Set "
            "random_state to an int or None, refit, then save.")
    names = list(ensemble.named_estimators_)
    calibration = ensemble.calibration_scores_
    config = {
        "format_version": FORMAT_VERSION, "aedetect_version": __version__,
        "members": names,
        "params": {"contamination": ensemble.contamination,
                   "device": None if ensemble.device is None else str(ensemble.device),
                   "random_state": None if random_state is None else int(random_state)},
        "centers": _numbers(ensemble.centers_), "scales": _numbers(ensemble.scales_),
        "offset": float(ensemble.offset_), "threshold": ensemble.threshold_,
        "calibration_scores": None if calibration is None else _numbers(calibration),
        "n_features_in": int(ensemble.n_features_in_),
        "feature_names_in": (None if getattr(ensemble, "feature_names_in_", None) is None
                             else [str(name) for name in ensemble.feature_names_in_]),
        "input_shape": [int(size) for size in ensemble.input_shape_]}
    with atomic_directory(directory) as staging:
        for index, detector in enumerate(ensemble.estimators_):
            save_detector(detector, staging / MEMBERS_DIRECTORY / str(index))
        (staging / ENSEMBLE_FILE).write_text(json.dumps(config, indent=1))


class _Refusal(ValueError):
    """A check of ``ensemble.json`` failed; :func:`load_ensemble` names the file."""


def _read_config(path):
    from ._loading import read_json

    config = read_json(path, MAX_CONFIG_BYTES, "an ensemble config",
                       "not a saved aedetect ensemble.")
    if not isinstance(config, dict) or config.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version must be {FORMAT_VERSION}.")
    return config


def _finite_list(config, field, length=None, positive=False):
    values = config.get(field)
    if not (isinstance(values, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and (v > 0 or not positive) for v in values)):
        raise _Refusal(f"field {field!r} must be a list of finite"
                       f"{' positive' if positive else ''} numbers.")
    if length is not None and len(values) != length:
        raise _Refusal(f"field {field!r} has {len(values)} values; expected {length}.")
    return np.asarray(values, dtype=np.float64)


def _checked(config):
    """The ensemble's fields, each checked (a :class:`_Refusal` names the field)."""
    names = config.get("members")
    if not (isinstance(names, list) and 1 <= len(names) <= MAX_MEMBERS
            and all(isinstance(name, str) and name and "__" not in name for name in names)
            and len(set(names)) == len(names)):
        raise _Refusal("field 'members' must list 1 to 256 distinct member names.")
    params = config.get("params")
    if not (isinstance(params, dict)
            and set(params) == {"contamination", "device", "random_state"}):
        raise _Refusal("field 'params' must hold contamination, device and random_state.")
    random_state = params["random_state"]
    if random_state is not None and (isinstance(random_state, bool)
                                     or not isinstance(random_state, int)):
        raise _Refusal("params.random_state must be an int or null.")
    offset = config.get("offset")
    if isinstance(offset, bool) or not isinstance(offset, (int, float)) or not math.isfinite(
            offset):
        raise _Refusal("field 'offset' must be a finite number.")
    if not is_threshold_record(config.get("threshold")):
        raise _Refusal("field 'threshold' is not a threshold record aedetect writes.")
    n_features = config.get("n_features_in")
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
        raise _Refusal("field 'n_features_in' must be a positive int.")
    feature_names = config.get("feature_names_in")
    if feature_names is not None and not (
            isinstance(feature_names, list) and len(feature_names) == n_features
            and all(isinstance(name, str) for name in feature_names)):
        raise _Refusal(f"field 'feature_names_in' must be null or {n_features} strings.")
    shape = config.get("input_shape")
    if not (isinstance(shape, list) and shape and all(
            isinstance(size, int) and not isinstance(size, bool) and size >= 1
            for size in shape) and math.prod(shape) == n_features):
        raise _Refusal(f"field 'input_shape' must be positive ints of product {n_features}.")
    calibration = config.get("calibration_scores")
    if calibration is not None:
        calibration = np.sort(_finite_list(config, "calibration_scores"))
    return {"names": names, "params": params, "offset": float(offset),
            "centers": _finite_list(config, "centers", len(names)),
            "scales": _finite_list(config, "scales", len(names), positive=True),
            "threshold": config["threshold"], "n_features": n_features,
            "feature_names": feature_names, "input_shape": tuple(shape),
            "calibration": calibration}


def load_ensemble(directory, device=None):
    """Read an ensemble written by :func:`save_ensemble`; a ``ValueError`` names the
    file and the field. ``device``: where to put the members' networks (see
    ``aedetect._loading.load_detector``)."""
    from ._loading import load_detector
    from .ensemble import EnsembleDetector

    directory = Path(directory)
    config_path = directory / ENSEMBLE_FILE
    try:
        fields = _checked(_read_config(config_path))
    except _Refusal as exc:
        raise ValueError(f"{config_path}: {exc}") from None
    members = []
    for index, name in enumerate(fields["names"]):
        detector = load_detector(directory / MEMBERS_DIRECTORY / str(index), device=device)
        if detector.n_features_in_ != fields["n_features"]:
            raise ValueError(f"{directory / MEMBERS_DIRECTORY / str(index)}: member {name!r} "
                             f"expects {detector.n_features_in_} features, the ensemble "
                             f"{fields['n_features']}.")
        members.append((name, detector))
    ensemble = EnsembleDetector(members, **fields["params"])
    try:
        ensemble._validate_params()
    except ValueError as exc:
        raise ValueError(f"{config_path}: field 'params': {exc}") from None
    ensemble.__dict__.update(
        estimators_=[detector for _, detector in members], named_estimators_=Bunch(**dict(
            members)), centers_=fields["centers"], scales_=fields["scales"],
        offset_=fields["offset"], threshold_=fields["threshold"],
        calibration_scores_=fields["calibration"], n_features_in_=fields["n_features"],
        input_shape_=fields["input_shape"])
    if fields["feature_names"] is not None:
        ensemble.feature_names_in_ = np.asarray(fields["feature_names"], dtype=object)
    return ensemble
