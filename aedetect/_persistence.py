"""Saving a fitted detector as safetensors weights plus a JSON config: no pickle.

A saved detector is a directory with two files:

- ``config.json``: the class, ``get_params()``, every fitted attribute that is plain
  data (numbers, strings, tuples, lists, dicts, devices, arrays of strings), and the
  aedetect version;
- ``weights.safetensors``: the network's ``state_dict`` and every fitted numeric
  array or tensor attribute (``center_``, ``scale_``, a noise bank, ...).

Loading (:mod:`aedetect._loading`) rebuilds the detector: ``cls(**params)`` for one of
the public classes, the fitted attributes, ``detector._build_model()``, the state dict
(the model's buffers hold its calibration, so the state dict and the scaling are the
whole fitted scorer), checking everything first. It never imports a module named by the
files and never unpickles, so loading runs no code from them. This module does not need
MLflow (``aedetect.tracking`` wraps it).
"""

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from ._loading import CONFIG_FILE, FORMAT_VERSION, WEIGHTS_FILE
#: Parameters that are not part of a model; saved as ``None``.
DROPPED_PARAMETERS = ("callbacks",)


class _NotSerializable(TypeError):
    """Raised by :func:`_encode` for a value that is not plain data."""


def _encode(value):
    """Plain-data value -> JSON value; tuples, devices and string arrays are tagged."""
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    if isinstance(value, torch.device):
        return {"__device__": str(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(item) for item in value]}
    if isinstance(value, list):
        return [_encode(item) for item in value]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: _encode(item) for key, item in value.items()}
    if isinstance(value, np.ndarray) and value.dtype.kind in "OU" and all(
            isinstance(item, str) for item in value.ravel().tolist()):
        return {"__strings__": value.tolist(), "dtype": value.dtype.str}
    raise _NotSerializable(type(value).__name__)


def decode(value):
    """Inverse of :func:`_encode`."""
    if isinstance(value, list):
        return [decode(item) for item in value]
    if not isinstance(value, dict):
        return value
    if "__tuple__" in value:
        return tuple(decode(item) for item in value["__tuple__"])
    if "__device__" in value:
        return torch.device(value["__device__"])
    if "__strings__" in value:
        return np.asarray(value["__strings__"], dtype=np.dtype(value["dtype"]))
    return {key: decode(item) for key, item in value.items()}


def _class_path(cls):
    return f"{cls.__module__}:{cls.__qualname__}"


def _encode_params(detector):
    params = {}
    for name, value in detector.get_params(deep=False).items():
        if name in DROPPED_PARAMETERS:
            params[name] = None
            continue
        try:
            params[name] = _encode(value)
        except _NotSerializable:
            raise ValueError(
                f"Cannot save {type(detector).__name__}: parameter {name}={value!r} is a "
                f"{type(value).__name__}, which cannot be stored without pickle. Set {name} "
                "to plain data (for example an int seed or a string option), refit, then "
                "save.") from None
    return params


def _split_state(detector, params):
    """Fitted state -> (JSON attributes, tensors to store).

    Public fitted attributes that are not plain data raise ``ValueError``; private
    ones (``_name``) are training-only by contract and skipped in that case.
    """
    attributes, tensors = {}, {}
    for name, value in vars(detector).items():
        if name in params or name == "module_":
            continue
        if isinstance(value, torch.Tensor):
            tensors[f"tensor:{name}"] = value
        elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            tensors[f"array:{name}"] = torch.from_numpy(np.ascontiguousarray(value))
        else:
            try:
                attributes[name] = _encode(value)
            except _NotSerializable:
                if name.startswith("_"):
                    continue
                raise ValueError(
                    f"Cannot save {type(detector).__name__}: fitted attribute {name} is a "
                    f"{type(value).__name__}, which cannot be stored without pickle.") from None
    return attributes, tensors


def save_detector(detector, directory):
    """Write a fitted detector to ``directory`` (created) as JSON plus safetensors.

    Parameters
    ----------
    detector : BaseAutoencoderDetector
        A fitted detector.
    directory : str or path-like
        Where to write ``config.json`` and ``weights.safetensors``: a new or empty
        directory (written atomically, see :func:`atomic_directory`).

    A fitted ``Pipeline`` ending in a detector is saved by
    :func:`aedetect._pipelines.save_pipeline` (preprocessing through skops), an
    ``EnsembleDetector`` by :func:`aedetect._ensembles.save_ensemble` (its members as
    detectors).
    """
    from ._ensembles import is_ensemble, save_ensemble
    from ._pipelines import is_detector_pipeline, save_pipeline

    if is_detector_pipeline(detector):
        return save_pipeline(detector, directory)
    if is_ensemble(detector):
        return save_ensemble(detector, directory)
    if not hasattr(detector, "module_"):
        raise ValueError(f"This {type(detector).__name__} instance is not fitted yet; call "
                         "'fit' before saving it.")
    params = _encode_params(detector)
    attributes, tensors = _split_state(detector, params)
    for key, value in detector.module_.state_dict().items():
        tensors[f"module:{key}"] = value
    # clone: safetensors refuses tensors that share memory (tied or sliced weights)
    tensors = {key: value.detach().to("cpu").clone().contiguous()
               for key, value in tensors.items()}
    from . import __version__

    config = {"format_version": FORMAT_VERSION, "aedetect_version": __version__,
              "torch_version": torch.__version__, "class": _class_path(type(detector)),
              "params": params, "attributes": attributes}
    with atomic_directory(directory) as staging:
        save_file(tensors, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=1, allow_nan=True))


@contextlib.contextmanager
def atomic_directory(directory):
    """Write a directory atomically: yields a new folder beside ``directory`` to fill,
    renamed to ``directory`` when the block succeeds and removed when it fails, so a
    failed save leaves nothing behind. An existing non-empty ``directory`` is refused
    (a saved model is never overwritten)."""
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ValueError(f"{directory} already exists and is not empty: a saved model is "
                         "never overwritten. Choose a new path, or delete the old one first.")
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        yield staging
        if directory.exists():
            directory.rmdir()  # empty, checked above
        os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def load_detector(directory, device=None):
    """Read a detector written by :func:`save_detector` (see :mod:`aedetect._loading`,
    which checks both files before anything is used), a pipeline written by
    :func:`aedetect._pipelines.save_pipeline`, or an ensemble written by
    :func:`aedetect._ensembles.save_ensemble`."""
    from ._ensembles import ENSEMBLE_FILE, load_ensemble
    from ._loading import load_detector as load
    from ._pipelines import PIPELINE_FILE, load_pipeline

    if (Path(directory) / PIPELINE_FILE).is_file():
        return load_pipeline(directory, device=device)
    if (Path(directory) / ENSEMBLE_FILE).is_file():
        return load_ensemble(directory, device=device)
    return load(directory, device=device)
