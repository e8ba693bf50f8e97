"""A model's training step compiled with ``torch.compile`` (``torch_compile=True``).

On the small networks of tabular detectors a training step costs the fixed overhead
of its small kernels far more than arithmetic (AEDetector's step at batch 32: 85 ATen
calls, about 450 us on one CPU thread). Compiled, the whole step (forward, loss,
backward and every Adam update of every phase) is one graph whose fused kernels are
called from C++: about 3x fewer microseconds per step at batch 32, 2x at 256
(``benchmarks/results/step_overhead.md``).

The step is written as a function of tensors (:meth:`DetectorModel.functional_step`):
gradients come from ``torch.func.grad`` instead of ``backward``, and :func:`descend`
applies Adam's update itself to the optimizer's own state tensors, so an eager step
(or a later ``partial_fit`` without compilation) continues from a compiled one.
Random draws come from a :class:`~aedetect.networks.StepNoise`: the first step of
each shape runs eagerly and counts its draws; later steps of that shape get them
drawn from the fit's generator before the compiled call. One input shape is
compiled per fit (the batch size); a step of another shape (the epoch's last, short
batch) runs the model's ``training_step``, on the same optimizer state.

Tested with torch 2.13 on the CPU; older than 2.9 is refused (the guard filters this
uses are newer).
"""

import hashlib
import math
import sys
import types

import torch
from torch import nn

from .. import networks

#: The oldest torch whose compiler :class:`CompiledStep` uses.
MIN_TORCH = (2, 9)

#: Options of ``torch.compile``: one graph; a C++ wrapper calls the kernels (about 30 us
#: less per step than inductor's Python wrapper) without re-checking the sizes and
#: alignment of its inputs (dynamo's guards have: about 9 us); no guards on globals (about
#: 15 us), which :func:`compiled_function` keys instead. Not ``dynamic=False``, which
#: costs 4 us a call: each copy of :func:`run_step` only ever sees one shape.
COMPILE_OPTIONS = {"fullgraph": True,
                   "options": {"cpp_wrapper": True, "size_asserts": False,
                               "alignment_asserts": False, "scalar_asserts": False,
                               "guard_filter_fn": getattr(torch.compiler,
                                                          "skip_guard_on_globals_unsafe", None)}}

#: The compiled copies of :func:`run_step`, by :func:`compile_key`.
_COMPILED = {}


def compiled_function(key):
    """The compiled copy of :func:`run_step` for ``key`` (see :func:`compile_key`),
    created once per process. Each copy has a code object, hence a dynamo cache, of its
    own: a later fit of a model of the same structure, on batches of the same shape,
    finds its graph already compiled, and a copy never sees a second shape (which
    would make dynamo recompile it for dynamic shapes, slower here)."""
    function = _COMPILED.get(key)
    if function is None:
        # dynamo remembers the shapes a function saw by its file, line and name, and
        # compiles for dynamic shapes once they vary: a name of its own per structure
        # and shape (stable across processes, whose shapes it also remembers on disk)
        name = "run_step_" + hashlib.sha1(repr(key[:3]).encode()).hexdigest()[:16]
        code = run_step.__code__.replace(co_name=name)
        copy = types.FunctionType(code, run_step.__globals__, name)
        function = _COMPILED[key] = torch.compile(copy, **COMPILE_OPTIONS)
    return function


def compile_key(model, step_key):
    """What a compiled step depends on that its guards do not check: ``step_key`` (the
    shapes and the precision of the step), the model's structure (its ``repr``, which
    spreads models over copies so that none reaches dynamo's recompile limit) and the
    module-level names of aedetect and of the model's classes (a monkeypatched function
    or constant gets a step of its own; dynamo's guards on globals are off)."""
    names = {name for name in sys.modules if name.startswith("aedetect.models.")}
    names |= {"aedetect.losses", "aedetect.networks", "aedetect.priors"}
    names |= {cls.__module__ for module in model.modules() for cls in type(module).__mro__
              if cls.__module__.partition(".")[0] not in ("torch", "builtins")}
    snapshot = tuple((name, tuple((key, id(value)) for key, value in vars(module).items()
                                  if not key.startswith("__")  # dynamo adds some
                                  and _is_code_or_constant(value)))
                     for name, module in sorted((name, sys.modules.get(name))
                                                for name in names) if module is not None)
    return step_key, type(model), repr(model), snapshot


def _is_code_or_constant(value):
    return (value is None or isinstance(value, (bool, int, float, str, tuple, type,
                                                types.FunctionType, types.ModuleType)))


def run_step(model, inputs, target, y, noise, adam, draws):
    """One training step of ``model``: its ``functional_step`` without autograd
    recording (``torch.func.grad`` records what it needs); returns the losses."""
    with torch.no_grad():
        return model.functional_step(inputs, target, y, noise, adam, draws)


class AdamState:
    """One ``torch.optim.Adam`` as tensors for :func:`descend`: the names of its
    parameters in the model, their state (``step``, ``exp_avg``, ``exp_avg_sq``, the
    optimizer's own tensors, created as Adam creates them when it has none) and its
    hyperparameters, and the module :func:`descend` calls. Raises ``ValueError`` for
    anything but a plain Adam."""

    def __init__(self, model, optimizer, name):
        if type(optimizer) is not torch.optim.Adam or len(optimizer.param_groups) != 1:
            raise ValueError(
                f"torch_compile=True compiles Adam steps only; the {name!r} optimizer of "
                f"{type(model).__name__} is {type(optimizer).__name__} with "
                f"{len(optimizer.param_groups)} parameter group(s). Use torch_compile=False.")
        group = optimizer.param_groups[0]
        unusual = [key for key in ("amsgrad", "maximize", "decoupled_weight_decay",
                                   "differentiable", "capturable") if group.get(key)]
        if unusual:
            raise ValueError(f"torch_compile=True compiles plain Adam steps only; the {name!r} "
                             f"optimizer sets {', '.join(unusual)}. Use torch_compile=False.")
        names = {parameter: key for key, parameter in model.named_parameters()}
        self.names = [f"model.{names[parameter]}" for parameter in group["params"]]
        self.parameters = list(group["params"])
        self.buffers = {f"model.{key}": buffer for key, buffer in model.named_buffers()}
        self.lr, self.eps = float(group["lr"]), float(group["eps"])
        self.beta1, self.beta2 = (float(beta) for beta in group["betas"])
        self.weight_decay = float(group["weight_decay"])
        self.states = [_adam_state(optimizer, parameter) for parameter in group["params"]]
        self.wrapper = _Objective(model)  # built here: a module built in a graph breaks it


def _adam_state(optimizer, parameter):
    state = optimizer.state[parameter]
    if not state:
        state["step"] = torch.zeros((), dtype=torch.float32, device=parameter.device)
        state["exp_avg"] = torch.zeros_like(parameter, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(parameter, memory_format=torch.preserve_format)
    elif state["step"].device != parameter.device:
        state["step"] = state["step"].to(parameter.device)
    return state["step"], state["exp_avg"], state["exp_avg_sq"]


def descend(model, adam, objective):
    """One Adam step of the parameters of ``adam`` (an :class:`AdamState`) on
    ``objective()``, which returns ``(loss, aux)``; returns ``aux``.

    ``objective`` runs with those parameters and every buffer of ``model`` swapped for
    the inputs of ``torch.func.grad`` (buffers too, so batch norm can update its
    running statistics in place); the update is Adam's (L2 ``weight_decay`` added to
    the gradient, bias-corrected moments), applied in place."""
    def loss_of(values, buffers):
        return torch.func.functional_call(adam.wrapper, {**dict(zip(adam.names, values)),
                                                         **buffers}, (objective,),
                                          tie_weights=False)

    gradients, aux = torch.func.grad(loss_of, has_aux=True)(adam.parameters, adam.buffers)
    steps = [step for step, _, _ in adam.states]
    for step in steps:
        step.add_(1)
    corrections = _bias_corrections(adam, steps)
    for i, (parameter, gradient, (_, exp_avg, exp_avg_sq)) in enumerate(
            zip(adam.parameters, gradients, adam.states)):
        if adam.weight_decay:
            gradient = gradient + adam.weight_decay * parameter
        exp_avg.lerp_(gradient, 1 - adam.beta1)
        exp_avg_sq.mul_(adam.beta2).addcmul_(gradient, gradient, value=1 - adam.beta2)
        denominator = (exp_avg_sq.sqrt() / corrections[i, 1]).add_(adam.eps)
        parameter.sub_(corrections[i, 0] * exp_avg / denominator)
    return aux


def _bias_corrections(adam, steps):
    """Per parameter, ``lr / (1 - beta1**step)`` and ``sqrt(1 - beta2**step)``: a float32
    tensor of shape ``(len(steps), 2)``, computed in float64 as torch's fused Adam
    computes them.

    All in one expression that holds an ``exp`` and is read by every update, so that
    inductor stores it in one buffer, computed once per step (it stores a reused value
    that needs an ``exp`` on the CPU): as ``beta ** step`` inlined into each update's
    loop, two scalar ``pow`` ran once per 16 values, 22 us of the VAE pair's 230 us step
    at batch 32 (``benchmarks/results/step_overhead.md``)."""
    t = torch.stack(steps).double()
    return torch.stack([adam.lr / (1 - torch.exp(t * math.log(adam.beta1))),
                        (1 - torch.exp(t * math.log(adam.beta2))).sqrt()], dim=1).float()


class _Objective(nn.Module):
    """Calls a function of ``model`` under ``functional_call`` (which calls ``forward``)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, objective):
        return objective()


def input_gradient(function, inputs):
    """``(function(inputs), d function(inputs).sum() / d inputs)`` with ``torch.func``
    (differentiable again: an outer :func:`descend` can take its gradient)."""
    outputs, pullback = torch.func.vjp(function, inputs)
    (gradient,) = pullback(torch.ones_like(outputs))
    return outputs, gradient


class CompiledStep:
    """``training_step`` of ``model`` with ``optimizers``, compiled (see the module).

    Called like ``model.training_step(inputs, target, y, optimizers, generator)``: the
    first step of each shape of ``(inputs, y)`` runs eagerly and counts its draws; the
    steps of the first shape that comes again run compiled; those of any other shape
    (an epoch's last, shorter batch) run ``training_step`` itself (on the same
    optimizer state; faster than the functional step uncompiled). Raises
    ``ValueError`` when the model's step has no functional form (a model that
    overrides ``training_step`` but not ``functional_step``) or an optimizer is not a
    plain Adam.
    """

    def __init__(self, model, optimizers):
        from .base import DetectorModel

        version = tuple(int(part) for part in torch.__version__.split(".")[:2])
        if version < MIN_TORCH:
            raise ValueError(f"torch_compile=True needs torch {'.'.join(map(str, MIN_TORCH))} "
                             f"or later; this is torch {torch.__version__}. Upgrade torch or "
                             "use torch_compile=False.")
        cls = type(model)
        if (cls.training_step is not DetectorModel.training_step
                and cls.functional_step is DetectorModel.functional_step):
            raise ValueError(f"torch_compile=True needs the training step as a function "
                             f"of tensors: {cls.__name__} overrides training_step but not "
                             "functional_step. Use torch_compile=False.")
        self.model = model
        self.adam = {name: AdamState(model, optimizer, name)
                     for name, optimizer in optimizers.items()}
        self._dropouts = [layer for layer in model.modules()
                          if isinstance(layer, networks.Dropout)]
        self._sizes, self._compiled_key, self._compiled = {}, None, None

    def __call__(self, inputs, target, y, optimizers, generator):
        device = inputs.device.type
        key = (tuple(inputs.shape), inputs.dtype, None if y is None else tuple(y.shape),
               torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device),
               torch.is_grad_enabled(), torch.get_num_threads())
        sizes = self._sizes.get(key)
        if sizes is not None and self._compiled_key not in (None, key):
            # another shape (the epoch's last batch): torch's own step, on the same state
            return self.model.training_step(inputs, target, y, optimizers, generator)
        draws = self.model.step_draws(inputs.shape[0], generator)
        compiled = sizes is not None
        if compiled:
            if self._compiled_key is None:
                self._compiled_key = key
                self._compiled = compiled_function(compile_key(self.model, key))
            noise = networks.StepNoise(pools=networks.StepNoise.draw_pools(
                sizes, generator, inputs.device))
        else:
            noise = networks.StepNoise(generator=generator)
        for layer in self._dropouts:  # not nn.Module's __setattr__: 1 us less per layer
            object.__setattr__(layer, "generator", noise)
        try:
            step = self._compiled if compiled else run_step
            losses = step(self.model, inputs, target, y, noise, self.adam, draws)
        except Exception as exc:
            if compiled and _compiler_error(exc):
                raise RuntimeError(
                    f"torch_compile=True could not compile the training step of "
                    f"{type(self.model).__name__} ({type(exc).__name__}: "
                    f"{str(exc).strip()[:500]}). Use torch_compile=False; on the CPU, "
                    "torch.compile needs a C++ compiler.") from exc
            raise
        finally:
            for layer in self._dropouts:
                object.__setattr__(layer, "generator", generator)
        self._sizes.setdefault(key, dict(noise.sizes))
        return losses


def _compiler_error(exc):
    """Whether ``exc`` comes from dynamo or inductor (not from the step's own code)."""
    return type(exc).__module__.startswith(("torch._dynamo", "torch._inductor"))
