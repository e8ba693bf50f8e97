"""The ``aedetect`` MLflow model flavor: save, log and load detectors without pickle."""

import sys
from pathlib import Path

FLAVOR_NAME = "aedetect"
#: The pyfunc's code (models-from-code): MLflow runs this file, it unpickles nothing.
_PYFUNC_CODE = Path(__file__).with_name("_pyfunc_model.py")


def _pinned(package):
    from importlib.metadata import version

    return f"{package}=={version(package).split('+')[0]}"


def get_default_pip_requirements():
    """The pip requirements written with a saved model (no inference: it is slow).

    Returns
    -------
    requirements : list of str
        aedetect, mlflow, torch, scikit-learn, safetensors, numpy and pandas, pinned
        to the installed versions (torch without its local build suffix).
    """
    from .. import __version__

    packages = ("mlflow", "torch", "scikit-learn", "safetensors", "skops", "numpy", "pandas")
    return [f"aedetect=={__version__}", *(_pinned(package) for package in packages)]


def _requirements(requirements):
    """A list of requirements, or a requirements file's lines (without comments)."""
    if requirements is None:
        return []
    if isinstance(requirements, (str, Path)):
        lines = Path(requirements).read_text().splitlines()
        return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]
    return list(requirements)


def infer_signature(detector):
    """The model signature of a fitted detector's pyfunc.

    Inputs are float64: named columns when the detector was fitted on a DataFrame
    with string column names, else ``n_features_in_`` unnamed columns matched by
    position (accepting arrays, DataFrames, and JSON or CSV payloads when served).
    Outputs are ``score``, ``decision`` (double) and ``label`` (long); the parameter
    ``output`` selects them or others (see ``aedetect/tracking/_pyfunc_model.py``);
    its default, ``"default"``, is the output chosen at load time
    (``model_config={"output": ...}``, else ``"all"``).

    Returns
    -------
    signature : mlflow.models.ModelSignature
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    from .._pipelines import input_schema, is_detector_pipeline

    names = getattr(detector, "feature_names_in_", None)
    if is_detector_pipeline(detector) and names is not None:  # raw columns of any type
        inputs = input_schema(detector)
    elif names is not None:
        inputs = Schema([ColSpec("double", str(name)) for name in names])
    else:
        # unnamed columns, matched by position: arrays, DataFrames, JSON and CSV payloads
        # (MLflow's scoring server cannot parse CSV against a tensor signature)
        inputs = Schema([ColSpec("double") for _ in range(detector.n_features_in_)])
    outputs = Schema([ColSpec("double", "score"), ColSpec("double", "decision"),
                      ColSpec("long", "label")])
    params = ParamSchema([ParamSpec("output", "string", "default")])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def save_model(detector, path, *, mlflow_model=None, signature=None, input_example=None,
               pip_requirements=None, extra_pip_requirements=None, metadata=None,
               model_config=None):
    """Save a fitted detector as an MLflow model directory, with no pickle in it.

    The directory holds the ``aedetect`` flavor (``artifacts/detector``: JSON config
    plus safetensors weights) and a ``python_function`` flavor whose code is
    ``aedetect/tracking/_pyfunc_model.py`` (models-from-code).

    Parameters
    ----------
    detector : BaseAutoencoderDetector or Pipeline
        A fitted detector. Its ``callbacks`` are not saved; a parameter that is not
        plain data (a ``RandomState``, a torch distribution) raises ``ValueError``.
        Or a fitted ``Pipeline`` ending in one, whose preprocessing is saved with skops
        (see :mod:`aedetect._pipelines`); its pyfunc takes the raw table.
    path : str or path-like
        Directory to create; it must not exist or be empty. It is written
        atomically: a failed save leaves nothing there, and an existing model is
        never touched.
    mlflow_model : mlflow.models.Model, default=None
        Model configuration to add the flavors to (used by :func:`log_model`).
    signature : mlflow.models.ModelSignature, default=None
        ``None``: :func:`infer_signature`.
    input_example : DataFrame or ndarray, default=None
        A few rows stored with the model (shown in the UI, used to validate serving).
    pip_requirements : list of str or str, default=None
        ``None``: :func:`get_default_pip_requirements`. A string is the path of a
        requirements file, as in MLflow.
    extra_pip_requirements : list of str or str, default=None
        Added to the requirements (a string: a requirements file).
    metadata : dict, default=None
        Custom metadata written to the ``MLmodel`` file.
    model_config : dict, default=None
        The pyfunc's default configuration, ``{"output": "all"}`` when ``None``;
        ``mlflow.pyfunc.load_model(..., model_config=...)`` overrides it at load time.
    """
    import tempfile

    import mlflow.pyfunc
    from mlflow.models import Model

    from .. import __version__
    from .._persistence import atomic_directory, save_detector

    mlflow_model = mlflow_model if mlflow_model is not None else Model()
    if pip_requirements is None:  # a string is a requirements file, as in MLflow
        pip_requirements = get_default_pip_requirements() + _requirements(extra_pip_requirements)
        extra_pip_requirements = None  # MLflow takes one of the two
    with tempfile.TemporaryDirectory() as tmp, atomic_directory(path) as staging:
        data = Path(tmp, "detector")
        save_detector(detector, data)
        mlflow_model.add_flavor(FLAVOR_NAME, aedetect_version=__version__,
                                data="artifacts/detector",  # where pyfunc puts "detector"
                                detector_class=type(detector).__name__)
        mlflow.pyfunc.save_model(
            str(staging / "model"), python_model=str(_PYFUNC_CODE),
            artifacts={"detector": str(data)}, mlflow_model=mlflow_model,
            signature=signature or infer_signature(detector), input_example=input_example,
            pip_requirements=pip_requirements, extra_pip_requirements=extra_pip_requirements,
            metadata=metadata, model_config={"output": "all", **(model_config or {})})
        for item in (staging / "model").iterdir():  # the model becomes the staged folder
            item.rename(staging / item.name)
        (staging / "model").rmdir()


def log_model(detector, name="model", *, registered_model_name=None, signature=None,
              input_example=None, pip_requirements=None, extra_pip_requirements=None,
              metadata=None, **kwargs):
    """Log a fitted detector as an MLflow model of the active run.

    Like ``mlflow.sklearn.log_model``: it logs into the active run (see
    ``mlflow.start_run``), or ``run_id=...``; the arguments are those of
    :func:`save_model` plus MLflow's (``registered_model_name``, ``params``,
    ``tags``, ``run_id``, ...).

    Parameters
    ----------
    detector : BaseAutoencoderDetector
        A fitted detector.
    name : str, default="model"
        Name of the model.
    registered_model_name : str, default=None
        Also register it under this name in the model registry.
    signature, input_example, pip_requirements, extra_pip_requirements, metadata, model_config
        As in :func:`save_model`.
    **kwargs
        Passed to ``mlflow.models.Model.log``.

    Returns
    -------
    model_info : mlflow.models.model.ModelInfo
        Its ``model_uri`` loads it back with :func:`load_model`.
    """
    from mlflow.models import Model

    return Model.log(artifact_path=None, name=name, flavor=sys.modules[__name__],
                     flavor_name=FLAVOR_NAME,
                     registered_model_name=registered_model_name, detector=detector,
                     signature=signature, input_example=input_example,
                     pip_requirements=pip_requirements,
                     extra_pip_requirements=extra_pip_requirements, metadata=metadata,
                     **kwargs)


def load_model(model_uri, dst_path=None, device=None):
    """Load a detector saved by :func:`save_model` or :func:`log_model`.

    Parameters
    ----------
    model_uri : str
        A local path, ``runs:/<run_id>/<name>``, ``models:/<model_id>``,
        ``models:/<registered name>/<version>``, or any artifact URI.
    dst_path : str, default=None
        Where to download remote models; ``None`` uses a temporary directory.
    device : str or torch.device, default=None
        Where to put the network; ``None``: the fitted device when available, else
        the CPU.

    Returns
    -------
    detector : BaseAutoencoderDetector
        The fitted detector, scoring exactly as the saved one.
    """
    from mlflow.artifacts import download_artifacts
    from mlflow.models import Model

    from .._persistence import load_detector

    local = Path(model_uri)
    if not local.is_dir():
        local = Path(download_artifacts(artifact_uri=str(model_uri), dst_path=dst_path))
    flavors = Model.load(str(local)).flavors
    if FLAVOR_NAME not in flavors:
        raise ValueError(f"The model at {model_uri} has no {FLAVOR_NAME!r} flavor (it has "
                         f"{', '.join(flavors)}); it was not saved by aedetect.tracking.")
    return load_detector(local / flavors[FLAVOR_NAME]["data"], device=device)

