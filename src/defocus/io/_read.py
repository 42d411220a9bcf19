"""Reading images in memory, with their pixel size from the file's metadata.

Reading keeps the original array untouched (dtype, range, channels) for output, and derives a
float32 luminance image for analysis. The physical pixel size is taken from file metadata in the
order docs/architecture.md gives, unless the caller overrides it:

1. OME-XML ``PhysicalSizeX/Y``;
2. FEI/Thermo Fisher SEM ``[Scan] PixelWidth/PixelHeight``;
3. Zeiss SEM ``CZ_SEM`` ``AP_IMAGE_PIXEL_SIZE``;
4. ImageJ ``unit`` with the TIFF resolution;
5. the plain TIFF resolution tags (only when they carry a real unit and are not the writer's
   1-per-unit default).

TIFF is decoded by tifffile, with imagecodecs for its compressions (LZW, Deflate, JPEG, ...);
other formats by imageio (Pillow).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._array import luminance
from .._errors import BadInputError, short_message
from ._files import _check_path, _is_tiff, _mp
from ._units import PixelSize, _canonical_unit, parse_pixel_size

__all__ = ["DEFAULT_MAX_PIXELS", "ImageData", "read_image"]

#: Largest image (in pixels per plane) read without an explicit ``max_pixels``: 2**28 = 16k x 16k.
#: Larger images belong to the tiled path; the guard also refuses decompression bombs.
DEFAULT_MAX_PIXELS = 2**28


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
    px = scan.get("PixelWidth")
    if not px:
        return None
    py = scan.get("PixelHeight", px)
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
                f"{tf.filehandle.path}: unusable {source} in the metadata ({short_message(exc)}); "
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
        raise BadInputError(f"{p}: not a readable TIFF ({short_message(exc)})") from None
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
            raise BadInputError(f"{p}: not a readable image ({short_message(exc)})") from None
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
            raise BadInputError(f"{p}: cannot decode image ({short_message(exc)})") from None
    data = np.asarray(data)
    channel_axis = -1 if data.ndim == 3 else None
    if data.ndim not in (2, 3):
        raise BadInputError(f"{p}: unsupported image shape {data.shape}")
    return data, channel_axis, None, "none", {"format": fmt}


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
    >>> from defocus.io import write_image
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
