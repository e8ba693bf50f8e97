"""Saving a fitted detector as safetensors weights plus a JSON config: no pickle.

A saved detector is a directory with two files:

- ``config.json``: the class, ``get_params()``, every fitted attribute that is plain
  data (numbers, strings, tuples, lists, dicts, devices, arrays of strings), and the
  aedetect version;
- ``weights.safetensors``: the network's ``state_dict`` and every fitted numeric
  array or tensor attribute (``center_``, ``scale_``, a noise bank, ...).

Loading rebuilds the detector generically: ``cls(**params)``, restore the fitted
attributes, ``detector._build_model()``, load the state dict (the model's buffers hold
its calibration, so the state dict and the scaling are the whole fitted scorer). It never
imports a module outside aedetect and never unpickles, so loading runs no code from
the files. This module does not need MLflow (``aedetect.tracking`` wraps it).
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ._base import BaseAutoencoderDetector
from ._device import build_seeded, load_device

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
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


def _decode(value):
    """Inverse of :func:`_encode`."""
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if not isinstance(value, dict):
        return value
    if "__tuple__" in value:
        return tuple(_decode(item) for item in value["__tuple__"])
    if "__device__" in value:
        return torch.device(value["__device__"])
    if "__strings__" in value:
        return np.asarray(value["__strings__"], dtype=np.dtype(value["dtype"]))
    return {key: _decode(item) for key, item in value.items()}


def _class_path(cls):
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve_class(path):
    """The detector class named ``module:qualname``, importing only aedetect modules."""
    module_name, _, qualname = path.partition(":")
    if module_name == "aedetect" or module_name.startswith("aedetect."):
        __import__(module_name)
    module = sys.modules.get(module_name)
    if module is None:
        raise ValueError(f"The saved detector's class {path} lives outside aedetect in a "
                         f"module that is not imported; import {module_name} first (loading "
                         "never imports modules named by a file).")
    cls = module
    for part in qualname.split("."):
        cls = getattr(cls, part, None)
    if not (isinstance(cls, type) and issubclass(cls, BaseAutoencoderDetector)):
        raise ValueError(f"{path} is not an aedetect detector class.")
    return cls


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
        Where to write ``config.json`` and ``weights.safetensors``.
    """
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
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=1, allow_nan=True))


def load_detector(directory, device=None):
    """Read a detector written by :func:`save_detector`.

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
    """
    directory = Path(directory)
    config = json.loads((directory / CONFIG_FILE).read_text())
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{directory / CONFIG_FILE} has format_version "
                         f"{config.get('format_version')!r}; this aedetect reads version "
                         f"{FORMAT_VERSION}. Load it with the aedetect version that saved it "
                         f"({config.get('aedetect_version')}).")
    cls = _resolve_class(config["class"])
    detector = cls(**_decode(config["params"]))
    tensors = load_file(str(directory / WEIGHTS_FILE), device="cpu")
    for name, value in _decode(config["attributes"]).items():
        setattr(detector, name, value)
    target = load_device(str(detector.device_), device)
    detector.device_ = target
    for key, value in tensors.items():
        kind, _, name = key.partition(":")
        if kind == "array":
            setattr(detector, name, value.numpy())
        elif kind == "tensor":
            setattr(detector, name, value.to(target))
    # building draws initial weights (overwritten below) from a seeded generator that
    # is restored afterwards: the caller's random stream is untouched
    module, _ = build_seeded(detector._build_model, 0)
    prefix = "module:"
    module.load_state_dict({key[len(prefix):]: value for key, value in tensors.items()
                            if key.startswith(prefix)})
    detector.module_ = module.to(target).eval()
    return detector
