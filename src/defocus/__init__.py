"""defocus: measure, model and undo blur in images.

The primary unit of blur everywhere is **sigma in pixels**: the per-axis standard deviation of
the local point-spread function (for a uniform disk of radius R, sigma = R / 2).
"""

from __future__ import annotations

from ._errors import BadInputError

__version__ = "0.1.0"

__all__ = ["BadInputError", "__version__"]
