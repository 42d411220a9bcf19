"""A small learned correction of the blur map's per-cell sigma, read from its scale curve.

The physical estimate of :mod:`defocus.blurmap` fits the isolated-step law
``1/|∇L_s|² ∝ σ² + s²`` to each cell's gradient energies. In dense texture the neighbouring
edges of opposite sign cancel at the scales near their spacing, the energy falls faster than
the law allows, and the fit reads sigma low (0.6-0.75x). How much faster it falls is written in
the shape of the curve and in how crowded the cell's neighbourhood is, so a small multilayer
perceptron maps those to a correction of log sigma.

Only the mapping is learned. The physics decides which cells hold a measurement (noise model,
significance, hysteresis), which are lower bounds, and how the dense map is filled; the
correction is applied to measured cells only, never to lower bounds, only to cells whose own
confidence reaches 0.3 (the "measurable" threshold of the blur map), and only where the physical
estimate lies in 1-16 px, where the training images show blur well. Every input is a ratio of
energies or a scale, so gain and offset cannot change it; the signal-to-noise ratio is left out
on purpose (with it, a region raised 4x in gain under the same noise read 16 % sharper).

The weights (``data/blurmap_correction.npz``, 10 kB) are made by
``scripts/train_blurmap_correction.py`` on scikit-image images the blur-map benchmark does not
use and on synthetic images (dead leaves after Lee, Mumford & Huang 2001, isolated shapes,
gravel-like pebbles, band-pass textures), blurred by Gaussian and disk PSFs of sigma 0.3-40 px
and degraded by shot noise, Bayer demosaicing, JPEG, 8-bit quantisation and SEM scan lines.

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
# Scales gathered around each cell's peak (half-octave steps), and the context's reach (cells).
OFFSETS = np.arange(-3, 4)
CONTEXT_CELLS = 3.0
# Copies of blurmap's constants (blurmap imports this module); tests hold them equal.
# Largest log-sigma standard error of a cell the correction reads: a cell's confidence
# 1 / (1 + (sd / HALF_CONF_SD)^2) must reach MIN_CONFIDENCE (blurmap.CONFIDENCE_THRESHOLD).
# Less certain cells keep their physics.
MIN_CONFIDENCE = 0.3
HALF_CONF_SD = 0.25  # blurmap._HALF_CONF_SD
MAX_SD = HALF_CONF_SD * np.sqrt(1 / MIN_CONFIDENCE - 1)
# The floor of the log-sigma form the fill works in (blurmap._FLOOR).
FLOOR = 0.3


def _scale(index: np.ndarray) -> np.ndarray:
    """The blur map's scale (px) of each index: blurmap.SCALES, half-octave steps from 0.5 px."""
    return 0.5 * 2 ** (index / 2)


def _log_scale(index: np.ndarray) -> np.ndarray:
    """The log of :func:`_scale`."""
    return np.log(0.5) + index * np.log(2) / 2


def applicable(
    sigma: np.ndarray, sd: np.ndarray, lower: np.ndarray, sigma_range: tuple[float, float]
) -> np.ndarray:
    """Cells the correction reads and changes: measured, not a lower bound, confident, and in
    ``sigma_range`` (px)."""
    with np.errstate(invalid="ignore"):
        inside = (sigma >= sigma_range[0]) & (sigma <= sigma_range[1])
    return np.isfinite(sigma) & ~lower & inside & (sd <= MAX_SD)


def cell_features(
    feats: dict[str, Any],
    sigma: np.ndarray,
    sd: np.ndarray,
    lower: np.ndarray,
    *,
    disk: bool,
    sigma_range: tuple[float, float],
    at: np.ndarray | None = None,
) -> np.ndarray:
    """(h, w, n) features of every cell: its scale curve around the peak relative to the
    peak and to the step law, the peak scale, the physical sigma, the fit's residual, and the
    density, sigma and curve shape of the measured cells around it.

    ``feats`` is what :func:`defocus.blurmap._estimate` writes into its ``features`` dict;
    ``sigma`` the physical per-cell sigma (NaN where nothing was measured), ``sd`` its log
    standard error, ``lower`` the lower-bound flags. The context counts only the cells the
    correction applies to (:func:`applicable`): lower bounds and wide, uncertain cells (a
    quantised ramp's staircase) say nothing about a cell's neighbours. With a boolean mask
    ``at``, only those cells' rows are returned, (n, features).
    """
    signal, peak, last = feats["signal"], feats["peak"], feats["last"]
    k = signal.shape[0]
    idx = peak[None] + OFFSETS[:, None, None]
    valid = (idx >= 0) & (idx <= last)
    idx = np.clip(idx, 0, k - 1)
    # At the scales around the peak an edge's maximum may sit one cell over (coarser levels
    # span several cells; a quantised ramp's maximum wanders): the curve takes the largest
    # energy of the 3 x 3 cells around.
    near = ndi.maximum_filter(signal, size=(1, 3, 3), mode="nearest")
    s_i = np.take_along_axis(near, idx, 0).astype(np.float64)
    s_p = np.take_along_axis(near, peak[None], 0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(valid, np.clip(np.log(s_i / s_p), -10.0, 3.0), -10.0)
    found = np.isfinite(sigma)
    logs = np.log(np.sqrt(np.where(found, sigma, 1.0) ** 2 + FLOOR**2))
    log_peak = _log_scale(peak)
    # How far the curve departs from the isolated step law at the physical sigma: neighbours
    # of opposite sign make it fall faster above the peak.
    s2 = _scale(peak[None] + OFFSETS[:, None, None]) ** 2
    v = np.where(found, sigma, 1.0) ** 2
    law = np.log((v + np.exp(2 * log_peak)) / (v + s2))
    excess = np.where(valid, np.clip(rel - law, -5.0, 5.0), 0.0)
    # Context: how crowded the neighbourhood is with measured cells, and what they read.
    f = applicable(sigma, sd, lower, sigma_range).astype(np.float64)
    dens = ndi.gaussian_filter(f, CONTEXT_CELLS, mode="reflect", truncate=3.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        around = ndi.gaussian_filter(f * logs, CONTEXT_CELLS, mode="reflect", truncate=3.0)
        ctx = np.where(dens > 1e-6, around / dens, logs) - logs
        fall = ndi.gaussian_filter(f * excess[5], CONTEXT_CELLS, mode="reflect", truncate=3.0)
        fall = np.where(dens > 1e-6, fall / dens, excess[5])
    planes = [
        *rel,
        *excess[[0, 1, 2, 4, 5, 6]],
        log_peak,
        logs,
        np.clip(feats["rms"], 0, 2),
        dens,
        np.clip(ctx, -3, 3),
        fall,
        np.full(sigma.shape, float(disk)),
    ]
    # Cells the line fit skipped carry NaN residuals: they enter as 0.
    if at is not None:
        return np.nan_to_num(np.stack([np.asarray(p, np.float32)[at] for p in planes], axis=-1))
    return np.nan_to_num(np.stack([np.asarray(p, np.float32) for p in planes], axis=-1))


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
) -> np.ndarray:
    """The physical per-cell ``sigma`` with the learned correction applied where it may be.

    Cells without a measurement stay NaN; lower bounds and values outside the training range
    keep their physical value; without a weights file nothing changes.
    """
    w = _weights()
    if w is None:
        return sigma
    lo, hi = (float(v) for v in w["sigma_range"])
    use = applicable(sigma, sd, lower, (lo, hi))
    # The curve reads the 3 x 3 cells around: beside a lower bound or a cell wider than the
    # range (a quantised ramp's staircase reads 20-60 px) it is not the cell's own.
    with np.errstate(invalid="ignore"):
        foreign = lower | (sigma > hi)
    use &= ~ndi.maximum_filter(foreign, size=3, mode="nearest")
    if not use.any():
        return sigma
    x = cell_features(feats, sigma, sd, lower, disk=disk, sigma_range=(lo, hi), at=use)
    delta = predict(x.astype(np.float32), w)
    out = sigma.copy()
    logs = np.log(np.sqrt(sigma[use].astype(np.float64) ** 2 + FLOOR**2)) + delta
    out[use] = np.sqrt(np.maximum(np.exp(2 * logs) - FLOOR**2, 0.0))
    return out.astype(np.float32)
