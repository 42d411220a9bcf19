"""Read and write images with their pixel size; every write is atomic.

- in memory: :func:`read_image` (TIFF/OME-TIFF with SEM and ImageJ metadata, PNG, JPEG, ...)
  and the writers :func:`write_image`, :func:`write_map`, :func:`write_png`, :func:`write_json`;
- lazily, for images larger than memory: :func:`open_image` (Zarr, OME-Zarr, tiled TIFF),
  :func:`write_ome_zarr`, :func:`read_ome_zarr` and :func:`write_tiled_tiff` (need Dask);
- physical pixel sizes: :class:`PixelSize`, :func:`parse_pixel_size`, :func:`as_pixel_size`;
- files: :func:`atomic_path`, :func:`atomic_dir`, :func:`scratch_path`,
  :func:`remove_stale_partials`.

See docs/architecture.md for where each part lives.
"""

from __future__ import annotations

from ._files import atomic_dir, atomic_path, remove_stale_partials, scratch_path, stem_of
from ._lazy import MAX_SEGMENT_PIXELS, TILED_MAX_PIXELS, LazyImage, is_zarr, open_image
from ._ngff import read_ome_zarr, write_ome_zarr
from ._read import DEFAULT_MAX_PIXELS, ImageData, read_image
from ._units import PIXEL_SIZE_RANGE, PixelSize, as_pixel_size, parse_pixel_size
from ._write import write_image, write_json, write_map, write_png, write_tiled_tiff

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_SEGMENT_PIXELS",
    "PIXEL_SIZE_RANGE",
    "TILED_MAX_PIXELS",
    "ImageData",
    "LazyImage",
    "PixelSize",
    "as_pixel_size",
    "atomic_dir",
    "atomic_path",
    "is_zarr",
    "open_image",
    "parse_pixel_size",
    "read_image",
    "read_ome_zarr",
    "remove_stale_partials",
    "scratch_path",
    "stem_of",
    "write_image",
    "write_json",
    "write_map",
    "write_ome_zarr",
    "write_png",
    "write_tiled_tiff",
]
