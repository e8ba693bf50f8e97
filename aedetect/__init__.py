"""aedetect: outlier detection with autoencoders, as scikit-learn estimators."""

from ._training import Callback
from .aae import AAEDetector
from .ae import AEDetector
from .vae import VAEDetector

__version__ = "0.1.0"

__all__ = ["AEDetector", "VAEDetector", "AAEDetector", "Callback"]
