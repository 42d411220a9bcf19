"""Sample images shipped with defocus, for the demo, the examples and the tests.

See ``SOURCES.md`` in this folder for where each file comes from and its licence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import ImageData, read_image

__all__ = ["TILTED_GRAVEL", "fib_needle", "sample_path", "tilted_gravel"]

#: How ``tilted_gravel.tif`` was made (see scripts/make_samples.py): the tilt_map parameters of
#: its true sigma map, and the nominal pixel size written into it.
TILTED_GRAVEL = {
    "tilt": {"position": 0.4, "angle": 4.0, "slope": 0.022, "floor": 0.6},
    "pixel_size": "10nm",
}

_HERE = Path(__file__).parent


def sample_path(name: str) -> Path:
    """Return the path of a bundled sample file.

    Examples
    --------
    >>> sample_path("fib_needle.tif").name
    'fib_needle.tif'
    """
    path = _HERE / name
    if not path.is_file():
        available = sorted(p.name for p in _HERE.iterdir() if p.suffix in {".tif", ".png"})
        raise FileNotFoundError(f"no sample {name!r}; available: {', '.join(available)}")
    return path


def fib_needle() -> ImageData:
    """A real FIB image: a sharp needle and lamella over a strongly defocused background.

    1024 x 1536, uint8, pixel size 97.66 nm from its FEI metadata (MIT licence, OpenFIBSEM).

    Examples
    --------
    >>> img = fib_needle()
    >>> img.data.shape, str(img.pixel_size), img.pixel_size_source
    ((1024, 1536), '97.66 nm', 'FEI PixelWidth')
    """
    return read_image(sample_path("fib_needle.tif"))


def tilted_gravel() -> tuple[ImageData, np.ndarray]:
    """A synthetic tilted sample with known blur: the image and its true sigma map (px).

    scikit-image's gravel texture (CC0), blurred by a Gaussian PSF whose sigma follows
    :func:`defocus.synth.tilt_map` (sharp band 40 % down from the top, tilted 4 degrees, sigma
    0.6 to 7.1 px), with SEM-like shot noise; 512 x 512 uint8, nominal pixel size 10 nm.

    Examples
    --------
    >>> img, sigma = tilted_gravel()
    >>> img.data.shape == sigma.shape, round(float(sigma.min()), 1)
    (True, 0.6)
    """
    from ..synth import tilt_map

    img = read_image(sample_path("tilted_gravel.tif"))
    tilt: dict[str, float] = TILTED_GRAVEL["tilt"]  # type: ignore[assignment]
    return img, tilt_map(img.data.shape, **tilt)
