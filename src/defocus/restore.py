"""Deconvolution with a known PSF, uniform or spatially varying, without boundary ringing.

Boundaries. A blurred image of a scene that extends beyond the frame is not a circular (nor a
zero-padded) convolution of anything inside the frame: the pixels near the border received
light from outside. Filters that assume one (:func:`skimage.restoration.wiener` is periodic,
:func:`skimage.restoration.richardson_lucy` zero-pads) ring at the borders. Here the observed
image is modelled as the *valid* part of a convolution, as in Almeida & Figueiredo [1]_: the
unknown image is larger than the frame by the kernel's size, lives on an FFT grid where it is
periodic, and only the observed window of its blurred version is compared with the data. The
pixels outside the window are estimated along with the rest, so nothing is assumed about them.

Methods (``method=``):

* ``"wiener"``: the linear minimum-mean-square-error estimate (the Wiener filter) under a
  stationary Gaussian prior whose power spectrum falls as 1/|f|² (natural images, [4]_), with
  the valid-region data term. Its normal equations are solved by conjugate gradients
  preconditioned with the ordinary (circulant) Wiener filter, which is exact away from the
  border, and started from the circulant Wiener estimate of a smooth periodic extension of
  the data (Liu & Jia [6]_), so eight iterations settle the border.
* ``"tv"``: total-variation regularised least squares, by the ADMM of [1]_, started from the
  Wiener estimate. Sharper edges and less noise than Wiener; several times slower.
* ``"rl"``: Richardson-Lucy with the boundary correction of Bertero & Boccacci [2]_ (the
  update is normalised by the blurred window mask), stopped by the discrepancy principle
  (when the residual reaches the noise level, [3]_). For photon-counting data.

The regularisation comes from the noise level (estimated from the finest wavelet detail and
JPEG's block grid unless given) and, for Wiener, from the image's own gradient power; nothing
needs hand tuning.

:func:`deblur_varying` undoes spatially varying blur described by a sigma map: the image is
deconvolved at a ladder of sigma levels, each level seeing only the pixels whose sigma is near
it (the others are unknown to it, as beyond a border), and the results are blended per pixel
between the two levels around the map's sigma. Depth edges thus get the right PSF on each
side. Optional overlapping tiles with a smooth partition of unity (Nagy & O'Leary [5]_) bound
the memory on large images.

References
----------
.. [1] M. S. C. Almeida and M. A. T. Figueiredo, "Deconvolving images with unknown boundaries
   using the alternating direction method of multipliers", IEEE Trans. Image Process. 22,
   3074–3086 (2013).
.. [2] M. Bertero and P. Boccacci, "A simple method for the reduction of boundary effects in
   the Richardson-Lucy approach to image deconvolution", Astron. Astrophys. 437, 369–374
   (2005).
.. [3] V. A. Morozov, "On the solution of functional equations by the method of
   regularization", Soviet Math. Dokl. 7, 414–417 (1966).
.. [4] D. J. Field, "Relations between the statistics of natural images and the response
   properties of cortical cells", J. Opt. Soc. Am. A 4, 2379–2394 (1987).
.. [5] J. G. Nagy and D. P. O'Leary, "Restoring images degraded by spatially variant blur",
   SIAM J. Sci. Comput. 19, 1063–1082 (1998).
.. [6] R. Liu and J. Jia, "Reducing boundary artifacts in image deconvolution", Proc. IEEE
   ICIP, 505–508 (2008).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
import scipy.fft

from . import psf as _psf
from ._array import (
    bbox,
    channels_last,
    check_magnitude,
    finish_channels,
    level_weights,
    saturated,
)
from ._compat import renamed_keywords
from ._errors import BadInputError
from .blurmap import BlurMap
from .noise import noise_level

__all__ = ["BOUNDARIES", "METHODS", "deblur", "deblur_varying"]

#: Deconvolution methods of :func:`deblur`.
METHODS = ("wiener", "tv", "rl")
#: Boundary models: the observed image is the valid part of a convolution, or periodic.
BOUNDARIES = ("valid", "periodic")

# Default iteration caps; each method also stops when it has converged.
_ITERATIONS = {"wiener": 8, "tv": 60, "rl": 200}
# Relative preconditioned-residual norm at which conjugate gradients stop.
_CG_TOL = 1e-2
# Wiener: the prior's gradient power is scaled by this. This and the TV constants below were
# chosen on moon, coins, gravel and text, which the benchmark does not use.
_WIENER_SCALE = 2.0
# TV weight tau = _TV_KAPPA * noise² / mean gradient magnitude (a Laplacian-prior MAP scale).
_TV_KAPPA = 0.15
# ADMM penalty, relative to the data term's weight of 1 (scale-free: the terms scale alike).
_TV_MU = 0.05
# deblur_varying: ratio between neighbouring sigma levels (1.2 and 1.3 restore alike; 1.5
# loses up to 1 dB on disk blur), and the sigma below which nothing is deconvolved. Chosen on
# moon, gravel and rocket with region maps, which the benchmark does not use.
_LEVEL_RATIO = 1.25
_SIGMA_FLOOR = 0.3

Progress = Callable[[int, int, str], None]

# Orthonormal opponent transform (rows: luminance, red-green, yellow-blue): white noise of one
# level in R, G and B stays white and of that level. Each opponent channel is restored with
# its own noise level and (Wiener) its own gradient prior; the chroma's prior is anchored on
# the data, so chroma that the noise hides is kept as observed rather than smoothed away or
# sharpened into fringes.
_OPPONENT = np.array(
    [
        [1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3)],
        [1 / math.sqrt(2), -1 / math.sqrt(2), 0.0],
        [1 / math.sqrt(6), 1 / math.sqrt(6), -2 / math.sqrt(6)],
    ]
)


# --------------------------------------------------------------------------------------------
# the observation model


class _Problem:
    """One channel's deconvolution problem on a periodic FFT grid.

    The latent image is periodic on ``shape``; its blurred version is observed in the window
    ``[0:H, 0:W]`` (``boundary="valid"``), or everywhere with ``shape == (H, W)``
    (``"periodic"``). ``observed`` (valid only) narrows the data to some pixels of the
    window; the others are unknown, like the margin. Spectra are real-FFT half planes.
    """

    def __init__(
        self,
        y: np.ndarray,
        kernel: np.ndarray,
        boundary: str,
        observed: np.ndarray | None = None,
    ) -> None:
        h, w = y.shape
        m, n = kernel.shape
        self.y = y
        self.dtype = y.dtype
        self.periodic = boundary == "periodic"
        self.observed = observed
        if self.periodic:
            self.shape = (h, w)
        else:  # room for the kernel's reach beyond both edges, rounded up to a fast size
            self.shape = (
                scipy.fft.next_fast_len(h + m - 1, real=True),
                scipy.fft.next_fast_len(w + n - 1, real=True),
            )
        if m > self.shape[0] or n > self.shape[1]:
            raise BadInputError(
                f"kernel {m}x{n} is larger than the {h}x{w} image; use boundary='valid'"
            )
        # Centre element ((m-1)//2, (n-1)//2) goes to [0, 0]: the convention of synth.blur.
        placed = np.zeros(self.shape, self.dtype)
        iy = (np.arange(m) - (m - 1) // 2) % self.shape[0]
        ix = (np.arange(n) - (n - 1) // 2) % self.shape[1]
        placed[np.ix_(iy, ix)] = kernel
        self.otf = self.rfft(placed)
        fy = scipy.fft.fftfreq(self.shape[0])[:, None]
        fx = scipy.fft.rfftfreq(self.shape[1])[None, :]
        # |D̂|² of the forward differences along both axes.
        self.d2 = (4 * np.sin(np.pi * fy) ** 2 + 4 * np.sin(np.pi * fx) ** 2).astype(self.dtype)
        self.window = (slice(0, h), slice(0, w))
        self.kernel_power = float(np.sum(kernel**2))
        self.mask: np.ndarray | None = None
        if observed is not None:
            self.mask = np.zeros(self.shape, self.dtype)
            self.mask[self.window] = observed

    def rfft(self, a: np.ndarray) -> np.ndarray:
        return scipy.fft.rfft2(a, s=self.shape, workers=-1)

    def irfft(self, a: np.ndarray) -> np.ndarray:
        """Inverse transform; it may overwrite its argument (callers pass temporaries)."""
        return scipy.fft.irfft2(a, s=self.shape, workers=-1, overwrite_x=True)

    def dot(self, a: np.ndarray, b: np.ndarray) -> float:
        """Real inner product of the full spectra (Parseval), from the half planes.

        Every column but the first (and the Nyquist column of an even width) stands for two.
        """
        total = 2 * np.vdot(a, b).real - np.vdot(a[:, 0], b[:, 0]).real
        if self.shape[1] % 2 == 0:
            total -= np.vdot(a[:, -1], b[:, -1]).real
        return float(total)

    def masked(self, a: np.ndarray) -> np.ndarray:
        """Zero everything outside the observed pixels (in place)."""
        if self.mask is not None:
            a *= self.mask
        elif not self.periodic:
            a[self.y.shape[0] :, :] = 0
            a[:, self.y.shape[1] :] = 0
        return a

    def embed(self, a: np.ndarray) -> np.ndarray:
        out = np.zeros(self.shape, self.dtype)
        out[self.window] = a
        return self.masked(out)

    def seen(self, a: np.ndarray) -> np.ndarray:
        """The observed pixels of a window-sized array, flattened (all of them by default)."""
        return a.ravel() if self.observed is None else a[self.observed]

    def extended(self) -> np.ndarray:
        """The data continued smoothly and periodically into the margin: a starting guess.

        Each margin row (then column) blends the last data row into the first with a cosine
        ramp, so the grid has no jump where it wraps round. The circulant Wiener filter of
        this extension is close to the valid-model solution, as in Liu & Jia [6]_, and the
        conjugate gradients need only a few steps to correct the border.
        """
        h, w = self.y.shape
        out = np.empty(self.shape, self.dtype)
        out[:h, :w] = self.y

        def ramp(pad: int) -> np.ndarray:
            t = np.arange(1, pad + 1) / (pad + 1)
            return (0.5 - 0.5 * np.cos(np.pi * t)).astype(self.dtype)

        t = ramp(self.shape[0] - h)[:, None]
        out[h:, :w] = (1 - t) * self.y[-1] + t * self.y[0]
        t = ramp(self.shape[1] - w)[None, :]
        out[:, w:] = (1 - t) * out[:, w - 1 : w] + t * out[:, :1]
        return out


def _gradient_power(y: np.ndarray, observed: np.ndarray | None = None) -> float:
    """Mean squared gradient (both components summed) over pairs of observed pixels."""
    gy = np.diff(y, axis=0)
    gx = np.diff(y, axis=1)
    if observed is not None:
        gy = gy[observed[1:] & observed[:-1]]
        gx = gx[observed[:, 1:] & observed[:, :-1]]
        if gy.size == 0 or gx.size == 0:
            return 0.0
    # vdot: one BLAS pass without a squared temporary (this runs on every full image).
    return float(np.vdot(gy, gy)) / gy.size + float(np.vdot(gx, gx)) / gx.size


def _wiener(
    prob: _Problem,
    sigma: float,
    iterations: int,
    report: Callable[[int, int], None],
    anchored: bool = False,
) -> np.ndarray:
    """LMMSE estimate on the whole grid (see the module notes).

    Prior: power spectrum ``c / |D̂|²``, for which ``c`` is the sharp image's mean squared
    gradient. Blurring multiplies the spectrum by ``|K̂|²`` and adds noise, so the data's mean
    squared gradient is ``c Σk² + 4σ²`` (Parseval), which gives ``c``.

    ``anchored``: the prior is put on the difference from the data (smoothly extended,
    :meth:`_Problem.extended`) instead of on the image, ``λ‖D(x − y)‖²``: where the data
    cannot support restoration the estimate stays as observed instead of being smoothed
    towards its mean. For chroma, whose detail is small beside the noise.
    """
    g = _gradient_power(prob.y, prob.observed)
    c = max(g - 4 * sigma**2, 1e-3 * g, 1e-30) / prob.kernel_power
    lam = _WIENER_SCALE * sigma**2 / c
    k = prob.otf
    kc = np.conj(k)
    lam_d2 = (lam * prob.d2).astype(prob.dtype)
    pre = (k.real**2 + k.imag**2 + lam_d2).astype(prob.dtype)
    pre = np.maximum(pre, np.finfo(prob.dtype).tiny)
    if prob.periodic:  # the model is circulant: the Wiener filter itself is the solution
        report(1, 1)
        yh = prob.rfft(prob.y)
        return prob.irfft((kc + lam_d2 if anchored else kc) * yh / pre)
    inv_pre = np.reciprocal(pre, out=pre)
    buf = np.empty_like(k)  # scratch for products, so the loop allocates only FFT outputs

    def normal(xh: np.ndarray) -> np.ndarray:  # (KᵀMᵀMK + λDᵀD) in the Fourier domain
        out = prob.rfft(prob.masked(prob.irfft(np.multiply(k, xh, out=buf))))
        out *= kc
        out += np.multiply(lam_d2, xh, out=buf)
        return out

    yh = prob.rfft(prob.extended())
    xh = (kc + lam_d2 if anchored else kc) * yh
    xh *= inv_pre
    # r = Kᵀ(Mᵀy − MKx) − λDᵀD(x − anchor), with one transform for both data terms.
    r = prob.embed(prob.y)
    r -= prob.masked(prob.irfft(np.multiply(k, xh, out=buf)))
    r = prob.rfft(r)
    r *= kc
    r -= np.multiply(lam_d2, xh - yh if anchored else xh, out=buf)
    del yh
    z = r * inv_pre
    p = z.copy()
    rz = rz0 = prob.dot(r, z)
    for it in range(iterations):
        if rz <= (_CG_TOL**2) * rz0:
            break
        ap = normal(p)
        alpha = rz / prob.dot(p, ap)
        xh += np.multiply(p, alpha, out=buf)
        r -= np.multiply(ap, alpha, out=buf)
        np.multiply(r, inv_pre, out=z)
        rz_new = prob.dot(r, z)
        p *= rz_new / rz
        p += z
        rz = rz_new
        report(it + 1, iterations)
    return prob.irfft(xh)


def _grad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Periodic forward differences (rows, columns)."""
    return np.roll(x, -1, 0) - x, np.roll(x, -1, 1) - x


def _grad_adjoint(gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
    return (np.roll(gy, 1, 0) - gy) + (np.roll(gx, 1, 1) - gx)


def _tv(
    prob: _Problem,
    sigma: float,
    x: np.ndarray,
    iterations: int,
    report: Callable[[int, int], None],
) -> np.ndarray:
    """min ½‖M K x − y‖² + τ TV(x) by ADMM with the splits v = Kx, u = ∇x [1]_.

    Every sub-problem is closed-form: x by one division in the Fourier domain, v per pixel
    (data inside the window, free outside), u by isotropic soft thresholding.
    """
    gy, gx = _grad(x)
    scale = float(np.mean(prob.seen(np.hypot(gy, gx)[prob.window]), dtype=np.float64))
    if scale == 0 or sigma == 0:
        return x
    tau = _TV_KAPPA * sigma**2 / scale
    mu = _TV_MU
    k = prob.otf
    den = mu * (k.real**2 + k.imag**2) + mu * prob.d2
    den = np.maximum(den, np.finfo(prob.dtype).tiny).astype(prob.dtype)
    mask = prob.masked(np.ones(prob.shape, prob.dtype))
    data = prob.embed(prob.y)
    kx = prob.irfft(k * prob.rfft(x))
    d1, dy, dx = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    for it in range(iterations):
        v = (data + mu * (kx + d1)) / (mask + mu)
        ay, ax = gy + dy, gx + dx
        mag = np.hypot(ay, ax)
        shrink = np.maximum(mag - tau / mu, 0) / np.maximum(mag, np.finfo(prob.dtype).tiny)
        uy, ux = ay * shrink, ax * shrink
        rhs = mu * np.conj(k) * prob.rfft(v - d1) + mu * prob.rfft(_grad_adjoint(uy - dy, ux - dx))
        xh = rhs / den
        x_new = prob.irfft(xh)
        kx = prob.irfft(k * xh)
        gy, gx = _grad(x_new)
        d1 += kx - v
        dy += gy - uy
        dx += gx - ux
        change = np.linalg.norm(x_new - x) / max(float(np.linalg.norm(x_new)), 1e-30)
        x = x_new
        report(it + 1, iterations)
        if change < 1e-4:
            break
    return x


def _rl(
    prob: _Problem, sigma: float, iterations: int, report: Callable[[int, int], None]
) -> np.ndarray:
    """Richardson-Lucy with the boundary normalisation of [2]_ and a discrepancy stop [3]_."""
    k = prob.otf
    # RL needs positive data: shift by a constant, which blurring (sum 1) leaves unchanged.
    offset = max(0.0, -float(prob.y.min())) + 1e-3 * max(float(np.ptp(prob.y)), 1e-30)
    data = prob.embed(prob.y + offset)
    mask = prob.masked(np.ones(prob.shape, prob.dtype))
    norm = prob.irfft(np.conj(k) * prob.rfft(mask))
    seen = norm > 1e-3  # latent pixels that reach the window at all
    norm = np.where(seen, norm, 1).astype(prob.dtype)
    values = prob.seen(data[prob.window])
    x = np.where(seen, float(np.mean(values)), 0).astype(prob.dtype)
    floor = 1e-6 * float(values.max())
    target = sigma**2 * values.size
    for it in range(iterations):
        kx = prob.irfft(k * prob.rfft(x))
        res = prob.seen((kx - data)[prob.window])
        if float(np.vdot(res, res)) <= target:
            break
        ratio = prob.masked(data / np.maximum(kx, floor))
        x = np.where(seen, x * prob.irfft(np.conj(k) * prob.rfft(ratio)) / norm, 0)
        x = np.maximum(x, 0).astype(prob.dtype)
        report(it + 1, iterations)
    return x - offset


# --------------------------------------------------------------------------------------------
# public functions


def _as_kernel(psf: Any) -> np.ndarray:
    """A kernel array, or ``(model, params)`` rendered by :func:`defocus.psf.render`."""
    if isinstance(psf, tuple) and len(psf) == 2 and isinstance(psf[0], str):
        model, params = psf
        if not isinstance(params, Mapping):
            raise BadInputError("a PSF spec is (model, {parameter: value}), e.g. ('disk', {...})")
        return _psf.render(model, **params)
    return _psf.as_kernel(psf)


def _check(method: str, boundary: str, iterations: int | None) -> int:
    if method not in METHODS:
        raise BadInputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if boundary not in BOUNDARIES:
        raise BadInputError(f"boundary must be one of {', '.join(BOUNDARIES)}, got {boundary!r}")
    if iterations is None:
        return _ITERATIONS[method]
    if int(iterations) != iterations or iterations < 1:
        raise BadInputError(f"iterations must be a positive integer, got {iterations!r}")
    return int(iterations)


def _quantisation_noise(channel: np.ndarray, in_dtype: np.dtype, scale: float) -> float:
    """Std of the rounding noise, in the units of the (scaled) channel: a step q gives q/√12.

    The step is 1 for integer data (``1 / scale`` once scaled). Float data holding few
    distinct values (an 8-bit image divided by 255) has the smallest gap between them as its
    step; other float data only the working precision.
    """
    if np.issubdtype(in_dtype, np.integer):
        return 1 / (math.sqrt(12) * scale)
    values = np.unique(channel.ravel()[:: max(1, channel.size // 100_000)])
    if 1 < values.size <= 4096:
        return float(np.diff(values).min()) / math.sqrt(12)
    rel = 1e-7 if channel.dtype == np.float64 else 3e-5
    return rel * float(np.abs(channel).max())


def _noise_levels(
    data: np.ndarray, noise_sigma: Any, in_dtype: np.dtype, scales: np.ndarray
) -> list[float]:
    """One noise std per channel of the scaled data: estimated, or the given value(s), raised
    to a floor.

    Given values are in the input's intensity units and are scaled like their channel. No
    image is cleaner than its quantisation, and a zero would leave the inverse problem
    singular at the zeros of the PSF's transfer function.
    """
    nch = data.shape[-1]
    if noise_sigma is None:
        levels = [noise_level(data[..., c]) for c in range(nch)]
    else:
        try:
            given = np.broadcast_to(np.asarray(noise_sigma, dtype=np.float64), (nch,)).tolist()
        except (TypeError, ValueError):
            raise BadInputError(
                f"noise_sigma must be one number or one per channel ({nch}), got {noise_sigma!r}"
            ) from None
        if not all(math.isfinite(s) and s >= 0 for s in given):
            raise BadInputError(f"noise_sigma must be finite and >= 0, got {noise_sigma!r}")
        levels = [s / float(k) for s, k in zip(given, scales, strict=True)]
        for c, s in enumerate(levels):
            # Noise above the whole signal is a units mistake (e.g. 8-bit units for an image
            # in [0, 1]); it would also overflow the regularisation weights.
            peak = float(np.abs(data[..., c]).max())
            if peak > 0 and s > peak:
                raise BadInputError(
                    f"noise_sigma {given[c]:g} exceeds the image's largest magnitude "
                    f"{peak * float(scales[c]):g}; give it in the image's intensity units"
                )
    floors = [_quantisation_noise(data[..., c], in_dtype, float(scales[c])) for c in range(nch)]
    return [max(s, f) for s, f in zip(levels, floors, strict=True)]


def _deblur_channel(
    y: np.ndarray,
    kernel: np.ndarray,
    sigma: float,
    method: str,
    boundary: str,
    iterations: int,
    report: Callable[[int, int], None],
    observed: np.ndarray | None = None,
    anchored: bool = False,
) -> np.ndarray:
    if float(y.max()) == float(y.min()):  # a constant image is its own deconvolution
        return y.copy()
    prob = _Problem(y, kernel, boundary, observed)
    if method == "rl":
        x = _rl(prob, sigma, iterations, report)
    else:
        wiener_steps = iterations if method == "wiener" else _ITERATIONS["wiener"]
        x = _wiener(prob, sigma, wiener_steps, report if method == "wiener" else _quiet, anchored)
        if method == "tv":
            x = _tv(prob, sigma, x, iterations, report)
    return x[prob.window]


def _quiet(done: int, total: int) -> None:
    return None


class _Input(NamedTuple):
    data: np.ndarray  # (H, W, C), float32 or float64, each channel divided by its scale
    dtype: np.dtype  # the input's
    scales: np.ndarray  # (C,) powers of two
    low: float  # the input's range, in its own units
    high: float


def _prepare(image: Any, channel_axis: int | None) -> _Input:
    """Validate an image and bring it, channels last, into a well-scaled working domain.

    Each channel is divided by the power of two that puts its largest magnitude in [0.5, 1).
    Binary floating point scales by powers of two exactly, so the result does not depend on
    the scale, while squares and FFT sums of the data can neither overflow (values up to
    :data:`defocus._array.MAX_MAGNITUDE`) nor underflow (tiny values) in float32.
    """
    arr = np.asarray(image)
    check_magnitude(arr)
    # float32 holds 24 bits: wider integers are computed in float64 to keep every count.
    wide = arr.dtype.kind in "iu" and arr.dtype.itemsize >= 4
    data, in_dtype = channels_last(arr, channel_axis, dtype=np.float64 if wide else None)
    low, high = float(data.min()), float(data.max())
    peak = np.abs(data).max(axis=(0, 1)).astype(np.float64)
    scales = np.where(peak > 0, np.exp2(np.frexp(peak)[1]), 1.0)
    data *= 1 / scales  # float64 factors: 1/scale may exceed float32's range
    return _Input(data, in_dtype, scales, low, high)


def _output(out: np.ndarray, inp: _Input, channel_axis: int | None) -> np.ndarray:
    """Back to the input's units, range and dtype.

    Undoing the scale and clipping run in float64: float32 cannot hold the limits of 32-bit
    integers (2**31 - 1 rounds up to 2**31, which no int32 can take). The range kept is the
    dtype's for integers and, for floats, non-negative for non-negative input and [0, 1] for
    input within it.
    """
    out = out.astype(np.float64) * inp.scales
    lo = 0.0 if inp.low >= 0 else -np.inf
    hi = np.inf
    if np.issubdtype(inp.dtype, np.integer):
        info = np.iinfo(inp.dtype)
        lo, hi = float(info.min), float(info.max)
    elif inp.high <= 1.0 and lo == 0.0:
        hi = 1.0
    return finish_channels(np.clip(out, lo, hi, out=out), channel_axis, inp.dtype, inp.dtype)


def deblur(
    image: np.ndarray,
    psf: Any,
    *,
    method: str = "wiener",
    noise_sigma: float | None = None,
    boundary: str = "valid",
    iterations: int | None = None,
    channel_axis: int | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Deconvolve an image blurred by one known PSF, without ringing at the borders.

    Parameters
    ----------
    image : ndarray
        2-D image, or multichannel with ``channel_axis``; any integer or float dtype.
    psf : (M, N) ndarray or (str, dict)
        The kernel (normalised to sum 1 here; centre element ``((M-1)//2, (N-1)//2)``, as for
        :func:`defocus.blur`), or a model and its parameters for :func:`defocus.psf.render`,
        e.g. ``("disk", {"radius": 5})``.
    method : {"wiener", "tv", "rl"}
        Wiener (linear MMSE, fastest), total variation (sharpest, several times slower) or
        Richardson-Lucy (see the module notes).
    noise_sigma : float or sequence of float, optional
        Standard deviation of the noise in intensity units (one per channel, or one for all).
        Default: estimated per channel from the finest wavelet detail, never below JPEG's
        compression error where the channel shows its block grid
        (:func:`defocus.noise.noise_level`). Values below the
        quantisation noise of integer data (1/√12) or the float precision are raised to it;
        values above the channel's largest magnitude are refused.
    boundary : {"valid", "periodic"}
        ``valid`` (default): the image is the valid part of a convolution of a larger scene,
        so nothing is assumed beyond the border and it does not ring. ``periodic``: the image
        wraps around (a tiled pattern, or an image blurred with ``mode="wrap"``).
    iterations : int, optional
        Cap on iterations (default 8 for Wiener's conjugate gradients, 60 for TV, 200 for
        Richardson-Lucy); each method stops earlier once converged.
    channel_axis : int, optional
        Axis of the colour channels. Three channels (RGB) are deconvolved as luminance and
        two chroma channels (an orthonormal opponent transform), each with its own noise
        level and gradient prior; the chroma's prior is on its difference from the data, so
        chroma detail that the noise hides is kept as observed, and edges do not ring into
        colour fringes. Other channel counts are deconvolved one by one.
    progress : callable, optional
        Called as ``progress(done, total, what)`` as the work advances.

    With ``boundary="valid"``, saturated and clipped pixels (plateaus at the integer dtype's
    limits or at the image's own maximum, in any channel) are kept out of the data term: they
    are estimated like the pixels beyond the border, from their neighbours and the prior.

    Returns
    -------
    ndarray
        Same shape and dtype as ``image``. Integers are rounded and clipped to the dtype's
        range; a non-negative image stays non-negative, and a float image within [0, 1] stays
        within it. Any finite input up to the magnitude limit gives a finite output: the work
        runs on each channel divided by a power of two (exact, so the result is the same as
        unscaled) and 32-bit or wider integers are computed in float64.

    Raises
    ------
    BadInputError
        Unsupported shape or dtype, NaN or infinite values, magnitudes beyond
        :data:`defocus._array.MAX_MAGNITUDE` (1e15), or invalid options.

    Examples
    --------
    >>> from skimage import data
    >>> import defocus
    >>> sharp = data.camera()[200:328, 200:328]
    >>> blurred = defocus.blur(sharp, defocus.psf.disk(3.0), dtype=np.uint8)
    >>> out = deblur(blurred, ("disk", {"radius": 3.0}))
    >>> out.dtype, out.shape
    (dtype('uint8'), (128, 128))
    >>> err = lambda a: float(np.abs(a.astype(float) - sharp).mean())
    >>> bool(err(out) < 0.7 * err(blurred))
    True
    """
    steps = _check(method, boundary, iterations)
    kernel = _as_kernel(psf)
    inp = _prepare(image, channel_axis)
    data = inp.data
    levels = _noise_levels(data, noise_sigma, inp.dtype, inp.scales)
    nch = data.shape[-1]
    observed = None
    if boundary == "valid":
        clipped = saturated(image, channel_axis)
        observed = ~clipped if clipped.any() else None
    colour = nch == 3
    if colour:
        # One scale for the three channels (powers of two: exact), then luminance and chroma.
        rel = inp.scales / inp.scales.max()
        data = (data * rel.astype(data.dtype)) @ _OPPONENT.T.astype(data.dtype)
        # Levels given per RGB channel are taken as independent (each opponent channel gets
        # √(Σ_j T_ij² σ_j²)); an estimate is taken on each opponent channel itself, as
        # demosaicing and compression correlate the channels' noise.
        spread = np.sqrt((_OPPONENT**2) @ (np.asarray(levels) * rel) ** 2)
        if noise_sigma is None:
            floors = [
                _quantisation_noise(inp.data[..., c], inp.dtype, inp.scales[c]) for c in range(3)
            ]
            floor = np.sqrt((_OPPONENT**2) @ (np.asarray(floors) * rel) ** 2)
            spread = np.maximum([noise_level(data[..., c]) for c in range(3)], floor)
        levels = spread.tolist()
    out = np.empty_like(data)
    what = ("luminance", "red-green", "yellow-blue") if colour else None
    for c in range(nch):
        name = what[c] if what else f"channel {c + 1} of {nch}" if nch > 1 else "deblurring"

        def report(done: int, total: int, c: int = c, name: str = name) -> None:
            if progress is not None:
                progress(100 * c + min(100, round(100 * done / total)), 100 * nch, name)

        out[..., c] = _deblur_channel(
            data[..., c],
            kernel.astype(data.dtype),
            levels[c],
            method,
            boundary,
            steps,
            report,
            observed,
            anchored=colour and c > 0,
        )
        report(1, 1)
    if colour:
        out = (out @ _OPPONENT.astype(out.dtype)) / rel.astype(out.dtype)
    return _output(out, inp, channel_axis)


def _ladder(smap: np.ndarray) -> np.ndarray:
    """Sigma levels spanning the map: geometric, from its minimum to its maximum.

    A level of 0 (no deconvolution) is added below :data:`_SIGMA_FLOOR`. A constant map
    gives one level, its value.
    """
    top = float(smap.max())
    if top < _SIGMA_FLOOR:
        return np.zeros(1)
    low = max(float(smap.min()), _SIGMA_FLOOR)
    count = 1 if top <= low else math.ceil(math.log(top / low) / math.log(_LEVEL_RATIO)) + 1
    levels = np.geomspace(low, top, count) if count > 1 else np.array([top])
    return np.r_[0.0, levels] if float(smap.min()) < low else levels


def _blend_levels(
    patch: np.ndarray,
    idx: np.ndarray,
    t: np.ndarray,
    levels: np.ndarray,
    psf: str,
    noise: list[float],
    method: str,
    steps: int,
    report: Callable[[float], None],
) -> np.ndarray:
    """Deconvolve a (H, W, C) patch at each level it needs and blend by the level weights.

    Level k sees only the pixels it serves (sigma between its neighbours): the rest of the
    patch is unknown to it, as beyond a border, so blur of another size across a depth edge
    is not forced through the wrong PSF.
    """
    out = np.zeros_like(patch)
    for k in range(levels.size):
        weight = np.where(idx == k, 1 - t, 0) + np.where(idx == k - 1, t, 0)
        box = bbox(weight > 0)
        if box is None:
            continue
        weight = weight[box].astype(patch.dtype)
        if levels[k] == 0:
            out[box] += weight[..., None] * patch[box]
            report((k + 1) / levels.size)
            continue
        observed = weight > 0
        kernel = _psf.family_kernel(psf, float(levels[k])).astype(patch.dtype)
        for c in range(patch.shape[-1]):
            x = _deblur_channel(
                patch[(*box, c)],
                kernel,
                noise[c],
                method,
                "valid",
                steps,
                _quiet,
                None if observed.all() else observed,
            )
            out[(*box, c)] += weight * x
        report((k + 1) / levels.size)
    return out


def _window_1d(n: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Tile centres along one axis and their cos² weights, which sum to 1 at every pixel.

    Returns the centres (first at 0, last at n - 1) and an array (len(centres), n) of weights:
    each falls from 1 at its centre to 0 at the neighbouring centres.
    """
    count = max(2, math.ceil((n - 1) / step) + 1) if n > 1 else 1
    centres = np.linspace(0, n - 1, count)
    pos = np.arange(n, dtype=np.float64)
    weights = np.zeros((count, n))
    for i, c in enumerate(centres):
        if count == 1:
            weights[i] = 1
            continue
        spacing = centres[1] - centres[0]
        t = np.abs(pos - c) / spacing
        # Neighbours' cos² and sin² add to 1; exactly 0 from the next centre on.
        weights[i] = np.where(t < 1, np.cos(0.5 * np.pi * np.minimum(t, 1)) ** 2, 0)
    return centres, weights


def _tile_progress(report: Callable[[float], None], done: int, total: int, f: float) -> None:
    """Progress of one tile's levels, as a fraction of all tiles."""
    report((done + f) / total)


@renamed_keywords(family="psf")
def deblur_varying(
    image: np.ndarray,
    sigma_map: np.ndarray | BlurMap,
    *,
    psf: str | None = None,
    method: str = "wiener",
    noise_sigma: float | None = None,
    tile: int | None = None,
    iterations: int | None = None,
    channel_axis: int | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Deconvolve spatially varying blur given a per-pixel sigma map (or a blur map).

    The map's range is covered by a geometric ladder of sigma levels, each at most 25 %
    above the previous one. The image is deconvolved by :func:`deblur`'s valid-region model
    with each level's PSF, using as data only the pixels whose sigma lies between that
    level's neighbours (the rest are unknown to it), and the results are blended per pixel
    with the weights that interpolate the two levels around its sigma (linear in sigma², as
    :func:`defocus.blur_varying` blends). The weights form a partition of unity over the
    levels, so the PSF changes smoothly where the map does, while at a depth edge each side
    is restored with its own PSF and the other side's blur does not ring into it. A constant
    map gives the uniform result exactly.

    Parameters
    ----------
    image : ndarray
        2-D image, or multichannel with ``channel_axis``.
    sigma_map : (H, W) ndarray or BlurMap
        Sigma in pixels at each pixel (>= 0), or a :class:`~defocus.BlurMap`, whose ``sigma``
        is used and whose ``psf`` is the default ``psf``. Below 0.3 px the blur is blended
        with no deconvolution at 0.
    psf : {"gauss", "disk"}, optional
        PSF family (:data:`defocus.psf.FAMILIES`; a disk has radius 2 sigma). Default: the
        blur map's, else ``"gauss"``. Formerly ``family``, which still works with a
        ``FutureWarning``.
    method, noise_sigma, iterations, channel_axis
        As for :func:`deblur`, except that channels are deconvolved one by one; the noise is
        estimated once on the whole image.
    progress : callable, optional
        Called as ``progress(done, total, what)``, in percent of the work.
    tile : int, optional
        To bound memory on large images: process overlapping tiles whose centres are this
        many pixels apart, each with a margin of one kernel width, and add them with
        separable cos² weights that sum to 1 at every pixel (overlap-add, Nagy & O'Leary
        [5]_). Default: the whole image at once.

    Returns
    -------
    ndarray
        Same shape and dtype as ``image``.

    Examples
    --------
    >>> from skimage import data
    >>> import defocus
    >>> sharp = data.camera()[100:228, 100:228]
    >>> smap = defocus.tilt_map(sharp.shape, position=0.5, slope=0.04, floor=0.5)
    >>> blurred = defocus.blur_varying(sharp, smap, dtype=np.uint8)
    >>> out = deblur_varying(blurred, smap)
    >>> err = lambda a: float(np.sqrt(np.mean((a.astype(float) - sharp) ** 2)))
    >>> out.dtype, bool(err(out) < 0.85 * err(blurred))
    (dtype('uint8'), True)
    """
    if isinstance(sigma_map, BlurMap):
        if psf is None and sigma_map.psf in _psf.FAMILIES:
            psf = sigma_map.psf
        smap = np.asarray(sigma_map.sigma)
    else:
        smap = np.asarray(sigma_map)
    psf = _psf.check_family(psf or "gauss")
    steps = _check(method, "valid", iterations)
    inp = _prepare(image, channel_axis)
    data = inp.data
    h, w, _ = data.shape
    if smap.shape != (h, w):
        raise BadInputError(f"sigma map shape {smap.shape} does not match the image's {(h, w)}")
    if not np.issubdtype(smap.dtype, np.number) or not np.isfinite(smap).all():
        raise BadInputError("sigma map must be finite numbers")
    if float(smap.min()) < 0:
        raise BadInputError(f"sigma map has negative values (min {float(smap.min()):g})")
    if tile is not None and (int(tile) != tile or tile < 8):
        raise BadInputError(f"tile must be an integer of at least 8 px, got {tile!r}")
    noise = _noise_levels(data, noise_sigma, inp.dtype, inp.scales)
    levels = _ladder(smap)
    idx, t = level_weights(smap, levels)

    def report(fraction: float) -> None:
        if progress is not None:
            progress(min(100, round(100 * fraction)), 100, "sigma levels")

    if tile is None:
        out = _blend_levels(data, idx, t, levels, psf, noise, method, steps, report)
        report(1.0)
        return _output(out, inp, channel_axis)
    margin = _psf.family_kernel(psf, float(levels[-1])).shape[0]
    cy, wy = _window_1d(h, int(tile))
    cx, wx = _window_1d(w, int(tile))
    out = np.zeros_like(data)
    total, done = len(cy) * len(cx), 0
    for i in range(len(cy)):
        rows = np.nonzero(wy[i] > 0)[0]
        for j in range(len(cx)):
            cols = np.nonzero(wx[j] > 0)[0]
            weight = np.outer(wy[i][rows], wx[j][cols]).astype(data.dtype)
            core = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
            # Deconvolve a margin beyond the weighted support, so the weighted pixels are
            # far from the tile's own (valid-model) border.
            ys = slice(max(0, core[0].start - margin), min(h, core[0].stop + margin))
            xs = slice(max(0, core[1].start - margin), min(w, core[1].stop + margin))
            inner = (
                slice(core[0].start - ys.start, core[0].stop - ys.start),
                slice(core[1].start - xs.start, core[1].stop - xs.start),
            )
            patch = _blend_levels(
                data[ys, xs],
                idx[ys, xs],
                t[ys, xs],
                levels,
                psf,
                noise,
                method,
                steps,
                functools.partial(_tile_progress, report, done, total),
            )
            out[core] += weight[..., None] * patch[inner]
            done += 1
    return _output(out, inp, channel_axis)
