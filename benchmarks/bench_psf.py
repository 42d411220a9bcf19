"""PSF models against measured optics (issue 16): bead PSF z-stacks and an astigmatic SEM pair.

Run:  python benchmarks/bench_psf.py [--quick] [--data DIR]

Writes benchmarks/results/psf_beads.md and psf_beads.png. Every frame of each measured bead
stack (``real/psf_beads_pyotf``) is background-subtracted, cropped around the in-focus peak and
explained by :func:`defocus.kernel.fit_psf` with its default models; the table gives the chosen
model, its BIC margin over the runner-up, the defocus fit (signed W020, spherical W040, Airy
radius and the NA it implies) and the misfit. W020 against z is then fitted by a straight line.
The SEM pair (``real/sem_deepfocus_wd``, −8.3 µm as sharp, −13.3 µm as blurred) goes through
:func:`defocus.kernel.estimate_kernel` and the same fit, for its anisotropy.
"""

from __future__ import annotations

import os

# A shared 2-core machine: one BLAS thread (see bench_kernel.py).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from defocus import psf as P  # noqa: E402
from defocus.kernel import estimate_kernel, fit_psf  # noqa: E402

HERE = Path(__file__).parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DATA = Path(os.environ.get("DEFOCUS_SHARED_DATA", ROOT.parent / "shared" / "data"))
# Airy first-zero radius = 0.61 λ/NA (Born & Wolf §8.5).
J1 = P.airy_radius(1.0, 1.0, 1.0)


@dataclass(frozen=True)
class Stack:
    """One measured bead z-stack and the optics its source states."""

    file: str
    label: str
    z_step_um: float
    wavelength_um: float
    pixel_um: float
    half: int  # crop half-width in px
    optics_note: str


STACKS = (
    Stack(
        "psf_wl520nm_z300nm_x130nm_na0.85_n1.0.tif",
        "520 nm, NA 0.85 (nominal), 130 nm px",
        0.3,
        0.520,
        0.130,
        32,
        "file name: 520 nm emission, NA 0.85 air objective, 130 nm pixels, 0.3 µm steps",
    ),
    Stack(
        "BIL113_zstack_z300nm_current.tif",
        "light-sheet bead (BIL113), 87 nm px",
        0.3,
        0.560,
        6.5 / 74.41745,
        24,
        "settings: magnification 74.4 on Orca 4.0 cameras (6.5 µm pixels, so 87 nm); the "
        "source names only the 560 nm excitation, so the NA below is for 560 nm (emission is "
        "longer: a lower bound)",
    ),
)


def load_stack(path: Path) -> np.ndarray:
    import tifffile

    return tifffile.imread(path).astype(np.float64)


def frames(stack: np.ndarray, half: int) -> tuple[list[np.ndarray], int]:
    """Background-subtracted crops around the brightest frame's peak, and that frame's index."""
    focus = int(np.argmax(stack.reshape(len(stack), -1).max(axis=1)))
    cy, cx = np.unravel_index(int(np.argmax(stack[focus])), stack[focus].shape)
    out = []
    for f in stack:
        # The camera offset: median of the frame's outer 16-px band (no bead light there).
        band = np.concatenate([f[:16].ravel(), f[-16:].ravel(), f[:, :16].ravel()])
        crop = f[cy - half : cy + half + 1, cx - half : cx + half + 1] - np.median(band)
        out.append(crop)
    return out, focus


def na_from_airy(radius_px: float, s: Stack) -> float:
    return J1 * s.wavelength_um / (radius_px * s.pixel_um)


def linear(z: np.ndarray, w: np.ndarray) -> tuple[float, float, float]:
    """Slope, intercept and R² of the least-squares line w = slope z + intercept."""
    slope, icept = np.polyfit(z, w, 1)
    resid = w - (slope * z + icept)
    r2 = 1 - float(resid @ resid) / float(((w - w.mean()) ** 2).sum())
    return float(slope), float(icept), r2


def bead_rows(s: Stack, data: Path, quick: bool) -> tuple[list[dict], int, list]:
    stack = load_stack(data / "real" / "psf_beads_pyotf" / s.file)
    crops, focus = frames(stack, s.half)
    idx = range(len(crops)) if not quick else range(focus % 4, len(crops), 4)
    rows, kept = [], []
    for i in idx:
        t = time.perf_counter()
        fit = fit_psf(crops[i])
        ranked = sorted(fit.fits.values(), key=lambda f: f.bic)
        d, a = fit.fits["defocus"], fit.fits["airy"]
        rows.append(
            {
                "frame": i,
                "z": (i - focus) * s.z_step_um,
                "model": fit.model,
                "margin": ranked[1].bic - ranked[0].bic,
                "runner": ranked[1].model,
                "waves": d.params["waves"],
                "waves_err": d.errors["waves"],
                "spherical": d.params["spherical"],
                "airy": d.params["airy_radius"],
                "na": na_from_airy(d.params["airy_radius"], s),
                "rel": d.rel_error,
                "airy_only": a.params["radius"],
                "na_airy_only": na_from_airy(a.params["radius"], s),
                "seconds": time.perf_counter() - t,
            }
        )
        kept.append((i, crops[i], d))
        print(f"  {s.file} frame {i}: {fit.model}", file=sys.stderr, flush=True)
    return rows, focus, kept


def sem_pair(data: Path) -> dict:
    import imageio.v3 as iio

    folder = data / "real" / "sem_deepfocus_wd"
    stem = "series_0_def-13324_astx-466_asty219_"
    sharp = iio.imread(folder / f"{stem}pert5000.png").astype(np.float64)
    blurry = iio.imread(folder / f"{stem}base.png").astype(np.float64)
    t = time.perf_counter()
    est = estimate_kernel(sharp, blurry)
    fit = fit_psf(est.kernel)
    return {"est": est, "fit": fit, "seconds": time.perf_counter() - t}


def picture(kept: list, sem: dict | None, path: Path) -> None:
    from matplotlib.figure import Figure

    show = kept[:: max(1, len(kept) // 5)][:5]
    cols = len(show) + (1 if sem else 0)
    fig = Figure(figsize=(2.6 * cols, 5.4), layout="constrained")
    axes = fig.subplots(2, cols, squeeze=False)
    for j, (i, crop, d) in enumerate(show):
        model = P.render("defocus", shape=crop.shape, offset=d.centre, **d.params)
        k = crop / crop.sum()
        for row, img in enumerate((k, model)):
            axes[row, j].imshow(np.sqrt(np.clip(img, 0, None)), cmap="magma")
            axes[row, j].set_axis_off()
        axes[0, j].set_title(f"frame {i} (measured)", fontsize=8)
        p = d.params
        axes[1, j].set_title(
            f"defocus W020 {p['waves']:+.2f}, W040 {p['spherical']:.2f}\n"
            f"Airy {p['airy_radius']:.2f} px; misfit {d.rel_error:.2f}",
            fontsize=8,
        )
    if sem:
        k = sem["est"].kernel
        for row in range(2):
            axes[row, -1].imshow(np.sqrt(np.clip(k, 0, None)), cmap="magma")
            axes[row, -1].set_axis_off()
        e = sem["fit"].fits["elliptical_gauss"].derived
        centre = sem["fit"].fits["elliptical_gauss"].centre
        cy, cx = (n // 2 + c for n, c in zip(k.shape, centre, strict=True))
        t = np.linspace(0, 2 * np.pi, 200)
        th = math.radians(e["angle"])
        u, v = 2 * e["sigma_major"] * np.cos(t), 2 * e["sigma_minor"] * np.sin(t)
        # Angle counter-clockwise from +x as displayed: rows run downwards.
        axes[1, -1].plot(
            cx + u * math.cos(th) - v * math.sin(th),
            cy - u * math.sin(th) - v * math.cos(th),
            "c-",
            lw=1,
        )
        axes[0, -1].set_title("SEM kernel (−8.3 → −13.3 µm)", fontsize=8)
        axes[1, -1].set_title(
            f"2σ ellipse: {e['sigma_major']:.2f}/{e['sigma_minor']:.2f} px at {e['angle']:.0f}°",
            fontsize=8,
        )
    fig.suptitle("Measured PSFs (square-root scale) and their fits", fontsize=10)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    tmp.replace(path)


def write_report(args, results: list, sem: dict | None, seconds: float) -> str:
    cmd = "python benchmarks/bench_psf.py" + (" --quick" if args.quick else "")
    lines = [
        "# PSF models on measured optics (issue 16)",
        "",
        f"- Command: `{cmd}`",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; run time {seconds / 60:.1f} min; "
        f"{os.cpu_count()} cores (shared), Python {platform.python_version()}, "
        f"numpy {np.__version__}",
        "- Data: `../shared/data/real/psf_beads_pyotf` and `real/sem_deepfocus_wd` (read-only; "
        "see their SOURCE.txt).",
        "- Each frame: camera offset (median of the outer 16-px band) subtracted, cropped around "
        "the in-focus peak, `fit_psf` with its default 8 models. *margin*: BIC of the runner-up "
        "minus the chosen model's. The defocus columns are the `defocus` fit whatever was chosen: "
        "W020 (signed) and W040 (≥ 0 by convention) in waves at the pupil edge, its in-focus Airy "
        "radius and the NA that radius implies (0.61 λ / (radius · pixel)); *misfit* is "
        "‖model − kernel‖ / ‖kernel‖. *Airy only*: the plain Airy fit's radius and NA.",
        "- Sign convention: z grows with the frame index (the sample piezo's steps); W020 < 0 is "
        "the side of focus where the spherical aberration partly cancels defocus (an intensity "
        "PSF shows only the relative sign of W020 and W040).",
        "",
    ]
    for s, rows, focus, line in results:
        lines += [
            f"## {s.label}",
            "",
            f"- `{s.file}`: {s.optics_note}. In-focus frame (brightest peak): {focus}.",
        ]
        if line:
            lines.append(line)
        lines += [
            "",
            "| frame | z (µm) | chosen | margin | runner-up | W020 | W040 | Airy (px) | NA | "
            "misfit | Airy only (px) | NA (Airy only) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['frame']} | {r['z']:+.1f} | {r['model']} | {r['margin']:.0f} | "
                f"{r['runner']} | {r['waves']:+.2f} ± {r['waves_err']:.2f} | "
                f"{r['spherical']:.2f} | {r['airy']:.2f} | {r['na']:.2f} | {r['rel']:.3f} | "
                f"{r['airy_only']:.2f} | {r['na_airy_only']:.2f} |"
            )
        lines.append("")
    if sem:
        est, fit = sem["est"], sem["fit"]
        e = fit.fits["elliptical_gauss"]
        a = fit.fits["astigmatic"]
        lines += [
            "## SEM pair with a known stigmator error (DeepFocus, x 0.466, y 0.219 a.u.)",
            "",
            f"- `estimate_kernel(pert5000, base)` (−8.3 µm as sharp, −13.3 µm as blurred): "
            f"kernel {est.kernel.shape[0]}×{est.kernel.shape[1]}, σ {est.sigma:.2f} px, "
            f"residual RMS {float(np.mean(est.residual)):.2f} against noise {est.noise:.2f} "
            f"(ratio {float(np.mean(est.residual)) / est.noise:.2f}); "
            f"{sem['seconds']:.0f} s with the fit.",
            f"- Chosen model: **{fit.model}**. Angles are counter-clockwise from +x as displayed "
            "(rows run downwards), in (−90°, 90°].",
            "",
            "| model | σ major (px) | σ minor (px) | axis ratio | angle (°) | misfit | BIC |",
            "|---|---|---|---|---|---|---|",
        ]
        for f in (e, a):
            d = f.derived
            lines.append(
                f"| {f.model} | {d['sigma_major']:.2f} | {d['sigma_minor']:.2f} | "
                f"{d['axis_ratio']:.2f} | {d['angle']:.1f} | {f.rel_error:.3f} | {f.bic:.0f} |"
            )
        for name in ("gauss", "disk", "defocus"):
            f = fit.fits[name]
            lines.append(
                f"| {name} | {f.sigma:.2f} | {f.sigma:.2f} | 1 | – | {f.rel_error:.3f} | "
                f"{f.bic:.0f} |"
            )
        lines.append("")
    lines += ["![bead PSFs and fits](psf_beads.png)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="every fourth frame, no SEM pair")
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    args = ap.parse_args(argv)
    if not (args.data / "real" / "psf_beads_pyotf").is_dir():
        print(f"no bead data under {args.data}; nothing to do", file=sys.stderr)
        return 0
    start = time.perf_counter()
    results, first_kept = [], None
    for s in STACKS:
        rows, focus, kept = bead_rows(s, args.data, args.quick)
        first_kept = first_kept or kept
        line = ""
        z = np.array([r["z"] for r in rows])
        w = np.array([r["waves"] for r in rows])
        if len(rows) >= 3:
            parts = []
            for name, sel in (("all frames", np.ones(len(z), bool)), ("z ≥ 0", z >= -1e-9)):
                if sel.sum() >= 3:
                    slope, icept, r2 = linear(z[sel], w[sel])
                    # Defocus wavefront at the pupil edge: dz (1 − √(1 − NA²)) / λ in air.
                    c = 1 - slope * s.wavelength_um
                    na = math.sqrt(1 - c * c) if 0 < c <= 1 else float("nan")
                    parts.append(
                        f"{name}: W020 = {slope:+.3f} waves/µm · z {icept:+.2f}, "
                        f"R² {r2:.3f} (NA from the slope {na:.2f})"
                    )
            line = "- Linear fit of W020 against z: " + "; ".join(parts) + "."
        results.append((s, rows, focus, line))
    sem = None if args.quick else sem_pair(args.data)
    RESULTS.mkdir(exist_ok=True)
    picture(first_kept or [], sem, RESULTS / "psf_beads.png")
    report = write_report(args, results, sem, time.perf_counter() - start)
    tmp = RESULTS / "psf_beads.md.tmp"
    tmp.write_text(report + "\n")
    tmp.replace(RESULTS / "psf_beads.md")
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
