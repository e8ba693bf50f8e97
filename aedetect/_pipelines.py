"""Saving a fitted ``Pipeline`` of preprocessing steps and a detector: no pickle.

A saved pipeline is a directory:

- ``pipeline.json``: the step names and the aedetect version;
- ``preprocessing.skops``: the fitted steps before the detector, as a scikit-learn
  ``Pipeline`` in skops' format, which stores objects as data and, when loading,
  builds only types on an allow-list (scikit-learn's and numpy's by skops' default,
  plus :data:`TRUSTED_TYPES`), so loading runs no code from the file;
- ``detector/``: the detector, as :mod:`aedetect._persistence` writes it (JSON config
  plus safetensors weights, checked by :mod:`aedetect._loading`).

:func:`aedetect._persistence.save_detector` and ``load_detector`` hand pipelines to
this module, so the MLflow flavor saves and loads them like detectors.
"""

import json
from pathlib import Path

from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

PIPELINE_FILE = "pipeline.json"
PREPROCESSING_FILE = "preprocessing.skops"
DETECTOR_DIRECTORY = "detector"
FORMAT_VERSION = 1
#: Types a preprocessing file may hold beyond those skops trusts by default.
TRUSTED_TYPES = ("aedetect.preprocessing.TableEncoder", "numpy.dtype")
MAX_CONFIG_BYTES = 2**20


def is_detector_pipeline(estimator):
    """Whether ``estimator`` is a ``Pipeline`` whose last step is an aedetect detector
    (or an ``EnsembleDetector`` of them)."""
    from ._base import BaseAutoencoderDetector
    from .ensemble import EnsembleDetector

    return (isinstance(estimator, Pipeline) and len(estimator.steps) > 0
            and isinstance(estimator.steps[-1][1], (BaseAutoencoderDetector,
                                                    EnsembleDetector)))


def _untrusted(types):
    return sorted(set(types) - set(TRUSTED_TYPES))


def save_pipeline(pipeline, directory):
    """Write a fitted pipeline ending in a detector to ``directory`` (see the module
    docstring); written atomically, never over an existing model.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        Fitted; its last step an aedetect detector, the steps before it made of types
        skops can load without trusting code (scikit-learn's transformers,
        :class:`~aedetect.preprocessing.TableEncoder`).
    directory : str or path-like
        A new or empty directory.
    """
    import skops.io

    from . import __version__
    from ._persistence import atomic_directory, save_detector

    if not is_detector_pipeline(pipeline):
        raise ValueError("Only a Pipeline whose last step is an aedetect detector can be "
                         "saved this way.")
    check_is_fitted(pipeline)
    detector = pipeline.steps[-1][1]
    check_is_fitted(detector)
    preprocessing = Pipeline(pipeline.steps[:-1])
    data = skops.io.dumps(preprocessing)
    refused = _untrusted(skops.io.get_untrusted_types(data=data))
    if refused:
        raise ValueError(
            f"Cannot save this pipeline without pickle: its preprocessing holds {refused}, "
            "which loading would have to trust (functions and classes outside scikit-learn "
            "can run code). Use scikit-learn's transformers or "
            "aedetect.preprocessing.TableEncoder.")
    config = {"format_version": FORMAT_VERSION, "aedetect_version": __version__,
              "steps": [name for name, _ in pipeline.steps]}
    with atomic_directory(directory) as staging:
        (staging / PREPROCESSING_FILE).write_bytes(data)
        save_detector(detector, staging / DETECTOR_DIRECTORY)
        (staging / PIPELINE_FILE).write_text(json.dumps(config, indent=1))


def load_pipeline(directory, device=None):
    """Read a pipeline written by :func:`save_pipeline`, trusting only skops' default
    types and :data:`TRUSTED_TYPES`; a ``ValueError`` names the file and the field.

    Parameters
    ----------
    directory : str or path-like
        The directory holding ``pipeline.json``, ``preprocessing.skops`` and
        ``detector/``.
    device : str or torch.device, default=None
        Where to put the detector's network (see ``aedetect._loading.load_detector``).

    Returns
    -------
    pipeline : sklearn.pipeline.Pipeline
        The fitted pipeline; it scores exactly as the saved one.
    """
    import skops.io

    from ._persistence import load_detector

    directory = Path(directory)
    config_path, data_path = directory / PIPELINE_FILE, directory / PREPROCESSING_FILE
    steps = _read_steps(config_path)
    if not data_path.is_file():
        raise ValueError(f"{data_path} does not exist: a saved pipeline holds "
                         f"{PIPELINE_FILE}, {PREPROCESSING_FILE} and {DETECTOR_DIRECTORY}/.")
    try:
        found = skops.io.get_untrusted_types(file=data_path)
        refused = _untrusted(found)
        if refused:
            raise ValueError(f"{data_path}: holds types outside the allow-list: {refused}; "
                             "aedetect loads no other types.")
        preprocessing = skops.io.load(data_path, trusted=found)
    except ValueError:
        raise
    except Exception as exc:  # a damaged file: zip, JSON or schema errors from skops
        raise ValueError(f"{data_path}: not a readable skops file ({exc}).") from None
    if not isinstance(preprocessing, Pipeline) or [
            name for name, _ in preprocessing.steps] != steps[:-1]:
        raise ValueError(f"{data_path}: does not hold the steps {steps[:-1]} that "
                         f"{PIPELINE_FILE} lists.")
    detector = load_detector(directory / DETECTOR_DIRECTORY, device=device)
    return Pipeline([*preprocessing.steps, (steps[-1], detector)])


def _read_steps(path):
    from ._loading import read_json

    config = read_json(path, MAX_CONFIG_BYTES, "a pipeline config",
                       "not a saved aedetect pipeline.")
    if not isinstance(config, dict) or config.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version must be {FORMAT_VERSION}; got "
                         f"{config.get('format_version') if isinstance(config, dict) else config!r:.100}.")
    steps = config.get("steps")
    if not (isinstance(steps, list) and len(steps) >= 2
            and all(isinstance(name, str) for name in steps) and len(set(steps)) == len(steps)):
        raise ValueError(f"{path}: field 'steps' must list at least two distinct step names.")
    return steps


def input_schema(pipeline):
    """The MLflow input schema of a pipeline's pyfunc: its input columns by name, of any
    type (the preprocessing checks the values; it takes text, numbers, booleans and
    missing values), or ``None`` when it was fitted without column names."""
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    names = getattr(pipeline, "feature_names_in_", None)
    if names is None:
        return None
    return Schema([ColSpec(AnyType(), str(name)) for name in names])
