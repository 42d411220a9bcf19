"""Blur synthesis: uniform and spatially varying blur, blur-map generators and noise models.

Images are 2-D, or multichannel with ``channel_axis``. Intensities are never rescaled.
Results are float32 (float64 for float64 input) unless ``dtype`` asks for another type; an
integer ``dtype`` rounds and clips to that type's range.

Spatially varying blur takes a map of sigma in pixels (the unit of blur, see
docs/architecture.md) and a PSF family (``psf=``, :data:`defocus.psf.FAMILIES`): ``"gauss"``
(sigma itself) or ``"disk"`` (radius = 2 sigma). ``method=`` picks one of two physical models:

* ``gather``: each output pixel is the image seen through its own PSF,
  ``out(p) = Σ_q h_σ(p)(p − q) I(q)``. The usual model for a blur map.
* ``scatter``: each source pixel spreads its light with its own PSF,
  ``out(p) = Σ_q h_σ(q)(p − q) I(q)``. The physical model of defocus; it conserves total
  intensity (exactly for ``mode="reflect"`` or ``"wrap"``).

Both blur the image once per sigma *level* and blend the two levels that bracket each pixel's
sigma. The blend weights interpolate sigma² (variance), so the blended PSF has exactly the
requested sigma; the levels are spaced so that its transfer function differs from the exact
PSF's by at most :data:`LEVEL_TOLERANCE` at every frequency (see :func:`sigma_levels`).
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import scipy.fft
import scipy.ndimage as ndi

from . import psf as _psf
from ._array import bbox, channels_last, finish_channels, level_weights, positive
from ._compat import renamed_keywords
from ._errors import BadInputError
from ._types import Family

__all__ = [
    "FAMILIES",
    "LEVEL_TOLERANCE",
    "add_gaussian_noise",
    "add_poisson_noise",
    "blur",
    "blur_varying",
    "depth_to_sigma",
    "jpeg_compress",
    "sigma_levels",
    "tilt_map",
]

#: PSF families for spatially varying blur (:data:`defocus.psf.FAMILIES`).
FAMILIES = _psf.FAMILIES

#: scipy.ndimage's boundary modes.
Mode = Literal["reflect", "mirror", "nearest", "wrap", "constant"]

#: Bound on ``max_f |H_blend(f) − H_exact(f)|`` between automatic levels (see sigma_levels).
LEVEL_TOLERANCE = 0.005

# scipy.ndimage boundary modes and the numpy.pad mode that extends an image the same way.
_PAD_MODES = {
    "reflect": "symmetric",
    "mirror": "reflect",
    "nearest": "edge",
    "wrap": "wrap",
    "constant": "constant",
}


# --------------------------------------------------------------------------------------------
# array plumbing


def _check_mode(mode: str) -> None:
    if mode not in _PAD_MODES:
        raise BadInputError(f"mode must be one of {', '.join(_PAD_MODES)}, got {mode!r}")


def _pad(
    image: np.ndarray, before: tuple[int, int], after: tuple[int, int], mode: str, cval: float
) -> np.ndarray:
    widths = ((before[0], after[0]), (before[1], after[1])) + ((0, 0),) * (image.ndim - 2)
    if mode == "constant":
        return np.pad(image, widths, mode="constant", constant_values=cval)
    return np.pad(image, widths, mode=_PAD_MODES[mode])  # type: ignore[call-overload]


def _convolve_valid(region: np.ndarray, kernel: np.ndarray, method: str) -> np.ndarray:
    """'valid' convolution of a 2-D float region with a kernel, by the cheapest route."""
    kh, kw = kernel.shape
    out_shape = (region.shape[0] - kh + 1, region.shape[1] - kw + 1)
    if method == "auto":
        factors = _rank_one(kernel)
        if factors is not None and kh + kw <= 160:
            method = "separable"
        elif kernel.size <= 49:
            method = "direct"
        else:
            method = "fft"
    if method == "separable":
        factors = _rank_one(kernel)
        if factors is None:
            raise BadInputError("method='separable' needs a rank-one kernel")
        col, row = factors
        tmp = ndi.convolve1d(region, col.astype(region.dtype), axis=0, mode="constant")
        tmp = ndi.convolve1d(tmp, row.astype(region.dtype), axis=1, mode="constant")
    elif method == "direct":
        tmp = ndi.convolve(region, kernel.astype(region.dtype), mode="constant")
    elif method == "fft":
        from scipy.signal import oaconvolve  # slow to import (it loads scipy.stats)

        return oaconvolve(region, kernel.astype(region.dtype), mode="valid")
    else:
        raise BadInputError(f"method must be auto, direct, separable or fft, got {method!r}")
    # With ndimage's centring, the 'valid' part starts (n - 1) // 2 in from each edge.
    oy, ox = (kh - 1) // 2, (kw - 1) // 2
    return tmp[oy : oy + out_shape[0], ox : ox + out_shape[1]]


def _rank_one(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Column and row factors when the kernel is separable (Gaussians, boxes), else None."""
    if min(kernel.shape) == 1:
        return (kernel[:, 0], np.ones(1)) if kernel.shape[1] == 1 else (np.ones(1), kernel[0])
    u, s, vt = np.linalg.svd(kernel)
    if s[1] > 1e-9 * s[0]:
        return None
    return u[:, 0] * s[0], vt[0]


# --------------------------------------------------------------------------------------------
# uniform blur


def blur(
    image: np.ndarray,
    psf: np.ndarray,
    *,
    mode: Mode = "reflect",
    cval: float = 0.0,
    method: Literal["auto", "direct", "separable", "fft"] = "auto",
    channel_axis: int | None = None,
    dtype: Any = None,
) -> np.ndarray:
    """Convolve an image with one PSF everywhere.

    Parameters
    ----------
    image : ndarray
        2-D image, or multichannel with ``channel_axis``.
    psf : (M, N) ndarray
        The kernel, used as given (not renormalised); its centre is element
        ``((M - 1) // 2, (N - 1) // 2)``, as for :func:`scipy.ndimage.convolve`.
    mode : {"reflect", "mirror", "nearest", "wrap", "constant"}
        How the image extends beyond its border, with :mod:`scipy.ndimage`'s meanings.
    cval : float
        Value outside the image for ``mode="constant"``.
    method : {"auto", "direct", "separable", "fft"}
        ``auto`` uses two 1-D passes for separable kernels (Gaussian, box), direct
        convolution for kernels up to 7×7 and overlap-add FFT otherwise. All give the same
        result to float32 precision.
    channel_axis : int, optional
        Axis of the colour channels; each channel is blurred alike.
    dtype : dtype, optional
        Output type. Default float32 (float64 for float64 input); an integer type rounds and
        clips to its range.

    Returns
    -------
    ndarray
        Same shape as ``image``.

    Examples
    --------
    >>> from defocus.psf import gaussian
    >>> import scipy.ndimage as ndi
    >>> img = np.zeros((32, 32), np.uint8); img[:, 16:] = 200
    >>> out = blur(img, gaussian(2.0, shape=17))
    >>> out.dtype, bool(np.allclose(out, ndi.gaussian_filter(img.astype(float), 2.0), atol=1e-3))
    (dtype('float32'), True)
    >>> blur(img, gaussian(2.0), dtype=np.uint8)[0, 14:18]
    array([ 45,  80, 120, 155], dtype=uint8)
    """
    _check_mode(mode)
    kernel = _psf.as_kernel(psf, normalize=False)
    data, in_dtype = channels_last(image, channel_axis)
    kh, kw = kernel.shape
    before = ((kh - 1) // 2, (kw - 1) // 2)
    padded = _pad(data, before, (kh - 1 - before[0], kw - 1 - before[1]), mode, cval)
    out = np.stack(
        [_convolve_valid(padded[..., c], kernel, method) for c in range(data.shape[-1])],
        axis=-1,
    )
    return finish_channels(out.astype(data.dtype, copy=False), channel_axis, dtype, in_dtype)


# --------------------------------------------------------------------------------------------
# spatially varying blur


def _blend_error(family: str, s0: float, s1: float) -> float:
    """max over frequency and blend weight of |H_blend − H_exact| for levels s0 < s1."""
    ts = np.linspace(0.1, 0.9, 9)
    targets = np.sqrt((1 - ts) * s0**2 + ts * s1**2)
    if s1 <= 4:  # small kernels: use the rendered kernels' exact DFTs
        n = 2 * math.ceil(4 * s1 + 2) + 1

        def h(s: float) -> np.ndarray:
            k = _psf.gaussian(s, shape=n) if family == "gauss" else _psf.disk(2 * s, shape=n)
            return scipy.fft.rfft2(np.fft.ifftshift(k)).real

    else:  # large kernels alias negligibly: the analytic radial OTF suffices
        rho = np.linspace(0, 0.5 * math.sqrt(2), 2000)

        def h(s: float) -> np.ndarray:
            if family == "gauss":
                return np.exp(-2 * np.pi**2 * s**2 * rho**2)
            return _psf._jinc(rho, 2 * s)

    h0, h1 = h(s0), h(s1)
    return max(
        float(np.abs((1 - t) * h0 + t * h1 - h(s)).max()) for t, s in zip(ts, targets, strict=True)
    )


@functools.lru_cache(maxsize=8)
def _auto_levels(family: str, top: float) -> tuple[float, ...]:
    levels = [0.0]
    while levels[-1] < top:
        s0 = levels[-1]
        lo, hi = s0, max(2 * s0, s0 + 0.5)
        if _blend_error(family, s0, hi) <= LEVEL_TOLERANCE:
            levels.append(hi)
            continue
        for _ in range(14):  # bisect for the widest step within tolerance
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if _blend_error(family, s0, mid) <= LEVEL_TOLERANCE else (lo, mid)
        levels.append(max(lo, s0 + 1e-3))
    return tuple(levels)


@renamed_keywords(family="psf")
def sigma_levels(psf: str, max_sigma: float) -> np.ndarray:
    """The sigma levels that :func:`blur_varying` blends for a PSF family, up to ``max_sigma``.

    Starting at 0, each level is the widest step from the previous one for which blending the
    two (with variance weights) gives a transfer function within :data:`LEVEL_TOLERANCE`
    (0.5 %) of the exact PSF's at every frequency, checked at nine blend weights. For a
    constant sigma this bounds the RMS error by 0.5 % of the image's RMS contrast (Parseval).
    Steps are fine at small sigma, where the sampled kernels change shape quickly, and grow
    to a ratio of about 1.15 (Gaussian) or 1.045 (disk) per level.

    Examples
    --------
    >>> lv = sigma_levels("gauss", 8.0)
    >>> float(lv[0]), bool(lv[-1] >= 8.0), bool(np.all(np.diff(lv) > 0))
    (0.0, True, True)
    """
    _psf.check_family(psf)
    max_sigma = positive("max_sigma", max_sigma)
    # Cache by power-of-two ceiling so nearby maxima share one computation.
    top = 2.0 ** math.ceil(math.log2(max(max_sigma, 1.0)))
    levels = np.array(_auto_levels(psf, top))
    return levels[: int(np.searchsorted(levels, max_sigma)) + 1]


def _fold(canvas: np.ndarray, pad: int, shape: tuple[int, int], mode: str) -> np.ndarray:
    """Adjoint of padding by ``pad`` with ``mode``: add the light outside back where it maps."""
    out = canvas
    for axis, n in enumerate(shape):
        out = np.moveaxis(out, axis, 0)
        inner = out[pad : pad + n].copy()
        if mode != "constant" and pad:
            src = np.pad(np.arange(n), pad, mode=_PAD_MODES[mode])  # type: ignore[call-overload]
            margin = np.r_[0:pad, pad + n : n + 2 * pad]
            np.add.at(inner, src[margin], out[margin])
        out = np.moveaxis(inner, 0, axis)
    return out


@renamed_keywords(family="psf", model="method")
def blur_varying(
    image: np.ndarray,
    sigma_map: np.ndarray,
    *,
    psf: Family = "gauss",
    method: Literal["gather", "scatter"] = "gather",
    mode: Mode = "reflect",
    cval: float = 0.0,
    levels: Sequence[float] | None = None,
    channel_axis: int | None = None,
    dtype: Any = None,
) -> np.ndarray:
    """Blur an image with a PSF whose size varies per pixel.

    Parameters
    ----------
    image : ndarray
        2-D image, or multichannel with ``channel_axis``.
    sigma_map : (H, W) ndarray
        Sigma in pixels at each pixel, >= 0.
    psf : {"gauss", "disk"}
        PSF family (:data:`defocus.psf.FAMILIES`); a disk has radius 2 sigma
        (:func:`defocus.psf.disk`). Formerly ``family``.
    method : {"gather", "scatter"}
        ``gather``: each output pixel uses the PSF of its own sigma. ``scatter``: each source
        pixel spreads with the PSF of its sigma, conserving total intensity for
        ``mode="reflect"`` or ``"wrap"`` (light leaves the frame with ``"constant"``).
        Formerly ``model``; the old names still work, with a ``FutureWarning``.
    mode, cval
        Boundary handling, as for :func:`blur`. For scatter, light that lands outside is folded
        back as the mode's extension would map it.
    levels : sequence of float, optional
        Sigma levels to blend. Default: the map's distinct values when there are at most 16
        (exact, no blending), else :func:`sigma_levels` (error bound in the module notes).
    channel_axis : int, optional
        Axis of the colour channels.
    dtype : dtype, optional
        Output type, as for :func:`blur`.

    Returns
    -------
    ndarray
        Same shape as ``image``.

    Notes
    -----
    The cost is one blur per level that some pixel needs, restricted to the bounding box of
    those pixels, so maps whose sigma varies smoothly (a tilt) cost about two full blurs.

    Examples
    --------
    >>> from skimage import data
    >>> img = data.camera()[::4, ::4]
    >>> ramp = np.tile(np.linspace(0, 3, 128, dtype=np.float32)[:, None], (1, 128))
    >>> out = blur_varying(img, ramp)
    >>> out.dtype, out.shape
    (dtype('float32'), (128, 128))
    >>> tot = blur_varying(img, ramp, method="scatter").sum(dtype=float) / img.sum(dtype=float)
    >>> round(float(tot), 5)
    1.0
    """
    _check_mode(mode)
    if method not in ("gather", "scatter"):
        raise BadInputError(f"method must be 'gather' or 'scatter', got {method!r}")
    _psf.check_family(psf)
    data, in_dtype = channels_last(image, channel_axis)
    smap = np.asarray(sigma_map)
    if smap.shape != data.shape[:2]:
        raise BadInputError(
            f"sigma map shape {smap.shape} does not match the image's {data.shape[:2]}"
        )
    if not np.issubdtype(smap.dtype, np.number) or not np.isfinite(smap).all():
        raise BadInputError("sigma map must be finite numbers")
    if smap.min() < 0:
        raise BadInputError(f"sigma map has negative values (min {float(smap.min()):g})")
    if levels is None:
        # A map of a few distinct values (regions) is blurred exactly, level by level; a
        # subsample rules out smooth maps without sorting every pixel.
        few = np.unique(smap.ravel()[::97]).size <= 16 and np.unique(smap).size <= 16
        lv = np.unique(smap) if few else sigma_levels(psf, float(smap.max()))
    else:
        lv = np.unique(np.asarray(levels, dtype=np.float64))
        if lv.size == 0 or lv[0] < 0 or lv[0] > smap.min() or lv[-1] < smap.max():
            raise BadInputError("levels must be >= 0 and span the sigma map's range")
    idx, t = level_weights(smap, np.asarray(lv, dtype=np.float64))
    shape, nch = data.shape[:2], data.shape[-1]
    pad = _psf.family_kernel(psf, float(lv[min(int(idx.max()) + 1, lv.size - 1)])).shape[0] // 2
    # Level k serves pixels whose bracket is [k, k+1] or [k-1, k]: find its rows and columns
    # from per-row and per-column index ranges, so no full-size array is built per level.
    row_lo, row_hi, col_lo, col_hi = idx.min(1), idx.max(1), idx.min(0), idx.max(0)
    if method == "gather":
        padded = _pad(data, (pad, pad), (pad, pad), mode, cval)
        out = np.zeros_like(data)
    else:
        if mode == "constant" and cval != 0:
            raise BadInputError("scatter takes no light from outside: use cval=0 with constant")
        canvas = np.zeros((shape[0] + 2 * pad, shape[1] + 2 * pad, nch), data.dtype)
    for k in range(lv.size):
        rows = np.nonzero((row_lo <= k) & (row_hi >= k - 1))[0]
        cols = np.nonzero((col_lo <= k) & (col_hi >= k - 1))[0]
        if rows.size == 0 or cols.size == 0:
            continue
        ys, xs = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
        i, f = idx[ys, xs], t[ys, xs]
        weight = np.where(i == k, 1 - f, 0) + np.where(i == k - 1, f, 0)
        box = bbox(weight > 0)
        if box is None:
            continue
        weight = weight[box].astype(data.dtype)
        ys = slice(ys.start + box[0].start, ys.start + box[0].stop)
        xs = slice(xs.start + box[1].start, xs.start + box[1].stop)
        kern = _psf.family_kernel(psf, float(lv[k]))
        r = kern.shape[0] // 2
        # Gaussians are separable; skip the rank test that "auto" would run.
        route = "separable" if psf == "gauss" else "direct" if kern.size <= 49 else "fft"
        # The region of the padded frame that the level reads (gather) or writes (scatter).
        win = (
            slice(ys.start + pad - r, ys.stop + pad + r),
            slice(xs.start + pad - r, xs.stop + pad + r),
        )
        for c in range(nch):
            if method == "gather":
                out[ys, xs, c] += weight * _convolve_valid(padded[(*win, c)], kern, route)
            else:
                src = np.pad(weight * data[ys, xs, c], 2 * r)  # zero margins: 'full' output
                canvas[(*win, c)] += _convolve_valid(src, kern, route)
    if method == "scatter":
        out = _fold(canvas, pad, shape, mode)
    return finish_channels(out, channel_axis, dtype, in_dtype)


# --------------------------------------------------------------------------------------------
# generators


def tilt_map(
    shape: tuple[int, int],
    *,
    position: float = 0.5,
    angle: float = 0.0,
    slope: float = 0.02,
    floor: float = 0.5,
) -> np.ndarray:
    """Sigma map of a tilted flat sample (the SEM case): sharp along a line, blurrier away.

    Defocus grows linearly with the distance d from the in-focus line, and the in-focus probe
    blur ``floor`` adds in quadrature: ``sigma = sqrt(floor² + (slope · d)²)``.

    Parameters
    ----------
    shape : (int, int)
        Map shape (rows, columns).
    position : float
        Where the sharp line crosses the image's vertical centre line, as a fraction of the
        height from the top (0.62 = 62 % down).
    angle : float
        Tilt of the sharp line in degrees, counter-clockwise from horizontal as displayed.
    slope : float
        Increase of sigma (px) per pixel of distance from the line.
    floor : float
        Sigma on the line, in pixels.

    Returns
    -------
    ndarray of float32

    Examples
    --------
    >>> m = tilt_map((100, 50), position=0.62, slope=0.1, floor=1.0)
    >>> int(m[:, 25].argmin()), float(m.min()), round(float(m[12, 25]), 3)
    (62, 1.0, 5.099)
    """
    try:
        h, w = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise BadInputError(f"shape must be two integers, got {shape!r}") from None
    if h < 1 or w < 1:
        raise BadInputError(f"shape must be positive, got {shape!r}")
    slope = positive("slope", slope)
    floor = positive("floor", floor)
    position, theta = float(position), math.radians(float(angle))
    if not (math.isfinite(position) and math.isfinite(theta)):
        raise BadInputError("position and angle must be finite")
    y = np.arange(h, dtype=np.float64)[:, None] - position * h
    x = np.arange(w, dtype=np.float64)[None, :] - (w - 1) / 2
    # Signed distance from the line through (position·h, centre) at angle θ (rows point down).
    d = y * math.cos(theta) + x * math.sin(theta)
    return np.hypot(floor, slope * d).astype(np.float32)


def depth_to_sigma(
    depth: np.ndarray,
    *,
    focus: float,
    aperture: float,
    focal_length: float | None = None,
    pixel_size: float | None = None,
    disparity: bool = False,
) -> np.ndarray:
    """Sigma map from depth (or stereo disparity) by the thin-lens circle of confusion.

    A point at depth d images to a blur circle of diameter
    ``c = A f |d − s| / (d (s − f))`` on the sensor for a lens of focal length f and aperture
    diameter A = f/N focused at s (Born & Wolf §4; Pentland 1987). It is a uniform disk of
    radius c/2, so sigma = c/4 in pixels.

    Parameters
    ----------
    depth : ndarray
        Depth map (> 0), or disparity in pixels with ``disparity=True``.
    focus : float
        Depth s that is in focus (same unit as ``depth``), or its disparity.
    aperture : float
        Aperture diameter A, in the length unit of ``depth``. With ``disparity=True``: A
        divided by the stereo baseline (the stereo camera being the one that blurs), since
        disparity is proportional to inverse depth and then ``c = (A/B) |δ − δ_s|`` px.
    focal_length, pixel_size : float, optional
        Lens focal length and sensor pixel pitch, in the same unit as ``depth``; required
        unless ``disparity=True``.
    disparity : bool
        Whether ``depth`` holds disparities.

    Returns
    -------
    ndarray of float32
        Sigma in pixels.

    Examples
    --------
    >>> d = np.array([[1000.0, 2000.0, 4000.0]])  # mm
    >>> depth_to_sigma(d, focus=2000, aperture=50 / 2.8, focal_length=50, pixel_size=0.005)
    array([[22.89..., 0. , 11.44...]], dtype=float32)
    >>> depth_to_sigma(np.array([[10.0, 20.0]]), focus=20, aperture=0.4, disparity=True)
    array([[1., 0.]], dtype=float32)
    """
    z = np.asarray(depth, dtype=np.float64)
    if not np.isfinite(z).all():
        raise BadInputError("depth map contains NaN or infinite values")
    aperture = positive("aperture", aperture)
    focus = float(focus)
    if disparity:
        return (aperture * np.abs(z - focus) / 4).astype(np.float32)
    if focal_length is None or pixel_size is None:
        raise BadInputError("depth_to_sigma needs focal_length and pixel_size for depth maps")
    f = positive("focal_length", focal_length, allow_zero=False)
    p = positive("pixel_size", pixel_size, allow_zero=False)
    if not focus > f:
        raise BadInputError(f"focus distance {focus:g} must exceed the focal length {f:g}")
    if z.min() <= 0:
        raise BadInputError("depth map must be positive")
    coc = aperture * f * np.abs(z - focus) / (z * (focus - f))
    return (coc / (4 * p)).astype(np.float32)


def _rng(rng: int | np.random.Generator | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def add_gaussian_noise(
    image: np.ndarray,
    sigma: float,
    *,
    rng: int | np.random.Generator | None = 0,
    channel_axis: int | None = None,
    dtype: Any = None,
) -> np.ndarray:
    """Add white Gaussian noise of standard deviation ``sigma`` (in intensity units).

    ``rng`` seeds the draw (default 0, so the same call gives the same noise); pass a
    :class:`numpy.random.Generator` for independent draws.

    Examples
    --------
    >>> noisy = add_gaussian_noise(np.full((200, 200), 100.0), 5.0)
    >>> round(float(noisy.std()), 1), noisy.dtype
    (5.0, dtype('float64'))
    """
    data, in_dtype = channels_last(image, channel_axis)
    sigma = positive("sigma", sigma)
    out = data + _rng(rng).normal(0.0, sigma, data.shape).astype(data.dtype)
    return finish_channels(out, channel_axis, dtype, in_dtype)


def add_poisson_noise(
    image: np.ndarray,
    *,
    counts_per_unit: float = 1.0,
    rng: int | np.random.Generator | None = 0,
    channel_axis: int | None = None,
    dtype: Any = None,
) -> np.ndarray:
    """Shot noise, as from electron or photon counting (SEM, low-light imaging).

    Each pixel becomes ``Poisson(value · counts_per_unit) / counts_per_unit``, so the mean is
    unchanged and the signal-to-noise ratio of a pixel is ``sqrt(value · counts_per_unit)``.

    Examples
    --------
    >>> noisy = add_poisson_noise(np.full((200, 200), 50.0), counts_per_unit=4.0)
    >>> round(float(noisy.mean())), bool(abs(noisy.var() - 50 / 4) < 0.3)
    (50, True)
    """
    data, in_dtype = channels_last(image, channel_axis)
    gain = positive("counts_per_unit", counts_per_unit, allow_zero=False)
    if data.min() < 0:
        raise BadInputError("Poisson noise needs non-negative intensities")
    counts = _rng(rng).poisson(data.astype(np.float64) * gain)
    return finish_channels((counts / gain).astype(data.dtype), channel_axis, dtype, in_dtype)


def jpeg_compress(
    image: np.ndarray, *, quality: int = 75, channel_axis: int | None = None
) -> np.ndarray:
    """Round-trip an 8-bit image through JPEG compression at the given quality (1–95).

    JPEG stores 8-bit samples, so the image must be uint8, or float with values in [0, 255]
    (rounded before encoding; the result is then float32). Colour needs three channels.

    Examples
    --------
    >>> from skimage import data
    >>> img = data.camera()[:128, :128]
    >>> low, high = jpeg_compress(img, quality=10), jpeg_compress(img, quality=95)
    >>> err = [np.abs(j.astype(float) - img).mean() for j in (low, high)]
    >>> low.dtype, bool(err[0] > err[1])
    (dtype('uint8'), True)
    """
    import imageio.v3 as iio

    if not 1 <= int(quality) <= 95:
        raise BadInputError(f"JPEG quality must be 1..95, got {quality}")
    arr = np.asarray(image)
    data, in_dtype = channels_last(arr, channel_axis)
    if np.issubdtype(in_dtype, np.integer) and in_dtype != np.uint8:
        raise BadInputError(f"JPEG holds 8-bit data; got {in_dtype} (convert it explicitly)")
    if data.min() < -0.5 or data.max() > 255.5:
        raise BadInputError("JPEG holds values 0..255; this image's range is wider")
    if data.shape[-1] not in (1, 3):
        raise BadInputError(f"JPEG needs 1 or 3 channels, got {data.shape[-1]}")
    pixels = np.clip(np.rint(data), 0, 255).astype(np.uint8)
    encoded = iio.imwrite(
        "<bytes>",
        pixels[..., 0] if pixels.shape[-1] == 1 else pixels,
        extension=".jpg",
        quality=int(quality),
    )
    decoded = iio.imread(io.BytesIO(encoded), extension=".jpg")
    decoded = decoded.reshape(data.shape)
    dtype = np.uint8 if in_dtype == np.uint8 else np.float32
    return finish_channels(decoded.astype(np.float32), channel_axis, dtype, in_dtype)
