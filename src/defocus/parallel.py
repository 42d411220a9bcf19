"""Dask scale-out: tiled focus and blur maps of huge images, and QC batches over many files.

A thin lazy layer over the in-memory functions, in the style of dask-image: every tile is
computed by :func:`defocus.focus_map` or :func:`defocus.blur_map` on the tile plus an overlap
taken from its neighbours (:func:`dask.array.map_overlap`), so the library holds no second copy
of the algorithms. Image-wide quantities (the noise level, a contrast floor) are computed once
and passed to every tile, so tiles agree with each other and with the in-memory result.

How close a tiled map is to the in-memory one
---------------------------------------------
- **Local focus measures** (``tenengrad``, ``gradient_energy``, ``brenner``, ``acutance``,
  ``laplacian_energy``, ``sum_modified_laplacian``, ``vollath_f4``, ``wavelet_energy``): the
  overlap depth is the measure's full support, and image borders are handled by the measure
  itself, so tiled maps are **bit-for-bit equal** to :func:`defocus.focus_map`.
- **Measures with an image-wide statistic** (``gradient_ratio``: noise level and contrast
  floor; ``local_variance``, ``laplacian_variance``: mean subtracted for conditioning;
  ``normalized_variance``, ``spectral_slope``: tiny floors): the image-wide value is
  computed once and passed to every tile, or its effect is at round-off level; maps agree to
  a relative 1e-5 (``spectral_slope``, a log-log slope that crosses 0, to 1e-4 absolute).
- ``spectral_ratio`` filters the whole image's spectrum; it has no finite support and is
  refused.
- **Blur map**: the in-memory method ends with a pyramid fill that reaches across the whole
  image, so tiles cannot be exact. Tiles are aligned to the method's 32-px grid, overlap by
  ``depth`` px (default :func:`blur_support`, 160 px for the current method), and every tile
  gets the same ``noise_sigma``. Against :func:`defocus.blur_map` with that ``noise_sigma``,
  on chunks of (97, 131) px (tiles of 160-192 px after alignment) the test suite holds: the
  relative difference of sigma below 1 % at the median, below 2 % at the 95th percentile
  where confidence > 0.5, and the confidence within 0.02 at the 95th percentile. Values
  propagated into wide flat regions (such as the sky of the camera image) can differ by tens
  of per cent, because the fill reaches farther than a small tile; the pixels that differ by
  more than 10 % have a mean confidence below 0.1. With 256-px tiles the camera image's 95th
  percentile over all pixels is at most 3 %, and larger tiles agree more closely still.

Input is read lazily from Zarr, OME-Zarr and (tiled) TIFF through tifffile's Zarr store, in its
own dtype: 8- and 16-bit data go into the overlap exchange as they are, and are converted to
float32 only inside each tile. Maps are written to OME-Zarr (NGFF 0.4, multiscale, physical
scale and units, readable by napari's OME-Zarr reader) or to tiled OME-TIFF.

Dask is an optional dependency: ``pip install 'defocus[dask]'``.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import focus as _focus
from ._array import luminance
from ._errors import BadInputError
from .blurmap import PSF_FAMILIES, REACH
from .blurmap import blur_map as _blur_map
from .focus import DEFAULT_MEASURE, DEFAULT_SCALE, get_measure
from .io import PixelSize, _short, parse_pixel_size, remove_stale_partials
from .noise import noise_variance_map

if TYPE_CHECKING:
    import dask.array as da

__all__ = [
    "MAX_SIGMA",
    "MIN_FOCUS",
    "QC_COLUMNS",
    "TASKS",
    "LazyImage",
    "TiledBlurMap",
    "blur_map",
    "blur_support",
    "focus_map",
    "focus_support",
    "is_zarr",
    "open_image",
    "qc_one",
    "read_ome_zarr",
    "run_batch",
    "start_client",
    "write_ome_zarr",
    "write_qc_table",
    "write_tiled_tiff",
]

#: Tile side used when the caller gives no chunks, in px.
DEFAULT_CHUNK = 2048
# Blur-map tiles start on multiples of this many px, so that every tile's 4-px cells, its
# block-mean pyramid (down to 16 px) and its 32-px noise blocks sit on the whole image's grid.
_BLUR_ALIGN = 32
# NGFF units are UDUNITS-2 names.
_NGFF_UNITS = {
    "m": "meter",
    "cm": "centimeter",
    "mm": "millimeter",
    "µm": "micrometer",
    "nm": "nanometer",
    "pm": "picometer",
    "Å": "angstrom",
}


_INSTALL = "install it with: pip install 'defocus[dask]'"


def _dask() -> Any:
    """Import dask.array, or explain how to get it."""
    try:
        import dask.array as da
    except ImportError:
        raise ImportError(f"defocus.parallel needs Dask; {_INSTALL}") from None
    return da


def _distributed() -> Any:
    """Import dask.distributed, or explain how to get it."""
    try:
        import distributed
    except ImportError:
        raise ImportError(f"batches need dask.distributed; {_INSTALL}") from None
    return distributed


# --------------------------------------------------------------------------------------------
# Supports and chunking
# --------------------------------------------------------------------------------------------


def _gauss_radius(sigma: float, truncate: float = 4.0) -> int:
    """Radius of scipy.ndimage's Gaussian kernel (its own rounding rule)."""
    return int(truncate * float(sigma) + 0.5)


def _wavelet_reach() -> int:
    import pywt

    return len(pywt.Wavelet("db6").dec_lo) // 2  # correlate1d centres an even filter at L // 2


# Reach, in px, of each measure's per-pixel response (with its default options) before the
# Gaussian window averages it.
_RESPONSE_REACH = {
    "gradient_ratio": lambda: _gauss_radius(3.0),  # coarse Gaussian derivative, sigma 3
    "tenengrad": lambda: 1,  # Sobel
    "gradient_energy": lambda: 1,
    "brenner": lambda: 2,
    "acutance": lambda: _gauss_radius(0.5),
    "laplacian_energy": lambda: 1,
    "sum_modified_laplacian": lambda: 1,
    "laplacian_variance": lambda: 1,
    "local_variance": lambda: 0,
    "normalized_variance": lambda: 0,
    "vollath_f4": lambda: 2,
    "wavelet_energy": _wavelet_reach,
    "spectral_slope": lambda: _gauss_radius(max(_focus._SLOPE_SIGMAS)),
}


def focus_support(measure: str = DEFAULT_MEASURE, *, scale: float = DEFAULT_SCALE) -> int:
    """Radius, in px, of the neighbourhood one value of a focus map depends on.

    This is the overlap depth :func:`focus_map` uses: the reach of the measure's per-pixel
    response plus the radius of its Gaussian window (``scale`` px, truncated at 3 sigma).

    Raises
    ------
    BadInputError
        For a measure with no finite support (``spectral_ratio`` works on the whole spectrum).

    Examples
    --------
    >>> focus_support("tenengrad", scale=5)
    16
    >>> focus_support("gradient_ratio", scale=5)
    27
    """
    get_measure(measure)  # a clear error for an unknown name
    if measure not in _RESPONSE_REACH:
        raise BadInputError(
            f"{measure} filters the spectrum of the whole image and cannot be tiled; "
            "use spectral_slope or gradient_ratio for large images"
        )
    if not (np.isfinite(scale) and scale > 0):
        raise BadInputError(f"scale must be a positive number of pixels, got {scale!r}")
    return _RESPONSE_REACH[measure]() + _gauss_radius(scale, _focus._TRUNCATE)


def _merge_small(sizes: Sequence[int], minimum: int) -> tuple[int, ...]:
    """Merge chunks smaller than ``minimum`` into a neighbour (overlap needs depth <= chunk)."""
    out: list[int] = []
    for s in sizes:
        if out and out[-1] < minimum:
            out[-1] += s
        else:
            out.append(s)
    if len(out) > 1 and out[-1] < minimum:
        last = out.pop()
        out[-1] += last
    return tuple(out)


def _grid_chunks(n: int, size: int, *, align: int, minimum: int) -> tuple[int, ...]:
    """Chunks of about ``size`` (at least ``minimum``) px that start on multiples of ``align``."""
    size = max(align, -(-max(size, minimum) // align) * align)
    sizes = [size] * (n // size) + ([n % size] if n % size else [])
    return _merge_small(sizes, minimum)


def _as_chunks(chunks: int | Sequence[int] | None) -> tuple[int, int]:
    if chunks is None:
        return DEFAULT_CHUNK, DEFAULT_CHUNK
    if isinstance(chunks, int | np.integer):
        chunks = (int(chunks), int(chunks))
    cy, cx = (int(c) for c in chunks)
    if cy < 16 or cx < 16:
        raise BadInputError(f"chunks must be at least 16 px, got {(cy, cx)}")
    return cy, cx


def _plane(image: Any, chunks: int | Sequence[int] | None, channel_axis: int | None) -> da.Array:
    """A 2-D dask array: the image itself (dtype kept) or, with channels, its luminance."""
    da = _dask()
    if not isinstance(image, da.Array):
        image = np.asarray(image)
        if image.dtype.kind not in "uifb":
            raise BadInputError(f"image has unsupported dtype {image.dtype}")
        cy, cx = _as_chunks(chunks)
        full = tuple(-1 for _ in range(image.ndim))
        image = da.from_array(image, chunks=full if image.size <= cy * cx else "auto")
    if channel_axis is None:
        if image.ndim != 2:
            raise BadInputError(
                f"expected a 2-D image, got shape {image.shape}; pass channel_axis for colour"
            )
    else:
        ax = channel_axis % image.ndim
        if image.ndim != 3:
            raise BadInputError(f"expected a 2-D image with channels, got shape {image.shape}")
        image = image.rechunk({ax: -1})
        # Colour is combined per chunk, so the raw dtype is still what is read from disk.
        image = image.map_blocks(
            luminance, channel_axis=ax, drop_axis=ax, dtype=np.float32, meta=np.empty((0, 0))
        )
    if image.dtype.kind not in "uifb":
        raise BadInputError(f"image has unsupported dtype {image.dtype}")
    if min(image.shape) < 1:
        raise BadInputError(f"image has zero size {image.shape}")
    return image


# --------------------------------------------------------------------------------------------
# Image-wide statistics
# --------------------------------------------------------------------------------------------


def _mosaic(plane: da.Array, *, tile: int = 256, n: int = 4) -> np.ndarray:
    """Up to n x n tiles spread evenly over the image, side by side: a small, faithful sample."""
    h, w = plane.shape
    if h <= n * tile and w <= n * tile:
        return np.asarray(plane.compute())
    th, tw = min(tile, h), min(tile, w)
    ys = np.linspace(0, h - th, min(n, h // th)).astype(int)
    xs = np.linspace(0, w - tw, min(n, w // tw)).astype(int)
    rows = [[plane[y : y + th, x : x + tw] for x in xs] for y in ys]
    return np.asarray(_dask().block(rows).compute())


def blur_support() -> int:
    """Overlap depth, in px, that tiled blur maps use by default.

    Read from the method's own reach (:data:`defocus.blurmap.REACH`: its largest scale to 3
    standard deviations and a margin for the fill), plus one 32-px block of the grid, rounded up
    to a multiple of 32 px.

    Examples
    --------
    >>> blur_support() % 32
    0
    """
    reach = REACH + _BLUR_ALIGN
    return int(-(-reach // _BLUR_ALIGN) * _BLUR_ALIGN)


def _blur_noise(plane: da.Array, psf: str) -> float:
    """The noise level :func:`defocus.blur_map` finds on a mosaic sampled from the image."""
    sample = _mosaic(plane)
    if sample.min() == sample.max():
        return 0.0
    return float(_blur_map(sample, psf=psf).noise_sigma)


# --------------------------------------------------------------------------------------------
# Tiled focus maps
# --------------------------------------------------------------------------------------------


def _gradient_ratio_block(
    block: np.ndarray, noise_sd: np.ndarray, *, scale: float, contrast_floor: float
) -> np.ndarray:
    return _focus.gradient_ratio(
        block, scale=scale, noise_sigma=noise_sd, contrast_floor=contrast_floor
    )


# The local noise map's reach: two 32-px blocks (its median runs over 5 x 5 blocks).
_NOISE_HALO = 64


def _noise_std_map(plane: da.Array, *, spectral_weight: float, step: float) -> da.Array:
    """:func:`defocus.noise.noise_variance_map` (as a standard deviation) of a lazy image.

    Tiles are multiples of the 32-px noise block and overlap by two blocks, so every block sees
    the neighbours its 5 x 5 median needs, and the result equals the in-memory map.
    """
    b = 32
    grid = tuple(
        _grid_chunks(n, max(c), align=b, minimum=_NOISE_HALO)
        for n, c in zip(plane.shape, plane.chunks, strict=True)
    )
    aligned = plane.rechunk(grid)
    dy, dx = (0 if len(c) == 1 else _NOISE_HALO for c in aligned.chunks)

    def block(x: np.ndarray) -> np.ndarray:
        v = noise_variance_map(x, spectral_weight=spectral_weight, step=step)
        return np.sqrt(v).astype(np.float32)

    return aligned.map_overlap(block, depth={0: dy, 1: dx}, boundary="none", dtype=np.float32)


def _focus_block(block: np.ndarray, *, measure: str, scale: float) -> np.ndarray:
    return get_measure(measure).func(block, scale=scale)


def _coarse_energy_block(block: np.ndarray, *, scale: float, coarse: float) -> np.ndarray:
    return _focus._coarse_energy(block.astype(np.float32, copy=False), scale, coarse)


def focus_map(
    image: Any,
    *,
    measure: str = DEFAULT_MEASURE,
    scale: float = DEFAULT_SCALE,
    channel_axis: int | None = None,
    chunks: int | Sequence[int] | None = None,
) -> da.Array:
    """Lazy, tiled :func:`defocus.focus_map` of a large image.

    Parameters
    ----------
    image : ndarray or dask array
        2-D greyscale, or multichannel with ``channel_axis``; any integer or float dtype
        (kept as it is until each tile is computed).
    measure, scale, channel_axis
        As for :func:`defocus.focus_map`.
    chunks : int or (int, int), optional
        Rechunk to this tile size (px); default: the dask array's own chunks, or 2048 px for
        a numpy array. Tiles smaller than the overlap depth are merged into a neighbour.

    Returns
    -------
    dask array of float32
        Same shape as the image (without channels). Equal to the in-memory map: bit for bit
        for local measures, to float32 round-off for those with an image-wide statistic (see
        the module docstring).

    Examples
    --------
    >>> from skimage import data
    >>> import defocus
    >>> image = data.camera()
    >>> lazy = focus_map(image, measure="tenengrad", chunks=(97, 131))
    >>> bool((lazy.compute() == defocus.focus_map(image, measure="tenengrad")).all())
    True
    """
    depth = focus_support(measure, scale=scale)
    plane = _plane(image, chunks, channel_axis)
    if chunks is not None:
        plane = plane.rechunk(_as_chunks(chunks))
    plane = plane.rechunk(tuple(_merge_small(c, depth) for c in plane.chunks))
    if bool(plane.min().compute() == plane.max().compute()):
        return _dask().zeros(plane.shape, dtype=np.float32, chunks=plane.chunks)
    kw: dict[str, Any] = {"depth": depth, "boundary": "none", "dtype": np.float32}
    if measure != "gradient_ratio":
        return plane.map_overlap(_focus_block, measure=measure, scale=scale, **kw)
    # gradient_ratio's contrast floor is image-wide, and its noise is measured in 32-px blocks
    # on the image's grid: both are computed once here and given to every tile, so that tiles
    # equal the in-memory map.
    coarse = float(_focus.gradient_ratio.__kwdefaults__["coarse"])
    fine = float(_focus.gradient_ratio.__kwdefaults__["fine"])
    e_coarse = plane.map_overlap(_coarse_energy_block, scale=scale, coarse=coarse, **kw)
    floor = _focus._contrast_floor(float(e_coarse.mean(dtype=np.float32).compute()))
    sample = _mosaic(plane)
    noise_sd = _noise_std_map(
        plane, spectral_weight=_focus._spectral_weight(sample, fine), step=_focus._step(sample)
    ).rechunk(plane.chunks)
    return _dask().map_overlap(
        _gradient_ratio_block,
        plane,
        noise_sd,
        scale=scale,
        contrast_floor=floor,
        align_arrays=False,
        **kw,
    )


# --------------------------------------------------------------------------------------------
# Tiled blur maps
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TiledBlurMap:
    """Lazy blur map of a large image.

    Attributes
    ----------
    data : dask array of float32, shape (2, H, W)
        ``data[0]`` is sigma (px), ``data[1]`` the confidence in [0, 1].
    noise_sigma : float
        Noise level passed to every tile, in input intensity units.
    psf : str
        PSF family.
    depth : int
        Overlap between tiles, px.
    pixel_size : PixelSize or None
        Physical pixel size, when known.
    """

    data: da.Array
    noise_sigma: float
    psf: str
    depth: int
    pixel_size: PixelSize | None = None

    @property
    def sigma(self) -> da.Array:
        """Blur sigma in px (lazy)."""
        return self.data[0]

    @property
    def confidence(self) -> da.Array:
        """Confidence in [0, 1] (lazy)."""
        return self.data[1]

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape[1:]


def _blur_block(block: np.ndarray, *, psf: str, noise_sigma: float) -> np.ndarray:
    if block.min() == block.max():
        # A tile that is constant even with its overlap holds no blur information.
        return np.zeros((2, *block.shape), np.float32)
    bm = _blur_map(block, psf=psf, noise_sigma=noise_sigma)
    return np.stack([bm.sigma, bm.confidence])


def blur_map(
    image: Any,
    *,
    psf: str = "gauss",
    pixel_size: float | str | PixelSize | None = None,
    noise_sigma: float | None = None,
    channel_axis: int | None = None,
    chunks: int | Sequence[int] | None = None,
    depth: int | None = None,
) -> TiledBlurMap:
    """Lazy, tiled :func:`defocus.blur_map` of a large image.

    Parameters
    ----------
    image : ndarray or dask array
        2-D greyscale, or multichannel with ``channel_axis``; any integer or float dtype.
    psf, channel_axis
        As for :func:`defocus.blur_map`.
    pixel_size : float, str or PixelSize, optional
        Metres per pixel, ``"2.5nm"``, or a :class:`defocus.io.PixelSize`.
    noise_sigma : float, optional
        Noise standard deviation (intensity units) given to every tile. By default it is
        estimated once, by :func:`defocus.blur_map`, on a mosaic of 16 tiles of 256 px
        sampled evenly across the image (the whole image if it is at most 1024 px a side).
    chunks : int or (int, int), optional
        Tile size in px (default 2048), rounded up to a multiple of 32 so that tiles sit on
        the method's grid; a last tile smaller than ``depth`` is merged into its neighbour.
    depth : int, optional
        Overlap between tiles in px, rounded up to a multiple of 32; default
        :func:`blur_support`.

    Returns
    -------
    TiledBlurMap
        ``data`` of shape (2, H, W): sigma and confidence. See the module docstring for how
        closely it matches the in-memory map.

    Examples
    --------
    >>> from skimage import data
    >>> lazy = blur_map(data.camera(), chunks=(97, 131), noise_sigma=2.0)
    >>> lazy.sigma.shape, lazy.sigma.dtype, lazy.data.chunks[1]
    ((512, 512), dtype('float32'), (512,))
    """
    da = _dask()
    if psf not in PSF_FAMILIES:
        raise BadInputError(f"unknown psf {psf!r}; choose from {', '.join(PSF_FAMILIES)}")
    if noise_sigma is not None and not (np.isfinite(noise_sigma) and noise_sigma >= 0):
        raise BadInputError(f"noise_sigma must be a finite number >= 0, got {noise_sigma!r}")
    depth = blur_support() if depth is None else int(depth)
    depth = max(_BLUR_ALIGN, -(-depth // _BLUR_ALIGN) * _BLUR_ALIGN)
    plane = _plane(image, chunks, channel_axis)
    cy, cx = _as_chunks(chunks)
    grid = tuple(
        _grid_chunks(n, c, align=_BLUR_ALIGN, minimum=depth)
        for n, c in zip(plane.shape, (cy, cx), strict=True)
    )
    plane = plane.rechunk(grid)
    if noise_sigma is None:
        noise_sigma = _blur_noise(plane, psf)
    if isinstance(pixel_size, int | float):
        pixel_size = PixelSize(float(pixel_size), float(pixel_size), "m")
    # an axis held in one chunk needs no overlap (and Dask refuses one wider than the axis)
    dy, dx = (0 if len(c) == 1 else depth for c in plane.chunks)
    padded = da.overlap.overlap(plane, depth={0: dy, 1: dx}, boundary="none")
    maps = padded.map_blocks(
        _blur_block,
        psf=psf,
        noise_sigma=float(noise_sigma),
        new_axis=0,
        chunks=((2,), *padded.chunks),
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
    )
    data = da.overlap.trim_internal(maps, {0: 0, 1: dy, 2: dx}, boundary="none")
    return TiledBlurMap(
        data=data,
        noise_sigma=float(noise_sigma),
        psf=psf,
        depth=depth,
        pixel_size=parse_pixel_size(pixel_size),
    )


# --------------------------------------------------------------------------------------------
# Lazy input
# --------------------------------------------------------------------------------------------


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
        node = zarr.open(str(p), mode="r")
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
                    float(scale[names.index("x")]), float(scale[names.index("y")]), units["x"]
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
    from .io import _mp

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
        Refuse planes whose metadata claims more pixels (default 2**40); ``None`` lifts it. A
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
    da = _dask()
    from .io import _check_path, _is_tiff, _layout, _tiff_pixel_size

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
            raise BadInputError(f"{p}: lazy reading needs a Zarr store or a TIFF file")
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
            raise BadInputError(f"{p}: not a readable TIFF ({_short(exc)})") from None
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
        cy, cx = _as_chunks(chunks)
        spec = {0: cy, 1: cx} if channel_axis in (None, 2, -1) else {1: cy, 2: cx}
        data = data.rechunk(spec)
    if override is not None:
        ps, source = override, "override"
    return LazyImage(data, channel_axis, ps, source, p)


def _read_tiff_chunk(path: str, block_info: dict | None = None) -> np.ndarray:
    """One chunk of a TIFF's first series, read through tifffile's Zarr store."""
    import tifffile
    import zarr

    region = tuple(slice(a, b) for a, b in block_info[None]["array-location"])
    try:
        with tifffile.TiffFile(path) as tf:
            return zarr.open(tf.series[0].aszarr(level=0), mode="r")[region]
    except MemoryError:
        raise BadInputError(f"{path}: not enough memory to decode a tile; lower --chunks") from None
    except Exception as exc:  # damaged tile data: the file, not our code, is at fault
        raise BadInputError(f"{path}: cannot decode a tile ({_short(exc)})") from None


def read_ome_zarr(path: str | os.PathLike, *, level: int = 0) -> tuple[da.Array, dict[str, Any]]:
    """Open one resolution level of an OME-Zarr image: (lazy array, NGFF multiscales entry).

    Examples
    --------
    >>> import tempfile, os, numpy as np
    >>> out = os.path.join(tempfile.mkdtemp(), "m.zarr")
    >>> _ = write_ome_zarr(out, np.ones((2, 600, 700), np.float32), pixel_size="0.5um")
    >>> arr, meta = read_ome_zarr(out, level=1)
    >>> arr.shape, meta["axes"][1]["unit"]
    ((2, 300, 350), 'micrometer')
    """
    import zarr

    da = _dask()
    group = zarr.open_group(str(path), mode="r")
    ms = _ngff(dict(group.attrs))
    if ms is None:
        raise BadInputError(f"{path}: no OME-NGFF multiscales metadata")
    return da.from_zarr(group[ms["datasets"][level]["path"]]), ms


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` only on success."""
    from .io import _tmp_prefix

    path.parent.mkdir(parents=True, exist_ok=True)
    # the writer's pid in the name lets the next run remove what a killed one left
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_tmp_prefix(path.name), suffix=".partial"))
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _ngff_metadata(
    name: str,
    n_levels: int,
    n_channels: int,
    pixel_size: PixelSize | None,
    channel_names: Sequence[str],
    windows: Sequence[tuple[float, float]],
) -> dict[str, Any]:
    sy, sx = (1.0, 1.0) if pixel_size is None else (pixel_size.y, pixel_size.x)
    unit = {} if pixel_size is None else {"unit": _NGFF_UNITS[pixel_size.unit]}
    axes = [
        {"name": "c", "type": "channel"},
        {"name": "y", "type": "space", **unit},
        {"name": "x", "type": "space", **unit},
    ]
    datasets = []
    for k in range(n_levels):
        f = 2.0**k
        # a 2^k block mean is centred (2^k - 1) / 2 level-0 pixels from the block's first pixel
        shift = (f - 1) / 2
        datasets.append(
            {
                "path": str(k),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [1.0, sy * f, sx * f]},
                    {"type": "translation", "translation": [0.0, sy * shift, sx * shift]},
                ],
            }
        )
    channels = [
        {
            "label": label,
            "color": "FFFFFF",
            "active": True,
            "window": {"start": lo, "end": hi, "min": lo, "max": hi},
        }
        for label, (lo, hi) in zip(channel_names, windows, strict=True)
    ]
    return {
        "multiscales": [
            {
                "version": "0.4",
                "name": name,
                "axes": axes,
                "datasets": datasets,
                "type": "mean",
                "metadata": {"method": "2 x 2 block mean (dask.array.coarsen)"},
            }
        ],
        "omero": {"version": "0.4", "channels": channels[:n_channels], "rdefs": {}},
    }


def write_ome_zarr(
    path: str | os.PathLike,
    data: Any,
    *,
    pixel_size: str | PixelSize | None = None,
    channel_names: Sequence[str] | None = None,
    chunk: int = 1024,
    min_size: int = 256,
    attrs: dict[str, Any] | None = None,
) -> Path:
    """Write a (C, H, W) or (H, W) map as a multiscale OME-Zarr image (NGFF 0.4), atomically.

    Level 0 is ``data`` itself; each further level is the 2 x 2 block mean of the one before,
    read back from the store (so a lazy ``data`` is computed once), until the larger side is
    at most ``min_size``. Each level's ``scale`` and ``translation`` give the physical pixel
    size and the block centres, with the unit on the axes, so napari and other NGFF readers
    show the map at its physical scale. The store is built in a hidden folder beside ``path``
    and renamed into place, so a killed run leaves no half-written store under ``path``.

    Parameters
    ----------
    path : str or path-like
        Output ``.zarr`` folder; replaced if it exists.
    data : ndarray or dask array
        Map(s) to write, any real dtype.
    pixel_size : str or PixelSize, optional
        Physical pixel size of level 0.
    channel_names : sequence of str, optional
        One label per channel (NGFF ``omero`` metadata).
    chunk : int
        Zarr chunk side, px.
    min_size : int
        Stop adding levels once the larger side is at most this.
    attrs : dict, optional
        Extra JSON attributes stored on the image group.

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile, os, json
    >>> out = os.path.join(tempfile.mkdtemp(), "m.zarr")
    >>> _ = write_ome_zarr(out, np.zeros((1000, 600), np.float32), pixel_size="2nm")
    >>> meta = json.loads(Path(out, ".zattrs").read_text())["multiscales"][0]
    >>> [d["coordinateTransformations"][0]["scale"] for d in meta["datasets"]]
    [[1.0, 2.0, 2.0], [1.0, 4.0, 4.0], [1.0, 8.0, 8.0]]
    """
    import zarr

    da = _dask()
    dest = Path(path)
    arr = data if isinstance(data, da.Array) else da.from_array(np.asarray(data))
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise BadInputError(f"OME-Zarr output needs a (C, H, W) or (H, W) map, got {arr.shape}")
    names = list(channel_names or [f"channel {i}" for i in range(arr.shape[0])])
    if len(names) != arr.shape[0]:
        raise BadInputError(f"{len(names)} channel names for {arr.shape[0]} channels")
    ps = parse_pixel_size(pixel_size)
    with _atomic_dir(dest) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=2)
        level, n_levels, windows = arr, 0, []
        while True:
            zc = (1, min(chunk, level.shape[1]), min(chunk, level.shape[2]))
            z = group.create_array(
                str(n_levels),
                shape=level.shape,
                chunks=zc,
                dtype=level.dtype,
                chunk_key_encoding={"name": "v2", "separator": "/"},
                fill_value=0,
            )
            # Every dask chunk must cover whole zarr chunks, or two tasks would write one.
            da.store(level.rechunk(zc), z, lock=False)
            stored = da.from_zarr(z)
            if n_levels == 0:
                lo = stored.min(axis=(1, 2))
                hi = stored.max(axis=(1, 2))
                lo, hi = da.compute(lo, hi)
                windows = [(float(a), float(b)) for a, b in zip(lo, hi, strict=True)]
            n_levels += 1
            if max(level.shape[1:]) <= min_size or min(level.shape[1:]) < 2:
                break
            level = da.coarsen(np.mean, stored, {1: 2, 2: 2}, trim_excess=True).astype(level.dtype)
        meta = _ngff_metadata(dest.stem, n_levels, arr.shape[0], ps, names, windows)
        group.attrs.update({**meta, **({"defocus": attrs} if attrs else {})})
    return dest


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

    from .io import atomic_path

    da = _dask()
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

    meta: dict[str, Any] = {"axes": "YX"}
    kwargs: dict[str, Any] = {}
    if ps is not None:
        meta.update(
            PhysicalSizeX=ps.x,
            PhysicalSizeXUnit=ps.unit,
            PhysicalSizeY=ps.y,
            PhysicalSizeYUnit=ps.unit,
        )
        cm = ps.to("cm")
        kwargs.update(resolution=(1 / cm.x, 1 / cm.y), resolutionunit="CENTIMETER")
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


# --------------------------------------------------------------------------------------------
# QC batches over many files
# --------------------------------------------------------------------------------------------

#: Tasks :func:`run_batch` knows.
TASKS = ("focus", "map", "identify")
#: Columns of the QC table, in order.
QC_COLUMNS = (
    "input",
    "sha256",
    "task",
    "status",
    "height",
    "width",
    "focus_score",
    "sigma_p10",
    "sigma_median",
    "sigma_p90",
    "sharpest_axis",
    "sharpest_position",
    "out_of_focus",
    "psf_model",
    "psf_diameter",
    "psf_confidence",
    "pixel_size",
    "error",
)
#: Default out-of-focus rule for ``task="focus"``: a mean gradient_ratio below this. On
#: scikit-image's natural samples a Gaussian blur of sigma 2 px brings it to 0.4-1.3.
MIN_FOCUS = 1.0
#: Default out-of-focus rule for ``task="map"`` and ``"identify"``: blur sigma above this (px).
MAX_SIGMA = 2.0


def _finite(x: Any) -> float | None:
    x = float(x)
    return round(x, 6) if math.isfinite(x) else None


# Column types, to read rows of an earlier run's qc.csv back as they were written.
_QC_INT = ("height", "width")
_QC_FLOAT = (
    "focus_score",
    "sigma_p10",
    "sigma_median",
    "sigma_p90",
    "sharpest_position",
    "psf_diameter",
    "psf_confidence",
)


def batch_outputs(stem: str, task: str) -> list[str]:
    """Names of the files one image's QC task writes, its row (``<stem>.qc.<task>.json``) last.

    They carry ``.qc.``, so a batch never writes over what ``defocus focus`` or ``map`` wrote.

    Examples
    --------
    >>> batch_outputs("a", "map")
    ['a.qc.sigma.tif', 'a.qc.confidence.tif', 'a.qc.map.json']
    """
    maps = {
        "focus": [f"{stem}.qc.focus.tif"],
        "map": [f"{stem}.qc.sigma.tif", f"{stem}.qc.confidence.tif"],
        "identify": [],
    }[task]
    return [*maps, f"{stem}.qc.{task}.json"]


def _outputs(stem: str, task: str) -> list[str]:
    return batch_outputs(stem, task)[:-1]


def _marker(outdir: Path, stem: str, task: str) -> Path:
    return outdir / batch_outputs(stem, task)[-1]


def file_sha256(path: str | os.PathLike) -> str | None:
    """SHA-256 of a file's content, or None where it cannot be read."""
    import hashlib

    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def _qc_work(path: str, outdir: Path, stem: str, task: str, opts: dict[str, Any]) -> dict:
    from .focalplane import focal_plane
    from .focus import focus_profile, sharpest_band
    from .io import read_image, write_map

    img = read_image(
        path, pixel_size=opts["pixel_size"], index=opts["index"], max_pixels=opts["max_pixels"]
    )
    lum = img.luminance
    row: dict[str, Any] = {
        "height": lum.shape[0],
        "width": lum.shape[1],
        "pixel_size": None if img.pixel_size is None else str(img.pixel_size),
    }
    fmap = get_measure(opts["measure"]).func(lum, scale=opts["scale"])
    row["focus_score"] = _finite(fmap.mean(dtype=np.float64))
    if task == "focus":
        band = sharpest_band(focus_profile(fmap, axis="rows"))
        row.update(sharpest_axis="rows", sharpest_position=_finite(band.peak))
        row["out_of_focus"] = bool(row["focus_score"] < opts["min_focus"])
        write_map(outdir / _outputs(stem, task)[0], fmap, pixel_size=img.pixel_size)
    elif task == "map":
        bm = _blur_map(lum, psf=opts["psf"], pixel_size=img.pixel_size)
        q = bm.summary()["sigma"]  # None: the image supports no blur value
        nan = {"p10": math.nan, "median": math.nan, "p90": math.nan}
        row.update({f"sigma_{k}": _finite(v) for k, v in (q or nan).items()})
        with contextlib.suppress(BadInputError):  # no confident measurement: no band
            fp = focal_plane(bm)
            if fp.significant:  # otherwise no line to report
                row.update(sharpest_axis=fp.axis, sharpest_position=_finite(fp.position))
        row["out_of_focus"] = None if q is None else bool(q["median"] > opts["max_sigma"])
        sigma_file, confidence_file = _outputs(stem, task)
        write_map(outdir / sigma_file, bm.sigma, pixel_size=img.pixel_size)
        write_map(outdir / confidence_file, bm.confidence, pixel_size=img.pixel_size)
    else:
        from .kernel import identify

        # One uniform blur for the whole image: its sigma fills sigma_median, and p10/p90,
        # which describe a spread, stay empty.
        ident = identify(lum)
        row.update(
            psf_model=ident.model,
            psf_diameter=None if ident.diameter is None else _finite(ident.diameter),
            psf_confidence=_finite(ident.confidence),
            sigma_median=_finite(ident.sigma),
        )
        row["out_of_focus"] = bool(ident.sigma > opts["max_sigma"])
    return row


def qc_one(path: str, outdir: str | os.PathLike, task: str, opts: dict[str, Any]) -> dict:
    """Run one QC task on one file and write its outputs; never raises for a bad file.

    The row is written last, as ``<stem>.<task>.json``, and marks the file as done: a batch
    that is run again skips it. A failure is returned in the row's ``error`` column (and not
    marked done, so that a rerun tries the file again).
    """
    from .io import write_json

    out = Path(outdir)
    stem = _stem(path)
    row: dict[str, Any] = dict.fromkeys(QC_COLUMNS)
    row.update(input=str(path), task=task)
    try:
        row.update(_qc_work(str(path), out, stem, task, opts))
        row["sha256"] = file_sha256(path)
    except BadInputError as exc:
        row.update(status="bad input", error=str(exc))
        return row
    except MemoryError:
        row.update(status="bad input", error=f"{path}: not enough memory to analyse it")
        return row
    except Exception as exc:
        row.update(status="failed", error=f"internal error: {type(exc).__name__}: {exc}")
        return row
    row["status"] = "done"
    write_json(_marker(out, stem, task), row)
    return row


def _stem(path: str | os.PathLike) -> str:
    from .cli._common import stem_of

    return stem_of(path)


def earlier_input(outdir: str | os.PathLike, stem: str, task: str) -> str | None:
    """The input whose row ``<stem>.qc.<task>.json`` in ``outdir`` holds, or None."""
    import json

    try:
        row = json.loads(_marker(Path(outdir), stem, task).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return str(row["input"]) if isinstance(row, dict) and row.get("input") else None


def _load_done(path: str, outdir: Path, task: str) -> dict | None:
    """The row of a file a previous run completed, or None."""
    import json

    stem = _stem(path)
    marker = _marker(outdir, stem, task)
    if not marker.is_file():
        return None
    try:
        row = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if row.get("input") != str(path) or not all(
        (outdir / name).is_file() for name in _outputs(stem, task)
    ):
        return None
    if row.get("sha256") and row["sha256"] != file_sha256(path):
        return None  # the file changed since: analyse it again
    return {**dict.fromkeys(QC_COLUMNS), **row, "status": "skipped (done before)"}


def _qc_key(row: dict) -> tuple[str, str, str]:
    inp = str(row.get("input") or "")
    return os.path.realpath(inp), str(row.get("sha256") or ""), str(row.get("task") or "")


def _typed(row: dict[str, str]) -> dict[str, Any]:
    """A row read back from CSV with the types it was written with."""
    out: dict[str, Any] = {}
    for k in QC_COLUMNS:
        v = row.get(k)
        if v in (None, ""):
            out[k] = None
        elif k in _QC_INT:
            out[k] = int(float(v))
        elif k in _QC_FLOAT:
            out[k] = float(v)
        elif k == "out_of_focus":
            out[k] = v == "True"
        else:
            out[k] = v
    return out


@contextlib.contextmanager
def _locked(outdir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``outdir/.qc.lock`` (POSIX ``flock``; a no-op elsewhere)."""
    try:
        import fcntl
    except ImportError:  # Windows: runs into one folder are not serialised
        yield
        return
    with open(outdir / ".qc.lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def write_qc_table(outdir: str | os.PathLike, rows: Sequence[dict]) -> list[Path]:
    """Merge ``rows`` into ``qc.csv`` (and ``qc.parquet`` when pyarrow is importable).

    Rows an earlier run wrote are kept; a row for the same input file (resolved path), content
    (SHA-256) and task replaces the earlier one. The read, merge and write happen under a lock
    on ``.qc.lock``, so batches run at the same time into one folder lose no row, and each file
    is replaced atomically.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> row = dict.fromkeys(QC_COLUMNS) | {"input": "a.tif", "focus_score": 2.5}
    >>> [p.name for p in write_qc_table(d, [row])][0]
    'qc.csv'
    >>> _ = write_qc_table(d, [row | {"input": "b.tif"}])
    >>> [r["input"] for r in read_qc_table(d)]
    ['a.tif', 'b.tif']
    """
    import csv
    import io as _stdio

    from .io import atomic_path

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        merged = {_qc_key(r): r for r in read_qc_table(out)}
        for row in rows:
            merged.pop(_qc_key(row), None)  # a newer row goes last, in this run's order
            merged[_qc_key(row)] = row
        table = list(merged.values())
        buf = _stdio.StringIO()
        writer = csv.DictWriter(buf, fieldnames=QC_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in table:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in QC_COLUMNS})
        written = [out / "qc.csv"]
        with atomic_path(written[0]) as tmp:
            tmp.write_text(buf.getvalue(), encoding="utf-8")
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            return written
        arrow = pa.Table.from_pylist([{k: r.get(k) for k in QC_COLUMNS} for r in table])
        written.append(out / "qc.parquet")
        with atomic_path(written[1]) as tmp:
            pq.write_table(arrow, tmp)
    return written


def read_qc_table(outdir: str | os.PathLike) -> list[dict]:
    """The rows of ``outdir/qc.csv`` (typed as written), or ``[]`` where there is none.

    A table that cannot be parsed is refused rather than silently replaced.
    """
    import csv

    f = Path(outdir) / "qc.csv"
    if not f.is_file():
        return []
    try:
        with open(f, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "input" not in reader.fieldnames:
                raise ValueError("no header with an input column")
            return [_typed(r) for r in reader]
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise BadInputError(
            f"{f}: cannot be merged ({_short(exc)}); move it away or choose another -o"
        ) from None


class _Progress:
    """A one-line progress bar on stderr (a line per 5 % when stderr is not a terminal)."""

    def __init__(self, total: int, *, enabled: bool = True) -> None:
        import sys
        import time

        self.total, self.done, self.failed = total, 0, 0
        self.stream = sys.stderr
        self.enabled = enabled and total > 0
        self.tty = self.stream.isatty()
        self.start = time.perf_counter()
        self.step = max(1, total // 20)

    def update(self, ok: bool) -> None:
        import time

        self.done += 1
        self.failed += not ok
        if not self.enabled or not (
            self.tty or self.done % self.step == 0 or self.done == self.total
        ):
            return
        rate = self.done / max(time.perf_counter() - self.start, 1e-9)
        eta = (self.total - self.done) / rate
        n = int(30 * self.done / self.total)
        text = (
            f"batch [{'#' * n}{'.' * (30 - n)}] {self.done}/{self.total}, {self.failed} failed, "
            f"{rate:.1f} files/s, ETA {eta:.0f} s"
        )
        end = "" if self.tty and self.done < self.total else "\n"
        print(("\r" if self.tty else "") + text, end=end, file=self.stream, flush=True)


def start_client(
    *, workers: int | None = None, scheduler: str | None = None, processes: bool = True
) -> Any:
    """A dask.distributed Client: attached to ``scheduler``, or on a new LocalCluster.

    The LocalCluster has ``workers`` single-threaded workers (default: one per CPU core),
    separate processes unless ``processes=False``; close the client and its cluster when done.
    """
    import logging

    distributed = _distributed()
    if scheduler:
        try:
            return distributed.Client(scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            raise BadInputError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    n = workers or os.cpu_count() or 1
    if n < 1:
        raise BadInputError(f"--workers must be at least 1, got {n}")
    cluster = distributed.LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=processes,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    return distributed.Client(cluster)


def run_batch(
    paths: Sequence[str | os.PathLike],
    outdir: str | os.PathLike,
    *,
    task: str = "focus",
    client: Any = None,
    measure: str = DEFAULT_MEASURE,
    scale: float = DEFAULT_SCALE,
    psf: str = "gauss",
    min_focus: float = MIN_FOCUS,
    max_sigma: float = MAX_SIGMA,
    pixel_size: str | None = None,
    index: int | None = None,
    max_pixels: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> list[dict]:
    """QC many files on a dask.distributed cluster; one row per file, in input order.

    Each file is one task: it is read, analysed, and its outputs are written atomically to
    ``outdir`` (``<stem>.qc.focus.tif`` for ``task="focus"``; ``<stem>.qc.sigma.tif`` and
    ``<stem>.qc.confidence.tif`` for ``"map"``; nothing but the row for ``"identify"``), then
    its row as ``<stem>.qc.<task>.json``. Files whose row already exists (same path, same
    content) are skipped, so a killed batch resumes where it stopped; temporary files a killed
    run left are removed first. A bad file gets its message in the ``error`` column and does
    not stop the others. The rows are merged into ``qc.csv`` (and ``qc.parquet`` with pyarrow)
    with those of earlier runs into the same folder (see :func:`write_qc_table`).

    Parameters
    ----------
    paths : sequence of path
        Image files; their names (without extension) must differ, and must not be those of
        other files whose rows are already in ``outdir``.
    outdir : path
        Output folder; created if needed.
    task : {"focus", "map", "identify"}
        ``focus``: focus map, score and sharpest band; ``map``: blur map, sigma percentiles
        and focal plane; ``identify``: one uniform blur identified blindly by
        :func:`defocus.kernel.identify` (``psf_model``, ``psf_diameter`` for a disk,
        ``psf_confidence``, and its sigma in ``sigma_median``). Every task reports the mean
        focus score.
    client : distributed.Client, optional
        Where to run; default: a LocalCluster from :func:`start_client`, closed at the end.
    measure, scale
        Focus measure and window for the focus score.
    psf
        PSF family for ``task="map"``.
    min_focus, max_sigma : float
        Out-of-focus rules: ``focus_score < min_focus`` for ``focus``, median sigma (px)
        ``> max_sigma`` for ``map`` and ``identify``.
    pixel_size, index, max_pixels
        As for :func:`defocus.read_image`.
    progress : bool
        Show a progress bar on stderr.
    overwrite : bool
        Replace the outputs of another file with the same name (without extension) that an
        earlier run wrote into ``outdir``, instead of refusing.

    Returns
    -------
    list of dict
        The QC rows (keys :data:`QC_COLUMNS`).
    """
    from .io import DEFAULT_MAX_PIXELS

    if task not in TASKS:
        raise BadInputError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    get_measure(measure)
    paths = [str(p) for p in paths]
    stems: dict[str, str] = {}
    for p in paths:
        s = _stem(p)
        if s in stems and stems[s] != p:
            raise BadInputError(f"{stems[s]} and {p} would both write {s}.qc.*; rename one")
        stems[s] = p
    out = Path(outdir)
    for s, p in stems.items():
        other = earlier_input(out, s, task)
        if not overwrite and other is not None and os.path.realpath(other) != os.path.realpath(p):
            raise BadInputError(
                f"{p}: {out / batch_outputs(s, task)[-1]} holds the results of {other}; "
                "rename one, or choose another -o"
            )
    if out.exists() and not out.is_dir():
        raise BadInputError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out)
    read_qc_table(out)  # refuse a table that cannot be merged before any work
    opts = {
        "measure": measure,
        "scale": scale,
        "psf": psf,
        "min_focus": float(min_focus),
        "max_sigma": float(max_sigma),
        "pixel_size": pixel_size,
        "index": index,
        "max_pixels": DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels,
    }
    rows: dict[str, dict] = {}
    for p in dict.fromkeys(paths):
        done = _load_done(p, out, task)
        if done is not None:
            rows[p] = done
    todo = [p for p in dict.fromkeys(paths) if p not in rows]
    bar = _Progress(len(todo), enabled=progress)
    own = client is None
    if todo:
        as_completed = _distributed().as_completed
        client = start_client() if own else client
        try:
            futures = {
                client.submit(qc_one, p, str(out), task, opts, key=f"qc-{task}-{i}-{p}"): p
                for i, p in enumerate(todo)
            }
            for fut in as_completed(futures):
                p = futures[fut]
                try:
                    row = fut.result()
                except Exception as exc:  # the worker itself died (memory, crash)
                    row = dict.fromkeys(QC_COLUMNS) | {
                        "input": p,
                        "task": task,
                        "status": "failed",
                        "error": f"worker lost: {type(exc).__name__}: {exc}",
                    }
                rows[p] = row
                bar.update(row["status"] == "done")
        finally:
            if own:
                cluster = client.cluster
                client.close()
                if cluster is not None:
                    cluster.close()
    ordered = [rows[p] for p in paths]
    write_qc_table(out, ordered)
    return ordered
