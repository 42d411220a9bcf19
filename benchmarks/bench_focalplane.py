"""Focal-plane fit (issue "Interactive speed"): its time on 1 and 12 MP maps, and whether its
bootstrap errors are right.

The blur maps are synthetic :class:`~defocus.blurmap.BlurMap` objects, so the figures do not
depend on the blur-map estimator: a known tilt ``sigma = sqrt(sigma0² + (k d)²)`` per
``stride`` x ``stride`` cell, times ``exp(e)`` where ``e`` is spatially correlated Gaussian noise
(std 0.15 in log sigma, correlation length 2 cells), 3 % of cells off by a further log-normal
factor (std 0.7), and confidences drawn from [0.3, 1] with 15 % of cells below 0.1 (propagated).
The dense map repeats each cell's value over its cell, as the estimator's fill does.

*Errors*: for each case, ``--realisations`` independent noise draws. Their scatter (standard
deviation of the estimates) is the true error of the estimator; the median of the reported
one-sigma bootstrap errors should match it. A flat map (no gradient) must not claim a line.

*Speed*: wall and CPU seconds of ``focal_plane`` on 1 and 12 MP maps, medians of ``--repeats``.

``--baseline REV`` runs the same cases with ``src/defocus/focalplane.py`` as it was at git
revision REV (one timing run each, since the old fit took tens of seconds), side by side.

Usage: python benchmarks/bench_focalplane.py [--baseline REV] [--repeats N] [--realisations M]
Writes benchmarks/results/focalplane.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from defocus import focal_plane
from defocus.blurmap import BlurMap
from defocus.synth import tilt_map

HERE = Path(__file__).resolve().parent
RESULT = HERE / "results" / "focalplane.md"
STRIDE = 4
# (name, shape, position, angle, slope k, sigma0); slope 0 is the flat control. Small maps have
# bootstrap blocks of 8 x 10 cells, near the errors' correlation length; large ones of 30 x 40.
CASES = [
    ("240x320, line at 40 %", (240, 320), 0.40, 0.0, 0.020, 0.8),
    ("240x320, -25° at 62 %", (240, 320), 0.62, -25.0, 0.030, 0.5),
    ("240x320, 70° at 45 %", (240, 320), 0.45, 70.0, 0.015, 1.0),
    ("240x320, weak, 10° at 30 %", (240, 320), 0.30, 10.0, 0.004, 1.0),
    ("240x320, flat 1.5 px", (240, 320), 0.50, 0.0, 0.0, 1.5),
    ("960x1280, line at 40 %", (960, 1280), 0.40, 0.0, 0.005, 0.8),
    ("960x1280, -25° at 62 %", (960, 1280), 0.62, -25.0, 0.0075, 0.5),
]
KEYS = ("position", "angle", "sigma0", "slope")


def synthetic_map(truth: np.ndarray, *, seed: int) -> BlurMap:
    """A blur map of ``truth`` with correlated log-normal errors, outliers and confidences."""
    rng = np.random.default_rng(seed)
    cells = truth[STRIDE // 2 :: STRIDE, STRIDE // 2 :: STRIDE].astype(np.float64)
    e = ndi.gaussian_filter(rng.standard_normal(cells.shape), 2.0)
    e *= 0.15 / e.std()
    e += np.where(rng.random(cells.shape) < 0.03, rng.normal(0, 0.7, cells.shape), 0.0)
    conf = rng.uniform(0.3, 1.0, cells.shape)
    conf[rng.random(cells.shape) < 0.15] = rng.uniform(0.0, 0.1)
    sig = (cells * np.exp(e)).astype(np.float32)
    conf = conf.astype(np.float32)
    h, w = truth.shape

    def dense(a: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(a, STRIDE, 0), STRIDE, 1)[:h, :w]

    return BlurMap(dense(sig), dense(conf), sig, conf, STRIDE, 0.0, "gauss")


def load_baseline(rev: str) -> Callable:
    """``focal_plane`` from ``src/defocus/focalplane.py`` at git revision ``rev``."""
    src = subprocess.run(
        ["git", "show", f"{rev}:src/defocus/focalplane.py"],
        cwd=HERE.parent,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "focalplane_baseline.py"
    path.write_text(src)
    # A submodule name inside defocus, so that its relative imports resolve.
    spec = importlib.util.spec_from_file_location("defocus._focalplane_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod.focal_plane


def estimates(fp) -> dict[str, float]:
    """The fitted line's parameters (``fitted_position``, not the clamped one)."""
    return {
        "position": fp.fitted_position,
        "angle": fp.angle,
        "sigma0": fp.sigma0,
        "slope": fp.slope,
    }


def displayed_position(shape: tuple[int, int], position: float, angle: float) -> float:
    """``tilt_map``'s position (fraction of the height) in FocalPlane's convention: a fraction
    of the width for lines steeper than 45°."""
    if abs(angle) <= 45:
        return position
    h, w = shape
    th = math.radians(angle)
    rho = (position * h - (h - 1) / 2) * math.cos(th)
    return ((w - 1) / 2 + rho / math.sin(th)) / w


def error_study(fit: Callable, realisations: int) -> list[dict]:
    rows = []
    for name, shape, pos, ang, k, s0 in CASES:
        truth = tilt_map(shape, position=pos, angle=ang, slope=k, floor=s0)
        est, err, claims = {q: [] for q in KEYS}, {q: [] for q in KEYS}, 0
        for seed in range(realisations):
            fp = fit(synthetic_map(truth, seed=seed))
            for q, v in estimates(fp).items():
                est[q].append(v)
                err[q].append(fp.errors[q])
            claims += bool(getattr(fp, "significant", True))
        ang_est = np.array(est["angle"])
        est["angle"] = list((ang_est - ang + 90) % 180 - 90 + ang)  # wrap near the truth
        shown = displayed_position(shape, pos, ang)
        row = {"case": name, "truth": dict(zip(KEYS, (shown, ang, s0, k), strict=True))}
        for q in KEYS:
            row[q] = (
                float(np.median(est[q])),
                float(np.std(est[q], ddof=1)),
                float(np.median(err[q])),
            )
        row["claims"] = claims
        rows.append(row)
    return rows


def timing(fit: Callable, repeats: int) -> dict[str, tuple[float, float]]:
    out = {}
    for label, shape in (("1 MP", (1000, 1000)), ("12 MP", (3000, 4000))):
        bm = synthetic_map(
            tilt_map(shape, position=0.4, angle=10.0, slope=0.004, floor=0.6), seed=0
        )
        wall, cpu = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            fit(bm)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        out[label] = (statistics.median(wall), statistics.median(cpu))
    return out


def _fmt(q: str, v: float) -> str:
    return {"position": f"{v:.4f}", "angle": f"{v:.2f}", "sigma0": f"{v:.3f}"}.get(q, f"{v:.5f}")


def write(results: dict[str, dict], args: argparse.Namespace) -> None:
    lines = [
        "# Focal-plane fit: speed and bootstrap errors",
        "",
        f"Command: `python benchmarks/bench_focalplane.py{' ' + ' '.join(sys.argv[1:])}`. "
        "Machine: 2 cores shared with other jobs, so absolute times are noisy.",
        "Synthetic blur maps (see the script's docstring): correlated log-normal errors of "
        "0.15, 3 % outliers, 15 % of cells propagated (confidence < 0.1), stride 4.",
        "",
        "## Time of `focal_plane`",
        "",
        "| code | map | wall s | CPU s | runs (median) |",
        "|---|---|---|---|---|",
    ]
    for code, res in results.items():
        for label, (wall, cpu) in res["timing"].items():
            lines.append(f"| {code} | {label} | {wall:.3f} | {cpu:.3f} | {res['repeats']} |")
    lines += [
        "",
        "Target: ≤ 0.2 s at any image size.",
        "",
        f"## Bootstrap errors against the true scatter ({args.realisations} noise draws per case)",
        "",
        "Scatter: standard deviation of the estimates over the draws (the estimator's true "
        "error). Bootstrap: median of the reported one-sigma errors. Ratio = bootstrap / "
        "scatter, 1 is right. Position: fraction of the image (the fitted line's crossing); "
        "angle in degrees; sigma0 in px; slope k in px/px.",
        "",
        "| case | quantity | truth | code | median estimate | scatter | bootstrap | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    codes = list(results)
    for i, (name, *_rest) in enumerate(CASES):
        for q in KEYS:
            for code in codes:
                row = results[code]["errors"][i]
                med, sd, boot = row[q]
                ratio = boot / sd if sd > 0 else math.nan
                lines.append(
                    f"| {name} | {q} | {_fmt(q, row['truth'][q])} | {code} | {_fmt(q, med)} "
                    f"| {sd:.2g} | {boot:.2g} | {ratio:.2f} |"
                )
    lines += [
        "",
        "## Lines claimed",
        "",
        "Draws in which `focal_plane` reported a significant line (code without a "
        "significance test always claims one). A line needs a fitted blur range (largest over "
        "least sqrt(sigma² + 0.4²) in the image) of 1.3; the true range is the model's at the "
        "true parameters.",
        "",
        "| case | true blur range | " + " | ".join(codes) + " |",
        "|---|---|" + "---|" * len(codes),
    ]
    for i, (name, shape, pos, ang, k, s0) in enumerate(CASES):
        eff = np.hypot(tilt_map(shape, position=pos, angle=ang, slope=k, floor=s0), 0.4)
        claims = [f"{results[c]['errors'][i]['claims']} / {args.realisations}" for c in codes]
        lines.append(f"| {name} | {eff.max() / eff.min():.2f} | " + " | ".join(claims) + " |")
    RESULT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", metavar="REV", help="also run focalplane.py at this revision")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--realisations", type=int, default=20)
    args = ap.parse_args()
    fits = {}
    if args.baseline:
        fits[f"before ({args.baseline})"] = (load_baseline(args.baseline), 1)
    fits["current"] = (focal_plane, args.repeats)
    results = {}
    for code, (fit, repeats) in fits.items():
        print(f"== {code}", flush=True)
        results[code] = {
            "timing": timing(fit, repeats),
            "repeats": repeats,
            "errors": error_study(fit, args.realisations),
        }
    write(results, args)


if __name__ == "__main__":
    main()
