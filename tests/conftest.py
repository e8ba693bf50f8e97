"""Test configuration shared by every test module."""

import os

# scikit-learn's check_array_api_input runs only with SciPy's array API switch on;
# set it before scipy is imported so the check runs instead of being skipped.
os.environ.setdefault("SCIPY_ARRAY_API", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import inspect  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

import aedetect  # noqa: E402
from aedetect import _base  # noqa: E402
from aedetect._base import BaseAutoencoderDetector  # noqa: E402

# The test networks are tiny: one thread is faster than two and does not oversubscribe
# the CPU when other processes run beside the tests.
torch.set_num_threads(1)


def public_detectors():
    """Every public detector class, discovered from ``aedetect.__all__``."""
    found = []
    for name in aedetect.__all__:
        obj = getattr(aedetect, name)
        if inspect.isclass(obj) and issubclass(obj, BaseAutoencoderDetector):
            found.append(obj)
    return found


DETECTORS = public_detectors()


@pytest.fixture(params=DETECTORS, ids=lambda cls: cls.__name__)
def detector_class(request):
    """Each public detector class in turn."""
    return request.param


_resolve_device = _base.resolve_device


@pytest.fixture(autouse=True)
def _cpu_unless_marked_gpu(request, monkeypatch):
    """Tests run their detectors on the CPU, where scores are bit-reproducible and the
    measured floors hold, even on a machine with a GPU; tests marked ``gpu`` keep
    ``device='auto'`` (CUDA when present) and check what must hold on every device."""
    if request.node.get_closest_marker("gpu") is None:
        monkeypatch.setattr(_base, "resolve_device",
                            lambda device: _resolve_device("cpu" if device == "auto" else device))
