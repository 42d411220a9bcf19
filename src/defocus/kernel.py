"""Blur-kernel (PSF) estimation: from a sharp/blurred pair, and blind from one blurred image.

:func:`estimate_kernel` solves for the kernel ``k`` in ``blurry = gain · (sharp ⊛ k) + offset``
on the *valid* region only (the pixels whose whole neighbourhood lies inside the sharp image),
so light that entered the blurred frame from outside it biases nothing, and no padding or
periodicity is assumed. :func:`fit_psf` explains a kernel by the parametric models of
:mod:`defocus.psf` and picks one by an information criterion; :func:`identify` estimates a disk
diameter or a Gaussian sigma from the power spectrum of one blurred image.

References
----------
.. [1] M. Cannon, "Blind deconvolution of spatially invariant image blurs with phase",
   IEEE Trans. ASSP 24, 58–63 (1976).
.. [2] J. Rugna and H. Konik, "Automatic blur detection for meta-data extraction in
   content-based retrieval context", Proc. SPIE 5304 (2004).
.. [3] G. Schwarz, "Estimating the dimension of a model", Ann. Stat. 6, 461–464 (1978).
.. [4] S. Boyd, N. Parikh, E. Chu, B. Peleato and J. Eckstein, "Distributed optimization and
   statistical learning via the alternating direction method of multipliers", Found. Trends
   Mach. Learn. 3, 1–122 (2011).
.. [5] D. J. C. MacKay, "Bayesian interpolation", Neural Comput. 4, 415–447 (1992).
.. [6] L. Moisan, "Periodic plus smooth image decomposition", J. Math. Imaging Vis. 39,
   161–179 (2011).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.fft
import scipy.linalg
import scipy.ndimage as ndi
import scipy.sparse
import scipy.special

from . import psf as _psf
from ._array import as_float_image, channels_last, positive, saturated
from ._compat import renamed_keywords
from ._errors import BadInputError
from .noise import haar_sigma, noise_spectrum

__all__ = [
    "Identification",
    "Kernel",
    "ModelFit",
    "PSFFit",
    "estimate_kernel",
    "fit_psf",
    "identify",
]

# Sizes tried when growing the support. The exact Gram matrix has side⁴ entries, so the side
# stops at 63 (126 MB); downsample the pair for larger blur.
_SIZES = (9, 15, 23, 31, 41, 51, 63)
_MAX_SIZE = 63
# The support is large enough when its outer ring holds less than this fraction of the energy,
# or no more than _FLOOR posterior standard deviations per pixel (the mean of the positive part
# of a unit normal is 1/√(2π) ≈ 0.4: what non-negative noise alone leaves).
_BORDER_ENERGY = 0.01
_FLOOR = 0.4
_AIC_BORDER = 0.1
# Multipliers of the evidence-optimal smoothness weight and of the Laplace-prior TV weight.
_SMOOTH = 1.0
_EDGES = 0.3
# Integer registration: correlation above this fraction of its peak belongs to the kernel.
_REGISTER_LEVEL = 0.3
# Threads for the large FFTs (scipy.fft releases the GIL): every core.
_WORKERS = -1
# Clipped pixels are excluded from the fit in tiles of this many valid outputs per side (a
# tile with any clipped input is dropped whole: exact on what is kept, and cheap).
_CLIP_TILE = 64
# The pair matches when the fit explains at least this fraction of the variance that the noise
# leaves explainable (see :attr:`Kernel.explained`). Measured (bench_kernel --track mismatch):
# matching synthetic pairs 0.9998 or more, real matching pairs 0.97 (a JPEG focus bracket,
# whose noise estimate is too low) to 1.05 (SEM); wrong pairs 0.81 at most (an inverted brick
# wall, whose texture inverted resembles itself shifted), most under 0.2.
_MATCH = 0.9
# Misfit floor per kernel pixel, as a fraction of the peak, for the information criteria.
_FIT_FLOOR = 0.01


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
    explained : float
        Fraction of the variance of ``blurry`` (on the pixels fitted) that the model
        ``gain · (sharp ⊛ kernel) + offset`` explains, ``1 − RSS / TSS`` (the worst channel).
    explainable : float
        The most that noise allows: ``1 − σ² / var(blurry)``, with σ measured on ``blurry``
        alone (finest Haar detail), not from the fit.
    measured_noise : float
        That σ (mean over channels); ``residual / measured_noise`` near 1 means the kernel
        explains everything but the noise.
    clipped : int
        Saturated or clipped pixels found in ``sharp`` and ``blurry`` together (plateaus at the
        dtype's limits or at the image's own maximum), which were kept out of the fit.
    excluded : float
        Fraction of the valid region left out of the fit for them.
    border : float
        Share of the kernel's mass in the outer tenth of its box (at least 1 px), the band the
        automatic size search watches; ``border_noise`` is what noise alone would put there.
        More than both, and more than 1 %, means the box cut the kernel off.
    """

    kernel: np.ndarray
    sigma: float
    shift: tuple[float, float]
    gain: float | np.ndarray
    offset: float | np.ndarray
    residual: float | np.ndarray
    noise: float
    explained: float = 1.0
    explainable: float = 1.0
    measured_noise: float = 0.0
    clipped: int = 0
    excluded: float = 0.0
    border: float = 0.0
    border_noise: float = 0.0

    @property
    def matches(self) -> bool:
        """Whether the fit explains at least 90 % of the variance the noise leaves explainable.

        Below that, ``sharp`` and ``blurry`` do not show the same scene under one blur (an
        unrelated, rotated, inverted or misplaced frame, or blur that varies across the image).
        """
        return self.explained >= _MATCH * self.explainable

    @property
    def warnings(self) -> list[str]:
        """One line per reason not to trust the kernel (empty when there is none)."""
        out = []
        if not self.matches:
            out.append(
                f"the pair does not match: {max(self.explained, 0.0):.0%} of the variance "
                f"explained (noise allows {self.explainable:.0%})"
            )
        if self.border > max(_BORDER_ENERGY, self.border_noise):
            m = self.kernel.shape[0]
            out.append(
                f"the kernel box ({m} px) is too small: {self.border:.1%} of its mass lies in "
                f"its outer {max(1, m // 10)} px"
            )
        return out

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
            "explained_variance": self.explained,
            "explainable_variance": self.explainable,
            "measured_noise": self.measured_noise,
            "residual_to_noise": float(np.max(self.residual)) / self.measured_noise
            if self.measured_noise > 0
            else None,
            "matches": self.matches,
            "clipped_pixels": self.clipped,
            "excluded_fraction": self.excluded,
            "border_fraction": self.border,
            "border_noise_fraction": self.border_noise,
            "warnings": self.warnings,
        }


def _band_sum(f: np.ndarray, axis: int) -> np.ndarray:
    """Sum an edge band of the Gram matrix for each window offset (see :func:`_gram`).

    ``f`` holds 2(m−1) band positions along ``axis``: m−1 low, then m−1 high. Offset v
    (0..m−1) covers low positions i >= v and high positions i < v, so the result is the low
    band's suffix sums plus the high band's prefix sums: O(m) per line, not O(m²). The sums
    run as whole-slice additions (numpy's cumsum along an outer axis does not vectorise).
    """
    f = np.moveaxis(f, axis, 0)
    k = f.shape[0] // 2
    out = np.zeros((k + 1, *f.shape[1:]), dtype=f.dtype)
    for i in range(k - 1, -1, -1):
        np.add(out[i + 1], f[i], out=out[i])
    acc = np.zeros_like(out[0])
    for i in range(k):
        acc += f[k + i]
        out[i + 1] += acc
    return np.moveaxis(out, 0, axis)


def _column_correlations(x: np.ndarray, m: int, band: np.ndarray, core: slice) -> np.ndarray:
    """``c[dy, dx, i] = Σ_{sy ∈ core} x(sy + dy, band_i + dx) · x(sy, band_i)`` for |d| < m.

    One FFT per column along y; circular correlation is exact because ``sy + dy`` never leaves
    the image for core rows.
    """
    n = scipy.fft.next_fast_len(x.shape[0], real=True)
    masked = np.zeros((x.shape[0], band.size))
    masked[core] = x[core][:, band]
    fa = np.conj(scipy.fft.rfft(masked, n, axis=0))
    padded = np.pad(x, ((0, 0), (m, m)))
    lags = np.arange(-(m - 1), m) % n
    out = np.empty((2 * m - 1, 2 * m - 1, band.size))
    for k, dx in enumerate(range(-(m - 1), m)):
        fb = scipy.fft.rfft(padded[:, band + dx + m], n, axis=0)
        out[:, k, :] = scipy.fft.irfft(fa * fb, n, axis=0)[lags]
    return out


def _gram(x: np.ndarray, m: int) -> np.ndarray:
    """Exact Gram matrix ``G[u, v] = Σ_p x(p + u) x(p + v)`` of the valid correlation, p over
    the (H−m+1)×(W−m+1) valid outputs and u, v over the m×m window, flattened row-major.

    Forming it from image windows costs O(N m⁴); here it is split by where ``p + v`` falls. The
    part inside the central region common to every window offset is a plain autocorrelation
    (one 2-D FFT); the bands of width m−1 along the four edges depend on the offset and come
    from per-column and per-row correlations (1-D FFTs) and direct products in the corners,
    summed by :func:`_band_sum`. Total O(N log N + N m + m⁴) instead of O(N m⁴).
    """
    h, w = x.shape
    hv, wv = h - m + 1, w - m + 1
    ry, rx = slice(m - 1, hv), slice(m - 1, wv)
    band_y = np.r_[0 : m - 1, hv : hv + m - 1]
    band_x = np.r_[0 : m - 1, wv : wv + m - 1]
    shape = (scipy.fft.next_fast_len(h, real=True), scipy.fft.next_fast_len(w, real=True))
    core = np.zeros_like(x)
    core[ry, rx] = x[ry, rx]
    auto = scipy.fft.irfft2(
        np.conj(scipy.fft.rfft2(core, shape)) * scipy.fft.rfft2(x, shape), shape
    )
    lags = np.arange(-(m - 1), m)
    centre = auto[np.ix_(lags % shape[0], lags % shape[1])]  # [dy, dx]
    cols = _band_sum(_column_correlations(x, m, band_x, ry), 2)
    rows = _band_sum(_column_correlations(x.T, m, band_y, rx), 2).transpose(1, 0, 2)  # [dy, dx, vy]
    # Corner products in float32: they are sums of at most (2m)² terms, far below the total.
    padded = np.pad(x, m).astype(np.float32)
    corner = padded[np.ix_(band_y + m, band_x + m)]
    first_col = band_x + 1  # window start of column band_j − (m−1) in padded
    v = np.arange(m)
    dxg = v[:, None] - v[None, :] + m - 1  # dx index for (ux, vx)
    g: np.ndarray = np.empty((m, m, m, m))
    # G is symmetric: fill the rows with uy >= vy (dy >= 0) and mirror the rest.
    for a in range(m - 1, 2 * m - 1):
        dy = int(lags[a])
        vy = np.arange(m - dy)
        # [i, j, dx]: the band sums run over the outer axes, dx stays contiguous
        near = np.lib.stride_tricks.sliding_window_view(padded[band_y + dy + m], 2 * m - 1, 1)
        q = near[:, first_col] * corner[:, :, None]
        q = _band_sum(_band_sum(q, 0), 1)  # [vy, vx, dx]
        g[vy + dy, :, vy, :] = (
            centre[a][dxg][None]
            + cols[a][dxg, v[None, :]][None]
            + rows[a][:, vy].T[:, dxg]
            + q[vy][:, v[None, :], dxg]
        )
    g = g.reshape(m * m, m * m)
    lower = np.repeat(np.arange(m), m)
    upper = lower[:, None] < lower[None, :]  # uy < vy: not filled above
    g[upper] = g.T[upper]
    return g


@dataclass(frozen=True)
class _Normal:
    """Normal equations of ``valid(x ⋆ g) + offset ≈ y`` with the offset eliminated.

    ``g`` is the kernel in correlation order (the convolution kernel flipped); ``sums`` holds
    ``Σ_p x(p + u)``, used to restore the offset.
    """

    gram: np.ndarray
    rhs: np.ndarray
    yy: float
    n: int
    m: int
    sums: np.ndarray
    x_mean: float
    y_mean: float

    def rss(self, g: np.ndarray) -> float:
        return max(float(self.yy - 2 * self.rhs @ g + g @ self.gram @ g), 0.0)


def _pieces(
    x: np.ndarray, yv: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float, int]:
    """Sums for the normal equations of one rectangle: ``x`` the inputs, ``yv`` its valid
    outputs (both already centred by the whole pair's means).

    Returns the Gram matrix, ``Σ y x_p``, ``Σ x_p`` (windows flattened row-major), ``Σ y``,
    ``Σ y²`` and the number of outputs.
    """
    shape = (
        scipy.fft.next_fast_len(x.shape[0], real=True),
        scipy.fft.next_fast_len(x.shape[1], real=True),
    )
    corr = scipy.fft.irfft2(np.conj(scipy.fft.rfft2(yv, shape)) * scipy.fft.rfft2(x, shape), shape)
    c = np.pad(np.cumsum(np.cumsum(x, axis=0), axis=1), ((1, 0), (1, 0)))
    hv, wv = yv.shape
    sums = (
        c[hv : hv + m, wv : wv + m] - c[:m, wv : wv + m] - c[hv : hv + m, :m] + c[:m, :m]
    ).ravel()
    return _gram(x, m), corr[:m, :m].ravel(), sums, float(yv.sum()), float(np.vdot(yv, yv)), yv.size


def _dropped_runs(dropped: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Rectangles (r0, r1, c0, c1) of valid outputs covering the tiles with excluded outputs.

    Neighbouring dropped tiles of a tile row merge into one rectangle, and so do runs of
    consecutive tile rows over the same columns (the same tiles, fewer pieces), so the Gram
    matrix of each costs one call of :func:`_gram`.
    """
    t = _CLIP_TILE
    hv, wv = dropped.shape
    rows = range(0, hv, t)
    runs: list[tuple[int, int, int, int]] = []
    above: dict[tuple[int, int], int] = {}  # (c0, c1) -> index of the run ending on this row
    for r0 in rows:
        bad = [dropped[r0 : r0 + t, c0 : c0 + t].any() for c0 in range(0, wv, t)]
        start = None
        here: dict[tuple[int, int], int] = {}
        for j, b in enumerate([*bad, False]):
            if b and start is None:
                start = j
            elif not b and start is not None:
                cols = (start * t, min(j * t, wv))
                r1 = min(r0 + t, hv)
                if cols in above:
                    i = above[cols]
                    runs[i] = (runs[i][0], r1, *cols)
                else:
                    i = len(runs)
                    runs.append((r0, r1, *cols))
                here[cols] = i
                start = None
        above = here
    return runs


def _excluded_outputs(
    x_clip: np.ndarray | None, y_clip: np.ndarray | None, m: int
) -> np.ndarray | None:
    """Valid outputs whose window holds a clipped input, or whose own value is clipped."""
    if x_clip is None or not (x_clip.any() or (y_clip is not None and y_clip.any())):
        return None
    half = m // 2
    c = np.pad(np.cumsum(np.cumsum(x_clip, axis=0), axis=1), ((1, 0), (1, 0)))
    out = (c[m:, m:] - c[:-m, m:] - c[m:, :-m] + c[:-m, :-m]) > 0
    if y_clip is not None:
        out |= y_clip[half : y_clip.shape[0] - half, half : y_clip.shape[1] - half]
    return out


def _normal_equations(
    x: np.ndarray, y: np.ndarray, m: int, excluded: np.ndarray | None = None
) -> _Normal:
    """Exact normal equations for an m×m kernel on the valid region of a registered pair.

    ``excluded`` marks valid outputs to leave out (clipped data): the tiles of
    :data:`_CLIP_TILE` outputs holding any are subtracted from the whole, each tile row's run
    as one rectangle, so what is kept is fitted exactly.
    """
    half = m // 2
    x_mean = float(x.mean())
    xc = x - x_mean
    yv = y[half : y.shape[0] - half, half : y.shape[1] - half]
    y_mean = float(yv.mean())
    yc = yv - y_mean
    gram, rhs, sums, sy, syy, n = _pieces(xc, yc, m)
    if excluded is not None and excluded.any():
        for r0, r1, c0, c1 in _dropped_runs(excluded):
            g2, r2, s2, sy2, syy2, n2 = _pieces(
                xc[r0 : r1 + m - 1, c0 : c1 + m - 1], yc[r0:r1, c0:c1], m
            )
            gram -= g2
            rhs -= r2
            sums -= s2
            sy, syy, n = sy - sy2, syy - syy2, n - n2
    if n < m * m:
        raise BadInputError(
            f"too little of the pair is free of clipping for a {m}x{m} kernel "
            f"({max(n, 0)} usable pixels); give a larger or less saturated pair"
        )
    # Eliminate the offset: centre on the kept outputs' means.
    gram -= np.outer(sums, sums) / n
    rhs = rhs - sums * (sy / n)
    yy = syy - sy * sy / n
    return _Normal(gram, rhs, yy, n, m, sums, x_mean, y_mean + sy / n)


def _differences(m: int) -> scipy.sparse.csr_matrix:
    """Forward differences along y and x of an m×m kernel, zero outside its support."""
    d = scipy.sparse.diags([-np.ones(m + 1), np.ones(m)], [0, 1], shape=(m + 1, m + 1))
    d = d.tocsr()[:, 1:]
    eye = scipy.sparse.identity(m)
    return scipy.sparse.vstack([scipy.sparse.kron(d, eye), scipy.sparse.kron(eye, d)]).tocsr()


@dataclass(frozen=True)
class _Solution:
    g: np.ndarray  # gain · kernel in correlation order, >= 0, shape (m, m)
    rss: float
    dof: float  # effective number of well-determined kernel entries
    noise2: float  # noise variance the regularisation was set from
    floor: float  # posterior std of one kernel entry: what noise alone leaves there
    smooth: float  # evidence-optimal smoothness weight λ
    edges: float  # total-variation weight


def _inverse32(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive definite matrix in float32 (Cholesky, then its inverse)."""
    from scipy.linalg import lapack

    factor, info = lapack.spotrf(matrix.astype(np.float32), lower=True, clean=True)
    if info == 0:
        inverse, info = lapack.spotri(factor, lower=True, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError("kernel normal equations are not positive definite")
    return np.tril(inverse) + np.tril(inverse, -1).T


def _admm(
    eq: _Normal,
    d: scipy.sparse.csr_matrix,
    lap: np.ndarray,
    smooth: float,
    edges: float,
    start: np.ndarray | None = None,
) -> np.ndarray:
    """``min ½ gᵀGg − rᵀg + ½ smooth ‖Dg‖² + edges ‖Dg‖₁`` over g >= 0, by ADMM [4]_.

    Splitting ``z₁ = Dg`` (total variation) and ``z₂ = g`` (non-negativity) makes every
    g-update one solve with a fixed matrix, inverted once: a matrix-vector product per
    iteration is several times faster than two triangular solves. ρ is a fifth of G's mean
    diagonal: synthetic pairs converged fastest near 5 %, a real JPEG pair near 100 %.
    """
    p = eq.gram.shape[0]
    rho = 0.2 * float(np.trace(eq.gram)) / p
    # The ρ(L + I) term keeps this matrix well conditioned, so float32 suffices and halves the
    # memory traffic of the products that dominate the run time.
    inverse = _inverse32(eq.gram + (smooth + rho) * lap + rho * np.eye(p))
    d = d.astype(np.float32)
    dt = d.T.tocsr()
    rhs = eq.rhs.astype(np.float32)
    first = np.einsum("ij,j->i", inverse, rhs) if start is None else start.ravel()
    g = np.maximum(first, 0.0).astype(np.float32)
    z1, z2 = d @ g, g.copy()
    u1, u2 = np.zeros_like(z1), np.zeros_like(z2)
    relax = np.float32(1.6)  # over-relaxation, Boyd et al. §3.4.3
    for _ in range(600):
        # einsum, not BLAS: a threaded BLAS matrix-vector product spins its threads on every
        # call and ran 10-50x slower than one thread on a loaded 2-core machine.
        g = np.einsum("ij,j->i", inverse, rhs + np.float32(rho) * (dt @ (z1 - u1) + z2 - u2))
        dg = d @ g
        a1 = relax * dg + (1 - relax) * z1
        a2 = relax * g + (1 - relax) * z2
        old1, old2 = z1, z2
        v = a1 + u1
        z1 = np.sign(v) * np.maximum(np.abs(v) - np.float32(edges / rho), 0)
        z2 = np.maximum(a2 + u2, 0)
        u1 += a1 - z1
        u2 += a2 - z2
        primal = math.sqrt(float(np.sum((dg - z1) ** 2) + np.sum((g - z2) ** 2)))
        dual = rho * float(np.linalg.norm(dt @ (z1 - old1) + z2 - old2))
        size = max(float(np.linalg.norm(z2)), 1e-300)
        # 1e-3: float32 products leave the residuals at 1e-4 to 1e-3, and the kernel moves by
        # under 0.002 relative after this on the benchmark's pairs.
        if primal < 1e-3 * size and dual < 1e-3 * rho * size:
            break
    return z2.astype(np.float64)


def _solve(
    eq: _Normal,
    noise2: float,
    *,
    fixed_noise: bool,
    start: _Solution | None = None,
    refit: bool = True,
) -> _Solution:
    """Regularised non-negative kernel for one support size.

    The smoothness weight maximises the evidence (MacKay's fixed point [5]_, with Hutchinson
    trace estimates): ``λ = σ² γ / ‖Dg‖²``, γ the number of well-determined entries, and,
    unless the noise is given, ``σ² = RSS / (N − γ)`` from the same fit. The edge-preserving
    total-variation weight is the matching Laplace-prior estimate ``σ² n / ‖Dg‖₁``. Both
    follow the noise: more noise, more regularisation. ``start`` (a solution for similar
    data) seeds λ; with ``refit=False`` its weights are kept and it warm-starts ADMM.
    """
    m, p = eq.m, eq.m * eq.m
    d = _differences(m)
    lap = (d.T @ d).toarray()
    if start is not None and not refit:
        g = _admm(eq, d, lap, start.smooth, start.edges, start=start.g)
        g = g.reshape(m, m)
        return _Solution(
            g, eq.rss(g.ravel()), start.dof, start.noise2, start.floor, start.smooth, start.edges
        )
    probes = np.random.default_rng(0).choice([-1.0, 1.0], size=(p, 16))
    lap_probes = lap @ probes
    lam = 1e-3 * float(np.trace(eq.gram)) / p if start is None else start.smooth / _SMOOTH
    for _ in range(8):
        chol = scipy.linalg.cho_factor(eq.gram + lam * lap, check_finite=False)
        g = scipy.linalg.cho_solve(chol, eq.rhs, check_finite=False)
        inv_probes = scipy.linalg.cho_solve(chol, probes, check_finite=False)
        gamma = p - lam * float(np.mean(np.sum(lap_probes * inv_probes, axis=0)))
        gamma = min(max(gamma, 1.0), p)
        if not fixed_noise:
            noise2 = max(eq.rss(g) / max(eq.n - gamma, 1.0), 1e-30 * eq.yy / eq.n)
        new = noise2 * gamma / max(float(g @ lap @ g), 1e-300)
        done = abs(math.log(new / lam)) < 0.1
        lam = new
        if done:
            break
    floor = math.sqrt(noise2 * float(np.mean(np.sum(probes * inv_probes, axis=0))) / p)
    tv = float(np.abs(d @ np.maximum(g, 0.0)).sum())
    edges = _EDGES * noise2 * d.shape[0] / max(tv, 1e-300)
    # A solution for a smaller support (the size search) warm-starts ADMM centred in this one.
    seed = None if start is None else np.pad(start.g, (m - start.g.shape[0]) // 2)
    g = _admm(eq, d, lap, _SMOOTH * lam, edges, start=seed)
    return _Solution(g.reshape(m, m), eq.rss(g), gamma, noise2, floor, _SMOOTH * lam, edges)


def _carried(eq: _Normal, seed: _Solution, noise2: float | None) -> _Solution | None:
    """``seed``'s weights carried over to another channel of the same pair, or None.

    One step of the evidence updates of :func:`_solve` with the seed's kernel shape and number
    of well-determined entries, at this channel's gain and noise: ``λ = σ² γ / ‖Dg‖²`` scales
    as σ²/gain² and the total-variation weight as σ²/gain. The noise, unless given, is the
    seed kernel's residual on this channel (a channel whose kernel differs reads noisier and
    is smoothed more). None when the seed kernel does not fit the channel with a positive gain.
    """
    total = float(seed.g.sum())
    unit = seed.g.ravel() / total
    gain = float(eq.rhs @ unit) / max(float(unit @ eq.gram @ unit), 1e-300)
    if not gain > 0:
        return None
    if noise2 is None:
        noise2 = max(eq.rss(gain * unit) / max(eq.n - seed.dof, 1.0), 1e-30 * eq.yy / eq.n)
    ratio = noise2 / seed.noise2
    return _Solution(
        seed.g * (gain / total),
        eq.rss(gain * unit),
        seed.dof,
        noise2,
        seed.floor * math.sqrt(ratio),
        seed.smooth * ratio * (total / gain) ** 2,
        seed.edges * ratio * (total / gain),
    )


def _auto_size(
    x: np.ndarray,
    y: np.ndarray,
    limit: int,
    noise2: float,
    fixed: bool,
    first: int,
    clips: tuple[np.ndarray | None, np.ndarray | None],
    report: Callable[[str], None],
) -> tuple[_Normal, _Solution]:
    """Grow the support from ``first`` through :data:`_SIZES` until the kernel stops growing.

    Growth stops when the outer tenth of the support holds less than 1 % of the energy or no
    more than noise alone would put there (``_FLOOR`` times the posterior std per pixel), or
    when the larger support no longer lowers the misfit by more than twice the variance per
    extra effective parameter (Akaike's criterion); then the smaller one is kept. Akaike's
    test applies only once the smaller kernel looks nearly complete (under ``_AIC_BORDER`` of
    its energy in the border): a support that misses a ring or a large disk entirely fits no
    better when it grows a little, yet is far too small.
    """
    best: tuple[_Normal, _Solution] | None = None
    complete = False
    for m in [s for s in _SIZES if first <= s < limit] + [limit]:
        report(f"kernel support {m} px")
        eq = _normal_equations(x, y, m, _excluded_outputs(*clips, m))
        sol = _solve(eq, noise2, fixed_noise=fixed, start=None if best is None else best[1])
        if best is not None and complete:
            prev = best[1]
            if sol.rss + 2 * sol.noise2 * sol.dof >= prev.rss + 2 * sol.noise2 * prev.dof:
                break
        best = (eq, sol)
        k, band = sol.g, max(1, m // 10)
        total = float(k.sum())
        border = total - float(k[band:-band, band:-band].sum())
        noise_border = _FLOOR * sol.floor * (m * m - (m - 2 * band) ** 2)
        if border <= max(_BORDER_ENERGY * total, noise_border):
            break
        complete = border < _AIC_BORDER * total
    assert best is not None
    return best


def _tukey(n: int, alpha: float = 0.2) -> np.ndarray:
    """Tukey (tapered cosine) window of ``n`` points, flat but for ``alpha`` of its length
    (``scipy.signal.windows.tukey``, without importing scipy.signal: over a second)."""
    if n < 2:
        return np.ones(n)
    edge = np.minimum(np.arange(n), np.arange(n)[::-1]) / (alpha * (n - 1))
    return np.where(edge < 0.5, 0.5 * (1 - np.cos(2 * np.pi * edge)), 1.0)


def _locate(
    sharp: np.ndarray,
    blurry: np.ndarray,
    reach: int,
    clips: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[tuple[int, int], float]:
    """Whole-pixel displacement of ``blurry`` from ``sharp`` and a rough kernel radius.

    The cross-correlation of the two gradient fields is about the kernel itself (a natural
    image's gradients are nearly white), placed at the displacement. Its peak lies on the
    kernel's brightest part, which for a ring or a large disk is not its centre, so the
    displacement is the centroid of the positive correlation within ``reach`` px, re-centred
    from the peak until it settles. The radius holding 90 % of that correlation is a lower
    bound to start the support search from. The edges of ``clips`` (clipped plateaus of
    each image) are left out: they would correlate with each other, not with the scene.
    """
    # float32 throughout: only the correlation's peak region matters, not its last digits.
    h, w = sharp.shape
    window = np.outer(_tukey(h), _tukey(w)).astype(np.float32)
    shape = (scipy.fft.next_fast_len(h, real=True), scipy.fft.next_fast_len(w, real=True))

    def gradients(image: np.ndarray, clip: np.ndarray | None) -> list[np.ndarray]:
        # A tapered window keeps the image borders from adding a cross of correlation at zero
        # lag; zero padding to a fast length only removes wrap-around.
        win = window
        if clip is not None and clip.any():
            win = window * ~ndi.binary_dilation(clip, iterations=2)
        image = np.asarray(image, np.float32)
        out = []
        for axis in (0, 1):
            grad = np.zeros_like(image)
            ahead = (slice(1, None), slice(None)) if axis == 0 else (slice(None), slice(1, None))
            behind = (slice(None, -1), slice(None)) if axis == 0 else (slice(None), slice(None, -1))
            np.subtract(image[ahead], image[behind], out=grad[ahead])
            grad *= win
            out.append(scipy.fft.rfft2(grad, shape, workers=_WORKERS))
        return out

    fx = gradients(sharp, None if clips is None else clips[0])
    fy = gradients(blurry, None if clips is None else clips[1])
    spectrum = np.conj(fx[0]) * fy[0] + np.conj(fx[1]) * fy[1]
    total = scipy.fft.irfft2(spectrum, shape, workers=_WORKERS)
    # Only a box around the peak is searched: the displacement's neighbourhood.
    peak = np.array(np.unravel_index(int(np.argmax(total)), shape))
    box = min(4 * reach, min(shape) // 2 - 1)
    offsets = np.arange(-box, box + 1)
    c = total[np.ix_((peak[0] + offsets) % shape[0], (peak[1] + offsets) % shape[1])]
    c = np.maximum(c - _REGISTER_LEVEL * total.max(), 0.0)  # the kernel, not the background
    yy, xx = np.meshgrid(offsets, offsets, indexing="ij")
    centre = np.zeros(2)
    for step in range(6):
        # The peak may lie on the kernel's rim: the first centroid takes in a kernel's full
        # width around it, the later ones ``reach`` around the centre found.
        near = np.hypot(yy - centre[0], xx - centre[1]) <= (2 * reach if step == 0 else reach)
        wgt = c * near
        moved = np.array([(wgt * yy).sum(), (wgt * xx).sum()]) / max(wgt.sum(), 1e-300)
        if np.allclose(moved, centre, atol=0.25):
            break
        centre = np.clip(moved, -max(box - reach, 0), max(box - reach, 0))
    # Circular lags: a displacement past half the padded size is a negative one.
    lag = (peak + centre + np.array(shape) // 2) % np.array(shape) - np.array(shape) // 2
    dy, dx = np.rint(lag).astype(int)
    r = np.hypot(yy - centre[0], xx - centre[1])[near]
    order = np.argsort(r)
    mass = np.cumsum(c[near][order])
    radius = float(r[order][np.searchsorted(mass, 0.9 * mass[-1])]) if mass[-1] > 0 else 0.0
    return (int(dy), int(dx)), radius


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
    """(H, W, C) float64, after the checks that name the image (dtype, finite, not constant)."""
    lum = as_float_image(image, channel_axis=channel_axis, allow_constant=False, name=name)
    if channel_axis is None:  # grey: the float32 luminance every map reads
        return lum.astype(np.float64)[..., None]
    return channels_last(image, channel_axis, dtype=np.float64)[0]


def _intensity(eq: _Normal, g: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """Unit-sum kernel (convolution order) and least-squares gain, offset and residual RMS."""
    unit = g.ravel() / g.sum()
    gain = float(eq.rhs @ unit) / max(float(unit @ eq.gram @ unit), 1e-300)
    offset = eq.y_mean - gain * (float(eq.sums @ unit) / eq.n + eq.x_mean)
    residual = math.sqrt(eq.rss(gain * unit) / eq.n)
    return unit.reshape(g.shape)[::-1, ::-1], gain, offset, residual


@renamed_keywords(noise="noise_sigma")
def estimate_kernel(
    sharp: Any,
    blurry: Any,
    *,
    size: int | None = None,
    channel_axis: int | None = None,
    align: bool = True,
    noise_sigma: float | None = None,
    max_size: int | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> Kernel:
    """Estimate the blur kernel that turns ``sharp`` into ``blurry``.

    The model is ``blurry = gain · (sharp ⊛ k) + offset + noise`` on the valid region only (the
    outputs whose whole neighbourhood lies inside ``sharp``), so light that entered the blurred
    frame from outside it biases nothing, and no padding or periodicity is assumed. With the
    offset eliminated, the exact normal equations of this least-squares problem (white noise:
    the maximum-likelihood weighting) are formed once by FFTs (:func:`_gram`), and

    ``min ½‖valid(sharp ⊛ h) − blurry‖² + ½ λ₂ ‖∇h‖² + λ₁ ‖∇h‖₁  subject to h >= 0``

    is solved for ``h = gain · k`` by ADMM. λ₂ (smoothness) maximises the Bayesian evidence
    and λ₁ (total variation, which keeps the hard edges of disks and rings) is the matching
    Laplace-prior estimate; both scale with the noise variance, estimated from the fit's own
    residual unless ``noise`` is given. Then ``k = h / Σh`` and the gain and offset follow by
    least squares.

    Pixels on a plateau at a clipping level (the integer dtype's limits, or the image's own
    maximum) in either image are kept out of the fit, with every output whose neighbourhood
    holds one (in tiles of 64 outputs, so the fit stays exact on the rest). The result says
    how well the model explains ``blurry`` against what its noise allows
    (:attr:`Kernel.explained`, :attr:`Kernel.matches`) and whether the support held the whole
    kernel; :attr:`Kernel.warnings` puts any doubt in one line each.

    Parameters
    ----------
    sharp, blurry : ndarray
        The pair, of one shape: 2-D greyscale, or with a channel axis.
    size : int, optional
        Kernel side in pixels (odd, at most 63). Default: grow the support through 9, 15,
        23, 31, 41, 51, 63, starting from the extent that the cross-correlation of the two
        gradient fields shows, until its outer tenth holds less than 1 % of the energy or
        no more than the noise would, or a larger support stops paying for its extra
        unknowns.
    channel_axis : int, optional
        Axis of colour channels; one kernel is estimated per channel (with the size and
        registration found on the channel mean).
    align : bool
        Register the pair to sub-pixel accuracy (phase correlation, then the kernel's
        centroid) and remove the shift first. Without it, any misregistration stays in the
        kernel as an offset centroid.
    noise_sigma : float, optional
        Noise standard deviation of ``blurry`` in its intensity units (default: estimated
        from the residual of the fit). Formerly ``noise``, which still works with a
        ``FutureWarning``.
    max_size : int, optional
        Largest side tried by the automatic search (default: a third of the smaller image
        side, at most 63).
    progress : callable, optional
        Called as ``progress(done, total, what)`` after registration, each support size
        tried and each channel's fit.

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
    >>> est.matches, est.warnings
    (True, [])

    An unrelated frame explains little of the blurred one:

    >>> other = data.camera()[300:428, 50:178].astype(float)
    >>> bad = estimate_kernel(other, blur(sharp, true), size=11)
    >>> bad.matches, bad.warnings[0].startswith("the pair does not match")
    (False, True)
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
        if size < 1 or size % 2 == 0 or size > _MAX_SIZE:
            raise BadInputError(
                f"kernel size must be an odd integer from 1 to {_MAX_SIZE}, got {size}"
            )

    x_clip, y_clip = saturated(sharp, channel_axis), saturated(blurry, channel_axis)
    clipped = int(x_clip.sum() + y_clip.sum())
    steps = [0, len(_SIZES) + x.shape[-1] + 1]

    def report(what: str) -> None:
        steps[0] += 1
        if progress is not None:
            progress(min(steps[0], steps[1]), steps[1], what)

    shift, radius = (0.0, 0.0), 0.0
    if align or size is None:
        reach = (size or min(max_size or min(x.shape[:2]) // 3, _MAX_SIZE)) // 2 + 1
        whole, radius = _locate(x.mean(axis=-1), y.mean(axis=-1), reach, (x_clip, y_clip))
        if align:
            x, y = _crop_pair(x, y, whole)
            x_clip, y_clip = _crop_pair(x_clip, y_clip, whole)
            shift = (float(whole[0]), float(whole[1]))
    report("registration")
    shortest = min(x.shape[:2])
    limit = size if size is not None else min(max_size or (shortest + 1) // 3, _MAX_SIZE)
    limit -= 1 - limit % 2
    # At least as many valid equations as unknowns, and a valid region of 8 px or more.
    if limit < 1 or shortest - limit + 1 < max(8, limit):
        need = 2 * max(limit, 1) - 1
        raise BadInputError(
            f"images of {x.shape[0]}x{x.shape[1]} px (after alignment) are too small for a "
            f"{limit}x{limit} kernel; give at least {need} px per side"
        )
    xs, ys = x.mean(axis=-1), y.mean(axis=-1)
    fixed = noise_sigma is not None
    noise2 = (
        positive("noise_sigma", noise_sigma) if noise_sigma is not None else haar_sigma(ys)
    ) ** 2
    clips = (x_clip, y_clip)
    if size is None:
        # Start no smaller than the kernel the gradient correlation shows (a ring's best
        # small-support fit is a compact blob that would look complete).
        first = max((s for s in _SIZES if s <= 2 * radius + 1), default=_SIZES[0])
        eq, sol = _auto_size(xs, ys, limit, noise2, fixed, first, clips, report)
        size = eq.m
    else:
        eq = _normal_equations(xs, ys, size, _excluded_outputs(*clips, size))
        sol = _solve(eq, noise2, fixed_noise=fixed)
        report(f"kernel support {size} px")
    steps[0] = len(_SIZES) + 1

    no_kernel = BadInputError(
        "the pair does not match: no positive kernel explains it (unrelated or inverted?)"
    )
    if not sol.g.sum() > 0:
        raise no_kernel
    moved = False
    if align:
        # Remove the sub-pixel misregistration that the kernel's centroid reveals, when it
        # exceeds a tenth of a pixel (below that it stays in the kernel).
        frac = _centroid_offset(sol.g[::-1, ::-1])
        if max(abs(frac[0]), abs(frac[1])) > 0.1:
            y = np.stack([_unshift(y[..., c], frac) for c in range(y.shape[-1])], axis=-1)
            x, y = x[2:-2, 2:-2], y[2:-2, 2:-2]  # reflection artefacts at the very edge
            # A clipped pixel of blurry now spreads over its neighbours.
            y_clip = ndi.binary_dilation(ndi.shift(y_clip, (-frac[0], -frac[1]), order=0))
            x_clip, y_clip = x_clip[2:-2, 2:-2], y_clip[2:-2, 2:-2]
            shift = (shift[0] + frac[0], shift[1] + frac[1])
            moved = True

    excluded = _excluded_outputs(x_clip, y_clip, size)
    kernels, gains, offsets, residuals, noises = [], [], [], [], []
    explained: list[float] = []
    explainable: list[float] = []
    measured: list[float] = []
    seed = sol
    for c in range(x.shape[-1]):
        if x.shape[-1] > 1 or moved:
            # Colour channels carry the mean's weights over to their own gain and noise, and
            # warm-start from its kernel: about one ADMM each, no evidence iterations. A
            # realigned grey pair keeps the weights and warm-starts from the first solution.
            eq = _normal_equations(x[..., c], y[..., c], size, excluded)
            start = seed if x.shape[-1] == 1 else _carried(eq, seed, noise2 if fixed else None)
            sol = _solve(eq, sol.noise2, fixed_noise=fixed, start=start or seed, refit=not start)
        report(f"channel {c + 1} of {x.shape[-1]}" if x.shape[-1] > 1 else "fit")
        if not sol.g.sum() > 0:
            raise no_kernel
        k, gain_c, offset_c, residual_c = _intensity(eq, sol.g)
        kernels.append(k)
        gains.append(gain_c)
        offsets.append(offset_c)
        residuals.append(residual_c)
        noises.append(math.sqrt(sol.noise2))
        # The noise the fit cannot explain, measured on blurry alone.
        sigma = float(noise_sigma) if noise_sigma is not None else haar_sigma(y[..., c])
        measured.append(sigma)
        tss = max(eq.yy, 1e-300)
        explained.append(1.0 - residual_c**2 * eq.n / tss)
        explainable.append(max(1.0 - sigma**2 * eq.n / tss, 0.0))

    kernel = np.stack(kernels, axis=-1)
    gain: float | np.ndarray
    offset: float | np.ndarray
    residual: float | np.ndarray
    if channel_axis is None:
        kernel = kernel[..., 0]
        gain, offset, residual = gains[0], offsets[0], residuals[0]
    else:
        gain, offset, residual = np.array(gains), np.array(offsets), np.array(residuals)
    mean_k = kernel if kernel.ndim == 2 else kernel.mean(axis=-1)
    worst = int(np.argmin(np.array(explained) - _MATCH * np.array(explainable)))
    band = max(1, size // 10)
    inner = mean_k[band : size - band, band : size - band].sum() if size > 2 * band else 0.0
    ring = size * size - (size - 2 * band) ** 2
    n_fit = excluded.size if excluded is not None else 1
    return Kernel(
        kernel=kernel,
        sigma=_psf.moments(mean_k).sigma,
        shift=shift,
        gain=gain,
        offset=offset,
        residual=residual,
        noise=float(np.mean(noises)),
        explained=float(explained[worst]),
        explainable=float(explainable[worst]),
        measured_noise=float(np.mean(measured)),
        clipped=clipped,
        excluded=float(excluded.mean()) if excluded is not None and n_fit else 0.0,
        border=float(1.0 - inner / mean_k.sum()),
        border_noise=float(_FLOOR * seed.floor * ring / max(float(seed.g.sum()), 1e-300)),
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
        Fitted parameters (pixels, waves; angles in degrees counter-clockwise from +x as
        displayed, rows running downwards), such that ``psf.render(model, **params)`` redraws
        the fit.
    errors : dict
        One-standard-deviation uncertainties from the Jacobian, ``σ̂² (JᵀJ)⁻¹``.
    centre : (float, float)
        Fitted sub-pixel offset (dy, dx) of the PSF centre from the kernel's middle.
    rel_error : float
        ``‖model − kernel‖ / ‖kernel‖``.
    aic, bic : float
        Akaike and Bayesian (Schwarz [3]_) information criteria; lower is better.
    sigma : float
        The model's sigma in pixels (:func:`psf.sigma_of`).
    derived : dict
        Quantities read off the parameters: ``radius`` (defocus blur-circle radius, px);
        ``sigma_major``, ``sigma_minor`` (px), ``angle`` (degrees, of the major axis, in
        (−90, 90]) and ``axis_ratio`` for the anisotropic models.
    """

    model: str
    params: dict[str, float]
    errors: dict[str, float]
    centre: tuple[float, float]
    rel_error: float
    aic: float
    bic: float
    sigma: float
    derived: dict[str, float] = field(default_factory=dict)


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
        out["derived"] = self.best.derived
        out["fits"] = {
            name: {
                "params": f.params,
                "errors": f.errors,
                "derived": f.derived,
                "centre": list(f.centre),
                "rel_error": f.rel_error,
                "aic": f.aic,
                "bic": f.bic,
                "sigma_px": f.sigma,
            }
            for name, f in self.fits.items()
        }
        return out


# Models whose fits render through the pupil (a few ms a kernel) instead of the Hopkins OTF's
# alias sum; the two agree to 0.5 % (tests/test_psf.py).
_PUPIL_FIT = ("airy", "defocus", "astigmatic")
# The anisotropic models and their (major, minor) axis parameters.
_AXES = {
    "elliptical_gauss": ("sigma_major", "sigma_minor"),
    "astigmatic": ("radius_major", "radius_minor"),
}
_ANISOTROPIC = tuple(_AXES)


def _radial_peak(k: np.ndarray, centre: tuple[float, float]) -> float:
    y, x = np.indices(k.shape)
    r = np.rint(np.hypot(y - centre[0], x - centre[1])).astype(int).ravel()
    profile = np.bincount(r, weights=k.ravel()) / np.maximum(np.bincount(r), 1)
    return float(np.argmax(profile))


def _principal(k: np.ndarray) -> tuple[float, float, float]:
    """Sigma (px) along the kernel's major and minor axes, and the major axis's angle (deg)."""
    vals, vecs = np.linalg.eigh(_psf.moments(k).covariance)
    dy, dx = vecs[:, 1]
    sa, sb = (math.sqrt(max(v, 0.01)) for v in vals[::-1])
    return sa, sb, math.degrees(math.atan2(-dy, dx))


def _render_fit(model: str, params: dict[str, float], shape, offset) -> np.ndarray:
    if model in _PUPIL_FIT:
        p = params
        cutoff = _psf._J1_ZERO / (math.pi * p["radius" if model == "airy" else "airy_radius"])
        if model == "astigmatic":
            w = _psf._astigmatism(p["radius_major"], p["radius_minor"], p["angle"], cutoff)
            spread = max(p["radius_major"], p["radius_minor"])
        else:
            waves, spherical = p.get("waves", 0.0), p.get("spherical", 0.0)

            def w(uy: np.ndarray, ux: np.ndarray) -> np.ndarray:
                return _psf._wavefront(uy * uy + ux * ux, waves, spherical)

            spread = (2 * abs(waves) + 4 * abs(spherical)) / (cutoff / 2)
        return _psf._render_pupil(cutoff, w, spread, 0.0, shape, offset, model)
    return _psf.render(model, shape=shape, offset=offset, **params)


Start = dict[str, float]
Bounds = dict[str, tuple[float, float]]


def _cutoff_of(airy_radius: float) -> float:
    """Incoherent cutoff (cycles/px) of an Airy pattern whose first dark ring is at this radius."""
    return _psf._J1_ZERO / (math.pi * airy_radius)


def _starts(model: str, k: np.ndarray, radius: float) -> tuple[list[Start], Bounds]:
    """Initial parameters from the kernel's moments and the disk fit's ``radius``.

    Several where the misfit has local minima (the wave-optics models).
    """
    m = max(k.shape)
    mo = _psf.moments(k)
    s = max(mo.sigma, 0.3)
    if model == "gauss":
        return [{"sigma": s}], {"sigma": (1e-3, m)}
    if model == "disk":
        return [{"radius": 2 * s}], {"radius": (0.1, m)}
    if model == "ring":
        r = max(_radial_peak(k, mo.centroid), 1.0)
        return (
            [{"radius": r, "width": 2.0, "softness": 0.5}],
            {"radius": (0.5, m), "width": (0.2, 2.0 * m), "softness": (0.0, m / 4)},
        )
    if model == "airy":
        r = max(s / 0.3443, 1.0)
        return [{"radius": r * f} for f in (0.5, 1.0)], {"radius": (0.3, max(m / 2, 1.0))}
    # Wave-optics models: a sharp core (sampled or not) and a core as wide as the kernel, each
    # with the blur circle of the disk fit (``radius``), or a little less.
    # A core wider than a sixth of the kernel is a blob that the Gaussian describes; the bound
    # also keeps the pupil grid (32 samples a pupil radius) small.
    amax = max(m / 6, 1.0)
    airys = sorted({0.8, 1.5, 2.5, 4.0, max(min(s / 0.3443, amax), 0.5)})
    if model == "defocus":
        starts = [
            {"waves": frac * radius * _cutoff_of(a) / 4, "spherical": 0.0, "airy_radius": a}
            for a in airys
            for frac in (0.7, 1.0)
        ]
        starts += [  # spherical aberration: the two sides of focus differ
            {**st, "waves": sign * st["waves"], "spherical": 0.1 + 0.1 * radius * _cutoff_of(a)}
            for st in starts
            for sign in (-1, 1)
            if (a := st["airy_radius"])
        ]
        wmax = m * _cutoff_of(0.3) / 4  # a blur circle as wide as the kernel
        return starts, {
            "waves": (-wmax, wmax),
            "spherical": (0.0, wmax / 2),
            "airy_radius": (0.3, amax),
        }
    sa, sb, angle = _principal(k)
    if model == "elliptical_gauss":
        return (
            [{"sigma_major": sa, "sigma_minor": sb, "angle": angle}],
            {"sigma_major": (1e-3, m), "sigma_minor": (1e-3, m), "angle": (-360.0, 360.0)},
        )
    if model == "astigmatic":
        # The disk radius, split between the axes in the ratio of the moments.
        ra, rb = radius * math.sqrt(sa / sb), radius * math.sqrt(sb / sa)
        starts = [
            {"radius_major": ra * f, "radius_minor": rb * f, "angle": angle, "airy_radius": a}
            for a in airys
            for f in (0.7, 1.0)
        ]
        return starts, {
            "radius_major": (0.0, m),
            "radius_minor": (0.0, m),
            "angle": (-360.0, 360.0),
            "airy_radius": (0.3, amax),
        }
    if model == "motion":
        vals, vecs = np.linalg.eigh(mo.covariance)
        dy, dx = vecs[:, 1]
        length = math.sqrt(max(12 * (vals[1] - 1 / 12), 1.0))
        return (
            [{"length": length, "angle": math.degrees(math.atan2(-dy, dx))}],
            {"length": (0.0, 2.0 * m), "angle": (-360.0, 360.0)},
        )
    raise BadInputError(
        f"fit_psf cannot fit {model!r}; choose from {', '.join(_psf.MODELS)} except box"
    )


def _canonical_axes(model: str, params: dict[str, float]) -> dict[str, float]:
    """Major axis first, angle in (−90, 90]: one name for each ellipse."""
    major, minor = _AXES[model]
    out = dict(params)
    if out[minor] > out[major]:
        out[major], out[minor] = out[minor], out[major]
        out["angle"] += 90.0
    out["angle"] = 90.0 - (90.0 - out["angle"]) % 180.0
    return out


def _fit_one(model: str, k: np.ndarray, radius: float = 0.0) -> ModelFit:
    starts, bounds = _starts(model, k, radius)
    names = list(starts[0])
    c = _psf.moments(k).centroid
    off0 = (c[0] - (k.shape[0] - 1) / 2, c[1] - (k.shape[1] - 1) / 2)
    lim = max(k.shape) / 4
    lo = np.array([*(bounds[n][0] for n in names), -lim, -lim])
    hi = np.array([*(bounds[n][1] for n in names), lim, lim])

    def residual(p: np.ndarray) -> np.ndarray:
        params = dict(zip(names, (float(v) for v in p[:-2]), strict=True))
        try:
            r = _render_fit(model, params, k.shape, (p[-2], p[-1]))
        except BadInputError:  # no energy inside the kernel: as bad as it gets
            r = np.zeros(k.shape)
        return (r - k).ravel()

    from scipy.optimize import least_squares  # slow to import: load on use

    x0s = [np.clip([*(s[n] for n in names), *off0], lo + 1e-9, hi - 1e-9) for s in starts]
    # The wave-optics misfit has a local minimum for each size of the Airy core: polish the
    # start that begins best for each core tried.
    group = names.index("airy_radius") if "airy_radius" in names else None
    best: dict[float, tuple[float, np.ndarray]] = {}
    for x0 in x0s:
        key = 0.0 if group is None else float(x0[group])
        cost = float(np.sum(residual(x0) ** 2))
        if key not in best or cost < best[key][0]:
            best[key] = (cost, x0)
    sol = min(
        (
            least_squares(residual, x0, bounds=(lo, hi), x_scale="jac", max_nfev=60)
            for _, x0 in best.values()
        ),
        key=lambda r: r.cost,
    )
    n, p = k.size, sol.x.size
    rss = max(float(np.sum(sol.fun**2)), 1e-300)
    # An estimated kernel is known to no better than about _FIT_FLOOR of its peak per pixel
    # (regularisation softens edges), so smaller misfits must not buy extra parameters.
    floored = rss + n * (_FIT_FLOOR * float(k.max())) ** 2
    jtj = sol.jac.T @ sol.jac
    cov = rss / max(n - p, 1) * np.linalg.pinv(jtj)
    params = {nm: float(v) for nm, v in zip(names, sol.x[:-2], strict=True)}
    errors = {nm: float(math.sqrt(max(cov[i, i], 0.0))) for i, nm in enumerate(names)}
    derived: dict[str, float] = {}
    if model in _ANISOTROPIC:
        major, minor = _AXES[model]
        if params[minor] > params[major]:
            errors[major], errors[minor] = errors[minor], errors[major]
        params = _canonical_axes(model, params)
        if model == "astigmatic":
            sa, sb, _ = _psf.astigmatic_axes(**params)
        else:
            sa, sb = params["sigma_major"], params["sigma_minor"]
        derived = {
            "sigma_major": sa,
            "sigma_minor": sb,
            "angle": params["angle"],
            "axis_ratio": sa / max(sb, 1e-12),
        }
    elif model == "defocus":
        cutoff = _psf._J1_ZERO / (math.pi * params["airy_radius"])
        derived = {"radius": 4 * abs(params["waves"]) / cutoff}
    return ModelFit(
        model=model,
        params=params,
        errors=errors,
        centre=(float(sol.x[-2]), float(sol.x[-1])),
        rel_error=math.sqrt(rss) / float(np.linalg.norm(k)),
        aic=n * math.log(floored / n) + 2 * p,
        bic=n * math.log(floored / n) + p * math.log(n),
        sigma=_psf.sigma_of(model, **params),
        derived=derived,
    )


def _significant(fit: ModelFit, fits: dict[str, ModelFit]) -> bool:
    """Whether a fit may be chosen: a ring needs a hole, an ellipse a measurable elongation."""
    p = fit.params
    if fit.model == "ring" and "disk" in fits:
        # A "ring" without a hole is a disk with a soft edge (an estimated disk's edge is
        # softened by the regularisation), so it competes only when it has a hole.
        return p["radius"] - p["width"] / 2 > 1.0
    if fit.model in _ANISOTROPIC:
        # The two axes must differ by more than twice their combined uncertainty.
        a, b = _AXES[fit.model]
        return p[a] - p[b] > 2 * math.hypot(fit.errors[a], fit.errors[b])
    return True


def fit_psf(
    kernel: Any,
    *,
    models: Sequence[str] = (
        "gauss",
        "disk",
        "ring",
        "airy",
        "defocus",
        "motion",
        "elliptical_gauss",
        "astigmatic",
    ),
) -> PSFFit:
    """Fit PSF models to a kernel and say which explains it best: "what type of blur is this".

    Each model of :data:`psf.MODELS` is rendered at the kernel's shape with a free sub-pixel
    centre and fitted by bounded nonlinear least squares (trust-region reflective), from the
    kernel's moments (from several starts for the wave-optics models, whose misfit has local
    minima). Uncertainties come from the Jacobian at the optimum; the model with the lowest
    Bayesian information criterion [3]_ is chosen, so extra parameters (the ring's width and
    softness, a second axis) must earn their keep. Misfits below 1 % of the peak per pixel
    count as zero (an estimated kernel is not known better); a ring whose hole is under 1 px
    competes only as what it is, a disk with a soft edge; and an anisotropic model competes
    only when its two axes differ by more than twice their uncertainty.

    The ``defocus`` fit reports the signed defocus ``waves`` (W020), the spherical aberration
    ``spherical`` (W040 >= 0 by convention: an intensity PSF shows only their relative sign,
    so W020 < 0 is the side of focus where the spherical aberration partly cancels defocus)
    and the in-focus ``airy_radius``, from which ``NA = 0.61 λ / (airy_radius · pixel size)``.
    The anisotropic models report ``sigma_major``, ``sigma_minor`` and the major axis's
    ``angle`` in degrees counter-clockwise from +x as displayed (rows running downwards), in
    (−90, 90], in :attr:`ModelFit.derived`.

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
    >>> from defocus.psf import disk, elliptical_gauss
    >>> fit = fit_psf(disk(6.0, shape=17), models=("gauss", "disk", "ring"))
    >>> fit.model, round(fit.best.params["radius"], 2), round(fit.best.sigma, 2)
    ('disk', 6.0, 3.0)
    >>> fit = fit_psf(elliptical_gauss(1.5, 3.0, angle=30.0, shape=21),
    ...               models=("gauss", "elliptical_gauss"))
    >>> fit.model, [round(fit.best.derived[k], 2) for k in ("sigma_major", "sigma_minor", "angle")]
    ('elliptical_gauss', [3.0, 1.5, -60.0])
    """
    k = _psf.as_kernel(kernel)
    if k.ndim != 2:
        raise BadInputError(f"fit_psf needs a 2-D kernel, got shape {k.shape}")
    if not models:
        raise BadInputError("give at least one model to fit")
    # The disk's radius seeds the wave-optics fits with the blur circle's size.
    disk = _fit_one("disk", k)
    radius = disk.params["radius"]
    fits = {name: disk if name == "disk" else _fit_one(name, k, radius) for name in models}
    best = min((name for name in fits if _significant(fits[name], fits)), key=lambda n: fits[n].bic)
    return PSFFit(model=best, fits=fits)


# --------------------------------------------------------------------------------------------
# blind identification from one image


#: Confidence below which :func:`identify` has no answer ("not identifiable here").
IDENTIFY_MIN_CONFIDENCE = 0.3


@dataclass(frozen=True)
class Identification:
    """Blur model and size identified from one blurred image by :func:`identify`.

    Attributes
    ----------
    model : str
        ``"disk"`` or ``"gauss"``.
    params : dict
        Keyword arguments of :func:`psf.render` for that model: ``{"radius": R}`` or
        ``{"sigma": s}``, in pixels.
    sigma : float
        Blur sigma in pixels (R/2 for a disk).
    diameter : float or None
        Disk diameter 2R in pixels; None for a Gaussian.
    confidence : float
        In [0, 1]: how clearly the chosen model beats the other and an unblurred spectrum,
        lowered when the cepstrum disagrees about a disk's diameter.
    """

    model: str
    params: dict[str, float]
    sigma: float
    diameter: float | None
    confidence: float

    @property
    def identified(self) -> bool:
        """Whether the confidence reaches :data:`IDENTIFY_MIN_CONFIDENCE`: below it the model
        and size are not an answer, and the command line refuses to report or use them."""
        return self.confidence >= IDENTIFY_MIN_CONFIDENCE

    @property
    def verdict(self) -> str:
        """One line: the identified blur, or why there is none."""
        if not self.identified:
            return (
                f"blur not identifiable from this image (confidence {self.confidence:.2f} < "
                f"{IDENTIFY_MIN_CONFIDENCE}): no clear spectral zeros or fall-off"
            )
        shown = ", ".join(f"{k}={v:.4g}" for k, v in self.params.items())
        line = f"{self.model}({shown}), sigma {self.sigma:.4g} px"
        if self.diameter is not None:
            line += f", diameter {self.diameter:.4g} px"
        return f"{line}; confidence {self.confidence:.2f}"

    def kernel(self) -> np.ndarray:
        """The identified PSF rendered by :func:`psf.render` (sums to 1)."""
        params: dict[str, Any] = dict(self.params)
        return _psf.render(self.model, **params)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON summary."""
        return {
            "model": self.model,
            "params": dict(self.params),
            "sigma_px": self.sigma,
            "diameter_px": self.diameter,
            "confidence": self.confidence,
            "identified": self.identified,
            "verdict": self.verdict,
        }


def _periodic_spectrum(tile: np.ndarray) -> np.ndarray:
    """Power spectrum of the periodic component of a tile (Moisan [6]_).

    Removing the smooth component that the tile's borders induce suppresses the cross of
    edge artefacts without a window, so the spectrum's zeros are not smeared by leakage.
    """
    u = tile - tile.mean()
    v = np.zeros_like(u)
    v[0, :] += u[-1, :] - u[0, :]
    v[-1, :] -= u[-1, :] - u[0, :]
    v[:, 0] += u[:, -1] - u[:, 0]
    v[:, -1] -= u[:, -1] - u[:, 0]
    h, w = u.shape
    cy = np.cos(2 * np.pi * np.arange(h) / h)[:, None]
    cx = np.cos(2 * np.pi * np.arange(w) / w)[None, :]
    denom = 2 * cy + 2 * cx - 4
    denom[0, 0] = 1.0
    smooth = scipy.fft.fft2(v) / denom
    smooth[0, 0] = 0.0
    return np.abs(scipy.fft.fft2(u) - smooth) ** 2


def _tile_side(shape: tuple[int, ...]) -> int:
    """Square tile for spectra: the whole image up to 1024 px, at an FFT-friendly size."""
    side = min(min(shape), 1024)
    while scipy.fft.next_fast_len(side) != side:
        side -= 1
    return side


@dataclass(frozen=True)
class _Rings:
    """Ring-averaged power spectrum and where to evaluate candidate transfer functions.

    Rings k = 2 .. side/2 (frequency k/side cycles/px). Low rings, where a ring spans a
    wide relative band, average a candidate over their actual grid frequencies; higher ones
    use their centre.
    """

    power: np.ndarray
    freq: np.ndarray
    radii: np.ndarray  # evaluation frequencies
    ring: np.ndarray  # ring index (from 0) of each evaluation frequency
    weight: np.ndarray  # grid points each stands for
    box: np.ndarray  # mean |sinc|² of the pixel box there (area-sampled disks)

    def average(self, h2: np.ndarray, *, box: bool) -> np.ndarray:
        w = self.weight * self.box if box else self.weight
        total = np.bincount(self.ring, weights=self.weight, minlength=self.freq.size)
        out = np.empty((h2.shape[0], self.freq.size))
        for c in range(h2.shape[0]):
            out[c] = np.bincount(self.ring, weights=h2[c] * w, minlength=self.freq.size)
        return out / total


def _radial_power(image: np.ndarray) -> _Rings:
    """Power spectrum averaged over half-overlapping tiles and over rings of one frequency."""
    side = _tile_side(image.shape)

    def starts(n: int) -> np.ndarray:
        return np.unique(np.linspace(0, n - side, max(1, round(2 * n / side) - 1)).astype(int))

    total = np.zeros((side, side))
    ys, xs = starts(image.shape[0]), starts(image.shape[1])
    for y0 in ys:
        for x0 in xs:
            total += _periodic_spectrum(image[y0 : y0 + side, x0 : x0 + side])
    f = scipy.fft.fftfreq(side)
    rho = np.hypot(f[:, None], f[None, :]).ravel()
    ring = np.rint(rho * side).astype(int)
    box = ((np.sinc(f[:, None]) * np.sinc(f[None, :])) ** 2).ravel()
    n = side // 2 + 1
    keep = (ring >= 2) & (ring < n)
    ring, rho, box, total = ring[keep] - 2, rho[keep], box[keep], total.ravel()[keep]
    counts = np.bincount(ring)
    power = np.bincount(ring, weights=total) / counts / (ys.size * xs.size)
    low = ring < 46
    radii, inverse = np.unique(np.round(rho[low], 12), return_inverse=True)
    mult = np.bincount(inverse).astype(float)
    high = np.arange(44, n - 2)
    return _Rings(
        power=power,
        freq=(np.arange(n - 2) + 2) / side,
        radii=np.concatenate([radii, (high + 2) / side]),
        ring=np.concatenate([np.bincount(inverse, weights=ring[low]) / mult, high]).astype(int),
        weight=np.concatenate([mult, counts[high]]).astype(float),
        box=np.concatenate(
            [
                np.bincount(inverse, weights=box[low]) / mult,
                np.bincount(ring, weights=box)[high] / counts[high],
            ]
        ),
    )


def _noise_shape(image: np.ndarray, f: np.ndarray) -> np.ndarray:
    """The image's noise power spectrum (:func:`noise_spectrum`, measured in its flattest
    blocks) averaged over rings and read at frequencies ``f`` (cycles/px); mean 1 if white."""
    spec = noise_spectrum(image)
    b = spec.shape[0]
    q = scipy.fft.fftfreq(b) * b
    ring = np.rint(np.hypot(q[:, None], q[None, :])).astype(int).ravel()
    profile = np.bincount(ring, weights=spec.ravel()) / np.maximum(np.bincount(ring), 1)
    return np.interp(f * b, np.arange(profile.size), profile)


def _fit_spectrum(
    logp: np.ndarray,
    f: np.ndarray,
    h2: np.ndarray,
    noise: np.ndarray | None = None,
    iters: int = 25,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``log P ≈ log(A f^−α |H|² + N₀ S)`` for each row of candidate ``|H|²``.

    A, α (the natural-image power law) and N₀ (the noise level) are fitted per candidate by
    damped Gauss–Newton, vectorised over candidates; ``S`` is the noise spectrum's shape at
    ``f`` (white if None). Returns the residual sums of squares and the fitted α.
    """
    nc = h2.shape[0]
    logf = np.log(f)[None, :]
    shape = np.ones_like(f) if noise is None else np.maximum(noise, 1e-6)
    alpha = np.full(nc, 2.0)
    tail = slice(-max(4, logp.size // 10), None)
    logn = np.full(nc, float(np.median(logp[tail] - np.log(shape[tail]))))
    sig = np.log(np.maximum(h2, 1e-12)) - alpha[:, None] * logf
    use = h2 > 0.1
    loga = np.sum((logp[None, :] - sig) * use, axis=1) / np.maximum(use.sum(axis=1), 1)
    theta = np.stack([loga, alpha, logn], axis=1)
    damping = np.full(nc, 1e-3)

    def residual(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = np.exp(np.clip(t[:, :1] - t[:, 1:2] * logf, -700, 700)) * h2
        nz = np.exp(t[:, 2:3]) * shape[None, :]
        model = s + nz
        return logp[None, :] - np.log(model), s / model, nz / model

    r, ws, wn = residual(theta)
    cost = np.sum(r * r, axis=1)
    for _ in range(iters):
        jac = np.stack([ws, -logf * ws, wn], axis=2)  # d(log model)/d(theta)
        jtj = np.einsum("cfi,cfj->cij", jac, jac)
        jtr = np.einsum("cfi,cf->ci", jac, r)
        jtj += damping[:, None, None] * np.eye(3) * (1 + jtj.diagonal(axis1=1, axis2=2))[:, :, None]
        step = np.linalg.solve(jtj, jtr[:, :, None])[:, :, 0]
        trial = theta + step
        trial[:, 1] = np.clip(trial[:, 1], 0.0, 5.0)
        r2, ws2, wn2 = residual(trial)
        cost2 = np.sum(r2 * r2, axis=1)
        better = cost2 < cost
        theta[better], r[better], ws[better], wn[better] = (
            trial[better],
            r2[better],
            ws2[better],
            wn2[better],
        )
        cost = np.where(better, cost2, cost)
        damping = np.where(better, damping / 3, damping * 4)
    return cost, theta[:, 1]


def _cepstrum_diameter(image: np.ndarray, largest: float) -> float | None:
    """Diameter of a disk blur from the power cepstrum's negative ring [1]_ (None if absent)."""
    side = 1 << int(math.log2(min(image.shape)))
    side = min(side, 1024)
    y0, x0 = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    power = _periodic_spectrum(image[y0 : y0 + side, x0 : x0 + side])
    ceps = scipy.fft.ifft2(np.log(power + power.mean() * 1e-6)).real
    q = scipy.fft.fftfreq(side) * side
    rho = np.hypot(q[:, None], q[None, :])
    ring = np.rint(rho).astype(int).ravel()
    n = min(int(largest) + 3, side // 2)
    profile = np.bincount(ring, weights=ceps.ravel())[:n] / np.bincount(ring)[:n]
    lo = 4
    if n <= lo + 2:
        return None
    k = lo + int(np.argmin(profile[lo:n]))
    if k >= n - 1 or profile[k] >= 0:
        return None
    a, b, c = profile[k - 1], profile[k], profile[k + 1]
    return float(k + 0.5 * (a - c) / (a - 2 * b + c))


def identify(
    image: Any,
    *,
    channel_axis: int | None = None,
    models: Sequence[str] = ("disk", "gauss"),
) -> Identification:
    """Identify a uniform blur (disk or Gaussian) and its size from one blurred image.

    The power spectrum of the image's periodic component [6]_ is averaged over half-overlapping
    tiles and over rings of equal frequency. Each candidate PSF's ``|H(f)|²`` (a disk's jinc²
    with its several zeros, a Gaussian's fall-off) times a natural-image power law ``A f^−α``
    [2]_ plus a noise floor ``N₀ S(f)`` is fitted to the log spectrum over every ring, with
    A, α and N₀ free, and the size with the smallest residual wins. ``S`` is the shape of the
    noise power spectrum that :func:`defocus.noise.noise_spectrum` measures in the image's
    flattest blocks: demosaicing, JPEG and scan electronics make real noise fall with
    frequency, and a white floor would read that fall as blur. Matching the whole comb of
    zeros, not only the first, keeps small disks from locking onto the wrong zero. The
    model whose best fit has the lower residual is chosen; the disk diameter is checked
    against the power cepstrum's negative ring [1]_. When nothing is identified at full
    resolution, the image is tried again at half and a quarter of it (large blur), and sizes
    are given in full-resolution pixels.

    Parameters
    ----------
    image : ndarray
        Blurred image, 2-D or with ``channel_axis`` (its luminance is used); at least 64 px
        per side.
    channel_axis : int, optional
        Axis of colour channels.
    models : sequence of {"disk", "gauss"}
        Candidate models.

    Returns
    -------
    Identification

    Examples
    --------
    >>> from skimage import data
    >>> from defocus.psf import disk
    >>> from defocus.synth import blur
    >>> found = identify(blur(data.camera(), disk(8.0)))
    >>> found.model, round(found.diameter)
    ('disk', 16)
    """
    lum = as_float_image(image, channel_axis=channel_axis, min_size=64, allow_constant=False)
    lum = lum.astype(np.float64)
    models = tuple(models)
    if not models or any(m not in ("disk", "gauss") for m in models):
        raise BadInputError(f"identify fits 'disk' and/or 'gauss'; got {models!r}")
    found = _identify(lum, models)
    factor = 1
    # A large blur leaves most rings to the noise floor, and processing (demosaicing, JPEG)
    # bends that floor where a model of it is least sure: the same image at half and a quarter
    # of the resolution (2 x 2 block means) holds the blur's fall-off in fewer, cleaner rings.
    while not found.identified and min(lum.shape) >= 4 * 64 and factor < 4:
        h, w = lum.shape[0] // 2 * 2, lum.shape[1] // 2 * 2
        lum = lum[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        factor *= 2
        coarse = _identify(lum, models)
        if coarse.identified:
            params = {k: v * factor for k, v in coarse.params.items()}
            diameter = None if coarse.diameter is None else coarse.diameter * factor
            return Identification(
                coarse.model, params, coarse.sigma * factor, diameter, coarse.confidence
            )
    return found


def _identify(lum: np.ndarray, models: tuple[str, ...]) -> Identification:
    """:func:`identify` at the resolution of ``lum``."""
    rings = _radial_power(lum)
    f, logp = rings.freq, np.log(np.maximum(rings.power, 1e-300))
    side = round(1 / (f[1] - f[0]))

    def candidates(model: str, grid: np.ndarray) -> np.ndarray:
        rho = rings.radii[None, :]
        if model == "disk":
            arg = np.maximum(2 * np.pi * grid[:, None] * rho, 1e-12)
            return rings.average((2 * scipy.special.j1(arg) / arg) ** 2, box=True)
        return rings.average(np.exp(-4 * np.pi**2 * grid[:, None] ** 2 * rho**2), box=False)

    noise = _noise_shape(lum, f)
    best: dict[str, tuple[float, float]] = {}
    none_cost = float(_fit_spectrum(logp, f, np.ones((1, f.size)), noise)[0][0])
    for model in models:
        if model == "disk":
            grid = np.arange(0.5, side / 6, 0.1)
        else:
            grid = np.geomspace(0.3, side / 12, 300)
        cost, _ = _fit_spectrum(logp, f, candidates(model, grid), noise)
        i = int(np.argmin(cost))
        # Refine between the neighbouring grid points.
        fine = np.linspace(grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)], 21)
        cost, _ = _fit_spectrum(logp, f, candidates(model, fine), noise)
        j = int(np.argmin(cost))
        best[model] = (float(fine[j]), float(cost[j]))
    chosen = min(best, key=lambda name: best[name][1])
    value, chosen_cost = best[chosen]
    n = f.size
    # Model probability from the Schwarz criterion (equal parameter counts: the residual ratio).
    others = [c for name, (_, c) in best.items() if name != chosen]
    p_model = 1.0
    if others:
        delta = 0.5 * n * math.log(min(others) / max(chosen_cost, 1e-300))
        p_model = 1.0 / (1.0 + math.exp(-min(delta, 700.0)))
    explained = max(0.0, 1.0 - chosen_cost / max(none_cost, 1e-300))
    confidence = p_model * explained
    if chosen == "disk":
        ceps = _cepstrum_diameter(lum, 2 * value + 8)
        if ceps is None or abs(ceps - 2 * value) > 2.0:
            confidence *= 0.5
        params = {"radius": value}
        return Identification(
            "disk", params, _psf.sigma_of("disk", **params), 2 * value, float(confidence)
        )
    params = {"sigma": value}
    return Identification("gauss", params, value, None, float(confidence))
