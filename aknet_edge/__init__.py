"""aknet_edge: AK-Net (Action Keypoint Network) from PyTorch to edge GPUs.

This top-level package imports neither torch nor TensorRT, so that
``aknet_edge.runtime`` stays usable on devices that carry neither. The
PyTorch model lives in :mod:`aknet_edge.model` and is imported on demand.
"""

from __future__ import annotations

import logging

from .errors import AknetError

__all__ = ["AknetError", "__version__"]
__version__ = "0.3.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
