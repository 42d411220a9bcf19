"""Point-spread-function models: rendering, moments, size conversions and analytic OTFs.

Every kernel is a float64 array that sums to 1. Unless a ``shape`` is requested it is an odd
square large enough to hold at least 99.9 % of the model's energy, centred on its middle pixel
(``offset`` moves the PSF centre by a sub-pixel amount).

Two kinds of sampling are used, and :data:`MODELS` records which one each model has:

* **point-sampled** (``gauss``, ``airy``, ``defocus``): the kernel holds the continuous PSF's
  values at pixel centres, like :func:`scipy.ndimage.gaussian_filter`. For a PSF band-limited
  below the Nyquist frequency the kernel's transfer function *is* the analytic OTF.
* **area-sampled** (``disk``, ``ring``, ``box``, ``motion``): PSFs with hard edges are
  anti-aliased by integrating them exactly over each pixel, so the kernel is the PSF convolved
  with the unit pixel box. Its transfer function is the OTF times ``sinc(fy) sinc(fx)`` and
  its variance is the PSF's plus 1/12 px² per axis (pass ``area_sampled=True`` to
  :func:`moments` to remove it).

The unit of blur is sigma in pixels, the per-axis standard deviation of the PSF (see
:func:`sigma_of`); :func:`blur_width` and :func:`convert_width` translate it to radius,
diameter, FWHM and 20–80 % edge width.

References
----------
.. [1] M. Born and E. Wolf, *Principles of Optics*, 7th ed., Cambridge University Press, 1999,
   §8.5 (Airy pattern) and §9.4 (defocus).
.. [2] H. H. Hopkins, "The frequency response of a defocused optical system", Proc. R. Soc.
   Lond. A 231, 91–103 (1955).
.. [3] P. A. Stokseth, "Properties of a defocused optical system", J. Opt. Soc. Am. 59,
   1314–1321 (1969).
.. [4] B. Zhang, J. Zerubia and J.-C. Olivo-Marin, "Gaussian approximations of fluorescence
   microscope point-spread function models", Appl. Opt. 46, 1819–1829 (2007).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import scipy.fft
import scipy.ndimage as ndi
import scipy.special

from ._array import positive
from ._errors import BadInputError

__all__ = [
    "ENERGY",
    "FAMILIES",
    "MAX_KERNEL_SIZE",
    "MODELS",
    "KernelMoments",
    "PSFModel",
    "airy",
    "airy_radius",
    "as_kernel",
    "astigmatic",
    "astigmatic_axes",
    "blur_width",
    "box",
    "check_family",
    "convert_width",
    "defocus",
    "defocus_otf",
    "disk",
    "elliptical_gauss",
    "family_kernel",
    "gaussian",
    "moments",
    "motion",
    "natural_from_sigma",
    "otf",
    "render",
    "ring",
    "sigma_of",
]

#: Fraction of a model's energy that a default-sized kernel holds.
ENERGY = 0.999
#: Largest kernel side (px) rendered: 4097² float64 values are 134 MB, and blur wider than
#: this is better measured on a downsampled image.
MAX_KERNEL_SIZE = 4097
# Half-width, in sigma, of the square holding ENERGY of a 2-D Gaussian: erf(3.5/√2)² > 0.999.
_GAUSS_HALF_WIDTH = 3.5
# First zero of J1: the Airy first-dark-ring radius is _J1_ZERO / (π fc) for cutoff fc.
_J1_ZERO = float(scipy.special.jn_zeros(1, 1)[0])
# Gaussian core fitted to the Airy pattern: sigma = 0.21 λ/NA (Zhang et al. 2007, 2-D paraxial),
# and the Airy first-zero radius is 0.61 λ/NA, so sigma = 0.3443 × first-zero radius.
_AIRY_SIGMA_PER_RADIUS = 0.21 / (_J1_ZERO / (2 * math.pi))
# 80 % point of the normal CDF and of the edge spread of a uniform disk (semicircle CDF).
_GAUSS_EDGE = 2 * float(scipy.special.ndtri(0.8))


def _disk_esf(u: float) -> float:
    """Edge spread of a unit uniform disk at distance u from the edge's centre line."""
    u = min(max(u, -1.0), 1.0)
    return 0.5 + (u * math.sqrt(1 - u * u) + math.asin(u)) / math.pi


@functools.cache
def _disk_edge() -> float:
    """20-80 % edge width of a unit-radius disk (solved once, on first use)."""
    return 2 * _brentq(lambda u: _disk_esf(u) - 0.8, 0.0, 1.0)


def _brentq(f, a: float, b: float, **kw) -> float:
    from scipy.optimize import brentq  # scipy.optimize is slow to import; few calls need it

    return float(brentq(f, a, b, **kw))


_FWHM_PER_SIGMA = 2 * math.sqrt(2 * math.log(2))

Shape = int | tuple[int, int] | None
Offset = tuple[float, float]


# --------------------------------------------------------------------------------------------
# helpers


def _layout(shape: Shape, offset: Offset, support: float) -> tuple[tuple[int, int], Offset]:
    """Kernel shape and PSF centre (row, col) in array coordinates.

    By default the kernel reaches ``support`` px beyond the PSF centre on every side (for an
    area-sampled PSF of extent r, pixels up to r − 1/2 away can overlap it).
    """
    try:
        oy, ox = (float(v) for v in offset)
    except (TypeError, ValueError):
        raise BadInputError(f"offset must be a pair of numbers (dy, dx), got {offset!r}") from None
    if not (math.isfinite(oy) and math.isfinite(ox)):
        raise BadInputError("offset must be finite")
    if shape is None:
        reach = max(support, 0.0) + max(abs(oy), abs(ox))
        if not reach < MAX_KERNEL_SIZE:  # before ceil: an infinite reach has no integer
            raise BadInputError(
                f"the PSF reaches {reach:.4g} px from its centre, beyond the kernel limit of "
                f"{MAX_KERNEL_SIZE} px; blur that wide is better applied to a downsampled image"
            )
        n = 2 * math.ceil(reach) + 1
        out = (n, n)
    else:
        given = (shape, shape) if isinstance(shape, int | np.integer) else tuple(shape)
        if len(given) != 2 or min(given) < 1:
            raise BadInputError(f"kernel shape must be two positive integers, got {shape!r}")
        out = (int(given[0]), int(given[1]))
    if max(out) > MAX_KERNEL_SIZE:
        raise BadInputError(
            f"kernel {out[0]}x{out[1]} px is above the limit of {MAX_KERNEL_SIZE} px a side; "
            "blur that wide is better applied to a downsampled image"
        )
    return out, ((out[0] - 1) / 2 + oy, (out[1] - 1) / 2 + ox)


def _normalised(kernel: np.ndarray, model: str) -> np.ndarray:
    # Every PSF is an intensity, >= 0. Differences of pixel areas (disk, ring) and inverse
    # FFTs leave rounding residues of either sign (-6e-17 in a disk of radius 3): drop them.
    kernel = np.maximum(kernel, 0.0)
    total = kernel.sum()
    if not total > 0:
        raise BadInputError(f"{model} kernel has no energy inside the requested shape")
    return kernel / total


def _delta(shape: tuple[int, int], centre: tuple[float, float]) -> np.ndarray:
    """All weight on the pixel holding the centre: the limit of every model at zero size."""
    k = np.zeros(shape)
    iy, ix = (min(max(round(c), 0), n - 1) for c, n in zip(centre, shape, strict=True))
    k[iy, ix] = 1.0
    return k


def _edges(n: int, c: float) -> np.ndarray:
    """Pixel boundaries along one axis, relative to the PSF centre."""
    return np.arange(n + 1) - 0.5 - c


def _disk_coverage(shape: tuple[int, int], centre: tuple[float, float], r: float) -> np.ndarray:
    """Exact area of each pixel inside a circle of radius r (inclusion–exclusion of corners)."""
    if r <= 0:
        return np.zeros(shape)
    y = _edges(shape[0], centre[0])[:, None]
    x = _edges(shape[1], centre[1])[None, :]
    ay, ax = np.minimum(np.abs(y), r), np.minimum(np.abs(x), r)
    # F(x, y) = signed area of the circle inside [0, x] × [0, y]; integrate min(y, √(r²-u²)).
    u0 = np.sqrt(np.maximum(r * r - ay * ay, 0.0))
    ux = np.minimum(ax, u0)

    def seg(u: np.ndarray) -> np.ndarray:  # ∫₀ᵘ √(r² − t²) dt
        return 0.5 * (u * np.sqrt(np.maximum(r * r - u * u, 0.0)) + r * r * np.arcsin(u / r))

    f = (ay * ux + seg(ax) - seg(ux)) * np.sign(y) * np.sign(x)
    return f[1:, 1:] - f[:-1, 1:] - f[1:, :-1] + f[:-1, :-1]


def _sinc_pixel(fy: np.ndarray, fx: np.ndarray) -> np.ndarray:
    """Transfer function of the unit pixel box that area sampling applies."""
    return np.sinc(fy) * np.sinc(fx)


def _jinc(rho: np.ndarray, r: float) -> np.ndarray:
    """OTF of a uniform disk of radius r: 2 J1(2πrρ) / (2πrρ)."""
    arg = 2 * np.pi * r * np.asarray(rho, dtype=float)
    out = np.ones_like(arg)
    nz = arg > 1e-12
    out[nz] = 2 * scipy.special.j1(arg[nz]) / arg[nz]
    return out


# --------------------------------------------------------------------------------------------
# models


def gaussian(sigma: float, *, shape: Shape = None, offset: Offset = (0.0, 0.0)) -> np.ndarray:
    """Isotropic Gaussian PSF, point-sampled like :func:`scipy.ndimage.gaussian_filter`.

    Parameters
    ----------
    sigma : float
        Standard deviation in pixels (0 gives the identity kernel).
    shape : int or (int, int), optional
        Kernel shape. Default: odd square of half-width ``ceil(3.5 sigma)``, which holds
        more than 99.9 % of the energy.
    offset : (float, float)
        Sub-pixel position (dy, dx) of the PSF centre relative to the kernel's centre.

    Returns
    -------
    ndarray of float64, summing to 1

    Examples
    --------
    >>> k = gaussian(1.0)
    >>> k.shape, round(float(k.sum()), 12)
    ((9, 9), 1.0)
    >>> round(moments(k).sigma, 3)
    1.0
    """
    sigma = positive("sigma", sigma)
    shape, (cy, cx) = _layout(shape, offset, _GAUSS_HALF_WIDTH * sigma)
    if sigma == 0:
        return _delta(shape, (cy, cx))
    gy = np.exp(-0.5 * ((np.arange(shape[0]) - cy) / sigma) ** 2)
    gx = np.exp(-0.5 * ((np.arange(shape[1]) - cx) / sigma) ** 2)
    return _normalised(np.outer(gy, gx), "gauss")


def disk(radius: float, *, shape: Shape = None, offset: Offset = (0.0, 0.0)) -> np.ndarray:
    """Uniform disk (pillbox): geometric-optics defocus, anti-aliased by exact pixel coverage.

    Each pixel holds the exact area of its intersection with the circle, so the kernel is
    area-sampled (see the module notes). Its sigma is ``radius / 2``.

    Parameters
    ----------
    radius : float
        Radius in pixels (0 gives the identity kernel).
    shape, offset
        As for :func:`gaussian`.

    Examples
    --------
    >>> k = disk(5.0)
    >>> k.shape
    (11, 11)
    >>> round(moments(k, area_sampled=True).sigma, 2)
    2.5
    """
    radius = positive("radius", radius)
    shape, centre = _layout(shape, offset, radius - 0.5)
    if radius == 0:
        return _delta(shape, centre)
    return _normalised(_disk_coverage(shape, centre, radius), "disk")


def ring(
    radius: float,
    *,
    width: float = 1.0,
    softness: float = 0.0,
    shape: Shape = None,
    offset: Offset = (0.0, 0.0),
) -> np.ndarray:
    """Ring (annulus), the "bokeh" PSF of a lens with a central obstruction or strong defocus.

    The annulus between ``radius ∓ width/2`` is area-sampled, then blurred by a Gaussian of
    standard deviation ``softness`` to soften its edges.

    Parameters
    ----------
    radius : float
        Radius of the ring's centre line, in pixels.
    width : float
        Radial thickness in pixels (> 0). A width of twice the radius or more gives a disk.
    softness : float
        Sigma of the Gaussian edge blur in pixels.
    shape, offset
        As for :func:`gaussian`.

    Examples
    --------
    >>> k = ring(10.0, width=2.0, softness=1.0)
    >>> bool(k[k.shape[0] // 2, k.shape[1] // 2] < k.max() / 10)  # hollow centre
    True
    """
    radius = positive("radius", radius)
    width = positive("width", width, allow_zero=False)
    softness = positive("softness", softness)
    outer, inner = radius + width / 2, max(radius - width / 2, 0.0)
    shape, centre = _layout(shape, offset, outer - 0.5 + _GAUSS_HALF_WIDTH * softness)
    k = _disk_coverage(shape, centre, outer) - _disk_coverage(shape, centre, inner)
    if softness > 0:
        k = ndi.gaussian_filter(k, softness, mode="constant", truncate=4.0)
    return _normalised(k, "ring")


def box(
    width: float,
    *,
    height: float | None = None,
    shape: Shape = None,
    offset: Offset = (0.0, 0.0),
) -> np.ndarray:
    """Uniform rectangle (box filter), area-sampled.

    Parameters
    ----------
    width : float
        Width along x (columns) in pixels.
    height : float, optional
        Height along y (rows); default equal to ``width``.
    shape, offset
        As for :func:`gaussian`.

    Examples
    --------
    >>> box(3.0)
    array([[0.111..., 0.111..., 0.111...],
           [0.111..., 0.111..., 0.111...],
           [0.111..., 0.111..., 0.111...]])
    """
    width = positive("width", width)
    height = width if height is None else positive("height", height)
    shape, (cy, cx) = _layout(shape, offset, max(width, height) / 2 - 0.5)

    def cover(n: int, c: float, size: float) -> np.ndarray:
        e = _edges(n, c)
        if size == 0:  # a line: all weight in the pixel holding the centre
            return ((e[:-1] <= 0) & (e[1:] > 0)).astype(float)
        return np.clip(np.minimum(e[1:], size / 2) - np.maximum(e[:-1], -size / 2), 0, None)

    return _normalised(np.outer(cover(shape[0], cy, height), cover(shape[1], cx, width)), "box")


def motion(
    length: float,
    *,
    angle: float = 0.0,
    shape: Shape = None,
    offset: Offset = (0.0, 0.0),
) -> np.ndarray:
    """Linear motion blur: a straight segment, area-sampled by the exact length in each pixel.

    Parameters
    ----------
    length : float
        Length of the segment in pixels (0 gives the identity kernel).
    angle : float
        Direction in degrees, counter-clockwise from the +x (column) axis as displayed, with
        rows running downwards.
    shape, offset
        As for :func:`gaussian`.

    Examples
    --------
    >>> motion(3.0)
    array([[0.       , 0.       , 0.       ],
           [0.333..., 0.333..., 0.333...],
           [0.       , 0.       , 0.       ]])
    """
    length = positive("length", length)
    try:
        theta = math.radians(float(angle))
    except (TypeError, ValueError):
        raise BadInputError(f"angle must be a number, got {angle!r}") from None
    if not math.isfinite(theta):
        raise BadInputError("angle must be finite")
    shape, centre = _layout(shape, offset, length / 2 - 0.5)
    if length == 0:
        return _delta(shape, centre)
    # Clip the segment c + t·u, |t| <= L/2, to each pixel (Liang–Barsky) and keep the length.
    u = (-math.sin(theta), math.cos(theta))  # (dy, dx); y grows downwards
    lo = np.full(shape, -length / 2)
    hi = np.full(shape, length / 2)
    for axis, (n, c, d) in enumerate(zip(shape, centre, u, strict=True)):
        e = _edges(n, c)
        if abs(d) < 1e-12:  # parallel to this axis: inside the slab or not at all
            inside = (e[:-1] <= 0) & (e[1:] > 0)
            a = np.where(inside, -np.inf, np.inf)
            b = np.where(inside, np.inf, -np.inf)
        else:
            a, b = np.minimum(e[:-1] / d, e[1:] / d), np.maximum(e[:-1] / d, e[1:] / d)
        a, b = (a[:, None], b[:, None]) if axis == 0 else (a[None, :], b[None, :])
        lo, hi = np.maximum(lo, a), np.minimum(hi, b)
    return _normalised(np.clip(hi - lo, 0, None), "motion")


def airy_radius(wavelength: float, na: float, pixel_size: float) -> float:
    """First-dark-ring radius of the Airy pattern in pixels: 0.61 λ / NA / pixel size.

    ``wavelength`` and ``pixel_size`` share one length unit (the pixel size in the object plane
    for a microscope).

    Examples
    --------
    >>> round(airy_radius(0.5, 1.0, 0.1), 3)
    3.049
    """
    wavelength = positive("wavelength", wavelength, allow_zero=False)
    na = positive("na", na, allow_zero=False)
    pixel_size = positive("pixel_size", pixel_size, allow_zero=False)
    return _J1_ZERO / (2 * math.pi) * wavelength / (na * pixel_size)


def _cutoff(
    radius: float | None,
    wavelength: float | None,
    na: float | None,
    pixel_size: float | None,
    name: str,
    model: str,
) -> float:
    """Incoherent cutoff frequency (cycles/px) from an Airy radius or from λ, NA, pixel size."""
    optics = (wavelength, na, pixel_size)
    if radius is None:
        if any(v is None for v in optics):
            raise BadInputError(
                f"{model} PSF needs {name}, or all of wavelength, na and pixel_size"
            )
        radius = airy_radius(wavelength, na, pixel_size)  # type: ignore[arg-type]
    elif any(v is not None for v in optics):
        raise BadInputError(
            f"{model} PSF takes either {name} or wavelength/na/pixel_size, not both"
        )
    radius = positive(name, radius, allow_zero=False)
    return _J1_ZERO / (math.pi * radius)


# The optical parameters that may stand in for an Airy radius, in _cutoff's order.
_OPTICS = ("wavelength", "na", "pixel_size")


def _model_cutoff(params: Mapping[str, Any], model: str) -> float:
    """:func:`_cutoff` from a model's parameters: airy's ``radius``, the others' ``airy_radius``."""
    key = "radius" if model == "airy" else "airy_radius"
    wavelength, na, pixel_size = (params.get(k) for k in _OPTICS)
    return _cutoff(params.get(key), wavelength, na, pixel_size, key, model)


def _airy_sigma(cutoff: float) -> float:
    """Sigma of the Gaussian core fitted to the Airy pattern of this cutoff (Zhang et al. 2007)."""
    return _AIRY_SIGMA_PER_RADIUS * _J1_ZERO / (math.pi * cutoff)


def _airy_otf(rho: np.ndarray, cutoff: float) -> np.ndarray:
    """Diffraction-limited incoherent OTF of a circular pupil (Born & Wolf §9.5)."""
    s = np.clip(np.asarray(rho, dtype=float) / cutoff, 0.0, 1.0)
    return (2 / np.pi) * (np.arccos(s) - s * np.sqrt(1 - s * s))


def defocus_otf(
    rho: np.ndarray,
    *,
    waves: float,
    cutoff: float,
    method: str = "hopkins",
) -> np.ndarray:
    """Incoherent OTF of a defocused, otherwise perfect, circular-pupil system.

    Parameters
    ----------
    rho : array_like
        Radial spatial frequency in cycles per pixel.
    waves : float
        Defocus W020: wavefront error at the pupil edge, in waves.
    cutoff : float
        Incoherent cutoff frequency 2 NA / λ, in cycles per pixel.
    method : {"hopkins", "stokseth"}
        ``"hopkins"`` evaluates the exact pupil autocorrelation (Hopkins 1955) by Gauss–Legendre
        quadrature of ``(4/π) ∫₀^β sin²θ cos(4π W s (cos θ − s/2)) dθ`` with ``s = 2ρ/cutoff``
        and ``β = arccos(s/2)``. ``"stokseth"`` is Stokseth's (1969) closed-form approximation
        ``(1 − 0.69 s + 0.0076 s² + 0.043 s³) · jinc(4π W s (1 − s/2))``.

    Returns
    -------
    ndarray of float64, same shape as ``rho``, zero beyond the cutoff

    Examples
    --------
    >>> f = np.array([0.0, 0.1, 0.25])
    >>> defocus_otf(f, waves=0.0, cutoff=0.5).round(4)  # in focus: the Airy OTF
    array([1.    , 0.7471, 0.391 ])
    >>> bool(abs(defocus_otf(f, waves=1.0, cutoff=0.5, method="stokseth")
    ...          - defocus_otf(f, waves=1.0, cutoff=0.5)).max() < 0.02)
    True
    """
    waves = positive("waves", waves)
    cutoff = positive("cutoff", cutoff, allow_zero=False)
    rho = np.asarray(rho, dtype=float)
    s = np.clip(2 * np.abs(rho) / cutoff, 0.0, 2.0)
    if method == "stokseth":
        a = 4 * np.pi * waves * s * (1 - s / 2)
        poly = 1 - 0.69 * s + 0.0076 * s**2 + 0.043 * s**3
        out = poly * _jinc(a / (2 * np.pi), 1.0)
    elif method == "hopkins":
        # The integrand oscillates about 2·W·s times over the range: scale the node count.
        nodes, weights = np.polynomial.legendre.leggauss(48 + int(16 * waves))
        beta = np.arccos(s / 2)[..., None]
        theta = 0.5 * beta * (nodes + 1)
        integrand = np.sin(theta) ** 2 * np.cos(
            4 * np.pi * waves * s[..., None] * (np.cos(theta) - s[..., None] / 2)
        )
        out = (4 / np.pi) * 0.5 * beta[..., 0] * (integrand @ weights)
    else:
        raise BadInputError(f"method must be 'hopkins' or 'stokseth', got {method!r}")
    return np.where(s < 2, out, 0.0)


def _render_band_limited(
    otf1d: Callable[[np.ndarray], np.ndarray],
    cutoff: float,
    support: float,
    shape: Shape,
    offset: Offset,
    model: str,
) -> np.ndarray:
    """Point samples of a radially symmetric PSF given its OTF, which is zero beyond ``cutoff``.

    The samples' spectrum is the OTF folded over the aliases ``f + k``; one inverse FFT on a
    grid a little larger than the kernel gives them (periodisation leaves < 0.1 % energy).
    """
    requested = shape is not None
    shape, (cy, cx) = _layout(shape, offset, support)
    grid = tuple(scipy.fft.next_fast_len(n + 64) for n in shape)
    # The OTF is radial and smooth inside the cutoff: tabulate it once, then interpolate.
    table_rho = np.linspace(0.0, cutoff, max(4096, int(64 * support * cutoff)))
    table = otf1d(table_rho)
    fy = scipy.fft.fftfreq(grid[0])[:, None]
    fx = scipy.fft.fftfreq(grid[1])[None, :]
    # Put the PSF centre at (dy, dx) from grid index 0; rolling by the kernel's central index
    # then places it at (cy, cx) in the cropped kernel.
    iy, ix = (shape[0] - 1) // 2, (shape[1] - 1) // 2
    dy, dx = cy - iy, cx - ix
    spec = np.zeros(grid, dtype=complex)
    kmax = math.ceil(cutoff + 0.5)
    for ky in range(-kmax, kmax + 1):
        for kx in range(-kmax, kmax + 1):
            gy, gx = fy + ky, fx + kx
            if max(np.abs(gy).min(), np.abs(gx).min()) >= cutoff:
                continue
            spec += np.interp(np.hypot(gy, gx), table_rho, table, right=0.0) * np.exp(
                -2j * np.pi * (gy * dy + gx * dx)
            )
    full = np.roll(scipy.fft.ifft2(spec).real, (iy, ix), axis=(0, 1))
    kernel = full[: shape[0], : shape[1]]
    if not requested:
        kernel = _crop_energy(kernel)
    return _normalised(kernel, model)


def _crop_energy(kernel: np.ndarray) -> np.ndarray:
    """Smallest centred odd square holding ENERGY of the kernel's total energy."""
    n = kernel.shape[0]
    c = n // 2
    idx = np.arange(n) - c
    ring_of = np.maximum(np.abs(idx)[:, None], np.abs(idx)[None, :])
    energy = np.cumsum(np.bincount(ring_of.ravel(), weights=kernel.ravel()))
    h = int(np.searchsorted(energy, ENERGY * energy[-1]))
    return kernel[c - h : c + h + 1, c - h : c + h + 1]


def _tail_support(cutoff: float) -> float:
    # Far from the core a clear circular pupil's encircled-energy deficit is ≈ 2 / (π² fc r)
    # (edge diffraction, Born & Wolf §8.5), so 99.9 % lies within ≈ 203 / fc pixels.
    return 2 / (math.pi**2 * cutoff * (1 - ENERGY))


def airy(
    radius: float | None = None,
    *,
    wavelength: float | None = None,
    na: float | None = None,
    pixel_size: float | None = None,
    shape: Shape = None,
    offset: Offset = (0.0, 0.0),
) -> np.ndarray:
    """Airy pattern of an in-focus, diffraction-limited circular pupil, point-sampled.

    Parameters
    ----------
    radius : float, optional
        Radius of the first dark ring in pixels (0.61 λ/NA over the pixel size).
    wavelength, na, pixel_size : float, optional
        Alternatively, the wavelength and pixel size in one length unit and the numerical
        aperture.
    shape, offset
        As for :func:`gaussian`. The intensity falls as r⁻³, so holding 99.9 % of the energy
        takes a half-width of about 166 first-zero radii; request a ``shape`` for a compact
        kernel.

    Notes
    -----
    When the first-zero radius is at least 2.44 px (Nyquist sampling), the kernel's transfer
    function equals the analytic OTF :func:`otf` ``("airy", ...)``; otherwise it is aliased.

    Examples
    --------
    >>> k = airy(3.0, shape=33)
    >>> bool(k[16, 16] == k.max()), bool(k[16, 19] < 1e-4 * k.max())  # dark ring at 3 px
    (True, True)
    """
    cutoff = _cutoff(radius, wavelength, na, pixel_size, "radius", "airy")
    return _render_band_limited(
        lambda rho: _airy_otf(rho, cutoff), cutoff, _tail_support(cutoff), shape, offset, "airy"
    )


def defocus(
    radius: float | None = None,
    *,
    waves: float | None = None,
    spherical: float = 0.0,
    airy_radius: float | None = None,
    wavelength: float | None = None,
    na: float | None = None,
    pixel_size: float | None = None,
    shape: Shape = None,
    offset: Offset = (0.0, 0.0),
) -> np.ndarray:
    """Wave-optics defocus PSF of a circular pupil, from the exact Hopkins OTF, point-sampled.

    Give the amount of defocus either as the geometric blur-circle ``radius`` in pixels or as
    ``waves`` (W020, wavefront error at the pupil edge); they are related by
    ``radius = 4 · waves / cutoff`` with ``cutoff = 2 NA/λ`` in cycles per pixel (Born & Wolf
    §9.4). For large defocus the PSF tends to :func:`disk` of that radius; at zero it is
    :func:`airy`.

    Parameters
    ----------
    radius : float, optional
        Geometric blur-circle radius in pixels.
    waves : float, optional
        Defocus W020 in waves. Its sign shows in the PSF only together with ``spherical``.
    spherical : float
        Primary spherical aberration W040 in waves. The pupil phase is then
        ``2π (W020 ρ² + W040 ρ⁴)`` (ρ = 1 at the pupil edge), so the two sides of focus differ:
        where W020 and W040 have opposite signs the defocus is partly balanced (Born & Wolf
        §9.3). Flipping both signs gives the same intensity PSF, so only their relative sign
        can be measured.
    airy_radius : float, optional
        First-dark-ring radius of the in-focus Airy pattern in pixels; or give
        ``wavelength``, ``na`` and ``pixel_size`` as for :func:`airy`.
    shape, offset
        As for :func:`gaussian`.

    Examples
    --------
    >>> k = defocus(waves=1.0, airy_radius=2.5, shape=31)  # one wave: a dark centre
    >>> round(float(k.sum()), 12), bool(k[15, 15] < k.max() / 10)
    (1.0, True)
    >>> near = defocus(waves=-0.5, spherical=0.5, airy_radius=2.5, shape=31)
    >>> far = defocus(waves=0.5, spherical=0.5, airy_radius=2.5, shape=31)
    >>> bool(near[15, 15] > far[15, 15])  # the side where spherical aberration balances defocus
    True
    """
    cutoff = _cutoff(airy_radius, wavelength, na, pixel_size, "airy_radius", "defocus")
    w = _defocus_waves(radius, waves, cutoff)
    spherical = _number("spherical", spherical)
    if spherical != 0:
        spread = (2 * abs(w) + 4 * abs(spherical)) / (cutoff / 2)
        return _render_pupil(
            cutoff,
            lambda uy, ux: _wavefront(uy * uy + ux * ux, w, spherical),
            spread,
            1.2 * spread + _tail_support(cutoff),
            shape,
            offset,
            "defocus",
        )
    w = abs(w)
    return _render_band_limited(
        lambda rho: defocus_otf(rho, waves=w, cutoff=cutoff),
        cutoff,
        1.2 * 4 * w / cutoff + _tail_support(cutoff),
        shape,
        offset,
        "defocus",
    )


def _defocus_terms(p: Mapping[str, Any]) -> tuple[float, float, float]:
    """Cutoff, W020 and W040 (waves) from the defocus model's parameters."""
    cutoff = _model_cutoff(p, "defocus")
    w = _defocus_waves(p.get("radius"), p.get("waves"), cutoff)
    return cutoff, w, _number("spherical", p.get("spherical", 0.0))


def _defocus_waves(radius: float | None, waves: float | None, cutoff: float) -> float:
    """W020 in waves (signed when given as waves); the blur-circle radius is 4 |W020| / cutoff."""
    if (radius is None) == (waves is None):
        raise BadInputError("defocus PSF needs exactly one of radius (px) and waves")
    if waves is not None:
        return _number("waves", waves)
    return positive("radius", radius) * cutoff / 4  # type: ignore[arg-type]


def _wavefront(rho2: np.ndarray, defocus: float, spherical: float) -> np.ndarray:
    """W020 ρ² + W040 ρ⁴ in waves, from ρ²."""
    return defocus * rho2 + spherical * rho2 * rho2


def _number(name: str, value: float) -> float:
    """A finite number of either sign."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise BadInputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise BadInputError(f"{name} must be finite, got {value:g}")
    return value


def _axes(angle: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Unit vectors (dy, dx) of the major axis at ``angle`` degrees and of the minor axis.

    The angle is counter-clockwise from +x (columns) as displayed, rows running downwards, as
    for :func:`motion`.
    """
    t = math.radians(_number("angle", angle))
    return (-math.sin(t), math.cos(t)), (math.cos(t), math.sin(t))


def _render_pupil(
    cutoff: float,
    aberration: Callable[[np.ndarray, np.ndarray], np.ndarray],
    spread: float,
    support: float,
    shape: Shape,
    offset: Offset,
    model: str,
) -> np.ndarray:
    """Point samples of ``|FT{pupil · exp(2πi W)}|²`` for a circular pupil and wavefront W.

    ``aberration(uy, ux)`` is W in waves at pupil coordinates normalised to the pupil edge (``ux``
    along +x, ``uy`` along the rows); ``spread`` bounds the rays' distance from the centre in px,
    ``max |∇W| / fc`` (Born & Wolf §5.1). The amplitude's spectrum is the pupil, zero beyond the
    coherent cutoff ``fc = cutoff / 2``; folding it over the aliases ``f + k`` gives the
    amplitude's exact point samples, and their squared modulus the intensity's (Goodman,
    *Introduction to Fourier Optics*, §6.2). The pupil edge is anti-aliased over one sample.
    """
    requested = shape is not None
    shape, (cy, cx) = _layout(shape, offset, support)
    fc = cutoff / 2
    # The periodic grid holds the kernel plus every ray, samples the pupil radius 32 times or
    # more, and the wavefront at under a quarter wave per sample (side >= 4 · spread).
    side = scipy.fft.next_fast_len(int(max(max(shape) + 64 + 2 * spread, 4 * spread, 32 / fc)))
    iy, ix = (shape[0] - 1) // 2, (shape[1] - 1) // 2
    dy, dx = cy - iy, cx - ix
    # Frequencies in ascending order (index j is (j - h) / side), so that the part of each
    # alias f + k that meets the pupil is one block of the array.
    h = side // 2
    spec = np.zeros((side, side), dtype=complex)
    kmax = math.ceil(fc + 0.5)
    for ky in range(-kmax, kmax + 1):
        ys = _pupil_slice(ky, fc, side, h)
        for kx in range(-kmax, kmax + 1):
            xs = _pupil_slice(kx, fc, side, h)
            if ys.start >= ys.stop or xs.start >= xs.stop:
                continue
            gy = (np.arange(ys.start, ys.stop) - h) / side + ky
            gx = (np.arange(xs.start, xs.stop) - h) / side + kx
            gy, gx = gy[:, None], gx[None, :]
            weight = np.clip((fc - np.hypot(gy, gx)) * side + 0.5, 0.0, 1.0)
            spec[ys, xs] += weight * np.exp(
                2j * np.pi * (aberration(gy / fc, gx / fc) - (gy * dy + gx * dx))
            )
    spec = scipy.fft.ifftshift(spec)
    full = np.roll(np.abs(scipy.fft.ifft2(spec)) ** 2, (iy, ix), axis=(0, 1))
    kernel = full[: shape[0], : shape[1]]
    if not requested:
        kernel = _crop_energy(kernel)
    return _normalised(kernel, model)


def _pupil_slice(k: int, fc: float, side: int, h: int) -> slice:
    """Indices j (frequency (j − h)/side + k) within one sample of the pupil |f| <= fc."""
    lo = max(math.floor((-fc - k) * side) + h - 1, 0)
    hi = min(math.ceil((fc - k) * side) + h + 2, side)
    return slice(lo, max(hi, lo))


def _pupil_otf(
    fy: np.ndarray,
    fx: np.ndarray,
    cutoff: float,
    aberration: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    """OTF of an aberrated circular pupil: its normalised autocorrelation (Goodman §6.3).

    The pupil is sampled 64 times a radius; the autocorrelation, taken by FFT, is interpolated
    linearly at the requested frequencies (cycles per pixel). Real for a centro-symmetric W.
    """
    a = 64
    n = scipy.fft.next_fast_len(4 * a + 8)
    u = (np.arange(n) - n // 2) / a
    uy, ux = u[:, None], u[None, :]
    weight = np.clip((1 - np.hypot(uy, ux)) * a + 0.5, 0.0, 1.0)
    pupil = weight * np.exp(2j * np.pi * aberration(uy, ux))
    auto = scipy.fft.fftshift(scipy.fft.ifft2(np.abs(scipy.fft.fft2(pupil)) ** 2).real)
    auto /= auto[n // 2, n // 2]
    fc = cutoff / 2
    fy, fx = np.broadcast_arrays(np.asarray(fy, float), np.asarray(fx, float))
    coords = np.array([fy / fc * a + n // 2, fx / fc * a + n // 2])
    return ndi.map_coordinates(auto, coords, order=1, mode="constant", cval=0.0)


def elliptical_gauss(
    sigma_major: float,
    sigma_minor: float,
    *,
    angle: float = 0.0,
    shape: Shape = None,
    offset: Offset = (0.0, 0.0),
) -> np.ndarray:
    """Anisotropic Gaussian PSF (astigmatic or directional blur), point-sampled.

    Parameters
    ----------
    sigma_major, sigma_minor : float
        Standard deviations in pixels along the major axis and across it (either may be the
        larger; both 0 give the identity kernel).
    angle : float
        Direction of the ``sigma_major`` axis in degrees, counter-clockwise from the +x
        (column) axis as displayed, with rows running downwards (as for :func:`motion`).
    shape, offset
        As for :func:`gaussian`.

    Examples
    --------
    >>> k = elliptical_gauss(3.0, 1.0, angle=90.0)  # long along the rows
    >>> m = moments(k)
    >>> round(m.sigma_y, 2), round(m.sigma_x, 2)
    (3.0, 1.0)
    """
    sa = positive("sigma_major", sigma_major)
    sb = positive("sigma_minor", sigma_minor)
    (ay, ax), (by, bx) = _axes(angle)
    shape, (cy, cx) = _layout(shape, offset, _GAUSS_HALF_WIDTH * max(sa, sb))
    if max(sa, sb) == 0:
        return _delta(shape, (cy, cx))
    # A zero width is a line: give it a tenth of a pixel so that it stays sampled.
    sa, sb = max(sa, 0.1), max(sb, 0.1)
    y = np.arange(shape[0])[:, None] - cy
    x = np.arange(shape[1])[None, :] - cx
    u, v = y * ay + x * ax, y * by + x * bx
    return _normalised(np.exp(-0.5 * ((u / sa) ** 2 + (v / sb) ** 2)), "elliptical_gauss")


def _astigmatism(
    radius_major: float, radius_minor: float, angle: float, cutoff: float
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Wavefront whose rays fill an ellipse of the two semi-axes (px) along ``angle``."""
    (ay, ax), (by, bx) = _axes(angle)
    wa, wb = radius_major * cutoff / 4, radius_minor * cutoff / 4

    def w(uy: np.ndarray, ux: np.ndarray) -> np.ndarray:
        return wa * (uy * ay + ux * ax) ** 2 + wb * (uy * by + ux * bx) ** 2

    return w


def astigmatic(
    radius_major: float,
    radius_minor: float,
    *,
    angle: float = 0.0,
    airy_radius: float | None = None,
    wavelength: float | None = None,
    na: float | None = None,
    pixel_size: float | None = None,
    shape: Shape = None,
    offset: Offset = (0.0, 0.0),
) -> np.ndarray:
    """Astigmatic defocus of a circular pupil: the defocus pattern stretched along an angle.

    The wavefront is ``Wa (u·a)² + Wb (u·b)²`` over the unit pupil, with ``a`` the unit vector
    at ``angle`` and ``b`` across it; its rays fill an ellipse of semi-axes ``radius_major`` and
    ``radius_minor`` (``W = radius · cutoff / 4`` per axis, as for :func:`defocus`), so for
    large blur the PSF tends to a uniform ellipse, a stretched :func:`disk`, and with equal
    radii it is :func:`defocus`. Both focal lines lie on the same side of the image.

    Parameters
    ----------
    radius_major, radius_minor : float
        Geometric semi-axes of the blur ellipse in pixels (either may be the larger).
    angle : float
        Direction of the ``radius_major`` axis in degrees, counter-clockwise from +x as
        displayed (rows running downwards).
    airy_radius, wavelength, na, pixel_size
        The diffraction limit, as for :func:`defocus`.
    shape, offset
        As for :func:`gaussian`.

    Examples
    --------
    >>> k = astigmatic(8.0, 2.0, angle=0.0, airy_radius=1.5, shape=31)
    >>> m = moments(k)
    >>> bool(m.sigma_x > 2 * m.sigma_y)  # stretched along x
    True
    """
    cutoff = _cutoff(airy_radius, wavelength, na, pixel_size, "airy_radius", "astigmatic")
    ra = positive("radius_major", radius_major)
    rb = positive("radius_minor", radius_minor)
    return _render_pupil(
        cutoff,
        _astigmatism(ra, rb, angle, cutoff),
        max(ra, rb),
        1.2 * max(ra, rb) + _tail_support(cutoff),
        shape,
        offset,
        "astigmatic",
    )


def as_kernel(array: Any, *, normalize: bool = True) -> np.ndarray:
    """Validate a user-supplied kernel and return it as float64, summing to 1 by default.

    Examples
    --------
    >>> as_kernel([[1, 2, 1]])
    array([[0.25, 0.5 , 0.25]])
    >>> as_kernel([[1, -1]])
    Traceback (most recent call last):
    ...
    defocus._errors.BadInputError: kernel sums to 0; a PSF must have a positive sum
    """
    k = np.asarray(array)
    if k.dtype == bool or not (
        np.issubdtype(k.dtype, np.integer) or np.issubdtype(k.dtype, np.floating)
    ):
        raise BadInputError(f"kernel has unsupported dtype {k.dtype}")
    if k.ndim != 2 or k.size == 0:
        raise BadInputError(f"kernel must be a non-empty 2-D array, got shape {k.shape}")
    k = k.astype(np.float64)
    if not np.isfinite(k).all():
        raise BadInputError("kernel contains NaN or infinite values")
    total = k.sum()
    if not total > 0:
        raise BadInputError(f"kernel sums to {total:g}; a PSF must have a positive sum")
    return k / total if normalize else k


# --------------------------------------------------------------------------------------------
# moments


@dataclass(frozen=True)
class KernelMoments:
    """First and second moments of a kernel, in pixels.

    ``sigma`` is the root-mean-square of the per-axis standard deviations,
    ``sqrt((var_y + var_x) / 2)``, which equals the per-axis sigma of an isotropic PSF.
    """

    sigma: float
    sigma_y: float
    sigma_x: float
    centroid: tuple[float, float]
    covariance: np.ndarray


def moments(kernel: np.ndarray, *, area_sampled: bool = False) -> KernelMoments:
    """Centroid and second central moments of a kernel (the DESIGN unit of blur).

    Parameters
    ----------
    kernel : (M, N) ndarray
        Weights; need not be normalised but must have a positive sum.
    area_sampled : bool
        True when the kernel holds pixel-area integrals of a continuous PSF (as :func:`disk`,
        :func:`ring`, :func:`box` and :func:`motion` render). Sheppard's correction then
        removes the pixel box's 1/12 px² from each axis so that sigma is the continuous PSF's;
        leave it False for the sigma of the discrete blur the kernel applies.

    Returns
    -------
    KernelMoments
        ``centroid`` is (row, col) in array coordinates.

    Examples
    --------
    >>> k = gaussian(2.0, offset=(0.25, 0.0))
    >>> m = moments(k)
    >>> k.shape, round(m.sigma, 3), [round(c, 3) for c in m.centroid]
    ((17, 17), 2.0, [8.25, 8.0])
    """
    k = as_kernel(kernel)
    y = np.arange(k.shape[0], dtype=float)
    x = np.arange(k.shape[1], dtype=float)
    py, px = k.sum(axis=1), k.sum(axis=0)
    cy, cx = float(py @ y), float(px @ x)
    dy, dx = y - cy, x - cx
    cov = np.array(
        [[py @ dy**2, dy @ k @ dx], [dy @ k @ dx, px @ dx**2]],
        dtype=float,
    )
    if area_sampled:
        cov -= np.eye(2) / 12
    vy, vx = max(cov[0, 0], 0.0), max(cov[1, 1], 0.0)
    return KernelMoments(
        sigma=math.sqrt((vy + vx) / 2),
        sigma_y=math.sqrt(vy),
        sigma_x=math.sqrt(vx),
        centroid=(cy, cx),
        covariance=cov,
    )


# --------------------------------------------------------------------------------------------
# analytic OTFs (continuous PSF × pixel box for area-sampled models)


def _otf_gauss(fy: np.ndarray, fx: np.ndarray, *, sigma: float) -> np.ndarray:
    return np.exp(-2 * np.pi**2 * sigma**2 * (fy**2 + fx**2))


def _otf_disk(fy: np.ndarray, fx: np.ndarray, *, radius: float) -> np.ndarray:
    return _jinc(np.hypot(fy, fx), radius) * _sinc_pixel(fy, fx)


def _otf_ring(
    fy: np.ndarray, fx: np.ndarray, *, radius: float, width: float = 1.0, softness: float = 0.0
) -> np.ndarray:
    rho = np.hypot(fy, fx)
    ro, ri = radius + width / 2, max(radius - width / 2, 0.0)
    annulus = (ro**2 * _jinc(rho, ro) - ri**2 * _jinc(rho, ri)) / (ro**2 - ri**2)
    return annulus * _otf_gauss(fy, fx, sigma=softness) * _sinc_pixel(fy, fx)


def _otf_box(
    fy: np.ndarray, fx: np.ndarray, *, width: float, height: float | None = None
) -> np.ndarray:
    height = width if height is None else height
    return np.sinc(height * fy) * np.sinc(width * fx) * _sinc_pixel(fy, fx)


def _otf_motion(fy: np.ndarray, fx: np.ndarray, *, length: float, angle: float = 0.0) -> np.ndarray:
    t = math.radians(angle)
    return np.sinc(length * (fx * math.cos(t) - fy * math.sin(t))) * _sinc_pixel(fy, fx)


def _otf_airy(fy: np.ndarray, fx: np.ndarray, **optics: float) -> np.ndarray:
    cutoff = _model_cutoff(optics, "airy")
    return _airy_otf(np.hypot(fy, fx), cutoff)


def _otf_defocus(fy: np.ndarray, fx: np.ndarray, **p: float) -> np.ndarray:
    cutoff, w, spherical = _defocus_terms(p)
    if spherical != 0:
        return _pupil_otf(
            fy, fx, cutoff, lambda uy, ux: _wavefront(uy * uy + ux * ux, w, spherical)
        )
    w = abs(w)
    rho = np.hypot(fy, fx)
    # Radial and smooth: evaluate on the distinct radii only.
    uniq, inv = np.unique(np.round(rho, 12), return_inverse=True)
    return defocus_otf(uniq, waves=w, cutoff=cutoff)[inv].reshape(rho.shape)


# --------------------------------------------------------------------------------------------
# sigma of each model (continuous PSF)


def _sigma_ring(*, radius: float, width: float = 1.0, softness: float = 0.0) -> float:
    ro, ri = radius + width / 2, max(radius - width / 2, 0.0)
    # Uniform annulus: per-axis variance (ro² + ri²)/4; a Gaussian softening adds its own.
    return math.sqrt((ro**2 + ri**2) / 4 + softness**2)


def _sigma_airy(**optics: float) -> float:
    cutoff = _model_cutoff(optics, "airy")
    return _airy_sigma(cutoff)


def _sigma_defocus(**p: float) -> float:
    cutoff, w, s = _defocus_terms(p)
    # Rays of W = w ρ² + s ρ⁴ land (2wρ + 4sρ³)/fc px from the centre; over the uniformly lit
    # pupil their per-axis variance is (w² + 8ws/3 + 2s²)/fc², i.e. (R/2)² when s = 0.
    geometric = math.sqrt(max(w * w + 8 * w * s / 3 + 2 * s * s, 0.0)) / (cutoff / 2)
    airy_sigma = _airy_sigma(cutoff)
    return math.hypot(geometric, airy_sigma)


def _otf_elliptical(
    fy: np.ndarray, fx: np.ndarray, *, sigma_major: float, sigma_minor: float, angle: float = 0.0
) -> np.ndarray:
    (ay, ax), (by, bx) = _axes(angle)
    fa, fb = fy * ay + fx * ax, fy * by + fx * bx
    return np.exp(-2 * np.pi**2 * ((sigma_major * fa) ** 2 + (sigma_minor * fb) ** 2))


def _otf_astigmatic(
    fy: np.ndarray, fx: np.ndarray, *, radius_major: float, radius_minor: float, **p: float
) -> np.ndarray:
    cutoff = _model_cutoff(p, "astigmatic")
    w = _astigmatism(radius_major, radius_minor, p.get("angle", 0.0), cutoff)
    return _pupil_otf(fy, fx, cutoff, w)


def astigmatic_axes(
    *, radius_major: float, radius_minor: float, angle: float = 0.0, **optics: float
) -> tuple[float, float, float]:
    """Per-axis sigma (px) of :func:`astigmatic` along its major and minor axes, and the angle.

    Each axis combines the blur ellipse's uniform spread (semi-axis / 2) with the in-focus
    Airy core's sigma in quadrature.

    Examples
    --------
    >>> [round(v, 3) for v in astigmatic_axes(radius_major=6.0, radius_minor=2.0,
    ...                                       angle=30.0, airy_radius=1.0)]
    [3.02, 1.058, 30.0]
    """
    cutoff = _model_cutoff(optics, "astigmatic")
    airy_sigma = _airy_sigma(cutoff)
    return (
        math.hypot(positive("radius_major", radius_major) / 2, airy_sigma),
        math.hypot(positive("radius_minor", radius_minor) / 2, airy_sigma),
        _number("angle", angle),
    )


def _sigma_astigmatic(**p: float) -> float:
    sa, sb, _ = astigmatic_axes(**p)
    return math.sqrt((sa * sa + sb * sb) / 2)


# --------------------------------------------------------------------------------------------
# registry


@dataclass(frozen=True)
class PSFModel:
    """One PSF model: how to render it, its OTF, its sigma and its size parameter.

    Attributes
    ----------
    name : str
        Registry key.
    render : callable
        ``render(**params, shape=None, offset=(0, 0)) -> kernel``.
    otf : callable
        ``otf(fy, fx, **params) -> transfer function`` at frequencies in cycles per pixel;
        includes the pixel box for area-sampled models, so it is the transfer function of the
        rendered kernel (up to aliasing and the 0.1 % truncation).
    sigma : callable
        ``sigma(**params) -> float``: the continuous PSF's sigma in pixels.
    natural : str
        The parameter that sets the size, e.g. ``"radius"`` for a disk.
    params : tuple of str
        Parameters the model accepts.
    area_sampled : bool
        Whether kernels are pixel-area integrals (see :func:`moments`).
    """

    name: str
    render: Callable[..., np.ndarray]
    otf: Callable[..., np.ndarray]
    sigma: Callable[..., float]
    natural: str
    params: tuple[str, ...]
    area_sampled: bool


#: Name → :class:`PSFModel` for every parametric model.
MODELS: Mapping[str, PSFModel] = MappingProxyType(
    {
        "gauss": PSFModel(
            "gauss", gaussian, _otf_gauss, lambda *, sigma: float(sigma), "sigma", ("sigma",), False
        ),
        "disk": PSFModel(
            "disk", disk, _otf_disk, lambda *, radius: radius / 2, "radius", ("radius",), True
        ),
        "ring": PSFModel(
            "ring",
            ring,
            _otf_ring,
            _sigma_ring,
            "radius",
            ("radius", "width", "softness"),
            True,
        ),
        "airy": PSFModel(
            "airy", airy, _otf_airy, _sigma_airy, "radius", ("radius", *_OPTICS), False
        ),
        "defocus": PSFModel(
            "defocus",
            defocus,
            _otf_defocus,
            _sigma_defocus,
            "radius",
            ("radius", "waves", "spherical", "airy_radius", *_OPTICS),
            False,
        ),
        "elliptical_gauss": PSFModel(
            "elliptical_gauss",
            elliptical_gauss,
            _otf_elliptical,
            lambda *, sigma_major, sigma_minor, angle=0.0: math.sqrt(
                (sigma_major**2 + sigma_minor**2) / 2
            ),
            "sigma_major",
            ("sigma_major", "sigma_minor", "angle"),
            False,
        ),
        "astigmatic": PSFModel(
            "astigmatic",
            astigmatic,
            _otf_astigmatic,
            _sigma_astigmatic,
            "radius_major",
            ("radius_major", "radius_minor", "angle", "airy_radius", *_OPTICS),
            False,
        ),
        "box": PSFModel(
            "box",
            box,
            _otf_box,
            lambda *, width, height=None: math.sqrt(
                (width**2 + (width if height is None else height) ** 2) / 24
            ),
            "width",
            ("width", "height"),
            True,
        ),
        "motion": PSFModel(
            "motion",
            motion,
            _otf_motion,
            lambda *, length, angle=0.0: length / math.sqrt(24),
            "length",
            ("length", "angle"),
            True,
        ),
    }
)


#: The PSF families: the one-parameter models (gauss: sigma; disk: radius = 2 sigma), whose size
#: a sigma map sets pixel by pixel. Spatially varying blur and deblurring take one of them, and
#: the blur map adds ``"auto"`` (``defocus.blurmap.PSF_FAMILIES``).
FAMILIES: tuple[str, ...] = tuple(n for n, m in MODELS.items() if m.params == (m.natural,))


def check_family(psf: str, *, families: Sequence[str] = FAMILIES) -> str:
    """Return ``psf`` if it names one of ``families``, else raise a one-line error.

    Examples
    --------
    >>> check_family("disk")
    'disk'
    >>> check_family("ring")
    Traceback (most recent call last):
    ...
    defocus._errors.BadInputError: psf must be a PSF family (gauss, disk), got 'ring'
    """
    if psf not in families:
        raise BadInputError(f"psf must be a PSF family ({', '.join(families)}), got {psf!r}")
    return psf


def family_kernel(psf: str, sigma: float) -> np.ndarray:
    """Kernel of a PSF family at one sigma (px): a Gaussian of that sigma, a disk of radius 2 sigma.

    Examples
    --------
    >>> np.array_equal(family_kernel("disk", 1.5), disk(3.0))
    True
    """
    m = MODELS[check_family(psf)]
    # A family's sigma is proportional to its size parameter, so one evaluation gives the
    # factor (1 or 1/2: exact in binary, the kernel is the one render() gives).
    return m.render(**{m.natural: sigma / m.sigma(**{m.natural: 1.0})})


def _model(name: str, params: Mapping[str, Any], *, complete: bool = True) -> PSFModel:
    """The named model, after checking ``params``: all known and, if ``complete``, all there."""
    try:
        m = MODELS[name]
    except KeyError:
        raise BadInputError(
            f"unknown PSF model {name!r}; choose from {', '.join(MODELS)}"
        ) from None
    unknown = sorted(set(params) - set(m.params))
    if unknown:
        raise BadInputError(
            f"{name} PSF takes {', '.join(m.params)}; unknown parameter(s) {', '.join(unknown)}"
        )
    # Parameters without a default in the renderer; airy and defocus take one of several
    # alternatives instead, which they check themselves.
    signature = inspect.signature(m.render).parameters
    required = [p for p in m.params if signature[p].default is inspect.Parameter.empty]
    if complete and any(p not in params for p in required):
        optional = [p for p in m.params if p not in required]
        hint = f" (optional: {', '.join(optional)})" if optional else ""
        raise BadInputError(f"{name} PSF needs {', '.join(required)}{hint}")
    return m


def render(
    model: str, *, shape: Shape = None, offset: Offset = (0.0, 0.0), **params: float
) -> np.ndarray:
    """Render a kernel of the named model, e.g. ``render("disk", radius=5)``.

    Examples
    --------
    >>> render("ring", radius=6, width=2).shape
    (15, 15)
    """
    return _model(model, params).render(**params, shape=shape, offset=offset)


def otf(model: str, shape: tuple[int, int], **params: float) -> np.ndarray:
    """Analytic transfer function of a centred kernel of the named model on an FFT grid.

    Frequencies follow :func:`scipy.fft.fftfreq` for an image of ``shape`` (zero frequency at
    ``[0, 0]``), so the result multiplies ``scipy.fft.fft2(image)`` directly. For area-sampled
    models it includes the pixel box; it is real because every model is centro-symmetric.

    Examples
    --------
    >>> H = otf("gauss", (64, 64), sigma=2.0)
    >>> K = scipy.fft.fft2(np.roll(np.pad(gaussian(2.0), ((0, 49), (0, 49))), (-7, -7), (0, 1)))
    >>> bool(np.abs(np.abs(K) - np.abs(H)).max() < 1e-3)
    True
    """
    m = _model(model, params)
    if len(shape) != 2:
        raise BadInputError(f"OTF shape must have two sizes, got {shape!r}")
    fy = scipy.fft.fftfreq(int(shape[0]))[:, None]
    fx = scipy.fft.fftfreq(int(shape[1]))[None, :]
    return np.asarray(m.otf(fy, fx, **params), dtype=float) * np.ones(tuple(shape))


def sigma_of(model: str, **params: float) -> float:
    """Sigma in pixels (the DESIGN unit) of the continuous PSF of a model.

    Exact second moments for ``gauss`` (sigma), ``disk`` (R/2), ``ring``
    (``sqrt((Ro² + Ri²)/4 + softness²)``), ``box`` and ``motion`` (the RMS of the two per-axis
    values). The Airy pattern's second moment diverges (intensity ∝ r⁻³), so ``airy`` reports
    the sigma of its best-fitting Gaussian core, 0.21 λ/NA (Zhang et al. 2007), and ``defocus``
    combines that in quadrature with the geometric R/2.

    Examples
    --------
    >>> sigma_of("disk", radius=4.0), sigma_of("gauss", sigma=1.5)
    (2.0, 1.5)
    >>> round(sigma_of("airy", radius=1.0), 3)
    0.344
    """
    return float(_model(model, params).sigma(**params))


def natural_from_sigma(model: str, sigma: float, **fixed: float) -> float:
    """Value of a model's size parameter (``MODELS[model].natural``) that gives ``sigma``.

    The model's other parameters are held at ``fixed``. Use it to turn a sigma map into, for
    example, a disk-radius map.

    Examples
    --------
    >>> natural_from_sigma("disk", 2.5)
    5.0
    >>> round(natural_from_sigma("ring", 3.0, width=1.0, softness=1.0), 6)
    3.968627
    """
    m = _model(model, fixed, complete=False)
    sigma = positive("sigma", sigma)
    if m.natural in fixed:
        raise BadInputError(f"{m.natural} is what natural_from_sigma solves for; do not pass it")

    def f(x: float) -> float:
        return m.sigma(**{m.natural: x}, **fixed) - sigma

    # The Airy radius must stay positive; its sigma still tends to 0 with it.
    x0 = 1e-12 if model == "airy" else 0.0
    low = f(x0)
    if low > 1e-12:
        raise BadInputError(
            f"{model} with {fixed} cannot be narrower than sigma {low + sigma:.4g} px"
        )
    if low >= -1e-12:
        return x0
    hi = 1.0
    while f(hi) < 0:
        hi *= 2
    return _brentq(f, x0, hi, xtol=1e-12, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# widths: radius, diameter, FWHM, edge width

_MEASURES = ("sigma", "radius", "diameter", "fwhm", "edge")


def _radial_otf(model: str, params: Mapping[str, float]) -> tuple[Callable, float, float]:
    """Radial OTF of the continuous PSF (no pixel box), its useful band and the PSF extent."""
    if model == "ring":
        p = {"width": 1.0, "softness": 0.0, **params}
        ro, ri = p["radius"] + p["width"] / 2, max(p["radius"] - p["width"] / 2, 0.0)

        def h(rho: np.ndarray) -> np.ndarray:
            ann = (ro**2 * _jinc(rho, ro) - ri**2 * _jinc(rho, ri)) / (ro**2 - ri**2)
            return ann * np.exp(-2 * np.pi**2 * p["softness"] ** 2 * rho**2)

        # exp(-2π²s²ρ²) < 1e-12 beyond this band
        band = math.sqrt(-math.log(1e-12) / (2 * np.pi**2 * p["softness"] ** 2))
        return h, band, ro + 6 * p["softness"]
    m = _model(model, params)
    fy = np.zeros(1)
    if model in ("airy", "defocus"):
        cutoff = _model_cutoff(params, model)
        extent = 4 * m.sigma(**params) + 3 * _J1_ZERO / (math.pi * cutoff)
        return lambda rho: m.otf(fy, np.asarray(rho), **params), cutoff, extent
    raise BadInputError(f"FWHM and edge width are not defined here for {model}")


def _numeric_width(model: str, measure: str, params: Mapping[str, float]) -> float:
    h, band, extent = _radial_otf(model, params)
    nodes, weights = np.polynomial.legendre.leggauss(int(64 + 8 * band * extent))
    rho = 0.5 * band * (nodes + 1)
    wts = 0.5 * band * weights * h(rho)
    if measure == "fwhm":
        # PSF(r) = 2π ∫ H(ρ) J0(2πρr) ρ dρ (Hankel transform); outermost half-maximum.
        r = np.linspace(0, extent, 2048)
        prof = (scipy.special.j0(2 * np.pi * r[:, None] * rho) * rho) @ wts
        above = np.nonzero(prof >= prof.max() / 2)[0][-1]
        r0, r1, p0, p1 = r[above], r[above + 1], prof[above], prof[above + 1]
        return float(2 * (r0 + (p0 - prof.max() / 2) / (p0 - p1) * (r1 - r0)))

    # Edge spread ESF(x) = 1/2 + ∫ H(ρ) sin(2πρx)/(πρ) dρ; 20–80 % width = 2 x80 by symmetry.
    def esf(x: float) -> float:
        return 0.5 + float((np.sin(2 * np.pi * rho * x) / (np.pi * rho)) @ wts) - 0.8

    return 2 * _brentq(esf, 0.0, extent)


def blur_width(model: str, measure: str = "sigma", **params: float) -> float:
    """A size measure of a model's continuous PSF, in pixels.

    Parameters
    ----------
    model : str
        A key of :data:`MODELS`.
    measure : {"sigma", "radius", "diameter", "fwhm", "edge"}
        ``sigma`` as :func:`sigma_of`; ``radius`` is the model's radius parameter (disk and
        defocus: blur circle; ring: centre line; airy: first dark ring) and ``diameter`` twice
        it; ``fwhm`` the full width at half maximum of the radial profile (outermost crossing
        for a ring); ``edge`` the 20–80 % rise distance of a blurred step edge.
    **params
        The model's parameters.

    Examples
    --------
    >>> round(blur_width("gauss", "fwhm", sigma=1.0), 4)
    2.3548
    >>> round(blur_width("gauss", "edge", sigma=1.0), 4)
    1.6832
    >>> blur_width("disk", "diameter", radius=3.0), round(blur_width("disk", "edge", radius=3.0), 3)
    (6.0, 2.951)
    >>> round(blur_width("airy", "fwhm", radius=1.0), 3)
    0.844
    """
    m = _model(model, params)
    if measure not in _MEASURES:
        raise BadInputError(f"measure must be one of {', '.join(_MEASURES)}, got {measure!r}")
    if measure == "sigma":
        return sigma_of(model, **params)
    if measure in ("radius", "diameter"):
        if m.natural != "radius":
            raise BadInputError(f"{model} has no radius; use sigma, fwhm or edge")
        if model == "airy" and params.get("radius") is None:
            r = _J1_ZERO / (math.pi * _model_cutoff(params, "airy"))
        elif model == "defocus" and params.get("radius") is None:
            cutoff, w, _ = _defocus_terms(params)
            r = 4 * w / cutoff
        else:
            r = float(params["radius"])
        return r if measure == "radius" else 2 * r
    if model == "gauss":
        s = float(params["sigma"])
        return s * (_FWHM_PER_SIGMA if measure == "fwhm" else _GAUSS_EDGE)
    if model == "disk":
        r = float(params["radius"])
        return 2 * r if measure == "fwhm" else _disk_edge() * r
    if model == "ring" and params.get("softness", 0.0) == 0:
        ro = params["radius"] + params.get("width", 1.0) / 2
        ri = max(params["radius"] - params.get("width", 1.0) / 2, 0.0)
        if measure == "fwhm":
            return 2 * ro

        def esf(x: float) -> float:  # annulus = difference of two uniform disks
            return (ro**2 * _disk_esf(x / ro) - ri**2 * _disk_esf(x / ri if ri else 2.0)) / (
                ro**2 - ri**2
            ) - 0.8

        return 2 * _brentq(esf, 0.0, ro)
    return _numeric_width(model, measure, params)


def convert_width(
    value: float, *, from_: str = "sigma", to: str = "radius", model: str = "disk", **fixed: float
) -> float:
    """Convert a blur size between measures for one model, e.g. sigma → disk radius.

    The model's size parameter (``MODELS[model].natural``) is solved for so that ``from_``
    equals ``value``, with the other parameters held at ``fixed``; ``to`` is then reported.

    Examples
    --------
    >>> convert_width(2.0, from_="sigma", to="diameter", model="disk")
    8.0
    >>> round(convert_width(1.683, from_="edge", to="sigma", model="gauss"), 3)
    1.0
    """
    m = _model(model, fixed, complete=False)
    value = positive(from_, value)
    if from_ == "sigma":
        x = natural_from_sigma(model, value, **fixed)
    else:

        def f(x: float) -> float:
            return blur_width(model, from_, **{m.natural: x}, **fixed) - value

        hi = 1.0
        while f(hi) < 0:
            hi *= 2
        x = _brentq(f, 1e-9, hi, xtol=1e-10)
    return blur_width(model, to, **{m.natural: x}, **fixed)
