"""Lazy input: Zarr, OME-Zarr and (tiled) TIFF opened as Dask arrays, nothing read but metadata.

TIFF goes through tifffile's Zarr store, so a tiled TIFF is read tile by tile; every chunk opens
the file for itself, so nothing stays open and the task graph pickles. Headers are checked
before any allocation: a plane claiming more than ``max_pixels``, a TIFF whose tags point
beyond the end of the file, or a Zarr array with no written chunk is refused in one line.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._array import as_chunks
from .._errors import BadInputError, short_message
from .._optional import dask_array
from ._files import _check_path, _is_tiff, _mp
from ._read import DEFAULT_MAX_PIXELS, _layout, _tiff_pixel_size, read_image
from ._units import PixelSize, parse_pixel_size

if TYPE_CHECKING:
    import dask.array as da

__all__ = ["MAX_SEGMENT_PIXELS", "TILED_MAX_PIXELS", "LazyImage", "is_zarr", "open_image"]


@dataclass
class LazyImage:
    """An image opened lazily.

    Attributes
    ----------
    data : dask array
        The pixels in their stored dtype, one plane (2-D, or 3-D with ``channel_axis``).
    channel_axis : int or None
        Axis of the colour channels.
    pixel_size : PixelSize or None
        Physical pixel size, if known.
    pixel_size_source : str
        Where it came from (``"NGFF scale"``, the TIFF sources of :func:`defocus.read_image`,
        ``"override"``) or ``"none"``.
    path : Path
        The file or store.
    """

    data: da.Array
    channel_axis: int | None
    pixel_size: PixelSize | None
    pixel_size_source: str
    path: Path


def is_zarr(path: str | os.PathLike) -> bool:
    """True for a Zarr store (v2 or v3) on disk."""
    p = Path(path)
    if not p.is_dir():
        return False
    return p.suffix.lower() == ".zarr" or any(
        (p / n).exists() for n in (".zarray", ".zgroup", "zarr.json")
    )


def _ngff(attrs: dict[str, Any]) -> dict[str, Any] | None:
    ms = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    return ms[0] if ms else None


def _open_zarr(p: Path, index: int | None) -> tuple[Any, str, PixelSize | None, str]:
    import zarr

    try:
        node: Any = zarr.open(str(p), mode="r")
    except Exception as exc:
        raise BadInputError(f"{p}: not a readable Zarr store ({exc})") from None
    if not hasattr(node, "shape"):  # a group: OME-Zarr image
        ms = _ngff(dict(node.attrs))
        if ms is None:
            raise BadInputError(f"{p}: Zarr group without OME-NGFF multiscales metadata")
        ds = ms["datasets"][0]
        axes = ms.get("axes") or [{"name": n} for n in "tczyx"[-node[ds["path"]].ndim :]]
        names = [a["name"] if isinstance(a, dict) else a for a in axes]
        arr = node[ds["path"]]
        scale = next(
            (t["scale"] for t in ds.get("coordinateTransformations", []) if t["type"] == "scale"),
            None,
        )
        units = {a["name"]: a.get("unit") for a in axes if isinstance(a, dict)}
        ps = None
        if scale is not None and units.get("x") and units.get("y"):
            with contextlib.suppress(BadInputError, ValueError):
                ps = PixelSize(
                    float(scale[names.index("x")]), float(scale[names.index("y")]), str(units["x"])
                )
        letters = "".join({"t": "T", "c": "C", "z": "Z", "y": "Y", "x": "X"}[n] for n in names)
        return arr, letters, ps, "NGFF scale" if ps else "none"
    arr = node
    if arr.ndim == 2:
        return arr, "YX", None, "none"
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        return arr, "YXS", None, "none"
    raise BadInputError(
        f"{p}: plain Zarr array of shape {arr.shape}; use 2-D, YX + RGB, or OME-Zarr with axes"
    )


#: Largest plane the tiled path opens without an explicit ``max_pixels``: 2**40 = 1 TP.
TILED_MAX_PIXELS = 2**40
#: Largest stored TIFF segment (strip or tile) the tiled path decodes as one piece.
MAX_SEGMENT_PIXELS = 2**28


def _guard_lazy(p: Path, shape: Sequence[int], axes: str, max_pixels: int | None) -> None:
    h, w = (int(n) for a, n in zip(axes, shape, strict=True) if a in "YX")
    if h * w == 0:
        raise BadInputError(f"{p}: image has zero size {tuple(shape)}")
    if max_pixels is not None and h * w > max_pixels:
        raise BadInputError(
            f"{p}: header claims {h}x{w} = {_mp(h * w)} MP, above the tiled limit of "
            f"{_mp(max_pixels)} MP (a decompression bomb?); if it is genuine, raise --max-pixels"
        )


def _check_tiff_data(p: Path, series: Any) -> tuple[int, int]:
    """Refuse a TIFF whose stored data is not there; return its segment (tile or strip) shape.

    Runs on the tags alone: a header claiming terapixels over a few bytes of data is refused
    before the first chunk is allocated.
    """
    page = series.keyframe
    if page.is_tiled:
        seg = (page.tilelength, page.tilewidth)
    else:
        seg = (min(page.rowsperstrip, page.imagelength), page.imagewidth)
    if seg[0] * seg[1] > MAX_SEGMENT_PIXELS:
        raise BadInputError(
            f"{p}: stores its pixels in strips of {seg[0]}x{seg[1]}, too large to read in tiles; "
            "convert it to a tiled TIFF (e.g. tifffile.imwrite(..., tile=(512, 512)))"
        )
    size = p.stat().st_size
    for pg in series.pages:
        if pg is None:
            continue
        offsets = np.asarray(pg.dataoffsets, dtype=np.int64)
        counts = np.asarray(pg.databytecounts, dtype=np.int64)
        if offsets.size == 0 or (counts <= 0).any() or (offsets + counts > size).any():
            raise BadInputError(
                f"{p}: truncated or damaged TIFF (its pixel data is missing or lies beyond the "
                f"end of the {size}-byte file)"
            )
    return seg


def open_image(
    path: str | os.PathLike,
    *,
    chunks: int | Sequence[int] | None = None,
    pixel_size: str | PixelSize | None = None,
    index: int | None = None,
    max_pixels: int | None = TILED_MAX_PIXELS,
) -> LazyImage:
    """Open a Zarr / OME-Zarr store or a TIFF lazily; nothing is read but metadata.

    TIFF goes through tifffile's Zarr store (``aszarr``), so a tiled TIFF is read tile by tile.
    Other formats (PNG, JPEG, ...) have no tiles: they are decoded whole by
    :func:`defocus.read_image`, under its limit of :data:`DEFAULT_MAX_PIXELS`, then tiled.
    The pixel size comes from the NGFF ``scale`` and axis units, or from the TIFF metadata in
    the order :func:`defocus.read_image` uses; ``pixel_size`` overrides it.

    Parameters
    ----------
    path : str or path-like
        A ``.zarr`` store (plain 2-D array or OME-Zarr image group) or a TIFF file.
    chunks : int or (int, int), optional
        Tile size in px; default: the store's own chunks.
    pixel_size : str or PixelSize, optional
        Override, e.g. ``"0.25um"``.
    index : int, optional
        Plane to take from a store with a time or z axis.
    max_pixels : int or None
        Refuse planes whose metadata claims more pixels (default 2**40, and at most
        :data:`DEFAULT_MAX_PIXELS` for formats decoded whole); ``None`` lifts it. A
        TIFF must also hold the data its tags point to, in strips or tiles of at most 2**28
        px, and a Zarr store at least one written chunk, all checked before any allocation.

    Returns
    -------
    LazyImage

    Examples
    --------
    >>> import tempfile, os, numpy as np
    >>> from defocus.io import write_image
    >>> f = os.path.join(tempfile.mkdtemp(), "a.tif")
    >>> write_image(f, np.arange(64 * 80, dtype=np.uint16).reshape(64, 80), pixel_size="5nm")
    >>> img = open_image(f, chunks=32)
    >>> img.data.dtype, img.data.chunks, str(img.pixel_size)
    (dtype('uint16'), ((32, 32), (32, 32, 16)), '5 nm')
    """
    da = dask_array()

    p = Path(path)
    override = parse_pixel_size(pixel_size)
    if is_zarr(p):
        arr, axes, ps, source = _open_zarr(p, index)
        _guard_lazy(p, arr.shape, axes, max_pixels)
        if getattr(arr, "nchunks_initialized", 1) == 0:
            raise BadInputError(f"{p}: the Zarr array holds no data (no chunk was written)")
    else:
        p = _check_path(p)
        if not _is_tiff(p):
            return _open_whole(p, chunks, override, index, max_pixels)
        import tifffile

        try:
            with tifffile.TiffFile(p) as tf:
                len(tf.pages)  # walk the IFD chain first: it stops at a loop
                series = tf.series[0]
                shape, dtype, axes = tuple(series.shape), series.dtype, series.axes
                _guard_lazy(p, shape, axes, max_pixels)
                page = series.keyframe
                _check_tiff_data(p, series)
                tile = (
                    (page.tilelength, page.tilewidth) if page.is_tiled else (page.rowsperstrip, -1)
                )
                ps, source = _tiff_pixel_size(tf) if override is None else (None, "none")
        except BadInputError:
            raise
        except Exception as exc:
            raise BadInputError(f"{p}: not a readable TIFF ({short_message(exc)})") from None
        # Natural chunks: whole tiles (or strips), about 1024 px, whole along the other axes.
        ty, tx = (-(-1024 // t) * t if t > 0 else -1 for t in tile)
        iy, ix = axes.index("Y"), axes.index("X")
        natural = tuple({iy: ty, ix: tx}.get(i, -1) for i in range(len(shape)))
        # Each chunk opens the file for itself: nothing stays open, and the graph pickles.
        arr = da.map_blocks(
            _read_tiff_chunk,
            str(p),
            dtype=dtype,
            chunks=da.core.normalize_chunks(natural, shape, dtype=dtype),
            meta=np.empty((0,) * len(shape), dtype),
        )
    sel, channel_axis = _layout(tuple(arr.shape), axes, p, index)
    data = arr[sel] if isinstance(arr, da.Array) else da.from_zarr(arr)[sel]
    if data.dtype.kind not in "uif":
        raise BadInputError(f"{p}: unsupported pixel type {data.dtype}")
    if chunks is not None:
        cy, cx = as_chunks(chunks)
        spec = {0: cy, 1: cx} if channel_axis in (None, 2, -1) else {1: cy, 2: cx}
        data = data.rechunk(spec)
    if override is not None:
        ps, source = override, "override"
    return LazyImage(data, channel_axis, ps, source, p)


def _open_whole(
    p: Path,
    chunks: int | Sequence[int] | None,
    override: PixelSize | None,
    index: int | None,
    max_pixels: int | None,
) -> LazyImage:
    """PNG, JPEG and the other formats imageio reads have no tiles to read one by one: they are
    decoded whole by :func:`read_image`, under its in-memory pixel limit, and then tiled."""
    da = dask_array()
    limit = None if max_pixels is None else min(max_pixels, DEFAULT_MAX_PIXELS)
    img = read_image(p, pixel_size=override, index=index, max_pixels=limit)
    data = img.data
    if img.channel_axis is not None:
        data = np.moveaxis(data, img.channel_axis, -1)
    cy, cx = as_chunks(chunks)
    data = da.from_array(data, chunks=(cy, cx, -1)[: data.ndim])
    axis = None if img.channel_axis is None else 2
    return LazyImage(data, axis, img.pixel_size, img.pixel_size_source, p)


def _read_tiff_chunk(path: str, block_info: dict | None = None) -> np.ndarray:
    """One chunk of a TIFF's first series, read through tifffile's Zarr store."""
    import tifffile
    import zarr

    assert block_info is not None  # dask passes it to every block
    region = tuple(slice(a, b) for a, b in block_info[None]["array-location"])
    try:
        with tifffile.TiffFile(path) as tf:
            store: Any = zarr.open(tf.series[0].aszarr(level=0), mode="r")
            return np.asarray(store[region])
    except MemoryError:
        raise BadInputError(f"{path}: not enough memory to decode a tile; lower --chunks") from None
    except Exception as exc:  # damaged tile data: the file, not our code, is at fault
        raise BadInputError(f"{path}: cannot decode a tile ({short_message(exc)})") from None
