"""Absolute per-pixel blur estimation: a dense map of sigma in pixels with a confidence.

Method
------
1. **Noise.** The white-noise level is estimated locally, in 32 px blocks, with Immerkaer's
   (1996) Laplacian-difference mask, made robust to texture by the median absolute response.
   Local, because a region with its own gain also has its own noise level.
2. **Multi-scale local energies.** On a block-mean pyramid, the scale-normalised gradient and
   second-derivative energies ``s²|∇L|²`` and ``s⁴|∂²L|²`` (Lindeberg 1998) are computed at
   11 scales ``s`` = 0.5 ... 16 px and averaged over a 4 px window; their log-curves are then
   also averaged over 12 and 32 px windows, weighted by the fraction of bands above the noise.
   By the semigroup property, blur by sigma shifts the scale axis, ``L_b(s) = L_f(√(s² + σ²))``, so
   the curves roll off below ``s ≈ σ`` whatever the texture. Their log-ratios are invariant to
   local gain and offset; the expected noise energy of each band is compared with the measured
   energy, so the model knows which bands are noise-dominated.
3. **Learned calibration.** A small MLP (two tanh layers of 64) maps the features, plus the PSF
   family, to ``log √(σ² + 0.4²)`` (smooth through the in-focus floor) and to the log-variance
   of its own error. It was trained by ``scripts/train_blurmap.py`` on synthetic blur (Gaussian
   and disk; uniform, smoothly varying and tilt ramps; 0-5 % noise) of scikit-image and
   matplotlib samples that the tests and benchmark do not use, and of procedural textures
   (dead leaves, grained dead leaves, thresholded fractal noise). This replaces the
   isolated-step-edge model of Zhuo & Sim (2011) and the re-blur scale choice of Karaali & Jung
   (2018), which underestimate large blur in dense texture where neighbouring edges merge.
4. **Dense fill.** The per-cell estimates are combined by confidence-weighted normalised
   convolution (Knutsson & Westin 1993) in log sigma, with a heavy-tailed multi-scale kernel:
   nearby measurements dominate, and flat regions take values propagated from far away with a
   lower confidence. Values are averaged, never rescaled, so absolute sigma is preserved.

References
----------
Immerkaer J. (1996) Fast noise variance estimation. CVIU 64(2).
Lindeberg T. (1998) Feature detection with automatic scale selection. IJCV 30(2).
Knutsson H., Westin C.-F. (1993) Normalized and differential convolution. CVPR.
Zhuo S., Sim T. (2011) Defocus map estimation from a single image. Pattern Recognition 44(9).
Karaali A., Jung C. R. (2018) Edge-based defocus blur estimation with adaptive scale selection.
IEEE TIP 27(3).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ._array import as_float_image
from ._errors import BadInputError
from .io import PixelSize

__all__ = ["PSF_FAMILIES", "BlurMap", "blur_map"]

#: PSF families the calibration knows; "auto" means the family is unknown.
PSF_FAMILIES = ("gauss", "disk", "auto")
_FAMILY_CODE = {"gauss": (1.0, 0.0), "disk": (0.0, 1.0), "auto": (0.0, 0.0)}

# Output grid: features and estimates live on cells of STRIDE x STRIDE pixels.
STRIDE = 4
# Scale ladder (px): half-octave steps from 0.5 to 16, computed on a block-mean pyramid.
SCALES = tuple(0.5 * 2 ** (k / 2) for k in range(11))
# The calibration predicts log(sqrt(sigma^2 + SIGMA_FLOOR^2)): smooth through the in-focus floor.
SIGMA_FLOOR = 0.4
MLP_KEYS = ("w1", "b1", "w2", "b2", "w3", "b3")


def _in_threads(fn: Callable[[int], None], items: Iterable[int]) -> None:
    """Run ``fn`` on every item, on up to four threads. scipy.ndimage filters and numpy's large
    array operations release the GIL, and every item writes its own slice of the output, so the
    result does not depend on the scheduling."""
    workers = min(4, os.cpu_count() or 1)
    if workers == 1:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(fn, items):  # re-raises the first error
            pass


def _block_mean(a: np.ndarray, f: int) -> np.ndarray:
    h, w = a.shape[0] // f, a.shape[1] // f
    return a[: h * f, : w * f].reshape(h, f, w, f).mean(axis=(1, 3), dtype=np.float32)


_NOISE_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
# Noise is estimated in blocks of this many pixels (a multiple of STRIDE).
_NOISE_BLOCK = 32


def _noise_sigma(img: np.ndarray) -> float:
    """Global noise std: Immerkaer (1996) mask, made robust by the median absolute response."""
    sub = img[:: max(1, img.shape[0] // 2048)]
    r = ndi.correlate(sub, _NOISE_MASK, mode="reflect")[1:-1, 1:-1]
    # ||mask||_2 = 6, and 1.4826 * MAD is the std of Gaussian noise.
    return float(1.4826 * np.median(np.abs(r)) / 6.0)


def _noise_map(img: np.ndarray) -> np.ndarray:
    """Local noise std on the output grid: Immerkaer's estimate per block, median-smoothed.

    Local, so that a region with its own gain (and hence its own noise level) is not read as
    sharper than its neighbours. ``img`` must have sides divisible by the block size.
    """
    b = _NOISE_BLOCK
    r = np.abs(ndi.correlate(img, _NOISE_MASK, mode="reflect"))
    h, w = img.shape[0] // b, img.shape[1] // b
    blocks = r.reshape(h, b, w, b).transpose(0, 2, 1, 3).reshape(h, w, b * b)
    med = np.median(blocks, axis=-1) * np.float32(1.4826 / 6.0)
    med = ndi.median_filter(med, size=3, mode="nearest")
    k = b // STRIDE
    return np.repeat(np.repeat(med, k, axis=0), k, axis=1).astype(np.float32)


def _energies(img: np.ndarray) -> list[np.ndarray]:
    """Gradient and second-derivative energies at each scale, block-averaged to the output grid.

    Energies are scale-normalised (s^2 |grad|^2 and s^4 |H|^2, Lindeberg 1998), so a scale-free
    texture gives flat curves and blur shows as a roll-off below its sigma.
    """
    out = []
    level = img
    f = 1  # pixel pitch of the current pyramid level, in input px
    s_prev = 0.0
    for s in SCALES:
        if s / f > 1.2:
            # Content at this scale is far below the half-resolution Nyquist limit.
            level = _block_mean(level, 2)
            f *= 2
        inc = np.sqrt(s * s - s_prev * s_prev) / f
        level = ndi.gaussian_filter(level, inc, mode="reflect", truncate=3.0)
        s_prev = s
        gx = np.diff(level, axis=1, append=level[:, -1:])
        gy = np.diff(level, axis=0, append=level[-1:, :])
        g2 = gx * gx + gy * gy
        hx = np.diff(level, 2, axis=1, prepend=level[:, :1], append=level[:, -1:])
        hy = np.diff(level, 2, axis=0, prepend=level[:1, :], append=level[-1:, :])
        h2 = hx * hx + hy * hy
        for e, p in ((g2, 2), (h2, 4)):
            e *= np.float32((s / f) ** p)
            if f < STRIDE:
                e = _block_mean(e, STRIDE // f)
            elif f > STRIDE:
                e = ndi.zoom(e, f // STRIDE, order=1, grid_mode=True, mode="nearest")
            out.append(e)
    return out


def _pad16(img: np.ndarray) -> np.ndarray:
    m = _NOISE_BLOCK
    ph, pw = (-img.shape[0]) % m, (-img.shape[1]) % m
    return np.pad(img, ((0, ph), (0, pw)), mode="reflect") if ph or pw else img


# Local windows (std, px). Energies are averaged over the first; the wider ones average the
# resulting log-curves, weighted by how many bands stand above the noise. Averaging energies
# instead lets the sharpest (most energetic) part of a wide window dominate, which biased
# estimates low where blur varies within it; an unweighted average lets flat, noise-only cells
# dilute the textured ones.
WINDOWS = (4.0, 12.0, 32.0)


def _features(img: np.ndarray, noise_gain: np.ndarray, noise: float | None = None) -> np.ndarray:
    """Gain/offset-invariant features on the output grid, shape (n_features, h, w).

    ``noise`` is the noise std if known; otherwise it is estimated locally.
    """
    padded = _pad16(img)
    e = _energies(padded)
    nmap = _noise_map(padded) if noise is None else np.float32(noise)
    nvar = np.square(nmap, dtype=np.float32)
    tiny = np.float32(1e-6) * nvar + np.float32(1e-20)
    nb = len(e)
    # Written in place into one array: at 12 MP a concatenation would double the peak memory.
    out = np.empty((len(WINDOWS) * (2 * nb + 1) - 1, *e[0].shape), np.float32)
    win = WINDOWS[0]
    weight = np.zeros(e[0].shape, np.float32)
    for i, ei in enumerate(e):
        sm = ndi.gaussian_filter(ei, win / STRIDE, mode="reflect") + tiny
        above = np.clip(1.0 - np.float32(noise_gain[i]) * nvar / sm, 1e-3, 1.0)
        weight += above
        out[i] = np.log(sm)
        out[nb + i] = np.log(above)
    out[:nb] -= out[:nb].mean(axis=0, keepdims=True)
    weight = weight / np.float32(nb) + np.float32(1e-3)
    k = 2 * nb
    for wide in WINDOWS[1:]:
        extra = np.sqrt(wide * wide - win * win) / STRIDE
        norm = ndi.gaussian_filter(weight, extra, mode="reflect")

        def smooth(j: int, k: int = k, extra: float = extra, norm: np.ndarray = norm) -> None:
            out[k + j] = ndi.gaussian_filter(out[j] * weight, extra, mode="reflect") / norm

        _in_threads(smooth, range(2 * nb))
        out[k + 2 * nb] = norm
        k += 2 * nb + 1
    h, w = -(-img.shape[0] // STRIDE), -(-img.shape[1] // STRIDE)
    return out[:, :h, :w]


def noise_gain() -> np.ndarray:
    """Mean of each energy for unit-variance white noise (used to subtract the noise floor)."""
    rng = np.random.default_rng(0)
    e = _energies(rng.standard_normal((512, 512)).astype(np.float32))
    return np.array([float(a[8:-8, 8:-8].mean()) for a in e])


def _assemble(feats: np.ndarray, family: tuple[float, float]) -> np.ndarray:
    """Flatten (n_features, h, w) features to rows and append the PSF family code."""
    x = feats.reshape(feats.shape[0], -1).T
    fam = np.broadcast_to(np.asarray(family, np.float32), (x.shape[0], 2))
    return np.concatenate([x, fam], axis=1)


def _mlp(x: np.ndarray, model: dict, mu: np.ndarray, sd: np.ndarray):
    """Evaluate the calibration MLP: returns (mean, log variance) of log(sigma_eff)."""
    h = np.tanh(((x - mu) / sd).astype(np.float32) @ model["w1"] + model["b1"])
    h = np.tanh(h @ model["w2"] + model["b2"])
    o = h @ model["w3"] + model["b3"]
    return o[:, 0], o[:, 1]


# Cells per MLP batch: keeps the hidden activations in cache and the memory bounded.
_BATCH = 1 << 15


def _predict(feats: np.ndarray, family: tuple[float, float], cal: dict) -> tuple[np.ndarray, ...]:
    """Calibrated (mean, log variance) of log sigma_eff per cell, shape (h, w) each."""
    h, w = feats.shape[1:]
    mean = np.empty((h, w), np.float32)
    logvar = np.empty((h, w), np.float32)
    rows = max(1, _BATCH // w)

    def batch(r: int) -> None:
        m, lv = _mlp(_assemble(feats[:, r : r + rows], family), cal, cal["x_mean"], cal["x_std"])
        mean[r : r + rows] = m.reshape(-1, w)
        logvar[r : r + rows] = lv.reshape(-1, w)

    _in_threads(batch, range(0, h, rows))
    return mean, logvar


@functools.cache
def _calibration() -> dict[str, np.ndarray]:
    path = resources.files("defocus") / "data" / "blurmap_calibration.npz"
    with resources.as_file(path) as p, np.load(p) as z:
        return {k: z[k] for k in z.files}


# Pooled precision (1 / variance of log sigma) at which a pyramid level's local estimate is
# trusted half-way over the coarser fill.
_TRUST_PRECISION = 16.0
# Log-sigma standard error at which a pixel's confidence is one half.
_HALF_CONF_SD = 0.25
# Cells whose predicted log-sigma error exceeds this are left out of the sparse field.
_SPARSE_MAX_SD = 0.35


def _half(a: np.ndarray) -> np.ndarray:
    """2x2 block mean, padding odd sizes by edge replication."""
    p = ((0, a.shape[0] % 2), (0, a.shape[1] % 2))
    return _block_mean(np.pad(a, p, mode="edge"), 2)


def _fill(mean: np.ndarray, logvar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Confidence-weighted normalised convolution of log sigma; returns (filled, confidence).

    On a pyramid, each level gives a precision-weighted local mean (Knutsson & Westin 1993)
    over a neighbourhood twice as wide as the level below. Going from coarse to fine, a level
    replaces the coarser estimate in proportion to the evidence it holds, so well-measured
    regions keep their own values (no leakage across blur edges) while flat regions inherit
    values from the nearest measured ones.
    """
    prec = np.exp(-np.clip(logvar, -12.0, 12.0)).astype(np.float32)
    wsum, den = prec * mean, prec
    levels = []
    while True:
        d = ndi.gaussian_filter(den, 1.0, mode="reflect")
        m = ndi.gaussian_filter(wsum, 1.0, mode="reflect") / np.maximum(d, np.float32(1e-30))
        levels.append((m, d))
        if min(den.shape) <= 2:
            break
        wsum, den = _half(wsum), _half(den)
    filled = levels[-1][0]
    for m, d in reversed(levels[:-1]):
        up = ndi.zoom(filled, 2, order=1, grid_mode=True, mode="nearest", prefilter=False)
        a = d / (d + np.float32(_TRUST_PRECISION))
        filled = a * m + (1 - a) * up[: m.shape[0], : m.shape[1]]
    local = levels[0][1]
    conf = local / (local + np.float32(1.0 / _HALF_CONF_SD**2))
    return filled, conf


def _upsample(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling from the output grid (cell centres) to full resolution."""
    up = ndi.zoom(a, STRIDE, order=1, grid_mode=True, mode="nearest", prefilter=False)
    return up[: shape[0], : shape[1]]


def _as_pixel_size(pixel_size: float | PixelSize | None) -> PixelSize | None:
    if pixel_size is None or isinstance(pixel_size, PixelSize):
        return pixel_size
    try:
        value = float(pixel_size)
    except (TypeError, ValueError):
        raise BadInputError(
            f"pixel_size must be metres per pixel or a PixelSize, got {pixel_size!r}"
        ) from None
    return PixelSize(value, value, "m")


@dataclass(frozen=True, eq=False)
class BlurMap:
    """Per-pixel blur estimate.

    Attributes
    ----------
    sigma : (H, W) ndarray of float32
        Blur in pixels: the per-axis standard deviation of the local PSF. Dense, never NaN.
    confidence : (H, W) ndarray of float32
        In [0, 1]; low where ``sigma`` was propagated from elsewhere (flat regions).
    sparse : (h, w) ndarray of float32
        The measurements the dense map came from, one per ``stride`` x ``stride`` cell, NaN
        where a cell held too little structure to measure.
    sparse_confidence : (h, w) ndarray of float32
        Confidence of each measurement, in [0, 1].
    stride : int
        Cell size of the sparse grid, in pixels.
    noise_sigma : float
        Estimated standard deviation of the image noise, in input intensity units.
    psf : str
        PSF family the calibration assumed: "gauss", "disk" or "auto".
    pixel_size : PixelSize or None
        Physical size of a pixel, when known.
    """

    sigma: np.ndarray
    confidence: np.ndarray
    sparse: np.ndarray
    sparse_confidence: np.ndarray
    stride: int
    noise_sigma: float
    psf: str
    pixel_size: PixelSize | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.sigma.shape

    def to_parameter(self, kind: str | None = None) -> np.ndarray:
        """Convert sigma to a PSF model's natural parameter, in pixels.

        Parameters
        ----------
        kind : {"sigma", "radius", "diameter", "fwhm", "edge_width"}, optional
            ``radius``/``diameter`` of the uniform disk (R = 2 sigma), Gaussian ``fwhm``
            (2.3548 sigma) or 20-80 % ``edge_width`` of a Gaussian (1.683 sigma). Default:
            ``radius`` for a disk PSF, else ``sigma``.

        Examples
        --------
        >>> bm = blur_map(np.random.default_rng(0).random((64, 64)), psf="disk")
        >>> bool(np.allclose(bm.to_parameter(), 2 * bm.sigma))
        True
        """
        factors = {
            "sigma": 1.0,
            "radius": 2.0,
            "diameter": 4.0,
            "fwhm": 2.0 * np.sqrt(2.0 * np.log(2.0)),
            "edge_width": 1.683,
        }
        kind = kind or ("radius" if self.psf == "disk" else "sigma")
        if kind not in factors:
            raise BadInputError(f"unknown parameter {kind!r}; choose from {sorted(factors)}")
        return (self.sigma * np.float32(factors[kind])).astype(np.float32)

    def to_physical(self, unit: str = "µm", *, kind: str = "sigma") -> np.ndarray:
        """Sigma (or another parameter, see :meth:`to_parameter`) in a length unit.

        Uses the geometric mean of the x and y pixel sizes. Raises BadInputError when the
        pixel size is unknown.

        Examples
        --------
        >>> bm = blur_map(np.random.default_rng(0).random((64, 64)), pixel_size=2e-9)
        >>> bool(np.allclose(bm.to_physical("nm"), 2 * bm.sigma))
        True
        """
        if self.pixel_size is None:
            raise BadInputError("pixel size unknown: pass pixel_size= to blur_map")
        p = self.pixel_size.to(unit)
        return (self.to_parameter(kind) * np.float32(np.sqrt(p.x * p.y))).astype(np.float32)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary: confidence-weighted quantiles of sigma and the settings used."""
        w = self.confidence.ravel().astype(np.float64)
        s = self.sigma.ravel()
        order = np.argsort(s, kind="stable")
        cw = np.cumsum(w[order])
        q = {}
        for name, f in (("p10", 0.1), ("median", 0.5), ("p90", 0.9)):
            i = np.searchsorted(cw, f * cw[-1]) if cw[-1] > 0 else len(s) // 2
            q[name] = round(float(s[order[min(i, len(s) - 1)]]), 4)
        out: dict[str, Any] = {
            "unit": "px",
            "quantity": "sigma (per-axis PSF standard deviation)",
            "psf": self.psf,
            "shape": list(self.sigma.shape),
            "sigma": q,
            "mean_confidence": round(float(self.confidence.mean()), 4),
            "measured_fraction": round(float(np.isfinite(self.sparse).mean()), 4),
            "noise_sigma": float(f"{self.noise_sigma:.6g}"),
            "pixel_size": None if self.pixel_size is None else str(self.pixel_size),
        }
        return out

    to_dict = summary


def blur_map(
    image: np.ndarray,
    *,
    psf: str = "gauss",
    pixel_size: float | PixelSize | None = None,
    noise_sigma: float | None = None,
    channel_axis: int | None = None,
) -> BlurMap:
    """Estimate the blur sigma (px) at every pixel, with a confidence.

    Parameters
    ----------
    image : ndarray
        2-D greyscale, or multichannel with ``channel_axis``. Any integer or float dtype;
        intensities are not rescaled (the estimate is invariant to gain and offset).
    psf : {"gauss", "disk", "auto"}
        PSF family of the blur. ``"disk"`` is the geometric defocus of a camera (sigma = R/2);
        ``"gauss"`` suits SEM probes and microscopes. ``"auto"``: family unknown.
    pixel_size : float or PixelSize, optional
        Metres per pixel (float) or a :class:`defocus.io.PixelSize`, for
        :meth:`BlurMap.to_physical`.
    noise_sigma : float, optional
        Standard deviation of the white noise, in intensity units. Estimated if omitted.
    channel_axis : int, optional
        Axis of the colour channels; they are combined to luminance.

    Returns
    -------
    BlurMap
        Dense ``sigma`` and ``confidence`` (H, W), and the ``sparse`` cell measurements.

    Notes
    -----
    Sigma from about 0.5 to 12 px is measured; a perfectly sharp image reads close to 0.
    Flat regions carry no blur information: they are filled from the nearest measurements and
    get a low confidence. See the module docstring for the method and references.

    Examples
    --------
    >>> from scipy import ndimage as ndi
    >>> rng = np.random.default_rng(1)
    >>> sharp = ndi.zoom(rng.random((48, 48)), 4, order=0)  # blocky texture, sharp edges
    >>> est = blur_map(ndi.gaussian_filter(sharp, 3.0))
    >>> est.sigma.shape, est.sigma.dtype
    ((192, 192), dtype('float32'))
    >>> 2.0 < float(np.median(est.sigma)) < 4.0
    True
    """
    if psf not in PSF_FAMILIES:
        raise BadInputError(f"unknown psf {psf!r}; choose from {', '.join(PSF_FAMILIES)}")
    img = as_float_image(image, channel_axis=channel_axis, min_size=16, allow_constant=False)
    if noise_sigma is not None and not (np.isfinite(noise_sigma) and noise_sigma >= 0):
        raise BadInputError(f"noise_sigma must be a finite number >= 0, got {noise_sigma!r}")
    noise = _noise_sigma(img) if noise_sigma is None else float(noise_sigma)
    # Work relative to the image's spread: keeps float32 maths well scaled for any dtype.
    scale = float(np.std(img[:: max(1, img.shape[0] // 512)])) or 1.0
    img = img / np.float32(scale)
    cal = _calibration()
    local = None if noise_sigma is None else noise / scale
    feats = _features(img, cal["noise_gain"], local)
    mean, logvar = _predict(feats, _FAMILY_CODE[psf], cal)
    filled, conf = _fill(mean, logvar)
    floor2 = np.float32(cal["floor"]) ** 2

    def to_sigma(m: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(np.exp(2 * m) - floor2, 0)).astype(np.float32)

    sd = np.exp(0.5 * logvar)
    sparse = np.where(sd <= _SPARSE_MAX_SD, to_sigma(mean), np.float32(np.nan))
    sparse_conf = (1.0 / (1.0 + (sd / _HALF_CONF_SD) ** 2)).astype(np.float32)
    return BlurMap(
        sigma=to_sigma(_upsample(filled, img.shape)),
        confidence=np.clip(_upsample(conf, img.shape), 0, 1).astype(np.float32),
        sparse=sparse.astype(np.float32),
        sparse_confidence=sparse_conf,
        stride=STRIDE,
        noise_sigma=noise,
        psf=psf,
        pixel_size=_as_pixel_size(pixel_size),
    )
