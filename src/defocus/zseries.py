"""From blur to height: through-focus series, best focus per pixel, and calibrated height maps.

A point at height h is sharpest when the focus is at z = h. Away from it, the defocus blur grows
linearly with the focus error (geometric optics: a cone of semi-angle α cuts a disk of radius
α|Δz|) and adds in quadrature to the in-focus blur σ0::

    σ(z)² = σ0² + k² (z − z0)²

with k in px per unit of z (for a disk of radius R, σ = R/2, so k = α / (2 · pixel size);
Pentland 1987; Subbarao & Surya 1994). :func:`through_focus` reads a series of frames at known
focus positions z and returns, per pixel, the best-focus z (the height), σ at best focus and the
blur growth k; globally, the sample's mean plane and tilt, the depth of field for a blur
tolerance, and the series fit of σ² against z, which locates focus with an uncertainty also
when the series does not bracket it. :func:`height_map` turns a single blur map into height
with a calibration k.

Best focus per pixel is the peak of the focus curve along z, refined to sub-step precision by a
parabola through the log focus measure at the three frames around the maximum, which is exact
for a Gaussian focus curve (Nayar & Nakagawa 1994, "Shape from focus", IEEE PAMI 16:824).

Examples
--------
>>> from skimage import data
>>> from defocus.synth import blur_varying
>>> sharp = data.camera()[::4, ::4].astype(np.float32)
>>> height = np.tile(np.linspace(0.0, 2.0, 128, dtype=np.float32), (128, 1))  # µm, along x
>>> z = np.linspace(-0.5, 2.5, 7)
>>> frames = [blur_varying(sharp, np.hypot(0.5, 2.0 * (zi - height))) for zi in z]
>>> tf = through_focus(frames, z, align=False)
>>> err = np.abs(tf.height - height)[tf.confidence > 0.3]
>>> bool(np.median(err) < 0.2)
True
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ._array import as_float_image
from ._errors import BadInputError
from .io import PixelSize, parse_pixel_size

__all__ = [
    "Z_PATTERN",
    "HeightMap",
    "SeriesFit",
    "ThroughFocus",
    "blur_growth",
    "check_z",
    "height_map",
    "parse_z",
    "through_focus",
    "z_from_names",
]

#: File-name pattern for z: the letter z, an optional ``=``, ``_`` or ``-``, a signed decimal
#: number and an optional length unit (default µm), e.g. ``bead_z-0.6um.tif``, ``z=12.5.png``,
#: ``stack_z300nm_04.tif``. The last match in the name wins.
Z_PATTERN = r"(?<![a-z])z[=_]?(?P<value>[-+]?\d+(?:\.\d+)?)(?P<unit>nm|um|µm|mm)?(?!\d|\.\d)"

_CELL = 16  # px: cell of the per-cell fit of sigma² against z
_BOOTSTRAP = 300  # block-bootstrap resamples of the series fit
_BLOCKS = 8  # the bootstrap resamples _BLOCKS x _BLOCKS blocks of the field
_SIDE = 1024  # long side (px) the analysis runs at; larger frames are binned by whole factors


# --------------------------------------------------------------------------------------------
# z positions


def parse_z(text: str) -> tuple[np.ndarray, str]:
    """Parse a z list such as ``"0,0.3,0.6"`` or ``"-5,0,5um"`` (unit default µm).

    Examples
    --------
    >>> parse_z("-5, 0, 5 um")
    (array([-5.,  0.,  5.]), 'µm')
    >>> parse_z("0,300,600nm")[1]
    'nm'
    """
    m = re.fullmatch(r"\s*(?P<list>[-+0-9.eE,\s]+?)\s*(?P<unit>nm|um|µm|mm)?\s*", text)
    if m is None:
        raise BadInputError(f"cannot read z list {text!r}; write it like '0,0.3,0.6um'")
    try:
        z = np.array([float(v) for v in m["list"].split(",")], dtype=np.float64)
    except ValueError:
        raise BadInputError(f"cannot read z list {text!r}; write it like '0,0.3,0.6um'") from None
    return z, _unit(m["unit"])


def _unit(text: str | None) -> str:
    return "µm" if text in (None, "um", "µm") else str(text)


def z_from_names(
    paths: Sequence[str | os.PathLike], *, pattern: str = Z_PATTERN
) -> tuple[np.ndarray, str]:
    """Read each frame's z from its file name with :data:`Z_PATTERN` (or ``pattern``, which
    needs a named group ``value`` and may have one named ``unit``).

    Examples
    --------
    >>> z_from_names(["s_z-0.6um.tif", "s_z0um.tif", "s_z0.6um.tif"])
    (array([-0.6,  0. ,  0.6]), 'µm')
    >>> z_from_names(["a_z300nm.tif", "a_z600nm.tif"])
    (array([300., 600.]), 'nm')
    """
    rx = re.compile(pattern, re.IGNORECASE)
    values, units = [], set()
    for p in paths:
        name = Path(os.fsdecode(p)).name
        hits = list(rx.finditer(name))
        if not hits:
            raise BadInputError(
                f"{name}: no z in the file name (expected e.g. 'z-0.6um'); give --z or --z-step"
            )
        values.append(float(hits[-1]["value"]))
        units.add(_unit(hits[-1].groupdict().get("unit")))
    if len(units) > 1:
        raise BadInputError(f"file names mix z units {sorted(units)}; give --z instead")
    return np.array(values), units.pop()


def check_z(z: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    """Return z as float64, refusing a list of the wrong length, non-finite values, duplicates,
    or an order that is not monotonic (the frames must be given in focus order).

    Examples
    --------
    >>> check_z([0, 0.3, 0.6], 3)
    array([0. , 0.3, 0.6])
    >>> check_z([0, 0.6, 0.3], 3)
    Traceback (most recent call last):
    ...
    defocus._errors.BadInputError: z is not monotonic: 0.6 then 0.3 at frames 2-3; ...
    """
    z = np.asarray(z, dtype=np.float64).ravel()
    if z.size != n:
        raise BadInputError(f"{z.size} z values for {n} frames; give one z per frame")
    if n < 2:
        raise BadInputError(f"a through-focus series needs at least 2 frames, got {n}")
    if not np.isfinite(z).all():
        raise BadInputError("z values must be finite numbers")
    d = np.diff(z)
    dup = np.flatnonzero(d == 0)
    if dup.size:
        i = int(dup[0])
        raise BadInputError(f"z has the duplicate value {z[i]:g} at frames {i + 1} and {i + 2}")
    sign = np.sign(d[0])
    bad = np.flatnonzero(np.sign(d) != sign)
    if bad.size:
        i = int(bad[0])
        raise BadInputError(
            f"z is not monotonic: {z[i]:g} then {z[i + 1]:g} at frames {i + 1}-{i + 2}; "
            "give the frames in focus order"
        )
    return z


def blur_growth(alpha: float, pixel_size: PixelSize | str, *, unit: str = "µm") -> float:
    """Blur growth k (sigma px per ``unit`` of defocus) of a cone of convergence semi-angle
    ``alpha`` (radians): the blur disk has diameter 2 α |Δz|, so sigma = R / 2 = α |Δz| / 2.

    Examples
    --------
    >>> round(blur_growth(0.01, "10nm"), 3)  # 10 mrad SEM probe, 10 nm pixels: px per µm
    0.5
    """
    ps = parse_pixel_size(pixel_size)
    if ps is None or not (math.isfinite(alpha) and alpha > 0):
        raise BadInputError("blur_growth needs a semi-angle > 0 (radians) and a pixel size")
    p = ps.to(unit)
    return float(alpha / (2 * math.sqrt(p.x * p.y)))


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class SeriesFit:
    """Fit of the field's mean sigma² against z: ``σ² = σ0² + k² (z − z0)²``.

    ``z0`` and ``k`` are None when the blur does not fall and rise like that (no curvature:
    the focus cannot be located from these frames). Errors are one standard deviation from a
    block bootstrap over the field. ``sigma0_assumed`` is set when σ0 was given rather than fitted.
    """

    z: np.ndarray
    sigma2: np.ndarray
    z0: float | None
    z0_error: float | None
    k: float | None
    k_error: float | None
    sigma0: float | None
    sigma0_assumed: bool
    bracketed: bool
    statement: str


@dataclass(frozen=True, eq=False)
class ThroughFocus:
    """The result of :func:`through_focus`.

    Attributes
    ----------
    height : (H, W) ndarray of float32
        Best-focus z at each pixel, in ``z_unit`` (the height of the surface along the focus
        axis, in the sense of z). Dense: low-confidence pixels are filled from confident ones.
    confidence : (H, W) ndarray of float32
        In [0, 1]: how clearly the focus curve peaks inside the series, times how much detail
        the pixel holds. Half at most where the peak is at the first or last frame.
    sigma_best : (H, W) ndarray of float32
        Blur sigma (px) at the best-focus z, from the frames' blur maps.
    k : (H, W) ndarray of float32
        Blur growth (px per ``z_unit``) from a fit of sigma² against z in 16-px cells.
    k_confidence : (H, W) ndarray of float32
        Confidence of ``k``; 0 where the cell's blur does not rise on both sides of a focus.
    z : ndarray
        Focus position of each frame.
    z_unit : str
    pixel_size : PixelSize or None
    transforms : (N, 3, 3) ndarray
        Maps analysis-grid pixel coordinates of the reference (middle) frame to each frame's.
    focus_curve : (N,) ndarray
        The field's mean focus measure in each frame.
    focus_peak : float
        Sub-step peak of ``focus_curve`` (the series' best focus for the field as a whole,
        the autofocus answer); at an end frame when the curve peaks there.
    fit : SeriesFit
    plane : dict
        Confidence-weighted robust plane ``z = z_c + g_x x + g_y y`` through the height map
        (``x``, ``y`` from the image centre), tilts in degrees when the pixel size is known.
    tolerance : float or None
        Blur tolerance (sigma, px) of the depth of field.
    depth_of_field : float or None
        Range of z over which sigma stays within ``tolerance``, in ``z_unit``.
    notes : list of str
        Plain statements about what the series cannot support.
    """

    height: np.ndarray
    confidence: np.ndarray
    sigma_best: np.ndarray
    k: np.ndarray
    k_confidence: np.ndarray
    z: np.ndarray
    z_unit: str
    pixel_size: PixelSize | None
    transforms: np.ndarray
    focus_curve: np.ndarray
    focus_peak: float
    fit: SeriesFit
    plane: dict[str, Any]
    tolerance: float | None
    depth_of_field: float | None
    k_global: float | None
    sigma0_global: float | None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary; numbers the series cannot support are None with a note."""
        ok = self.confidence >= 0.3
        fit = self.fit
        u = self.z_unit
        out: dict[str, Any] = {
            "z": self.z.tolist(),
            "z_unit": u,
            "pixel_size": None if self.pixel_size is None else str(self.pixel_size),
            "confident_fraction": round(float(ok.mean()), 4),
            "focus_curve": [float(f"{v:.6g}") for v in self.focus_curve],
            "best_frame": int(np.argmax(self.focus_curve)),
            "focus_peak_z": _r(self.focus_peak),
            "focus_peak_inside": bool(0 < np.argmax(self.focus_curve) < len(self.z) - 1),
            "series_fit": {
                "model": "sigma^2 = sigma0^2 + k^2 (z - z0)^2 over the field's mean sigma^2",
                "sigma2_px2": [round(float(v), 4) for v in fit.sigma2],
                "z0": _r(fit.z0),
                "z0_error": _r(fit.z0_error),
                "k_px_per_unit": _r(fit.k),
                "k_error": _r(fit.k_error),
                "sigma0_px": _r(fit.sigma0),
                "sigma0_assumed": fit.sigma0_assumed,
                "bracketed": fit.bracketed,
                "statement": fit.statement,
            },
            "plane": self.plane,
            "blur_growth_k": {"value": _r(self.k_global), "unit": f"px/{u}"},
            "sigma_at_best_focus_px": _r(self.sigma0_global),
            "depth_of_field": {
                "value": _r(self.depth_of_field),
                "unit": u,
                "tolerance_sigma_px": _r(self.tolerance),
            },
            "notes": self.notes,
        }
        if ok.mean() >= 0.01:
            h = self.height[ok]
            out["height"] = {
                "unit": u,
                "p05": _r(float(np.percentile(h, 5))),
                "median": _r(float(np.median(h))),
                "p95": _r(float(np.percentile(h, 95))),
            }
        else:
            out["height"] = None
            out["notes"] = [*self.notes, "height not measurable here: no pixel peaks clearly"]
        return out

    to_dict = summary


@dataclass(frozen=True, eq=False)
class HeightMap:
    """The result of :func:`height_map`: height relative to the focal plane, in ``unit``.

    ``height`` is signed by continuity across the sharpest line (a tilted plane): positive on
    the ``z0_side`` side. ``plane`` holds the tilt as in :attr:`ThroughFocus.plane`.
    """

    height: np.ndarray
    confidence: np.ndarray
    unit: str
    k: float
    sigma0: float
    signed: bool
    plane: dict[str, Any]
    note: str = ""

    def summary(self) -> dict[str, Any]:
        ok = self.confidence >= 0.3
        out: dict[str, Any] = {
            "unit": self.unit,
            "k_px_per_unit": self.k,
            "sigma0_px": round(self.sigma0, 4),
            "signed": self.signed,
            "plane": self.plane,
            "note": self.note,
        }
        if ok.mean() >= 0.01:
            h = self.height[ok]
            out["p05"], out["median"], out["p95"] = (
                _r(float(v)) for v in np.percentile(h, [5, 50, 95])
            )
        else:
            out["verdict"] = "height not measurable here: too few confident blur values"
        return out

    to_dict = summary


def _r(v: float | None, digits: int = 4) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), digits)


# --------------------------------------------------------------------------------------------
# Frames


def _load(frames: Sequence[Any], channel_axis: int | None) -> tuple[list[np.ndarray], Any]:
    from .io import read_image

    out, ps = [], None
    for i, f in enumerate(frames):
        if isinstance(f, (str, os.PathLike)):
            img = read_image(f)
            ps = ps or img.pixel_size
            out.append(img.luminance.astype(np.float32))
        else:
            out.append(
                as_float_image(
                    np.asarray(f), channel_axis=channel_axis, min_size=32, name=f"frame {i}"
                )
            )
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        raise BadInputError(f"the frames differ in size: {sorted(shapes)}")
    if min(out[0].shape) < 32:
        raise BadInputError(f"frames of {out[0].shape} px are too small (at least 32 x 32)")
    return out, ps


def _bin(a: np.ndarray, f: int) -> np.ndarray:
    if f == 1:
        return a
    h, w = (s // f * f for s in a.shape)
    return a[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3), dtype=np.float32)


def _align(lum: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Register each frame to its neighbour towards the middle frame (neighbours differ least
    in blur); returns the transforms from the middle frame's pixels to each frame's, and the
    mask of pixels that every frame covers."""
    from .stack import AlignmentWarning, register

    n = len(lum)
    ref = n // 2
    t = np.repeat(np.eye(3)[None], n, axis=0)
    for order in (range(ref - 1, -1, -1), range(ref + 1, n)):
        for i in order:
            j = i + 1 if i < ref else i - 1
            m, ncc = register(lum[j], lum[i], model="similarity")
            if ncc < 0.5:
                warnings.warn(
                    f"frame {i}: registration failed (correlation {ncc:.2f}); it keeps its "
                    "neighbour's position",
                    AlignmentWarning,
                    stacklevel=3,
                )
                m = np.eye(3)
            t[i] = m @ t[j]
    h, w = lum[0].shape
    rr, cc = np.mgrid[0:h, 0:w]
    covered = np.ones((h, w), bool)
    for i in range(n):
        r = t[i, 0, 0] * rr + t[i, 0, 1] * cc + t[i, 0, 2]
        c = t[i, 1, 0] * rr + t[i, 1, 1] * cc + t[i, 1, 2]
        covered &= (r >= 0) & (r <= h - 1) & (c >= 0) & (c <= w - 1)
    return t, covered


def _warp_maps(maps: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Resample per-frame maps (N, H, W) into the reference geometry (bilinear). Maps are
    measured on the frames as acquired and moved afterwards: resampling a frame first would
    smooth its noise, which the noise-corrected measures would then read as detail."""
    from .stack import warp

    moved = [
        m if np.allclose(ti, np.eye(3)) else warp(m, ti, order=1)
        for m, ti in zip(maps, t, strict=True)
    ]
    return np.stack(moved)


# --------------------------------------------------------------------------------------------
# Per-pixel focus curves


def _peak(fm: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sub-step peak of each pixel's focus curve: a parabola through log F at the three frames
    around the maximum (a Gaussian focus curve), with the frames' actual z spacing. Returns
    the peak z, the curve's contrast 1 - min/max, and whether the maximum is an end frame."""
    n = len(z)
    idx = np.argmax(fm, axis=0)
    fmax = np.take_along_axis(fm, idx[None], 0)[0]
    contrast = np.where(fmax > 0, 1 - fm.min(axis=0) / np.maximum(fmax, 1e-30), 0.0)
    end = (idx == 0) | (idx == n - 1)
    zp = z[idx].astype(np.float64)
    if n >= 3:
        c = np.clip(idx, 1, n - 2)
        logf = np.log(np.maximum(fm, 1e-12 * max(float(fm.max()), 1e-30)))
        y0, y1, y2 = (np.take_along_axis(logf, (c + d)[None], 0)[0] for d in (-1, 0, 1))
        x0, x1, x2 = z[c - 1], z[c], z[c + 1]
        den = (x0 - x1) * (x0 - x2) * (x1 - x2)
        a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / den
        b = (x2**2 * (y0 - y1) + x1**2 * (y2 - y0) + x0**2 * (y1 - y2)) / den
        with np.errstate(divide="ignore", invalid="ignore"):
            v = -b / (2 * a)
        lo, hi = np.minimum(x0, x2), np.maximum(x0, x2)
        fit = (~end) & (a < 0) & np.isfinite(v)
        zp = np.where(fit, np.clip(v, lo, hi), zp)
    return zp, contrast, end


def _fill(values: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    """Normalised convolution (Knutsson & Westin 1993): a weighted local mean that fills
    pixels with little weight from confident neighbours; weighty pixels keep their value."""
    num = ndimage.gaussian_filter(values * weight, sigma, mode="nearest")
    den = ndimage.gaussian_filter(weight, sigma, mode="nearest")
    total = float(weight.sum())
    mean = float((values * weight).sum() / total) if total > 0 else float(values.mean())
    smooth = np.where(den > 1e-6, num / np.maximum(den, 1e-12), mean)
    return weight * values + (1 - weight) * smooth


# --------------------------------------------------------------------------------------------
# Blur against z


def _cells(a: np.ndarray, f: int) -> np.ndarray:
    h, w = (s // f * f for s in a.shape[-2:])
    return a[..., :h, :w].reshape(*a.shape[:-2], h // f, f, w // f, f).mean(axis=(-3, -1))


def _quad_fit(z: np.ndarray, s2: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares of s2 = a z² + b z + c along axis 0, per cell: (a, vertex)."""
    zc = z - z.mean()
    basis = np.stack([zc**2, zc, np.ones_like(zc)])  # (3, N)
    ata = np.einsum("in,jn,n...->...ij", basis, basis, w)
    atb = np.einsum("in,n...->...i", basis, w * s2)
    ata += np.eye(3) * 1e-9 * np.maximum(np.trace(ata, axis1=-2, axis2=-1), 1e-12)[..., None, None]
    coef = np.linalg.solve(ata, atb[..., None])[..., 0]
    a, b = coef[..., 0], coef[..., 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        vertex = -b / (2 * a) + z.mean()
    return a, vertex


def _series_fit(
    z: np.ndarray, s2: np.ndarray, w: np.ndarray, sigma0: float | None, unit: str
) -> SeriesFit:
    """Fit the field's mean sigma² per frame, with a block-bootstrap error."""
    n = len(z)
    h, wd = w.shape
    bl = np.minimum((np.arange(h) * _BLOCKS) // h, _BLOCKS - 1)[:, None] * _BLOCKS + np.minimum(
        (np.arange(wd) * _BLOCKS) // wd, _BLOCKS - 1
    )
    nb = _BLOCKS * _BLOCKS
    wsum = np.bincount(bl.ravel(), w.ravel(), nb)
    ssum = np.stack([np.bincount(bl.ravel(), (w * s).ravel(), nb) for s in s2])  # (N, blocks)

    def solve(ws: np.ndarray, ss: np.ndarray) -> tuple[float, float, float] | None:
        if ws.sum() <= 0:
            return None
        m = ss.sum(axis=1) / ws.sum()
        if sigma0 is None:
            if n < 3:
                return None
            a, b, c = np.polyfit(z, m, 2)
            if a <= 0:
                return None
            z0 = -b / (2 * a)
            return z0, math.sqrt(a), math.sqrt(max(c - b * b / (4 * a), 0.0))
        # sigma0 given: two unknowns (k, z0); for a trial z0, k² follows in closed form
        span = float(z.max() - z.min())
        d = m - sigma0**2

        def cost(z0: float) -> tuple[float, float]:
            q = (z - z0) ** 2
            k2 = max(float(d @ q / (q @ q)), 0.0)
            return float(((d - k2 * q) ** 2).sum()), k2

        grid = np.linspace(z.min() - 20 * span, z.max() + 20 * span, 4001)
        q = (z[None, :] - grid[:, None]) ** 2
        k2s = np.maximum(q @ d / (q * q).sum(axis=1), 0)
        best = grid[int(np.argmin(((d - k2s[:, None] * q) ** 2).sum(axis=1)))]
        from scipy.optimize import minimize_scalar

        step = grid[1] - grid[0]
        r = minimize_scalar(
            lambda g: cost(g)[0], bounds=(best - step, best + step), method="bounded"
        )
        k2 = cost(float(r.x))[1]
        return (float(r.x), math.sqrt(k2), sigma0) if k2 > 0 else None

    m = ssum.sum(axis=1) / max(wsum.sum(), 1e-30)
    main = solve(wsum, ssum)
    if main is None:
        return SeriesFit(
            z, m, None, None, None, None, None, sigma0 is not None, False,
            "focus not located: the field's blur does not fall and rise like a focus "
            "(too few frames, or no blur change across the series)",
        )  # fmt: skip
    rng = np.random.default_rng(0)  # deterministic
    boots = []
    for _ in range(_BOOTSTRAP):
        pick = rng.integers(0, nb, nb)
        res = solve(wsum[pick], ssum[:, pick])
        if res is not None:
            boots.append(res)
    b = np.array(boots) if boots else np.empty((0, 3))
    z0, k, s0 = main
    # robust spread: half the 16-84 % range (the vertex's distribution is heavy-tailed)
    err = [
        float(np.subtract(*np.percentile(b[:, i], [84, 16])) / 2) if len(b) > 10 else None
        for i in range(2)
    ]
    lo, hi = float(z.min()), float(z.max())
    z0 = float(z0)
    bracketed = bool(lo <= z0 <= hi)
    e = f" ± {err[0]:.2g}" if err[0] is not None else ""
    if bracketed:
        text = f"best focus at z = {z0:.3g}{e} {unit}, inside the series"
    else:
        side = "above the last" if z0 > hi else "below the first"
        text = (
            f"focus lies outside the series: fitted z0 = {z0:.3g}{e} {unit}, {side} frame's z"
            + (f" (sigma0 = {sigma0:g} px assumed)" if sigma0 is not None else "")
        )
    return SeriesFit(z, m, z0, err[0], k, err[1], s0, sigma0 is not None, bracketed, text)


# --------------------------------------------------------------------------------------------
# Plane and tilt


def _plane(
    height: np.ndarray, weight: np.ndarray, pixel_size: PixelSize | None, unit: str, scale: int
) -> dict[str, Any]:
    """Robust (Tukey biweight) weighted plane through the height map; tilt in degrees when the
    pixel size gives x and y in the unit of z."""
    h, w = height.shape
    step = max(1, round(math.sqrt(h * w / 65536)))
    hh = height[::step, ::step].astype(np.float64).ravel()
    ww = weight[::step, ::step].astype(np.float64).ravel()
    rr, cc = np.mgrid[0:h:step, 0:w:step]
    x = (cc.ravel() - (w - 1) / 2) * scale  # input pixels from the centre
    y = (rr.ravel() - (h - 1) / 2) * scale
    a = np.stack([np.ones_like(x), x, y], 1)
    if (ww >= 0.3).mean() < 0.01:
        return {"fitted": False, "note": "no plane: too few pixels peak inside the series"}
    wt = ww.copy()
    for _ in range(6):
        coef = np.linalg.lstsq(a * np.sqrt(wt)[:, None], hh * np.sqrt(wt), rcond=None)[0]
        res = hh - a @ coef
        mad = float(np.median(np.abs(res[ww > 0]))) * 1.4826 + 1e-12
        u = res / (4.685 * mad)
        wt = ww * np.where(np.abs(u) < 1, (1 - u * u) ** 2, 0)
    rms = float(np.sqrt(np.average(res**2, weights=np.maximum(wt, 1e-12))))
    out: dict[str, Any] = {
        "fitted": True,
        "z_centre": round(float(coef[0]), 5),
        "slope_x_per_px": float(f"{coef[1]:.6g}"),
        "slope_y_per_px": float(f"{coef[2]:.6g}"),
        "rms_residual": round(rms, 5),
        "unit": unit,
        "y_axis": "rows, pointing down",
    }
    if pixel_size is None:
        out["tilt_x_deg"] = out["tilt_y_deg"] = None
        out["note"] = "pixel size unknown: tilt only as z per pixel"
    else:
        p = pixel_size.to(unit)
        gx, gy = coef[1] / p.x, coef[2] / p.y
        out["tilt_x_deg"] = round(math.degrees(math.atan(gx)), 3)
        out["tilt_y_deg"] = round(math.degrees(math.atan(gy)), 3)
        out["tilt_deg"] = round(math.degrees(math.atan(math.hypot(gx, gy))), 3)
    return out


# --------------------------------------------------------------------------------------------


def through_focus(
    frames: Sequence[Any],
    z: Sequence[float] | np.ndarray,
    *,
    pixel_size: float | str | PixelSize | None = None,
    z_unit: str = "µm",
    align: bool = True,
    psf: str = "gauss",
    measure: str | None = None,
    scale: float | None = None,
    tolerance: float | None = None,
    sigma0: float | None = None,
    channel_axis: int | None = None,
) -> ThroughFocus:
    """Best focus, blur growth and height from frames taken at known focus positions ``z``.

    Parameters
    ----------
    frames : sequence of ndarray or path
        Two or more frames of one field, in focus order. Paths are read with
        :func:`defocus.read_image` (pixel size from the first frame's metadata).
    z : sequence of float
        Focus position of each frame, strictly monotonic, in ``z_unit``.
    pixel_size : PixelSize, str or float, optional
        Physical pixel size (a float is metres); needed for tilt in degrees.
    z_unit : str
        Length unit of ``z`` ("nm", "µm", "mm").
    align : bool
        Register the frames with :func:`defocus.stack.register` (similarity motion: focus
        breathing) before comparing them.
    psf : {"gauss", "disk", "auto"}
        PSF family given to :func:`defocus.blur_map`.
    measure, scale : optional
        Focus measure (:func:`defocus.list_measures`) and its window sigma (px) for the focus
        curves; defaults ``"tenengrad"`` (Tenenbaum 1970: windowed squared Sobel gradient) and
        2 % of the long side (at least 3 px).
    tolerance : float, optional
        Blur sigma (px) allowed within the depth of field. Default √2 times the sigma at best
        focus: the blurred area doubles at the limits, as in the Rayleigh range of a beam
        (Siegman, "Lasers", 1986, §17.1), and then the depth of field is 2 σ0 / k.
    sigma0 : float, optional
        In-focus sigma (px) to assume in the series fit instead of fitting it: with all frames
        on one side of focus, three unknowns rest on few frames, and an assumed sigma0 makes the
        fit over-determined.
    channel_axis : int, optional
        Colour axis of array frames.

    Returns
    -------
    ThroughFocus

    Notes
    -----
    Frames larger than 1024 px on the long side are analysed binned by a whole factor (sigma
    and k are given in input pixels; height maps are resampled to the input size). The per-pixel
    height is the focus-curve peak; k comes from blur maps of every frame, fitted per 16-px
    cell; the series fit uses the field's mean sigma² over pixels measurable in every frame.
    """
    from .blurmap import blur_map
    from .focus import focus_map

    lum, file_ps = _load(frames, channel_axis)
    z = check_z(z, len(lum))
    z_unit = _unit(z_unit)
    ps = parse_pixel_size(pixel_size) if not isinstance(pixel_size, float) else None
    if isinstance(pixel_size, float):
        ps = PixelSize(pixel_size * 1e6, pixel_size * 1e6, "µm")
    ps = ps or file_ps
    if tolerance is not None and not (math.isfinite(tolerance) and tolerance > 0):
        raise BadInputError(f"tolerance must be a blur sigma > 0 px, got {tolerance!r}")
    if sigma0 is not None and not (math.isfinite(sigma0) and sigma0 >= 0):
        raise BadInputError(f"sigma0 must be >= 0 px, got {sigma0!r}")
    full = lum[0].shape
    f = max(1, math.ceil(max(full) / _SIDE))
    lum = [_bin(a, f) for a in lum]
    n = len(lum)
    if align:
        transforms, covered = _align(lum)
    else:
        transforms = np.repeat(np.eye(3)[None], n, axis=0)
        covered = np.ones(lum[0].shape, bool)
    shape = lum[0].shape
    win = scale if scale is not None else max(3.0, 0.02 * max(shape))
    # One pixel's curve compares its own detail across frames, so a contrast-invariant ratio
    # buys nothing here, while its noise correction erases sparse signal (a bead); frames are
    # matched in mean brightness instead (blur keeps the mean), against exposure drift.
    ref_mean = float(np.mean(lum[n // 2]))
    lum = [a * np.float32(ref_mean / m) if (m := float(np.mean(a))) > 0 else a for a in lum]
    fm = np.stack([focus_map(a, measure=measure or "tenengrad", scale=win) for a in lum])
    fm = np.maximum(_warp_maps(fm, transforms).astype(np.float64), 0)
    zp, contrast, end = _peak(fm, z)
    fmax = fm.max(axis=0)
    ref = float(np.percentile(fmax[covered], 95)) if covered.any() else 0.0
    detail = fmax / (fmax + 0.1 * ref) if ref > 0 else np.zeros_like(fmax)
    conf = (contrast * detail * np.where(end, 0.5, 1.0) * covered).astype(np.float32)
    height = _fill(zp, conf.astype(np.float64), max(4.0, max(shape) / 32))

    # blur maps of every frame: sigma at best focus, k per cell, and the series fit
    bms = [blur_map(a, psf=psf) for a in lum]
    sig = _warp_maps(np.stack([b.sigma for b in bms]), transforms).astype(np.float64) * f
    bconf = _warp_maps(np.stack([b.confidence for b in bms]), transforms) * covered
    order = np.argsort(z)
    zs, s2 = z[order], (sig**2)[order]
    j = np.clip(np.searchsorted(zs, height) - 1, 0, n - 2)
    t = np.clip((height - zs[j]) / (zs[j + 1] - zs[j]), 0, 1)
    s_lo = np.take_along_axis(s2, j[None], 0)[0]
    s_hi = np.take_along_axis(s2, (j + 1)[None], 0)[0]
    sigma_best = np.sqrt((1 - t) * s_lo + t * s_hi).astype(np.float32)

    common = bconf.min(axis=0)
    notes: list[str] = []
    if n >= 3:
        a, vertex = _quad_fit(z, _cells(sig**2, _CELL), _cells(bconf, _CELL))
        span = float(z.max() - z.min())
        inside = (vertex >= z.min() - 0.25 * span) & (vertex <= z.max() + 0.25 * span)
        kc = np.sqrt(np.maximum(a, 0))
        kconf_c = _cells(bconf, _CELL).mean(axis=0) * ((a > 0) & inside)
        good = kconf_c > 0.1
        k_global = _weighted_median(kc[good], kconf_c[good]) if good.sum() >= 4 else None
        k_map = _resize(kc.astype(np.float32), shape)
        k_conf = _resize(kconf_c.astype(np.float32), shape)
    else:
        k_global = None
        k_map = np.zeros(shape, np.float32)
        k_conf = np.zeros(shape, np.float32)
        notes.append("blur growth k needs 3 frames or more")
    fit = _series_fit(z, sig**2, common, sigma0, z_unit)
    if fit.k is not None and (k_global is None or not fit.bracketed):
        # focus outside the series: cells whose own fit finds a focus inside are a biased few
        k_global = fit.k
    ok = conf >= 0.3
    s0 = float(np.median(sigma_best[ok])) if ok.mean() >= 0.01 else None
    dof = None
    tol = tolerance if tolerance is not None else (math.sqrt(2) * s0 if s0 else None)
    if k_global and s0 is not None and tol is not None:
        if tol > s0:
            dof = 2 * math.sqrt(tol**2 - s0**2) / k_global
        else:
            dof = 0.0
            notes.append(
                f"depth of field 0: sigma at best focus ({s0:.2f} px) exceeds the tolerance "
                f"({tol:g} px)"
            )
    elif k_global is None:
        notes.append("depth of field not measurable: no blur growth k")
    else:
        notes.append("depth of field not measurable: no pixel is sharpest inside the series")
    if not fit.bracketed:
        notes.append(fit.statement)
    if end.mean() > 0.5 and ok.mean() >= 0.01:
        notes.append("most pixels peak at the first or last frame: focus may lie beyond the series")
    # an end frame's peak only bounds the height: the plane rests on peaks inside the series
    plane = _plane(height, np.where(end, 0, conf), ps, z_unit, f)
    curve = fm[:, covered].mean(axis=1) if covered.any() else fm.mean(axis=(1, 2))
    if f > 1:
        height = _resize(height.astype(np.float32), full)
        conf = _resize(conf, full)
        sigma_best = _resize(sigma_best, full)
        k_map = _resize(k_map, full)
        k_conf = _resize(k_conf, full)
    return ThroughFocus(
        height=height.astype(np.float32),
        confidence=np.clip(conf, 0, 1).astype(np.float32),
        sigma_best=sigma_best.astype(np.float32),
        k=k_map.astype(np.float32),
        k_confidence=np.clip(k_conf, 0, 1).astype(np.float32),
        z=z,
        z_unit=z_unit,
        pixel_size=ps,
        transforms=transforms,
        focus_curve=curve,
        focus_peak=float(_peak(curve[:, None], z)[0][0]),
        fit=fit,
        plane=plane,
        tolerance=None if tol is None else float(tol),
        depth_of_field=dof,
        k_global=k_global,
        sigma0_global=s0,
        notes=notes,
    )


def _weighted_median(v: np.ndarray, w: np.ndarray) -> float:
    o = np.argsort(v)
    cw = np.cumsum(w[o])
    return float(v[o][min(int(np.searchsorted(cw, cw[-1] / 2)), len(v) - 1)])


def _resize(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from skimage.transform import resize

    return resize(a, shape, order=1, mode="edge", preserve_range=True).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Height from one blur map


_SIDES = ("top", "bottom", "left", "right")


def height_map(
    blurmap: Any,
    *,
    k: float,
    sigma0: float | None = None,
    z0_side: str = "top",
    unit: str = "µm",
    focal: Any = None,
) -> HeightMap:
    """Height from one blur map with a calibration: ``|Δz| = sqrt(σ² − σ0²) / k``.

    One image cannot tell above focus from below. The sign is resolved by continuity across
    the sharpest line that :func:`defocus.focal_plane` fits (a tilted flat sample, the default
    prior): the surface rises through the line, towards ``z0_side``.

    Parameters
    ----------
    blurmap : BlurMap
        From :func:`defocus.blur_map`.
    k : float
        Blur growth, sigma px per ``unit`` of defocus (from :func:`through_focus`, or from the
        optics with :func:`blur_growth`).
    sigma0 : float, optional
        Blur at focus (px); default the focal plane's fitted sigma0.
    z0_side : {"top", "bottom", "left", "right"}
        The side of the image that lies higher (nearer the lens); it sets the overall sign.
    unit : str
        Length unit of the height (that of ``k``).
    focal : FocalPlane, optional
        :func:`defocus.focal_plane` of this map, if already fitted.

    Returns
    -------
    HeightMap

    Examples
    --------
    >>> from skimage import data
    >>> from defocus import blur_map, blur_varying, tilt_map
    >>> sharp = data.camera()[::2, ::2]
    >>> bm = blur_map(blur_varying(sharp, tilt_map(sharp.shape, slope=0.02, floor=0.5)))
    >>> hm = height_map(bm, k=2.0)  # 2 px of sigma per µm
    >>> col = hm.height[:, 128]
    >>> bool(col[20] > col[128] > col[236])  # one slope through the sharp line, no V
    True
    """
    from .focalplane import focal_plane

    if z0_side not in _SIDES:
        raise BadInputError(f"z0_side must be one of {', '.join(_SIDES)}, got {z0_side!r}")
    if not (math.isfinite(k) and k > 0):
        raise BadInputError(f"k must be a blur growth > 0 px per {unit}, got {k!r}")
    sigma = blurmap.sigma.astype(np.float64)
    fp = focal if focal is not None else focal_plane(blurmap)
    s0 = float(fp.sigma0) if sigma0 is None else float(sigma0)
    dz = np.sqrt(np.maximum(sigma**2 - s0**2, 0)) / k
    h, w = sigma.shape
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float64)
    signed = bool(fp.significant and not fp.outside)
    note = ""
    if signed:
        # signed distance from the fitted line (as in synth.tilt_map): rows point down
        theta = math.radians(fp.angle)
        if fp.axis == "rows":
            d = (rr - fp.fitted_position * h) * math.cos(theta) + (cc - (w - 1) / 2) * math.sin(
                theta
            )
        else:
            d = (cc - fp.fitted_position * w) * math.cos(theta) - (rr - (h - 1) / 2) * math.sin(
                theta
            )
        # the side z0_side names is where d takes its sign at that edge's midpoint
        probe = {"top": (0, w // 2), "bottom": (h - 1, w // 2), "left": (h // 2, 0)}
        pr, pc = probe.get(z0_side, (h // 2, w - 1))
        s = 1.0 if d[pr, pc] >= 0 else -1.0
        height = np.sign(d) * s * dz
    else:
        height = dz
        note = "no focal line inside the image: one side of focus, sign unknown; height is |dz|"
    conf = blurmap.confidence.astype(np.float32)
    ps = getattr(blurmap, "pixel_size", None)
    return HeightMap(
        height=height.astype(np.float32),
        confidence=conf,
        unit=_unit(unit),
        k=float(k),
        sigma0=s0,
        signed=signed,
        plane=_plane(height, conf, ps, _unit(unit), 1),
        note=note,
    )


def read_calibration(path: str | os.PathLike) -> tuple[float, str]:
    """Blur growth k and its z unit from a ``defocus zseries`` JSON summary."""
    import json

    p = Path(os.fsdecode(path))
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        k = doc["blur_growth_k"]["value"]
        unit = doc["z_unit"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInputError(f"{p}: not a zseries calibration ({type(exc).__name__})") from None
    if k is None:
        raise BadInputError(f"{p}: the series gave no blur growth k; it cannot calibrate")
    return float(k), _unit(unit)
