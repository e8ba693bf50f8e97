"""Test configuration shared by every test module."""

import os
import tempfile

# scikit-learn's check_array_api_input runs only with SciPy's array API switch on;
# set it before scipy is imported so the check runs instead of being skipped.
os.environ.setdefault("SCIPY_ARRAY_API", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# Hypothesis caches what it learns about the code in .hypothesis/ under the directory
# pytest starts in; keep it out of the checkout (read lazily, so setting it here works).
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY",
                      tempfile.mkdtemp(prefix="aedetect-hypothesis-"))

import inspect  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

import aedetect  # noqa: E402
from aedetect import _device  # noqa: E402
from aedetect._base import BaseAutoencoderDetector  # noqa: E402

# Property and fuzz tests draw the same examples on every run (CI must not be flaky),
# and keep no example database (nothing is written into the checkout).
settings.register_profile("aedetect", derandomize=True, deadline=None, database=None)
settings.load_profile("aedetect")

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


@pytest.fixture(scope="session", autouse=True)
def _run_outside_the_checkout(tmp_path_factory):
    """Every test runs with a temporary working directory, so nothing a test leaves
    behind (the default MLflow store, saved models, figures) lands in the checkout.
    Session scope: module-scoped fixtures are covered too."""
    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(before)


@pytest.fixture(params=DETECTORS, ids=lambda cls: cls.__name__)
def detector_class(request):
    """Each public detector class in turn."""
    return request.param


_resolve_device = _device.resolve_device


def _cpu_for_auto(device):
    return _resolve_device("cpu" if device == "auto" else device)


@pytest.fixture(scope="session", autouse=True)
def _detectors_on_cpu():
    """Detectors with ``device='auto'`` run on the CPU, where scores are bit-reproducible
    and the measured floors hold, even on a machine with a GPU. Session scope, so the
    module-scoped fixtures that fit detectors are covered too."""
    _device.resolve_device = _cpu_for_auto
    yield
    _device.resolve_device = _resolve_device


@pytest.fixture(autouse=True)
def _auto_device_for_gpu_tests(request, monkeypatch):
    """Tests marked ``gpu`` keep the real ``device='auto'`` (CUDA when present)."""
    if request.node.get_closest_marker("gpu") is not None:
        monkeypatch.setattr(_device, "resolve_device", _resolve_device)
