"""Real-data benchmark for the blur map (issue 14): physics that real instrument images obey.

Run:  python benchmarks/bench_real.py [--data DIR]
Writes benchmarks/results/real.md (and real_regions.png, the FIB region masks drawn on the
images). The data is ``../shared/data`` relative to the repository root (read-only); override
with ``--data`` or DEFOCUS_SHARED_DATA.

There is no ground-truth blur in these images, so each check is a law the answer must obey:

1. **Through-focus consistency** on every focus stack in ``real_stacks/``: on each textured
   64-px tile, sigma over the frames must follow sigma² = sigma0² + k²(i - i0)², and the frame
   of least sigma must be the frame where a standard focus measure (energy of the Laplacian of
   Gaussian) peaks on that tile.
2. **DeepFocus SEM series** (``real/sem_deepfocus_wd``): the same field at three known
   working-distance offsets; sigma must rise strictly with the defocus and sigma² be linear in
   its square.
3. **FIB images** (``real/fibsem_demarcolab``): the needle, lamella and grid bar are in focus,
   the substrate far behind them is not; the 32°-tilted SEM surface is sharp everywhere and is
   the control. Hand-measured 10-90 % edge widths on the substrate give an estimator-independent
   scale for the substrate's blur.

Every check takes any estimator with the signature of :func:`defocus.blur_map`
(``estimator(image, psf=..., channel_axis=...)`` returning an object with ``sigma`` and
``confidence`` maps), so a replacement estimator is scored by ``run(estimator=...)``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import curve_fit
from scipy.special import erf

import defocus
from defocus._array import luminance
from defocus.blurmap import CONFIDENCE_THRESHOLD
from defocus.io import read_image
from defocus.stack import register, warp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DATA = Path(os.environ.get("DEFOCUS_SHARED_DATA", ROOT.parent / "shared" / "data"))
Estimator = Callable[..., Any]

TILE = 64
# Frames of each stack, sorted by name; focus-stack_pcb's expected.jpg is a fused output.
STACKS = {
    "cmcguinness_step": "step*.jpg",
    "focus-stack_pcb": "pcb_*.jpg",
    "focus-stack_pcb_depthmap": "pcb_*.JPG",
}
STACK_PSF = "disk"  # a camera's geometric defocus
SEM_PSF = "gauss"  # an electron or ion probe
# Texture rule (see texture_mask): peak tile energy over frames >= TEXTURE_SNR x the noise
# floor, and the focus measure must vary over the sweep by >= FOCUS_RANGE.
TEXTURE_SNR = 10.0
FOCUS_RANGE = 2.0
LOG_SCALE = 1.0  # px: scale of the Laplacian-of-Gaussian focus measure
# Diagnostic only (not a criterion): a tile is measured in a frame when at least this share of
# its pixels reaches the blur map's CONFIDENCE_THRESHOLD; elsewhere its sigma is the fill.
MEASURED_SHARE = 0.1
# DeepFocus: WD - WD_focus of each frame, in µm (the data set's SOURCE.txt).
DEEPFOCUS = {
    "series_0_def-13324_astx-466_asty219_pert5000.png": -8.324,
    "series_0_def-13324_astx-466_asty219_base.png": -13.324,
    "series_0_def-13324_astx-466_asty219_pert-5000.png": -18.324,
}
FIB_DIR = "real/fibsem_demarcolab"
TILTED = "sem_tilted32_baseline_eb.tif"
TILTED_MAX_SIGMA = 1.5  # px
# FIB regions: polygons of (x, y) vertices as fractions of the image width and height, drawn by
# looking at the images (see real_regions.png). In-focus regions follow the object's outline, so
# they hold its sharp edges; substrate regions keep at least ~30 px from every in-focus object.
# pfib_needle_lamella_test_image_2.tif is byte-identical to the bundled fib_needle.tif.
FIB_REGIONS: dict[str, dict[str, list[list[tuple[float, float]]]]] = {
    "pfib_needle_lamella_test_image_2.tif": {
        "needle": [[(0.0, 0.63), (0.165, 0.505), (0.17, 0.59), (0.0, 0.93)]],
        "lamella": [[(0.17, 0.43), (0.305, 0.43), (0.305, 0.62), (0.17, 0.62)]],
        "grid bar": [[(0.54, 0.02), (0.86, 0.02), (0.88, 0.98), (0.56, 0.98)]],
        "substrate": [
            [(0.02, 0.02), (0.44, 0.02), (0.44, 0.38), (0.02, 0.38)],
            [(0.25, 0.66), (0.45, 0.66), (0.45, 0.98), (0.25, 0.98)],
        ],
    },
    "fib_needle_lamella_test_image.tif": {
        "needle": [[(0.0, 0.66), (0.2, 0.51), (0.29, 0.47), (0.29, 0.6), (0.08, 1.0), (0.0, 1.0)]],
        "lamella": [[(0.295, 0.355), (0.535, 0.355), (0.535, 0.605), (0.295, 0.605)]],
        "substrate": [
            [(0.02, 0.02), (0.55, 0.02), (0.55, 0.29), (0.02, 0.29)],
            [(0.62, 0.02), (0.98, 0.02), (0.98, 0.98), (0.62, 0.98)],
        ],
    },
}
# Profiles across soft substrate edges, for hand-measured 10-90 % widths: (x, y) start and end
# as fractions of the image size, averaged over a strip EDGE_HALF_WIDTH px either side.
FIB_EDGES: dict[str, list[tuple[str, tuple[float, float], tuple[float, float]]]] = {
    "pfib_needle_lamella_test_image_2.tif": [
        ("left edge of the grey blob, row 30 %", (0.06, 0.30), (0.36, 0.30)),
        ("top edge of the grey blob, column 38 %", (0.38, 0.02), (0.38, 0.36)),
    ],
    "fib_needle_lamella_test_image.tif": [
        ("left edge of the bright blob, row 15 %", (0.58, 0.15), (0.95, 0.15)),
        ("left edge of the bright blob, row 40 %", (0.58, 0.40), (0.95, 0.40)),
    ],
}
EDGE_HALF_WIDTH = 16
GAUSS_10_90 = 2.0 * 1.2816  # 10-90 % width of a Gaussian-blurred step, in units of sigma


# --------------------------------------------------------------------------- small helpers


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """Median of ``values`` weighted by ``weights``; the plain median when all weights are 0."""
    v = np.asarray(values, dtype=np.float64).ravel()
    w = np.asarray(weights, dtype=np.float64).ravel()
    if v.size == 0:
        return math.nan
    if not w.sum() > 0:
        return float(np.median(v))
    order = np.argsort(v, kind="stable")
    cw = np.cumsum(w[order])
    return float(v[order][np.searchsorted(cw, 0.5 * cw[-1])])


def _tile_view(a: np.ndarray, tile: int) -> np.ndarray:
    """(ny, nx, tile*tile) view of the whole tiles of a 2-D array (the ragged edge dropped)."""
    ny, nx = a.shape[0] // tile, a.shape[1] // tile
    t = a[: ny * tile, : nx * tile].reshape(ny, tile, nx, tile).swapaxes(1, 2)
    return t.reshape(ny, nx, tile * tile)


def tile_weighted_median(sigma: np.ndarray, conf: np.ndarray, tile: int) -> np.ndarray:
    """Confidence-weighted median of ``sigma`` in each whole tile, (ny, nx)."""
    s, w = _tile_view(sigma, tile), _tile_view(conf, tile).astype(np.float64)
    order = np.argsort(s, axis=-1, kind="stable")
    s = np.take_along_axis(s, order, -1)
    cw = np.cumsum(np.take_along_axis(w, order, -1), axis=-1)
    total = cw[..., -1:]
    # All-zero weights: fall back to the plain median (the middle sample).
    idx = np.where(
        total[..., 0] > 0,
        np.argmax(cw >= 0.5 * np.where(total > 0, total, 1), axis=-1),
        s.shape[-1] // 2,
    )
    return np.take_along_axis(s, idx[..., None], -1)[..., 0].astype(np.float64)


def focus_energy(lum: np.ndarray) -> np.ndarray:
    """Per-pixel focus measure: squared Laplacian of Gaussian (``LOG_SCALE`` px)."""
    return ndi.gaussian_laplace(np.asarray(lum, dtype=np.float32), LOG_SCALE) ** 2


def _estimate(
    estimator: Estimator, image: np.ndarray, psf: str, channel_axis: int | None
) -> tuple[np.ndarray, np.ndarray]:
    bm = estimator(image, psf=psf, channel_axis=channel_axis)
    return (
        np.asarray(bm.sigma, dtype=np.float32),
        np.asarray(bm.confidence, dtype=np.float32),
    )


# --------------------------------------------------------------------------- through focus


def fit_through_focus(
    sigma: np.ndarray, index: np.ndarray, *, i0_step: float = 0.05
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fit sigma² = sigma0² + k²(i - i0)² per column of ``sigma`` (frames x tiles).

    ``index`` is each frame's position i in the sweep. Linear least squares in (sigma0², k²),
    both bounded at 0, for each i0 on a grid from one frame before the first to one after the
    last; the i0 of least squared error wins.

    Returns
    -------
    r2, k, sigma0, i0 : ndarray, one value per tile
        R² of the fit in sigma² (0 where sigma² is constant over the frames: a reading that
        does not change while the focus measure does has explained nothing), k in px per frame.
    """
    y = np.asarray(sigma, dtype=np.float64) ** 2
    i = np.asarray(index, dtype=np.float64)[:, None]
    ybar = y.mean(0)
    sst = ((y - ybar) ** 2).sum(0)
    best = np.full(y.shape[1], np.inf)
    out = np.zeros((3, y.shape[1]))
    for i0 in np.arange(i.min() - 1, i.max() + 1 + i0_step / 2, i0_step):
        u = (i - i0) ** 2
        ubar = float(u.mean())
        suu = float(((u - ubar) ** 2).sum())
        b = ((u - ubar) * (y - ybar)).sum(0) / suu
        a = ybar - b * ubar
        # Bounded: where the free fit leaves the feasible set, take the better face.
        b_a0 = (u * y).sum(0) / float((u * u).sum())
        cands = [(a, b), (np.zeros_like(a), b_a0), (ybar, np.zeros_like(a))]
        for ca, cb in cands:
            ok = (ca >= 0) & (cb >= 0)
            sse = ((y - ca - cb * u) ** 2).sum(0)
            better = ok & (sse < best)
            best = np.where(better, sse, best)
            out[:, better] = np.stack([ca[better], cb[better], np.full(better.sum(), i0)])
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(sst > 0, 1.0 - best / sst, 0.0)
    return r2, np.sqrt(out[1]), np.sqrt(out[0]), out[2]


def texture_mask(energy: np.ndarray) -> tuple[np.ndarray, float]:
    """Which tiles are textured, from their focus-measure energy (frames x tiles).

    The noise floor is the 10th percentile, over tiles, of each tile's least energy over the
    frames: the flattest tenth of the scene in its blurriest state holds only noise,
    quantisation and JPEG residue (where a scene is textured everywhere this overestimates the
    floor, which only makes the rule stricter). A tile is textured when its peak energy is at
    least ``TEXTURE_SNR`` times that floor, and its energy varies over the sweep by at least
    ``FOCUS_RANGE`` times, so that it has a sharpest frame to find.
    """
    peak, low = energy.max(0), energy.min(0)
    floor = float(np.percentile(low, 10))
    return (peak >= TEXTURE_SNR * floor) & (peak >= FOCUS_RANGE * low), floor


def _covered(t: np.ndarray, shape: tuple[int, int], ny: int, nx: int, tile: int) -> np.ndarray:
    """Tiles (of the reference grid) whose four corner pixels map inside the moving frame.

    A corner may fall up to tile / 16 px outside (sub-pixel registration noise at the border
    would otherwise drop whole rows of tiles); the warp fills that sliver from the edge.
    """
    tol = tile / 16
    first = np.arange(ny, dtype=np.float64) * tile
    firstc = np.arange(nx, dtype=np.float64) * tile
    ok = np.ones((ny, nx), bool)
    for r in (first, first + tile - 1):
        for c in (firstc, firstc + tile - 1):
            rr, cc = np.meshgrid(r, c, indexing="ij")
            p = t @ np.stack([rr.ravel(), cc.ravel(), np.ones(rr.size)])
            inside = (p[0] >= -tol) & (p[0] <= shape[0] - 1 + tol)
            inside &= (p[1] >= -tol) & (p[1] <= shape[1] - 1 + tol)
            ok &= inside.reshape(ny, nx)
    return ok


def tile_series(
    frames: Sequence[np.ndarray],
    estimator: Estimator = defocus.blur_map,
    *,
    tile: int = TILE,
    psf: str = STACK_PSF,
    channel_axis: int | None = None,
    align: bool = True,
) -> dict[str, Any]:
    """Per-tile sigma and focus-measure energy over a sweep, in the middle frame's pixels.

    Each frame goes to the estimator as it is (so it sees the real dtype, noise and JPEG
    structure). With ``align``, each frame is registered to the middle frame (similarity:
    shift, rotation and the focus breathing's scale) and the estimator's sigma and confidence
    maps, and the focus measure, are warped into the middle frame's pixels; sigma is divided by
    the frame's scale factor so that it is in the middle frame's pixels too.

    Parameters
    ----------
    frames : sequence of ndarray
        The sweep, in focus order, equally spaced; greyscale, or colour with ``channel_axis``.
    estimator : callable
        ``estimator(image, psf=..., channel_axis=...)`` returning ``sigma`` and ``confidence``.
    tile : int
        Tile side in pixels.
    psf : str
        PSF family passed to the estimator.
    channel_axis : int, optional
        Colour axis of the frames.
    align : bool
        Register the frames (else tiles are compared at the same pixel positions).

    Returns
    -------
    dict
        ``sigma`` and ``energy`` (frames x tiles; sigma is the confidence-weighted median of
        the dense map in the tile, energy the mean focus measure), ``measured`` (frames x
        tiles: the share of the tile's pixels at confidence >= ``CONFIDENCE_THRESHOLD``),
        ``covered`` (tiles inside every frame), ``shape``, ``ncc_min`` of the registration,
        ``scales`` of the frames.
    """
    if len(frames) < 3:
        raise ValueError(f"a sweep needs at least 3 frames, got {len(frames)}")
    lums = [luminance(np.asarray(f), channel_axis=channel_axis) for f in frames]
    shape = lums[0].shape
    ref = len(frames) // 2
    ny, nx = shape[0] // tile, shape[1] // tile
    sig_t, en_t, meas_t, nccs, scales = [], [], [], [], []
    covered = np.ones((ny, nx), bool)
    for j, (frame, lum) in enumerate(zip(frames, lums, strict=True)):
        sigma, conf = _estimate(estimator, np.asarray(frame), psf, channel_axis)
        energy = focus_energy(lum)
        scale = 1.0
        if align and j != ref:
            t, ncc = register(lums[ref], lum, model="similarity")
            nccs.append(ncc)
            scale = math.sqrt(abs(float(np.linalg.det(t[:2, :2]))))
            sigma = warp(sigma, t, order=1) / np.float32(scale)
            conf = warp(conf, t, order=1)
            energy = warp(energy, t, order=1)
            covered &= _covered(t, shape, ny, nx, tile)
        scales.append(scale)
        sig_t.append(tile_weighted_median(sigma, np.clip(conf, 0, 1), tile).ravel())
        en_t.append(_tile_view(energy, tile).mean(-1).ravel())
        meas_t.append((_tile_view(conf, tile) >= CONFIDENCE_THRESHOLD).mean(-1).ravel())
    return {
        "sigma": np.array(sig_t),
        "energy": np.array(en_t),
        "measured": np.array(meas_t),
        "covered": covered.ravel(),
        "shape": shape,
        "ncc_min": float(min(nccs)) if nccs else math.nan,
        "scales": scales,
        "aligned": align,
    }


def score_series(
    sigma: np.ndarray,
    energy: np.ndarray,
    covered: np.ndarray,
    measured: np.ndarray | None = None,
) -> dict[str, Any]:
    """Score per-tile sigma over a sweep (frames x tiles) against the physics of defocus.

    Frames are at positions 0, 1, 2, ... in the sweep. On the textured
    tiles (:func:`texture_mask`) that every frame covers: the R² of the through-focus law
    (:func:`fit_through_focus`), whether the frame of least sigma lies within one frame of the
    frame where the focus measure peaks (a tile matches only when every frame tying for least
    sigma does), the same rate for a frame drawn at random, and the spread of k over the tiles
    the law fits (R² >= 0.8).

    With ``measured`` (frames x tiles, as :func:`tile_series` gives it), a diagnostic that is
    not a criterion: the median R² refitted on each tile's measured frames only (share >=
    ``MEASURED_SHARE``; tiles with at least 4 such frames), beside the same fit with as many
    frames dropped at random (fewer points fit better by themselves), and the tiles' median
    share of measured pixels per frame, for the tiles the law fits (R² >= 0.8) and those it
    does not (R² < 0.5).
    """
    n = sigma.shape[0]
    index = np.arange(n, dtype=np.float64)
    tex, floor = texture_mask(energy)
    tex &= covered
    sig, en = sigma[:, tex], energy[:, tex]
    peak = en.argmax(0)
    near = np.abs(index[:, None] - index[peak][None, :]) <= 1 + 1e-9
    least = sig <= sig.min(0) * (1 + 1e-3) + 1e-6  # ties within 0.1 % (warp rounding)
    match = ~(least & ~near).any(0)
    chance = near.mean(0)
    r2, k, _, _ = fit_through_focus(sig, index)
    good = r2 >= 0.8
    kq = np.percentile(k[good], [25, 50, 75]) if good.any() else np.full(3, np.nan)
    some = bool(tex.any())
    diag = _measured_diagnostic(sig, measured[:, tex], r2) if measured is not None and some else {}
    return {
        **diag,
        "n_frames": n,
        "n_tiles": int(sigma.shape[1]),
        "n_textured": int(tex.sum()),
        "noise_floor": floor,
        "r2_median": float(np.median(r2)) if some else math.nan,
        "match_fraction": float(match.mean()) if some else math.nan,
        "match_chance": float(chance.mean()) if some else math.nan,
        "n_good_fit": int(good.sum()),
        "k_median": float(kq[1]),
        "k_iqr_rel": float((kq[2] - kq[0]) / kq[1]) if kq[1] > 0 else math.nan,
        "sigma_median_per_frame": np.median(sig, 1).tolist() if some else [math.nan] * n,
        "peak_histogram": np.bincount(peak, minlength=n).tolist(),
        "argmin_histogram": np.bincount(sig.argmin(0), minlength=n).tolist(),
        "r2": r2,
        "k": k,
    }


def _fit_masked(sigma: np.ndarray, keep: np.ndarray, *, i0_step: float = 0.05) -> np.ndarray:
    """R² of :func:`fit_through_focus` on each tile's own frames (``keep``, frames x tiles),
    at frame positions 0, 1, 2, ...: the same bounded fit, with 0/1 weights; i0 is sought over
    the whole sweep's range, not only the kept frames'."""
    y = np.asarray(sigma, dtype=np.float64) ** 2
    w = keep.astype(np.float64)
    i = np.arange(y.shape[0], dtype=np.float64)[:, None]
    sw = w.sum(0)
    ybar = (w * y).sum(0) / sw
    sst = (w * (y - ybar) ** 2).sum(0)
    best = np.full(y.shape[1], np.inf)
    for i0 in np.arange(i.min() - 1, i.max() + 1 + i0_step / 2, i0_step):
        u = (i - i0) ** 2
        ubar = (w * u).sum(0) / sw
        b = (w * (u - ubar) * (y - ybar)).sum(0) / (w * (u - ubar) ** 2).sum(0)
        cands = [(ybar - b * ubar, b), (0 * ybar, (w * u * y).sum(0) / (w * u * u).sum(0))]
        cands.append((ybar, 0 * ybar))
        for ca, cb in cands:
            sse = (w * (y - ca - cb * u) ** 2).sum(0)
            best = np.where((ca >= 0) & (cb >= 0) & (sse < best), sse, best)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sst > 0, 1.0 - best / sst, 0.0)


def _measured_diagnostic(sig: np.ndarray, share: np.ndarray, r2: np.ndarray) -> dict[str, Any]:
    """R² on each tile's measured frames against random frame drops (see :func:`score_series`)."""
    keep = share >= MEASURED_SHARE
    some = keep.sum(0) >= 4
    sig, keep = sig[:, some], keep[:, some]
    r2_measured = _fit_masked(sig, keep)
    rng = np.random.default_rng(0)
    r2_random = []
    for _ in range(10):
        # As many frames per tile as it has measured, drawn at random: rank random keys.
        ranks = np.argsort(np.argsort(rng.random(keep.shape), axis=0), axis=0)
        r2_random.append(_fit_masked(sig, ranks < keep.sum(0)))
    fits, fails = r2 >= 0.8, r2 < 0.5
    return {
        "r2_median_measured": float(np.median(r2_measured)) if some.any() else math.nan,
        "r2_median_random_drop": float(np.median(r2_random)) if some.any() else math.nan,
        "n_measured_fit": int(some.sum()),
        "measured_share_fit": np.median(share[:, fits], 1).tolist() if fits.any() else [],
        "measured_share_fail": np.median(share[:, fails], 1).tolist() if fails.any() else [],
        "n_fail": int(fails.sum()),
    }


def through_focus_consistency(
    frames: Sequence[np.ndarray], estimator: Estimator = defocus.blur_map, **options: Any
) -> dict[str, Any]:
    """Score an estimator's sigma over a focus sweep against the physics of defocus.

    :func:`tile_series` (``options`` are its keywords) then :func:`score_series`; small
    enough for a test on a crop.

    Returns
    -------
    dict
        ``r2_median``, ``match_fraction``, ``match_chance``, ``k_median``, ``k_iqr_rel``,
        ``n_textured`` and the rest of :func:`score_series`, plus ``ncc_min`` and ``scales``
        of the registration.
    """
    ser = tile_series(frames, estimator, **options)
    score = score_series(ser["sigma"], ser["energy"], ser["covered"], ser["measured"])
    return {**score, "ncc_min": ser["ncc_min"], "scales": ser["scales"]}


def stack_frames(data: Path, name: str) -> list[Path]:
    return sorted((data / "real_stacks" / name).glob(STACKS[name]))


# --------------------------------------------------------------------------- SEM and FIB


def focal_line(bm: Any) -> tuple[str, bool]:
    """``focal_plane``'s one-line answer on a blur map, and whether it claims a line: marked
    significant, at a finite position."""
    try:
        fp = defocus.focal_plane(bm)
    except defocus.BadInputError as exc:
        return f"no line: {exc}", False
    return fp.summary()["text"], bool(getattr(fp, "significant", True) and np.isfinite(fp.position))


def deepfocus(estimator: Estimator, data: Path) -> dict[str, Any]:
    """Confidence-weighted median sigma of each DeepFocus frame, against |ΔWD|, and the focal
    line claimed on each (each frame is one flat field at one defocus: none should be)."""
    rows = []
    for fname, dwd in DEEPFOCUS.items():
        img = read_image(data / "real" / "sem_deepfocus_wd" / fname).data
        bm = estimator(img, psf=SEM_PSF, channel_axis=None)
        sigma = np.asarray(bm.sigma, dtype=np.float32)
        conf = np.asarray(bm.confidence, dtype=np.float32)
        text, claimed = focal_line(bm)
        rows.append(
            {
                "file": fname,
                "dwd_um": dwd,
                "sigma_median": weighted_median(sigma, conf),
                "sigma_plain_median": float(np.median(sigma)),
                "mean_confidence": float(conf.mean()),
                "focal_plane": text,
                "line_claimed": claimed,
            }
        )
    rows.sort(key=lambda r: abs(r["dwd_um"]))
    s = np.array([r["sigma_median"] for r in rows])
    x = np.array([r["dwd_um"] ** 2 for r in rows])
    slope, icpt = np.polyfit(x, s**2, 1)
    pred = icpt + slope * x
    sst = float(((s**2 - (s**2).mean()) ** 2).sum())
    r2 = 1.0 - float(((s**2 - pred) ** 2).sum()) / sst if sst > 0 else 0.0
    return {
        "rows": rows,
        "monotonic": bool(np.all(np.diff(s) > 0)),
        "r2": r2,
        "slope": float(slope),
        "intercept": float(icpt),
    }


def region_mask(shape: tuple[int, int], polygons: list[list[tuple[float, float]]]) -> np.ndarray:
    """Rasterise polygons of (x, y) fractions of the image size into a boolean mask."""
    from skimage.draw import polygon

    h, w = shape
    mask = np.zeros(shape, bool)
    for poly in polygons:
        xs = np.array([p[0] for p in poly]) * (w - 1)
        ys = np.array([p[1] for p in poly]) * (h - 1)
        rr, cc = polygon(ys, xs, shape)
        mask[rr, cc] = True
    return mask


def edge_width(
    image: np.ndarray, start: tuple[float, float], end: tuple[float, float], *, half: int
) -> dict[str, float]:
    """10-90 % width (px) of the edge crossed by the line ``start`` -> ``end`` (x, y fractions).

    The profile is the mean over a strip ``half`` px either side of the line, lightly smoothed
    (Gaussian, 2 px) against noise; the plateaus are the medians of its first and last 15 %, and
    the width is the distance between the outermost crossings of the 10 % and 90 % levels.
    ``sigma_erf_px`` cross-checks it: the sigma of a Gaussian-blurred step fitted to the profile.
    """
    h, w = image.shape
    p0 = np.array([start[1] * (h - 1), start[0] * (w - 1)])
    p1 = np.array([end[1] * (h - 1), end[0] * (w - 1)])
    length = float(np.hypot(*(p1 - p0)))
    n = int(length) + 1
    along = (p1 - p0) / length
    normal = np.array([-along[1], along[0]])
    t = np.arange(n, dtype=np.float64)
    offs = np.arange(-half, half + 1, dtype=np.float64)
    pts = p0[:, None, None] + along[:, None, None] * t[None, :, None]
    pts = pts + normal[:, None, None] * offs[None, None, :]
    vals = ndi.map_coordinates(np.asarray(image, np.float64), pts.reshape(2, -1), order=1)
    prof = ndi.gaussian_filter1d(vals.reshape(n, -1).mean(1), 2.0)
    m = max(3, int(0.15 * n))
    lo, hi = float(np.median(prof[:m])), float(np.median(prof[-m:]))
    f = (prof - lo) / (hi - lo)
    below, above = np.flatnonzero(f <= 0.1), np.flatnonzero(f >= 0.9)
    # Outermost crossings: the last sample still at the low plateau, the first at the high one.
    x10 = float(below[below < above[0]].max()) if below.size and above.size else math.nan
    x90 = float(above[above > x10].min()) if np.isfinite(x10) else math.nan
    width = x90 - x10

    # Cross-check: least-squares fit of a Gaussian-blurred step to the unsmoothed profile.
    def step(x, a, b, x0, s):
        return a + b * 0.5 * (1 + erf((x - x0) / (math.sqrt(2) * s)))

    mid = float(np.argmin(np.abs(f - 0.5)))
    p, _ = curve_fit(step, t, vals.reshape(n, -1).mean(1), p0=(lo, hi - lo, mid, 10.0))
    return {
        "width_px": width,
        "sigma_gauss_px": width / GAUSS_10_90,
        "sigma_erf_px": abs(float(p[3])),
        "step": hi - lo,
    }


def fib(estimator: Estimator, data: Path) -> dict[str, Any]:
    """Region medians of sigma on the FIB images, substrate edge widths, and the tilted control."""
    out: dict[str, Any] = {"images": {}}
    for fname, regions in FIB_REGIONS.items():
        img = read_image(data / FIB_DIR / fname).data
        sigma, conf = _estimate(estimator, img, SEM_PSF, None)
        rows = {}
        for rname, polys in regions.items():
            m = region_mask(img.shape, polys)
            rows[rname] = {
                "sigma_median": weighted_median(sigma[m], conf[m]),
                "sigma_plain_median": float(np.median(sigma[m])),
                "mean_confidence": float(conf[m].mean()),
                "pixels": int(m.sum()),
            }
        edges = [
            {"name": name, **edge_width(img, a, b, half=EDGE_HALF_WIDTH)}
            for name, a, b in FIB_EDGES.get(fname, [])
        ]
        out["images"][fname] = {"regions": rows, "edges": edges}
    img = read_image(data / FIB_DIR / TILTED).data
    bm = estimator(img, psf=SEM_PSF, channel_axis=None)
    sigma = np.asarray(bm.sigma, dtype=np.float32)
    text, claimed = focal_line(bm)
    conf = np.asarray(bm.confidence, dtype=np.float32)
    measurable = conf >= CONFIDENCE_THRESHOLD
    wide = sigma > TILTED_MAX_SIGMA
    out["tilted"] = {
        "frac_sharp": float((sigma <= TILTED_MAX_SIGMA).mean()),
        "frac_measurable": float(measurable.mean()),
        "frac_sharp_measurable": float((~wide[measurable]).mean())
        if measurable.any()
        else math.nan,
        "wide_unmeasurable": float((~measurable[wide]).mean()) if wide.any() else math.nan,
        "sigma_median": weighted_median(sigma, np.asarray(bm.confidence)),
        "sigma_p90": float(np.percentile(sigma, 90)),
        "focal_plane": text,
        "line_claimed": claimed,
        "verdict": bm.summary().get("verdict", "") if hasattr(bm, "summary") else "",
    }
    return out


# --------------------------------------------------------------------------- run and report


def run(estimator: Estimator = defocus.blur_map, data: Path = DATA) -> dict[str, Any]:
    """Run every real-data check with ``estimator``; returns the metrics (see module docstring)."""
    data = Path(data)
    res: dict[str, Any] = {"stacks": {}, "seconds": {}}
    for name in STACKS:
        paths = stack_frames(data, name)
        if not paths:
            raise FileNotFoundError(f"{data / 'real_stacks' / name}: no frames")
        t0 = time.perf_counter()
        frames = [read_image(p).data for p in paths]
        ser = tile_series(frames, estimator, channel_axis=-1)
        del frames
        r = score_series(ser["sigma"], ser["energy"], ser["covered"], ser["measured"])
        r.update(files=[p.name for p in paths], shape=ser["shape"], ncc_min=ser["ncc_min"])
        # Mean focus measure of each frame over the tiles every frame covers (estimator-free).
        r["energy_per_frame"] = ser["energy"][:, ser["covered"]].mean(1).tolist()
        res["stacks"][name] = r
        res["seconds"][name] = time.perf_counter() - t0
        print(
            f"{name}: R² {r['r2_median']:.2f}, match {r['match_fraction']:.2f} "
            f"(chance {r['match_chance']:.2f}), {r['n_textured']} textured tiles",
            flush=True,
        )
    t0 = time.perf_counter()
    res["deepfocus"] = deepfocus(estimator, data)
    res["seconds"]["deepfocus"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    res["fib"] = fib(estimator, data)
    res["seconds"]["fib"] = time.perf_counter() - t0
    return res


def _f(x: float, fmt: str = ".2f") -> str:
    return "–" if x is None or not np.isfinite(x) else format(x, fmt)


def _pct(x: float) -> str:
    return "–" if not np.isfinite(x) else f"{100 * x:.1f} %"


def target_rows(res: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(criterion, value, target, verdict) for every target of the issue."""
    rows = []

    def row(criterion: str, value: str, target: str, ok: bool | None) -> None:
        rows.append((criterion, value, target, "–" if ok is None else "pass" if ok else "**miss**"))

    for name, r in res["stacks"].items():
        r2, match = r["r2_median"], r["match_fraction"]
        row(f"{name}: median R² of σ² = σ0² + k²(i − i0)²", _f(r2), "≥ 0.8", r2 >= 0.8)
        row(
            f"{name}: least-σ frame = sharpest frame ± 1 (chance {_pct(r['match_chance'])})",
            _pct(match),
            "≥ 80 %",
            match >= 0.8,
        )
        row(
            f"{name}: k median, IQR/median (R² ≥ 0.8 tiles: {r['n_good_fit']})",
            f"{_f(r['k_median'], '.3f')} px/frame, {_f(r['k_iqr_rel'])}",
            "one k (report)",
            None,
        )
    d = res["deepfocus"]
    row(
        "DeepFocus: median σ rises with \\|ΔWD\\| (8.3 / 13.3 / 18.3 µm)",
        " < ".join(f"{x['sigma_median']:.2f}" for x in d["rows"]) + " px",
        "strictly monotonic",
        d["monotonic"],
    )
    row("DeepFocus: R² of σ² against ΔWD² (3 points)", _f(d["r2"]), "linear (report)", None)
    claims = sum(x["line_claimed"] for x in d["rows"])
    row(
        f"DeepFocus: focal line claimed ({len(d['rows'])} frames)",
        f"{claims} of {len(d['rows'])}" if claims else "no",
        "no",
        not claims,
    )
    for fname, im in res["fib"]["images"].items():
        sub = im["regions"]["substrate"]["sigma_median"]
        ndl = im["regions"]["needle"]["sigma_median"]
        ratio = sub / ndl if ndl > 0 else math.inf
        row(f"{fname}: substrate / needle median σ", _f(ratio), "≥ 3×", ratio >= 3)
        row(f"{fname}: substrate median σ", f"{_f(sub)} px", "≥ 4 px", sub >= 4)
    t = res["fib"]["tilted"]
    row(
        f"tilted control: pixels with σ ≤ {TILTED_MAX_SIGMA} px",
        _pct(t["frac_sharp"]),
        "≥ 90 %",
        t["frac_sharp"] >= 0.9,
    )
    row(
        f"tilted control: measurable pixels (confidence ≥ {CONFIDENCE_THRESHOLD:g}) with σ ≤ "
        f"{TILTED_MAX_SIGMA} px ({_pct(t['frac_measurable'])} of the pixels are measurable)",
        _pct(t["frac_sharp_measurable"]),
        "report",
        None,
    )
    row(
        "tilted control: focal line claimed",
        "yes" if t["line_claimed"] else "no",
        "no",
        not t["line_claimed"],
    )
    return rows


def write_report(res: dict[str, Any], cmd: str, where: str, seconds: float) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    L = [
        "# Real-data blur-map benchmark (issue 14)",
        "",
        f"- Command: `{cmd}`",
        f"- Date: {now}; run time {seconds / 60:.1f} min "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in res['seconds'].items())})",
        f"- Machine: {os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}, numpy {np.__version__}; load average at the end {load}",
        f"- Estimator: `{where}`; PSF family `{STACK_PSF}` for the camera stacks, `{SEM_PSF}` "
        "for SEM/FIB. Every image goes to the estimator at full resolution, as read (8-bit, "
        "colour with `channel_axis=-1`).",
        "- Data: `../shared/data` (read-only); see each set's SOURCE.txt. No ground-truth blur: "
        "each row is a law of physics the answer must obey (see the README section).",
        "",
        "## Targets",
        "",
        "| Criterion | Value | Target | Verdict |",
        "|---|---|---|---|",
    ]
    L += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in target_rows(res)]
    L += [
        "",
        "## Through-focus consistency, per stack",
        "",
        f"Tiles of {TILE} px. Frames are registered to the middle frame (similarity: shift, "
        "rotation, focus-breathing scale, `defocus.stack.register`); the estimator runs on the "
        "unwarped frame and its σ and confidence maps are warped into the middle frame (σ "
        "divided by the frame's scale, so it is in the middle frame's pixels). Tiles some frame "
        "does not cover are dropped. Per-tile σ: confidence-weighted median of the dense map. "
        f"*Sharpest frame*: where the tile's mean squared Laplacian of Gaussian ({LOG_SCALE:g} "
        "px) peaks, computed on the frame's luminance, independently of the estimator. "
        f"*Textured*: peak energy ≥ {TEXTURE_SNR:g}× the noise floor (the 10th percentile over "
        "tiles of each tile's least energy over the frames) and energy varying ≥ "
        f"{FOCUS_RANGE:g}× over the sweep. The fit is bounded least squares in (σ0², k²) over a "
        "0.05-frame grid of i0 from one frame before the first to one after the last; R² is of "
        "σ²; k is in px per frame, its spread over the tiles with R² ≥ 0.8. "
        "*Chance*: the match rate of a frame drawn at random.",
        "",
        "| Stack | Frames | Size | Textured / all tiles | Registration NCC min | median R² | "
        "match ± 1 | chance | k median, px/frame (tiles) | k IQR/median | time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in res["stacks"].items():
        h, w = r["shape"]
        L.append(
            f"| {name} | {r['n_frames']} | {w}×{h} | {r['n_textured']} / {r['n_tiles']} | "
            f"{_f(r['ncc_min'], '.3f')} | {_f(r['r2_median'])} | {_pct(r['match_fraction'])} | "
            f"{_pct(r['match_chance'])} | {_f(r['k_median'], '.3f')} ({r['n_good_fit']}) | "
            f"{_f(r['k_iqr_rel'])} | "
            f"{res['seconds'][name]:.0f} |"
        )
    L += [
        "",
        "Per frame: median over textured tiles of the tile σ (px); the frame's mean focus "
        "measure over the covered tiles (estimator-free); how many tiles peak in that frame by "
        "the focus measure, and how many have their least σ there.",
        "",
        "| Stack | Frame | median σ (px) | mean focus measure | tiles sharpest here | "
        "tiles least σ here |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in res["stacks"].items():
        for j, f in enumerate(r["files"]):
            L.append(
                f"| {name} | {f} | {_f(r['sigma_median_per_frame'][j])} | "
                f"{r['energy_per_frame'][j]:.3g} | {r['peak_histogram'][j]} | "
                f"{r['argmin_histogram'][j]} |"
            )
    L += [
        "",
        "Diagnostic, not a criterion: where a tile holds no structure the map can measure, its "
        "σ is the dense fill from elsewhere. *Measured*: the share of the tile's pixels at "
        f"confidence ≥ {CONFIDENCE_THRESHOLD:g} reaches {MEASURED_SHARE:.0%}. The median R² "
        "refitted on each tile's measured frames only (tiles with ≥ 4), beside the same fit "
        "with as many frames dropped at random (10 draws per tile): fewer points fit better "
        "by themselves, so only the difference says that fill values break the law. Then the "
        "median share of measured pixels per frame, first frame to last, for the tiles the "
        "law fits (R² ≥ 0.8) and those it does not (R² < 0.5).",
        "",
        "| Stack | R², measured frames (tiles) | R², random drops | measured share per frame, "
        "R² ≥ 0.8 tiles | the same, R² < 0.5 tiles (count) |",
        "|---|---|---|---|---|",
    ]
    for name, r in res["stacks"].items():
        if "r2_median_measured" not in r:
            continue
        L.append(
            f"| {name} | {_f(r['r2_median_measured'])} ({r['n_measured_fit']}) | "
            f"{_f(r['r2_median_random_drop'])} | "
            f"{' '.join(f'{x:.2f}' for x in r['measured_share_fit'])} | "
            f"{' '.join(f'{x:.2f}' for x in r['measured_share_fail'])} ({r['n_fail']}) |"
        )
    d = res["deepfocus"]
    L += [
        "",
        "## DeepFocus SEM series",
        "",
        "The same field at three working distances (ΔWD = WD − WD_focus from the data set's "
        "SOURCE.txt); all three frames carry the same astigmatism. Median: confidence-weighted, "
        f"whole frame. Line σ² = a + b·ΔWD²: a = {d['intercept']:.3g} px², b = "
        f"{d['slope']:.3g} px²/µm², R² = {d['r2']:.3f}.",
        "",
        "| Frame | ΔWD (µm) | median σ (px) | plain median σ (px) | mean confidence |",
        "|---|---|---|---|---|",
    ]
    L += [
        f"| {x['file']} | {x['dwd_um']:.3f} | {x['sigma_median']:.2f} | "
        f"{x['sigma_plain_median']:.2f} | {x['mean_confidence']:.2f} |"
        for x in d["rows"]
    ]
    L += ["", "Each frame is one flat field at one defocus; `defocus.focal_plane` says:", ""]
    L += [f'- {x["file"]}: "{x["focal_plane"]}"' for x in d["rows"]]
    L += [
        "",
        "## FIB images",
        "",
        "Regions are polygons in fractions of the image size (`FIB_REGIONS` in "
        "`bench_real.py`), drawn by looking at the images: `real_regions.png` shows them. "
        "`pfib_needle_lamella_test_image_2.tif` is byte-identical to the bundled "
        "`src/defocus/data/fib_needle.tif`. Median: confidence-weighted over the region.",
        "",
        "| Image | Region | pixels | median σ (px) | plain median σ (px) | mean confidence |",
        "|---|---|---|---|---|---|",
    ]
    for fname, im in res["fib"]["images"].items():
        for rname, x in im["regions"].items():
            L.append(
                f"| {fname} | {rname} | {x['pixels']} | {x['sigma_median']:.2f} | "
                f"{x['sigma_plain_median']:.2f} | {x['mean_confidence']:.2f} |"
            )
    L += [
        "",
        "Estimator-independent scale of the substrate's blur: 10–90 % widths of soft substrate "
        f"edges, measured on profiles averaged over a {2 * EDGE_HALF_WIDTH + 1}-px strip "
        f"(`FIB_EDGES`); a Gaussian-blurred step has width {GAUSS_10_90:.3f} σ, so σ ≈ "
        "width / 2.563 (a hint, not ground truth: the substrate's own shape is unknown).",
        "",
        "| Image | Edge | 10–90 % width (px) | σ = width / 2.563 (px) | σ of a fitted "
        "Gaussian-blurred step (px) | step (DN) |",
        "|---|---|---|---|---|---|",
    ]
    for fname, im in res["fib"]["images"].items():
        for e in im["edges"]:
            L.append(
                f"| {fname} | {e['name']} | {_f(e['width_px'], '.1f')} | "
                f"{_f(e['sigma_gauss_px'], '.1f')} | {_f(e['sigma_erf_px'], '.1f')} | "
                f"{_f(e['step'], '.1f')} |"
            )
    t = res["fib"]["tilted"]
    L += [
        "",
        f"Tilted control (`{TILTED}`): {_pct(t['frac_sharp'])} of pixels at σ ≤ "
        f"{TILTED_MAX_SIGMA} px, confidence-weighted median σ {t['sigma_median']:.2f} px, 90th "
        f"percentile {t['sigma_p90']:.2f} px; {_pct(t['wide_unmeasurable'])} of the pixels above "
        f"{TILTED_MAX_SIGMA} px have a confidence below {CONFIDENCE_THRESHOLD:g}: values filled in "
        "from elsewhere, which the map itself reports as not measurable. "
        f'The blur map\'s summary says: "{t["verdict"]}". '
        f'`defocus.focal_plane` says: "{t["focal_plane"]}". '
        "A line counts as claimed when `focal_plane` marks it significant and its position is "
        "finite.",
    ]
    return "\n".join(L)


def regions_picture(data: Path) -> Path:
    """Draw the FIB region polygons and edge profiles on the images, for the README."""
    from PIL import Image, ImageDraw

    colours = {"needle": "#00ff00", "lamella": "#00ffff", "grid bar": "#ffff00"}
    panels = []
    for fname, regions in FIB_REGIONS.items():
        img = read_image(data / FIB_DIR / fname).data
        pic = Image.fromarray(img).convert("RGB").resize((img.shape[1] // 4, img.shape[0] // 4))
        draw = ImageDraw.Draw(pic)
        w, h = pic.size
        for rname, polys in regions.items():
            for poly in polys:
                pts = [(x * (w - 1), y * (h - 1)) for x, y in poly]
                draw.polygon(pts, outline=colours.get(rname, "#ff3030"), width=2)
        for _, a, b in FIB_EDGES.get(fname, []):
            draw.line([(a[0] * w, a[1] * h), (b[0] * w, b[1] * h)], fill="#ff00ff", width=2)
        panels.append(pic)
    out = Image.new("RGB", (sum(p.width for p in panels), max(p.height for p in panels)))
    x = 0
    for p in panels:
        out.paste(p, (x, 0))
        x += p.width
    path = RESULTS / "real_regions.png"
    out.quantize(colors=64).save(path, optimize=True)  # grey + a few line colours
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    ap.add_argument("--quick", action="store_true", help="accepted for run_all; runs in full")
    ap.add_argument(
        "--physics-only",
        action="store_true",
        help="the blur map without its learned stage (correction=False), to real_physics_only.md",
    )
    args = ap.parse_args(argv)
    if not (args.data / "real_stacks").is_dir():
        print(f"{args.data}: no real data (real_stacks/ missing); skipped", flush=True)
        return 0
    t0 = time.perf_counter()
    RESULTS.mkdir(parents=True, exist_ok=True)
    est = defocus.blur_map
    name = f"{est.__module__}.{est.__qualname__}"
    cmd = "python benchmarks/bench_real.py" + (f" --data {args.data}" if args.data != DATA else "")
    if args.physics_only:
        res = run(functools.partial(est, correction=False), data=args.data)
        name, cmd = f"{name}(..., correction=False)", f"{cmd} --physics-only"
    else:
        res = run(data=args.data)
        regions_picture(args.data)
    report = write_report(res, cmd, name, time.perf_counter() - t0)
    out = RESULTS / ("real_physics_only.md" if args.physics_only else "real.md")
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text(report + "\n")
    tmp.replace(out)  # atomic: a failed run never leaves half a table
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
