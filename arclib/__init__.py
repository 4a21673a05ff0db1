"""arclib: ArcFace and its family of margin losses, and what the notebook series needs to train and show them."""

from arclib import config, losses
from arclib.head import CosineHead, LinearHead
from arclib.losses import make
from arclib.sparsemax import sparsemax, sparsemax_loss

__version__ = "0.1.0"
__all__ = ["config", "losses", "make", "CosineHead", "LinearHead", "sparsemax", "sparsemax_loss", "__version__"]
