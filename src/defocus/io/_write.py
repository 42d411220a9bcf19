"""Writing images, maps and JSON, atomically, with the physical pixel size.

TIFF outputs are OME-TIFF (tifffile) carrying ``PhysicalSizeX/Y`` and the resolution tags, so Fiji
and napari show the scale; PNG and JPEG go through imageio. Nothing is rescaled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import BadInputError, short_message
from .._optional import dask_array
from ._files import atomic_path
from ._units import PixelSize, parse_pixel_size

__all__ = ["write_image", "write_json", "write_map", "write_png", "write_tiled_tiff"]

_TIFF_SUFFIXES = {".tif", ".tiff", ".ome.tif", ".ome.tiff", ".btf", ".tf8"}


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suf in sorted(_TIFF_SUFFIXES, key=len, reverse=True):
        if name.endswith(suf):
            return ".tif"
    return path.suffix.lower()


def _ome_tags(axes: str, pixel_size: PixelSize | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """tifffile's OME ``metadata`` and resolution arguments for an image with these axes."""
    meta: dict[str, Any] = {"axes": axes}
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
    return meta, kwargs


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
    meta, kwargs = _ome_tags("YXS" if rgb else ("YXC" if data.ndim == 3 else "YX"), pixel_size)
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
    >>> from defocus.io import read_image
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
        kwargs: dict[str, Any] = {"quality": 95} if suffix in (".jpg", ".jpeg") else {}
        try:
            iio.imwrite(tmp, image, extension=suffix, **kwargs)
        except (ValueError, TypeError, KeyError) as exc:  # Pillow's refusals (e.g. 16-bit RGB)
            raise BadInputError(
                f"{dest}: cannot write {image.dtype} {image.shape} as {fmt} "
                f"({short_message(exc)}); write a .tif instead"
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
    >>> from defocus.io import read_image
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


def write_tiled_tiff(
    path: str | os.PathLike,
    data: Any,
    *,
    pixel_size: str | PixelSize | None = None,
    tile: int = 256,
) -> Path:
    """Write a 2-D map as a tiled, zlib-compressed OME-TIFF, strip by strip, atomically.

    Only one strip of tiles (``tile`` rows of the image) is in memory at a time, so ``data``
    should be cheap to read: a store-backed array, such as a level of :func:`write_ome_zarr`.

    Examples
    --------
    >>> import tempfile, os
    >>> from defocus.io import read_image
    >>> f = os.path.join(tempfile.mkdtemp(), "m.tif")
    >>> _ = write_tiled_tiff(f, np.ones((300, 500), np.float32), pixel_size="1um")
    >>> m = read_image(f)
    >>> m.data.shape, str(m.pixel_size)
    ((300, 500), '1 µm')
    """
    import tifffile

    da = dask_array()
    arr = data if isinstance(data, da.Array) else da.from_array(np.asarray(data))
    if arr.ndim != 2:
        raise BadInputError(f"a tiled TIFF map must be 2-D, got shape {arr.shape}")
    h, w = arr.shape
    ps = parse_pixel_size(pixel_size)

    def tiles() -> Iterator[np.ndarray]:
        for y in range(0, h, tile):
            strip = np.asarray(arr[y : y + tile].compute())
            for x in range(0, w, tile):
                yield strip[:, x : x + tile]

    meta, kwargs = _ome_tags("YX", ps)
    dest = Path(path)
    with atomic_path(dest) as tmp:
        tifffile.imwrite(
            tmp,
            tiles(),
            shape=(h, w),
            dtype=arr.dtype,
            tile=(tile, tile),
            ome=True,
            photometric="minisblack",
            metadata=meta,
            compression="zlib",
            **kwargs,
        )
    return dest
