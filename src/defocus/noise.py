"""One noise model for every map: signal-dependent, spatially correlated and quantised noise.

Real sensor noise is not the white, signal-independent noise of textbooks:

- **Signal-dependent.** Photon and electron counting make the variance grow with intensity;
  the Poisson-Gaussian model ``var(I) = a * I + b`` (Foi et al. 2008) covers cameras, SEM and
  FIB detectors.
- **Spatially correlated.** Demosaicing, scan-line electronics and JPEG make neighbouring
  pixels' noise correlated, so noise has energy at scales a white-noise model says are clean.
  The model keeps the normalised **noise power spectrum** measured where the image is flat.
- **Quantised.** An integer image cannot show less than one grey level: a smooth 8-bit ramp is a
  staircase of one-level steps. The variance never drops below ``q**2 / 12`` (``q`` = one grey
  level), so a staircase is explained as noise and never read as detail.

:func:`estimate_noise` fits all three from the one image; :meth:`NoiseModel.spectral_weight`
gives the extra noise a derivative-of-Gaussian filter at any scale lets through, and
:func:`local_noise_variance` measures noise where it is. The blur map and the focus measures
compare their signal with these.

References
----------
Foi A., Trimeche M., Katkovnik V., Egiazarian K. (2008) Practical Poissonian-Gaussian noise
modeling and fitting for single-image raw-data. IEEE TIP 17(10).
Immerkaer J. (1996) Fast noise variance estimation. CVIU 64(2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ._array import as_float_image

__all__ = [
    "NoiseModel",
    "estimate_noise",
    "haar_sigma",
    "local_noise_variance",
    "noise_variance_map",
    "quantum",
]

# Blocks are this many pixels on a side: 32 resolves the spectrum to 1/32 cycle/px and holds
# 1024 samples, so one block's variance is known to about 5 %.
_BLOCK = 32
# Fraction of the blocks in each intensity bin taken as flat (the least varying ones).
_FLAT_FRACTION = 0.2
_BINS = 12
# Mean square of the lower 90 % of a unit normal sample's squares (edges are trimmed).
_TRIMMED_GAUSS = 0.6220
# Largest ratio of the noise spectrum to its mean.
_MAX_SPECTRAL = 4.0


@dataclass(frozen=True, eq=False)
class NoiseModel:
    """Noise of one image: variance as a function of intensity, a power spectrum and a quantum.

    The variance follows the measured noise-level function (one value per intensity bin,
    interpolated), since processed images (gamma, contrast stretch, detector mapping) bend the
    straight line of raw data; ``gain`` and ``floor`` summarise it as ``a * I + b``.

    Attributes
    ----------
    gain : float
        Slope ``a`` of the straight-line fit of variance against intensity; 0 for additive noise.
    floor : float
        Intercept ``b`` of that fit (squared intensity units).
    quantum : float
        One grey level for integer data (or float data on an integer grid), else 0.
    spectrum : (B, B) ndarray of float64
        Noise power spectrum measured in the flat blocks, normalised to mean 1 (white noise
        is all ones), in ``numpy.fft.fft2`` order.
    correlation : tuple of float
        Lag-1 correlation coefficient of the noise along (rows, columns).
    flat_blocks : int
        How many flat blocks the fit used.
    levels, variances : ndarray of float64
        The noise-level function: variance measured at each intensity level. Empty when the
        variance is ``floor`` everywhere (given, not measured).
    """

    gain: float
    floor: float
    quantum: float
    spectrum: np.ndarray
    correlation: tuple[float, float]
    flat_blocks: int
    levels: np.ndarray = field(default_factory=lambda: np.zeros(0))
    variances: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def variance(self, intensity: np.ndarray | float) -> np.ndarray:
        """Noise variance at ``intensity``, never below the quantisation floor ``q**2 / 12``.

        Examples
        --------
        >>> nm = estimate_noise(np.random.default_rng(0).normal(100, 2, (256, 256)))
        >>> 3.0 < float(nm.variance(100.0)) < 5.0
        True
        """
        x = np.asarray(intensity, np.float64)
        if len(self.levels):
            v = np.interp(x, self.levels, self.variances)
        else:
            v = np.full_like(x, self.floor)
        return np.maximum(v, self.quantum**2 / 12.0)

    def std(self, intensity: np.ndarray | float) -> np.ndarray:
        """Noise standard deviation at ``intensity`` (the square root of :meth:`variance`)."""
        return np.sqrt(self.variance(intensity))

    def spectral_weight(self, scale: float, *, order: int = 1) -> float:
        """How much more noise a derivative of order ``order`` at ``scale`` px passes than white
        noise of the same variance: the filter's squared response averaged over the measured
        spectrum. 1 for white noise; above 1 where the noise is correlated at that scale.

        Frequencies below the block's resolution take the lowest measured value, since the
        spectrum of any stationary noise is smooth there.

        Examples
        --------
        >>> nm = estimate_noise(np.random.default_rng(0).normal(0, 1, (256, 256)))
        >>> 0.8 < nm.spectral_weight(1.0) < 1.2
        True
        """
        b = self.spectrum.shape[0]
        # Evaluate the spectrum on a 256-point grid by nearest measured frequency. Coarser
        # filters pass only frequencies below 3 cycles per block, where the spectrum is flat,
        # so a finer grid would not change the answer.
        n = max(b, 256)
        f = np.fft.fftfreq(n)
        fy, fx = np.meshgrid(f, f, indexing="ij")
        iy = np.rint(fy * b).astype(int) % b
        ix = np.rint(fx * b).astype(int) % b
        s = self.spectrum[iy, ix]
        w2 = (2 * np.pi) ** 2 * (fy**2 + fx**2)
        h = w2**order * np.exp(-w2 * scale**2)
        total = float(h.sum())
        return float((s * h).sum() / total) if total > 0 else 1.0

    def summary(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "model": "var = gain * I + floor",
            "gain": float(f"{self.gain:.6g}"),
            "floor": float(f"{self.floor:.6g}"),
            "quantum": self.quantum,
            "correlation": [round(c, 3) for c in self.correlation],
            "flat_blocks": self.flat_blocks,
        }


def quantum(image: np.ndarray) -> float:
    """The grey-level step if the data lie on a regular grid (integers, or a scaled and
    offset copy of them), else 0. It scales with gain, as the noise does.

    Examples
    --------
    >>> quantum(np.arange(6, dtype=np.uint8)), quantum(3.0 * np.arange(64) + 100)
    (1.0, 3.0)
    >>> quantum(np.random.default_rng(0).random(100))
    0.0
    """
    if np.issubdtype(image.dtype, np.integer) or image.dtype == bool:
        return 1.0
    sample = np.unique(np.asarray(image, np.float64).ravel()[:: max(1, image.size // 65536)])
    sample = sample[np.isfinite(sample)]
    if len(sample) < 2:
        return 0.0
    # The span over a whole number of smallest steps: float32 rounding blurs single steps.
    span = float(sample[-1] - sample[0])
    q = span / max(round(span / float(np.diff(sample).min())), 1)
    steps = (sample - sample[0]) / q
    # A handful of levels (a binary mask, a test target) is not a quantised signal.
    few = len(sample) < 16
    if few or len(sample) > 4096 or not np.allclose(steps, np.rint(steps), rtol=0, atol=1e-2):
        return 0.0
    return q


def _haar_diagonal(x: np.ndarray) -> np.ndarray:
    """Finest Haar diagonal detail over the last two axes (odd trailing rows/columns dropped):
    white noise of variance v gives detail of variance v, and smooth content cancels."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w]
    return (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / 2


def _blocks(img: np.ndarray, b: int) -> np.ndarray:
    h, w = img.shape[0] // b, img.shape[1] // b
    return img[: h * b, : w * b].reshape(h, b, w, b).transpose(0, 2, 1, 3).reshape(h * w, b, b)


def _fit_variance(means: np.ndarray, varis: np.ndarray) -> tuple[float, float]:
    """Weighted least squares for ``var = a * mean + b`` over intensity bins (a summary)."""
    # Weights: relative errors of a variance estimate are about constant, so weight by 1/v².
    wt = 1.0 / np.maximum(varis, 1e-30) ** 2
    design = np.stack([means, np.ones_like(means)], axis=1)
    sw = np.sqrt(wt)[:, None]
    if len(means) >= 2 and np.ptp(means) > 0:
        (a, b), *_ = np.linalg.lstsq(design * sw, varis * sw[:, 0], rcond=None)
    else:
        a, b = 0.0, float(np.median(varis))
    return float(a), float(b)


def estimate_noise(image: np.ndarray, *, channel_axis: int | None = None) -> NoiseModel:
    """Fit a Poisson-Gaussian, spatially correlated, quantised noise model to one image.

    The image is cut into 32 px blocks (16 or 8 px for small images), each detrended by a
    least-squares plane. In each of twelve intensity bins the least varying fifth of the blocks
    is taken as flat (Foi et al. 2008 select smooth regions the same way); their median
    variance, corrected for the bias of taking the low tail, gives the noise variance at that
    intensity, and ``var = a * I + b`` is fitted over the bins. The flat blocks' averaged
    periodograms give the noise power spectrum.

    Texture finer than a block that is present everywhere can be taken for noise, which makes
    the model conservative: it then hides faint detail rather than reading noise as detail.

    Parameters
    ----------
    image : ndarray
        2-D image, or multichannel with ``channel_axis`` (combined to luminance).
    channel_axis : int, optional
        Axis of the colour channels.

    Returns
    -------
    NoiseModel
        Its variance follows the binned noise-level function; ``gain`` and ``floor`` are the
        straight-line summary, which for raw Poisson-Gaussian data is the Foi et al. model.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> level = np.linspace(20, 200, 512)[None, :].repeat(512, axis=0)
    >>> noisy = rng.poisson(level).astype(np.float32)  # variance = intensity
    >>> nm = estimate_noise(noisy)
    >>> 0.8 < nm.gain < 1.2 and nm.floor < 10
    True
    """
    arr = np.asarray(image)
    img = as_float_image(arr, channel_axis=channel_axis).astype(np.float64)
    q = quantum(arr)
    b = _BLOCK
    while b > 8 and min(img.shape) < 4 * b:
        b //= 2
    blocks = _blocks(img, b)
    if len(blocks) == 0:
        white = np.ones((b, b))
        return NoiseModel(0.0, q**2 / 12, q, white, (0.0, 0.0), 0)
    # Least-squares plane per block, removed with one matrix product.
    yy, xx = np.mgrid[:b, :b].astype(np.float64)
    basis = np.stack([np.ones(b * b), yy.ravel() - (b - 1) / 2, xx.ravel() - (b - 1) / 2])
    flat = blocks.reshape(len(blocks), -1)
    coef = flat @ np.linalg.pinv(basis)
    resid = flat - coef @ basis
    means = coef[:, 0]
    varis = (resid**2).sum(axis=1) / (b * b - 3)
    # Finest Haar diagonal detail per block: smooth content and sparse edges barely move its
    # median, so it measures noise even where no block is truly flat (Donoho & Johnstone 1994).
    hd = _haar_diagonal(resid.reshape(-1, b, b))
    haar = (np.median(np.abs(hd.reshape(len(hd), -1)), axis=1) / 0.6745) ** 2
    # Intensity bins by quantile; the least varying blocks of each bin are the flat ones.
    edges = np.quantile(means, np.linspace(0, 1, _BINS + 1))
    which = np.clip(np.searchsorted(edges, means, side="right") - 1, 0, _BINS - 1)
    chosen, bin_mean, bin_haar = [], [], []
    for k in range(_BINS):
        idx = np.flatnonzero(which == k)
        if len(idx) == 0:
            continue
        keep = idx[varis[idx] <= np.quantile(varis[idx], _FLAT_FRACTION)]
        chosen.append(keep)
        bin_mean.append(float(np.median(means[keep])))
        bin_haar.append(float(np.median(haar[keep])))
    sel = np.concatenate(chosen)
    # Spectrum of the flat blocks, each normalised by its own variance (Hann window against
    # leakage from the block's edges).
    win = np.outer(np.hanning(b), np.hanning(b))
    r = resid[sel].reshape(-1, b, b)
    norm = np.maximum(varis[sel], 1e-30)[:, None, None] * float((win**2).sum())
    spec = (np.abs(np.fft.fft2(r * win)) ** 2 / norm).mean(axis=0)
    # Below 3 cycles per block the detrended blocks still hold smooth image content (curvature
    # the plane leaves), not noise; noise correlations of demosaicing, scan electronics and
    # JPEG span a few pixels, so their spectrum is flat there: take the annulus just above.
    f = np.fft.fftfreq(b) * b
    ring = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    spec[ring < 3] = spec[(ring >= 3) & (ring < 4)].mean()
    spec /= spec.mean()
    # Short-range noise correlation cannot make a spectrum much more peaked than this: a
    # sharper peak is texture.
    spec = np.minimum(spec, _MAX_SPECTRAL)
    spec /= spec.mean()
    acf = np.fft.ifft2(spec).real
    corr = (float(acf[1, 0] / acf[0, 0]), float(acf[0, 1] / acf[0, 0]))
    # The median of the lowest fifth of a chi-square sample sits near its 10th percentile:
    # about 1.28 standard deviations low. The effective degrees of freedom shrink with
    # correlation (dof = n / mean(S**2)).
    dof = b * b / float(np.mean(spec**2))
    bias = max(1.0 - 1.28 * np.sqrt(2.0 / dof), 0.5)
    # The Haar detail sees only the top of the spectrum (|H|^2 = 4 sin^2(pi fy) sin^2(pi fx), mean
    # 1): for correlated noise, as after JPEG or demosaicing, it is below the full variance by
    # the spectrum's mean under that response.
    fy, fx = np.meshgrid(np.fft.fftfreq(b), np.fft.fftfreq(b), indexing="ij")
    seen = float(np.mean(spec * 4 * np.sin(np.pi * fy) ** 2 * np.sin(np.pi * fx) ** 2))
    bin_var = np.asarray(bin_haar) / bias / min(max(seen, 1 / _MAX_SPECTRAL), 1.0)
    levels = np.asarray(bin_mean)
    variances = bin_var
    order = np.argsort(levels)
    a, c = _fit_variance(levels, variances)
    return NoiseModel(a, c, q, spec, corr, len(sel), levels[order], variances[order])


def haar_sigma(image: np.ndarray) -> float:
    """White-noise standard deviation from the MAD of the finest Haar diagonal detail.

    The diagonal detail of white noise of variance v has variance v, while smooth content
    cancels in it and the median ignores the sparse edges that survive (Donoho & Johnstone
    1994). One global level, for regularising a deconvolution or a kernel fit and for the
    focus measures; maps that must not read noise as detail use :func:`estimate_noise`.

    Examples
    --------
    >>> img = np.random.default_rng(0).normal(50, 3, (256, 256))
    >>> 2.8 < haar_sigma(img) < 3.2
    True
    """
    d = _haar_diagonal(np.asarray(image, np.float64))
    return float(np.median(np.abs(d))) / 0.6745 if d.size else 0.0


def local_noise_variance(image: np.ndarray, *, block: int = _BLOCK) -> np.ndarray:
    """Per-pixel white-noise variance, measured in blocks, that texture does not inflate.

    Noise is not always a function of intensity alone: different materials under one beam give
    regions of one brightness different noise. So each ``block`` px block measures its own, from
    the finest Haar diagonal detail at two levels, ``h1`` on the image and ``h2`` on its 2 x 2
    block means (mean squares with the largest tenth trimmed). White noise of variance ``n``
    gives ``h1² = n`` and ``h2² = n / 4``; scale-invariant texture gives the same detail at both
    levels, and smoother texture more at the coarser one. Hence ``n ≈ 4/3 (h1² - h2²)``,
    clipped at 0: fine texture is not taken for noise, while noise on smooth content is
    measured in full.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> img = rng.normal(100, 2, (256, 256)); img[:, 128:] += rng.normal(0, 6, (256, 128))
    >>> v = local_noise_variance(img)
    >>> 3 < float(np.median(v[:, :96])) < 5, 30 < float(np.median(v[:, 160:])) < 50
    (True, True)
    """
    img = np.asarray(image, np.float64)
    b = block
    h, w = img.shape[0] // b, img.shape[1] // b
    if h < 1 or w < 1:
        return np.full(img.shape, haar_sigma(img) ** 2)

    def detail(x: np.ndarray) -> np.ndarray:
        d = _haar_diagonal(x)
        d2 = np.sort((d * d).reshape(*d.shape[:2], -1), axis=-1)
        # Mean square of the lower 90 %: sparse edges do not count, and unlike the median it
        # measures the variance of heavy-tailed (low-count shot) noise in full.
        return d2[..., : int(0.9 * d2.shape[-1])].mean(axis=-1) / _TRIMMED_GAUSS

    x = _blocks(img, b).reshape(h, w, b, b)
    half = x.reshape(h, w, b // 2, 2, b // 2, 2).mean(axis=(3, 5))
    n = np.maximum(4.0 / 3.0 * (detail(x) - detail(half)), 0.0)
    n = ndi.median_filter(n, size=5, mode="nearest")
    up = np.repeat(np.repeat(n, b, axis=0), b, axis=1)
    pad = ((0, img.shape[0] - up.shape[0]), (0, img.shape[1] - up.shape[1]))
    return np.pad(up, pad, mode="edge")


def noise_variance_map(
    image: np.ndarray, *, spectral_weight: float = 1.0, step: float = 0.0
) -> np.ndarray:
    """Per-pixel noise variance for a band-pass measure: :func:`local_noise_variance`, times
    the band's ``spectral_weight`` (:meth:`NoiseModel.spectral_weight`), never below the
    quantisation variance ``step**2 / 12``.

    Examples
    --------
    >>> img = np.random.default_rng(0).normal(100, 2, (128, 128))
    >>> v = noise_variance_map(img, spectral_weight=1.0, step=1.0)
    >>> v.shape, 3 < float(np.median(v)) < 5
    ((128, 128), True)
    """
    var = local_noise_variance(image) * spectral_weight
    return np.maximum(var, step * step / 12.0).astype(np.float32)
