"""One ``nn.Module`` per detector: its training losses, validation loss, score and
fitted calibration (as buffers). See :class:`~aedetect.models.base.DetectorModel` for
the contract the trainer and the estimators rely on."""

from .aae import AdversarialAutoencoder
from .ae import AutoencoderModel
from .base import DetectorModel
from .neighbours import LatentNeighbours
from .vae import VariationalAutoencoder

__all__ = ["AdversarialAutoencoder", "AutoencoderModel", "DetectorModel", "LatentNeighbours",
           "VariationalAutoencoder"]
