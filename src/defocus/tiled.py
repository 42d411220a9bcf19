"""Tiled focus and blur maps of images larger than memory, on Dask.

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
- **Blur map**: the in-memory method measures every 4-px cell, fills the whole grid by a
  pyramid of normalised convolutions that reaches across the image, and upsamples the filled
  cells bilinearly. Tiles, aligned to the method's 32-px grid and overlapping by ``depth`` px
  (default :func:`blur_support`, 288 px: the largest scale's reach and the learned stage's
  context of measured cells, see :mod:`defocus._blurcorrect`), measure their own cells only;
  the fill and the confidence run once on the whole image's cells (1/16 of its pixels, read
  from the tiles' blocks in bands of rows) as in memory, and every output chunk upsamples its
  own cells with a one-cell halo. Every tile gets the same noise: the ``noise_sigma`` given
  (with the image's grey-level step, which a tile of a few grey levels does not show), or else
  the noise model (signal-dependent, correlated, quantised, JPEG's compression error)
  measured once on the image; colour tiles get the colour data, as the in-memory map does. The
  shift of data wider than 16 bits, the intensity spread the method's noise floors are
  relative to and the grey-level step are read on one image-wide sample (16 tiles of 256 px),
  which :func:`defocus.blur_map` reads too, so tiles read the noise model at the intensities it was
  fitted at and round as the in-memory map does: with a given noise level, a float64 image of
  the camera beside a staircase of one-grey-level steps, in 2 x 4 tiles, equals the in-memory
  map to a relative 2e-6 (each tile with its own step, shift and spread: 18 px apart).
  Against :func:`defocus.blur_map` with the same noise model, the tiled map equals the
  in-memory one to the float32 rounding of the cells' measurements: on the FIB image of a
  needle before a defocused background, cut into 2 x 2 and 2 x 3 tiles of 512 px, sigma to a
  relative 6e-7, the confidence to 4e-7 and the lower bound exactly; where its right half is
  blurred far beyond the largest scale (3 % of the map a lower bound), to 1e-5, 2e-7 and
  exactly. At the default depth the tile size does not change that (tiles of 256, 512 or
  1024 px on the FIB image: 5e-7 or better). Cells of one tile still see only the tile and its
  overlap: the camera image in 4 x 3 tiles of 128-160 px agrees to 5e-6 from a depth of
  128 px; at 64 px the learned stage's context is cut, and the confidence differs by 0.1 at
  the 99th percentile. What remains between a tiled map and :func:`defocus.blur_map` left to
  measure its own noise is the noise model: the mosaic's is not quite the whole image's (on
  the FIB image 14.39 against 14.33 grey levels; relative sigma difference 0.018 at the median,
  0.12 at the 95th percentile where confidence > 0.5).

Input comes lazily from :func:`defocus.io.open_image` (Zarr, OME-Zarr, tiled TIFF) in its own
dtype: 8- and 16-bit data go into the overlap exchange as they are, and are converted to
float32 only inside each tile; wider data go in shifted, as float32. Maps go out through
:func:`defocus.io.write_ome_zarr` or :func:`defocus.io.write_tiled_tiff`.

The signatures are those of the in-memory functions, plus ``chunks`` (and ``depth`` for the
blur map); :meth:`TiledBlurMap.summary` gives :meth:`defocus.BlurMap.summary`'s dictionary,
and bad input gets the same one-line errors.

Dask is an optional dependency: ``pip install 'defocus[dask]'``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from . import focus as _focus
from ._array import as_chunks, as_float_image, luminance
from ._blurcorrect import CONTEXT_CELLS
from ._errors import BadInputError
from ._optional import dask_array
from ._types import PSFFamily
from .blurmap import (
    CONFIDENCE_THRESHOLD,
    PSF_FAMILIES,
    REACH,
    SCALES,
    STRIDE,
    _cell_maps,
    _cells,
    _dense,
    _offset,
    _sample_windows,
    _spread,
    _white_noise,
    _wide,
)
from .focus import DEFAULT_MEASURE, DEFAULT_SCALE, get_measure
from .io import PixelSize, as_pixel_size
from .noise import BandNoise, NoiseModel, _grid_excess, estimate_noise, noise_variance_map

if TYPE_CHECKING:
    import dask.array as da

__all__ = [
    "TiledBlurMap",
    "blur_map",
    "blur_support",
    "focus_map",
    "focus_support",
    "require_dask",
]

# Blur-map tiles start on multiples of this many px, so that every tile's 4-px cells, its
# block-mean pyramid (down to 16 px) and its 32-px noise blocks sit on the whole image's grid.
_BLUR_ALIGN = 32


def require_dask() -> Any:
    """Import dask.array, or raise ImportError saying how to install it.

    Examples
    --------
    >>> require_dask().__name__
    'dask.array'
    """
    return dask_array()


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


def _plane(
    image: Any,
    chunks: int | Sequence[int] | None,
    channel_axis: int | None,
    *,
    offset: float | None = None,
) -> da.Array:
    """A 2-D dask array: the image itself (dtype kept) or, with channels, its luminance; with
    an ``offset``, minus the offset, as float32 (see :func:`defocus.blurmap._offset`)."""
    da = dask_array()
    if not isinstance(image, da.Array):
        image = np.asarray(image)
        if image.dtype.kind not in "uifb":
            raise BadInputError(f"image has unsupported dtype {image.dtype}")
        cy, cx = as_chunks(chunks)
        full = tuple(-1 for _ in range(image.ndim))
        image = da.from_array(image, chunks=full if image.size <= cy * cx else "auto")
    if channel_axis is None:
        if image.ndim != 2:
            raise BadInputError(
                f"expected a 2-D image, got shape {image.shape}; pass channel_axis for colour"
            )
        if offset is not None:
            image = image.map_blocks(_shift, offset, dtype=np.float32)
    else:
        ax = channel_axis % image.ndim
        if image.ndim != 3:
            raise BadInputError(f"expected a 2-D image with channels, got shape {image.shape}")
        image = image.rechunk({ax: -1})
        # Colour is combined per chunk, so the raw dtype is still what is read from disk.
        image = image.map_blocks(
            lambda b: luminance(_shift(b, offset), channel_axis=ax),
            drop_axis=ax,
            dtype=np.float32,
            meta=np.empty((0, 0)),
        )
    if image.dtype.kind not in "uifb":
        raise BadInputError(f"image has unsupported dtype {image.dtype}")
    if min(image.shape) < 1:
        raise BadInputError(f"image has zero size {image.shape}")
    return image


def _shift(block: np.ndarray, offset: float | None) -> np.ndarray:
    """A block minus the image-wide offset, as float32 (no offset: the block as it is). The
    result is no longer wide, so the tile's blur_map does not shift it again by its own median."""
    if offset is None:
        return block
    return (block.astype(np.float64) - offset).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Image-wide statistics
# --------------------------------------------------------------------------------------------


def _mosaic(plane: da.Array, *, tile: int = 256, n: int = 4) -> np.ndarray:
    """Up to n x n tiles spread evenly over the image (rows and columns first, any channels
    last), side by side: a small, faithful sample, the one :func:`defocus.blurmap._sample`
    takes of an image in memory. Tiles start on multiples of 32 px, so a JPEG's 8 x 8 block
    grid runs on across the seams as it does in the image."""
    where = _sample_windows(plane.shape, tile=tile, n=n, align=_BLUR_ALIGN)
    if where is None:
        return np.asarray(plane.compute())
    ys, xs, th, tw = where
    da = dask_array()
    rows = [da.concatenate([plane[y : y + th, x : x + tw] for x in xs], axis=1) for y in ys]
    return np.asarray(da.concatenate(rows, axis=0).compute())


def _noise_model(
    sample: np.ndarray, *, colour: bool, seams: tuple[int | None, int | None] = (None, None)
) -> tuple[NoiseModel | None, float]:
    """The noise model :func:`defocus.blur_map` fits, measured once on a mosaic of the image
    as given (its own dtype and channels last, whose quantisation the model counts, and its JPEG
    block grid; wide data shifted as blur_map shifts them), and the noise level blur_map reports
    with it (the median of the model's standard deviation over the mosaic's luminance). None
    for a constant mosaic of a varied image: no noise seen. ``seams``: the period, along rows
    and columns, of the lines where the mosaic's tiles meet (None: none)."""
    axis = -1 if colour else None
    lum = as_float_image(sample, channel_axis=axis)
    if lum.min() == lum.max():
        return None, 0.0
    nm = estimate_noise(sample, channel_axis=axis)
    if any(seams):
        nm = replace(nm, compression=_seamless_compression(lum, seams))
    return nm, float(np.median(nm.std(lum[:: max(1, lum.shape[0] // 256)])))


def _seamless_compression(lum: np.ndarray, seams: tuple[int | None, int | None]) -> float:
    """:func:`defocus.noise.compression_variance` of a mosaic, leaving out the lines where its
    tiles meet: they lie on the JPEG grid's phase, and the scene's jumps there hid the grid."""
    if min(lum.shape) < 64:
        return 0.0
    excess = []
    for axis, period in enumerate(seams):
        d = np.diff(lum, axis=axis)
        per_line = np.square(d).mean(axis=1 - axis, dtype=np.float64)
        if period:
            per_line[period - 1 :: period] = np.nan
        excess.append(_grid_excess(per_line))
        if not excess[-1]:
            return 0.0
    return float(np.mean(excess)) / 2


def _seams(
    image_shape: Sequence[int], sample_shape: Sequence[int], tile: int = 256
) -> tuple[int | None, int | None]:
    """The period of :func:`_mosaic`'s seams along rows and columns (None where it has none)."""
    if tuple(sample_shape[:2]) == tuple(image_shape[:2]):
        return (None, None)  # the whole image
    (py, px), (my, mx) = (min(tile, n) for n in image_shape[:2]), sample_shape[:2]
    return (py if my > py else None, px if mx > px else None)


# How far (px) the learned stage reads measured cells around the one it corrects: the Gaussian
# of its context (CONTEXT_CELLS cells, truncated at 3 sigma) and the 3 x 3 cells its scale curve
# and its "foreign" test look at, on the STRIDE-px grid (defocus._blurcorrect.cell_features).
_CONTEXT_REACH = (_gauss_radius(CONTEXT_CELLS, 3.0) + 1) * STRIDE


def blur_support() -> int:
    """Overlap depth, in px, that tiled blur maps use by default.

    Read from the method's own reach (:data:`defocus.blurmap.REACH`: its largest scale to 3
    standard deviations and a margin for the fill), or, if farther, that largest scale plus the
    reach of the learned stage's context of measured cells (40 px); plus one 32-px block of the
    grid, rounded up to a multiple of 32 px.

    Examples
    --------
    >>> blur_support() % 32
    0
    >>> blur_support() >= 3 * 64 + _CONTEXT_REACH + 32
    True
    """
    reach = max(REACH, int(3 * SCALES[-1]) + _CONTEXT_REACH) + _BLUR_ALIGN
    return int(-(-reach // _BLUR_ALIGN) * _BLUR_ALIGN)


def _checked_sample(plane: da.Array) -> np.ndarray:
    """A mosaic of the image, refused for what :func:`defocus.blur_map` refuses (too small,
    NaN, constant) with the same message."""
    sample = _mosaic(plane)
    constant = sample.min() == sample.max()
    if constant:  # the mosaic may miss the detail: only the whole image can say
        lo, hi = dask_array().compute(plane.min(), plane.max())
        constant = bool(lo == hi)
    as_float_image(sample, min_size=16, allow_constant=not constant)
    return sample


# --------------------------------------------------------------------------------------------
# Tiled focus maps
# --------------------------------------------------------------------------------------------


def _gradient_ratio_block(
    block: np.ndarray, noise_sd: Any, *, scale: float, contrast_floor: float
) -> np.ndarray:
    return _focus.gradient_ratio(
        block, scale=scale, noise_sigma=noise_sd, contrast_floor=contrast_floor
    )


# The local noise map's reach: two 32-px blocks (its median runs over 5 x 5 blocks).
_NOISE_HALO = 64


def _noise_std_map(plane: da.Array, *, spectral_weight: float | BandNoise, step: float) -> da.Array:
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
        plane = plane.rechunk(as_chunks(chunks))
    plane = plane.rechunk(tuple(_merge_small(c, depth) for c in plane.chunks))
    if bool(plane.min().compute() == plane.max().compute()):
        return dask_array().zeros(plane.shape, dtype=np.float32, chunks=plane.chunks)
    kw: dict[str, Any] = {"depth": depth, "boundary": "none", "dtype": np.float32}
    if measure != "gradient_ratio":
        return plane.map_overlap(_focus_block, measure=measure, scale=scale, **kw)
    # gradient_ratio's contrast floor is image-wide, and its noise is measured in 32-px blocks
    # on the image's grid: both are computed once here and given to every tile, so that tiles
    # equal the in-memory map.
    defaults = _focus.gradient_ratio.__kwdefaults__ or {}
    coarse, fine = float(defaults["coarse"]), float(defaults["fine"])
    e_coarse = plane.map_overlap(_coarse_energy_block, scale=scale, coarse=coarse, **kw)
    floor = _focus._contrast_floor(float(e_coarse.mean(dtype=np.float32).compute()))
    sample = _mosaic(plane)
    noise_sd = _noise_std_map(
        plane,
        spectral_weight=_focus._spectral_weight(sample, fine, coarse, scale),
        step=_focus._step(sample),
    ).rechunk(plane.chunks)
    return dask_array().map_overlap(
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
        Noise level of the tiles, in input intensity units: the one given, or the one
        :func:`defocus.blur_map` reports with the noise model given to every tile.
    psf : str
        PSF family.
    depth : int
        Overlap between tiles, px.
    pixel_size : PixelSize or None
        Physical pixel size, when known.
    lower_bound : dask array of bool, shape (H, W), or None
        True where sigma is only a lower bound (see :attr:`defocus.BlurMap.lower_bound`);
        computed with ``data`` (compute both together, or the tiles run twice).
    """

    data: da.Array
    noise_sigma: float
    psf: str
    depth: int
    pixel_size: PixelSize | None = None
    lower_bound: da.Array | None = None

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

    def measurable(self) -> da.Array:
        """Pixels whose confidence reaches the in-memory map's threshold (lazy)."""
        return self.confidence >= CONFIDENCE_THRESHOLD

    def summary(self) -> dict[str, Any]:
        """:meth:`defocus.BlurMap.summary` of the tiled map: the same keys, rules and verdicts.

        The confidence-weighted quantiles are exact (not binned): a weighted histogram finds the
        bin that holds each quantile, and the values in that bin are sorted. The sparse
        measurements and the noise model are not kept by the tiles, so ``measured_fraction``
        and ``noise`` are None; ``lower_bound_fraction`` is None when :attr:`lower_bound` is.

        Examples
        --------
        >>> noise = np.random.default_rng(0).normal(100, 5, (128, 128))
        >>> blur_map(noise).summary()["verdict"]
        'blur not measurable here: no structure stands above the noise'
        """
        da = dask_array()
        ok = self.measurable()
        # confidence as the weight of the measurable pixels, 0 elsewhere: no boolean indexing,
        # so every statistic below is one pass over the map
        w = da.where(ok, self.confidence, 0).astype(np.float64)
        stats = {
            "ok": ok.sum(),
            "mean_confidence": self.confidence.mean(dtype=np.float64),
            "lo": da.where(ok, self.sigma, np.inf).min(),
            "hi": da.where(ok, self.sigma, -np.inf).max(),
        }
        if self.lower_bound is not None:
            stats["lower"] = (self.lower_bound & ok).sum()
        got = dict(zip(stats, da.compute(*stats.values()), strict=True))
        share_ok = float(got["ok"]) / ok.size
        out: dict[str, Any] = {
            "unit": "px",
            "quantity": "sigma (per-axis PSF standard deviation)",
            "psf": self.psf,
            "shape": list(self.shape),
            "measurable_fraction": round(share_ok, 4),
            "mean_confidence": round(float(got["mean_confidence"]), 4),
            "measured_fraction": None,
            "noise_sigma": float(f"{self.noise_sigma:.6g}"),
            "noise": None,
            "pixel_size": None if self.pixel_size is None else str(self.pixel_size),
            "confidence_threshold": CONFIDENCE_THRESHOLD,
        }
        if share_ok < 0.01:
            out["sigma"] = None
            out["verdict"] = "blur not measurable here: no structure stands above the noise"
            return out
        q = _weighted_quantiles(
            self.sigma, w, ok, (0.1, 0.5, 0.9), span=(float(got["lo"]), float(got["hi"]))
        )
        out["sigma"] = {k: round(v, 4) for k, v in zip(("p10", "median", "p90"), q, strict=True)}
        med = out["sigma"]["median"]
        if self.lower_bound is None:
            out["lower_bound_fraction"] = None
            share = 0.0
        else:
            share = float(got["lower"]) / float(got["ok"])
            out["lower_bound_fraction"] = round(share, 4)
        if share > 0.5:
            out["verdict"] = f"sigma > {med:.3g} px: blur beyond what the image shows"
        else:
            p10, p90 = out["sigma"]["p10"], out["sigma"]["p90"]
            out["verdict"] = f"median sigma {med:.3g} px ({p10:.3g}-{p90:.3g})"
        return out

    to_dict = summary


def _weighted_quantiles(
    s: da.Array,
    w: da.Array,
    ok: da.Array,
    fractions: Sequence[float],
    *,
    span: tuple[float, float],
    bins: int = 4096,
) -> list[float]:
    """For each ``f``, the smallest value of ``s`` where ``ok`` whose cumulative weight ``w``
    reaches ``f`` of the total: the in-memory rule (sort, cumulative sum, search) in two passes
    over a lazy map. A weighted histogram finds the bin of each quantile; the values in those
    bins are then gathered and sorted."""
    da = dask_array()
    lo, hi = span
    if lo == hi:
        return [lo for _ in fractions]
    edges = np.linspace(lo, hi, bins + 1)
    hist, _ = da.histogram(s, bins=edges, weights=w)
    cum = np.cumsum(hist.compute())
    total = float(cum[-1])
    lazy = []
    for f in fractions:
        b = min(int(np.searchsorted(cum, f * total)), bins - 1)
        a, z = edges[b], (edges[b + 1] if b < bins - 1 else np.inf)
        inside = ok & (s >= a) & (s < z)
        # the weight of everything below the bin, and the values in it with their weights
        lazy.append((da.where(s < a, w, 0).sum(), s[inside], w[inside]))
    found = []
    for f, (below, vals, ws) in zip(fractions, da.compute(*lazy), strict=True):
        order = np.argsort(vals, kind="stable")
        cw = float(below) + np.cumsum(ws[order])
        i = min(int(np.searchsorted(cw, f * total)), len(vals) - 1)
        found.append(float(vals[order[i]]))
    return found


#: Largest image (px) the tiled blur map takes: it holds the whole image's cell grids in
#: memory (see blur_map), some 5 GB with the fill's maps at this size.
MAX_BLUR_PIXELS = 2**31


def _cell_block(
    block: np.ndarray,
    *,
    own: tuple[tuple[int, ...], tuple[int, ...]],
    depth: tuple[int, int],
    psf: str,
    noise: NoiseModel,
    colour: bool,
    correction: bool,
    spread: float,
    block_id: tuple[int, ...] = (0, 0, 0),
) -> np.ndarray:
    """Per-cell measurements of one tile with its overlap (:func:`defocus.blurmap._cells`:
    sigma, log-sigma standard error, lower-bound flag, repeat), cropped to the tile's own cells;
    a colour tile comes channels first. ``own``: the tiles' own sizes (px) along each axis."""
    i, j = block_id[-2:]
    h, w = own[0][i], own[1][j]
    top, left = (0 if k == 0 else d for k, d in zip((i, j), depth, strict=True))
    cy, cx, ch, cw = top // STRIDE, left // STRIDE, -(-h // STRIDE), -(-w // STRIDE)
    lum = luminance(block, channel_axis=0) if colour else block
    if lum.min() == lum.max():
        # A tile that is constant even with its overlap holds no measurement.
        out = np.ones((4, ch, cw), np.float32)
        out[0], out[2] = np.nan, 0
        return out
    _, _, cell_sigma, sd, lower, repeat = _cells(
        block,
        psf=psf,
        noise_sigma=None,
        noise=noise,
        channel_axis=0 if colour else None,
        correction=correction,
        spread=spread,
    )
    # the tile's own cells, copied: a view would keep the overlap's cells alive until the fill
    own_cells = np.s_[cy : cy + ch, cx : cx + cw]
    return np.stack([a[own_cells] for a in (cell_sigma, sd, lower, repeat)], dtype=np.float32)


def _fill_cells(
    blocks: list[list[np.ndarray]], starts: Sequence[int], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`defocus.blurmap._cell_maps` of the whole image's cells, read in bands of rows
    from the tiles' blocks (rows of blocks, each block's four grids stacked; ``starts``: the
    block rows' first cell rows and the grid's end), never assembled: filled log sigma,
    confidence and lower-bound share."""

    def rows(r0: int, r1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        parts = [
            np.concatenate([b[:, max(r0, s) - s : min(r1, e) - s] for b in row], axis=2)
            for row, s, e in zip(blocks, starts[:-1], starts[1:], strict=True)
            if s < r1 and e > r0
        ]
        band = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        return band[0], band[1], band[2] > 0.5, band[3]

    return _cell_maps(rows, shape)


def _dense_chunk(
    grids: tuple[np.ndarray, np.ndarray, np.ndarray],
    rows: tuple[int, int],
    cols: tuple[int, int],
    shape: Any,
) -> np.ndarray:
    """sigma, confidence and lower bound (as 0/1) of the output chunk ``rows`` x ``cols`` (px):
    :func:`defocus.blurmap._dense` of its cells and a one-cell halo, which is all that bilinear
    upsampling reads, so the chunk equals that part of the in-memory map."""
    out = []
    for (p0, p1), n, size in zip((rows, cols), grids[0].shape, shape, strict=True):
        a0, a1 = max(p0 // STRIDE - 1, 0), min(-(-p1 // STRIDE) + 1, n)
        out.append((a0, a1, min(a1 * STRIDE, size) - a0 * STRIDE, p0 - a0 * STRIDE, p1 - p0))
    (y0, y1, h, oy, ny), (x0, x1, w, ox, nx) = out
    filled, conf, share = (g[y0:y1, x0:x1] for g in grids)
    sigma, conf, lower = _dense(filled, conf, share, (h, w))
    return np.stack([sigma, conf, lower.astype(np.float32)])[:, oy : oy + ny, ox : ox + nx]


def blur_map(
    image: Any,
    *,
    psf: PSFFamily = "gauss",
    pixel_size: float | PixelSize | None = None,
    noise_sigma: float | None = None,
    channel_axis: int | None = None,
    chunks: int | Sequence[int] | None = None,
    depth: int | None = None,
    correction: bool = True,
) -> TiledBlurMap:
    """Lazy, tiled :func:`defocus.blur_map` of a large image.

    Parameters
    ----------
    image : ndarray or dask array
        2-D greyscale, or multichannel with ``channel_axis``; any integer or float dtype.
    psf, pixel_size, channel_axis
        As for :func:`defocus.blur_map` (``pixel_size``: metres per pixel or a
        :class:`defocus.io.PixelSize`).
    noise_sigma : float, optional
        Noise standard deviation (intensity units) given to every tile, with the image's
        grey-level step (read on the same sample as the noise model). By default the noise
        model of :func:`defocus.blur_map` (signal-dependent, correlated, quantised, JPEG's
        compression error included) is estimated once, on a mosaic of 16 tiles of 256 px
        sampled evenly across the image on its 32-px grid (the whole image if it is at most
        1024 px a side), in the image's own dtype and channels, and given to every tile.
    chunks : int or (int, int), optional
        Tile size in px (default 2048), rounded up to a multiple of 32 so that tiles sit on
        the method's grid; a last tile smaller than ``depth`` is merged into its neighbour.
    depth : int, optional
        Overlap between tiles in px, rounded up to a multiple of 32; default
        :func:`blur_support`.
    correction : bool
        As for :func:`defocus.blur_map`, in every tile: the learned correction of dense
        texture; False gives the physical estimate alone.

    Returns
    -------
    TiledBlurMap
        ``data`` of shape (2, H, W): sigma and confidence. See the module docstring for how
        closely it matches the in-memory map.

    Notes
    -----
    The fill reaches across the whole image, so the per-cell measurements of all tiles are
    held in memory when the map is computed: four float32 grids of 1/16 of the image's pixels
    (a gigapixel image: about 250 MB each), which the fill reads in bands of rows without
    assembling them; its three maps and work memory add 5.1 grids at their peak (measured on a
    268-MP image's cells): some 2.3 GB for a gigapixel image. Images above
    :data:`MAX_BLUR_PIXELS` (2**31 px, some 5 GB) are refused. Each output chunk is then
    upsampled from the filled grids on its own.

    Raises
    ------
    BadInputError
        What :func:`defocus.blur_map` refuses, with its message: an unknown ``psf``, a bad
        ``noise_sigma`` or ``pixel_size``, an image smaller than 16 px, constant, or with NaN;
        and an image above :data:`MAX_BLUR_PIXELS`.

    Examples
    --------
    >>> from skimage import data
    >>> lazy = blur_map(data.camera(), chunks=(97, 131), noise_sigma=2.0)
    >>> lazy.sigma.shape, lazy.sigma.dtype, lazy.data.chunks[1]
    ((512, 512), dtype('float32'), (512,))
    """
    da = dask_array()
    if psf not in PSF_FAMILIES:
        raise BadInputError(f"unknown psf {psf!r}; choose from {', '.join(PSF_FAMILIES)}")
    ps = as_pixel_size(pixel_size)
    depth = blur_support() if depth is None else int(depth)
    depth = max(_BLUR_ALIGN, -(-depth // _BLUR_ALIGN) * _BLUR_ALIGN)
    plane = _plane(image, chunks, channel_axis)
    raw = image if isinstance(image, da.Array) else da.from_array(np.asarray(image))
    if colour := channel_axis is not None:
        raw = da.moveaxis(raw, channel_axis % raw.ndim, -1)  # channels last, as the mosaic reads
    # Wide data are shifted once for the whole image, by blur_map's rule: tiles and the noise
    # model then read the noise at the same intensities (each tile's own median would not).
    # The raw mosaic (read once: on a lazy store each read is I/O) where the grey plane's own
    # sample is not the image blur_map would see: colour, or data it shifts.
    raw_sample = _mosaic(raw) if colour or _wide(raw.dtype) else None
    offset = None if raw_sample is None else _offset(raw_sample)
    if offset is not None:
        plane = _plane(image, chunks, channel_axis, offset=offset)
    cy, cx = as_chunks(chunks)
    grid = tuple(
        _grid_chunks(n, c, align=_BLUR_ALIGN, minimum=depth)
        for n, c in zip(plane.shape, (cy, cx), strict=True)
    )
    plane = plane.rechunk(grid)
    if plane.size > MAX_BLUR_PIXELS:
        raise BadInputError(
            f"image of {plane.size / 1e9:.3g} gigapixels is above the tiled blur map's "
            f"{MAX_BLUR_PIXELS / 1e9:.3g}: its cell grids are held in memory; crop the image"
        )
    sample = _checked_sample(plane)
    if noise_sigma is not None and not (np.isfinite(noise_sigma) and noise_sigma >= 0):
        raise BadInputError(f"noise_sigma must be a finite number >= 0, got {noise_sigma!r}")
    # Tiles get the given level, or else the noise model measured once on the image (a
    # constant sample of a varied image shows no noise: level 0).
    mosaic = sample if raw_sample is None else raw_sample
    if offset is not None:  # in float64, as blur_map fits it
        mosaic = mosaic.astype(np.float64) - offset
    if noise_sigma is None:
        seams = _seams(plane.shape, mosaic.shape)
        nm, level = _noise_model(mosaic, colour=colour, seams=seams)
    else:
        nm, level = None, float(noise_sigma)
    if nm is None:
        # A level given (or no noise seen) keeps the whole image's grey-level step: a tile of
        # fewer than 16 grey levels shows none, and would read its staircase as edges.
        nm = _white_noise(mosaic, level, channel_axis=-1 if colour else None)
    # The intensity scale the method works relative to, read once (on the mosaic, as for the
    # noise model) and given to every tile: its noise floors are relative to it.
    spread = _spread(as_float_image(mosaic, channel_axis=-1 if colour else None))
    # an axis held in one chunk needs no overlap (and Dask refuses one wider than the axis)
    dy, dx = (0 if len(c) == 1 else depth for c in plane.chunks)
    if colour:
        # Tiles see the colour image as blur_map does (its dtype, its quantisation), channels
        # first and whole.
        raw = da.moveaxis(raw, -1, 0).rechunk((-1, *plane.chunks))
        if offset is not None:
            raw = raw.map_blocks(_shift, offset, dtype=np.float32)
        padded = da.overlap.overlap(raw, depth={0: 0, 1: dy, 2: dx}, boundary="none")
    else:
        padded = da.overlap.overlap(plane, depth={0: dy, 1: dx}, boundary="none")
    own = plane.chunks
    cell_chunks = tuple(tuple(-(-c // STRIDE) for c in axis) for axis in own)
    cells = padded.map_blocks(
        _cell_block,
        own=own,
        depth=(dy, dx),
        psf=psf,
        noise=nm,
        colour=colour,
        correction=correction,
        spread=spread,
        new_axis=None if colour else 0,
        chunks=((4,), *cell_chunks),
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
    )
    from dask import delayed

    # The fill reaches across the whole image: it runs once over all the tiles' cells, read
    # band by band from their blocks, and every output chunk upsamples its own cells from it.
    blocks = cells.to_delayed()[0].tolist()
    cell_starts = [int(x) for x in np.cumsum((0, *cells.chunks[1]))]
    grids = delayed(_fill_cells)(blocks, cell_starts, cells.shape[1:])
    starts = [np.cumsum((0, *c)) for c in own]
    maps = da.block(
        [
            [
                da.from_delayed(
                    delayed(_dense_chunk)(grids, (ys, ye), (xs, xe), plane.shape),
                    shape=(3, ye - ys, xe - xs),
                    dtype=np.float32,
                    meta=np.empty((0, 0, 0), np.float32),
                )
                for xs, xe in zip(starts[1][:-1], starts[1][1:], strict=True)
            ]
            for ys, ye in zip(starts[0][:-1], starts[0][1:], strict=True)
        ]
    )
    return TiledBlurMap(
        data=maps[:2],
        noise_sigma=level,
        psf=psf,
        depth=depth,
        pixel_size=ps,
        lower_bound=maps[2] > 0.5,
    )
