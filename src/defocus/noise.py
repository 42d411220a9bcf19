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
- **Larger on slopes.** A camera's pipeline (demosaicing, sharpening, JPEG) leaves more error on
  smooth intensity ramps than on flat areas of the same intensity: JPEG zeroes the small cosine
  coefficients of a flat block but quantises the large ones of a sloped block (Wallace 1992).
  The model measures the excess variance as a function of the local slope
  (:func:`cell_slope`) from the image itself, away from edges (whose own fine detail is not
  noise); white noise gives none, or a few percent of its variance from sampling, on smooth
  ramps and sharp edges alike.

:func:`estimate_noise` fits all three from the one image; :meth:`NoiseModel.spectral_weight`
gives the extra noise a derivative-of-Gaussian filter at any scale lets through. For maps that
measure noise where it is: :func:`noise_spectrum` (the spectrum alone, cheaply, trusted only
where the flat blocks are Gaussian, since texture is sparse and noise is not), :func:`band_noise`
(what a band-pass and the Haar levels see of that spectrum), :func:`local_noise_variance` (per
block, correlated noise unmixed from texture with those gains), :func:`noise_floor` (its median
by intensity) and :func:`noise_variance_map` (the band's noise per pixel). The blur map, the
focus measures and blind identification compare their signal with these.

References
----------
Wallace G. K. (1992) The JPEG still picture compression standard. IEEE Trans. Consumer
Electronics 38(1).
Foi A., Trimeche M., Katkovnik V., Egiazarian K. (2008) Practical Poissonian-Gaussian noise
modeling and fitting for single-image raw-data. IEEE TIP 17(10).
Immerkaer J. (1996) Fast noise variance estimation. CVIU 64(2).
Field D. J. (1987) Relations between the statistics of natural images and the response
properties of cortical cells. JOSA A 4(12).
Zoran D., Weiss Y. (2009) Scale invariance and noise in natural images. ICCV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ._array import as_float_image

__all__ = [
    "BandNoise",
    "NoiseModel",
    "band_noise",
    "cell_slope",
    "compression_variance",
    "estimate_noise",
    "haar_sigma",
    "local_noise_variance",
    "noise_floor",
    "noise_level",
    "noise_spectrum",
    "noise_variance_map",
    "quantum",
    "white_haar",
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
# noise_spectrum samples at most this many blocks: 2048 blocks of 32 px give the spectrum of
# each frequency to about 2 % at any image size.
_SPECTRUM_BLOCKS = 2048
# Excess kurtosis of second-level Haar detail at which flat blocks count as texture, not noise.
# Gaussian noise has 0, also after demosaicing, JPEG or scan electronics (all linear or nearly
# so at that level); band-pass coefficients of natural images are sparse, with excess kurtosis
# well above 1 (Field 1987; Zoran & Weiss 2009).
_TEXTURE_KURTOSIS = 1.0
# noise_spectrum takes the spectrum as flat below this many cycles per block (1/8 cycle/px for
# 32-px blocks): noise correlations of demosaicing, JPEG and scan electronics span at most a
# couple of pixels, so power there in the flat blocks is residual (blurred) content.
_FLAT_BELOW = 4
# The slope term: intensity and slope bins of the blocks (quantiles), and the fewest blocks a
# bin needs for its lower envelope (the median of its least varying fifth).
_SLOPE_INTENSITY_BINS = 4
_SLOPE_BINS = 6
_SLOPE_MIN_BLOCKS = 20
# The slope term leaves out edges: pixels of the detail finer than _SMOOTH px beyond this many
# robust standard deviations of their block (Gaussian noise: 6e-5 of them, so noise alone
# masks nothing), widened by this many px each side to take in a sharp edge's tails.
_EDGE_K = 4.0
_EDGE_GROW = 2
# local_noise_variance first removes each block's content smoother than a Gaussian of this
# sigma (px): smooth shading raises the coarser Haar level more than the finer one and would be
# taken for less noise. Noise at the Haar levels (periods of 2-8 px) keeps 80-100 % of its energy.
_SMOOTH = 2.0


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
    compression : float
        Least variance of JPEG's compression error (:func:`compression_variance`); 0 for data
        that show no JPEG block grid. A floor on the noise at every intensity.
    slopes, slope_variances : ndarray of float64
        The excess variance on intensity slopes: measured at each slope (:func:`cell_slope`,
        intensity units per px), added to :meth:`variance` where a slope is given. Empty where
        the image shows none or is too small to measure it.
    slope_block : int
        Window side (px) of the slopes the excess was measured at.
    """

    gain: float
    floor: float
    quantum: float
    spectrum: np.ndarray
    correlation: tuple[float, float]
    flat_blocks: int
    levels: np.ndarray = field(default_factory=lambda: np.zeros(0))
    variances: np.ndarray = field(default_factory=lambda: np.zeros(0))
    compression: float = 0.0
    slopes: np.ndarray = field(default_factory=lambda: np.zeros(0))
    slope_variances: np.ndarray = field(default_factory=lambda: np.zeros(0))
    slope_block: int = _BLOCK

    def slope_variance(self, slope: np.ndarray | float) -> np.ndarray:
        """Excess noise variance on an intensity slope: 0 on flat areas, interpolated between
        the slopes measured and constant beyond the steepest.

        Parameters
        ----------
        slope : float or ndarray
            Local intensity slope in intensity units per px, as :func:`cell_slope` gives it
            with ``block=slope_block``.

        Returns
        -------
        ndarray of float64
            The excess in squared intensity units, of ``slope``'s shape; all 0 where the model
            holds no slope term.

        Examples
        --------
        >>> nm = estimate_noise(np.random.default_rng(0).normal(100, 2, (256, 256)))
        >>> float(nm.slope_variance(5.0))  # too small an image to measure it
        0.0
        """
        x = np.asarray(slope, np.float64)
        if not len(self.slopes):
            return np.zeros_like(x)
        return np.interp(x, self.slopes, self.slope_variances)

    def variance(
        self, intensity: np.ndarray | float, *, slope: np.ndarray | float | None = None
    ) -> np.ndarray:
        """Noise variance at an intensity, never below the quantisation floor ``q**2 / 12``
        nor the compression error's variance; with a slope, plus the excess on that slope.

        Parameters
        ----------
        intensity : float or ndarray
            Intensity, in the image's units.
        slope : float or ndarray, optional
            Local intensity slope (units per px, from :func:`cell_slope`), broadcast against
            ``intensity``; adds :meth:`slope_variance`. None for the noise of flat areas.

        Returns
        -------
        ndarray of float64
            Variance in squared intensity units, of the broadcast shape.

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
        v = np.maximum(v, max(self.quantum**2 / 12.0, self.compression))
        return v if slope is None else v + self.slope_variance(slope)

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
            "compression": float(f"{self.compression:.6g}"),
            "slope_noise": [
                [float(f"{g:.4g}"), float(f"{v:.4g}")]
                for g, v in zip(self.slopes, self.slope_variances, strict=True)
            ],
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
    # Sampled before the conversion: converting a whole 12 MP image to float64 took 0.3 s.
    flat = np.asarray(image).ravel()
    sample = np.unique(flat[:: max(1, image.size // 65536)].astype(np.float64))
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


def _blocks(img: np.ndarray, b: int, dtype: Any = None) -> np.ndarray:
    """The (n, b, b) blocks of ``img`` in row-major order, copied (to ``dtype`` if given)."""
    h, w = img.shape[0] // b, img.shape[1] // b
    grid = img[: h * b, : w * b].reshape(h, b, w, b).transpose(0, 2, 1, 3)
    out = np.empty((h, w, b, b), dtype or img.dtype)
    out[...] = grid
    return out.reshape(h * w, b, b)


def _fit_variance(means: np.ndarray, varis: np.ndarray) -> tuple[float, float]:
    """Weighted least squares for ``var = a * mean + b`` over intensity bins (a summary)."""
    # Weights: relative errors of a variance estimate are about constant, so weight by 1/v².
    # Noise-free bins (variance 0) get the weight of a millionth of the largest variance.
    wt = 1.0 / np.maximum(varis, max(1e-6 * float(np.max(varis, initial=0.0)), 1e-30)) ** 2
    design = np.stack([means, np.ones_like(means)], axis=1)
    sw = np.sqrt(wt)[:, None]
    if len(means) >= 2 and np.ptp(means) > 0:
        (a, b), *_ = np.linalg.lstsq(design * sw, varis * sw[:, 0], rcond=None)
    else:
        a, b = 0.0, float(np.median(varis))
    return float(a), float(b)


def _detrend(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Residuals of each (n, b, b) block after its least-squares plane, the blocks' means,
    their residual variances and the planes' slopes (grey levels per px)."""
    n, b = len(blocks), blocks.shape[-1]
    # The basis 1, y - c, x - c (centred coordinates) is orthogonal, so each coefficient is one
    # projection; a (n, 3) @ (3, b * b) product to rebuild the plane was 5x slower in BLAS.
    c = np.arange(b) - (b - 1) / 2
    norm = b * float(c @ c)
    mean = blocks.mean(axis=(1, 2))
    ay = blocks.sum(axis=2) @ c / norm
    ax = blocks.sum(axis=1) @ c / norm
    resid = blocks - mean[:, None, None]
    resid -= ay[:, None, None] * c[:, None]  # in place: one block-stack-sized array, not three
    resid -= ax[:, None, None] * c
    resid = resid.reshape(n, b * b)
    return resid, mean, np.einsum("ij,ij->i", resid, resid) / (b * b - 3), np.hypot(ay, ax)


def _flattest(means: np.ndarray, varis: np.ndarray) -> np.ndarray:
    """Indices of the least varying fifth of the blocks in each of the intensity bins."""
    edges = np.quantile(means, np.linspace(0, 1, _BINS + 1))
    which = np.clip(np.searchsorted(edges, means, side="right") - 1, 0, _BINS - 1)
    chosen = []
    for k in range(_BINS):
        idx = np.flatnonzero(which == k)
        if len(idx):
            chosen.append(idx[varis[idx] <= np.quantile(varis[idx], _FLAT_FRACTION)])
    return np.concatenate(chosen)


def cell_slope(means: np.ndarray, *, cell: int, block: int = _BLOCK) -> np.ndarray:
    """Local intensity slope from a grid of cell means: the gradient magnitude of the
    least-squares plane through the cells of a ``block`` px window around each cell, as
    :func:`estimate_noise` measures it on its blocks (:attr:`NoiseModel.slope_block`).

    Parameters
    ----------
    means : (M, N) ndarray
        Mean intensity of each cell.
    cell : int
        Cell side in px.
    block : int, optional
        Window side in px (at least two cells are used).

    Returns
    -------
    (M, N) ndarray of float32
        Slope in intensity units per px.

    Examples
    --------
    >>> ramp = 3.0 * np.arange(64)[None, :].repeat(64, axis=0)  # 3 units per px along x
    >>> cells = ramp.reshape(16, 4, 16, 4).mean(axis=(1, 3))
    >>> bool(np.allclose(cell_slope(cells, cell=4)[4:-4, 4:-4], 3.0))
    True
    """
    n = max(block // cell, 2)
    c = cell * (np.arange(n) - (n - 1) / 2)
    diff = c / float(c @ c)  # least-squares slope of the n cells along one axis
    mean = np.full(n, 1.0 / n)
    m = np.asarray(means, np.float32)
    gx = ndi.correlate1d(ndi.correlate1d(m, diff, axis=1, mode="nearest"), mean, axis=0)
    gy = ndi.correlate1d(ndi.correlate1d(m, diff, axis=0, mode="nearest"), mean, axis=1)
    return np.hypot(gx, gy)


def _trimmed_square(d: np.ndarray, skip: np.ndarray | None = None) -> np.ndarray:
    """Mean square of the lower 90 % of each row's squares (last axis), over a unit normal's;
    with ``skip`` (a mask of ``d``'s shape), of the entries not skipped (NaN for a row with
    none left).

    Sparse edges do not count, and unlike the median it measures the variance of heavy-tailed
    (low-count shot) noise in full and is not stuck at 0 or half a grey level on integer data.
    """
    d2 = d * d
    if skip is None:
        keep = int(0.9 * d2.shape[-1])
        return np.partition(d2, keep - 1, axis=-1)[..., :keep].mean(axis=-1) / _TRIMMED_GAUSS
    d2[skip] = np.inf  # sorted last, never summed
    d2.sort(axis=-1)
    kept = (0.9 * (d2.shape[-1] - skip.sum(axis=-1))).astype(int)
    total = np.take_along_axis(np.cumsum(d2, axis=-1), np.maximum(kept - 1, 0)[..., None], -1)
    with np.errstate(invalid="ignore"):
        return np.where(kept > 0, total[..., 0] / np.maximum(kept, 1), np.nan) / _TRIMMED_GAUSS


def _edge_free_energy(resid: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Trimmed mean square (:func:`_trimmed_square`) of the finest Haar diagonal detail of
    (n, b, b) residual blocks over the coefficients away from edges, and whether at least
    half of each block is away from edges.

    An edge's own fine detail takes the trimmed tenth's place, so the noise's largest squares
    stay in and a block crossed by edges reads up to 1.6 times its noise. Edges are found in
    the detail finer than a Gaussian of ``_SMOOTH`` px (smooth shading and curvature cancel in
    it): pixels beyond ``_EDGE_K`` robust standard deviations of the block (never less than
    ``sqrt(floor)``), widened by ``_EDGE_GROW`` px each side, and the 2 x 2 cells they touch
    are left out before trimming.
    """
    n, b = resid.shape[0], resid.shape[-1]
    hp = resid - ndi.gaussian_filter(resid, (0, _SMOOTH, _SMOOTH), mode="reflect")
    # Robust scale per quarter of the block: noise that changes across a block (more of it on
    # the sloped part) is not taken for an edge.
    h = b // 2
    quarter = np.abs(hp[:, : 2 * h, : 2 * h]).reshape(n, 2, h, 2, h).transpose(0, 1, 3, 2, 4)
    quarter = quarter.reshape(n, 4, h * h)
    grow = (1, 2 * _EDGE_GROW + 1, 2 * _EDGE_GROW + 1)
    sd = np.median(quarter, axis=2) / 0.6745
    # Twice: the second time the scale leaves out the edges found the first time.
    for last in (False, True):
        edge = quarter > (_EDGE_K * np.maximum(sd, np.sqrt(floor)))[:, :, None]
        edge = edge.reshape(n, 2, 2, h, h).transpose(0, 1, 3, 2, 4).reshape(n, 2 * h, 2 * h)
        edge = ndi.maximum_filter(edge, size=grow)
        if not last:
            # Median of each quarter's unmasked pixels (masked ones sort last).
            masked = edge.reshape(n, 2, h, 2, h).transpose(0, 1, 3, 2, 4).reshape(n, 4, h * h)
            left = h * h - masked.sum(axis=2)
            ranked = np.sort(np.where(masked, np.inf, quarter), axis=2)
            mid = np.take_along_axis(ranked, np.maximum(left - 1, 0)[:, :, None] // 2, axis=2)
            sd = np.where(left > 0, mid[:, :, 0] / 0.6745, np.inf)
    mask = edge.reshape(n, h, 2, h, 2).any(axis=(2, 4)).reshape(n, -1)
    fine = _trimmed_square(_haar_diagonal(resid).reshape(n, -1), mask)
    return fine, mask.sum(axis=1) <= h * h // 2


def _increasing(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least-squares non-decreasing fit to ``y`` (pool adjacent violators)."""
    pools: list[list[float]] = []  # [value, weight, count]
    for v, wt in zip(y, w, strict=True):
        pools.append([float(v), float(wt), 1])
        while len(pools) > 1 and pools[-2][0] > pools[-1][0]:
            v2, w2, n2 = pools.pop()
            v1, w1, n1 = pools.pop()
            pools.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.repeat([p[0] for p in pools], [int(p[2]) for p in pools])


def _slope_excess(
    slope: np.ndarray, resid: np.ndarray, means: np.ndarray, to_var: float, floor: float
) -> tuple[np.ndarray, np.ndarray]:
    """Excess noise variance against block slope: :class:`NoiseModel`'s ``slopes`` and
    ``slope_variances``, from the (n, b, b) blocks' plane slopes, residuals and means
    (:func:`_detrend`).

    Each block's fine-scale energy is the trimmed mean square of its finest Haar diagonal
    detail away from edges (:func:`_edge_free_energy`; planes cancel in it exactly, and unlike
    the median it is not stuck at 0 or half a grey level on 8-bit data), its slope that of its
    least-squares plane; blocks more than half covered by edges are left out, since a steep
    block is most often an edge, whose fine detail is not noise. In intensity and
    slope bins (quantiles), the median of the least varying fifth of the blocks is the bin's
    lower envelope, as flat blocks give the noise itself; the excess over the flattest slope
    bin of the same intensity (never below the quantisation and compression floor), median
    over intensities and made non-decreasing in slope, is the slope term. ``to_var`` converts
    finest-detail energy to variance as for the flat blocks. Empty where no bin has an excess.
    """
    n, b = len(slope), math.isqrt(resid.shape[-1])
    pick = np.arange(0, n, max(1, n // (2 * _SPECTRUM_BLOCKS)))
    slope, resid, means = slope[pick], resid[pick], means[pick]
    fine, clean = _edge_free_energy(resid.reshape(-1, b, b), floor)
    means, slope, fine = means[clean], slope[clean], fine[clean] / to_var
    if len(fine) < _SLOPE_MIN_BLOCKS:
        return np.zeros(0), np.zeros(0)

    def bins(x: np.ndarray, k: int) -> np.ndarray:
        edges = np.quantile(x, np.linspace(0, 1, k + 1))
        return np.clip(np.searchsorted(edges, x, side="right") - 1, 0, k - 1)

    ib, gb = bins(means, _SLOPE_INTENSITY_BINS), bins(slope, _SLOPE_BINS)
    excess = np.full((_SLOPE_INTENSITY_BINS, _SLOPE_BINS), np.nan)
    for i in range(_SLOPE_INTENSITY_BINS):
        for j in range(_SLOPE_BINS):
            sel = (ib == i) & (gb == j)
            if sel.sum() >= _SLOPE_MIN_BLOCKS:
                excess[i, j] = np.quantile(fine[sel], _FLAT_FRACTION / 2)
        excess[i] -= max(excess[i, 0], floor)  # NaN where the flat bin was not measured
    counts = np.bincount(gb, minlength=_SLOPE_BINS)
    ex = np.full(_SLOPE_BINS, np.nan)
    nodes = np.full(_SLOPE_BINS, np.nan)
    for j in range(_SLOPE_BINS):
        col = excess[:, j][np.isfinite(excess[:, j])]
        if len(col):
            ex[j], nodes[j] = np.median(col), np.median(slope[gb == j])
    ok = np.isfinite(ex)
    if ok.sum() < 2:
        return np.zeros(0), np.zeros(0)
    ex = np.maximum(_increasing(ex[ok], counts[ok]), 0.0)
    if not ex.any():
        return np.zeros(0), np.zeros(0)
    return nodes[ok], ex


def _periodogram(resid: np.ndarray, varis: np.ndarray, low: int = 3) -> np.ndarray:
    """Mean Hann-windowed periodogram of (n, b, b) residual blocks, each normalised by its own
    variance, with the lowest rings replaced by the annulus above them; mean 1."""
    b = resid.shape[-1]
    # A block the plane fits exactly (noise-free data) has no noise spectrum to add.
    live = varis > 0
    if not live.any():
        return np.ones((b, b))
    win = np.outer(np.hanning(b), np.hanning(b))
    norm = varis[live, None, None] * float((win**2).sum())
    spec = (np.abs(np.fft.fft2(resid[live] * win)) ** 2 / norm).mean(axis=0)
    # Below 3 cycles per block the detrended blocks still hold smooth image content (curvature
    # the plane leaves), not noise; noise correlations of demosaicing, scan electronics and
    # JPEG span a few pixels, so their spectrum is flat there: take the annulus just above.
    f = np.fft.fftfreq(b) * b
    ring = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    spec[ring < low] = spec[(ring >= low) & (ring < low + 1)].mean()
    return spec / spec.mean()


def _haar_response(n: int, level: int) -> np.ndarray:
    """Squared frequency response, on the ``fftfreq(n)`` grid, of the Haar diagonal detail at
    ``level`` (1: on the image; 2: on its 2 x 2 block means; ...) after the smooth content is
    removed as :func:`local_noise_variance` removes it."""
    fy, fx = np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij")
    r = (1.0 - np.exp(-2 * np.pi**2 * _SMOOTH**2 * (fy**2 + fx**2))) ** 2
    for k in range(level - 1):  # each 2 x 2 mean multiplies by cos² per axis
        r *= np.cos(np.pi * 2**k * fy) ** 2 * np.cos(np.pi * 2**k * fx) ** 2
    s = 2 ** (level - 1)
    return r * 4 * np.sin(np.pi * s * fy) ** 2 * np.sin(np.pi * s * fx) ** 2


def _haar_pair(haar: tuple[float, float, float], block: int = _BLOCK) -> int:
    """First of the two successive Haar levels that :func:`local_noise_variance` compares.

    Levels 1 and 2 have four times the samples of levels 2 and 3 and see the least texture:
    they are left only when their contrast for noise, ``|g1 - g2| / (g1 + g2)``, is under half
    that of the next pair (noise correlated over about two pixels can give ``g1 ≈ g2``).
    """
    g1, g2, g3 = haar

    def contrast(a: float, c: float) -> float:
        return abs(a - c) / max(a + c, 1e-12)

    return 2 if block >= 16 and contrast(g2, g3) > 2 * contrast(g1, g2) else 1


def _excess_kurtosis(x: np.ndarray) -> float:
    """Excess kurtosis of each row of ``x`` after normalising it to unit mean square, averaged."""
    m2 = np.maximum((x * x).mean(axis=1), 1e-30)
    return float(np.mean((x**4).mean(axis=1) / m2**2) - 3.0)


def noise_spectrum(image: np.ndarray, *, channel_axis: int | None = None) -> np.ndarray:
    """Normalised noise power spectrum, measured in the image's flattest blocks.

    Blocks of 32 px (16 or 8 for small images) on a regular sample of at most 2048 are
    detrended by a plane; the least varying fifth of each intensity bin is taken as flat, as in
    :func:`estimate_noise`, and their periodograms are averaged. Flat blocks of a richly textured
    image hold texture rather than noise; texture and noise differ in their statistics, not
    their spectra: noise is Gaussian, while band-pass detail of natural images is sparse
    (Field 1987; Zoran & Weiss 2009). So the measured spectrum is trusted in proportion to how
    Gaussian the flat blocks' second-level Haar detail is: white where its excess kurtosis
    reaches 1, the measured spectrum where it is 0, and a mixture between.

    Parameters
    ----------
    image : ndarray
        2-D image, or multichannel with ``channel_axis``.
    channel_axis : int, optional
        Axis of the colour channels.

    Returns
    -------
    (B, B) ndarray of float64
        Mean 1 (white noise is all ones), in ``numpy.fft.fft2`` order; B is the block side.

    Examples
    --------
    >>> from scipy import ndimage
    >>> white = np.random.default_rng(0).normal(0, 1, (256, 256))
    >>> s = noise_spectrum(ndimage.gaussian_filter(white, 0.7))
    >>> bool(s[0, 0] > 3 > 0.1 > s[16, 16])  # correlated noise: most power at low frequency
    True
    """
    img = as_float_image(np.asarray(image), channel_axis=channel_axis).astype(np.float64)
    b = _BLOCK
    while b > 8 and min(img.shape) < 4 * b:
        b //= 2
    h, w = img.shape[0] // b, img.shape[1] // b
    if h < 1 or w < 1:
        return np.ones((b, b))
    stride = max(1, int(np.ceil(np.sqrt(h * w / _SPECTRUM_BLOCKS))))
    grid = img[: h * b, : w * b].reshape(h, b, w, b)[::stride, :, ::stride]
    resid, means, varis, _ = _detrend(grid.transpose(0, 2, 1, 3).reshape(-1, b, b))
    sel = _flattest(means, varis)
    r = resid[sel].reshape(-1, b, b)
    spec = _periodogram(r, varis[sel], _FLAT_BELOW * b // _BLOCK or 1)
    level2 = _haar_diagonal(r.reshape(-1, b // 2, 2, b // 2, 2).mean(axis=(2, 4)))
    kurt = _excess_kurtosis(level2.reshape(len(sel), -1))
    trust = float(np.clip(1.0 - kurt / _TEXTURE_KURTOSIS, 0.0, 1.0))
    return 1.0 + trust * (spec - 1.0)


def white_haar() -> tuple[float, float, float]:
    """Haar diagonal detail energy that unit white noise leaves at levels 1, 2 and 3 once
    :func:`local_noise_variance` has removed the smooth content (about 0.97, 0.21, 0.03)."""
    g1, g2, g3 = (float(np.mean(_haar_response(_BLOCK, k))) for k in (1, 2, 3))
    return g1, g2, g3


@dataclass(frozen=True)
class BandNoise:
    """How a band-pass measure sees an image's noise: what :func:`noise_variance_map` needs
    besides the image, from :func:`band_noise`.

    Attributes
    ----------
    weight : float
        The band's spectral weight: how much more noise energy it passes than white noise of
        the same variance (1 for white noise).
    peak : float
        The band's largest squared response over its mean. Quantisation error on smooth
        content (a staircase of one grey level) is not white: all its variance may fall where
        the band passes most, so ``peak`` times its variance bounds what it can put in the band.
    haar : tuple of float
        Expected Haar diagonal detail energy of unit-variance noise at levels 1, 2 and 3 after
        the smooth content is removed (:func:`white_haar` for white noise).
    error : float
        Relative standard error of :func:`local_noise_variance` for this noise (about 0.03
        for white noise; larger where correlation makes the two Haar levels alike).
    floor : (levels, variances)
        The image's least noise variance by intensity (:func:`noise_floor`); empty for none.
    """

    weight: float = 1.0
    peak: float = 1.0
    haar: tuple[float, float, float] = field(default_factory=white_haar)
    error: float = 0.0
    floor: tuple[tuple[float, ...], tuple[float, ...]] = ((), ())


def band_noise(spectrum: np.ndarray, response: np.ndarray) -> BandNoise:
    """Describe how a band of squared frequency response ``response`` sees noise of normalised
    power spectrum ``spectrum`` (from :func:`noise_spectrum`).

    Parameters
    ----------
    spectrum : (B, B) ndarray
        Normalised noise power spectrum in ``numpy.fft.fft2`` order.
    response : (n, n) ndarray
        The band's squared frequency response on the ``numpy.fft.fftfreq(n)`` grid (n >= B);
        the spectrum is read at the nearest measured frequency.

    Returns
    -------
    BandNoise

    Examples
    --------
    >>> f = np.fft.fftfreq(64)
    >>> w2 = (2 * np.pi) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2)
    >>> bn = band_noise(np.ones((32, 32)), w2 * np.exp(-w2))  # white noise, a derivative band
    >>> round(bn.weight, 3), bn.haar == white_haar()
    (1.0, True)
    """
    b, n = spectrum.shape[0], response.shape[0]
    f = np.fft.fftfreq(n)
    idx = np.rint(f * b).astype(int) % b
    s = spectrum[np.ix_(idx, idx)]
    total = float(response.sum())
    weight = float((s * response).sum() / total) if total > 0 else 1.0
    peak = float(response.max() / response.mean()) if total > 0 else 1.0
    responses = [_haar_response(b, k) for k in (1, 2, 3)]
    gains = [float(np.mean(spectrum * r)) for r in responses]
    # Standard error of each level's detail energy: 2 / m for m independent coefficients
    # (m = (B / 2**k)**2 per block), fewer where correlation couples them (effective degrees of
    # freedom from the spectrum under the level's response, relative to white noise's);
    # the 5 x 5 median of blocks then averages about 25 * 2 / pi of them.
    k = _haar_pair((gains[0], gains[1], gains[2]), _BLOCK) - 1
    var = 0.0
    for j in (k, k + 1):
        p, r = spectrum * responses[j], responses[j]
        coupling = (p.mean() ** 2 / (p**2).mean()) / (r.mean() ** 2 / (r**2).mean())
        dof = (b / 2 ** (j + 1)) ** 2 * coupling
        var += 2.0 * gains[j] ** 2 / max(dof, 1.0)
    error = float(np.sqrt(var / (25 * 2 / np.pi)) / abs(gains[k] - gains[k + 1]))
    return BandNoise(weight, peak, (gains[0], gains[1], gains[2]), error)


def estimate_noise(image: np.ndarray, *, channel_axis: int | None = None) -> NoiseModel:
    """Fit a Poisson-Gaussian, spatially correlated, quantised noise model to one image.

    The image is cut into 32 px blocks (16 or 8 px for small images), each detrended by a
    least-squares plane. In each of twelve intensity bins the least varying fifth of the blocks
    is taken as flat (Foi et al. 2008 select smooth regions the same way); their median
    variance, corrected for the bias of taking the low tail, gives the noise variance at that
    intensity, and ``var = a * I + b`` is fitted over the bins. The flat blocks' averaged
    periodograms give the noise power spectrum. JPEG leaves flat blocks flat, so its
    compression error escapes that measure; where the image shows the 8 x 8 block grid, the
    steps across it bound the error (:func:`compression_variance`), and that bound floors the
    noise. Camera pipelines leave more error on intensity ramps than on flat areas of the same
    intensity; the excess is measured against the blocks' plane slope (``slopes`` and
    ``slope_variances``; see :meth:`NoiseModel.slope_variance`) away from edges; white noise
    gives none, or a few percent of its variance.

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
    img = as_float_image(arr, channel_axis=channel_axis)
    q = quantum(arr)
    b = _BLOCK
    while b > 8 and min(img.shape) < 4 * b:
        b //= 2
    # float64 in the one copy that cuts the blocks (the values are float32's exactly).
    blocks = _blocks(img, b, np.float64)
    if len(blocks) == 0:
        white = np.ones((b, b))
        return NoiseModel(0.0, q**2 / 12, q, white, (0.0, 0.0), 0)
    resid, means, varis, slopes = _detrend(blocks)
    # Intensity bins by quantile; the least varying blocks of each bin are the flat ones.
    sel = _flattest(means, varis)
    flat = resid[sel].reshape(-1, b, b)
    # Finest Haar diagonal detail per flat block (only those are used): smooth content and
    # sparse edges barely move its median, so it measures noise even where no block is truly
    # flat (Donoho & Johnstone 1994).
    hd = _haar_diagonal(flat).reshape(len(flat), -1)
    mad = np.median(np.abs(hd), axis=1)
    haar = (mad / 0.6745) ** 2
    # Under a grey level of noise the median of integer data's detail (steps of half a level)
    # is stuck at 0 or half a level; the mean square of the lower 90 % is not. There the
    # larger of the two, so that noise never reads low.
    haar = np.where(mad < q, np.maximum(haar, _trimmed_square(hd)), haar)
    edges = np.quantile(means, np.linspace(0, 1, _BINS + 1))
    which = np.clip(np.searchsorted(edges, means[sel], side="right") - 1, 0, _BINS - 1)
    bin_mean = [float(np.median(means[sel][which == k])) for k in np.unique(which)]
    bin_haar = [float(np.median(haar[which == k])) for k in np.unique(which)]
    # Spectrum of the flat blocks, each normalised by its own variance.
    spec = _periodogram(flat, varis[sel])
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
    jpeg = _compression(img)
    to_var = bias * min(max(seen, 1 / _MAX_SPECTRAL), 1.0)
    slopes, excess = _slope_excess(slopes, resid, means, to_var, max(q**2 / 12, jpeg))
    return NoiseModel(
        a, c, q, spec, corr, len(sel), levels[order], variances[order], jpeg, slopes, excess, b
    )


def _grid_excess(per_line: np.ndarray) -> float:
    """Excess mean squared difference on JPEG's grid lines over the other phases, from the
    mean squared difference of each line (line ``j`` joins pixels ``j`` and ``j + 1``; NaN
    where not measured); 0 where the grid does not show (see :func:`compression_variance`)."""
    n = len(per_line) // 16 * 16
    lines = np.nanmean(per_line[:n].reshape(-1, 2, 8), axis=0)  # (line mod 16 // 8, phase)
    phases = lines.mean(0)
    grid = int(np.argmax(phases))
    rest = float(np.median(np.delete(phases, grid)))
    ex = phases - rest
    halves = lines[:, grid] - rest
    found = (
        rest > 0
        and 0.05 * rest < ex[grid] < 4 * rest
        and ex[grid - 1] + ex[(grid + 1) % 8] < 1.5 * ex[grid]
        and halves.min() > 0.5 * halves.max()
    )
    return float(ex[grid]) if found else 0.0


def compression_variance(image: np.ndarray, *, channel_axis: int | None = None) -> float:
    """A lower bound on the per-pixel variance of JPEG's compression error (0 without a grid).

    JPEG quantises each 8 x 8 block's cosine coefficients on its own (Wallace 1992), so its
    error ``e`` is correlated within a block (lag-1 correlation ``rho``) but independent across
    a block border. The mean squared pixel difference across the grid lines, ``2 v``, then
    exceeds that at the other seven phases, ``2 v (1 - rho)``, by ``2 rho v <= 2 v``: half the
    excess bounds the error variance ``v`` from below, whatever ``rho`` (the scene's own detail
    is the same at every phase and cancels). Flat blocks come out exactly flat, so the noise
    measured in them misses this error, and in smooth (defocused) regions it would read as fine
    detail.

    The grid must show on both axes: 5-400 % above the median phase (far more is a sharp blocky
    scene's own edges), confined to the grid line (JPEG leaves the phases beside it at or below
    the median; a blurred blocky scene raises them with it: their mean excess must stay under
    3/4 of the grid's) and on every grid line alike (the lines at 8 and at 16 mod 16 within 2x,
    unlike a scene with a 16-px period). It is found at any phase, so a tile cut anywhere on the
    grid sees it. Images under 64 px a side give 0.

    Parameters
    ----------
    image : ndarray
        2-D image, or multichannel with ``channel_axis`` (combined to luminance).
    channel_axis : int, optional
        Axis of the colour channels.

    Returns
    -------
    float
        Variance in squared intensity units.

    Examples
    --------
    >>> import io, imageio.v3 as iio
    >>> from scipy import ndimage
    >>> from skimage import data
    >>> rng = np.random.default_rng(0)
    >>> soft = ndimage.gaussian_filter(data.camera() * 1.0, 4) + rng.normal(0, 3, (512, 512))
    >>> img = np.clip(soft, 0, 255).astype(np.uint8)
    >>> buf = io.BytesIO(); iio.imwrite(buf, img, extension=".jpg", quality=75)
    >>> jpeg = iio.imread(buf.getvalue(), extension=".jpg")  # error variance 8.0
    >>> compression_variance(img), 2.0 < compression_variance(jpeg) < 8.0
    (0.0, True)
    """
    img = as_float_image(np.asarray(image), channel_axis=channel_axis)
    return _compression(img)


def _compression(img: np.ndarray) -> float:
    """:func:`compression_variance` of a 2-D float image."""
    if min(img.shape) < 64:
        return 0.0
    excess = []
    for axis in (0, 1):
        d = np.diff(img.astype(np.float32, copy=False), axis=axis)
        excess.append(_grid_excess(np.square(d, out=d).mean(axis=1 - axis, dtype=np.float64)))
        if not excess[-1]:
            return 0.0
    return float(np.mean(excess)) / 2


def _block_compression(blocks: np.ndarray) -> float:
    """:func:`compression_variance` from (n, b, b) blocks cut from the image at multiples of
    32 px (so every block sees the grid at the image's phase), such as a regular sample; 0 for
    other block sizes."""
    b = blocks.shape[-1]
    # The grid test compares each phase's two halves of a 16-px period; a block of 16 px
    # measures only one half of the phase that crosses between blocks, so it takes 32.
    # On 16 blocks (a 128-px image) texture alone put one phase 5 % above the rest; ask for 64.
    if b % 32 or len(blocks) < 64:
        return 0.0
    excess = []
    for axis in (1, 2):
        d = np.diff(blocks, axis=axis)
        per_line = np.square(d).mean(axis=(0, 3 - axis))
        excess.append(_grid_excess(np.append(per_line, np.nan)))  # no line across blocks
        if not excess[-1]:
            return 0.0
    return float(np.mean(excess)) / 2


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


def noise_level(image: np.ndarray) -> float:
    """One global noise standard deviation, for regularising a deconvolution: the white-noise
    level of :func:`haar_sigma`, never below the standard deviation of JPEG's compression error
    (:func:`compression_variance`), which the finest detail of a JPEG does not show.

    Examples
    --------
    >>> img = np.random.default_rng(0).normal(50, 3, (256, 256))
    >>> noise_level(img) == haar_sigma(img)  # no block grid: the Haar level
    True
    """
    img = np.asarray(image)
    return max(haar_sigma(img), float(np.sqrt(compression_variance(img))))


def _block_noise(blocks: np.ndarray, haar: tuple[float, float, float]) -> np.ndarray:
    """Two-level noise variance of each of the (..., b, b) blocks, unsmoothed (see
    :func:`local_noise_variance`)."""
    lead = blocks.shape[:-2]

    def detail(x: np.ndarray) -> np.ndarray:
        return _trimmed_square(_haar_diagonal(x).reshape(*lead, -1))

    def halve(x: np.ndarray) -> np.ndarray:
        m = x.shape[-1] // 2
        return x.reshape(*lead, m, 2, m, 2).mean(axis=(-3, -1))

    g1, g2, g3 = haar
    sigma = (0,) * len(lead) + (_SMOOTH, _SMOOTH)
    x = blocks - ndi.gaussian_filter(blocks, sigma, mode="reflect")
    half = halve(x)
    if _haar_pair(haar, blocks.shape[-1]) == 2:
        n = (detail(half) - detail(halve(half))) / (g2 - g3)
    else:
        n = (detail(x) - detail(half)) / (g1 - g2)
    return np.maximum(n, 0.0)


def noise_floor(
    image: np.ndarray, *, haar: tuple[float, float, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Least noise variance at each intensity: the median two-level block estimate of
    :func:`local_noise_variance` in each of twelve intensity bins.

    The two-level estimate is a lower bound where a block's content is smoother than
    scale-invariant texture, as real optics make it: a block next to an edge or on shading can
    read far less noise than it holds. Noise of one intensity is alike across most of an
    image, so the median over the blocks of that intensity bounds each block from below. No
    bin reads less than JPEG's compression error (:func:`compression_variance`, from the same
    blocks). Blocks are taken on a regular sample of at most 2048, as in :func:`noise_spectrum`.

    Returns
    -------
    levels, variances : ndarray of float64
        Median block intensity and noise variance of each bin, by increasing intensity; empty
        for an image smaller than one block.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> img = np.linspace(0, 200, 256)[None, :] + rng.normal(0, 3, (256, 256))
    >>> levels, variances = noise_floor(img)
    >>> bool(np.all((variances > 7) & (variances < 11)))
    True
    """
    img = np.asarray(image, np.float64)
    b = _BLOCK
    h, w = img.shape[0] // b, img.shape[1] // b
    if h < 1 or w < 1:
        return np.zeros(0), np.zeros(0)
    stride = max(1, int(np.ceil(np.sqrt(h * w / _SPECTRUM_BLOCKS))))
    grid = img[: h * b, : w * b].reshape(h, b, w, b)[::stride, :, ::stride]
    blocks = grid.transpose(0, 2, 1, 3).reshape(-1, b, b)
    n = _block_noise(blocks, white_haar() if haar is None else haar)
    means = blocks.mean(axis=(1, 2))
    edges = np.quantile(means, np.linspace(0, 1, _BINS + 1))
    which = np.clip(np.searchsorted(edges, means, side="right") - 1, 0, _BINS - 1)
    bins = np.unique(which)
    levels = np.array([np.median(means[which == k]) for k in bins])
    variances = np.array([np.median(n[which == k]) for k in bins])
    # JPEG's compression error is noise that the finest detail of flat blocks does not show.
    return levels, np.maximum(variances, _block_compression(blocks))


def local_noise_variance(
    image: np.ndarray,
    *,
    block: int = _BLOCK,
    haar: tuple[float, float, float] | None = None,
    floor: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Per-pixel noise variance, measured in blocks, that texture does not inflate.

    Noise is not always a function of intensity alone: different materials under one beam give
    regions of one brightness different noise. So each ``block`` px block measures its own, from
    the Haar diagonal detail energy at two successive levels, ``d1`` on the image and ``d2`` on
    its 2 x 2 block means (mean squares with the largest tenth trimmed), once each block's
    content smoother than a Gaussian of sigma 2 px is removed (smooth shading would raise the
    coarser level and read as less noise). Noise of variance ``n`` gives ``d1 = n g1`` and
    ``d2 = n g2``, where ``g1, g2`` follow from its power spectrum (``haar``, from
    :func:`band_noise`; :func:`white_haar` for white noise); scale-invariant texture
    gives the same detail at both levels, and smoother texture more at the coarser one. Hence
    ``n ≈ (d1 - d2) / (g1 - g2)``, clipped at 0: fine texture is not taken for noise, while
    noise on smooth content is measured in full. Noise correlated over about two pixels can
    have ``g1 ≈ g2``; the second and third levels are used instead where they tell noise from
    texture better. The last partial block of a row or column is measured on the block that
    ends at the image's edge.

    Parameters
    ----------
    image : ndarray
        2-D image.
    block : int, optional
        Block side in px.
    haar : tuple of float, optional
        Expected Haar detail energy of unit-variance noise at levels 1, 2 and 3; white noise's
        by default.
    floor : (levels, variances), optional
        Least noise variance as a function of intensity (from :func:`noise_floor`), applied
        to each block at its mean intensity.

    Returns
    -------
    ndarray of float64
        The image's shape.

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
    # A partial last row/column of blocks is measured on the block ending at the image's edge.
    if img.shape[0] > h * b:
        img = np.concatenate([img[: h * b], img[-b:]], axis=0)
    if img.shape[1] > w * b:
        img = np.concatenate([img[:, : w * b], img[:, -b:]], axis=1)
    nh, nw = img.shape[0] // b, img.shape[1] // b

    blocks = _blocks(img, b).reshape(nh, nw, b, b)
    n = _block_noise(blocks, white_haar() if haar is None else haar)
    n = ndi.median_filter(n, size=5, mode="nearest")
    if floor is not None:
        levels, variances = floor
        n = np.maximum(n, np.interp(blocks.mean(axis=(2, 3)), levels, variances))
    rows = np.minimum(np.arange(image.shape[0]) // b, nh - 1)
    cols = np.minimum(np.arange(image.shape[1]) // b, nw - 1)
    return n[np.ix_(rows, cols)]


def noise_variance_map(
    image: np.ndarray, *, spectral_weight: float | BandNoise = 1.0, step: float = 0.0
) -> np.ndarray:
    """Per-pixel noise variance for a band-pass measure: :func:`local_noise_variance` times the
    band's spectral weight, never below the quantisation variance ``step**2 / 12``.

    Parameters
    ----------
    image : ndarray
        2-D image.
    spectral_weight : float or BandNoise, optional
        The band's spectral weight (:meth:`NoiseModel.spectral_weight`), with noise taken as
        white when measuring it; or a :class:`BandNoise` from :func:`band_noise`, whose noise
        spectrum also tells correlated noise from texture, and whose ``peak`` bounds what a
        one-grey-level staircase puts in the band.
    step : float, optional
        One grey level (:func:`quantum`); 0 for continuous data.

    Returns
    -------
    ndarray of float32
        The image's shape.

    Examples
    --------
    >>> img = np.random.default_rng(0).normal(100, 2, (128, 128))
    >>> v = noise_variance_map(img, spectral_weight=1.0, step=1.0)
    >>> v.shape, 3 < float(np.median(v)) < 5
    ((128, 128), True)
    """
    if isinstance(spectral_weight, BandNoise):
        levels, variances = (np.asarray(v, np.float64) for v in spectral_weight.floor)
        floor_fn = (levels, variances) if len(levels) else None
        var = local_noise_variance(image, haar=spectral_weight.haar, floor=floor_fn)
        var *= spectral_weight.weight
        floor = step * step / 12.0 * spectral_weight.peak
    else:
        var = local_noise_variance(image) * float(spectral_weight)
        floor = step * step / 12.0
    return np.maximum(var, floor).astype(np.float32)
