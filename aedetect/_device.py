"""Devices and randomness: where a detector runs and how its random numbers are drawn.

Every random number of a fit comes from generators that the fit owns, seeded from
``random_state``; no global generator of any device is reseeded or left changed:

- the initial weights are drawn by the layers' own initializers, which only use the
  global CPU generator: :func:`build_seeded` runs the construction with that generator
  seeded and restores its state afterwards (under a lock, so two fits in two threads
  never interleave there);
- everything else (shuffling, corruption noise, dropout masks, reparameterization
  noise, prior draws) takes an explicit ``torch.Generator`` on the training device
  (:func:`training_generator`).
"""

import copy
import threading
import warnings

import torch

_BUILD_LOCK = threading.Lock()


def resolve_device(device):
    """``"auto"`` -> cuda, then mps, then cpu; any other string must name an available device."""
    if isinstance(device, str) and device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a valid torch device; use 'auto', 'cpu', 'cuda', "
            "'cuda:N' or 'mps'."
        ) from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was requested but CUDA is not available; "
                             "use device='auto' or 'cpu'.")
        if resolved.index is None:
            resolved = torch.device("cuda", torch.cuda.current_device())
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r} was requested but MPS is not available; "
                         "use device='auto' or 'cpu'.")
    return resolved


def load_device(saved, requested=None):
    """The device to load a fitted detector on: ``requested`` if given, else the one it
    was fitted on when available, else the CPU (with a warning)."""
    if requested is not None:
        return resolve_device(requested)
    try:
        return resolve_device(saved)
    except ValueError:
        warnings.warn(f"This detector was fitted on {saved}, which is not available; it is "
                      "loaded on the CPU.", UserWarning)
        return torch.device("cpu")


def build_seeded(build, seed):
    """``(module, cpu_state)``: ``build()`` run with the global CPU generator seeded
    with ``seed``, and that generator's state right after the construction.

    The global CPU generator is restored afterwards, so the caller's random stream is
    unchanged. Continuing from ``cpu_state`` (see :func:`training_generator`) makes a
    CPU fit draw exactly the numbers it would draw from one seeded stream.
    """
    with _BUILD_LOCK:
        saved = torch.random.get_rng_state()
        try:
            torch.random.default_generator.manual_seed(seed)
            module = build()
            state = torch.random.get_rng_state()
        finally:
            torch.random.set_rng_state(saved)
    return module, state


def training_generator(device, seed, cpu_state):
    """The generator of a fit's random draws on ``device``: on the CPU it continues the
    construction's stream (``cpu_state``); on other devices it is seeded with ``seed``."""
    generator = torch.Generator(device=device)
    if device.type == "cpu":
        generator.set_state(cpu_state)
    else:
        generator.manual_seed(seed)
    return generator


def local_generator(device, random_state):
    """A generator on ``device`` seeded from a scikit-learn ``random_state``."""
    from sklearn.utils import check_random_state

    seed = int(check_random_state(random_state).randint(2**31 - 1))
    return torch.Generator(device=device).manual_seed(seed)


def to_cpu(value):
    """A copy of a module or tensor on the CPU (other values unchanged)."""
    if isinstance(value, torch.nn.Module):
        return copy.deepcopy(value).to("cpu")
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu")
    return value


def to_device(value, device):
    """A module or tensor moved to ``device`` (other values unchanged)."""
    if isinstance(value, (torch.nn.Module, torch.Tensor)):
        return value.to(device)
    return value
