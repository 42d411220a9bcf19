"""Sample images shipped with defocus, for the demo, the examples and the tests.

See ``SOURCES.md`` in this folder for where each file comes from and its licence.
"""

from __future__ import annotations

from pathlib import Path

from ..io import ImageData, read_image

__all__ = ["fib_needle", "sample_path"]

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
