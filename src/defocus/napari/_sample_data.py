"""Sample data for napari: the bundled images as layers with their physical scale and units.

These functions only build napari's layer-data tuples, so they import neither napari nor Qt.
"""

from __future__ import annotations

from typing import Any

from .. import data
from ..io import ImageData

__all__ = ["fib_needle", "layer_scale", "tilted_gravel"]

LayerData = tuple[Any, dict[str, Any], str]


def layer_scale(image: ImageData) -> dict[str, Any]:
    """``scale`` (y, x) and ``units`` of a layer from the image's pixel size, if known.

    Examples
    --------
    >>> img, _ = data.tilted_gravel()
    >>> layer_scale(img)
    {'scale': (10.0, 10.0), 'units': ('nm', 'nm')}
    """
    ps = image.pixel_size
    if ps is None:
        return {}
    return {"scale": (ps.y, ps.x), "units": (ps.unit, ps.unit)}


def tilted_gravel() -> list[LayerData]:
    """The tilted-sample demo image, and its true blur sigma (px) as a hidden layer.

    Examples
    --------
    >>> [(meta["name"], kind) for _, meta, kind in tilted_gravel()]
    [('tilted gravel', 'image'), ('tilted gravel: true sigma (px)', 'image')]
    """
    img, sigma = data.tilted_gravel()
    scale = layer_scale(img)
    return [
        (img.data, {"name": "tilted gravel", **scale}, "image"),
        (
            sigma,
            {
                "name": "tilted gravel: true sigma (px)",
                "colormap": "viridis",
                "visible": False,
                **scale,
            },
            "image",
        ),
    ]


def fib_needle() -> list[LayerData]:
    """A real FIB image: a sharp needle and lamella over a strongly defocused background.

    Examples
    --------
    >>> [(meta["name"], meta["units"]) for _, meta, _ in fib_needle()]
    [('FIB needle', ('nm', 'nm'))]
    """
    img = data.fib_needle()
    return [(img.data, {"name": "FIB needle", **layer_scale(img)}, "image")]
