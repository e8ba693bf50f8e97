"""Loading a saved detector, treating the files as untrusted input.

A saved detector (see :mod:`aedetect._persistence`) is a JSON config and a safetensors
weights file. Loading never runs or imports code named by the files and checks
everything before it is used:

- the class is one of the public detectors, by its exact name;
- the parameters are the class's own and pass the same constraints as ``fit``;
- the fitted attributes are an allow-list, each of the type and shape the parameters
  and ``n_features_in_`` imply, with finite values (``scale_`` positive);
- the weights file's header (read without loading any tensor) must hold exactly the
  tensors, shapes and dtypes of the model those attributes describe, built on the
  ``meta`` device (no memory): a file that declares a huge layer is refused before
  anything is allocated; then every value must be finite.

Every refusal is a ``ValueError`` naming the file and the field.
"""

import json
import math
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch

from ._device import build_seeded, load_device
from .thresholds import fpr_offset, is_threshold_record

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
FORMAT_VERSION = 1
#: A config larger than this is not one aedetect wrote.
MAX_CONFIG_BYTES = 64 * 2**20
#: Weights file keys: the model's state dict and the fitted numeric arrays.
MODULE_PREFIX, ARRAY_PREFIX = "module:", "array:"
#: Buffers whose first dimension is fitted (the number of reference codes).
VARIABLE_ROWS = ("neighbours.codes",)
_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
           "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32, "I16": torch.int16,
           "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}


class _Refusal(ValueError):
    """A check failed; :func:`load_detector` adds the file to the message."""


def public_classes():
    """``{"module:qualname": class}`` of the detectors a file may name."""
    from . import AAEDetector, AEDetector, VAEDetector

    return {f"{cls.__module__}:{cls.__qualname__}": cls
            for cls in (AEDetector, VAEDetector, AAEDetector)}


def load_detector(directory, device=None):
    """Read a detector written by :func:`aedetect._persistence.save_detector`.

    Parameters
    ----------
    directory : str or path-like
        The directory holding ``config.json`` and ``weights.safetensors``.
    device : str or torch.device, default=None
        Where to put the network. ``None``: the device it was fitted on when
        available, else the CPU.

    Returns
    -------
    detector : BaseAutoencoderDetector
        The fitted detector; it scores exactly as the saved one.

    Raises
    ------
    ValueError
        If a file is missing, malformed or inconsistent; the message names the file
        and the field.
    """
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    try:
        detector = _detector_from_config(_read_config(config_path))
    except _Refusal as exc:
        raise ValueError(f"{config_path}: {exc}") from None
    try:
        state, arrays = _read_weights(weights_path, detector)
    except _Refusal as exc:
        raise ValueError(f"{weights_path}: {exc}") from None
    for name, value in arrays.items():
        setattr(detector, name, value)
    target = load_device(str(detector.device_), device)
    detector.device_ = target
    module, _ = build_seeded(detector._build_model, 0)  # weights overwritten just below
    module.load_state_dict(state)
    detector.module_ = module.to(target).eval()
    return detector


# ------------------------------------------------------------------- config
def read_json(path, max_bytes, kind, missing):
    """The JSON value in the file ``path`` (a ``kind`` written by aedetect), refusing a
    missing file (``missing`` says what should be there), one over ``max_bytes`` and
    invalid JSON with a ``ValueError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist: {missing}")
    if path.stat().st_size > max_bytes:
        raise ValueError(f"{path}: {path.stat().st_size} bytes is not {kind} "
                         f"(at most {max_bytes}).")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None


def _read_config(path):
    return read_json(path, MAX_CONFIG_BYTES, "a detector config",
                     f"a saved detector directory holds {CONFIG_FILE} and {WEIGHTS_FILE}.")


def _detector_from_config(config):
    from ._persistence import decode

    if not isinstance(config, dict):
        raise _Refusal("the config must be a JSON object.")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise _Refusal(f"format_version {version!r}; this aedetect reads version "
                       f"{FORMAT_VERSION}. Load it with the aedetect version that saved it "
                       f"({config.get('aedetect_version')!r}).")
    classes = public_classes()
    name = config.get("class")
    if not isinstance(name, str) or name not in classes:
        raise _Refusal(f"class {name!r} is not a detector this aedetect can load; expected "
                       f"one of {sorted(classes)}.")
    cls = classes[name]
    params, attributes = (_field(config, "params", dict), _field(config, "attributes", dict))
    detector = _with_params(cls, _decoded(decode, params, "params"))
    _set_attributes(detector, _decoded(decode, attributes, "attributes"))
    return detector


def _field(config, name, kind):
    value = config.get(name)
    if not isinstance(value, kind):
        raise _Refusal(f"field {name!r} must be a JSON {kind.__name__}, got "
                       f"{type(value).__name__}.")
    return value


def _decoded(decode, value, field):
    try:
        return decode(value)
    except (TypeError, ValueError, KeyError, RuntimeError, RecursionError) as exc:
        raise _Refusal(f"field {field!r} holds a value that cannot be decoded ({exc}).") from None


def _with_params(cls, params):
    known = cls._get_param_names()
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise _Refusal(f"params: {unknown} are not parameters of {cls.__name__}.")
    detector = cls(**params)
    try:
        detector._validate_params()
    except ValueError as exc:  # scikit-learn's InvalidParameterError
        raise _Refusal(f"params: {exc}") from None
    return detector


# --------------------------------------------------------------- attributes
def _positive_int(value):
    return isinstance(value, Integral) and not isinstance(value, bool) and value > 0


def _positive_ints(value, lengths=None):
    return (isinstance(value, tuple) and (lengths is None or len(value) in lengths)
            and all(_positive_int(side) for side in value))


def _finite_number(value):
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _history(value):
    return isinstance(value, list) and all(
        isinstance(record, dict) and all(isinstance(k, str) and isinstance(v, Real)
                                         for k, v in record.items()) for record in value)


#: Fitted attributes a config may hold: name -> (check, what the check requires).
ATTRIBUTE_CHECKS = {
    "n_features_in_": (_positive_int, "a positive int"),
    "input_shape_": (lambda v: _positive_ints(v, (1, 3)), "a tuple of 1 or 3 positive ints"),
    "hidden_layer_sizes_": (_positive_ints, "a tuple of positive ints"),
    "latent_dim_": (_positive_int, "a positive int"),
    "device_": (lambda v: isinstance(v, torch.device), "a device"),
    "offset_": (_finite_number, "a finite number"),
    "score_type_": (lambda v: isinstance(v, str), "a string"),
    "threshold_": (is_threshold_record, "a record of how offset_ was set (see "
                   "aedetect.thresholds.THRESHOLD_KEYS)"),
    "history_": (_history, "a list of records of numbers"),
    "n_iter_": (lambda v: isinstance(v, Integral) and not isinstance(v, bool) and v >= 0,
                "an int >= 0"),
    "loss_curve_": (lambda v: isinstance(v, list) and all(isinstance(x, Real) for x in v),
                    "a list of numbers"),
    "best_loss_": (lambda v: isinstance(v, Real), "a number"),
    "best_epoch_": (lambda v: v is None or _positive_int(v), "a positive int or null"),
    "feature_names_in_": (lambda v: isinstance(v, np.ndarray) and v.ndim == 1,
                          "an array of strings"),
    "classes_": (lambda v: isinstance(v, np.ndarray) and v.ndim == 1 and v.size >= 2,
                 "an array of at least 2 labels"),
    "_sklearn_output_config": (lambda v: isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(x, str) for k, x in v.items()), "a dict of strings"),
}
OPTIONAL = ("feature_names_in_", "classes_", "_sklearn_output_config", "threshold_")


def _set_attributes(detector, attributes):
    unknown = sorted(set(attributes) - set(ATTRIBUTE_CHECKS))
    if unknown:
        raise _Refusal(f"attributes: {unknown} are not fitted attributes of "
                       f"{type(detector).__name__}.")
    for name, (check, requirement) in ATTRIBUTE_CHECKS.items():
        if name not in attributes:
            if name not in OPTIONAL:
                raise _Refusal(f"attributes: {name} is missing.")
            continue
        if not check(attributes[name]):
            raise _Refusal(f"attributes: {name} must be {requirement}, got "
                           f"{attributes[name]!r:.200}.")
    n_features, shape = attributes["n_features_in_"], attributes["input_shape_"]
    if math.prod(shape) != n_features:
        raise _Refusal(f"attributes: input_shape_ {shape} does not hold n_features_in_="
                       f"{n_features} values.")
    names = attributes.get("feature_names_in_")
    if names is not None and names.shape != (n_features,):
        raise _Refusal(f"attributes: feature_names_in_ has {names.shape[0]} names for "
                       f"{n_features} features.")
    score_types = detector._parameter_constraints["score_type"][0].options
    if attributes["score_type_"] not in score_types:
        raise _Refusal(f"attributes: score_type_ {attributes['score_type_']!r} is not one of "
                       f"{sorted(score_types)}.")
    for name, value in attributes.items():
        setattr(detector, name, value)


# ------------------------------------------------------------------ weights
def _read_weights(path, detector):
    """``(state_dict, fitted arrays)`` after checking the header against the model the
    config describes, then every value."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        raise _Refusal("the file does not exist.")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = {key: handle.get_slice(key) for key in handle.keys()}
            header = {key: (tuple(part.get_shape()), part.get_dtype())
                      for key, part in header.items()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _Refusal(f"not a readable safetensors file ({exc}).") from None
    classes = header.get(f"{ARRAY_PREFIX}classes_")
    if classes is not None:  # numeric classes: their number shapes the conditional model
        if len(classes[0]) != 1 or classes[0][0] < 2 or hasattr(detector, "classes_"):
            raise _Refusal("tensor 'array:classes_' must be one list of at least 2 labels, "
                           "stored once.")
        detector.classes_ = np.arange(classes[0][0])
    _check_header(header, _expected_header(detector))
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _Refusal(f"cannot read the tensors ({exc}).") from None
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise _Refusal(f"tensor {key!r} holds non-finite values.")
    arrays = {key[len(ARRAY_PREFIX):]: value.numpy() for key, value in tensors.items()
              if key.startswith(ARRAY_PREFIX)}
    if not np.all(arrays["scale_"] > 0):
        raise _Refusal("tensor 'array:scale_' must be positive.")
    _check_calibration(detector, arrays)
    state = {key[len(MODULE_PREFIX):]: value for key, value in tensors.items()
             if key.startswith(MODULE_PREFIX)}
    return state, arrays


def _expected_header(detector):
    """``{key: (shape, dtype)}`` the weights file must hold for this config."""
    n_features = detector.n_features_in_
    expected = {f"{ARRAY_PREFIX}center_": ((n_features,), torch.float64),
                f"{ARRAY_PREFIX}scale_": ((n_features,), torch.float64)}
    detector.center_ = np.zeros(n_features)  # what the model's construction reads
    detector.scale_ = np.ones(n_features)
    conditional = getattr(detector, "conditional", False)
    if conditional != hasattr(detector, "classes_"):
        raise _Refusal("attributes: classes_ must be present exactly when conditional=True.")
    with torch.device("meta"):
        try:
            model, _ = build_seeded(detector._build_model, 0)
        except (ValueError, TypeError, RuntimeError) as exc:
            raise _Refusal(f"the config describes no valid model ({exc}).") from None
    for key, value in model.state_dict().items():
        expected[MODULE_PREFIX + key] = (tuple(value.shape), value.dtype)
    threshold = getattr(detector, "threshold_", None)
    if threshold is not None and threshold["method"] == "fpr":  # calibrate's scores
        expected[f"{ARRAY_PREFIX}calibration_scores_"] = ((threshold["n_rows"],), torch.float64)
    return expected


def _check_calibration(detector, arrays):
    """A calibrated ``offset_`` must be the one its sorted calibration scores give."""
    scores = arrays.get("calibration_scores_")
    if scores is None:
        return
    if np.any(np.diff(scores) < 0) or fpr_offset(
            scores, detector.threshold_["fpr"]) != detector.offset_:
        raise _Refusal("tensor 'array:calibration_scores_' must be sorted and give offset_ "
                       "for threshold_['fpr']; the file was altered after calibrate.")


def _check_header(header, expected):
    missing = sorted(set(expected) - set(header))
    extra = sorted(key for key in set(header) - set(expected)
                   if key != f"{ARRAY_PREFIX}classes_")
    if missing or extra:
        raise _Refusal(f"tensors {missing} are missing and {extra} unexpected for the model "
                       "the config describes.")
    for key, (shape, dtype) in expected.items():
        got_shape, got_dtype = header[key]
        if _DTYPES.get(got_dtype) != dtype:
            raise _Refusal(f"tensor {key!r} has dtype {got_dtype}, expected {dtype}.")
        variable = key[len(MODULE_PREFIX):] in VARIABLE_ROWS
        if got_shape != shape and not (variable and len(got_shape) == 2
                                        and got_shape[1:] == shape[1:]):
            raise _Refusal(f"tensor {key!r} has shape {got_shape}, expected {shape} for the "
                           "model the config describes.")
