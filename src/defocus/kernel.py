"""Blur-kernel (PSF) estimation: from a sharp/blurred pair, and blind from one blurred image.

:func:`estimate_kernel` solves for the kernel ``k`` in ``blurry = gain · (sharp ⊛ k) + offset``
on the *valid* region only (the pixels whose whole neighbourhood lies inside the sharp image),
so light that entered the blurred frame from outside it biases nothing, and no padding or
periodicity is assumed. :func:`fit_psf` explains a kernel by the parametric models of
:mod:`defocus.psf` and picks one by an information criterion; :func:`identify` estimates a disk
diameter or a Gaussian sigma from the power spectrum of one blurred image.

References
----------
.. [1] A. Beck and M. Teboulle, "A fast iterative shrinkage-thresholding algorithm for linear
   inverse problems", SIAM J. Imaging Sci. 2, 183–202 (2009).
.. [2] B. O'Donoghue and E. Candès, "Adaptive restart for accelerated gradient schemes",
   Found. Comput. Math. 15, 715–732 (2015).
.. [3] S. Cho and S. Lee, "Fast motion deblurring", ACM Trans. Graph. 28(5), 145 (2009)
   (kernel estimation on image derivatives).
.. [4] M. Cannon, "Blind deconvolution of spatially invariant image blurs with phase",
   IEEE Trans. ASSP 24, 58–63 (1976).
.. [5] J. Rugna and H. Konik, "Automatic blur detection for meta-data extraction in
   content-based retrieval context", Proc. SPIE 5304 (2004).
.. [6] G. Schwarz, "Estimating the dimension of a model", Ann. Stat. 6, 461–464 (1978).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft
import scipy.ndimage as ndi
import scipy.optimize
import scipy.signal

from . import psf as _psf
from ._array import as_float_image
from ._errors import BadInputError

__all__ = [
    "Kernel",
    "ModelFit",
    "PSFFit",
    "estimate_kernel",
    "fit_psf",
]

# Sizes tried when growing the support (each about 1.5× the last).
_SIZES = (9, 15, 23, 35, 53, 79, 119, 179)
# The support is large enough when its outer ring holds less than this fraction of the energy.
_BORDER_ENERGY = 0.01


# --------------------------------------------------------------------------------------------
# pair estimation


@dataclass(frozen=True)
class Kernel:
    """A kernel estimated from a sharp/blurred pair.

    Attributes
    ----------
    kernel : ndarray
        Non-negative weights summing to 1, shape (M, M); (M, M, C) for colour, one kernel per
        channel along the last axis. Convolving ``sharp`` with it (after ``shift``) and applying
        ``gain`` and ``offset`` reproduces ``blurry``.
    sigma : float
        Blur sigma in pixels (per-axis standard deviation of the kernel, :func:`psf.moments`;
        for colour, of the channel-mean kernel).
    shift : (float, float)
        Displacement (dy, dx) of ``blurry`` relative to ``sharp`` found by registration and
        removed before estimation (zero when ``align=False``).
    gain, offset : float or ndarray
        Intensity mapping ``blurry ≈ gain · (sharp ⊛ kernel) + offset`` (per channel for colour).
    residual : float or ndarray
        RMS of the fit's residual on the valid region, in ``blurry``'s intensity units.
    noise : float
        Noise standard deviation of ``blurry`` used to set the regularisation.
    """

    kernel: np.ndarray
    sigma: float
    shift: tuple[float, float]
    gain: float | np.ndarray
    offset: float | np.ndarray
    residual: float | np.ndarray
    noise: float

    def to_dict(self) -> dict[str, Any]:
        """Summary for JSON (the kernel array itself is left out)."""
        m = _psf.moments(self.kernel if self.kernel.ndim == 2 else self.kernel.mean(axis=-1))
        return {
            "shape": list(self.kernel.shape),
            "sigma_px": self.sigma,
            "sigma_y_px": m.sigma_y,
            "sigma_x_px": m.sigma_x,
            "centroid": list(m.centroid),
            "shift": list(self.shift),
            "gain": np.asarray(self.gain).tolist(),
            "offset": np.asarray(self.offset).tolist(),
            "residual_rms": np.asarray(self.residual).tolist(),
            "noise": self.noise,
        }


class _ValidConvolution:
    """``h ↦ valid(image ⊛ h)`` for several images of one shape, by FFT, and its adjoint.

    A circular convolution of the image with the zero-padded kernel has no wrap-around at the
    valid outputs, so one FFT of each image serves every iteration.
    """

    def __init__(self, images: Sequence[np.ndarray], m: int) -> None:
        h, w = images[0].shape
        self.shape = (scipy.fft.next_fast_len(h, real=True), scipy.fft.next_fast_len(w, real=True))
        self.valid = (slice(m - 1, h), slice(m - 1, w))
        self.spectra = [scipy.fft.rfft2(im, s=self.shape) for im in images]
        # The adjoint (a correlation) puts kernel tap j at circular index j - (m - 1).
        iy = (np.arange(m) - (m - 1)) % self.shape[0]
        ix = (np.arange(m) - (m - 1)) % self.shape[1]
        self._taps = np.ix_(iy, ix)
        self.lipschitz = float(sum(np.abs(s) ** 2 for s in self.spectra).max())

    def forward(self, k: np.ndarray) -> list[np.ndarray]:
        kf = scipy.fft.rfft2(k, s=self.shape)
        return [scipy.fft.irfft2(s * kf, s=self.shape)[self.valid] for s in self.spectra]

    def adjoint(self, residuals: Sequence[np.ndarray]) -> np.ndarray:
        acc = sum(
            np.conj(s) * scipy.fft.rfft2(r, s=self.shape)
            for s, r in zip(self.spectra, residuals, strict=True)
        )
        return scipy.fft.irfft2(acc, s=self.shape)[self._taps]


def _differences(a: np.ndarray) -> list[np.ndarray]:
    """Forward differences along x and y, both cropped to (H-1, W-1).

    Valid convolution commutes with them, so the kernel is fitted on derivatives [3]_: that
    removes the offset and whitens the image spectrum, which makes FISTA converge in a few
    hundred steps instead of thousands (at some cost in noise weighting).
    """
    return [a[1:, 1:] - a[1:, :-1], a[1:, 1:] - a[:-1, 1:]]


def _neg_laplacian(k: np.ndarray) -> np.ndarray:
    """DᵀD k for forward differences with zeros outside the support (the gradient penalty)."""
    return -ndi.laplace(k, mode="constant")


def _grad_energy(k: np.ndarray) -> float:
    return float(np.vdot(k, _neg_laplacian(k)))


def _fista(
    op: _ValidConvolution,
    data: Sequence[np.ndarray],
    lam: float,
    h0: np.ndarray,
    *,
    max_iter: int,
    tol: float = 1e-6,
) -> np.ndarray:
    """Minimise ½‖A h − d‖² + ½ λ ‖∇h‖² over h ≥ 0 by FISTA [1]_ with adaptive restart [2]_."""
    step = 1.0 / (op.lipschitz + 8.0 * lam)  # ‖DᵀD‖ ≤ 8 in 2-D
    h = np.maximum(h0, 0.0)
    z, t = h.copy(), 1.0
    for _ in range(max_iter):
        res = [a - d for a, d in zip(op.forward(z), data, strict=True)]
        grad = op.adjoint(res) + lam * _neg_laplacian(z)
        h_new = np.maximum(z - step * grad, 0.0)
        change = np.linalg.norm(h_new - h)
        if np.vdot(z - h_new, h_new - h) > 0:  # the momentum points uphill: restart
            t = 1.0
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        z = h_new + ((t - 1.0) / t_new) * (h_new - h)
        h, t = h_new, t_new
        if change <= tol * max(np.linalg.norm(h), 1e-30):
            break
    return h


def _noise_sigma(image: np.ndarray) -> float:
    """Noise std from the finest diagonal wavelet band (median absolute deviation)."""
    d = (image[:-1:2, :-1:2] - image[1::2, :-1:2] - image[:-1:2, 1::2] + image[1::2, 1::2]) / 2
    return float(np.median(np.abs(d)) / 0.6745)


def _solve(
    sharp: np.ndarray, blurry: np.ndarray, m: int, noise: float, h0: np.ndarray | None
) -> tuple[np.ndarray, float, int]:
    """Scaled kernel h = gain · k of side m (odd) for a registered pair.

    Also returns the residual sum of squares and the number of equations (for the size choice).
    """
    half = m // 2
    data = _differences(blurry[half : blurry.shape[0] - half, half : blurry.shape[1] - half])
    op = _ValidConvolution(_differences(sharp), m)
    n = sum(d.size for d in data)
    if h0 is None:
        h0 = np.full((m, m), float(np.std(blurry) / max(np.std(sharp), 1e-30)) / m**2)
    # Empirical-Bayes λ = σ²/s: σ² the noise variance of the differences (2σ² for white noise),
    # s the per-component variance of the kernel's gradient under a Gaussian prior. Start from
    # the measured noise and the pilot, then re-estimate both from the fit.
    lam = 2 * noise**2 * 2 * m * m / max(_grad_energy(h0), 1e-30)
    for max_iter in (150, 400):
        h0 = _fista(op, data, lam, h0, max_iter=max_iter)
        rss = sum(float(np.sum((f - d) ** 2)) for f, d in zip(op.forward(h0), data, strict=True))
        var = max(rss / n, 0.5 * noise**2)
        lam = var * 2 * m * m / max(_grad_energy(h0), 1e-30)
    return h0, rss, n


def _border_fraction(k: np.ndarray) -> float:
    band = max(1, k.shape[0] // 10)
    inner = k[band:-band, band:-band].sum()
    total = k.sum()
    return float((total - inner) / total) if total > 0 else 1.0


def _integer_shift(sharp: np.ndarray, blurry: np.ndarray) -> tuple[int, int]:
    from skimage.registration import phase_cross_correlation

    shift, _, _ = phase_cross_correlation(sharp, blurry, normalization=None)
    return -int(shift[0]), -int(shift[1])


def _crop_pair(
    x: np.ndarray, y: np.ndarray, shift: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Overlap of the pair when ``y`` is ``x`` displaced by ``shift`` (integer)."""
    dy, dx = shift
    h, w = x.shape[:2]
    xs = x[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    ys = y[max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)]
    return xs, ys


def _unshift(image: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """Move ``image`` by −shift with Fourier interpolation (reflect-padded against wrap)."""
    pad = 16
    padded = np.pad(image, pad, mode="reflect")
    moved = ndi.fourier_shift(scipy.fft.fft2(padded), (-shift[0], -shift[1]))
    return scipy.fft.ifft2(moved).real[pad:-pad, pad:-pad]


def _centroid_offset(h: np.ndarray) -> tuple[float, float]:
    cy, cx = _psf.moments(h).centroid
    c = (h.shape[0] - 1) / 2
    return cy - c, cx - c


def _channels(image: Any, channel_axis: int | None, name: str) -> np.ndarray:
    arr = np.asarray(image)
    if channel_axis is None:
        return as_float_image(arr, allow_constant=False, name=name).astype(np.float64)[..., None]
    arr = np.moveaxis(arr, channel_axis, -1)
    as_float_image(arr, channel_axis=-1, allow_constant=False, name=name)
    return arr.astype(np.float64)


def estimate_kernel(
    sharp: Any,
    blurry: Any,
    *,
    size: int | None = None,
    channel_axis: int | None = None,
    align: bool = True,
    noise: float | None = None,
    max_size: int | None = None,
) -> Kernel:
    """Estimate the blur kernel that turns ``sharp`` into ``blurry``.

    The model is ``blurry = gain · (sharp ⊛ k) + offset + noise`` on the valid region (no
    padding or periodicity assumed). On image derivatives [3]_ it solves for ``h = gain · k``

    ``min ½‖valid(∇sharp ⊛ h) − ∇blurry‖² + ½ λ ‖∇h‖²  subject to h ≥ 0``

    by accelerated projected gradient (FISTA [1]_ with adaptive restart [2]_), each step two
    FFT convolutions; then ``gain = Σh``, ``k = h / gain`` and the offset follows by least
    squares. λ is set automatically from the noise level and the kernel's own smoothness
    (empirical Bayes, re-estimated from the fit).

    Parameters
    ----------
    sharp, blurry : ndarray
        The pair, of one shape: 2-D greyscale, or with a channel axis.
    size : int, optional
        Kernel side in pixels (odd). Default: grow the support through 9, 15, 23, 35, ...
        until its outer tenth holds less than 1 % of the energy.
    channel_axis : int, optional
        Axis of colour channels; one kernel is estimated per channel (with the size and
        registration found on the channel mean).
    align : bool
        Register the pair to sub-pixel accuracy (phase correlation) and remove the shift
        first. Without it, any misregistration stays in the kernel as an offset centroid.
    noise : float, optional
        Noise standard deviation of ``blurry`` in its intensity units (default: estimated
        from its finest wavelet band).
    max_size : int, optional
        Largest side tried by the automatic search (default: a third of the smaller image
        side).

    Returns
    -------
    Kernel

    Raises
    ------
    BadInputError
        If the two images differ in shape, are constant or non-finite, or are too small
        for the kernel.

    Examples
    --------
    >>> from skimage import data
    >>> from defocus.psf import disk
    >>> from defocus.synth import blur
    >>> sharp = data.camera()[100:228, 200:328].astype(float)
    >>> true = disk(4.0, shape=11)
    >>> est = estimate_kernel(sharp, blur(sharp, true), size=11)
    >>> est.kernel.shape, bool(np.linalg.norm(est.kernel - true) < 0.05 * np.linalg.norm(true))
    ((11, 11), True)
    >>> round(est.sigma, 1), round(float(est.gain), 3)
    (2.0, 1.0)
    """
    x = _channels(sharp, channel_axis, "sharp")
    y = _channels(blurry, channel_axis, "blurry")
    if x.shape != y.shape:
        raise BadInputError(
            f"sharp and blurry differ in shape: {x.shape[:2]} vs {y.shape[:2]}"
            + (f" ({x.shape[2]} vs {y.shape[2]} channels)" if x.shape[2] != y.shape[2] else "")
        )
    if size is not None:
        size = int(size)
        if size < 1 or size % 2 == 0:
            raise BadInputError(f"kernel size must be a positive odd integer, got {size}")
    shift = (0.0, 0.0)
    if align:
        whole = _integer_shift(x.mean(axis=-1), y.mean(axis=-1))
        x, y = _crop_pair(x, y, whole)
        shift = (float(whole[0]), float(whole[1]))
    shortest = min(x.shape[:2])
    limit = size if size is not None else (max_size or (shortest + 1) // 3)
    limit -= 1 - limit % 2
    # At least as many valid equations as unknowns, and a valid region of 8 px or more.
    if limit < 1 or shortest - limit + 1 < max(8, limit):
        need = 2 * max(limit, 1) - 1
        raise BadInputError(
            f"images of {x.shape[0]}x{x.shape[1]} px (after alignment) are too small for a "
            f"{limit}x{limit} kernel; give at least {need} px per side"
        )
    xs, ys = x.mean(axis=-1), y.mean(axis=-1)
    sigma_n = _noise_sigma(ys) if noise is None else _psf._positive("noise", noise)

    if size is None:
        # Grow the support until its border is empty, or until a larger one no longer pays
        # for its extra unknowns (Akaike's criterion): what it adds is noise, not kernel.
        h, best = None, math.inf
        for m in [s for s in _SIZES if s < limit] + [limit]:
            start = None if h is None else np.pad(h, (m - len(h)) // 2)
            grown, rss, n = _solve(xs, ys, m, sigma_n, start)
            aic = n * math.log(max(rss, 1e-300) / n) + 2 * m * m
            if aic > best:
                break
            h, best = grown, aic
            if _border_fraction(grown) < _BORDER_ENERGY:
                break
        size = h.shape[0]
    else:
        h = _solve(xs, ys, size, sigma_n, None)[0]

    if align:
        # Remove the sub-pixel misregistration that the kernel's centroid reveals.
        frac = _centroid_offset(h)
        if max(abs(frac[0]), abs(frac[1])) > 0.02:
            y = np.stack([_unshift(y[..., c], frac) for c in range(y.shape[-1])], axis=-1)
            x, y = x[2:-2, 2:-2], y[2:-2, 2:-2]  # reflection artefacts at the very edge
            shift = (shift[0] + frac[0], shift[1] + frac[1])

    kernels, gains, offsets, residuals = [], [], [], []
    half = size // 2
    for c in range(x.shape[-1]):
        xc, yc = x[..., c], y[..., c]
        hc = _solve(xc, yc, size, sigma_n, None)[0]
        gain = float(hc.sum())
        if not gain > 0:
            raise BadInputError("no positive kernel explains the pair; is blurry unrelated?")
        yv = yc[half : yc.shape[0] - half, half : yc.shape[1] - half]
        res = yv - scipy.signal.fftconvolve(xc, hc, mode="valid")
        offset = float(res.mean())
        kernels.append(hc / gain)
        gains.append(gain)
        offsets.append(offset)
        residuals.append(float(np.std(res)))

    kernel = np.stack(kernels, axis=-1)
    if channel_axis is None:
        kernel = kernel[..., 0]
        gain, offset, residual = gains[0], offsets[0], residuals[0]
    else:
        gain, offset, residual = np.array(gains), np.array(offsets), np.array(residuals)
    mean_k = kernel if kernel.ndim == 2 else kernel.mean(axis=-1)
    return Kernel(
        kernel=kernel,
        sigma=_psf.moments(mean_k).sigma,
        shift=shift,
        gain=gain,
        offset=offset,
        residual=residual,
        noise=sigma_n,
    )


# --------------------------------------------------------------------------------------------
# model fitting


@dataclass(frozen=True)
class ModelFit:
    """Least-squares fit of one PSF model to a kernel.

    Attributes
    ----------
    model : str
        Name in :data:`psf.MODELS`.
    params : dict
        Fitted parameters (pixels; motion angle in degrees).
    errors : dict
        One-standard-deviation uncertainties from the Jacobian, ``σ̂² (JᵀJ)⁻¹``.
    centre : (float, float)
        Fitted sub-pixel offset (dy, dx) of the PSF centre from the kernel's middle.
    rel_error : float
        ``‖model − kernel‖ / ‖kernel‖``.
    aic, bic : float
        Akaike and Bayesian (Schwarz [6]_) information criteria; lower is better.
    sigma : float
        The model's sigma in pixels (:func:`psf.sigma_of`).
    """

    model: str
    params: dict[str, float]
    errors: dict[str, float]
    centre: tuple[float, float]
    rel_error: float
    aic: float
    bic: float
    sigma: float


@dataclass(frozen=True)
class PSFFit:
    """Every model's fit to a kernel, and the one the Bayesian information criterion prefers."""

    model: str
    fits: dict[str, ModelFit]

    @property
    def best(self) -> ModelFit:
        return self.fits[self.model]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON summary: the chosen model first, then every fit."""
        out: dict[str, Any] = {"model": self.model, "sigma_px": self.best.sigma}
        out["params"] = self.best.params
        out["errors"] = self.best.errors
        out["fits"] = {
            name: {
                "params": f.params,
                "errors": f.errors,
                "centre": list(f.centre),
                "rel_error": f.rel_error,
                "aic": f.aic,
                "bic": f.bic,
                "sigma_px": f.sigma,
            }
            for name, f in self.fits.items()
        }
        return out


def _radial_peak(k: np.ndarray, centre: tuple[float, float]) -> float:
    y, x = np.indices(k.shape)
    r = np.rint(np.hypot(y - centre[0], x - centre[1])).astype(int).ravel()
    profile = np.bincount(r, weights=k.ravel()) / np.maximum(np.bincount(r), 1)
    return float(np.argmax(profile))


def _starts(model: str, k: np.ndarray) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Initial parameters from the kernel's moments, and their bounds."""
    m = max(k.shape)
    mo = _psf.moments(k)
    s = max(mo.sigma, 0.3)
    if model == "gauss":
        return {"sigma": s}, {"sigma": (1e-3, m)}
    if model == "disk":
        return {"radius": 2 * s}, {"radius": (0.1, m)}
    if model == "ring":
        r = max(_radial_peak(k, mo.centroid), 1.0)
        return (
            {"radius": r, "width": 2.0, "softness": 0.5},
            {"radius": (0.5, m), "width": (0.2, 2.0 * m), "softness": (0.0, m / 4)},
        )
    if model == "airy":
        return {"radius": max(s / 0.3443, 1.0)}, {"radius": (0.3, m)}
    if model == "defocus":
        return (
            {"radius": 2 * s, "airy_radius": 1.0},
            {"radius": (0.0, m), "airy_radius": (0.3, m)},
        )
    if model == "motion":
        vals, vecs = np.linalg.eigh(mo.covariance)
        dy, dx = vecs[:, 1]
        length = math.sqrt(max(12 * (vals[1] - 1 / 12), 1.0))
        return (
            {"length": length, "angle": math.degrees(math.atan2(-dy, dx))},
            {"length": (0.0, 2.0 * m), "angle": (-360.0, 360.0)},
        )
    raise BadInputError(f"fit_psf cannot fit {model!r}; choose from gauss, disk, ring, ...")


def _fit_one(model: str, k: np.ndarray) -> ModelFit:
    start, bounds = _starts(model, k)
    names = list(start)
    c = _psf.moments(k).centroid
    off0 = (c[0] - (k.shape[0] - 1) / 2, c[1] - (k.shape[1] - 1) / 2)
    lim = max(k.shape) / 4
    x0 = np.array([*(start[n] for n in names), *off0])
    lo = np.array([*(bounds[n][0] for n in names), -lim, -lim])
    hi = np.array([*(bounds[n][1] for n in names), lim, lim])
    x0 = np.clip(x0, lo + 1e-9, hi - 1e-9)

    def residual(p: np.ndarray) -> np.ndarray:
        params = dict(zip(names, (float(v) for v in p[:-2]), strict=True))
        try:
            r = _psf.render(model, shape=k.shape, offset=(p[-2], p[-1]), **params)
        except BadInputError:  # no energy inside the kernel: as bad as it gets
            r = np.zeros(k.shape)
        return (r - k).ravel()

    sol = scipy.optimize.least_squares(residual, x0, bounds=(lo, hi), x_scale="jac", max_nfev=60)
    n, p = k.size, sol.x.size
    rss = max(float(np.sum(sol.fun**2)), 1e-300)
    jtj = sol.jac.T @ sol.jac
    cov = rss / max(n - p, 1) * np.linalg.pinv(jtj)
    params = {nm: float(v) for nm, v in zip(names, sol.x[:-2], strict=True)}
    errors = {nm: float(math.sqrt(max(cov[i, i], 0.0))) for i, nm in enumerate(names)}
    return ModelFit(
        model=model,
        params=params,
        errors=errors,
        centre=(float(sol.x[-2]), float(sol.x[-1])),
        rel_error=math.sqrt(rss) / float(np.linalg.norm(k)),
        aic=n * math.log(rss / n) + 2 * p,
        bic=n * math.log(rss / n) + p * math.log(n),
        sigma=_psf.sigma_of(model, **params),
    )


def fit_psf(
    kernel: Any,
    *,
    models: Sequence[str] = ("gauss", "disk", "ring", "airy", "defocus", "motion"),
) -> PSFFit:
    """Fit PSF models to a kernel and say which explains it best: "what type of blur is this".

    Each model of :data:`psf.MODELS` is rendered at the kernel's shape with a free sub-pixel
    centre and fitted by bounded nonlinear least squares (trust-region reflective), starting
    from the kernel's moments. Uncertainties come from the Jacobian at the optimum; the model
    with the lowest Bayesian information criterion [6]_ is chosen, so extra parameters (the
    ring's width and softness) must earn their keep.

    Parameters
    ----------
    kernel : (M, N) ndarray
        Kernel to explain, e.g. ``estimate_kernel(...).kernel``; normalised to sum 1.
    models : sequence of str
        Models to try.

    Returns
    -------
    PSFFit
        ``.model`` the chosen name, ``.best`` its :class:`ModelFit`, ``.fits`` all of them.

    Examples
    --------
    >>> from defocus.psf import disk
    >>> fit = fit_psf(disk(6.0, shape=17), models=("gauss", "disk", "ring"))
    >>> fit.model, round(fit.best.params["radius"], 2), round(fit.best.sigma, 2)
    ('disk', 6.0, 3.0)
    """
    k = _psf.as_kernel(kernel)
    if k.ndim != 2:
        raise BadInputError(f"fit_psf needs a 2-D kernel, got shape {k.shape}")
    if not models:
        raise BadInputError("give at least one model to fit")
    fits = {name: _fit_one(name, k) for name in models}
    best = min(fits, key=lambda name: fits[name].bic)
    return PSFFit(model=best, fits=fits)
