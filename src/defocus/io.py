"""Read and write images with their pixel size; every write is atomic.

Reading keeps the original array untouched (dtype, range, channels) for output, and derives a
float32 luminance image for analysis. The physical pixel size is taken from file metadata in the
order DESIGN.md gives, unless the caller overrides it:

1. OME-XML ``PhysicalSizeX/Y``;
2. FEI/Thermo Fisher SEM ``[Scan] PixelWidth/PixelHeight``;
3. Zeiss SEM ``CZ_SEM`` ``AP_IMAGE_PIXEL_SIZE``;
4. ImageJ ``unit`` with the TIFF resolution;
5. the plain TIFF resolution tags (only when they carry a real unit and are not the writer's
   1-per-unit default).

Writers never leave a partial file: they write to a hidden temporary file in the destination
folder and rename it into place.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import socket
import stat
import tempfile
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._array import luminance
from ._errors import BadInputError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageData",
    "PixelSize",
    "atomic_path",
    "parse_pixel_size",
    "read_image",
    "remove_stale_partials",
    "write_image",
    "write_json",
    "write_map",
    "write_png",
]

#: Largest image (in pixels per plane) read without an explicit ``max_pixels``: 2**28 = 16k x 16k.
#: Larger images belong to the tiled path; the guard also refuses decompression bombs.
DEFAULT_MAX_PIXELS = 2**28

#: Pixel sizes accepted, in metres: 1 fm to 1 km. Outside, a number or unit is wrong, and
#: later arithmetic (resolution tags, scale bars) would overflow.
PIXEL_SIZE_RANGE = (1e-15, 1e3)

_TIFF_SUFFIXES = {".tif", ".tiff", ".ome.tif", ".ome.tiff", ".btf", ".tf8"}

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


@dataclass
class ImageData:
    """An image as read from disk.

    Attributes
    ----------
    data : ndarray
        The pixels exactly as stored (dtype and range untouched), for output.
    luminance : ndarray of float32
        2-D analysis image (channels combined by :func:`defocus._array.luminance`), same scale.
    channel_axis : int or None
        Axis of ``data`` holding colour channels.
    pixel_size : PixelSize or None
        Physical pixel size, if known.
    pixel_size_source : str
        Where ``pixel_size`` came from (``"override"``, ``"OME PhysicalSizeX"``,
        ``"FEI PixelWidth"``, ``"Zeiss CZ_SEM"``, ``"ImageJ unit"``, ``"TIFF resolution"``) or
        ``"none"``.
    path : Path or None
        The file it came from.
    metadata : dict
        Small extra facts (format, axes, instrument values) worth reporting.
    """

    data: np.ndarray
    luminance: np.ndarray
    channel_axis: int | None = None
    pixel_size: PixelSize | None = None
    pixel_size_source: str = "none"
    path: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def _check_path(path: str | bytes | os.PathLike) -> Path:
    # bytes paths (non-UTF-8 names on POSIX) become str with surrogate escapes, which the OS
    # maps back to the same bytes
    p = Path(os.fsdecode(path))
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            raise BadInputError(f"{p}: is a broken symlink (its target does not exist)") from None
        raise BadInputError(f"{p}: no such file") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BadInputError(f"{p}: is a symlink loop, not an image file") from None
        raise BadInputError(f"{p}: cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise BadInputError(f"{p}: is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block, a device never ends
        raise BadInputError(f"{p}: not a regular file (a pipe, socket or device)")
    if st.st_size == 0:
        raise BadInputError(f"{p}: file is empty")
    if not os.access(p, os.R_OK):
        raise BadInputError(f"{p}: permission denied")
    return p


def _is_tiff(p: Path) -> bool:
    with open(p, "rb") as fh:
        magic = fh.read(4)
    return magic[:2] in (b"II", b"MM") and magic[2:4] in (b"*\x00", b"\x00*", b"+\x00", b"\x00+")


def _mp(n: int) -> str:
    x = n / 1e6
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _guard_pixels(
    p: Path, shape: tuple[int, ...], max_pixels: int | None, *, planes: int = 1
) -> None:
    """Refuse empty images, and images whose header claims more than ``max_pixels``.

    Runs on the header alone, before any pixel is decoded. ``planes`` counts the 2-D planes
    that must be decoded together (a file that cannot be read one plane at a time).
    """
    h, w = int(shape[0]), int(shape[1])
    npix = h * w * planes
    if npix == 0:
        raise BadInputError(f"{p}: image has zero size {tuple(shape)}")
    if max_pixels is not None and npix > max_pixels:
        what = f"{h}x{w}" + (f"x{planes} planes" if planes > 1 else "")
        raise BadInputError(
            f"{p}: header claims {what} = {_mp(npix)} MP, above the {_mp(max_pixels)} MP "
            "limit (a decompression bomb?); if it is genuine, raise --max-pixels "
            "(max_pixels=), or process it in tiles with 'defocus map --chunks 2048'"
        )


def _ome_pixel_size(tf: Any) -> PixelSize | None:
    xml = tf.ome_metadata
    if not xml:
        return None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for el in root.iter():
        if el.tag.endswith("}Pixels") or el.tag == "Pixels":
            sx = el.get("PhysicalSizeX")
            if sx is None:
                return None
            sy = el.get("PhysicalSizeY", sx)
            ux = el.get("PhysicalSizeXUnit", "µm")
            try:
                return PixelSize(float(sx), float(sy), ux)
            except (BadInputError, ValueError):
                return None
    return None


def _fei_pixel_size(tf: Any) -> PixelSize | None:
    meta = tf.fei_metadata
    if not meta:
        return None
    scan = meta.get("Scan") or meta.get("EScan") or meta.get("IScan") or {}
    px, py = scan.get("PixelWidth"), scan.get("PixelHeight", scan.get("PixelWidth"))
    if not px:
        return None
    return PixelSize(float(px), float(py), "m").readable()


def _zeiss_pixel_size(tf: Any) -> PixelSize | None:
    meta = tf.sem_metadata
    if not meta:
        return None
    for key in ("ap_image_pixel_size", "ap_pixel_size"):
        entry = meta.get(key)
        if entry and len(entry) >= 3:
            try:
                return PixelSize(float(entry[1]), float(entry[1]), str(entry[2]))
            except (BadInputError, ValueError):
                return None
    return None


def _resolution_pixel_size(page: Any, unit: str | None) -> PixelSize | None:
    """Pixel size from XResolution/YResolution (pixels per unit)."""
    try:
        rx, ry = page.resolution
    except (AttributeError, ValueError, ZeroDivisionError):
        return None
    if not (rx > 0 and ry > 0) or (rx == 1 and ry == 1):
        return None  # 1 pixel per unit is the writers' placeholder, not a measurement
    if unit is None:
        ru = int(page.resolutionunit)
        unit = {2: "inch", 3: "cm"}.get(ru)
        if unit is None:
            return None
    if unit == "inch":
        return PixelSize(2.54 / rx, 2.54 / ry, "cm").readable()
    return PixelSize(1 / rx, 1 / ry, unit)


def _tiff_pixel_size(tf: Any) -> tuple[PixelSize | None, str]:
    page = tf.pages.first
    for source, reader in (
        ("OME PhysicalSizeX", lambda: _ome_pixel_size(tf)),
        ("FEI PixelWidth", lambda: _fei_pixel_size(tf)),
        ("Zeiss CZ_SEM", lambda: _zeiss_pixel_size(tf)),
    ):
        try:
            ps = reader()
        except Exception as exc:  # a damaged value: say which, and how to go on without it
            raise BadInputError(
                f"{tf.filehandle.path}: unusable {source} in the metadata ({_short(exc)}); "
                "give the pixel size with --pixel-size (pixel_size=)"
            ) from None
        if ps is not None:
            return ps, source
    ij = tf.imagej_metadata or {}
    if ij.get("unit"):
        try:
            ps = _resolution_pixel_size(page, _canonical_unit(str(ij["unit"])))
        except BadInputError:
            ps = None  # an unknown ImageJ unit ("pixel") is no physical size
        if ps is not None:
            return ps, "ImageJ unit"
    ps = _resolution_pixel_size(page, None)
    if ps is not None:
        return ps, "TIFF resolution"
    return None, "none"


def _layout(
    shape: tuple[int, ...], axes: str, p: Path, index: int | None
) -> tuple[Any, int | None]:
    """Decide how to index a TIFF series into one 2-D (optionally multichannel) image."""
    keep = [i for i, (a, n) in enumerate(zip(axes, shape, strict=True)) if n > 1 or a in "YX"]
    axes_k = "".join(axes[i] for i in keep)
    chan = [i for i, a in enumerate(axes_k) if a in "SC"]
    extra = [i for i, a in enumerate(axes_k) if a not in "YXSC"]
    if len(chan) > 1:
        raise BadInputError(f"{p}: has several channel axes ({axes}); not supported")
    if len(extra) > 1:
        raise BadInputError(
            f"{p}: is {len(shape)}-D (axes {axes}, shape {shape}); only 2-D images, RGB, and "
            "single stacks of 2-D planes are supported"
        )
    sel: list[Any] = [slice(None) if i in keep else 0 for i in range(len(shape))]
    if extra:
        n = shape[keep[extra[0]]]
        if index is None:
            raise BadInputError(
                f"{p}: holds {n} planes (axes {axes}); choose one with index= (--index), "
                "or read it as a stack"
            )
        if not 0 <= index < n:
            raise BadInputError(f"{p}: plane index {index} out of range 0..{n - 1}")
        sel[keep[extra[0]]] = index
        axes_k = axes_k.replace(axes_k[extra[0]], "")
    channel_axis = axes_k.index("S") if "S" in axes_k else axes_k.find("C")
    return tuple(sel), (None if channel_axis < 0 else channel_axis)


class _Quiet(logging.Filter):
    """Drop tifffile's log lines about damaged tags: the one-line error says it instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


def _planes(series: Any, sel: tuple[Any, ...]) -> Any:
    """Decode only the pages ``sel`` needs, so one plane of a long stack costs one plane.

    Returns None where the series does not map one page to one index of its leading axes
    (for example ImageJ hyperstacks stored as one contiguous block); the caller then decodes
    the whole series.
    """
    page_shape = tuple(series.keyframe.shape)
    shape = tuple(series.shape)
    lead = len(shape) - len(page_shape)
    if lead <= 0 or shape[lead:] != page_shape:
        return None
    if len(series.pages) != int(np.prod(shape[:lead])) or any(
        page is None for page in series.pages
    ):
        return None
    keys = np.arange(len(series.pages)).reshape(shape[:lead])[sel[:lead]]
    pages = series.parent.asarray(key=[int(k) for k in np.ravel(keys)], series=series)
    return pages.reshape(np.shape(keys) + page_shape)[(Ellipsis, *sel[lead:])]


def _read_tiff(
    p: Path, max_pixels: int | None, index: int | None, *, metadata: bool = True
) -> tuple[Any, ...]:
    import tifffile

    quiet = _Quiet()
    log = logging.getLogger("tifffile")
    log.addFilter(quiet)
    try:
        with tifffile.TiffFile(p) as tf:
            # walk the whole IFD chain first: it stops at a circular reference, which
            # tifffile's lazy page iteration (used by ``series``) would follow forever
            len(tf.pages)
            series = tf.series[0]
            shape, axes = tuple(series.shape), series.axes
            yx = tuple(n for a, n in zip(axes, shape, strict=True) if a in "YX")
            _guard_pixels(p, yx, max_pixels)
            stacked = any(n > 1 and a not in "YXSC" for a, n in zip(axes, shape, strict=True))
            if index is not None and not stacked:
                # pages of different shapes make one series each: --index picks the page
                pages = len(tf.pages)
                if not 0 <= index < pages:
                    raise BadInputError(f"{p}: page index {index} out of range 0..{pages - 1}")
                page = tf.pages[index]
                shape, axes = tuple(page.shape), page.axes
                yx = tuple(n for a, n in zip(axes, shape, strict=True) if a in "YX")
                _guard_pixels(p, yx, max_pixels)
                sel, channel_axis = _layout(shape, axes, p, None)
                data = page.asarray()[sel]
            else:
                sel, channel_axis = _layout(shape, axes, p, index)
                data = _planes(series, sel)
            if data is None:
                planes = int(
                    np.prod([n for a, n in zip(axes, shape, strict=True) if a not in "YXS"])
                )
                _guard_pixels(p, yx, max_pixels, planes=planes)
                data = series.asarray()[sel]
            ps, source = _tiff_pixel_size(tf) if metadata else (None, "none")
            meta: dict[str, Any] = {"format": "TIFF", "axes": axes}
            if tf.is_ome:
                meta["format"] = "OME-TIFF"
    except BadInputError:
        raise
    except MemoryError:
        raise BadInputError(
            f"{p}: not enough memory to decode it; process it in tiles with "
            "'defocus map --chunks 2048'"
        ) from None
    except Exception as exc:  # tifffile raises many types for damaged files
        raise BadInputError(f"{p}: not a readable TIFF ({_short(exc)})") from None
    finally:
        log.removeFilter(quiet)
    return data, channel_axis, ps, source, meta


# Pillow's own bomb check warns, or refuses, above a global pixel limit before our guard can
# give its advice; the limit is lifted around our reads only (header first, then our guard,
# then decoding), under a lock because it is process-wide.
_PILLOW_LIMIT = threading.Lock()


@contextlib.contextmanager
def _no_pillow_limit() -> Iterator[None]:
    from PIL import Image

    with _PILLOW_LIMIT:
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = old


def _read_other(p: Path, max_pixels: int | None, index: int | None) -> tuple[Any, ...]:
    import imageio.v3 as iio
    from PIL import Image

    with _no_pillow_limit():
        try:
            with Image.open(p) as im:  # header only: size before any pixels are decoded
                w, h = im.size
                n_frames = getattr(im, "n_frames", 1)
                fmt = im.format
        except Image.UnidentifiedImageError:
            raise BadInputError(
                f"{p}: not a readable image (unknown format, or a damaged header)"
            ) from None
        except Exception as exc:
            raise BadInputError(f"{p}: not a readable image ({_short(exc)})") from None
        _guard_pixels(p, (h, w), max_pixels)
        if n_frames > 1 and index is None:
            raise BadInputError(
                f"{p}: holds {n_frames} frames; choose one with index= (--index), or read it "
                "as a stack"
            )
        if index is not None and not 0 <= index < n_frames:
            raise BadInputError(f"{p}: frame index {index} out of range 0..{n_frames - 1}")
        try:
            data = iio.imread(p, index=index or 0)
        except MemoryError:
            raise BadInputError(
                f"{p}: not enough memory to decode it; lower --max-pixels to refuse such files "
                "early, or convert it to a tiled TIFF for 'defocus map --chunks 2048'"
            ) from None
        except Exception as exc:
            raise BadInputError(f"{p}: cannot decode image ({_short(exc)})") from None
    data = np.asarray(data)
    channel_axis = -1 if data.ndim == 3 else None
    if data.ndim not in (2, 3):
        raise BadInputError(f"{p}: unsupported image shape {data.shape}")
    return data, channel_axis, None, "none", {"format": fmt}


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def read_image(
    path: str | bytes | os.PathLike,
    *,
    pixel_size: str | PixelSize | None = None,
    index: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> ImageData:
    """Read an image file, its luminance and its pixel size.

    Parameters
    ----------
    path : str, bytes or path-like
        PNG, JPEG, TIFF (8/16/32-bit integer, float, multi-page), OME-TIFF, or any format
        imageio reads. The content decides the format, not the extension. A bytes path
        reads a file whose name is not valid UTF-8.
    pixel_size : str or PixelSize, optional
        Override the pixel size from metadata, e.g. ``"2.5nm"``.
    index : int, optional
        Plane to read from a multi-page file (z-stack, time series, animated GIF). Required
        when the file holds more than one plane: a silent choice would be a guess.
    max_pixels : int or None
        Refuse images whose header claims more pixels per plane (decompression-bomb guard),
        checked before any pixel is decoded; the message suggests the tiled path. Only the
        requested plane of a multi-page TIFF is decoded where its layout allows; otherwise
        all its planes count. ``None`` disables the guard.

    Returns
    -------
    ImageData

    Raises
    ------
    BadInputError
        Missing, empty, truncated or corrupt files, unsupported shapes or dtypes, NaN or
        infinite values, or images over ``max_pixels``.
    TypeError
        ``path`` is not a str, bytes or path-like object.

    Examples
    --------
    >>> import tempfile, os, numpy as np
    >>> d = tempfile.mkdtemp()
    >>> f = os.path.join(d, "a.tif")
    >>> write_image(f, np.arange(12, dtype=np.uint16).reshape(3, 4), pixel_size="5nm")
    >>> img = read_image(f)
    >>> img.data.dtype, img.pixel_size, img.pixel_size_source
    (dtype('uint16'), PixelSize(x=5.0, y=5.0, unit='nm'), 'OME PhysicalSizeX')
    """
    p = _check_path(path)
    override = parse_pixel_size(pixel_size)
    if _is_tiff(p):  # metadata the override replaces is not read: a damaged value is no error
        data, channel_axis, ps, source, meta = _read_tiff(
            p, max_pixels, index, metadata=override is None
        )
    else:
        data, channel_axis, ps, source, meta = _read_other(p, max_pixels, index)
    if data.dtype.byteorder not in ("=", "|"):
        data = data.astype(data.dtype.newbyteorder("="))  # big-endian TIFFs: native order
    if data.dtype.kind == "c" or data.dtype.kind not in "uifb":
        raise BadInputError(f"{p}: unsupported pixel type {data.dtype}")
    if min(data.shape[:2] if channel_axis in (-1, 2) else data.shape[-2:]) < 1:
        raise BadInputError(f"{p}: image has zero size {data.shape}")
    lum = luminance(
        data.astype(np.uint8) if data.dtype == bool else data, channel_axis=channel_axis
    )
    if data.dtype.kind == "f" and not np.isfinite(lum).all():
        raise BadInputError(f"{p}: contains NaN or infinite values")
    if override is not None:
        ps, source = override, "override"
    return ImageData(
        data=data,
        luminance=lum,
        channel_axis=channel_axis,
        pixel_size=ps,
        pixel_size_source=source,
        path=p,
        metadata=meta,
    )


def _tmp_prefix(stem: str) -> str:
    # the writer's process id and host name let a rerun tell a killed writer's leftovers
    # from a live writer's temporary file
    return f".{stem}.{os.getpid()}@{_host()}."


def _host() -> str:
    return socket.gethostname().replace(".", "-")


# a temporary name: "." stem "." pid "@" host "." random ".partial" suffix
_PARTIAL = re.compile(r"^\..*\.(?P<pid>[0-9]+)@(?P<host>[^.]+)\..*\.partial(\.|$)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or no such process id at all
        return False
    except PermissionError:  # another user's
        return True
    return True


def remove_stale_partials(folder: str | os.PathLike) -> int:
    """Delete the temporary files and folders that killed writers on this host left in ``folder``.

    A writer's temporary name carries its process id and host (see :func:`atomic_path`); one
    whose process is gone is removed, a live writer's is kept. Returns how many were removed.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / f".a.{2**22 + 7}@{_host()}.x1.partial.tif").write_bytes(b"")
    >>> remove_stale_partials(d), list(d.iterdir())
    (1, [])
    """
    if os.name != "posix":  # os.kill(pid, 0) only probes on POSIX
        return 0
    import shutil

    host, n = _host(), 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        m = _PARTIAL.match(entry.name)
        if m is None or m["host"] != host or int(m["pid"]) == os.getpid():
            continue
        if _alive(int(m["pid"])):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
        n += 1
    return n


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    The temporary name keeps the extension so that writers choosing a format by suffix work. On
    any exception the temporary file is removed and ``path`` is left as it was. A process
    killed outright (SIGKILL, power loss) cannot clean up: its hidden ``.partial`` file is
    removed by the next write to the same ``path``, and ``path`` itself is never partial.

    Examples
    --------
    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "x.txt")
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> Path(target).read_text()
    'done'
    """
    dest = Path(os.fsdecode(path))
    parent = dest.parent
    suffix = f".partial{''.join(dest.suffixes)}"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(parent)
        fd, tmp_name = tempfile.mkstemp(dir=parent, prefix=_tmp_prefix(dest.stem), suffix=suffix)
    except OSError as exc:
        raise BadInputError(f"cannot write to {parent}: {exc.strerror}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private (0600); give the output the usual umask permissions
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BadInputError(f"cannot write {dest}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suf in sorted(_TIFF_SUFFIXES, key=len, reverse=True):
        if name.endswith(suf):
            return ".tif"
    return path.suffix.lower()


def _write_tiff(
    tmp: Path,
    data: np.ndarray,
    pixel_size: PixelSize | None,
    *,
    channel_axis: int | None,
    compression: str | None,
) -> None:
    import tifffile

    if channel_axis is not None:
        data = np.moveaxis(data, channel_axis, -1)
    rgb = data.ndim == 3 and data.shape[-1] in (3, 4)
    meta: dict[str, Any] = {"axes": "YXS" if rgb else ("YXC" if data.ndim == 3 else "YX")}
    kwargs: dict[str, Any] = {}
    if pixel_size is not None:
        meta.update(
            PhysicalSizeX=pixel_size.x,
            PhysicalSizeXUnit=pixel_size.unit,
            PhysicalSizeY=pixel_size.y,
            PhysicalSizeYUnit=pixel_size.unit,
        )
        # Resolution tags too, so readers without OME support (plain ImageJ) get the scale.
        cm = pixel_size.to("cm")
        # TIFF stores pixels per cm as 32-bit fractions; OME-XML alone carries sizes beyond
        if all(1e-8 <= 1 / v <= 4e9 for v in (cm.x, cm.y)):
            kwargs.update(resolution=(1 / cm.x, 1 / cm.y), resolutionunit="CENTIMETER")
    if data.ndim == 3 and not rgb:
        data = np.moveaxis(data, -1, 0)
        meta["axes"] = "CYX"
    # OME-XML has no half-float type: float16 goes into a plain TIFF, the resolution tags
    # still carrying the pixel size
    ome = data.dtype != np.float16
    tifffile.imwrite(
        tmp,
        data,
        ome=ome,
        photometric="rgb" if rgb else "minisblack",
        metadata=meta if ome else None,
        compression=compression,
        **kwargs,
    )


def write_image(
    path: str | os.PathLike,
    image: np.ndarray,
    *,
    pixel_size: str | PixelSize | None = None,
    channel_axis: int | None = None,
) -> None:
    """Write an image keeping its dtype and values; the format follows the extension.

    TIFF (``.tif``, ``.tiff``, ``.ome.tif``) is written as OME-TIFF with the physical pixel size
    when known, and holds any dtype. PNG holds uint8 and uint16; JPEG holds uint8 only (lossy).
    Nothing is rescaled: a dtype the format cannot hold is refused with a clear message.

    Examples
    --------
    >>> import tempfile, os, numpy as np
    >>> f = os.path.join(tempfile.mkdtemp(), "b.png")
    >>> write_image(f, np.full((4, 4), 1000, dtype=np.uint16))
    >>> read_image(f).data.max()
    np.uint16(1000)
    """
    dest = Path(os.fsdecode(path))
    image = np.asarray(image)
    if image.size == 0:
        raise BadInputError(f"{dest}: nothing to write, the image is empty {image.shape}")
    ps = parse_pixel_size(pixel_size)
    suffix = _suffix(dest)
    if suffix == ".tif":
        with atomic_path(dest) as tmp:
            _write_tiff(tmp, image, ps, channel_axis=channel_axis, compression="zlib")
        return
    import imageio.v3 as iio

    allowed = {".png": (np.uint8, np.uint16), ".jpg": (np.uint8,), ".jpeg": (np.uint8,)}
    if suffix not in allowed:
        raise BadInputError(f"{dest}: unsupported output format {suffix!r}; use .tif, .png or .jpg")
    if image.dtype.type not in allowed[suffix]:
        raise BadInputError(
            f"{dest}: {suffix[1:].upper()} cannot hold {image.dtype} without rescaling; "
            "write a .tif instead"
        )
    if channel_axis is not None:
        image = np.moveaxis(image, channel_axis, -1)
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]  # one channel is greyscale, losslessly
    fmt = suffix[1:].upper()
    channels = {".png": (2, 3, 4), ".jpg": (3,), ".jpeg": (3,)}[suffix]  # grey+alpha, RGB(A)
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in channels)):
        raise BadInputError(
            f"{dest}: {fmt} cannot hold an image of shape {image.shape}; write a .tif instead"
        )
    with atomic_path(dest) as tmp:
        kwargs = {"quality": 95} if suffix in (".jpg", ".jpeg") else {}
        try:
            iio.imwrite(tmp, image, extension=suffix, **kwargs)
        except (ValueError, TypeError, KeyError) as exc:  # Pillow's refusals (e.g. 16-bit RGB)
            raise BadInputError(
                f"{dest}: cannot write {image.dtype} {image.shape} as {fmt} ({_short(exc)}); "
                "write a .tif instead"
            ) from None


def write_map(
    path: str | os.PathLike,
    values: np.ndarray,
    *,
    pixel_size: str | PixelSize | None = None,
) -> None:
    """Write a 2-D float map as float32 OME-TIFF with physical pixel size (Fiji shows the scale).

    Examples
    --------
    >>> import tempfile, os, numpy as np
    >>> f = os.path.join(tempfile.mkdtemp(), "sigma.tif")
    >>> write_map(f, np.ones((5, 6)), pixel_size="0.1um")
    >>> m = read_image(f)
    >>> m.data.dtype, m.data.shape, str(m.pixel_size)
    (dtype('float32'), (5, 6), '0.1 µm')
    """
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2:
        raise BadInputError(f"a map must be 2-D, got shape {values.shape}")
    with atomic_path(path) as tmp:
        _write_tiff(
            tmp, values, parse_pixel_size(pixel_size), channel_axis=None, compression="zlib"
        )


def write_png(path: str | os.PathLike, picture: np.ndarray) -> None:
    """Write an 8-bit greyscale, RGB or RGBA picture as PNG, atomically."""
    picture = np.asarray(picture)
    if picture.dtype != np.uint8:
        raise BadInputError(f"a PNG picture must be uint8, got {picture.dtype}")
    write_image(path, picture)


class _Encoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        if isinstance(o, PixelSize):
            return {"x": o.x, "y": o.y, "unit": o.unit}
        return super().default(o)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON (numpy values converted), atomically."""
    text = json.dumps(obj, cls=_Encoder, indent=2, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
