"""The parameters every detector shares, declared once.

Each parameter is one :class:`Parameter`: its name, default and scikit-learn
constraints. A detector lists its own parameters the same way and gets its
``__init__`` from :func:`make_init`: a keyword-only constructor whose signature names
every parameter (scikit-learn's ``get_params`` reads it) and which only stores its
arguments.
"""

import inspect
from dataclasses import dataclass
from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval, StrOptions

from . import networks


class Int(Interval):
    """An int in a range, as ``Interval(Integral, ...)``, but not a bool (``True`` is an
    ``Integral`` in Python, and ``batch_size=True`` is a mistake, not a batch of 1)."""

    def __init__(self, left, right, *, closed):
        super().__init__(Integral, left, right, closed=closed)

    def is_satisfied_by(self, val):
        return not isinstance(val, bool) and super().is_satisfied_by(val)


@dataclass(frozen=True)
class Parameter:
    name: str
    default: object
    constraints: list


SHARED_PARAMETERS = (
    Parameter("hidden_layer_sizes", None, ["array-like", None]),
    Parameter("latent_dim", None, [Int(1, None, closed="left"), None]),
    Parameter("activation", "relu", [StrOptions(set(networks.ACTIVATIONS))]),
    Parameter("dropout", "auto", [Interval(Real, 0, 1, closed="left"), StrOptions({"auto"})]),
    Parameter("batch_norm", "auto", ["boolean", StrOptions({"auto"})]),
    Parameter("architecture", "dense", [StrOptions(set(networks.ARCHITECTURES))]),
    Parameter("conv_channels", (32, 64), [tuple, list]),
    Parameter("image_shape", None, [tuple, list, None]),
    Parameter("scaling", "auto", [StrOptions({"auto", "robust", "standard", "minmax"}), None]),
    Parameter("noise", None, [Interval(Real, 0, None, closed="left"), None]),
    Parameter("noise_type", "gaussian", [StrOptions({"gaussian", "mask"})]),
    Parameter("batch_size", 256, [Int(1, None, closed="left")]),
    Parameter("learning_rate_init", 1e-3, [Interval(Real, 0, None, closed="neither")]),
    Parameter("weight_decay", 0.0, [Interval(Real, 0, None, closed="left")]),
    Parameter("trim_fraction", 0.1, [Interval(Real, 0, 0.5, closed="left")]),
    Parameter("max_iter", 100, [Int(1, None, closed="left")]),
    Parameter("early_stopping", False, ["boolean", StrOptions({"entropy"})]),
    Parameter("validation_fraction", 0.1, [Interval(Real, 0, 1, closed="neither")]),
    Parameter("n_iter_no_change", 10, [Int(1, None, closed="left")]),
    Parameter("tol", 1e-4, [Interval(Real, 0, None, closed="left")]),
    Parameter("contamination", "auto",
              [StrOptions({"auto"}), Interval(Real, 0, 0.5, closed="right")]),
    Parameter("device", "auto", [str, torch.device]),
    Parameter("training_precision", "float32", [StrOptions({"float32", "bfloat16"})]),
    Parameter("torch_compile", False, ["boolean"]),
    Parameter("random_state", None, ["random_state"]),
    Parameter("verbose", 0, ["verbose"]),
    Parameter("callbacks", None, [list, tuple, None]),
)

#: ``n_neighbors`` of the detectors with latent neighbour scores.
N_NEIGHBORS = Parameter("n_neighbors", 5, [Int(1, None, closed="left")])


def constraints(parameters):
    """``_parameter_constraints`` of a detector with ``parameters``."""
    return {parameter.name: parameter.constraints for parameter in parameters}


def make_init(parameters):
    """A keyword-only ``__init__`` that stores each of ``parameters`` unchanged.

    Its ``__signature__`` lists every parameter with its default, so
    ``inspect.signature``, ``help()`` and scikit-learn's ``get_params`` see an
    ordinary constructor.
    """
    names = [parameter.name for parameter in parameters]
    defaults = {parameter.name: parameter.default for parameter in parameters}

    def __init__(self, *args, **kwargs):
        if args:
            raise TypeError(f"{type(self).__name__} takes keyword arguments only, as every "
                            f"scikit-learn estimator: {type(self).__name__}({names[1]}=...), "
                            f"not {type(self).__name__}({args[0]!r}).")
        unknown = sorted(set(kwargs) - set(names))
        if unknown:
            raise TypeError(f"{type(self).__name__}.__init__() got unexpected keyword "
                            f"argument(s) {', '.join(map(repr, unknown))}; its parameters are "
                            f"{', '.join(names)}.")
        for name in names:
            setattr(self, name, kwargs.get(name, defaults[name]))

    self_parameter = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    __init__.__signature__ = inspect.Signature(
        [self_parameter] + [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                              default=defaults[name]) for name in names])
    return __init__


def check_n_samples(n_samples):
    """``n_samples`` of ``sample()`` as an int, or a ValueError naming the problem."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, Integral) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}.")
    return int(n_samples)
