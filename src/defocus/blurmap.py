"""Absolute per-pixel blur estimation: a dense map of sigma in pixels with a confidence.

Method
------
The estimator is built from the physics of a blurred edge, so that contrast, noise and
quantisation cannot pass for detail. Only the reading of a measured cell's scale curve in dense
texture is learned (step 5); the physics alone decides what is measured.

1. **Noise.** :func:`defocus.noise.estimate_noise` fits a signal-dependent, spatially correlated,
   quantised noise model. For every scale below it gives the noise energy a pixel would show
   without any structure, at that pixel's own intensity. JPEG leaves flat blocks exactly flat,
   so its compression error escapes that model; where the image shows the 8 x 8 block grid, the
   steps across it bound the error's variance from below, and that bound is a floor on the
   noise (Wallace 1992 describes the block coding). A camera's pipeline leaves more error on
   intensity ramps than on flat areas; the model measures that excess against the local slope
   from the image itself, and each cell's noise is that of its intensity and its slope.
2. **Scale space.** Gradient energies ``|∇L_s|²`` at 15 scales ``s`` = 0.5 ... 64 px (half-octave
   steps) on a block-mean pyramid; the exact scale each level applies (Gaussian increments, the
   pyramid's averaging and the difference operator) is tracked, not assumed.
3. **Edges and significance.** A 4 x 4 px cell holds an edge at scale ``s`` when one of its
   pixels is a gradient maximum across the edge (non-maximum suppression) and its energy
   exceeds what noise reaches there with probability 1e-3. A one-grey-level staircase, a JPEG
   block or shot noise is explained by the noise model and never counts. With hysteresis
   (Canny 1986) the edge's own scale is sought only among scales three times above that
   threshold, so slightly misjudged fine-scale noise cannot outrank a wide edge; a cell whose
   energy still rises where it stops being a maximum sat on the flank of a wider edge and
   holds no measurement.
4. **Blur from the scale curve.** For a step of height ``A`` blurred by ``σ``, the gradient
   energy at the edge is ``A² / (2π (σ² + s²))`` (Lindeberg 1998; Elder & Zucker 1998 use the same
   scale behaviour). Its ``γ = 1/2`` normalised form ``s |∇L_s|²`` peaks at ``s = σ``; a
   weighted straight-line fit of ``1 / |∇L_s|²`` against ``s²`` on the significant scales
   around that peak gives ``σ² = intercept / slope``, whatever ``A``: the estimate is
   invariant to gain and offset by construction. The noise's share of the energy is removed as
   measured on straight edges, so a dim edge reads about the σ of a bright one. Under
   ``psf="disk"`` (radius ``R = 2σ``) a lone edge reads 1.26x high (its line spread function is
   flatter at the centre), but dense texture reads as under the Gaussian, whose transfer function
   the disk's matches to second order in frequency: one factor, 0.89, sits between the two.
   Where the energy still grows at the largest usable scale the blur exceeds what the image
   shows, and the cell is a lower bound.
5. **Dense texture.** Where neighbouring edges are closer than the blur, those of opposite
   sign cancel at scales near their spacing, the energy falls faster than the step law, and the
   line fit reads sigma low (0.6-0.75x, a disk PSF alike). A small network trained on
   images the blur-map benchmark does not use reads a correction of log sigma from the curve's
   shape around its peak, its departure from the step law and the measured cells around it (how
   crowded, what they read; not its signal-to-noise, which gain changes)
   (:mod:`defocus._blurcorrect`). It changes only measured cells of confidence >= 0.3 whose
   physical sigma lies in 1-16 px (where its training images show blur well), never a lower bound;
   ``correction=False`` gives the physics alone.
6. **Dense fill.** Cell estimates are combined by confidence-weighted normalised convolution
   (Knutsson & Westin 1993) in log sigma on a pyramid: measured regions keep their values, flat
   regions take the nearest measurements' values with a low confidence. A measurement repeated
   over several cells (a coarse level's pixel) counts once, so wide edges do not outvote thin
   ones. The confidence is the precision gathered from the measurements within about a cell,
   each of which vouches for the value shown to within its own error or its distance from
   that value, whichever is larger: a value the fill took from elsewhere, overruling the
   measurement beneath it, reads low.

``σ`` includes the sensor's own pixel integration (about 0.3 px for a perfectly sharp edge).

References
----------
Canny J. (1986) A computational approach to edge detection. IEEE TPAMI 8(6).
Wallace G. K. (1992) The JPEG still picture compression standard. IEEE Trans. Consumer
Electronics 38(1).
Elder J. H., Zucker S. W. (1998) Local scale control for edge detection and blur estimation.
IEEE TPAMI 20(7).
Lindeberg T. (1998) Edge detection and ridge detection with automatic scale selection.
IJCV 30(2).
Knutsson H., Westin C.-F. (1993) Normalized and differential convolution. CVPR.
Goodman J. W. (2005) Introduction to Fourier optics, 3rd ed. Roberts & Company.
Foi A. et al. (2008) Practical Poissonian-Gaussian noise modeling and fitting for single-image
raw-data. IEEE TIP 17(10).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ._array import as_float_image
from ._blurcorrect import correct
from ._errors import BadInputError
from ._types import Progress
from .io import PixelSize, as_pixel_size
from .noise import NoiseModel, cell_slope, estimate_noise, quantum
from .psf import FAMILIES, convert_width

__all__ = ["CONFIDENCE_THRESHOLD", "PSF_FAMILIES", "BlurMap", "blur_map"]

#: PSF families: "disk" is the geometric defocus of a camera, "gauss" SEM probes and
#: microscopes; "auto" means unknown (read as Gaussian).
PSF_FAMILIES = (*FAMILIES, "auto")

# Output grid: estimates live on cells of STRIDE x STRIDE pixels.
STRIDE = 4
# Scale ladder (px): half-octave steps from 0.5 to 64.
SCALES = tuple(0.5 * 2 ** (k / 2) for k in range(15))
#: Context (px) a tile needs around it for the tiled map to equal the whole one.
REACH = int(3 * SCALES[-1]) + 64
# Estimates are fitted as log sqrt(sigma^2 + FLOOR^2): finite for a perfectly sharp edge.
_FLOOR = 0.3
# False-alarm probability per cell and scale of the significance test.
_ALPHA = 1e-3
#: Confidence below which a value is "not measurable here" in summaries and reports.
CONFIDENCE_THRESHOLD = 0.3
# Log-sigma standard error at which a pixel's confidence is one half.
_HALF_CONF_SD = 0.25
# The largest log-sigma standard error of a measurable cell: its confidence
# 1 / (1 + (sd / _HALF_CONF_SD)^2) reaches CONFIDENCE_THRESHOLD. The learned stage reads no other.
_MEASURABLE_SD = _HALF_CONF_SD * float(np.sqrt(1 / CONFIDENCE_THRESHOLD - 1))
# A disk PSF of radius R (sigma = R/2) is read by the Gaussian line fit, then scaled. A lone
# step's energy at the edge sums its frequencies in phase: its line spread function, the chord
# 2 sqrt(R^2 - x^2) / (pi R^2), is lower at the centre than the Gaussian's of the same second
# moment, and the line reads it 1.26x high (1/0.78-1/0.80 for R = 2-64 px from the analytic energy
# curve over the fit window). Dense texture's energy sums its spectrum instead, where the disk's
# transfer function (2 J1(kR) / kR)^2 = 1 - (kR)^2/4 + ... equals the Gaussian's
# exp(-(k sigma)^2) to second order (Goodman 2005 gives the geometric defocus OTF): unscaled, on
# gravel, brick and grass at sigma 2, 4, 6 px the disk reads 1.1x, 0.85-1.0x and 0.75-0.9x what
# the Gaussian does. Which case a cell is the physics cannot tell (the learned stage reads
# crowding); 0.89 (1/1.12) leaves a lone edge 12 % high and dense texture near the Gaussian's
# reading, where 0.79 (the lone edge's factor) read disk texture 0.4-0.6x at sigma 3-9 px.
_DISK_SIGMA_RATIO = 0.89
# Share of sqrt(E N) that noise adds to an edge's energy at the cell's maximum. Measured on
# straight Gaussian-blurred steps (sigma 1-4 px) in white noise at step/noise 4-128: 0.25 reads
# the same sigma at every SNR (within 8 %, one case 27 %); the sqrt(2) of a single pixel's
# expected cross term read low-SNR edges up to 2x too wide, so dim regions read blurrier.
_CROSS = 0.25
_DETECT = 3.0
# Pooled precision at which a pyramid level's local estimate is trusted half-way over the fill.
_TRUST_PRECISION = 2.0


def _in_threads(fn: Callable[[int], None], items: Iterable[int]) -> None:
    """Run ``fn`` on every item on up to four threads (re-raising the first error)."""
    workers = min(4, os.cpu_count() or 1)
    if workers == 1:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(fn, items):
            pass


def _blocks(a: np.ndarray, f: int, how: str = "mean") -> np.ndarray:
    """Mean (float32) or max over ``f`` x ``f`` blocks; a ragged edge is dropped.

    Written as ``f * f`` strided whole-array operations: numpy reduces the small inner axes of
    a ``(h, f, w, f)`` reshape element by element, 8-20x slower. The sums run in the order of
    that reduction (each block row's ``f`` values, then the rows), so the means are the same
    to the last bit.
    """
    h, w = a.shape[0] // f, a.shape[1] // f
    a = a[: h * f, : w * f]
    if f == 1:
        return a.copy() if how == "max" else a.astype(np.float32)
    if how == "max":
        out = np.maximum(a[0::f, 0::f], a[0::f, 1::f])
        for i in range(f):
            for j in range(2 if i == 0 else 0, f):
                np.maximum(out, a[i::f, j::f], out=out)
        return out
    a = a.astype(np.float32, copy=False)
    out = np.zeros((h, w), np.float32)
    row = np.empty((h, w), np.float32)
    for i in range(f):
        np.add(a[i::f, 0::f], a[i::f, 1::f], out=row)
        for j in range(2, f):
            row += a[i::f, j::f]
        out += row
    out /= np.float32(f * f)
    return out


def _nms_rows(e: np.ndarray, gx: np.ndarray, gy: np.ndarray, r0: int, r1: int) -> np.ndarray:
    """True where ``e`` is a maximum across the edge (gradient direction in four bins), for rows
    ``r0:r1`` (neighbours read from the rows around them, edge-replicated past ``e``'s ends)."""
    h, w = e.shape
    p = np.pad(e[max(r0 - 1, 0) : min(r1 + 1, h)], ((r0 == 0, r1 >= h), (1, 1)), mode="edge")
    n = r1 - r0

    def at(dy: int, dx: int) -> np.ndarray:
        return p[1 + dy : 1 + dy + n, 1 + dx : 1 + dx + w]

    x, ax, ay = e[r0:r1], np.abs(gx[r0:r1]), np.abs(gy[r0:r1])
    horiz = ax > 2.414 * ay
    vert = ay > 2.414 * ax
    diag = (gx[r0:r1] * gy[r0:r1]) > 0
    n1 = np.where(
        horiz, at(0, -1), np.where(vert, at(-1, 0), np.where(diag, at(-1, -1), at(-1, 1)))
    )
    keep = x >= n1
    del n1
    n2 = np.where(horiz, at(0, 1), np.where(vert, at(1, 0), np.where(diag, at(1, 1), at(1, -1))))
    keep &= x > n2
    return keep


def _row_bands(h: int, multiple: int = 1) -> tuple[int, range]:
    """Band height (a multiple of ``multiple``) and band starts that cut ``h`` rows into about
    eight bands for :func:`_in_threads`."""
    step = -(-max(64, -(-h // 8)) // multiple) * multiple
    return step, range(0, h, step)


def _edge_cells(level: np.ndarray, f: int, cells: tuple[int, int]) -> np.ndarray:
    """The cells' largest non-maximum-suppressed ``|∇L|²`` (input px units) of a level-``f``
    array, by :func:`_to_cells`.

    Gradient, energy, suppression and the cells' maximum run in bands of rows on up to four
    threads (numpy's element-wise work releases the GIL): each band recomputes the row of energy
    above and below it that suppression reads, and its arrays are a band's size, not the
    image's. Every value is computed as on the whole level, so the result does not depend on
    the banding; bands start on cell boundaries.
    """
    h = level.shape[0]
    m = max(1, STRIDE // f)
    step, starts = _row_bands(h, m)
    c = np.float32(0.25 / (f * f))
    parts: list[np.ndarray] = [np.empty(0)] * len(starts)

    def band(i: int) -> None:
        r0 = starts[i]
        r1 = min(r0 + step, h)
        lo, hi = max(r0 - 1, 0), min(r1 + 1, h)  # energy rows suppression reads
        # Central differences, edge-replicated at the level's border as on the whole level:
        # centred on the pixel, so an edge is found in the cell it crosses.
        sub = level[max(lo - 1, 0) : min(hi + 1, h)]
        p = np.pad(sub, ((lo == 0, hi == h), (1, 1)), mode="edge")
        gx = p[1:-1, 2:] - p[1:-1, :-2]
        gy = p[2:, 1:-1] - p[:-2, 1:-1]
        e = gx * gx
        e += gy * gy
        e *= c
        keep = _nms_rows(e, gx, gy, r0 - lo, r1 - lo)
        x = e[r0 - lo : r1 - lo]
        x *= keep
        parts[i] = _blocks(x, m, "max") if m > 1 else x

    _in_threads(band, range(len(starts)))
    return _to_cells(np.concatenate(parts), max(f, STRIDE), cells, "max")


def _to_cells(a: np.ndarray, f: int, cells: tuple[int, int], how: str) -> np.ndarray:
    """Bring a level-``f`` array to the cell grid: block max/mean below the cell size, nearest
    neighbour above it; edge-padded to the grid's shape."""
    if f < STRIDE:
        a = _blocks(a, STRIDE // f, how)
    elif f > STRIDE:
        r = f // STRIDE
        a = np.repeat(np.repeat(a, r, axis=0), r, axis=1)
    ph, pw = max(0, cells[0] - a.shape[0]), max(0, cells[1] - a.shape[1])
    if ph or pw:
        a = np.pad(a, ((0, ph), (0, pw)), mode="edge")
    return a[: cells[0], : cells[1]]


def _smooth(level: np.ndarray, var: float) -> tuple[np.ndarray, float]:
    """Separable smoothing of variance ``var`` (level px^2); returns it and the variance applied.

    A sampled Gaussian narrower than half a pixel applies much less than its nominal variance,
    so small increments use the three-tap binomial-like kernel ``[v/2, 1 - v, v/2]`` (exactly
    variance ``v``), and larger ones report the sampled kernel's true variance. Filtered in
    bands of rows on threads (``scipy.ndimage`` releases the GIL), each with the kernel's reach
    of rows around it, so every value is the whole level's.
    """
    if var <= 0.5:
        a = var / 2
        k = np.array([a, 1 - 2 * a, a], np.float32)

        def three_tap(x: np.ndarray) -> np.ndarray:
            out = ndi.correlate1d(x, k, axis=0, mode="reflect")
            return ndi.correlate1d(out, k, axis=1, mode="reflect")

        return _by_rows(three_tap, level, 1), var
    sd = float(np.sqrt(var))
    r = int(3.0 * sd + 0.5)
    x = np.arange(-r, r + 1)
    phi = np.exp(-0.5 * x * x / var)
    applied = float((phi * x * x).sum() / phi.sum())

    def gauss(x: np.ndarray) -> np.ndarray:
        return ndi.gaussian_filter(x, sd, mode="reflect", truncate=3.0)

    return _by_rows(gauss, level, r), applied


def _by_rows(fn: Callable[[np.ndarray], np.ndarray], a: np.ndarray, reach: int) -> np.ndarray:
    """``fn(a)`` for a filter ``fn`` that reads ``reach`` rows either side, computed in bands of
    rows on :func:`_in_threads` (edge handling only at ``a``'s own first and last rows)."""
    h = a.shape[0]
    step, starts = _row_bands(h)
    out = np.empty(a.shape, np.float32)

    def band(r0: int) -> None:
        r1 = min(r0 + step, h)
        lo, hi = max(r0 - reach, 0), min(r1 + reach, h)
        out[r0:r1] = fn(a[lo:hi])[r0 - lo : r1 - lo]

    _in_threads(band, starts)
    return out


def _scale_space(img: np.ndarray, cells: tuple[int, int]):
    """Per scale: (effective scale, pyramid factor, edge energy per cell, intensity per cell).

    The edge energy of a cell is its largest non-maximum-suppressed ``|∇L_s|²`` (in input px
    units); the effective scale counts every smoothing the level applied.
    """
    level = img
    f = 1
    var = 0.0  # Gaussian variance applied so far, in input px^2
    for s in SCALES:
        if s / f > 2.1:
            if min(level.shape) < 16:
                return  # the image is too small for this scale and all larger ones
            level = _blocks(level, 2)
            var += f * f / 4.0  # a 2-sample mean at spacing f
            f *= 2
        inc = s * s - var - f * f / 3.0  # the central difference adds f^2 / 3
        if inc > 0:
            level, applied = _smooth(level, inc / (f * f))
            var += applied * f * f
        yield (
            float(np.sqrt(var + f * f / 3.0)),
            f,
            _edge_cells(level, f, cells),
            _to_cells(level, f, cells, "mean"),
        )


@functools.cache
def _white_gains() -> tuple[np.ndarray, np.ndarray]:
    """Mean and (1 - ALPHA) quantile of the cell edge energy for unit white noise, per scale.

    Measured once on a deterministic noise field, since the discrete pyramid's response at
    fine scales departs from the continuous formula ``1 / (4 pi s^4)``.
    """
    n = 1024
    rng = np.random.default_rng(12345)
    noise = rng.standard_normal((n, n)).astype(np.float32)
    cells = (n // STRIDE, n // STRIDE)
    means, quants = [], []
    for _, f, e, _ in _scale_space(noise, cells):
        # The level's own pixels are the independent samples; skip the reflected border.
        core = e[8:-8, 8:-8] if f <= STRIDE else e[:: f // STRIDE, :: f // STRIDE]
        means.append(float(core.mean()))
        # The quantile needs some 16 / ALPHA independent level pixels.
        enough = core.size >= 16 / _ALPHA
        quants.append(float(np.quantile(core, 1 - _ALPHA)) if enough else np.nan)
    m, q = np.array(means), np.array(quants)
    # Coarser levels repeat the pattern of the level two scales finer (the same smoothing in
    # level pixels; most NMS-suppressed pixels are 0, so the ratio to the mean is about 12, not
    # an exponential's 6.9): they take its ratio of quantile to mean.
    for i in range(len(q)):
        if np.isnan(q[i]):
            q[i] = m[i] * q[i - 2] / m[i - 2]
    return m, q


def _estimate(
    img: np.ndarray,
    nm: NoiseModel,
    scale: float,
    progress: Any = None,
    features: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-cell (sigma, log-sigma standard error, lower-bound flag, repeat); sigma NaN = no
    edge. ``repeat`` is the side, in cells, of the pyramid pixel the measurement came from. A
    ``features`` dict receives each cell's scale curve for :mod:`defocus._blurcorrect`."""
    cells = (-(-img.shape[0] // STRIDE), -(-img.shape[1] // STRIDE))
    gain_mean, gain_q = _white_gains()
    k = len(SCALES)
    # Scales the image is too small for keep zero energy: never significant.
    energy = np.zeros((k, *cells), np.float32)
    noise = np.ones((k, *cells), np.float32)
    thresh = np.full((k, *cells), np.inf, np.float32)
    s_eff = np.array(SCALES, np.float64)
    factor = np.ones(k)  # pyramid factor of each scale's level
    weight = np.ones(k)  # the noise spectrum's weight at each scale
    last = 0  # the largest scale the image was big enough for
    slope: np.ndarray | None = None
    for i, (se, f, e, lum) in enumerate(_scale_space(img, cells)):
        s_eff[i], factor[i], last = se, f, i
        if slope is None:  # the finest level's cell means are the image's own
            slope = cell_slope(lum, cell=STRIDE, block=nm.slope_block)
        var = (nm.variance(lum * scale, slope=slope * scale) / scale**2).astype(np.float32)
        weight[i] = nm.spectral_weight(se)
        var *= np.float32(weight[i])
        # A relative floor of 1e-3 of the image's spread keeps noise-free (synthetic) data finite.
        var = np.maximum(var, np.float32(1e-6))
        energy[i] = e
        noise[i] = var * np.float32(gain_mean[i])
        thresh[i] = var * np.float32(gain_q[i])
        if progress is not None:
            progress(i + 1, k, f"scale {SCALES[i]:.3g} px")
    sig = energy > thresh
    # Hysteresis (as in Canny 1986): scales significant at ALPHA join the fit, but the edge's
    # scale (the peak below) is sought only where the energy stands DETECT times above the
    # threshold. Pure noise reaches that with probability ~1e-9 per cell and scale, and rarely
    # even where the noise model underestimates the real noise by 2x (JPEG, ion-beam scan noise);
    # otherwise the large absolute energy of slightly misjudged fine-scale noise would outrank a
    # real wide edge.
    strong = energy > _DETECT * thresh
    # Noise adds its mean energy N and, through the cross term with the edge's own gradient,
    # a share of sqrt(E N) at the cell's maximum: both are removed.
    signal = np.maximum(energy - noise - _CROSS * np.sqrt(energy * noise), np.float32(1e-30))
    score = np.where(strong, s_eff[:, None, None] * signal, -np.inf)
    peak = np.argmax(score, axis=0)
    found = strong.any(axis=0)
    # Weighted line fit of y = 1/S against x = s^2 on the significant scales from three below
    # the peak (at least up to 1.4 px, so a sharp edge has several); above the peak, neighbouring
    # edges start to cancel: weights S^4 / (N^2 + 2 N S), the inverse variance of y. The four
    # scales of each cell's window are gathered first, so the fit runs on 4, not 15, planes.
    lo = np.clip(peak - 3, 0, k - 4)
    win = lo[None] + np.arange(4)[:, None, None]
    use = np.take_along_axis(sig, win, 0)
    sw_ = np.take_along_axis(signal, win, 0).astype(np.float64)
    nw = np.take_along_axis(noise, win, 0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        wt = np.where(use, sw_**4 / (nw * nw + 2 * nw * sw_), 0.0)
    x = (s_eff**2)[win]
    y = 1.0 / sw_
    sw = wt.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = (wt * x).sum(0) / sw
        my = (wt * y).sum(0) / sw
        sxx = (wt * (x - mx) ** 2).sum(0)
        slope = (wt * (x - mx) * (y - my)).sum(0) / sxx
        intercept = my - slope * mx
        sigma2 = intercept / slope
    points = use.sum(0)
    s_peak = s_eff[peak]
    fitted = (points >= 2) & (slope > 0) & np.isfinite(sigma2)
    # A single significant scale, or energy that does not fall: the gamma-normalised peak
    # (sigma = s at the peak) is the estimate, a lower bound when the energy still rises.
    sigma = np.where(fitted, np.sqrt(np.clip(sigma2, 0, None)), s_peak)
    sigma = np.minimum(sigma, 2 * s_peak + 1)
    # Still rising at the largest usable scale: the blur exceeds what the image shows. (A cell
    # with one significant scale is not a bound: noise may hide the finer ones.)
    lower = found & (peak == last)
    # Energy still rising where the cell stops being a maximum across the edge: the maxima at
    # the finer scales were noise ripples on the flank of a wider edge, whose centre lies in
    # another cell. Such a cell holds no measurement of its own.
    last_sig = k - 1 - np.argmax(sig[::-1], axis=0)
    found &= ~((peak == last_sig) & (peak < last))
    # A cell beside an edge sees the edge only at coarse levels, whose pixels span several
    # cells. The fitted model then predicts significant energy at the finer scale below the
    # cell's lowest significant one; a real edge would show it, so such cells are dropped.
    s_at_peak = np.take_along_axis(signal, peak[None], 0)[0]
    first = np.argmax(sig, axis=0)
    below = np.maximum(first - 1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        pred = np.where(
            fitted,
            1.0 / (intercept + slope * s_eff[below] ** 2),
            s_at_peak,
        )
    t_below = np.take_along_axis(thresh, below[None], 0)[0]
    found &= ~((first > 0) & (pred > 3 * t_below))
    # The step height the fit implies, A^2 = 2 pi / slope: a step of a grey level or two is the
    # staircase of a quantised ramp, not an edge.
    with np.errstate(invalid="ignore", divide="ignore"):
        height = np.where(
            fitted,
            np.sqrt(2 * np.pi / slope),
            np.sqrt(2 * np.pi * 2) * s_peak * np.sqrt(s_at_peak),
        )
    floor_var = np.take_along_axis(noise / gain_mean[:, None, None], first[None], 0)[0]
    found &= height * scale >= 3 * nm.quantum
    found &= height >= 2 * np.sqrt(floor_var / np.maximum(weight[first], 1e-6))
    # Standard error of log sigma: the peak's signal-to-noise, how well the straight line fits
    # the energies (log residuals), and whether enough scales were significant.
    with np.errstate(invalid="ignore", divide="ignore"):
        model = intercept + slope * x
        resid = np.where(use, np.log(np.maximum(model, 1e-30) * sw_), 0.0)
        rms = np.sqrt((resid**2).sum(0) / np.maximum(points, 1))
    # The signal-to-noise counts the noise the detection allows for: DETECT times the model's.
    snr = s_at_peak / (_DETECT * np.take_along_axis(noise, peak[None], 0)[0])
    sd = 0.05 + 0.5 / np.sqrt(np.maximum(snr, 1e-6)) + np.where(fitted, rms, 0.0)
    sd = sd + np.where(points >= 3, 0.0, 0.3)
    # A coarse level's pixel spans (f / STRIDE)^2 cells that all repeat one measurement.
    repeat = np.maximum(1.0, factor / STRIDE)[peak]
    sigma = np.where(found, sigma, np.nan).astype(np.float32)
    if features is not None:
        features.update(scales=np.array(SCALES), signal=signal, peak=peak, last=last, rms=rms)
    return sigma, sd.astype(np.float32), lower & found, repeat.astype(np.float32)


def _half(a: np.ndarray) -> np.ndarray:
    """2x2 block mean, padding odd sizes by edge replication."""
    p = ((0, a.shape[0] % 2), (0, a.shape[1] % 2))
    return _blocks(np.pad(a, p, mode="edge"), 2)


# Rows per band of the passes over the cell grid's full-resolution levels: their work memory
# is a few bands, whatever the size of the grid (a 268-MP image has 4096 x 4096 cells).
_BAND = 256
# Reach, in rows, of the fill's and the confidence's Gaussian (sigma 1, truncated at 4).
_GAUSS_REACH = 4


def _rows(h: int) -> range:
    """Band starts (multiples of the even :data:`_BAND`) over ``h`` rows."""
    return range(0, h, _BAND)


def _fill(
    level: Callable[[int, int], tuple[np.ndarray, np.ndarray]], shape: tuple[int, int]
) -> np.ndarray:
    """Confidence-weighted normalised convolution of log sigma.

    On a pyramid, each level gives a precision-weighted local mean (Knutsson & Westin 1993)
    over a neighbourhood twice as wide as the level below. Going from coarse to fine, a level
    replaces the coarser estimate in proportion to the evidence it holds, so well-measured
    regions keep their own values (no leakage across blur edges) while flat regions inherit
    values from the nearest measured ones.

    ``level(r0, r1)`` gives rows ``r0:r1`` of the finest level's precision-weighted values and
    precisions (of ``shape``); it is read in bands, and never held whole: only the coarser
    levels (a third of its size) and the result are. Every value is the whole level's: the
    bands read the rows that the Gaussian, the 2 x 2 means and the upsampling reach.
    """
    h, w = shape
    eps = np.float32(1e-30)
    if min(h, w) <= 2:  # the coarsest level: its local mean is the estimate
        wsum, den = level(0, h)
        d = ndi.gaussian_filter(den, 1.0, mode="reflect")
        return ndi.gaussian_filter(wsum, 1.0, mode="reflect") / np.maximum(d, eps)
    hc, wc = -(-h // 2), -(-w // 2)
    # the next level, held only while it is filled
    filled = _fill(_rows_of(_halved(level, shape)), (hc, wc))
    out = np.empty(shape, np.float32)

    def blend(r0: int) -> None:
        r1 = min(r0 + _BAND, h)
        lo, hi = max(r0 - _GAUSS_REACH, 0), min(r1 + _GAUSS_REACH, h)
        wsum, den = level(lo, hi)
        d = ndi.gaussian_filter(den, 1.0, mode="reflect")
        m = ndi.gaussian_filter(wsum, 1.0, mode="reflect") / np.maximum(d, eps)
        d, m = d[r0 - lo : r1 - lo], m[r0 - lo : r1 - lo]
        # the coarse rows either side that bilinear upsampling reads
        c0, c1 = max(r0 // 2 - 1, 0), min(-(-r1 // 2) + 1, hc)
        up = ndi.zoom(filled[c0:c1], 2, order=1, grid_mode=True, mode="nearest", prefilter=False)
        a = d / (d + np.float32(_TRUST_PRECISION))
        out[r0:r1] = a * m + (1 - a) * up[r0 - 2 * c0 : r1 - 2 * c0, :w]

    _in_threads(blend, _rows(h))
    return out


def _halved(
    level: Callable[[int, int], tuple[np.ndarray, np.ndarray]], shape: tuple[int, int]
) -> np.ndarray:
    """The next pyramid level of :func:`_fill`'s ``level`` (:func:`_half` of both its arrays),
    stacked, computed in bands of an even number of rows."""
    h, w = shape
    out = np.empty((2, -(-h // 2), -(-w // 2)), np.float32)

    def band(r0: int) -> None:
        r1 = min(r0 + _BAND, h)
        for k, a in enumerate(level(r0, r1)):
            out[k, r0 // 2 : -(-r1 // 2)] = _half(a)

    _in_threads(band, _rows(h))
    return out


def _rows_of(a: np.ndarray) -> Callable[[int, int], tuple[np.ndarray, np.ndarray]]:
    """:func:`_fill`'s ``level`` reading rows of the two stacked arrays of ``a``."""
    return lambda r0, r1: (a[0, r0:r1], a[1, r0:r1])


def _confidence(logvar: Callable[[int, int], np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Confidence of the filled map: the measurements' precision gathered around each cell.
    ``logvar(r0, r1)`` gives rows ``r0:r1`` of their log variances; read in bands."""
    h = shape[0]
    out = np.empty(shape, np.float32)

    def band(r0: int) -> None:
        r1 = min(r0 + _BAND, h)
        lo, hi = max(r0 - _GAUSS_REACH, 0), min(r1 + _GAUSS_REACH, h)
        prec = np.exp(-np.clip(logvar(lo, hi), -12.0, 12.0)).astype(np.float32)
        local = ndi.gaussian_filter(prec, 1.0, mode="reflect")[r0 - lo : r1 - lo]
        out[r0:r1] = local / (local + np.float32(1.0 / _HALF_CONF_SD**2))

    _in_threads(band, _rows(h))
    return out


def _upsample(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling from the output grid (cell centres) to full resolution.

    Output pixel ``i`` sits at cell coordinate ``(i + 0.5) / STRIDE - 0.5``, clamped at the
    ends, as ``ndi.zoom(a, STRIDE, order=1, grid_mode=True, mode="nearest")`` places it; written
    by hand as ``STRIDE`` fixed two-tap phases per axis, since those weights repeat: 3-4x faster
    than the general zoom, equal to float32 rounding.
    """
    f = STRIDE
    x = (np.arange(f) + 0.5) / f - 0.5
    lo = np.floor(x).astype(int)  # -1 or 0: the cell before or at the output pixel
    t = (x - lo).astype(np.float32)
    p = np.pad(a.astype(np.float32, copy=False), 1, mode="edge")
    n, m = a.shape
    # Columns on the small grid, then rows: the large output is written in whole rows.
    cols = np.empty((n + 2, m, f), np.float32)
    for i in range(f):
        j = 1 + lo[i]
        np.multiply(p[:, j : j + m], 1 - t[i], out=cols[..., i])
        cols[..., i] += t[i] * p[:, j + 1 : j + 1 + m]
    c = cols.reshape(n + 2, m * f)[:, : shape[1]]
    out = np.empty((n, f, shape[1]), np.float32)
    for i in range(f):
        j = 1 + lo[i]
        np.multiply(c[j : j + n], 1 - t[i], out=out[:, i])
        out[:, i] += t[i] * c[j + 1 : j + 1 + n]
    return out.reshape(n * f, shape[1])[: shape[0]]


def _sample_windows(
    shape: tuple[int, ...], *, tile: int = 256, n: int = 4, align: int = 32
) -> tuple[list[int], list[int], int, int] | None:
    """Where the image-wide sample lies: up to ``n`` x ``n`` tiles of ``tile`` px spread evenly
    over an image of ``shape`` (rows, columns first), starting on multiples of ``align`` px so
    that a JPEG's 8 x 8 grid and the method's 32-px grid run on across the seams. Returns the
    tiles' first rows and columns and their size, or None where the sample is the whole image
    (at most ``n * tile`` px a side)."""
    h, w = shape[:2]
    if h <= n * tile and w <= n * tile:
        return None
    th, tw = min(tile, h), min(tile, w)
    ys = np.unique(np.linspace(0, h - th, min(n, h // th)).astype(int) // align * align)
    xs = np.unique(np.linspace(0, w - tw, min(n, w // tw)).astype(int) // align * align)
    return [int(y) for y in ys], [int(x) for x in xs], th, tw


def _sample(image: np.ndarray, *, channel_axis: int | None = None) -> np.ndarray:
    """The image-wide sample of :func:`_sample_windows`, tiles side by side (channels last).

    The image-wide quantities that only condition the arithmetic (the shift of wide data, the
    intensity spread, a given noise level's grey-level step) are read on it, so that the tiled
    map (:mod:`defocus.tiled`), which cannot afford a pass over the whole image for them, reads
    the same values from the same pixels and gives the same map.

    Examples
    --------
    >>> _sample(np.zeros((2000, 600))).shape
    (1024, 512)
    """
    a = np.asarray(image)
    if channel_axis is not None and -a.ndim <= channel_axis < a.ndim:  # else refused later
        a = np.moveaxis(a, channel_axis, -1)
    where = _sample_windows(a.shape)
    if where is None:
        return a
    ys, xs, th, tw = where
    rows = [np.concatenate([a[y : y + th, x : x + tw] for x in xs], axis=1) for y in ys]
    return np.concatenate(rows, axis=0)


def _wide(dtype: np.dtype) -> bool:
    """Data wider than float32's precision, which :func:`_centred` shifts."""
    return (dtype.kind == "f" and dtype.itemsize > 4) or (dtype.kind in "iu" and dtype.itemsize > 2)


def _offset(image: np.ndarray, *, channel_axis: int | None = None) -> float | None:
    """The shift :func:`_centred` gives wide data: the median of the finite values of
    :func:`_sample`; None for data it does not shift (or with no finite value)."""
    if not _wide(image.dtype) or image.size == 0:
        return None
    sample = _sample(image, channel_axis=channel_axis).astype(np.float64)
    finite = sample[np.isfinite(sample)]
    return float(np.median(finite)) if finite.size else None


def _centred(image: np.ndarray, *, channel_axis: int | None = None) -> np.ndarray:
    """Data wider than float32 minus their median (:func:`_offset`), in float64: a large
    offset (1e6 + small variations, 64-bit counts) would otherwise lose its detail in the
    float32 analysis. Blur ignores offsets, and the noise model sees the same shifted
    intensities."""
    offset = _offset(image, channel_axis=channel_axis)
    if offset is None:
        return image.astype(np.float64) if _wide(image.dtype) else image
    return image.astype(np.float64) - offset


@dataclass(frozen=True, eq=False)
class BlurMap:
    """Per-pixel blur estimate.

    Attributes
    ----------
    sigma : (H, W) ndarray of float32
        Blur in pixels: the per-axis standard deviation of the local PSF. Dense, never NaN.
    confidence : (H, W) ndarray of float32
        In [0, 1]; low where ``sigma`` was propagated from elsewhere (flat regions) or
        departs from the measurements beneath it.
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
        PSF family given: it sets the edge model sigma was read with and the natural parameter
        of :meth:`to_parameter`; sigma is the second moment of the PSF for every family.
    pixel_size : PixelSize or None
        Physical size of a pixel, when known.
    lower_bound : (H, W) ndarray of bool or None
        True where the blur exceeds what the image shows: ``sigma`` is then a lower bound.
    noise : NoiseModel or None
        The noise model the estimate was measured against.
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
    lower_bound: np.ndarray | None = None
    noise: NoiseModel | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.sigma.shape

    def to_parameter(self, kind: str | None = None) -> np.ndarray:
        """Convert sigma to a PSF model's natural parameter, in pixels.

        Parameters
        ----------
        kind : {"sigma", "radius", "diameter", "fwhm", "edge_width"}, optional
            ``radius``/``diameter`` of the uniform disk of the same sigma (R = 2 sigma);
            ``fwhm`` and the 20-80 % ``edge_width`` of the map's own PSF family (a Gaussian's
            FWHM is 2.3548 sigma, a disk's is its diameter), as :func:`defocus.psf.convert_width`
            gives them. Default: ``radius`` for a disk PSF, else ``sigma``.

        Examples
        --------
        >>> bm = blur_map(np.random.default_rng(0).random((64, 64)), psf="disk")
        >>> bool(np.allclose(bm.to_parameter(), 2 * bm.sigma))
        True
        >>> bool(np.allclose(bm.to_parameter("fwhm"), 4 * bm.sigma))
        True
        """
        measures = {
            "sigma": "sigma",
            "radius": "radius",
            "diameter": "diameter",
            "fwhm": "fwhm",
            "edge_width": "edge",
        }
        kind = kind or ("radius" if self.psf == "disk" else "sigma")
        if kind not in measures:
            raise BadInputError(f"unknown parameter {kind!r}; choose from {sorted(measures)}")
        # Both families scale with sigma, so one conversion of sigma = 1 gives the factor.
        model = "disk" if self.psf == "disk" or kind in ("radius", "diameter") else "gauss"
        factor = convert_width(1.0, from_="sigma", to=measures[kind], model=model)
        return (self.sigma * np.float32(factor)).astype(np.float32)

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

    def measurable(self) -> np.ndarray:
        """Pixels whose confidence reaches :data:`CONFIDENCE_THRESHOLD`: elsewhere the value is
        "not measurable here" and must not be reported as a result."""
        return self.confidence >= CONFIDENCE_THRESHOLD

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary over the measurable pixels, with an honest one-line ``verdict``.

        Quantiles are confidence-weighted and taken only over pixels at or above
        :data:`CONFIDENCE_THRESHOLD`. Where fewer than 1 % of the pixels are measurable the
        quantiles are None and the verdict says "not measurable here"; where the median pixel is
        a lower bound it says "sigma > X px".

        Examples
        --------
        >>> noise = np.random.default_rng(0).normal(100, 5, (128, 128))
        >>> blur_map(noise).summary()["verdict"]
        'blur not measurable here: no structure stands above the noise'
        """
        ok = self.measurable().ravel()
        out: dict[str, Any] = {
            "unit": "px",
            "quantity": "sigma (per-axis PSF standard deviation)",
            "psf": self.psf,
            "shape": list(self.sigma.shape),
            "measurable_fraction": round(float(ok.mean()), 4),
            "mean_confidence": round(float(self.confidence.mean()), 4),
            "measured_fraction": round(float(np.isfinite(self.sparse).mean()), 4),
            "noise_sigma": float(f"{self.noise_sigma:.6g}"),
            "noise": None if self.noise is None else self.noise.summary(),
            "pixel_size": None if self.pixel_size is None else str(self.pixel_size),
            "confidence_threshold": CONFIDENCE_THRESHOLD,
        }
        if ok.mean() < 0.01:
            out["sigma"] = None
            out["verdict"] = "blur not measurable here: no structure stands above the noise"
            return out
        s = self.sigma.ravel()[ok]
        w = self.confidence.ravel()[ok].astype(np.float64)
        order = np.argsort(s, kind="stable")
        cw = np.cumsum(w[order])
        q = {}
        for name, f in (("p10", 0.1), ("median", 0.5), ("p90", 0.9)):
            i = min(int(np.searchsorted(cw, f * cw[-1])), len(s) - 1)
            q[name] = round(float(s[order[i]]), 4)
        out["sigma"] = q
        lb = self.lower_bound
        share = 0.0 if lb is None else float(lb.ravel()[ok].mean())
        out["lower_bound_fraction"] = round(share, 4)
        if lb is not None and share > 0.5:
            out["verdict"] = f"sigma > {q['median']:.3g} px: blur beyond what the image shows"
        else:
            out["verdict"] = f"median sigma {q['median']:.3g} px ({q['p10']:.3g}-{q['p90']:.3g})"
        return out

    to_dict = summary


def _spread(img: np.ndarray) -> float:
    """The intensity scale :func:`_cells` works relative to (the standard deviation of about
    512 rows of :func:`_sample`): keeps float32 maths well scaled for any dtype. The noise
    floors of :func:`_estimate` are relative to it, and the float32 rounding of the scaled
    image depends on it, so tiles of one image must share it."""
    a = _sample(img)
    return float(np.std(a[:: max(1, a.shape[0] // 512)])) or 1.0


def _white_noise(
    image: np.ndarray, noise_sigma: float, *, channel_axis: int | None = None
) -> NoiseModel:
    """The noise model of a given white noise level, with the grey-level step of the data
    (:func:`defocus.noise.quantum` of :func:`_sample`): a given level does not remove the grey
    levels. A tile of a larger image is given the whole image's model: a tile of fewer than 16
    grey levels shows no step, and would read its staircase as edges."""
    q = quantum(_sample(image, channel_axis=channel_axis))
    return NoiseModel(0.0, float(noise_sigma) ** 2, q, np.ones((8, 8)), (0.0, 0.0), 0)


def _cells(
    image: np.ndarray,
    *,
    psf: str,
    noise_sigma: float | None,
    noise: NoiseModel | None = None,
    channel_axis: int | None,
    correction: bool,
    features: dict[str, Any] | None = None,
    progress: Callable[[int, str], None] | None = None,
    spread: float | None = None,
) -> tuple[np.ndarray, NoiseModel, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The checked float image, its noise model and the per-cell measurements of
    :func:`_estimate` in input pixels (disk family applied, learned correction where asked).
    ``progress(done, what)`` hears of the noise model (1) and each scale (2, 3, ...).
    ``spread``: the intensity scale to work relative to (default :func:`_spread` of this
    image); a tile of a larger image is given the whole image's."""
    if psf not in PSF_FAMILIES:
        raise BadInputError(f"unknown psf {psf!r}; choose from {', '.join(PSF_FAMILIES)}")
    raw = np.asarray(image)
    image = _centred(raw, channel_axis=channel_axis)
    img = as_float_image(image, channel_axis=channel_axis, min_size=16, allow_constant=True)
    if float(img.max()) == float(img.min()):  # refused with the input's own value, not the shift
        as_float_image(raw, channel_axis=channel_axis, min_size=16, allow_constant=False)
    if noise_sigma is not None and not (np.isfinite(noise_sigma) and noise_sigma >= 0):
        raise BadInputError(f"noise_sigma must be a finite number >= 0, got {noise_sigma!r}")
    if noise is not None and noise_sigma is not None:
        raise BadInputError("give noise_sigma or a noise model, not both")
    if noise is not None:
        nm = noise
    elif noise_sigma is None:
        nm = estimate_noise(image, channel_axis=channel_axis)
    else:
        nm = _white_noise(image, noise_sigma, channel_axis=channel_axis)
    scale = _spread(img) if spread is None else spread
    if progress is not None:
        progress(1, "noise model")
    per_scale = None if progress is None else lambda i, _, what: progress(1 + i, what)
    feats: dict[str, Any] = {} if features is None else features
    cell_sigma, sd, lower, repeat = _estimate(
        img / np.float32(scale), nm, scale, per_scale, features=feats
    )
    if psf == "disk":
        cell_sigma *= np.float32(_DISK_SIGMA_RATIO)
    if correction:
        # Dense texture: see defocus._blurcorrect (physics picks the cells, the model reads them).
        cell_sigma = correct(
            cell_sigma,
            sd,
            lower,
            feats,
            disk=psf == "disk",
            floor=_FLOOR,
            max_sd=_MEASURABLE_SD,
        )
    return img, nm, cell_sigma, sd, lower, repeat


def _log_sigma(cell_sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where a cell holds a measurement, and log sqrt(sigma^2 + FLOOR^2) (of 1 px elsewhere)."""
    found = np.isfinite(cell_sigma)
    return found, np.log(np.sqrt(np.where(found, cell_sigma, 1.0) ** 2 + _FLOOR**2))


# Rows ``r0:r1`` of :func:`_cells`' per-cell grids: sigma, log-sigma standard error,
# lower-bound flag, repeat.
_CellRows = Callable[[int, int], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def _grid_rows(
    sigma: np.ndarray, sd: np.ndarray, lower: np.ndarray, repeat: np.ndarray
) -> _CellRows:
    """:data:`_CellRows` of the four grids held whole."""
    return lambda r0, r1: (sigma[r0:r1], sd[r0:r1], lower[r0:r1], repeat[r0:r1])


def _cell_maps(
    cells: _CellRows, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The filled maps on the cell grid of ``shape``, from :func:`_cells`' per-cell
    measurements (read in bands of rows, :data:`_CellRows`): log sqrt(sigma^2 + FLOOR^2), the
    confidence, and the share of lower-bound evidence.

    The fill reaches across the whole grid, so it runs on the whole image's cells (the tiled map
    reads them from its tiles' blocks and calls this once). Its work runs in bands of rows, so
    its memory beyond the measurements is the three maps and a third of one more."""

    def weighted(r0: int, r1: int, of_lower: bool = False) -> tuple[np.ndarray, np.ndarray]:
        cs, sd, lower, repeat = cells(r0, r1)
        found, mean = _log_sigma(cs)
        # In the fill, a measurement repeated over repeat^2 cells counts once, so wide blurred
        # edges do not outvote thin sharp ones.
        logvar = np.where(found, 2 * np.log(sd * repeat), 30.0).astype(np.float32)
        prec = np.exp(-np.clip(logvar, -12.0, 12.0)).astype(np.float32)
        value = lower.astype(np.float32) if of_lower else mean.astype(np.float32)
        return prec * value, prec

    filled = _fill(weighted, shape)

    def vouched(r0: int, r1: int) -> np.ndarray:
        # The confidence is the precision of the value shown, gathered from the measurements
        # around it: each tells the filled value to within its own error or its distance from
        # it, whichever is larger. Where the fill overruled a measurement (a repeated wide one
        # beside thin sharp ones), it vouches for little; where the fill keeps it (to within
        # its error), for its full precision.
        cs, sd, _, _ = cells(r0, r1)
        found, mean = _log_sigma(cs)
        off = np.maximum(sd, np.abs(filled[r0:r1] - mean))
        return np.where(found, 2 * np.log(off), 30.0)

    conf = _confidence(vouched, shape)
    # Lower bounds spread like values: the share of lower-bound evidence around each pixel.
    lb_share = _fill(functools.partial(weighted, of_lower=True), shape)
    return filled, conf, lb_share


def _dense(
    filled: np.ndarray, conf: np.ndarray, lb_share: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full-resolution sigma, confidence and lower bound of ``shape`` from :func:`_cell_maps`'
    grids, by :func:`_upsample`: each pixel reads only the cells either side of it, so a part of
    the grid with a one-cell halo gives that part of the map exactly."""
    sigma = np.sqrt(np.maximum(np.exp(2 * _upsample(filled, shape)) - _FLOOR**2, 0))
    confidence = np.clip(_upsample(conf, shape), 0, 1).astype(np.float32)
    return sigma.astype(np.float32), confidence, _upsample(lb_share, shape) > 0.5


def blur_map(
    image: np.ndarray,
    *,
    psf: str = "gauss",
    pixel_size: float | PixelSize | None = None,
    noise_sigma: float | None = None,
    noise: NoiseModel | None = None,
    channel_axis: int | None = None,
    progress: Progress | None = None,
    correction: bool = True,
) -> BlurMap:
    """Estimate the blur sigma (px) at every pixel, with a confidence.

    Parameters
    ----------
    image : ndarray
        2-D greyscale, or multichannel with ``channel_axis``. Any integer or float dtype;
        intensities are not rescaled (the estimate is invariant to gain and offset).
    psf : {"gauss", "disk", "auto"}
        PSF family of the blur. ``"disk"`` is the geometric defocus of a camera (sigma = R/2);
        ``"gauss"`` suits SEM probes and microscopes. ``"auto"``: family unknown, read as
        Gaussian. The family sets how the scale curve is read: a lone disk-blurred edge read
        as Gaussian comes out 1.26x too high, dense disk-blurred texture about right; ``"disk"``
        scales by 0.89, between the two.
    pixel_size : float or PixelSize, optional
        Metres per pixel (float) or a :class:`defocus.io.PixelSize`, for
        :meth:`BlurMap.to_physical`.
    noise_sigma : float, optional
        Standard deviation of the white noise, in intensity units, taken as the whole noise.
        Estimated if omitted (see ``noise``).
    noise : NoiseModel, optional
        The noise model to measure against, such as :func:`defocus.noise.estimate_noise` of a
        larger image this one is a tile of. Default: estimated from this image, JPEG's
        compression error included where the image shows its 8 x 8 block grid. Give at most
        one of ``noise`` and ``noise_sigma``.
    channel_axis : int, optional
        Axis of the colour channels; they are combined to luminance.
    progress : callable, optional
        Called as ``progress(done, total, what)`` after the noise model, each scale and each
        later stage (edge fit, fill, full-size maps).
    correction : bool
        Apply the learned correction of each measured cell's sigma from the shape of its scale
        curve (dense texture reads low by the isolated-edge law; see
        :mod:`defocus._blurcorrect`). False gives the physical estimate alone.

    Returns
    -------
    BlurMap
        Dense ``sigma`` and ``confidence`` (H, W), and the ``sparse`` cell measurements.

    Notes
    -----
    Sigma from about 0.3 to 48 px is measured (the largest scale is 64 px); beyond what the
    image shows, ``lower_bound`` marks the value as a lower bound. A perfectly sharp edge reads
    about 0.3-1 px, its own pixel integration included.
    Flat regions carry no blur information: they are filled from the nearest measurements and
    get a low confidence. See the module docstring for the method and references.

    Examples
    --------
    >>> from scipy import ndimage as ndi
    >>> rng = np.random.default_rng(1)
    >>> sharp = ndi.zoom(rng.random((12, 12)), 16, order=0)  # blocky texture, sharp edges
    >>> est = blur_map(ndi.gaussian_filter(sharp, 3.0))
    >>> est.sigma.shape, est.sigma.dtype
    ((192, 192), dtype('float32'))
    >>> 2.0 < float(np.median(est.sigma)) < 4.0
    True
    """
    total = len(SCALES) + 4  # noise model, scales, edge fit, fill, full-size maps

    def report(done: int, what: str) -> None:
        if progress is not None:
            progress(done, total, what)

    img, nm, cell_sigma, sd, lower, repeat = _cells(
        image,
        psf=psf,
        noise_sigma=noise_sigma,
        noise=noise,
        channel_axis=channel_axis,
        correction=correction,
        progress=report,
    )
    report(total - 2, "edge fit")
    grids = _grid_rows(cell_sigma, sd, lower, repeat)
    filled, conf, lb_share = _cell_maps(grids, cell_sigma.shape)
    report(total - 1, "fill")
    sigma, confidence, lower_bound = _dense(filled, conf, lb_share, img.shape)
    found = np.isfinite(cell_sigma)
    sparse_conf = np.where(found, 1.0 / (1.0 + (sd / _HALF_CONF_SD) ** 2), 0).astype(np.float32)
    result = BlurMap(
        sigma=sigma,
        confidence=confidence,
        sparse=cell_sigma.astype(np.float32),
        sparse_confidence=sparse_conf,
        stride=STRIDE,
        noise_sigma=float(np.median(nm.std(img[:: max(1, img.shape[0] // 256)]))),
        psf=psf,
        pixel_size=as_pixel_size(pixel_size),
        lower_bound=lower_bound,
        noise=nm,
    )
    report(total, "full-size maps")
    return result
