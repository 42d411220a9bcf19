"""A small learned correction of the blur map's per-cell sigma, read from its scale curve.

The physical estimate of :mod:`defocus.blurmap` fits the isolated-step law
``1/|∇L_s|² ∝ σ² + s²`` to each cell's gradient energies. In dense texture the neighbouring
edges of opposite sign cancel at the scales near their spacing, the energy falls faster than
the law allows, and the fit reads sigma low (0.6-0.75x, a disk PSF alike, more so at wide
blur, where the disk's sharper spectral cut-off pulls the curve's peak down). How much faster it
falls is written in the shape of the curve (up to 8x above its peak) and in the cells around
(how crowded, what they read near and farther, how high the highest reads), so a small
multilayer perceptron maps those to a correction of log sigma.

Only the mapping is learned. The physics decides which cells hold a measurement (noise model,
significance, hysteresis), which are lower bounds, and how the dense map is filled; the
correction is applied to measured cells only, never to lower bounds, only to cells whose own
confidence reaches the blur map's "measurable" threshold (the caller passes the largest log
standard error that allows), and only where the physical estimate lies in 1-16 px, where the
training images show blur well. Every input is a ratio of energies or a scale, so gain and
offset cannot change it; the signal-to-noise ratio is left out on purpose (with it, a region
raised 4x in gain under the same noise read 16 % sharper).

The weights (``data/blurmap_correction.npz``) are made by
``scripts/train_blurmap_correction.py`` on scikit-image images the blur-map benchmark does not
use and on synthetic images (dead leaves after Lee, Mumford & Huang 2001, isolated shapes,
gravel-like pebbles, band-pass textures, grass-like strokes, brick bonds, low-contrast
craters, coin-like disks apart on a flat ground), blurred by Gaussian and disk PSFs of sigma
0.3-40 px and degraded by shot noise, Bayer demosaicing, JPEG, 8-bit quantisation and SEM scan
lines.

References
----------
Lee A. B., Mumford D., Huang J. (2001) Occlusion models for natural images: a statistical
study of a scale-invariant dead leaves model. IJCV 41(1/2).
Kingma D. P., Ba J. (2015) Adam: a method for stochastic optimization. ICLR.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

WEIGHTS = Path(__file__).parent / "data" / "blurmap_correction.npz"
# Scales gathered around each cell's peak (half-octave steps): up to 8x above it, where a disk
# PSF's blur shows in dense texture whose sidelobe residue put the peak low.
OFFSETS = np.arange(-3, 7)
# The context's reach (cells): a near and a wider neighbourhood; the wider sets the tiled map's
# overlap (defocus.tiled.blur_support).
NEAR_CELLS = 1.5
CONTEXT_CELLS = 3.0


def _log_scale(scales: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The log of the blur map's scale (px) at each index of its geometric ladder ``scales``,
    extended past both ends at the same ratio."""
    log = np.log(np.asarray(scales, np.float64))
    return log[0] + index * (log[1] - log[0])


def applicable(
    sigma: np.ndarray,
    sd: np.ndarray,
    lower: np.ndarray,
    sigma_range: tuple[float, float],
    *,
    max_sd: float,
) -> np.ndarray:
    """Cells the correction reads and changes: measured, not a lower bound, confident (log
    standard error at most ``max_sd``: the blur map's "measurable" cells), and in
    ``sigma_range`` (px)."""
    with np.errstate(invalid="ignore"):
        inside = (sigma >= sigma_range[0]) & (sigma <= sigma_range[1])
    return np.isfinite(sigma) & ~lower & inside & (sd <= max_sd)


def cell_features(
    feats: dict[str, Any],
    sigma: np.ndarray,
    sd: np.ndarray,
    lower: np.ndarray,
    *,
    disk: bool,
    sigma_range: tuple[float, float],
    floor: float,
    max_sd: float,
    at: np.ndarray | None = None,
) -> np.ndarray:
    """(h, w, n) features of every cell: its scale curve around the peak relative to the
    peak and to the step law, the peak scale, the physical sigma, the fit's residual, and the
    density, sigma and curve shape of the measured cells around it at two reaches, and the
    highest sigma among its 5 x 5 neighbours.

    ``feats`` is what :func:`defocus.blurmap._estimate` writes into its ``features`` dict
    (the scale ladder and each cell's energies); ``sigma`` the physical per-cell sigma (NaN
    where nothing was measured), ``sd`` its log standard error, ``lower`` the lower-bound flags;
    ``floor`` the blur map's log floor (sigma is read as log sqrt(sigma^2 + floor^2)) and
    ``max_sd`` the largest standard error of a cell it calls measurable. The context counts
    only the cells the correction applies to (:func:`applicable`): lower bounds and wide,
    uncertain cells (a quantised ramp's staircase) say nothing about a cell's neighbours. The
    neighbourhood reaches CONTEXT_CELLS cells (to 3 sigma) and a cell's own curve its 3 x 3
    cells. With a boolean mask ``at``, only those cells' rows are returned, (n, features),
    and only the cells they and the context need are computed.
    """
    signal, peak, last = feats["signal"], feats["peak"], feats["last"]
    k = signal.shape[0]
    f = applicable(sigma, sd, lower, sigma_range, max_sd=max_sd)
    # A cell's own features are computed only where they are returned or feed the context.
    rows = np.ones(sigma.shape, bool) if at is None else at | f
    p = peak[rows]
    # At the scales around the peak an edge's maximum may sit one cell over (coarser levels
    # span several cells; a quantised ramp's maximum wanders): the curve takes the largest
    # energy of the 3 x 3 cells around.
    near = ndi.maximum_filter(signal, size=(1, 3, 3), mode="nearest")
    curve = near.reshape(k, -1)[:, rows.ravel()]
    idx = p[None] + OFFSETS[:, None]
    valid = (idx >= 0) & (idx <= last)
    s_i = np.take_along_axis(curve, np.clip(idx, 0, k - 1), 0)
    s_p = np.take_along_axis(curve, p[None], 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(valid, np.clip(np.log(s_i / s_p), -10.0, 3.0), np.float32(-10.0))
    sig = sigma[rows]
    v = np.where(np.isfinite(sig), sig, np.float32(1.0)).astype(np.float32) ** 2
    logs = 0.5 * np.log(v + np.float32(floor**2))
    log_peak = _log_scale(feats["scales"], p).astype(np.float32)
    # How far the curve departs from the isolated step law at the physical sigma: neighbours
    # of opposite sign make it fall faster above the peak.
    s2 = np.exp(2 * _log_scale(feats["scales"], idx)).astype(np.float32)
    law = np.log((v + np.exp(2 * log_peak)) / (v + s2))
    excess = np.where(valid, np.clip(rel - law, -5.0, 5.0), np.float32(0.0))

    # Context: how crowded the neighbourhood is with measured cells, what they read (near, to
    # stay inside one region of a sharp blur step, and wider), and how high the highest reads.
    def plane(values: np.ndarray) -> np.ndarray:
        out = np.zeros(sigma.shape, np.float32)
        out[rows] = values
        return out

    weight = f.astype(np.float32)
    fall_at = excess[OFFSETS == 2][0]
    logs_plane, fall_plane = plane(logs) * weight, plane(fall_at) * weight
    context = []
    for reach in (NEAR_CELLS, CONTEXT_CELLS):
        dens, around, fall = (
            ndi.gaussian_filter(a, reach, mode="reflect", truncate=3.0)[rows]
            for a in (weight, logs_plane, fall_plane)
        )
        some = dens > 1e-6
        with np.errstate(divide="ignore", invalid="ignore"):
            ctx = np.where(some, around / dens - logs, np.float32(0.0))
            fall = np.where(some, fall / dens, fall_at)
        context += [dens, np.clip(ctx, -3, 3), fall]
    top = ndi.maximum_filter(np.where(f, plane(logs), -np.inf), size=5, mode="nearest")[rows]
    context.append(np.where(np.isfinite(top), np.clip(top - logs, 0, 3), 0.0))
    columns = [
        *rel,
        *excess[OFFSETS != 0],  # the peak's own excess is 0 by construction
        log_peak,
        logs,
        np.clip(feats["rms"][rows], 0, 2),
        *context,
        np.full(p.shape, float(disk)),
    ]
    # Cells the line fit skipped carry NaN residuals: they enter as 0.
    x = np.nan_to_num(np.stack([np.asarray(c, np.float32) for c in columns], axis=-1))
    return x.reshape(*sigma.shape, -1) if at is None else x[at[rows]]


@functools.cache
def _weights() -> dict[str, np.ndarray] | None:
    """The trained model, or None where the weights file is absent."""
    if not WEIGHTS.exists():
        return None
    with np.load(WEIGHTS) as z:
        return {name: z[name] for name in z.files}


def predict(x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    """The network's output (log-sigma correction) for feature rows ``x`` (n, features)."""
    h = (x - w["mean"]) / w["std"]
    n_layers = int(w["layers"])
    for i in range(n_layers):
        h = h @ w[f"w{i}"] + w[f"b{i}"]
        if i < n_layers - 1:
            h = np.tanh(h)
    return np.clip(h[:, 0], w["out_range"][0], w["out_range"][1])


def correct(
    sigma: np.ndarray,
    sd: np.ndarray,
    lower: np.ndarray,
    feats: dict[str, Any],
    *,
    disk: bool,
    floor: float,
    max_sd: float,
) -> np.ndarray:
    """The physical per-cell ``sigma`` with the learned correction applied where it may be.

    Cells without a measurement stay NaN; lower bounds, cells whose log standard error exceeds
    ``max_sd`` and values outside the training range keep their physical value; without a
    weights file nothing changes. ``floor``: see :func:`cell_features`.
    """
    w = _weights()
    if w is None:
        return sigma
    lo, hi = (float(v) for v in w["sigma_range"])
    use = applicable(sigma, sd, lower, (lo, hi), max_sd=max_sd)
    # The curve reads the 3 x 3 cells around: beside a lower bound or a cell wider than the
    # range (a quantised ramp's staircase reads 20-60 px) it is not the cell's own.
    with np.errstate(invalid="ignore"):
        foreign = lower | (sigma > hi)
    use &= ~ndi.maximum_filter(foreign, size=3, mode="nearest")
    if not use.any():
        return sigma
    x = cell_features(
        feats, sigma, sd, lower, disk=disk, sigma_range=(lo, hi), floor=floor, max_sd=max_sd, at=use
    )
    delta = predict(x.astype(np.float32), w)
    out = sigma.copy()
    logs = np.log(np.sqrt(sigma[use].astype(np.float64) ** 2 + floor**2)) + delta
    out[use] = np.sqrt(np.maximum(np.exp(2 * logs) - floor**2, 0.0))
    return out.astype(np.float32)
