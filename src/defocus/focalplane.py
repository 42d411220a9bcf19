"""Focal-plane analysis of a blur map: the sharpest band, its tilt, and how blur grows from it.

A flat sample tilted against the focal plane (the SEM case) is in focus along a line and blurs
linearly with the distance ``d`` from it, the in-focus blur adding in quadrature::

    sigma(d)^2 = sigma0^2 + (k d)^2

:func:`focal_plane` fits that model to a :class:`~defocus.blurmap.BlurMap` by confidence-
weighted, robust least squares in log sigma (relative errors, as the blur map's are). The map's
cells are first reduced to at most 4096 confidence-weighted medians, 8 x 8 bins in each of the
8 x 8 blocks of the bootstrap. For a fixed line, sigma² is linear in (sigma0², k²), so a fine
search over the line's angle and offset solves each candidate in closed form; Gauss-Newton
steps with the analytic Jacobian then refine the best. Uncertainties come from a block
bootstrap, which respects the spatial correlation of blur-map errors within a block and
restarts each resample from the solution.

A blur map's errors are correlated over distances that can reach a fair part of the image
(fill, smoothing, texture-dependent bias), so cells are not independent evidence of a gradient,
and the fitted growth k, never negative, sits some errors above zero on any map. A line is
therefore claimed only when the V-shaped law explains more of the map than it does in fits to a
constant blur plus random fields with the spectrum of the fit's residuals (a surrogate-data
test, Theiler et al. 1992, Physica D 58, 77), the search for the line included; see
:class:`FocalPlane`. It also gives per-band statistics and profiles along both axes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.special import gammaincc

from ._errors import BadInputError
from .blurmap import CONFIDENCE_THRESHOLD, BlurMap

__all__ = ["FocalPlane", "Profile", "focal_plane", "region_stats"]

# Block-bootstrap refits for the errors, and simulated constant-blur maps for the significance.
_BOOTSTRAP = 32
_NULL = 96
# Fields whose fits measure how much of the spectrum a fit absorbs (see _p_value).
_CORRECTION = 32
# The bootstrap resamples _BLOCKS x _BLOCKS blocks of the image; the fit runs on medians over
# _BINS x _BINS bins in each block (at most 4096 points), so resampling blocks resamples bins.
_BLOCKS = 8
_BINS = 8
# A line is claimed only when a constant blur with the map's correlated errors explains as
# large a share of the map by the V-shaped law with a probability under _MAX_P (one-sided 3
# standard deviations), and the fitted blur (sigma_eff, with the floor) varies across the image
# by at least _MIN_RANGE: a change under 30 % is within the blur map's own accuracy target
# (+-30 %, docs/architecture.md).
_MAX_P = 0.00135
_MIN_RANGE = 1.3
# The growth k must also stand 3 block-bootstrap errors above zero. Alone this test is invalid
# at k = 0 (the fitted growth is never negative, so it always sits some errors above zero), but
# with errors correlated over much of the image the simulated maps understate the null's
# spread (see focal_plane's Notes) and a line whose growth the bootstrap cannot resolve is not
# an answer: the bundled FIB image read "70 +- 54 %, k = 0.0073 +- 0.0032" at p = 5e-4.
_MIN_Z = 3.0
# When constant-blur maps with the residuals' spectrum fit the V-shaped law this well on
# average, the map holds too few independent measurements to test a gradient at all: a thin
# strip of confident cells across an exact tilt gave 0.86, where whole real maps (FIB, SEM)
# and simulated flat ones give 0.01-0.15.
_DEGENERATE = 0.5
# A map whose confident blur spans more than this ratio (90th over 10th percentile) does vary;
# without a line the summary says so rather than "no gradient". The map's own scatter on a
# uniformly defocused real frame reaches about 3x (DeepFocus SEM, 13.3 um: 2.8-8.1 px); the
# bundled FIB image, needle in focus before a defocused substrate, spans more than 10x.
_VARIED = 4.0
# Residuals are clipped at this many robust standard deviations before their spectrum is
# taken and before the test, as the robust loss discounts outliers.
_CLIP = 3.0
# Parzen lag window of the residuals' spectrum, as a fraction of the grid: wide enough to keep
# the lags of errors correlated over a quarter of the image (the DeepFocus SEM frames' reach);
# how well the test then holds is measured in focal_plane's Notes.
_WINDOW = 0.5
# The estimator's own floor: fitting log sqrt(sigma^2 + FLOOR^2) keeps sharp pixels finite.
_FLOOR = 0.4


@dataclass(frozen=True, eq=False)
class Profile:
    """Blur along one image axis: confidence-weighted median and 16-84 % spread of sigma (px).

    ``coord`` is the pixel index (row or column) of each sample; the other arrays align with it.
    """

    axis: str
    coord: np.ndarray
    median: np.ndarray
    p16: np.ndarray
    p84: np.ndarray


@dataclass(frozen=True, eq=False)
class FocalPlane:
    """Sharpest line and blur-growth model fitted to a blur map.

    The line is claimed (``significant``) only when the blur gradient is significant: a
    constant blur with the map's spatially correlated errors explains as large a share of the
    map by the V-shaped law with probability ``p_value`` under 0.00135 (3 standard deviations,
    one-sided), and the fitted blur, taken with the estimator's 0.4 px floor as
    ``sqrt(sigma² + 0.4²)``, varies by at least 30 % across the image (``blur_range`` >= 1.3; a
    smaller change is within the blur map's accuracy), and the growth ``slope`` stands 3
    block-bootstrap errors above zero. Otherwise the fit's numbers are kept, but
    :meth:`summary` says "no significant blur gradient: no focal line" (or, where the blur
    varies widely but not away from a line, "blur varies ... but not as a tilted plane") and
    gives ``reason``.

    Attributes
    ----------
    position : float
        Where the sharpest line crosses the image's centre line, as a fraction in [0, 1] of
        the height from the top (``axis == "rows"``: a near-horizontal line) or of the width
        from the left (``axis == "columns"``). When the fitted line crosses it outside the
        image, this is the nearer end (0 or 1): the edge where the fitted blur is least.
    fitted_position : float
        The fitted line's crossing, the same as ``position`` unless it lies outside the
        image (then extrapolated, beyond [0, 1]). The model (:meth:`predict`) uses it.
    axis : {"rows", "columns"}
        Which dimension ``position`` is a fraction of.
    angle : float
        Tilt of the line in degrees, counter-clockwise from horizontal as displayed.
    sigma0 : float
        Blur on the line (px).
    slope : float
        Growth ``k`` of sigma per pixel of distance from the line (px/px).
    errors : dict
        One-standard-deviation uncertainties of ``position`` (that of ``fitted_position``),
        ``angle``, ``sigma0``, ``slope``, from the block bootstrap.
    rms_log_residual : float
        Weighted RMS residual of the fit, in natural-log units (0.1 = about 10 %).
    bands : list of dict
        Statistics of equal bands across the line (see :func:`region_stats`), from the map's
        values at its cell centres.
    rows, columns : Profile
        Profiles along each axis.
    note : str
        Empty, or why ``position`` is not the fitted line's, e.g. "focal line outside the
        field of view; nearest edge reported".
    significant : bool
        Whether the blur gradient is significant, so that the line is an answer.
    reason : str
        Empty, or why the gradient is not significant.
    spread : tuple of float
        The 10th and 90th percentiles of the measurable blur (confidence >= 0.3), as
        ``sqrt(sigma² + 0.4²)`` in px; NaN where nothing is measurable. Blur that varies widely
        but not as a tilted plane (a scene with parts at several depths) gets no line, and the
        summary says the blur varies.
    p_value : float
        Probability that a constant blur, with errors correlated as the fit's residuals are,
        gives a V-shaped law that explains as large a share of the map (see :func:`focal_plane`).
    """

    position: float
    fitted_position: float
    axis: str
    angle: float
    sigma0: float
    slope: float
    errors: dict[str, float]
    rms_log_residual: float
    shape: tuple[int, int]
    bands: list[dict[str, Any]] = field(default_factory=list)
    rows: Profile | None = None
    columns: Profile | None = None
    note: str = ""
    significant: bool = True
    reason: str = ""
    p_value: float = math.nan
    spread: tuple[float, float] = (math.nan, math.nan)

    @property
    def headline(self) -> str:
        """Why a map has no focal line, without the numbers (for titles); empty with a line."""
        return "" if self.significant else f"{_no_line(self.spread)}: no focal line"

    @property
    def outside(self) -> bool:
        """Whether the fitted line crosses the centre line outside the image."""
        return not 0 <= self.fitted_position <= 1

    @property
    def blur_range(self) -> float:
        """Ratio of the largest to the least fitted ``sqrt(sigma² + 0.4²)`` within the image."""
        h, w = self.shape
        corners = _distance(
            np.array([-0.5, h - 0.5])[:, None],
            np.array([-0.5, w - 0.5])[None, :],
            self._line(),
            (h, w),
        )
        near = 0.0 if corners.min() <= 0 <= corners.max() else np.abs(corners).min()
        far = np.abs(corners).max()
        s2 = self.sigma0**2 + _FLOOR**2
        return float(np.sqrt((s2 + (self.slope * far) ** 2) / (s2 + (self.slope * near) ** 2)))

    def predict(self, shape: tuple[int, int] | None = None) -> np.ndarray:
        """The fitted model's sigma map (px), float32, for this (or another same-size) image."""
        h, w = shape or self.shape
        yy = np.arange(h, dtype=np.float64)[:, None]
        xx = np.arange(w, dtype=np.float64)[None, :]
        d = _distance(yy, xx, self._line(), (h, w))
        return np.hypot(self.sigma0, self.slope * d).astype(np.float32)

    def _line(self) -> tuple[float, float]:
        """(theta in radians, offset rho in px from the image centre along the normal)."""
        h, w = self.shape
        th = math.radians(self.angle)
        if self.axis == "rows":
            return th, (self.fitted_position * h - (h - 1) / 2) * math.cos(th)
        return th, (self.fitted_position * w - (w - 1) / 2) * math.sin(th)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary, with a one-line description."""
        e = self.errors
        if not self.significant:
            return {
                "text": f"{self.headline} ({self.reason})",
                "unit": "px",
                "significant": False,
                "reason": self.reason,
                "p_value": _round_p(self.p_value),
                "spread": [round(v, 4) for v in self.spread]
                if math.isfinite(self.spread[0])
                else None,
                "position": None,
                "fitted_position": None,
                "note": self.note,
                "axis": None,
                "angle_deg": None,
                "sigma0": round(self.sigma0, 4),
                "slope": round(self.slope, 6),
                "errors": {k: round(e[k], 6) for k in ("sigma0", "slope")},
                "blur_range": round(self.blur_range, 4),
                "rms_log_residual": round(self.rms_log_residual, 4),
                "bands": self.bands,
            }
        where = "height from the top" if self.axis == "rows" else "width from the left"
        line = f"{100 * self.fitted_position:.1f} ± {100 * e['position']:.1f} % of the {where}"
        if self.outside:
            ends = ("top", "bottom") if self.axis == "rows" else ("left", "right")
            line = (
                f"least blur at the {ends[int(self.position)]} edge, {100 * self.position:.0f} "
                f"% of the {where} ({self.note}); the fitted line, extrapolated, lies at {line}"
            )
        else:
            line = f"sharpest line at {line}"
        text = (
            f"{line}, tilted {self.angle:.1f} ± {e['angle']:.1f}°; sigma = sqrt(sigma0² + "
            f"(k·d)²) with sigma0 = {self.sigma0:.2f} ± {e['sigma0']:.2f} px, "
            f"k = {self.slope:.4f} ± {e['slope']:.4f} px/px"
        )
        return {
            "text": text,
            "unit": "px",
            "significant": True,
            "reason": "",
            "p_value": _round_p(self.p_value),
            "position": round(self.position, 4),
            "fitted_position": round(self.fitted_position, 4),
            "note": self.note,
            "axis": self.axis,
            "angle_deg": round(self.angle, 3),
            "sigma0": round(self.sigma0, 4),
            "slope": round(self.slope, 6),
            "errors": {k: round(v, 6) for k, v in e.items()},
            "blur_range": round(self.blur_range, 4),
            "rms_log_residual": round(self.rms_log_residual, 4),
            "bands": self.bands,
        }

    to_dict = summary


def _round_p(p: float) -> float:
    """A probability to two significant digits (small ones matter by their order)."""
    return float(f"{p:.2g}")


def _distance(yy, xx, line: tuple[float, float], shape: tuple[int, int]):
    """Signed distance (px) from the line; same convention as :func:`defocus.synth.tilt_map`."""
    th, rho = line
    h, w = shape
    return (yy - (h - 1) / 2) * math.cos(th) + (xx - (w - 1) / 2) * math.sin(th) - rho


def _grid(bm: BlurMap) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sigma and confidence sampled at the blur map's cell centres, with their coordinates."""
    s = bm.stride
    r = np.arange(s // 2, bm.shape[0], s)
    c = np.arange(s // 2, bm.shape[1], s)
    return bm.sigma[np.ix_(r, c)], bm.confidence[np.ix_(r, c)], r, c


def _weighted_quantiles(v: np.ndarray, w: np.ndarray, qs, axis: int) -> list[np.ndarray]:
    """Weighted quantiles of v along an axis (w >= 0); rows with no weight use equal weights."""
    v = np.moveaxis(v, axis, -1)
    w = np.moveaxis(w, axis, -1).astype(np.float64)
    w = np.where(w.sum(-1, keepdims=True) > 0, w, 1.0)
    order = np.argsort(v, axis=-1)  # ties hold equal values: any order gives the same quantiles
    vs = np.take_along_axis(v, order, -1)
    cw = np.cumsum(np.take_along_axis(w, order, -1), -1)
    cw /= cw[..., -1:]
    out = []
    for q in qs:
        i = np.minimum((cw < q).sum(-1), v.shape[-1] - 1)
        out.append(np.take_along_axis(vs, i[..., None], -1)[..., 0].astype(np.float32))
    return out


def region_stats(
    blurmap: BlurMap,
    *,
    rows: tuple[float, float] = (0.0, 1.0),
    cols: tuple[float, float] = (0.0, 1.0),
    origin: str = "top",
) -> dict[str, Any]:
    """Blur statistics of a rectangular region given as fractions of the height and width.

    Parameters
    ----------
    blurmap : BlurMap
    rows, cols : (float, float)
        Fractions in [0, 1]. Rows count from the top, or from the bottom with
        ``origin="bottom"`` (as in "rows 25-60 % from the bottom").
    origin : {"top", "bottom"}

    Returns
    -------
    dict
        ``sigma`` (confidence-weighted median, px), ``spread`` (half the 16-84 % range),
        ``p16``, ``p84``, ``confidence`` (mean) and a one-line ``text``.

    Examples
    --------
    >>> from defocus.blurmap import blur_map
    >>> rng = np.random.default_rng(0)
    >>> bm = blur_map(rng.random((64, 64)))
    >>> region_stats(bm, rows=(0.25, 0.6), origin="bottom")["text"]
    'rows 25-60 % from the bottom: sigma = ... ± ... px'
    """
    if origin not in ("top", "bottom"):
        raise BadInputError(f"origin must be 'top' or 'bottom', got {origin!r}")
    for name, (a, b) in (("rows", rows), ("cols", cols)):
        if not 0 <= a < b <= 1:
            raise BadInputError(f"{name} must be fractions 0 <= start < stop <= 1, got {(a, b)}")
    h, w = blurmap.shape
    return _region_stats(
        blurmap.sigma, blurmap.confidence, np.arange(h), np.arange(w), (h, w), rows, cols, origin
    )


def _region_stats(sigma, confidence, r, c, shape, rows, cols, origin) -> dict[str, Any]:
    """:func:`region_stats` of a map sampled at pixel rows ``r`` and columns ``c``."""

    def take(coord, size, a, b):  # the samples in pixels [round(a size), round(b size))
        lo = round(a * size)
        hi = max(round(b * size), lo + 1)
        i, j = np.searchsorted(coord, (lo, hi))
        if i == j:  # no sample inside: the nearest one
            i = min(int(np.abs(coord - (lo + hi - 1) / 2).argmin()), len(coord) - 1)
            j = i + 1
        return slice(i, j)

    r0, r1 = rows if origin == "top" else (1 - rows[1], 1 - rows[0])
    ys, xs = take(r, shape[0], r0, r1), take(c, shape[1], *cols)
    sig = sigma[ys, xs].ravel()
    conf = confidence[ys, xs].ravel()
    p16, med, p84 = (float(q) for q in _weighted_quantiles(sig, conf, (0.16, 0.5, 0.84), 0))
    label = f"rows {100 * rows[0]:.0f}-{100 * rows[1]:.0f} % from the {origin}"
    if cols != (0.0, 1.0):
        label += f", columns {100 * cols[0]:.0f}-{100 * cols[1]:.0f} % from the left"
    spread = (p84 - p16) / 2
    return {
        "rows": list(rows),
        "cols": list(cols),
        "origin": origin,
        "sigma": round(med, 4),
        "spread": round(spread, 4),
        "p16": round(p16, 4),
        "p84": round(p84, 4),
        "confidence": round(float(conf.mean()), 4),
        "unit": "px",
        "text": f"{label}: sigma = {med:.2f} ± {spread:.2f} px",
    }


# Residual (log sigma) beyond which the fit's loss grows linearly instead of quadratically.
_ROBUST_SCALE = 0.2


def _axis_bins(coord: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin of each cell row (or column) and a padded table of the cells in each bin.

    The axis is cut into _BLOCKS blocks by pixel position and each block into _BINS bins of
    near-equal cell counts (empty when a block has fewer cells). Table entries ``len(coord)``
    are padding.
    """
    n = len(coord)
    block = np.minimum((coord * _BLOCKS / size).astype(int), _BLOCKS - 1)
    count = np.bincount(block, minlength=_BLOCKS)
    first = np.cumsum(count) - count
    group = block * _BINS + (np.arange(n) - first[block]) * _BINS // count[block]
    table = np.full((_BLOCKS * _BINS, -(-count.max() // _BINS)), n)
    members = np.bincount(group, minlength=_BLOCKS * _BINS)
    table[group, np.arange(n) - (np.cumsum(members) - members)[group]] = np.arange(n)
    return group, table


def _binned(lv, wt, r, c, shape):
    """Confidence-weighted median of log sigma_eff per bin, with the bin's weighted centre and
    total confidence; empty bins are left out. Also each bin's place (row, column) on the grid
    of the bins that hold cells, and that grid's shape, for the correlated-error fields."""
    grow, rows = _axis_bins(r, shape[0])
    gcol, cols = _axis_bins(c, shape[1])
    n_bins = len(rows) * len(cols)
    ids = (grow[:, None] * len(cols) + gcol[None, :]).ravel()
    total = np.bincount(ids, wt.ravel(), n_bins)
    y = np.bincount(ids, (wt * r[:, None]).ravel(), n_bins)
    x = np.bincount(ids, (wt * c[None, :]).ravel(), n_bins)

    def gather(a, pad):  # (bins, cells per bin), padding included
        a = np.pad(a, ((0, 1), (0, 1)), constant_values=pad)
        g = a[rows[:, :, None, None], cols[None, None, :, :]]
        return g.transpose(0, 2, 1, 3).reshape(n_bins, -1)

    v, w = gather(np.where(wt > 0, lv, np.inf), np.inf), gather(wt, 0.0)
    order = np.argsort(v, axis=-1)
    cw = np.cumsum(np.take_along_axis(w, order, -1), -1)
    mid = np.minimum((cw < 0.5 * total[:, None]).sum(-1), v.shape[-1] - 1)
    med = np.take_along_axis(v, np.take_along_axis(order, mid[:, None], -1), -1)[:, 0]
    ok = np.flatnonzero(total > 0)
    # Bins that hold cells are near-uniform in pixels, so the grid of them is a regular lattice.
    urow, ucol = np.unique(grow), np.unique(gcol)
    place = np.searchsorted(urow, ok // len(cols)), np.searchsorted(ucol, ok % len(cols))
    block = (ok // len(cols) // _BINS) * _BLOCKS + ok % len(cols) // _BINS
    grid = (len(urow), len(ucol))
    return y[ok] / total[ok], x[ok] / total[ok], med[ok], total[ok], block, place, grid


def _scan(y, x, lv, wt, shape, *, step: float = 1.0, offsets: int = 161):
    """Closed-form fits of every line on a grid of angles and offsets, for each column of lv.

    For a fixed line, sigma² = sigma0² + k² d² is linear in (sigma0², k²): weighted linear least
    squares in sigma², with weights making its errors relative (as in log sigma), gives both.
    Its sums over the points are polynomials in the offset, so every offset costs O(1) once
    the moments of the projected coordinate are known. Coordinates are scaled by the
    half-diagonal ``L`` so the polynomials stay well conditioned.

    Returns the weighted squared error of the best constant and of the best line (each (S,)
    for lv of shape (n, S)) and that line's (theta, rho, sigma0, k), shape (S, 4).
    """
    h, w = shape
    half = math.hypot(h, w) / 2
    yc, xc = (y - (h - 1) / 2) / half, (x - (w - 1) / 2) / half
    t = np.exp(2 * lv) - _FLOOR**2  # sigma²
    v = wt[:, None] * np.exp(-4 * lv)  # relative errors: d(sigma_eff²) / sigma_eff²
    th = np.radians(np.arange(-90, 90, step))
    u = np.cos(th)[:, None] * yc + np.sin(th)[:, None] * xc
    powers = [np.ones_like(u), u, u * u]
    powers += [powers[2] * u, powers[2] * powers[2]]
    pw = np.stack(powers).reshape(5 * len(th), -1)
    m = (pw @ v).reshape(5, len(th), -1)  # (5, angles, S)
    tm = (pw[: 3 * len(th)] @ (v * t)).reshape(3, len(th), -1)
    tt = (v * t * t).sum(0)
    rho = np.linspace(-1, 1, offsets)[:, None, None]  # (offsets, 1, 1) against (angles, S)
    m0, t0 = m[0], tm[0]
    a = m[2] - 2 * rho * m[1] + rho**2 * m0  # sum v d²
    b = m[4] - 4 * rho * m[3] + 6 * rho**2 * m[2] - 4 * rho**3 * m[1] + rho**4 * m0  # v d⁴
    p = tm[2] - 2 * rho * tm[1] + rho**2 * t0  # sum v t d²
    det = m0 * b - a * a
    with np.errstate(divide="ignore", invalid="ignore"):
        s0 = (b * t0 - a * p) / det
        k2 = (m0 * p - a * t0) / det
        both = np.where((s0 >= 0) & (k2 >= 0) & (det > 0), tt - s0 * t0 - k2 * p, np.inf)
        only_k = np.where(b > 0, tt - p * p / b, np.inf)
    const = tt - t0[0] ** 2 / m0[0]
    const = np.where(const > 1e-9 * tt, const, 0.0)  # a constant map, but for rounding
    err = np.minimum(np.minimum(both, only_k), const).reshape(-1, lv.shape[1])
    best = np.argmin(err, axis=0)
    i, j = np.unravel_index(best, (offsets, len(th)))
    cols = np.arange(lv.shape[1])
    e = err[best, cols]
    use_both = e == both[i, j, cols]
    use_k = ~use_both & (e == only_k[i, j, cols])
    s02 = np.where(use_both, s0[i, j, cols], np.where(use_k, 0.0, t0[0] / m0[0]))
    kk = np.where(use_both, k2[i, j, cols], np.where(use_k, p[i, j, cols] / b[i, j, cols], 0.0))
    line = np.stack(
        [
            th[j],
            rho[i, 0, 0] * half,
            np.sqrt(np.maximum(s02, 0)),
            np.sqrt(np.maximum(kk, 0)) / half,
        ],
        1,
    )
    return const, e, line


def _search(y, x, lv, wt, shape) -> np.ndarray:
    """Best line (theta, rho, sigma0, k) on a fine grid of angles and offsets."""
    return _scan(y, x, lv[:, None], wt, shape)[2][0]


def _refine(y, x, lv, wt, shape, start, *, iterations: int = 50):
    """Levenberg-Marquardt on the soft-L1 robust cost in log sigma_eff, analytic Jacobian.

    Robust loss: cells filled from far away (smooth regions) can read far off the model. Each
    step reweights the residuals (IRLS), which has the robust fit's stationary point.
    Parameters are (theta, rho / L, sigma0, k L) with ``L`` the half-diagonal, all of order 1.
    """
    h, w = shape
    half = math.hypot(h, w) / 2
    yc, xc = (y - (h - 1) / 2) / half, (x - (w - 1) / 2) / half
    f2 = _ROBUST_SCALE**2

    def residual(q):
        d = yc * math.cos(q[0]) + xc * math.sin(q[0]) - q[1]
        s = q[2] ** 2 + _FLOOR**2 + (q[3] * d) ** 2
        return d, s, 0.5 * np.log(s) - lv

    def cost(res):
        return float(np.sum(wt * 2 * f2 * (np.sqrt(1 + res * res / f2) - 1)))

    q = np.array([start[0], start[1] / half, start[2], start[3] * half])
    d, s, res = residual(q)
    c, lam = cost(res), 1e-3
    for _ in range(iterations):
        dd = -yc * math.sin(q[0]) + xc * math.cos(q[0])
        jac = np.stack(
            [q[3] ** 2 * d * dd / s, -(q[3] ** 2) * d / s, q[2] / s, q[3] * d * d / s], 1
        )
        om = wt / np.sqrt(1 + res * res / f2)
        jw = jac * om[:, None]
        hess, grad = jw.T @ jac, jw.T @ res
        damp = np.diag(hess) + 1e-9 * np.trace(hess) + 1e-12
        while True:
            step = np.linalg.solve(hess + lam * np.diag(damp), -grad)
            qn = q + step
            dn, sn, rn = residual(qn)
            cn = cost(rn)
            if cn <= c or lam > 1e8:
                break
            lam *= 10
        if cn > c:
            break
        done = c - cn <= 1e-12 * c or np.abs(step).max() < 1e-10
        q, d, s, res, c, lam = qn, dn, sn, rn, cn, max(lam / 10, 1e-9)
        if done:
            break
    return np.array([q[0], q[1] * half, abs(q[2]), abs(q[3]) / half])


def _model(y, x, p, shape) -> np.ndarray:
    """Log sigma_eff of the model p = (theta, rho, sigma0, k) at the given points."""
    d = _distance(y, x, (p[0], p[1]), shape)
    return 0.5 * np.log(p[2] ** 2 + _FLOOR**2 + (p[3] * d) ** 2)


def _rms(y, x, lv, wt, p, shape) -> float:
    """Weighted RMS residual in log sigma_eff of the model p over the given cells."""
    res = _model(y, x, p, shape) - lv
    return float(np.sqrt(np.sum(wt * res * res) / wt.sum()))


def _clipped(res: np.ndarray) -> np.ndarray:
    """Residuals clipped at _CLIP robust (median absolute deviation) standard deviations."""
    scale = _CLIP * 1.4826 * np.median(np.abs(res - np.median(res)))
    return np.clip(res, -scale, scale)


def _periodogram(res, place, grid) -> np.ndarray:
    """Periodogram of residuals at the bins, on the grid padded to twice its size.

    The residuals, clipped and centred, are laid on the grid of bins with zeros where a bin is
    missing; their periodogram over the number of bins has the biased autocovariance (positive
    definite, the long lags seen in few pairs kept small).
    """
    z = _clipped(res)
    field = np.zeros(grid)
    field[place] = z - z.mean()
    return np.abs(np.fft.rfft2(field, (2 * grid[0], 2 * grid[1]))) ** 2 / len(z)


def _smoothed(power, grid) -> np.ndarray:
    """A periodogram smoothed by a Parzen lag window of _WINDOW times the grid (Priestley
    1981, *Spectral Analysis and Time Series*, sec. 6.2.3); it stays non-negative."""
    pad = (2 * grid[0], 2 * grid[1])
    u = [np.abs(np.fft.fftfreq(p, 1 / p)) / (_WINDOW * g) for p, g in zip(pad, grid, strict=True)]
    parzen = [
        np.where(a <= 0.5, 1 - 6 * a**2 + 6 * a**3, np.where(a <= 1, 2 * (1 - a) ** 3, 0.0))
        for a in u
    ]
    cov = np.fft.irfft2(power, pad) * np.outer(*parzen)
    return np.maximum(np.fft.rfft2(cov).real, 0)


def _draw(power, place, n: int, rng: np.random.Generator) -> np.ndarray:
    """n Gaussian random fields with this spectrum (random phases), at the bins: (bins, n)."""
    pad = (power.shape[0], 2 * (power.shape[1] - 1))
    white = np.fft.rfft2(rng.standard_normal((n, *pad), dtype=np.float32))
    return np.fft.irfft2(white * np.sqrt(power).astype(np.float32), pad)[:, place[0], place[1]].T


def _p_value(y, x, model, res, wt, shape, place, grid, rng) -> tuple[float, float]:
    """Probability that a constant blur plus correlated errors gives a V-shaped law that
    explains as large a share of the map's variance as it does here.

    The errors are random fields with the spectrum of the fit's residuals. A fit absorbs the
    part of the errors that looks like the model, which for correlated errors is much of their
    power at the lowest frequencies; so the spectrum is corrected once by the share of it that
    survives fits to fields drawn from it (a bootstrap bias correction, Efron & Tibshirani
    1993, ch. 10). Both the map and the simulated ones are scanned over the same (coarse) grid
    of lines, so the search over the line's place is part of the null distribution. The tail
    is a gamma law with the simulated shares' mean and variance (Satterthwaite's
    approximation, Biometrics Bull. 2, 110, 1946), since the number of simulations cannot
    resolve 3-standard-deviation tails. Also returns the simulated shares' mean.
    """
    observed = model + _clipped(res)
    level = np.average(observed, weights=wt)
    floor = math.log(_FLOOR)
    power = _smoothed(_periodogram(res, place, grid), grid)

    def shares(fields):
        lv = np.maximum(np.column_stack([observed, level + fields]), floor)
        const, best, lines = _scan(y, x, lv, wt, shape, step=3.0, offsets=61)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(const > 0, np.clip(1 - best / const, 0, 1), 0.0), lv, lines

    _, lv, lines = shares(_draw(power, place, _CORRECTION, rng))
    fitted = [
        _periodogram(lv[:, i] - _model(y, x, lines[i], shape), place, grid)
        for i in range(1, len(lines))
    ]
    kept = _smoothed(np.mean(fitted, 0), grid)
    with np.errstate(divide="ignore", invalid="ignore"):  # at most a 20-fold correction
        power = np.where(power > 0, power / np.clip(kept / power, 0.05, 1), 0.0)
    share = shares(_draw(power, place, _NULL, rng))[0]
    mean, var = share[1:].mean(), share[1:].var()
    if var <= 1e-12 * max(mean * mean, 1e-12):  # error-free map: only an exact V explains it
        return (0.0 if share[0] > mean + 1e-9 else 1.0), float(mean)
    return float(gammaincc(mean * mean / var, share[0] * mean / var)), float(mean)


def _no_line(spread: tuple[float, float]) -> str:
    """Headline of a map without a focal line: a blur that varies widely, but not away from a
    line, must not read as "no gradient"."""
    lo, hi = spread
    if hi >= _VARIED * max(lo, _FLOOR):
        return f"blur varies ({lo:.1f}-{hi:.1f} px, 10-90 %) but not as a tilted plane"
    return "no significant blur gradient"


def _significance(fp: FocalPlane, null_share: float) -> str:
    """Empty when the blur gradient is significant, else the reason it is not."""
    if not fp.p_value < _MAX_P and null_share > _DEGENERATE:
        return (
            f"k = {fp.slope:.4f} px/px, but too few independent measurements to test it: a "
            f"constant blur with the map's correlated errors fits the V-shaped law as well "
            f"(p = {fp.p_value:.2g})"
        )
    if not fp.p_value < _MAX_P:
        return (
            f"k = {fp.slope:.4f} px/px, but the map's correlated errors alone give as strong a "
            f"V-shaped gradient, p = {fp.p_value:.2g}"
        )
    growth = f"k = {fp.slope:.4f} ± {fp.errors['slope']:.4f} px/px"
    if not fp.slope > _MIN_Z * fp.errors["slope"]:
        return f"{growth}, within {_MIN_Z:.0f} bootstrap errors of zero; p = {fp.p_value:.2g}"
    if fp.blur_range < _MIN_RANGE:
        return (
            f"{growth}; the fitted blur varies by {100 * (fp.blur_range - 1):.0f} % across the "
            f"image, under the {100 * (_MIN_RANGE - 1):.0f} % the map can resolve"
        )
    return ""


def focal_plane(
    blurmap: BlurMap,
    *,
    n_bands: int = 10,
    min_confidence: float = 0.1,
    rng: int | np.random.Generator | None = 0,
) -> FocalPlane:
    """Locate the sharpest line and fit ``sigma² = sigma0² + (k·d)²`` to a blur map.

    Parameters
    ----------
    blurmap : BlurMap
        From :func:`defocus.blur_map`.
    n_bands : int
        Number of equal bands, across the fitted line, for the per-band statistics.
    min_confidence : float
        Pixels below this confidence are left out of the fit.
    rng : int, Generator or None
        Seed or generator of the block bootstrap behind the uncertainties and of the simulated
        maps behind the significance test (the default seed makes both deterministic).

    Returns
    -------
    FocalPlane
        With ``significant`` False when the map shows no significant blur gradient.

    Notes
    -----
    The significance test simulates 96 maps of a constant blur plus Gaussian random fields
    with the spectrum of the fit's residuals, and asks how often a V-shaped law explains as
    large a share of their variance as it does of the map's. A fit absorbs the part of the
    errors that looks like the model, which for correlated errors is much of their power at
    the lowest frequencies, so the residuals' spectrum is first divided by the share of it that
    survives fits to fields drawn from it (a bootstrap bias correction, Efron & Tibshirani
    1993, *An Introduction to the Bootstrap*, ch. 10). The tail probability comes from a gamma
    law with the simulated shares' mean and variance (Satterthwaite 1946, Biometrics Bull. 2,
    110). Errors correlated over much of the image can still pass for a gradient, since one
    map cannot tell a smooth error field from a smooth blur change: on simulated flat
    480 x 640 maps (120 x 160 cells) with Gaussian-smoothed errors of 15 % in sigma, 12 draws
    per width, no line was claimed at smoothing widths of 2, 6 and 12 cells, but 4 of 12 were
    at 24 cells (a fifth of the image's height).

    Examples
    --------
    >>> from defocus.blurmap import BlurMap
    >>> from defocus.synth import tilt_map
    >>> sig = tilt_map((200, 160), position=0.6, angle=10, slope=0.05, floor=0.5)
    >>> one = np.ones_like(sig)
    >>> bm = BlurMap(sig, one, sig[2::4, 2::4], one[2::4, 2::4], 4, 0.0, "gauss")
    >>> fp = focal_plane(bm)
    >>> fp.significant, round(fp.position, 2), round(fp.angle), round(fp.slope, 3)
    (True, 0.6, 10, 0.05)
    >>> flat = np.full((200, 160), 2.0, np.float32)
    >>> fp = focal_plane(BlurMap(flat, one, flat[2::4, 2::4], one[2::4, 2::4], 4, 0.0, "gauss"))
    >>> fp.significant, fp.summary()["text"][:45]
    (False, 'no significant blur gradient: no focal line (')
    """
    if n_bands < 1:
        raise BadInputError(f"n_bands must be >= 1, got {n_bands}")
    sig, conf, r, c = _grid(blurmap)
    shape = blurmap.shape
    lv = 0.5 * np.log(sig.astype(np.float64) ** 2 + _FLOOR**2)
    wt = np.where(conf >= min_confidence, conf, 0).astype(np.float64)
    if np.count_nonzero(wt) < 16:
        raise BadInputError("too few confident blur measurements to fit a focal plane")
    y, x, lvb, wtb, block, place, grid = _binned(lv, wt, r, c, shape)
    p = _refine(y, x, lvb, wtb, shape, _search(y, x, lvb, wtb, shape))
    rms = _rms(r[:, None].astype(np.float64), c[None, :].astype(np.float64), lv, wt, p, shape)
    # Block bootstrap: resample the blocks of the image with replacement.
    rng = np.random.default_rng(rng)
    n_blocks = _BLOCKS * _BLOCKS
    boots = []
    for _ in range(_BOOTSTRAP):
        counts = np.bincount(rng.integers(0, n_blocks, n_blocks), minlength=n_blocks)
        wb = wtb * counts[block]
        if wb.sum() > 0:
            boots.append(_refine(y, x, lvb, wb, shape, p))
    model = _model(y, x, p, shape)
    p_value, null_share = _p_value(y, x, model, lvb - model, wtb, shape, place, grid, rng)
    fp = _describe(p, shape)
    bs = [_describe(b, shape) for b in boots]
    errors = {}
    for k in ("position", "angle", "sigma0", "slope"):
        vals = np.array([b[k] for b in bs])
        if k == "angle":  # wrap to the fitted angle's neighbourhood
            vals = (vals - fp[k] + 90) % 180 - 90 + fp[k]
        errors[k] = float(np.std(vals)) if len(vals) > 1 else float("inf")
    # Per-band statistics across the line, plus profiles along both axes.
    axis = fp["axis"]
    bands = []
    for i in range(n_bands):
        span = (i / n_bands, (i + 1) / n_bands)
        if axis == "rows":
            bands.append(_region_stats(sig, conf, r, c, shape, span, (0.0, 1.0), "top"))
        else:
            bands.append(_region_stats(sig, conf, r, c, shape, (0.0, 1.0), span, "top"))
    profiles = []
    for ax, coord in ((1, r), (0, c)):
        q16, med, q84 = _weighted_quantiles(sig, conf, (0.16, 0.5, 0.84), ax)
        profiles.append(Profile("rows" if ax == 1 else "columns", coord, med, q16, q84))
    # Blur along the centre line grows with the distance from the line's crossing, so when
    # that lies outside the image the least blur in it is at the nearer end.
    position = min(max(fp["position"], 0.0), 1.0)
    note = ""
    if position != fp["position"]:
        note = (
            "focal line outside the field of view; nearest edge reported"
            if _misses(p, shape)
            else "focal line crosses the image's centre line outside it; nearest edge reported"
        )
    fit = FocalPlane(
        position=position,
        fitted_position=fp["position"],
        axis=axis,
        angle=fp["angle"],
        sigma0=fp["sigma0"],
        slope=fp["slope"],
        errors=errors,
        rms_log_residual=rms,
        shape=shape,
        bands=bands,
        rows=profiles[0],
        columns=profiles[1],
        note=note,
        p_value=p_value,
        spread=_spread(sig, conf),
    )
    reason = _significance(fit, null_share)
    return replace(fit, significant=not reason, reason=reason)


def _spread(sig: np.ndarray, conf: np.ndarray) -> tuple[float, float]:
    """10th and 90th percentiles of the measurable blur (confidence >= the blur map's
    threshold; the fill it calls "not measurable" varies by no evidence), taken with the
    estimator's floor as the fit takes it; NaN where nothing is measurable."""
    measured = sig[conf >= CONFIDENCE_THRESHOLD].astype(np.float64)
    if measured.size == 0:
        return math.nan, math.nan
    lo, hi = np.percentile(np.sqrt(measured**2 + _FLOOR**2), (10, 90))
    return float(lo), float(hi)


def _misses(p: np.ndarray, shape: tuple[int, int]) -> bool:
    """Whether the line (theta, rho, ...) passes by the image without crossing it."""
    h, w = shape
    corners = np.array([-0.5, h - 0.5])[:, None], np.array([-0.5, w - 0.5])[None, :]
    d = _distance(*corners, (float(p[0]), float(p[1])), shape)
    return bool(d.min() > 0 or d.max() < 0)


def _describe(p: np.ndarray, shape: tuple[int, int]) -> dict[str, Any]:
    """Turn (theta, rho, sigma0, k) into position / axis / angle in the display convention."""
    th, rho, s0, k = (float(v) for v in p)
    wrapped = (th + math.pi / 2) % math.pi - math.pi / 2
    if round((th - wrapped) / math.pi) % 2:  # theta + pi is the same line with rho negated
        rho = -rho
    th = wrapped
    h, w = shape
    if abs(th) <= math.pi / 4:
        pos = ((h - 1) / 2 + rho / math.cos(th)) / h
        axis = "rows"
    else:
        pos = ((w - 1) / 2 + rho / math.sin(th)) / w
        axis = "columns"
    return {"position": pos, "axis": axis, "angle": math.degrees(th), "sigma0": s0, "slope": k}
