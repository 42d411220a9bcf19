"""defocus: measure, model and undo blur in images.

The primary unit of blur everywhere is **sigma in pixels**: the per-axis standard deviation of
the local point-spread function (for a uniform disk of radius R, sigma = R / 2).

Examples
--------
>>> import defocus
>>> from skimage import data
>>> fmap = defocus.focus_map(data.camera())
>>> fmap.shape, fmap.dtype
((512, 512), dtype('float32'))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import BadInputError

if TYPE_CHECKING:  # static analysers see the eager imports; at run time they load lazily
    from .blurmap import BlurMap, blur_map
    from .focalplane import FocalPlane, focal_plane, region_stats
    from .focus import (
        DEFAULT_MEASURE,
        MEASURES,
        focus_map,
        focus_profile,
        focus_score,
        focus_threshold,
        get_measure,
        in_focus_mask,
        list_measures,
        sharpest_band,
        tile_grid,
    )
    from .io import PixelSize, read_image, write_image, write_map
    from .kernel import Identification, Kernel, PSFFit, estimate_kernel, fit_psf, identify
    from .psf import MODELS, moments, otf, render, sigma_of
    from .restore import deblur, deblur_varying
    from .stack import StackResult, fuse
    from .synth import blur, blur_varying, depth_to_sigma, tilt_map
    from .zseries import HeightMap, ThroughFocus, blur_growth, height_map, through_focus

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MEASURE",
    "MEASURES",
    "MODELS",
    "BadInputError",
    "BlurMap",
    "FocalPlane",
    "HeightMap",
    "Identification",
    "Kernel",
    "PSFFit",
    "PixelSize",
    "StackResult",
    "ThroughFocus",
    "__version__",
    "blur",
    "blur_growth",
    "blur_map",
    "blur_varying",
    "deblur",
    "deblur_varying",
    "depth_to_sigma",
    "estimate_kernel",
    "fit_psf",
    "focal_plane",
    "focus_map",
    "focus_profile",
    "focus_score",
    "focus_threshold",
    "fuse",
    "get_measure",
    "height_map",
    "identify",
    "in_focus_mask",
    "list_measures",
    "moments",
    "otf",
    "read_image",
    "region_stats",
    "render",
    "sharpest_band",
    "sigma_of",
    "through_focus",
    "tile_grid",
    "tilt_map",
    "write_image",
    "write_map",
]

# Public name -> submodule that defines it. Submodules load on first use, so that
# ``import defocus`` stays cheap and scipy's heavy parts and matplotlib load only where needed.
_LAZY = {
    "blurmap": ("BlurMap", "blur_map"),
    "focalplane": ("FocalPlane", "focal_plane", "region_stats"),
    "focus": (
        "DEFAULT_MEASURE",
        "MEASURES",
        "focus_map",
        "focus_profile",
        "focus_score",
        "focus_threshold",
        "get_measure",
        "in_focus_mask",
        "list_measures",
        "sharpest_band",
        "tile_grid",
    ),
    "io": ("PixelSize", "read_image", "write_image", "write_map"),
    "kernel": ("Identification", "Kernel", "PSFFit", "estimate_kernel", "fit_psf", "identify"),
    "psf": ("MODELS", "moments", "otf", "render", "sigma_of"),
    "restore": ("deblur", "deblur_varying"),
    "stack": ("StackResult", "fuse"),
    "synth": ("blur", "blur_varying", "depth_to_sigma", "tilt_map"),
    "zseries": ("HeightMap", "ThroughFocus", "blur_growth", "height_map", "through_focus"),
}
_SOURCE = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str) -> Any:
    if name not in _SOURCE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_SOURCE[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
