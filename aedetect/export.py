"""Export a fitted detector's scorer: raw rows in, ``score_samples`` out.

Two formats, one graph:

* :func:`to_exported_program` -- a :class:`torch.export.ExportedProgram` (save it with
  :func:`torch.export.save`, run it anywhere torch runs with
  ``torch.export.load(path).module()(x)``).
* :func:`to_onnx` -- an ONNX file for ONNX Runtime or any other ONNX backend
  (needs ``pip install 'aedetect[onnx]'``: ``onnx``, ``onnxscript``, ``onnxruntime``).

Both take rows of shape ``(n_samples, n_features_in_)`` (or, with ``images=True``,
images of shape ``(n_samples, *input_shape_)``) with ``n_samples`` dynamic, apply the
detector's scaling ``(X - center_) / scale_``, reshape to ``(n_samples,
*input_shape_)`` and return ``module_.score(scaled, score_type)``, a float32 vector of
shape ``(n_samples,)``: the fitted scorer is the scaling plus the model's
``state_dict``, calibration included, so the exported graph scores exactly like
``score_samples`` (up to float32 rounding).

The ONNX file is made from the ExportedProgram (``torch.onnx.export(program,
dynamo=True)``), not from the module: ``torch.export.export`` raises when the scorer's
code cannot keep the batch dynamic (a ``split`` into fixed-size chunks, a branch on
``x.shape[0]``), where ``torch.onnx.export(module, dynamo=True)`` would instead silently
fix the batch to the example's size or bake in the branch it took.
"""

import contextlib
import copy
import importlib
import logging
import warnings

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from torch import nn

__all__ = ["to_exported_program", "to_onnx"]

#: Name of the dynamic first dimension, in the ExportedProgram and the ONNX file.
BATCH_DIM = "n_samples"
#: Names of the ONNX graph's input and output.
INPUT_NAME, OUTPUT_NAME = "X", "scores"
#: Rows of the example input traced by ``torch.export`` (any value >= 2 works: torch
#: specializes sizes 0 and 1, so the example must not be one of them).
EXAMPLE_ROWS = 8

_INPUT_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class DetectorScorer(nn.Module):
    """``score_samples`` of a fitted detector as a module: raw rows -> float32 scores.

    Parameters
    ----------
    model : nn.Module
        The detector's network, with ``score(x, score_type)`` taking scaled float32
        tensors shaped ``(n, *input_shape)`` and returning ``(n,)`` scores.
    center, scale : ndarray of shape (n_features,)
        The detector's scaling; stored as buffers of ``input_dtype``.
    input_shape : tuple of int
        Shape of one sample as the model sees it.
    score_type : str
        Passed to ``model.score``.
    input_dtype : {'float32', 'float64'}, default='float32'
        Dtype of the rows the scorer takes. With ``'float64'`` the scaling is done in
        float64 and rounded to float32 afterwards, exactly as the detector does it, so
        the model sees the same float32 input as in ``score_samples`` (with
        ``'float32'`` rows whose values are large next to their spread lose digits in
        ``X - center``).
    """

    def __init__(self, model, center, scale, input_shape, score_type, input_dtype="float32"):
        super().__init__()
        dtype = _INPUT_DTYPES[input_dtype]
        self.model = model
        self.input_shape = tuple(int(side) for side in input_shape)
        self.score_type = score_type
        self.register_buffer("center", torch.as_tensor(np.asarray(center), dtype=dtype))
        self.register_buffer("scale", torch.as_tensor(np.asarray(scale), dtype=dtype))

    def forward(self, x):
        rows = x.reshape(x.shape[0], -1)  # images arrive as (n, C, H, W)
        scaled = ((rows - self.center) / self.scale).to(torch.float32)
        return self.model.score(scaled.reshape(-1, *self.input_shape), self.score_type)


def to_exported_program(detector, path=None, *, input_dtype="float32", images=False):
    """Export ``detector.score_samples`` with :func:`torch.export.export`.

    Parameters
    ----------
    detector : fitted detector
        Needs ``module_`` (with ``score(x, score_type)``), ``center_``, ``scale_``,
        ``input_shape_``, ``n_features_in_`` and ``score_type``.
    path : str or path-like, optional
        Also save the program there with :func:`torch.export.save` (a ``.pt2`` file;
        load it with ``torch.export.load(path).module()``).
    input_dtype : {'float32', 'float64'}, default='float32'
        Dtype of the rows the program takes (see :class:`DetectorScorer`).
    images : bool, default=False
        Take images of shape ``(n_samples, *input_shape_)`` instead of rows (for
        detectors fitted on images: ``input_shape_`` is ``(channels, height, width)``).

    Returns
    -------
    program : torch.export.ExportedProgram
        On the CPU, in eval mode, taking a tensor of shape ``(n_samples,
        n_features_in_)`` for any ``n_samples >= 1`` and returning float32 scores of
        shape ``(n_samples,)``. It holds a copy of the weights: refitting the detector
        does not change it.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the detector is not fitted.
    ValueError
        If ``input_dtype`` is not one of the choices.
    torch.export.UserError (subclass of RuntimeError)
        If the model's ``score`` depends on the number of rows in a way that cannot
        be exported (chunking with ``split``, a branch on ``x.shape[0]``).
    """
    scorer = _scorer(detector, input_dtype)
    sample_shape = tuple(detector.input_shape_) if images else (detector.n_features_in_,)
    example = torch.zeros(EXAMPLE_ROWS, *sample_shape, dtype=_INPUT_DTYPES[input_dtype])
    batch = torch.export.Dim(BATCH_DIM, min=1)
    with _quiet_export():
        program = torch.export.export(scorer, (example,), dynamic_shapes={"x": {0: batch}})
    if path is not None:
        torch.export.save(program, path)
    return program


def to_onnx(detector, path, *, input_dtype="float32", images=False, opset_version=None):
    """Write ``detector.score_samples`` as an ONNX model to ``path``.

    The graph has one input ``"X"`` of shape ``(n_samples, n_features_in_)`` (or
    ``(n_samples, *input_shape_)`` with ``images=True``) and one
    output ``"scores"`` of shape ``(n_samples,)``, float32; ``n_samples`` is dynamic.
    Run it with ONNX Runtime::

        session = onnxruntime.InferenceSession(path)
        scores = session.run(None, {"X": X.astype(np.float32)})[0]

    ``torch.cdist`` (latent neighbour scores) has no ONNX translation for
    ``compute_mode="donot_use_mm_for_euclid_dist"``; it is written as the explicit
    difference ``sqrt(((a[:, None] - b[None]) ** 2).sum(-1))``, which matches it to
    float32 rounding but makes ONNX Runtime hold an ``(n_samples, n_reference,
    latent_dim)`` array: score large inputs in batches.

    Parameters
    ----------
    detector : fitted detector
        As for :func:`to_exported_program`.
    path : str or path-like
        Destination ``.onnx`` file (weights included: one self-contained file).
    input_dtype : {'float32', 'float64'}, default='float32'
        Dtype of the input ``"X"`` (see :class:`DetectorScorer`).
    images : bool, default=False
        Take images instead of rows (see :func:`to_exported_program`).
    opset_version : int, optional
        ONNX opset to target; default: the exporter's recommended one.

    Returns
    -------
    path : str or path-like
        ``path``, for chaining.

    Raises
    ------
    ImportError
        If ``onnx`` or ``onnxscript`` is missing (``pip install 'aedetect[onnx]'``).
    sklearn.exceptions.NotFittedError
        If the detector is not fitted.
    torch.export.UserError (subclass of RuntimeError)
        If the scorer cannot be exported with a dynamic batch (see
        :func:`to_exported_program`).
    """
    _require("onnx", "onnxscript")
    program = to_exported_program(detector, input_dtype=input_dtype, images=images)
    with _quiet_export():
        program = program.run_decompositions(_onnx_decompositions())
        onnx_program = torch.onnx.export(
            program, dynamo=True, verbose=False, opset_version=opset_version,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            # Only names the batch axis: the program already fixes which axes are dynamic
            # (the ONNX graph would otherwise call it "s77" or similar).
            dynamic_shapes={"x": {0: BATCH_DIM}})
    onnx_program.save(str(path))
    return path


# ----------------------------------------------------------------- helpers
def _scorer(detector, input_dtype):
    """A CPU, eval-mode :class:`DetectorScorer` on a copy of ``detector.module_``."""
    if hasattr(detector, "estimators_") and hasattr(detector, "centers_"):
        raise ValueError(
            "An EnsembleDetector is not one network: export each member "
            "(ensemble.estimators_[i]) and combine their scores as score_samples does, "
            "(score - centers_[i]) / scales_[i] averaged; or serve the ensemble through "
            "its MLflow model (aedetect.tracking.log_model).")
    if getattr(detector, "module_", None) is None:
        raise NotFittedError(
            f"This {type(detector).__name__} instance is not fitted yet. Call 'fit' with "
            "appropriate arguments before exporting it.")
    if input_dtype not in _INPUT_DTYPES:
        raise ValueError(f"input_dtype must be one of {sorted(_INPUT_DTYPES)}, got {input_dtype!r}.")
    model = copy.deepcopy(detector.module_).to("cpu").eval().requires_grad_(False)
    return DetectorScorer(model, detector.center_, detector.scale_, detector.input_shape_,
                          detector.score_type, input_dtype).eval()


def _require(*modules):
    """Import ``modules`` or raise an ImportError naming the extra that installs them."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise ImportError(
                f"Exporting to ONNX needs the '{name}' package: pip install 'aedetect[onnx]'"
            ) from error


def _cdist_explicit(x1, x2, p=2.0, compute_mode=None):
    """``aten._cdist_forward`` as broadcast differences (ONNX has no translation for
    ``compute_mode="donot_use_mm_for_euclid_dist"``)."""
    diff = x1.unsqueeze(-2) - x2.unsqueeze(-3)
    if p == 2.0:
        return diff.pow(2).sum(-1).sqrt()
    if p == 1.0:
        return diff.abs().sum(-1)
    if p == float("inf"):
        return diff.abs().amax(-1)
    return diff.abs().pow(p).sum(-1).pow(1.0 / p)


def _onnx_decompositions():
    table = torch.export.default_decompositions()
    table[torch.ops.aten._cdist_forward.default] = _cdist_explicit
    return table


@contextlib.contextmanager
def _quiet_export():
    """Silence the exporter's noise that says nothing about the model (torch 2.13):

    * ``FutureWarning: isinstance(treespec, LeafSpec) is deprecated`` from torch's own
      pytree code (``run_decompositions``, ``torch.onnx.export``);
    * WARNING log lines ``torchvision is not installed. Skipping torchvision::nms``
      (and roi_align, roi_pool, deform_conv2d) from the ONNX op registry.
    """
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)",
                                    category=FutureWarning)
            yield
    finally:
        logger.setLevel(level)
