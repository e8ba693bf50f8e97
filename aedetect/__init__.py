"""aedetect: outlier detection with autoencoders, as scikit-learn estimators.

The detectors are imported on first use (``from aedetect import AEDetector``), so
``import aedetect`` alone, and the command line's ``--help``, stay fast: PyTorch and
scikit-learn load only when a detector is needed.
"""

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

__all__ = ["AEDetector", "VAEDetector", "AAEDetector", "EnsembleDetector", "Callback"]

#: Public name -> the module that defines it.
_MODULES = {"AEDetector": ".ae", "VAEDetector": ".vae", "AAEDetector": ".aae",
            "EnsembleDetector": ".ensemble", "Callback": "._training"}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time see __getattr__
    from ._training import Callback
    from .aae import AAEDetector
    from .ae import AEDetector
    from .ensemble import EnsembleDetector
    from .vae import VAEDetector


def __getattr__(name):
    if name not in _MODULES:
        raise AttributeError(f"module 'aedetect' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULES[name], __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted({*globals(), *_MODULES})
