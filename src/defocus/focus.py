"""Focus measures: local focus operators, dense focus maps, tile grids, profiles and masks.

Every operator is a plain function ``name(image, *, scale=..., channel_axis=None, ...)`` that
returns a dense float32 map of the image's shape, with **higher = sharper**. Each one computes a
per-pixel response (a squared derivative, a product, a band energy...) and averages it over a
**Gaussian window whose standard deviation is** ``scale`` **pixels** (truncated at 3 sigma); ratio
measures average numerator and denominator separately. A constant image carries no focus
information and gives an all-zero map. Intensities are never rescaled, so a map's units follow
the image's (a 16-bit image gives 16-bit-sized gradient energies): compare maps of one measure
on images of one kind, or use a contrast-invariant measure.

The operators follow the families of Pertuz, Puig & Garcia (2013), "Analysis of focus measure
operators for shape-from-focus", Pattern Recognition 46:1415-1432. The default,
:func:`gradient_ratio`, is invariant to local gain and offset, so bright, high-gradient but
blurry regions do not outrank dark, sharp ones.

Examples
--------
>>> from skimage import data
>>> from scipy import ndimage
>>> image = data.camera()[:128, :128].astype(np.float32)
>>> blurred = ndimage.gaussian_filter(image, 2)
>>> focus_score(image) > focus_score(blurred)
True
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pywt
from scipy import fft as sp_fft
from scipy import ndimage
from skimage.filters import threshold_otsu

from ._array import as_float_image
from ._errors import BadInputError
from .noise import BandNoise, band_noise, noise_floor, noise_spectrum, noise_variance_map, quantum

__all__ = [
    "DEFAULT_MEASURE",
    "DEFAULT_SCALE",
    "MEASURES",
    "FocusProfile",
    "Measure",
    "SharpestBand",
    "TileGrid",
    "acutance",
    "brenner",
    "focus_map",
    "focus_profile",
    "focus_score",
    "focus_threshold",
    "get_measure",
    "gradient_energy",
    "gradient_ratio",
    "in_focus_mask",
    "laplacian_energy",
    "laplacian_variance",
    "list_measures",
    "local_variance",
    "normalized_variance",
    "sharpest_band",
    "spectral_ratio",
    "spectral_slope",
    "sum_modified_laplacian",
    "tenengrad",
    "tile_grid",
    "vollath_f4",
    "wavelet_energy",
]

#: Standard deviation, in pixels, of the Gaussian window every operator averages over.
DEFAULT_SCALE = 5.0
#: Name of the default measure: contrast-invariant and noise-corrected.
DEFAULT_MEASURE = "gradient_ratio"

_TRUNCATE = 3.0  # window radius in sigmas: 3 keeps 99 % of the weight at 3/4 the cost of 4
_TINY = float(np.finfo(np.float32).tiny)
# gradient_ratio treats coarse gradient energy below this fraction of the image mean as flat.
_CONTRAST_FLOOR = 1e-2


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def _prepare(image: np.ndarray, scale: float, channel_axis: int | None) -> tuple[np.ndarray, bool]:
    """Validate ``scale`` and ``image``; return the float32 image and whether it is constant."""
    if not np.isfinite(scale) or scale <= 0:
        raise BadInputError(f"scale must be a positive number of pixels, got {scale!r}")
    img = as_float_image(image, channel_axis=channel_axis)
    return img, bool(img.max() == img.min())


def _window(x: np.ndarray, scale: float) -> np.ndarray:
    """Gaussian-weighted local mean with standard deviation ``scale`` px."""
    return ndimage.gaussian_filter(x, scale, mode="reflect", truncate=_TRUNCATE)


def _local_variance(x: np.ndarray, scale: float) -> np.ndarray:
    """Windowed variance, in float64 around the global mean to avoid cancellation."""
    x64 = x.astype(np.float64) - float(x.mean(dtype=np.float64))
    mean = _window(x64, scale)
    var = _window(x64 * x64, scale) - mean * mean
    return np.maximum(var, 0.0).astype(np.float32)


def _ahead(img: np.ndarray, k: int, axis: int) -> np.ndarray:
    """``I(x + k)`` along ``axis``, repeating the last row/column at the border."""
    n = img.shape[axis]
    return np.take(img, np.minimum(np.arange(n) + k, n - 1), axis=axis)


def _gradient_energy_dog(img: np.ndarray, sigma: float, minus: float | None) -> np.ndarray:
    """Squared gradient magnitude of ``(G_sigma - G_minus) * img`` (just ``G_sigma`` if None)."""
    energy = np.zeros(img.shape, img.dtype)
    for order in ((1, 0), (0, 1)):
        grad = ndimage.gaussian_filter(img, sigma, order=order, mode="reflect")
        if minus is not None:
            grad -= ndimage.gaussian_filter(img, minus, order=order, mode="reflect")
        energy += grad * grad
    return energy


def _coarse_energy(img: np.ndarray, scale: float, coarse: float) -> np.ndarray:
    """:func:`gradient_ratio` 's denominator energy ``E[C**2]``, ``C = grad(G_coarse * img)``."""
    return _window(_gradient_energy_dog(img, coarse, None), scale)


def _contrast_floor(mean_coarse_energy: float) -> float:
    """:func:`gradient_ratio` 's default contrast floor, from the image's mean ``E[C**2]``."""
    return max(_CONTRAST_FLOOR * mean_coarse_energy, _TINY)


def _white_noise_gain(sigma: float, minus: float | None) -> float:
    """Expected :func:`_gradient_energy_dog` of unit-variance white noise."""
    size = 2 * int(np.ceil(4 * max(sigma, minus or 0))) + 1
    delta = np.zeros((size, size), np.float64)
    delta[size // 2, size // 2] = 1.0
    return float(_gradient_energy_dog(delta, sigma, minus).sum())


def _band_response(n: int, fine: float, coarse: float) -> tuple[np.ndarray, np.ndarray]:
    """Frequency response, on the ``fftfreq(n)`` grid, of the two components of
    ``grad((G_fine - G_coarse) * I)``."""
    f = np.fft.fftfreq(n)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    w2 = (2 * np.pi) ** 2 * (fy**2 + fx**2)
    dog = np.exp(-w2 * fine**2 / 2) - np.exp(-w2 * coarse**2 / 2)
    return 2 * np.pi * fy * dog, 2 * np.pi * fx * dog


def _margin(rel: float) -> float:
    """99.9th percentile, over its mean, of a window mean of noise energy whose relative standard
    deviation is ``rel``: a scaled chi-square with ``2 / rel**2`` degrees of freedom, by the
    Wilson & Hilferty (1931) cube-root approximation (PNAS 17:684), which keeps its skew."""
    return (1.0 - rel * rel / 9.0 + 3.09 * rel / 3.0) ** 3


def _spectral_weight(
    img: np.ndarray, fine: float, coarse: float = 3.0, scale: float = DEFAULT_SCALE
) -> BandNoise:
    """How :func:`gradient_ratio` 's band (the gradient of ``G_fine - G_coarse``) sees the
    image's noise: its spectral weight, peak gain and the noise's Haar detail per level, from
    the noise spectrum measured in the image's flat blocks.

    Correlated noise also fluctuates more in a window of ``scale`` px than white noise does,
    and the local noise map measures it less precisely; the weight carries both, so that the
    margin :func:`gradient_ratio` removes is right for a noise map given as ``noise_sigma``
    (as the tiled map does).
    """
    spectrum = noise_spectrum(img)
    hy, hx = _band_response(256, fine, coarse)
    band = band_noise(spectrum, hy * hy + hx * hx)
    white = _margin(_fluctuation(np.ones((1, 1)), fine, coarse, scale))
    extra = _margin(float(np.hypot(_fluctuation(spectrum, fine, coarse, scale), band.error)))
    extra /= white
    levels, variances = noise_floor(img, haar=band.haar)
    floor = (tuple(levels.tolist()), tuple(variances.tolist()))
    return dataclasses.replace(band, weight=band.weight * max(extra, 1.0), floor=floor)


def _fluctuation(spectrum: np.ndarray, fine: float, coarse: float, scale: float) -> float:
    """Relative standard deviation of the window mean of noise-only ``|D|**2``.

    For Gaussian noise of covariance ``C`` in each gradient component, the window mean ``m`` of
    ``Dy**2 + Dx**2`` has variance ``2 sum A (Cyy**2 + Cxx**2 + 2 Cxy**2)`` over all lags, where
    ``A`` is the window's autocorrelation (Isserlis' theorem): noise correlated along scan lines
    or smoothed by demosaicing holds fewer independent samples than white noise and its window
    mean fluctuates more.
    """
    n = 256
    hy, hx = _band_response(n, fine, coarse)
    b = spectrum.shape[0]
    idx = np.rint(np.fft.fftfreq(n) * b).astype(int) % b
    s = spectrum[np.ix_(idx, idx)]
    cyy, cxx, cxy = (np.fft.ifft2(s * p).real for p in (hy * hy, hx * hx, hy * hx))
    f = np.fft.fftfreq(n)
    w2 = (2 * np.pi) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2)
    acf = np.fft.ifft2(np.exp(-w2 * scale**2)).real
    var = 2.0 * float((acf * (cyy**2 + cxx**2 + 2 * cxy**2)).sum())
    return float(np.sqrt(max(var, 0.0)) / (cyy[0, 0] + cxx[0, 0]))


def _step(image: np.ndarray) -> float:
    """One grey level of the input, as it was before conversion to float32."""
    return quantum(np.asarray(image))


def _dct_band(coeffs: np.ndarray, low: float, high: float) -> np.ndarray:
    """Inverse DCT of the coefficients whose radial frequency lies in ``[low, high)`` cycles/px."""
    fy = np.arange(coeffs.shape[0], dtype=np.float32)[:, None] / (2 * coeffs.shape[0])
    fx = np.arange(coeffs.shape[1], dtype=np.float32)[None, :] / (2 * coeffs.shape[1])
    radius = np.hypot(fy, fx)
    return sp_fft.idctn(coeffs * ((radius >= low) & (radius < high)), norm="ortho")


# --------------------------------------------------------------------------------------------
# Operators: gradient family
# --------------------------------------------------------------------------------------------


def tenengrad(
    image: np.ndarray, *, scale: float = DEFAULT_SCALE, channel_axis: int | None = None
) -> np.ndarray:
    """Tenengrad: local mean of the squared Sobel gradient magnitude.

    Parameters
    ----------
    image : ndarray
        2-D greyscale image, or a multichannel image with ``channel_axis`` (luminance is used).
    scale : float, optional
        Standard deviation, in pixels, of the Gaussian averaging window.
    channel_axis : int, optional
        Axis holding colour channels, if any.

    Returns
    -------
    ndarray of float32
        Local focus map, same shape as the image; higher = sharper. Scales with gain squared.

    References
    ----------
    .. [1] J. M. Tenenbaum, "Accommodation in computer vision", PhD thesis, Stanford, 1970.
    .. [2] Pertuz et al., Pattern Recognition 46:1415 (2013), operator GRA6.

    Examples
    --------
    >>> image = np.zeros((32, 32), np.float32); image[:, 16:] = 10
    >>> fmap = tenengrad(image, scale=2)
    >>> bool(fmap[16, 16] > fmap[16, 2] == 0)
    True
    """
    img, flat = _prepare(image, scale, channel_axis)
    if flat:
        return np.zeros_like(img)
    gy = ndimage.sobel(img, axis=0)
    gx = ndimage.sobel(img, axis=1)
    return _window(gy * gy + gx * gx, scale)


def gradient_energy(
    image: np.ndarray, *, scale: float = DEFAULT_SCALE, channel_axis: int | None = None
) -> np.ndarray:
    """Energy of gradient: local mean of squared first differences along rows and columns.

    Parameters and return value are as for :func:`tenengrad`.

    References
    ----------
    .. [1] M. Subbarao, T. Choi & A. Nikzad, "Focusing techniques", Optical Engineering
       32:2824 (1993).
    .. [2] Pertuz et al., Pattern Recognition 46:1415 (2013), operator GRA2.

    Examples
    --------
    >>> image = np.zeros((32, 32), np.float32); image[::2] = 1
    >>> float(gradient_energy(image, scale=2)[16, 16])
    1.0...
    """
    img, flat = _prepare(image, scale, channel_axis)
    if flat:
        return np.zeros_like(img)
    dy = _ahead(img, 1, 0) - img
    dx = _ahead(img, 1, 1) - img
    return _window(dy * dy + dx * dx, scale)


def brenner(
    image: np.ndarray, *, scale: float = DEFAULT_SCALE, channel_axis: int | None = None
) -> np.ndarray:
    """Brenner's measure: local mean of the larger squared two-pixel difference, max over axes.

    The per-pixel response is ``max((I(y+2, x) - I(y, x))**2, (I(y, x+2) - I(y, x))**2)``.
    Parameters and return value are as for :func:`tenengrad`.

    References
    ----------
    .. [1] J. F. Brenner et al., "An automated microscope for cytologic research",
       J. Histochem. Cytochem. 24:100 (1976).
    .. [2] Pertuz et al., Pattern Recognition 46:1415 (2013), operator MIS2.

    Examples
    --------
    >>> image = np.zeros((32, 32), np.float32); image[:, 16:] = 3
    >>> float(brenner(image, scale=1).max()) > 0
    True
    """
    img, flat = _prepare(image, scale, channel_axis)
    if flat:
        return np.zeros_like(img)
    dy = _ahead(img, 2, 0) - img
    dx = _ahead(img, 2, 1) - img
    return _window(np.maximum(dy * dy, dx * dx), scale)


def acutance(
    image: np.ndarray, *, scale: float = DEFAULT_SCALE, channel_axis: int | None = None
) -> np.ndarray:
    """Acutance: local mean of the gradient magnitude (not squared) of a Gaussian of sigma 0.5.

    This is the first seed's block acutance, ``Mean[GradientFilter[block, 1]]`` (Mathematica's
    ``GradientFilter[img, 1]`` differentiates a Gaussian of sigma r/2 = 0.5 px): use
    :func:`tile_grid` with ``measure="acutance"`` and ``tile=50`` for its 50-px block map.
    Parameters and return value are as for :func:`tenengrad`; it scales with gain, not gain².

    References
    ----------
    .. [1] G. C. Higgins & L. A. Jones, "The nature and evaluation of the sharpness of
       photographic images", J. SMPTE 58:277 (1952).
    .. [2] "Determine blurring radius of different parts of an image", Mathematica Stack
       Exchange question 146883, answer by Ray Shadow (2017).

    Examples
    --------
    >>> image = np.zeros((32, 32), np.float32); image[:, 16:] = 1
    >>> float(acutance(image, scale=8).mean()) < float(acutance(2 * image, scale=8).mean())
    True
    """
    img, flat = _prepare(image, scale, channel_axis)
    if flat:
        return np.zeros_like(img)
    return _window(np.sqrt(_gradient_energy_dog(img, 0.5, None)), scale)


# --------------------------------------------------------------------------------------------
# Operators: Laplacian family
# --------------------------------------------------------------------------------------------


def laplacian_energy(
    image: np.ndarray, *, scale: float = DEFAULT_SCALE, channel_axis: int | None = None
) -> np.ndarray:
    """Energy of Laplacian: local mean of the squared 5-point Laplacian.

    Parameters and return value are as for :func:`tenengrad`.

    References
    ----------
    .. [1] M. Subbarao, T. Choi & A. Nikzad, Optical Engineering 32:2824 (1993).
    .. [2] Pertuz et al., Pattern Recognition 46:1415 (2013), operator LAP1.

    Examples
    --------
    >>> image = np.zeros((32, 32), np.float32); image[16, 16] = 1
    >>> float(laplacian_energy(image, scale=1)[16, 16]) > 0
    True
    """
    img, flat = _prepare(image, scale, channel_axis)
    if flat:
        return np.zeros_like(img)
    lap = ndimage.laplace(img, mode="reflect")
    return _window(lap * lap, scale)


def sum_modified_laplacian(
    image: np.ndarray, *, scale: float = DEFAULT_SCALE, channel_axis: int | None = None
) -> np.ndarray:
    """Sum-modified Laplacian: local mean of ``|d2I/dy2| + |d2I/dx2|``.

    The modified Laplacian takes absolute values per axis so that second derivatives of
    opposite sign do not cancel; Nayar & Nakagawa sum it over a window, which a Gaussian-weighted
    mean replaces here (same ranking, proportional values). Parameters and return value are as
    for :func:`tenengrad`; it scales with gain, not gain².

    References
    ----------
    .. [1] S. K. Nayar & Y. Nakagawa, "Shape from focus", IEEE TPAMI 16:824 (1994).
    .. [2] Pertuz et al., Pattern Recognition 46:1415 (2013), operator LAP2.

    Examples
    --------
    >>> image = np.zeros((32, 32), np.float32); image[:, 16:] = 1
    >>> float(sum_modified_laplacian(image, scale=1)[16, 16]) > 0
    True
    """
    img, flat = _prepare(image, scale, channel_axis)
    if flat:
        return np.zeros_like(img)
    kernel = [-1.0, 2.0, -1.0]
    dyy = ndimage.correlate1d(img, kernel, axis=0, mode="reflect")
    dxx = ndimage.correlate1d(img, kernel, axis=1, mode="reflect")
    return _window(np.abs(dyy) + np.abs(dxx), scale)


def laplacian_variance(
    image: np.ndarray, *, scale: float = DEFAULT_SCALE, channel_axis: int | None = None
) -> np.ndarray:
    """Variance of Laplacian: local (Gaussian-weighted) variance of the 5-point Laplacian.

    Parameters and return value are as for :func:`tenengrad`.

    References
    ----------
    .. [1] J. L. Pech-Pacheco et al., "Diatom autofocusing in brightfield microscopy: a
       comparative study", ICPR 2000, 3:314.
    .. [2] Pertuz et al., Pattern Recognition 46:1415 (2013), operator LAP4.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> noise = rng.normal(size=(64, 64)).astype(np.float32)
    >>> float(laplacian_variance(noise, scale=4).mean()) > 1
    True
    """
    img, flat = _prepare(image, scale, channel_axis)
    if flat:
        return np.zeros_like(img)
    return _local_variance(ndimage.laplace(img, mode="reflect"), scale)


# --------------------------------------------------------------------------------------------
# Operators: statistics family
# --------------------------------------------------------------------------------------------


def local_variance(
    image: np.ndarray, *, scale: float = DEFAULT_SCALE, channel_axis: int | None = None
) -> np.ndarray:
    """Grey-level variance in a Gaussian window: the third seed's focus measure.

    The seed (C. Lawless, "locating & visualising areas of an image that are in sharp focus")
    takes the square root, a local standard deviation; the variance ranks pixels identically.
    Parameters and return value are as for :func:`tenengrad`. Being sensitive to coarse
    intensity changes too, it is a weak focus measure where shading varies.

    References
    ----------
    .. [1] Pertuz et al., Pattern Recognition 46:1415 (2013), operator STA3.

    Examples
    --------
    >>> image = np.zeros((32, 32), np.float32); image[::2] = 2
    >>> round(float(local_variance(image, scale=4)[16, 16]), 3)
    1.0
    """
    img, flat = _prepare(image, scale, channel_axis)
    if flat:
        return np.zeros_like(img)
    return _local_variance(img, scale)


def normalized_variance(
    image: np.ndarray, *, scale: float = DEFAULT_SCALE, channel_axis: int | None = None
) -> np.ndarray:
    """Normalised variance: local variance divided by local mean (CellProfiler's FocusScore).

    Dividing by the mean compensates for illumination under photon (shot) noise, but it is not
    invariant to an added offset, and it scales with gain. Needs non-negative intensities.
    Parameters and return value are as for :func:`tenengrad`.

    Raises
    ------
    BadInputError
        If the image has negative values.

    References
    ----------
    .. [1] F. C. A. Groen, I. T. Young & G. Ligthart, "A comparison of different focus
       functions for use in autofocus algorithms", Cytometry 6:81 (1985).
    .. [2] CellProfiler, MeasureImageQuality module, "FocusScore".
    .. [3] Pertuz et al., Pattern Recognition 46:1415 (2013), operator STA4.

    Examples
    --------
    >>> image = np.ones((32, 32), np.float32); image[::2] = 3
    >>> round(float(normalized_variance(image, scale=4)[16, 16]), 3)
    0.5
    """
    img, flat = _prepare(image, scale, channel_axis)
    if flat:
        return np.zeros_like(img)
    if img.min() < 0:
        raise BadInputError("normalized_variance needs non-negative intensities")
    mean = _window(img, scale)
    # The floor only matters where the window is all zeros, and then the variance is 0 too.
    floor = max(1e-6 * float(img.mean()), _TINY)
    return _local_variance(img, scale) / np.maximum(mean, np.float32(floor))


def vollath_f4(
    image: np.ndarray, *, scale: float = DEFAULT_SCALE, channel_axis: int | None = None
) -> np.ndarray:
    """Vollath's F4 autocorrelation: local mean of ``I(x) * (I(x+1) - I(x+2))``, both axes.

    A lag-1 minus lag-2 autocorrelation: blur raises the lag-2 correlation towards the lag-1
    one. The local value can be negative; it scales with gain squared and is not offset
    invariant. Parameters and return value are as for :func:`tenengrad`.

    References
    ----------
    .. [1] D. Vollath, "Automatic focusing by correlative methods", J. Microscopy 147:279
       (1987).
    .. [2] Pertuz et al., Pattern Recognition 46:1415 (2013), operator MIS8 / STA1.

    Examples
    --------
    >>> image = np.zeros((32, 32), np.float32); image[::2] = 1
    >>> float(vollath_f4(image, scale=4)[16, 16])
    -0.5...
    >>> from scipy import ndimage
    >>> sharp = np.zeros((64, 64), np.float32); sharp[:, 32:] = 1
    >>> blurred = ndimage.gaussian_filter(sharp, 2)
    >>> bool(vollath_f4(sharp).mean() > vollath_f4(blurred).mean())
    True
    """
    img, flat = _prepare(image, scale, channel_axis)
    if flat:
        return np.zeros_like(img)
    response = np.zeros_like(img)
    for axis in (0, 1):
        response += img * (_ahead(img, 1, axis) - _ahead(img, 2, axis))
    return _window(response, scale)


# --------------------------------------------------------------------------------------------
# Operators: transform / spectral family and the default ratio
# --------------------------------------------------------------------------------------------


def wavelet_energy(
    image: np.ndarray,
    *,
    scale: float = DEFAULT_SCALE,
    wavelet: str = "db6",
    channel_axis: int | None = None,
) -> np.ndarray:
    """Wavelet detail energy: local mean of the squared first-level detail coefficients.

    Uses the undecimated (stationary) first level of a 2-D discrete wavelet transform, so the
    map is dense: the horizontal, vertical and diagonal detail bands are squared and summed.

    Parameters
    ----------
    image, scale, channel_axis
        As for :func:`tenengrad`.
    wavelet : str, optional
        Any discrete PyWavelets wavelet name.

    Returns
    -------
    ndarray of float32
        Local focus map; higher = sharper. Scales with gain squared.

    References
    ----------
    .. [1] G. Yang & B. J. Nelson, "Wavelet-based autofocusing and unsupervised segmentation of
       microscopic images", IROS 2003, 3:2143.
    .. [2] Pertuz et al., Pattern Recognition 46:1415 (2013), operator WAV1.

    Examples
    --------
    >>> image = np.zeros((32, 32), np.float32); image[:, 16:] = 1
    >>> float(wavelet_energy(image, scale=1)[16, 16]) > 0
    True
    """
    img, flat = _prepare(image, scale, channel_axis)
    try:
        bank = pywt.Wavelet(wavelet)
    except ValueError:
        raise BadInputError(f"unknown discrete wavelet {wavelet!r}") from None
    if flat:
        return np.zeros_like(img)
    lo = np.asarray(bank.dec_lo, np.float32)
    hi = np.asarray(bank.dec_hi, np.float32)
    rows_lo = ndimage.correlate1d(img, lo, axis=0, mode="reflect")
    rows_hi = ndimage.correlate1d(img, hi, axis=0, mode="reflect")
    energy = np.zeros_like(img)
    for rows, cols in ((rows_lo, hi), (rows_hi, lo), (rows_hi, hi)):
        detail = ndimage.correlate1d(rows, cols, axis=1, mode="reflect")
        energy += detail * detail
    return _window(energy, scale)


def spectral_ratio(
    image: np.ndarray,
    *,
    scale: float = DEFAULT_SCALE,
    split: float = 0.25,
    low: float = 1 / 16,
    channel_axis: int | None = None,
) -> np.ndarray:
    """Spectral high/low band ratio: local energy above ``split`` over energy in ``[low, split)``.

    The image is split by ideal radial masks in the frequency domain of its discrete cosine
    transform (the Fourier transform of its mirror-symmetric extension, so borders add no
    false edges) into a high band (``|f| >= split`` cycles/px) and a low band
    (``low <= |f| < split``); each band is squared and averaged over the window, and the map
    is their ratio. Blur removes the high band first, so the ratio falls. Gain cancels and an
    offset lies at zero frequency, outside both bands: the measure is contrast-invariant. Noise,
    being white, raises it.

    Parameters
    ----------
    image, scale, channel_axis
        As for :func:`tenengrad`.
    split : float, optional
        Frequency, in cycles/px (at most 0.5), separating the low and high bands.
    low : float, optional
        Lower edge of the low band in cycles/px; it excludes slow shading.

    Returns
    -------
    ndarray of float32
        Local focus map; higher = sharper.

    References
    ----------
    .. [1] Pertuz et al., Pattern Recognition 46:1415 (2013), family of DCT/FFT band-ratio
       operators (DCT1, DCT3).
    .. [2] L. Firestone et al., "Comparison of autofocus methods for automated microscopy",
       Cytometry 12:195 (1991).

    Examples
    --------
    >>> from skimage import data
    >>> image = data.camera()[:128, :128].astype(np.float32)
    >>> blurred = ndimage.gaussian_filter(image, 2)
    >>> bool(spectral_ratio(image).mean() > spectral_ratio(blurred).mean())
    True
    """
    img, flat = _prepare(image, scale, channel_axis)
    if not 0 < low < split <= 0.5:
        raise BadInputError(f"need 0 < low < split <= 0.5 cycles/px, got low={low}, split={split}")
    if flat:
        return np.zeros_like(img)
    # The DCT extends the image symmetrically, so its borders add no false edges; removing the
    # mean first keeps float32 round-off small for images with a large offset.
    coeffs = sp_fft.dctn(img - np.float32(img.mean()), norm="ortho")
    high_band = _dct_band(coeffs, split, np.inf)
    low_band = _dct_band(coeffs, low, split)
    e_high = _window(high_band * high_band, scale)
    e_low = _window(low_band * low_band, scale)
    floor = np.float32(max(1e-6 * float(e_low.mean()), _TINY))
    return e_high / (e_low + floor)


# Octave band-pass filters are differences of Gaussians at these sigmas (px).
_SLOPE_SIGMAS = (0.5, 1.0, 2.0, 4.0, 8.0)


def spectral_slope(
    image: np.ndarray, *, scale: float = DEFAULT_SCALE, channel_axis: int | None = None
) -> np.ndarray:
    """Local log-log slope of the power spectrum, from octave band energies.

    Four octave bands are cut by differences of Gaussians with sigma 0.5, 1, 2, 4 and 8 px;
    their squared responses are averaged over the window, and a least-squares line is fitted to
    log band energy against log centre frequency. A power spectrum ``P(f) ~ f**-alpha`` gives
    octave energies ``~ f**(2 - alpha)``, so the map reports ``-alpha``: about -2 for sharp
    natural images (Field 1987), more negative as blur removes high frequencies. Gain shifts
    every log energy equally and offsets lie outside every band, so it is contrast-invariant.
    Noise, being white (slope 0), makes it less negative, and so do flat regions, where only
    the tiny energy floor remains.

    Parameters and return value are as for :func:`tenengrad`; the map is negative, with
    higher (closer to 0) = sharper. The largest band extends beyond a small window, so the map
    is smoother than ``scale`` alone suggests.

    References
    ----------
    .. [1] D. J. Field, "Relations between the statistics of natural images and the response
       properties of cortical cells", JOSA A 4:2379 (1987).
    .. [2] P. J. Bex & W. Makous, "Spatial frequency, phase, and the contrast of natural
       images", JOSA A 19:1096 (2002).

    Examples
    --------
    >>> from skimage import data
    >>> image = data.camera()[:128, :128].astype(np.float32)
    >>> round(float(np.median(spectral_slope(image))), 1)
    -1.9
    """
    img, flat = _prepare(image, scale, channel_axis)
    if flat:
        return np.zeros_like(img)
    smoothed = [ndimage.gaussian_filter(img, s, mode="reflect") for s in _SLOPE_SIGMAS]
    energies = [_window((a - b) ** 2, scale) for a, b in itertools.pairwise(smoothed)]
    floor = max(1e-9 * float(np.mean([e.mean() for e in energies])), _TINY)
    log_e = [np.log2(e + np.float32(floor)) for e in energies]
    # Band k is centred on a frequency proportional to 1/sigma_k: log2 f_k = -k + const.
    log_f = -np.arange(len(log_e), dtype=np.float32)
    centred = log_f - log_f.mean()
    slope = sum(c * e for c, e in zip(centred, log_e, strict=True)) / float(centred @ centred)
    return (slope - 2).astype(np.float32)


def gradient_ratio(
    image: np.ndarray,
    *,
    scale: float = DEFAULT_SCALE,
    fine: float = 0.8,
    coarse: float = 3.0,
    noise_sigma: float | None = None,
    contrast_floor: float | None = None,
    channel_axis: int | None = None,
) -> np.ndarray:
    """Noise-corrected ratio of band-pass to coarse gradient energy (the default measure).

    Let ``D = grad((G_fine - G_coarse) * I)`` be the gradient of a difference of Gaussians of
    sigmas ``fine`` and ``coarse``, which keeps the fine detail that the coarse Gaussian removes,
    and ``C = grad(G_coarse * I)``. The map is ``(E[D**2] - N)+ / (E[C**2] + N)``, where ``E`` is
    the window mean and ``N`` the expected ``E[D**2]`` of the image noise.

    - Local gain multiplies both energies and cancels, and an offset is removed by the
      derivatives: **the measure ignores brightness and contrast** and responds only to how
      much detail survives at the fine scale relative to the coarse structure.
    - A Gaussian blur lowers it for any image content, because the numerator's frequency
      weighting is the denominator's times an increasing function of frequency. Smooth
      shading and heavily blurred regions tend to 0. For an isolated edge blurred by sigma
      ``b`` it depends on ``b`` alone, so it can be calibrated to blur in pixels.
    - Subtracting the expected noise energy keeps noise from looking like detail, and the
      ``N`` term in the denominator sends flat, noise-only regions to about 0. So does a
      contrast floor of 1 % of the image's mean ``E[C**2]`` added to the denominator: gain
      invariance holds exactly for a global gain, and locally for regions down to about a
      tenth of the image's typical contrast, below which values are pulled towards 0.
    - The noise estimate reads fine texture near the Nyquist frequency as noise too. On such
      images a sub-pixel blur, which removes that texture before the detail the measure uses,
      can raise the value slightly; pass ``noise_sigma`` when the noise level is known.

    Parameters
    ----------
    image, scale, channel_axis
        As for :func:`tenengrad`.
    fine, coarse : float, optional
        Gaussian sigmas, in px, of the band-pass; ``0 < fine < coarse``.
    noise_sigma : float or ndarray, optional
        Standard deviation of the image noise in intensity units, one value or one per pixel;
        pass 0 to switch the correction off. By default it is measured where it is, by
        :func:`defocus.noise.noise_variance_map`: SEM and FIB shot noise differs between regions
        of one image, and a single level let the noisier ones read as detail. Fine texture is
        not taken for noise; correlated noise (demosaicing, JPEG, scan lines) counts in full
        through its power spectrum, measured in the flattest blocks; no block reads less noise
        than the median at its intensity; a one-grey-level staircase never counts. The margin
        removed above it is the 99.9th percentile of the window's noise energy (Wilson &
        Hilferty 1931), wider for correlated noise and for the local estimate's own error.
    contrast_floor : float, optional
        Energy added to the denominator besides ``N``, in the units of ``E[C**2]`` (squared
        intensity per px²); must be positive. By default 1 % of the image's mean ``E[C**2]``.
        Pass the value of a whole image to give its tiles the same floor, so that a tiled map
        equals the whole one (as :func:`defocus.tiled.focus_map` does). A fixed value does
        not scale with the image's gain, unlike the default.

    Returns
    -------
    ndarray of float32
        Local focus map, non-negative; higher = sharper. Unchanged by gain and offset.

    References
    ----------
    .. [1] T. Lindeberg, "Edge detection and ridge detection with automatic scale selection",
       IJCV 30:117 (1998): Gaussian-derivative responses across scales.
    .. [2] S. Zhuo & T. Sim, "Defocus map estimation from a single image", Pattern Recognition
       44:1852 (2011): the gradient ratio of an edge at two blur scales.
    .. [3] D. L. Donoho & I. M. Johnstone, "Ideal spatial adaptation by wavelet shrinkage",
       Biometrika 81:425 (1994): the MAD noise estimate.

    Examples
    --------
    >>> from skimage import data
    >>> image = data.camera()[:128, :128].astype(np.float32)
    >>> fmap = gradient_ratio(image)
    >>> np.allclose(gradient_ratio(3 * image + 100), fmap, rtol=1e-3, atol=1e-4)
    True
    >>> bool(fmap.mean() > gradient_ratio(ndimage.gaussian_filter(image, 2)).mean())
    True
    """
    img, flat = _prepare(image, scale, channel_axis)
    if not 0 < fine < coarse:
        raise BadInputError(f"need 0 < fine < coarse, got fine={fine}, coarse={coarse}")
    if noise_sigma is not None:
        given = np.asarray(noise_sigma, np.float64)
        if not (np.isfinite(given).all() and (given >= 0).all()):
            raise BadInputError(f"noise_sigma must be >= 0, got {noise_sigma!r}")
        if given.ndim and given.shape != img.shape:
            raise BadInputError(f"a noise_sigma map must have the image's shape {img.shape}")
    if contrast_floor is not None and not (np.isfinite(contrast_floor) and contrast_floor > 0):
        raise BadInputError(f"contrast_floor must be > 0, got {contrast_floor!r}")
    if flat:
        return np.zeros_like(img)
    band = _gradient_energy_dog(img, fine, coarse)
    e_band = _window(band, scale)
    e_coarse = _coarse_energy(img, scale, coarse)
    gain = _white_noise_gain(fine, coarse)
    if noise_sigma is None:
        band_noise_ = _spectral_weight(img, fine, coarse, scale)
        var = noise_variance_map(img, spectral_weight=band_noise_, step=_step(image))
    else:
        var = np.square(np.asarray(noise_sigma, np.float32))
    noise = (var * np.float32(gain)).astype(np.float32)
    # The window mean of noise energy still fluctuates; its 99.9th percentile is removed (that
    # of white noise; the spectral weight adds the excess of correlated noise), so that a
    # noise-only window reads 0 with 99.9 % probability rather than half the time.
    noise *= np.float32(_margin(_fluctuation(np.ones((1, 1)), fine, coarse, scale)))
    # The contrast floor keeps faint residues (smoothed quantisation noise, shading) in nearly
    # flat regions from reading as detail, and 0/0 out; the default scales with gain like
    # everything else.
    if contrast_floor is None:
        contrast_floor = _contrast_floor(float(e_coarse.mean()))
    floor = noise + np.float32(contrast_floor)
    return np.maximum(e_band - noise, 0) / (e_coarse + floor)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measure:
    """A registered focus measure.

    Attributes
    ----------
    name : str
        Registry key, also the function's name.
    func : callable
        ``func(image, *, scale=..., channel_axis=None) -> ndarray`` returning a dense map.
    family : str
        Pertuz et al. (2013) family: ``gradient``, ``laplacian``, ``statistics``,
        ``transform`` or ``ratio``.
    contrast_invariant : bool
        True if the map is unchanged by intensity gain and offset.
    description : str
        One line.
    reference : str
        Short citation.
    """

    name: str
    func: Callable[..., np.ndarray]
    family: str
    contrast_invariant: bool
    description: str
    reference: str


def _entry(
    func: Callable[..., np.ndarray], family: str, invariant: bool, description: str, ref: str
) -> tuple[str, Measure]:
    return func.__name__, Measure(func.__name__, func, family, invariant, description, ref)


#: Every focus measure by name, in family order (read-only).
MEASURES: MappingProxyType[str, Measure] = MappingProxyType(
    dict(
        [
            _entry(
                gradient_ratio,
                "ratio",
                True,
                "noise-corrected band-pass over coarse gradient energy (default)",
                "Lindeberg 1998; Zhuo & Sim 2011",
            ),
            _entry(
                tenengrad,
                "gradient",
                False,
                "squared Sobel gradient magnitude",
                "Tenenbaum 1970; Pertuz et al. 2013 GRA6",
            ),
            _entry(
                gradient_energy,
                "gradient",
                False,
                "squared first differences",
                "Subbarao et al. 1993; Pertuz et al. 2013 GRA2",
            ),
            _entry(
                brenner,
                "gradient",
                False,
                "larger squared two-pixel difference",
                "Brenner et al. 1976; Pertuz et al. 2013 MIS2",
            ),
            _entry(
                acutance,
                "gradient",
                False,
                "gradient magnitude at sigma 0.5 (the seed's block acutance)",
                "Higgins & Jones 1952",
            ),
            _entry(
                laplacian_energy,
                "laplacian",
                False,
                "squared Laplacian",
                "Subbarao et al. 1993; Pertuz et al. 2013 LAP1",
            ),
            _entry(
                sum_modified_laplacian,
                "laplacian",
                False,
                "sum of absolute second differences per axis",
                "Nayar & Nakagawa 1994; Pertuz et al. 2013 LAP2",
            ),
            _entry(
                laplacian_variance,
                "laplacian",
                False,
                "local variance of the Laplacian",
                "Pech-Pacheco et al. 2000; Pertuz et al. 2013 LAP4",
            ),
            _entry(
                local_variance,
                "statistics",
                False,
                "grey-level variance (the third seed's measure)",
                "Pertuz et al. 2013 STA3",
            ),
            _entry(
                normalized_variance,
                "statistics",
                False,
                "variance over mean (CellProfiler FocusScore)",
                "Groen et al. 1985; Pertuz et al. 2013 STA4",
            ),
            _entry(
                vollath_f4,
                "statistics",
                False,
                "lag-1 minus lag-2 autocorrelation",
                "Vollath 1987",
            ),
            _entry(
                wavelet_energy,
                "transform",
                False,
                "first-level wavelet detail energy",
                "Yang & Nelson 2003; Pertuz et al. 2013 WAV1",
            ),
            _entry(
                spectral_ratio,
                "transform",
                True,
                "Fourier high-band over low-band energy",
                "Firestone et al. 1991; Pertuz et al. 2013",
            ),
            _entry(
                spectral_slope,
                "transform",
                True,
                "local log-log power-spectrum slope",
                "Field 1987; Bex & Makous 2002",
            ),
        ]
    )
)


def list_measures() -> list[str]:
    """Names of every registered focus measure, default first.

    Examples
    --------
    >>> list_measures()[:3]
    ['gradient_ratio', 'tenengrad', 'gradient_energy']
    >>> len(list_measures()) >= 12
    True
    """
    return list(MEASURES)


def get_measure(name: str) -> Measure:
    """Return the registry entry for ``name``.

    Raises
    ------
    BadInputError
        If ``name`` is not a registered measure; the message lists the valid names.

    Examples
    --------
    >>> get_measure("tenengrad").family
    'gradient'
    >>> get_measure("sharpness")
    Traceback (most recent call last):
    ...
    defocus._errors.BadInputError: unknown focus measure 'sharpness'; choose one of ...
    """
    try:
        return MEASURES[name]
    except (KeyError, TypeError):
        raise BadInputError(
            f"unknown focus measure {name!r}; choose one of {', '.join(MEASURES)}"
        ) from None


# --------------------------------------------------------------------------------------------
# Maps, scores and tiles
# --------------------------------------------------------------------------------------------


def focus_map(
    image: np.ndarray,
    *,
    measure: str = DEFAULT_MEASURE,
    scale: float = DEFAULT_SCALE,
    channel_axis: int | None = None,
) -> np.ndarray:
    """Dense per-pixel focus map of ``image`` with the named measure.

    Parameters
    ----------
    image : ndarray
        2-D greyscale image, or multichannel with ``channel_axis``.
    measure : str, optional
        A name from :func:`list_measures`.
    scale : float, optional
        Standard deviation, in px, of the Gaussian window the measure averages over.
    channel_axis : int, optional
        Axis holding colour channels, if any.

    Returns
    -------
    ndarray of float32
        Same 2-D shape as the image; higher = sharper; never NaN; all zero for a constant image.

    Examples
    --------
    >>> rgb = np.zeros((64, 64, 3), np.uint8); rgb[:, 32:] = 200
    >>> fmap = focus_map(rgb, measure="tenengrad", channel_axis=-1)
    >>> fmap.shape, fmap.dtype
    ((64, 64), dtype('float32'))
    """
    return get_measure(measure).func(image, scale=scale, channel_axis=channel_axis)


def focus_score(
    image: np.ndarray,
    *,
    measure: str = DEFAULT_MEASURE,
    scale: float = DEFAULT_SCALE,
    channel_axis: int | None = None,
) -> float:
    """Global focus score: the mean of :func:`focus_map` over the image.

    Because it is a mean, the score of a tile cut out on its own matches (up to border effects)
    that tile's value in :func:`tile_grid` of the whole image.

    Examples
    --------
    >>> from skimage import data
    >>> image = data.moon()[:128, :128]
    >>> scores = [focus_score(ndimage.gaussian_filter(image.astype(np.float32), s))
    ...           for s in (0.5, 1, 2)]
    >>> scores == sorted(scores, reverse=True)
    True
    """
    fmap = focus_map(image, measure=measure, scale=scale, channel_axis=channel_axis)
    return float(fmap.mean(dtype=np.float64))


@dataclass(frozen=True)
class TileGrid:
    """Per-tile focus values.

    Attributes
    ----------
    values : ndarray of float32, shape (n_rows, n_cols)
        Mean focus value of each tile.
    row_edges, col_edges : ndarray of int
        Tile boundaries in px (``n + 1`` each, from 0 to the image size); tile ``(i, j)`` covers
        rows ``row_edges[i]:row_edges[i + 1]``. The last row/column of tiles may be smaller.
    measure : str or None
        Measure used, or None if a precomputed map was tiled.
    """

    values: np.ndarray
    row_edges: np.ndarray
    col_edges: np.ndarray
    measure: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {
            "measure": self.measure,
            "values": self.values.tolist(),
            "row_edges": self.row_edges.tolist(),
            "col_edges": self.col_edges.tolist(),
        }


def tile_grid(
    image: np.ndarray,
    *,
    tile: int | tuple[int, int] = 50,
    measure: str | None = DEFAULT_MEASURE,
    scale: float = DEFAULT_SCALE,
    channel_axis: int | None = None,
) -> TileGrid:
    """Mean focus value per tile, like the first seed's 50-px block acutance map.

    Each tile's value is the mean of the dense :func:`focus_map` over the tile. This agrees,
    within border effects of about ``2 * scale`` px, with :func:`focus_score` of the tile cut
    out on its own; the map is computed once over the whole image, so tiles see their
    neighbours and have no seams.

    Parameters
    ----------
    image : ndarray
        Image, or a precomputed 2-D focus map when ``measure`` is None.
    tile : int or (int, int), optional
        Tile height and width in px. Partial tiles at the bottom and right edges are kept.
    measure : str or None, optional
        Measure name (see :func:`list_measures`), or None to tile ``image`` as a focus map.
    scale, channel_axis
        As for :func:`focus_map`; ignored when ``measure`` is None.

    Returns
    -------
    TileGrid

    Raises
    ------
    BadInputError
        If a tile size is not a positive integer no larger than the image.

    Examples
    --------
    >>> fmap = np.arange(12, dtype=np.float32).reshape(3, 4)
    >>> grid = tile_grid(fmap, tile=2, measure=None)
    >>> grid.values
    array([[ 2.5,  4.5],
           [ 8.5, 10.5]], dtype=float32)
    >>> grid.row_edges, grid.col_edges
    (array([0, 2, 3]), array([0, 2, 4]))
    """
    if measure is None:
        fmap = as_float_image(image, name="focus map")
    else:
        fmap = focus_map(image, measure=measure, scale=scale, channel_axis=channel_axis)
    sizes = tuple(tile) if isinstance(tile, tuple | list | np.ndarray) else (tile, tile)
    if len(sizes) != 2 or not all(
        isinstance(t, int | np.integer) and not isinstance(t, bool) and t > 0 for t in sizes
    ):
        raise BadInputError(f"tile must be a positive integer or a pair of them, got {tile!r}")
    if sizes[0] > fmap.shape[0] or sizes[1] > fmap.shape[1]:
        raise BadInputError(
            f"tile {sizes[0]}x{sizes[1]} is larger than the {fmap.shape[0]}x{fmap.shape[1]} image"
        )
    edges = [np.append(np.arange(0, n, t), n) for n, t in zip(fmap.shape, sizes, strict=True)]
    sums = np.add.reduceat(fmap.astype(np.float64), edges[0][:-1], axis=0)
    sums = np.add.reduceat(sums, edges[1][:-1], axis=1)
    counts = np.outer(np.diff(edges[0]), np.diff(edges[1]))
    return TileGrid((sums / counts).astype(np.float32), edges[0], edges[1], measure)


# --------------------------------------------------------------------------------------------
# Profiles, the sharpest band and the in-focus mask
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FocusProfile:
    """Focus statistics per row (a profile down the height) or per column (across the width).

    Attributes
    ----------
    axis : {"rows", "cols"}
        ``"rows"``: one value per row, index 0 = top. ``"cols"``: one per column, 0 = left.
    median, q25, q75 : ndarray of float32
        Median and quartiles of the focus map across each row (or column); ``q75 - q25`` is the
        interquartile spread.
    """

    axis: Literal["rows", "cols"]
    median: np.ndarray
    q25: np.ndarray
    q75: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {
            "axis": self.axis,
            "median": self.median.tolist(),
            "q25": self.q25.tolist(),
            "q75": self.q75.tolist(),
        }


def focus_profile(fmap: np.ndarray, *, axis: Literal["rows", "cols"] = "rows") -> FocusProfile:
    """Median and interquartile range of a focus map along each row or column.

    Parameters
    ----------
    fmap : ndarray
        2-D focus map (from :func:`focus_map`).
    axis : {"rows", "cols"}, optional
        ``"rows"`` summarises each row, giving a profile down the height (for a sample tilted
        about a horizontal axis); ``"cols"`` summarises each column.

    Returns
    -------
    FocusProfile

    Examples
    --------
    >>> fmap = np.outer(np.array([1, 3, 2], np.float32), np.ones(4, np.float32))
    >>> focus_profile(fmap).median
    array([1., 3., 2.], dtype=float32)
    """
    if axis not in ("rows", "cols"):
        raise BadInputError(f"axis must be 'rows' or 'cols', got {axis!r}")
    data = as_float_image(fmap, name="focus map")
    q25, median, q75 = np.percentile(data, [25, 50, 75], axis=1 if axis == "rows" else 0)
    return FocusProfile(
        axis, median.astype(np.float32), q25.astype(np.float32), q75.astype(np.float32)
    )


@dataclass(frozen=True)
class SharpestBand:
    """Location of the sharpest band of a focus profile, as fractions of its length.

    Fractions count from the top (rows) or the left (cols): 0 is the first pixel edge, 1 the
    last. The ``*_from_end`` values of :meth:`to_dict` count from the bottom (or right) instead,
    as someone measuring "from the bottom of the image" would.

    Attributes
    ----------
    axis : {"rows", "cols"}
        Axis of the profile.
    peak_index : int
        Row (or column) of the smoothed profile's maximum.
    peak : float
        Centre of that row as a fraction of the height (or width).
    start, end : float
        Edges of the contiguous band around the peak where the smoothed profile stays at or above
        ``level`` of the way from its minimum to its peak; ``start < end``.
    """

    axis: Literal["rows", "cols"]
    peak_index: int
    peak: float
    start: float
    end: float

    @property
    def peak_from_end(self) -> float:
        """Peak position counted from the bottom (rows) or right (cols)."""
        return 1.0 - self.peak

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary, with positions from both ends."""
        return {
            "axis": self.axis,
            "peak_index": self.peak_index,
            "peak": self.peak,
            "start": self.start,
            "end": self.end,
            "peak_from_end": self.peak_from_end,
            "start_from_end": 1.0 - self.end,
            "end_from_end": 1.0 - self.start,
        }


def sharpest_band(
    profile: FocusProfile, *, smooth: float | None = None, level: float = 0.5
) -> SharpestBand:
    """Locate the sharpest band of a focus profile.

    The median profile is smoothed by a Gaussian, its peak is located, and the band is the
    contiguous run around the peak where the smoothed profile is at least
    ``min + level * (peak - min)``; measuring from the minimum makes this work for measures
    whose blurry baseline is not 0.

    Parameters
    ----------
    profile : FocusProfile
        From :func:`focus_profile`.
    smooth : float, optional
        Gaussian sigma in px for the smoothing; default 2 % of the profile length (at least 1).
    level : float, optional
        Fraction, in (0, 1), of the way from the profile's minimum to its peak that bounds the
        band.

    Returns
    -------
    SharpestBand

    Examples
    --------
    >>> rows = np.arange(200)
    >>> fmap = np.outer(np.exp(-((rows - 75) / 20) ** 2), np.ones(10))
    >>> band = sharpest_band(focus_profile(fmap))
    >>> round(band.peak, 2), round(band.peak_from_end, 2), band.start < 0.38 < band.end
    (0.38, 0.62, True)
    """
    if not 0 < level < 1:
        raise BadInputError(f"level must lie strictly between 0 and 1, got {level!r}")
    values = np.asarray(profile.median, np.float64)
    n = values.size
    sigma = max(1.0, 0.02 * n) if smooth is None else float(smooth)
    if not np.isfinite(sigma) or sigma < 0:
        raise BadInputError(f"smooth must be a non-negative number of pixels, got {smooth!r}")
    smoothed = ndimage.gaussian_filter1d(values, sigma, mode="nearest") if sigma > 0 else values
    peak = int(np.argmax(smoothed))
    above = smoothed >= smoothed.min() + level * (smoothed[peak] - smoothed.min())
    below = np.flatnonzero(~above)
    start = int(below[below < peak].max()) + 1 if np.any(below < peak) else 0
    end = int(below[below > peak].min()) if np.any(below > peak) else n
    return SharpestBand(profile.axis, peak, (peak + 0.5) / n, start / n, end / n)


def focus_threshold(fmap: np.ndarray) -> float:
    """Automatic in-focus threshold for a focus map (Otsu's method).

    For a non-negative map Otsu's threshold is found on the square roots of its positive
    values: focus values are energies, heavy-tailed, and their square roots are amplitudes.
    The logarithm would tame the tail too, but it stretches the faint residue that noise leaves
    in flat regions (values near 0) as far as the decade between blurred and sharp detail, and
    Otsu then counts that residue as in focus. A map with negative values (such as
    :func:`spectral_slope` or :func:`vollath_f4`) is thresholded as is. A map with a single
    value returns that value, so :func:`in_focus_mask` marks nothing.

    Examples
    --------
    >>> fmap = np.array([[0.01, 0.02, 1.0, 2.0]], np.float32)
    >>> 0.02 < focus_threshold(fmap) < 1.0
    True
    """
    data = as_float_image(fmap, name="focus map")
    if data.min() >= 0:
        positive = data[data > 0]
        if positive.size == 0 or positive.min() == positive.max():
            return float(positive.max()) if positive.size else 0.0
        return float(threshold_otsu(np.sqrt(positive.astype(np.float64)))) ** 2
    if data.min() == data.max():
        return float(data.min())
    return float(threshold_otsu(data))


def in_focus_mask(fmap: np.ndarray, *, threshold: float | None = None) -> np.ndarray:
    """Boolean mask of in-focus pixels: ``fmap > threshold``.

    Parameters
    ----------
    fmap : ndarray
        2-D focus map (from :func:`focus_map`).
    threshold : float, optional
        Focus value above which a pixel is in focus; by default :func:`focus_threshold`.

    Returns
    -------
    ndarray of bool
        Same shape as ``fmap``.

    Examples
    --------
    >>> fmap = np.array([[0.01, 0.02], [1.0, 2.0]], np.float32)
    >>> in_focus_mask(fmap)
    array([[False, False],
           [ True,  True]])
    >>> in_focus_mask(fmap, threshold=1.5)
    array([[False, False],
           [False,  True]])
    """
    data = as_float_image(fmap, name="focus map")
    if threshold is None:
        threshold = focus_threshold(data)
    elif not np.isfinite(threshold):
        raise BadInputError(f"threshold must be a finite number, got {threshold!r}")
    return data > threshold
