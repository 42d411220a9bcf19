"""Physical pixel sizes: the :class:`PixelSize` type, its parser and the length units."""

from __future__ import annotations

import numbers
import re
from dataclasses import dataclass

import numpy as np

from .._errors import BadInputError

__all__ = ["NGFF_UNITS", "PIXEL_SIZE_RANGE", "PixelSize", "as_pixel_size", "parse_pixel_size"]

#: Pixel sizes accepted, in metres: 1 fm to 1 km. Outside, a number or unit is wrong, and
#: later arithmetic (resolution tags, scale bars) would overflow.
PIXEL_SIZE_RANGE = (1e-15, 1e3)


# Length units, in metres. Aliases cover what ImageJ, OME and users write.
_UNITS: dict[str, float] = {
    "m": 1.0,
    "cm": 1e-2,
    "mm": 1e-3,
    "µm": 1e-6,
    "nm": 1e-9,
    "pm": 1e-12,
    "Å": 1e-10,
}
_UNIT_ALIASES = {
    "meter": "m",
    "metre": "m",
    "centimeter": "cm",
    "centimetre": "cm",
    "millimeter": "mm",
    "millimetre": "mm",
    "um": "µm",
    "μm": "µm",  # Greek mu
    "micron": "µm",
    "microns": "µm",
    "micrometer": "µm",
    "micrometre": "µm",
    "\\u00B5m": "µm",  # as ImageJ escapes it
    "nanometer": "nm",
    "nanometre": "nm",
    "picometer": "pm",
    "angstrom": "Å",
    "A": "Å",
}


def _canonical_unit(unit: str) -> str:
    unit = unit.strip()
    unit = _UNIT_ALIASES.get(unit, _UNIT_ALIASES.get(unit.lower(), unit))
    if unit not in _UNITS:
        raise BadInputError(
            f"unknown length unit {unit!r}; use one of {', '.join(_UNITS)} (or um for µm)"
        )
    return unit


@dataclass(frozen=True)
class PixelSize:
    """Physical size of one pixel along x (columns) and y (rows), in ``unit``.

    Examples
    --------
    >>> p = PixelSize(97.66, 97.66, "nm")
    >>> p.to("µm")
    PixelSize(x=0.09766, y=0.09766, unit='µm')
    >>> str(p)
    '97.66 nm'
    """

    x: float
    y: float
    unit: str = "µm"

    def __post_init__(self) -> None:
        object.__setattr__(self, "unit", _canonical_unit(self.unit))
        for v in (self.x, self.y):
            if not (np.isfinite(v) and v > 0):
                raise BadInputError(f"pixel size must be a positive number, got {v!r}")
            if not PIXEL_SIZE_RANGE[0] <= v * _UNITS[self.unit] <= PIXEL_SIZE_RANGE[1]:
                raise BadInputError(
                    f"pixel size {v:g} {self.unit} is outside 1 fm..1 km; check the number "
                    "and its unit"
                )

    def to(self, unit: str) -> PixelSize:
        """Return the same size expressed in another length unit."""
        unit = _canonical_unit(unit)
        f = _UNITS[self.unit] / _UNITS[unit]
        return PixelSize(float(f"{self.x * f:.12g}"), float(f"{self.y * f:.12g}"), unit)

    @property
    def metres(self) -> tuple[float, float]:
        """(x, y) in metres."""
        f = _UNITS[self.unit]
        return self.x * f, self.y * f

    def readable(self) -> PixelSize:
        """The same size in the unit that gives a value between 1 and 1000 where possible."""
        x_m = self.metres[0]
        for unit in ("m", "mm", "µm", "nm", "pm"):
            if x_m / _UNITS[unit] >= 1:
                return self.to(unit)
        return self.to("pm")

    def __str__(self) -> str:
        if np.isclose(self.x, self.y, rtol=1e-6):
            return f"{self.x:.4g} {self.unit}"
        return f"{self.x:.4g} x {self.y:.4g} {self.unit}"


_PIXEL_SIZE_RE = re.compile(
    r"^\s*(?P<x>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
    r"(?:\s*[x×,]\s*(?P<y>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?))?"
    r"\s*(?P<unit>[^\s0-9.][^\s]*)\s*$"
)


def parse_pixel_size(text: str | float | PixelSize | None) -> PixelSize | None:
    """Parse a pixel size such as ``"2.5nm"``, ``"0.1 um"`` or ``"0.2x0.25µm"``.

    A unit is required: a bare number is ambiguous between nm, µm and mm. ``None`` passes through.

    Examples
    --------
    >>> parse_pixel_size("2.5nm")
    PixelSize(x=2.5, y=2.5, unit='nm')
    >>> parse_pixel_size("0.2x0.25 um")
    PixelSize(x=0.2, y=0.25, unit='µm')
    >>> parse_pixel_size("3")
    Traceback (most recent call last):
    ...
    defocus._errors.BadInputError: pixel size '3' needs a unit, for example '3nm' or '3um'
    """
    if text is None or isinstance(text, PixelSize):
        return text
    if isinstance(text, int | float):
        raise BadInputError(f"pixel size {text!r} needs a unit, for example '{text}nm'")
    m = _PIXEL_SIZE_RE.match(str(text))
    if m is None:
        if re.fullmatch(r"\s*[0-9.eE+-]+\s*", str(text)):
            raise BadInputError(
                f"pixel size {text!r} needs a unit, for example '{text}nm' or '{text}um'"
            )
        raise BadInputError(f"cannot read pixel size {text!r}; write it like '2.5nm' or '0.1um'")
    x = float(m["x"])
    y = float(m["y"]) if m["y"] else x
    return PixelSize(x, y, m["unit"])


def as_pixel_size(value: float | PixelSize | None) -> PixelSize | None:
    """The ``pixel_size`` argument of the analysis functions: metres per pixel or a PixelSize.

    A bare number is metres per pixel, as in :func:`defocus.blur_map`; text is refused here
    (parse it with :func:`parse_pixel_size`, which needs its unit), so that the in-memory and
    the tiled paths read the same argument the same way.

    Examples
    --------
    >>> as_pixel_size(2e-9)
    PixelSize(x=2e-09, y=2e-09, unit='m')
    >>> as_pixel_size("5nm")
    Traceback (most recent call last):
    ...
    defocus._errors.BadInputError: pixel_size must be metres per pixel or a PixelSize, got '5nm'
    """
    if value is None or isinstance(value, PixelSize):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise BadInputError(f"pixel_size must be metres per pixel or a PixelSize, got {value!r}")
    return PixelSize(float(value), float(value), "m")


#: NGFF axis units (UDUNITS-2 names) of our length units.
NGFF_UNITS = {
    "m": "meter",
    "cm": "centimeter",
    "mm": "millimeter",
    "µm": "micrometer",
    "nm": "nanometer",
    "pm": "picometer",
    "Å": "angstrom",
}
