"""Focal-plane analysis of a blur map: the sharpest band, its tilt, and how blur grows from it.

A flat sample tilted against the focal plane (the SEM case) is in focus along a line and blurs
linearly with the distance ``d`` from it, the in-focus blur adding in quadrature::

    sigma(d)^2 = sigma0^2 + (k d)^2

:func:`focal_plane` fits that model to a :class:`~defocus.blurmap.BlurMap` by confidence-
weighted least squares in log sigma (relative errors, as the blur map's are), starting from a
grid search over the line's angle and offset. Uncertainties come from a block bootstrap, which
respects the spatial correlation of blur-map errors. It also gives per-band statistics and
profiles along both axes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from ._errors import BadInputError
from .blurmap import BlurMap

__all__ = ["FocalPlane", "Profile", "focal_plane", "region_stats"]

# Fits run on at most this many grid points (cell centres), evenly subsampled.
_MAX_POINTS = 40_000
_BOOTSTRAP = 32
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
        ``angle``, ``sigma0``, ``slope``.
    rms_log_residual : float
        Weighted RMS residual of the fit, in natural-log units (0.1 = about 10 %).
    bands : list of dict
        Statistics of equal bands across the line (see :func:`region_stats`).
    rows, columns : Profile
        Profiles along each axis.
    note : str
        Empty, or why ``position`` is not the fitted line's, e.g. "focal line outside the
        field of view; nearest edge reported".
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

    @property
    def outside(self) -> bool:
        """Whether the fitted line crosses the centre line outside the image."""
        return not 0 <= self.fitted_position <= 1

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
            "position": round(self.position, 4),
            "fitted_position": round(self.fitted_position, 4),
            "note": self.note,
            "axis": self.axis,
            "angle_deg": round(self.angle, 3),
            "sigma0": round(self.sigma0, 4),
            "slope": round(self.slope, 6),
            "errors": {k: round(v, 6) for k, v in e.items()},
            "rms_log_residual": round(self.rms_log_residual, 4),
            "bands": self.bands,
        }

    to_dict = summary


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
    order = np.argsort(v, axis=-1, kind="stable")
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
    r0, r1 = rows if origin == "top" else (1 - rows[1], 1 - rows[0])
    y0, x0 = round(r0 * h), round(cols[0] * w)
    ys = slice(y0, max(round(r1 * h), y0 + 1))
    xs = slice(x0, max(round(cols[1] * w), x0 + 1))
    sig = blurmap.sigma[ys, xs].ravel()
    conf = blurmap.confidence[ys, xs].ravel()
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


def _fit(y, x, lv, wt, shape, start):
    """Refine (theta, rho, sigma0, k) by weighted least squares on log sigma_eff."""
    sw = np.sqrt(wt)

    def resid(p):
        d = _distance(y, x, (p[0], p[1]), shape)
        return sw * (0.5 * np.log(p[2] ** 2 + _FLOOR**2 + (p[3] * d) ** 2) - lv)

    lo = [start[0] - math.pi / 2, -np.inf, 0.0, 0.0]
    hi = [start[0] + math.pi / 2, np.inf, np.inf, np.inf]
    x0 = np.clip(start, np.array(lo) + 1e-9, np.array(hi) - 1e-9)
    # Robust loss: cells filled from far away (smooth regions) can read far off the model.
    sol = least_squares(
        resid, x0, bounds=(lo, hi), x_scale="jac", loss="soft_l1", f_scale=_ROBUST_SCALE
    )
    return sol.x, float(np.sqrt(np.sum(sol.fun**2) / wt.sum()))


def _initial(y, x, lv, wt, shape) -> np.ndarray:
    """Grid search over the line; for each, sigma0^2 and k^2 follow by linear least squares."""
    h, w = shape
    s2 = np.exp(2 * lv) - _FLOOR**2
    best, best_err = None, np.inf
    half = math.hypot(h, w) / 2
    for th in np.radians(np.arange(-90, 90, 5.0)):
        for rho in np.linspace(-half, half, 41):
            d2 = _distance(y, x, (th, rho), shape) ** 2
            a = np.stack([np.ones_like(d2), d2], 1) * wt[:, None]
            coef = np.linalg.lstsq(a, s2 * wt, rcond=None)[0]
            coef = np.maximum(coef, 0)
            pred = 0.5 * np.log(coef[0] + _FLOOR**2 + coef[1] * d2)
            err = float(np.sum(wt * (pred - lv) ** 2))
            if err < best_err:
                best, best_err = np.array([th, rho, np.sqrt(coef[0]), np.sqrt(coef[1])]), err
    return best


def focal_plane(
    blurmap: BlurMap, *, n_bands: int = 10, min_confidence: float = 0.1, seed: int = 0
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
    seed : int
        Seed of the block bootstrap that gives the uncertainties (deterministic).

    Returns
    -------
    FocalPlane

    Examples
    --------
    >>> from defocus.blurmap import BlurMap
    >>> from defocus.synth import tilt_map
    >>> sig = tilt_map((200, 160), position=0.6, angle=10, slope=0.05, floor=0.5)
    >>> one = np.ones_like(sig)
    >>> bm = BlurMap(sig, one, sig[2::4, 2::4], one[2::4, 2::4], 4, 0.0, "gauss")
    >>> fp = focal_plane(bm)
    >>> round(fp.position, 2), round(fp.angle), round(fp.slope, 3)
    (0.6, 10, 0.05)
    """
    if n_bands < 1:
        raise BadInputError(f"n_bands must be >= 1, got {n_bands}")
    sig, conf, r, c = _grid(blurmap)
    shape = blurmap.shape
    yy, xx = np.meshgrid(r.astype(np.float64), c.astype(np.float64), indexing="ij")
    keep = conf.ravel() >= min_confidence
    if keep.sum() < 16:
        raise BadInputError("too few confident blur measurements to fit a focal plane")
    step = max(1, int(np.ceil(keep.sum() / _MAX_POINTS)))
    idx = np.flatnonzero(keep)[::step]
    y, x = yy.ravel()[idx], xx.ravel()[idx]
    lv = 0.5 * np.log(sig.ravel()[idx].astype(np.float64) ** 2 + _FLOOR**2)
    wt = conf.ravel()[idx].astype(np.float64)
    sub = slice(None, None, max(1, len(idx) // 5000))
    start = _initial(y[sub], x[sub], lv[sub], wt[sub], shape)
    p, rms = _fit(y, x, lv, wt, shape, start)
    # Block bootstrap: resample 8 x 8 blocks of the image with replacement.
    rng = np.random.default_rng(seed)
    by = np.minimum((y * 8 / shape[0]).astype(int), 7)
    bx = np.minimum((x * 8 / shape[1]).astype(int), 7)
    block = by * 8 + bx
    boots = []
    for _ in range(_BOOTSTRAP):
        counts = np.bincount(rng.integers(0, 64, 64), minlength=64)
        wb = wt * counts[block]
        if wb.sum() > 0:
            boots.append(_fit(y, x, lv, wb, shape, p)[0])
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
            bands.append(region_stats(blurmap, rows=span))
        else:
            bands.append(region_stats(blurmap, cols=span))
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
    return FocalPlane(
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
    )


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
