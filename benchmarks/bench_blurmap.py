"""Accuracy and speed benchmark for the absolute blur-radius map (issue 4), with peers.

Run:  python benchmarks/bench_blurmap.py [--quick] [--track all|standard|realistic|speed]
Writes benchmarks/results/blurmap.md (and blurmap_example.png). A run of one track rewrites
only that track's part of the file. ``--track speed [--repeat N] [--baseline OTHER/src]``
times the 12 MP map alone (greyscale and colour JPEG, fresh processes, alternating with an
older checkout's code when given) into results/blurmap_speed.md. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import importlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi
from scipy import stats
from skimage.color import rgb2gray

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _scenes as S
import peers as P

F32 = NDArray[np.float32]
Mask = NDArray[np.bool_]
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

FAMILIES = ("gauss", "disk")
NOISES = (0.01, 0.03)
TRAP_GAIN, TRAP_OFFSET = 4.0, 0.5  # offset in units of the sharp image's range
OURS = "defocus.blur_map"
# The same estimator without its learned dense-texture stage (correction=False): what the
# physics alone reads, run beside it so the stage's gain and cost are measured, not recalled.
PHYSICS = "physics alone"
ABSOLUTE = (OURS, PHYSICS, "seed LoG (calibrated)", "Zhuo & Sim")
RELATIVE = ("block acutance", "blur-detector")
# Realistic track: conditions of _scenes.DEGRADATIONS plus two reference rows (not pooled).
NO_NOISE, WHITE_REF = "float, no noise", "white noise 1 % (ideal track)"
REALISTIC_CALIB_NOISE = 0.01  # the peers keep the calibration fitted at 1 % white noise
REALISTIC_TARGET = 0.80
REALISTIC_QUICK = ("photon1000", "bayer", "jpeg70", "scanlines", "8bit")
BEGIN_REALISTIC = "<!-- realistic-degradation track: begin -->"
END_REALISTIC = "<!-- realistic-degradation track: end -->"


# --------------------------------------------------------------------------- our method


def find_ours() -> tuple[Callable[..., object] | None, str]:
    """Return (blur_map, where) or (None, reason); the method may not exist yet."""
    try:
        mod = importlib.import_module("defocus")
        fn = getattr(mod, "blur_map", None)
        if fn is None:
            fn = importlib.import_module("defocus.blurmap").blur_map
        return fn, f"{fn.__module__}.{fn.__qualname__}"
    except Exception as exc:
        return None, f"not importable ({type(exc).__name__}: {exc})"


def run_ours(fn: Callable[..., object], image: F32, family: str) -> F32:
    res = fn(image, psf=family, channel_axis=-1 if image.ndim == 3 else None)
    return np.asarray(res.sigma, dtype=np.float32)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- scenes


@dataclass
class Scene:
    image: str
    kind: str  # tilt | regions | depth
    family: str
    noise: float
    sharp: F32
    sigma: F32
    blurred: F32
    struct: Mask
    interior: Mask
    condition: str = ""  # realistic track: the degradation (then ``noise`` is not used)

    @property
    def label(self) -> str:
        return f"{self.image}/{self.kind}"

    @property
    def calib_noise(self) -> float:
        """The white-noise level whose peer calibration this scene uses."""
        return REALISTIC_CALIB_NOISE if self.condition else self.noise

    @cached_property
    def grey(self) -> F32:
        """What the greyscale peers are given: the luminance of a demosaiced RGB input."""
        if self.blurred.ndim == 2:
            return self.blurred
        return rgb2gray(self.blurred).astype(np.float32)


@dataclass
class Ctx:
    """Per-run caches: sharp images, sigma maps, rendered scenes, calibrations."""

    images: tuple[str, ...]
    render: Callable[[F32, F32, str], F32]
    sharp: dict[str, F32] = field(default_factory=dict)
    clean: dict[tuple[str, str, str], F32] = field(default_factory=dict)
    scenes: dict[tuple[str, str, str, float], Scene] = field(default_factory=dict)
    calib: dict[tuple[str, str, float], tuple[P.LogCalibration, float]] = field(
        default_factory=dict
    )

    def get_sharp(self, name: str) -> F32:
        if name not in self.sharp:
            self.sharp[name] = S.load_image(name)
        return self.sharp[name]

    def sigma_map(self, name: str, kind: str) -> F32:
        shape = self.get_sharp(name).shape
        i = S.TEST_IMAGES.index(name)
        rng = np.random.default_rng(1000 + i)  # deterministic per image
        if kind == "tilt":
            frac, ang = rng.uniform(0.3, 0.7), rng.uniform(-15, 15)
            return S.tilt_sigma(shape, band_frac=float(frac), angle_deg=float(ang))
        if kind == "regions":
            return S.region_sigma(shape, seed=2000 + i)
        if kind == "depth":
            return S.depth_sigma(S.load_motorcycle_disparity())
        raise ValueError(kind)

    def clean_render(self, name: str, kind: str, family: str) -> F32:
        """The blurred scene before any noise or degradation."""
        key = (name, kind, family)
        if key not in self.clean:
            self.clean[key] = self.render(self.get_sharp(name), self.sigma_map(name, kind), family)
        return self.clean[key]

    def scene(self, name: str, kind: str, family: str, noise: float) -> Scene:
        key = (name, kind, family, noise)
        if key not in self.scenes:
            sharp = self.get_sharp(name)
            sig = self.sigma_map(name, kind)
            clean = self.clean_render(name, kind, family)
            seed = hash_seed(name, kind, family, noise)
            rng_ = float(sharp.max() - sharp.min())
            blurred = S.add_noise(clean, noise, ref_range=rng_, seed=seed)
            self.scenes[key] = Scene(
                name,
                kind,
                family,
                noise,
                sharp,
                sig,
                blurred,
                S.structured_mask(sharp),
                S.interior_mask(sharp.shape),
            )
        return self.scenes[key]

    def calibration(self, scored: str, family: str, noise: float) -> tuple[P.LogCalibration, float]:
        """LoG linear map and Zhuo & Sim sigma0, fitted on the NEXT image's tilt scene."""
        cal_img = self.images[(self.images.index(scored) + 1) % len(self.images)]
        key = (cal_img, family, noise)
        if key not in self.calib:
            sc = self.scene(cal_img, "tilt", family, noise)
            log = P.LogCalibration.fit(sc.blurred, sc.sigma, sc.struct)
            best = max(
                (1.0, 2.0, 4.0),
                key=lambda s0: frac_right(
                    P.zhuo_sim(sc.blurred, sigma0=s0)[0], sc.sigma, sc.struct
                ),
            )
            self.calib[key] = (log, best)
        return self.calib[key]


def hash_seed(*parts: object) -> int:
    """Stable seed from the scene's identity (hash() is salted per process)."""
    return zlib.crc32(repr(parts).encode())


# --------------------------------------------------------------------------- scoring


def right(est: F32, true: F32) -> NDArray[np.bool_]:
    """Within ±30 % of the true sigma, or ±0.3 px where that is wider."""
    return np.abs(est - true) <= np.maximum(0.3 * true, 0.3)


def frac_right(est: F32, true: F32, m: Mask) -> float:
    return float(right(est[m], true[m]).mean())


def spearman(score: F32, true: F32, m: Mask, n_max: int = 20000) -> float:
    """Rank correlation over the mask, on a deterministic strided subsample."""
    e, t = score[m], true[m]
    step = max(1, e.size // n_max)
    r = stats.spearmanr(e[::step], t[::step])[0]
    return float(r) if np.isfinite(r) else 0.0


@dataclass
class Score:
    struct_right: float = np.nan
    struct_medrel: float = np.nan
    dense_right: float = np.nan
    rho: float = np.nan
    seconds: float = np.nan
    error: str | None = None
    ok: NDArray[np.bool_] | None = None  # per structured pixel, for pooling
    relerr: NDArray[np.float32] | None = None  # per structured pixel, for pooling
    dense_ok: NDArray[np.bool_] | None = None  # per interior pixel, for pooling


def score_abs(est: F32, sc: Scene) -> Score:
    e, t = est[sc.struct], sc.sigma[sc.struct]
    ok = right(e, t)
    relerr = (np.abs(e - t) / t).astype(np.float32)
    dense_ok = right(est[sc.interior], sc.sigma[sc.interior])
    return Score(
        struct_right=float(ok.mean()),
        struct_medrel=float(np.median(relerr)),
        dense_right=float(dense_ok.mean()),
        rho=spearman(est, sc.sigma, sc.struct),
        ok=ok,
        relerr=relerr,
        dense_ok=dense_ok,
    )


# --------------------------------------------------------------------------- methods


def method_table(ours: Callable[..., object] | None, ctx: Ctx) -> dict[str, Callable[..., F32]]:
    """name -> fn(scene) returning sigma (absolute) or blurriness score (relative)."""

    def log_cal(sc: Scene) -> F32:
        return ctx.calibration(sc.image, sc.family, sc.calib_noise)[0](sc.grey)

    def zhuo(sc: Scene) -> F32:
        s0 = ctx.calibration(sc.image, sc.family, sc.calib_noise)[1]
        return P.zhuo_sim(sc.grey, sigma0=s0)[0]

    methods: dict[str, Callable[..., F32]] = {}
    if ours is not None:
        methods[OURS] = lambda sc: run_ours(ours, sc.blurred, sc.family)
        physics = functools.partial(ours, correction=False)
        methods[PHYSICS] = lambda sc: run_ours(physics, sc.blurred, sc.family)
    methods["seed LoG (calibrated)"] = log_cal
    methods["Zhuo & Sim"] = zhuo
    # relative scores are sharpness: negate so that larger = blurrier, like sigma
    methods["block acutance"] = lambda sc: -P.block_acutance(sc.grey)
    if P.blur_detector_available() is None:
        methods["blur-detector"] = lambda sc: -P.blur_detector_map(sc.grey)
    return methods


def score_scene(ctx: Ctx, methods: dict[str, Callable[..., F32]], sc: Scene) -> dict[str, Score]:
    """Score every method on one scene; calibrations are fitted first, so not timed."""
    ctx.calibration(sc.image, sc.family, sc.calib_noise)
    row: dict[str, Score] = {}
    for name, fn in methods.items():
        t0 = time.perf_counter()
        try:
            est = fn(sc)
            dt_ = time.perf_counter() - t0
            if est.shape != sc.sigma.shape or not np.isfinite(est).all():
                raise ValueError(f"bad output: shape {est.shape}, finite {np.isfinite(est).all()}")
        except Exception as exc:
            row[name] = Score(error=f"{type(exc).__name__}: {exc}")
            traceback.print_exc()
            continue
        rho = spearman(est, sc.sigma, sc.struct)
        s = score_abs(est, sc) if name in ABSOLUTE else Score(rho=rho)
        s.seconds = dt_
        row[name] = s
    return row


def brief(row: dict[str, Score]) -> str:
    return "  ".join(
        f"{n[:12]}={r.struct_right:.2f}" if n in ABSOLUTE else f"{n[:12]} ρ={r.rho:.2f}"
        for n, r in row.items()
    )


def evaluate(ctx: Ctx, methods: dict[str, Callable[..., F32]], scenes: list[Scene]) -> dict:
    """Score every method on every scene."""
    out: dict[tuple[str, str, str, float], dict[str, Score]] = {}
    for sc in scenes:
        row = score_scene(ctx, methods, sc)
        out[(sc.image, sc.kind, sc.family, sc.noise)] = row
        print(f"[{sc.label} {sc.family} {sc.noise:.0%}] {brief(row)}", flush=True)
    return out


def pooled(res: dict, scenes: list[Scene], method: str, family: str, noise: float) -> Score:
    """Pool pixels over scenes (struct/dense), and average per-scene rank correlations."""
    errs, oks, dense, rhos, secs = [], [], [], [], []
    for sc in scenes:
        if sc.family != family or sc.noise != noise:
            continue
        r = res[(sc.image, sc.kind, sc.family, sc.noise)].get(method)
        if r is None or r.error:
            return Score(error=r.error if r else "not run")
        rhos.append(r.rho)
        secs.append(r.seconds)
        if r.ok is not None and r.relerr is not None and r.dense_ok is not None:
            oks.append(r.ok)
            errs.append(r.relerr)
            dense.append(r.dense_ok)
    s = Score(rho=float(np.mean(rhos)), seconds=float(np.sum(secs)))
    if errs:
        s.struct_right = float(np.concatenate(oks).mean())
        s.struct_medrel = float(np.median(np.concatenate(errs)))
        s.dense_right = float(np.concatenate(dense).mean())
    return s


# --------------------------------------------------------------------------- contrast trap


def contrast_trap(
    ctx: Ctx, methods: dict[str, Callable[..., F32]], images: tuple[str, ...]
) -> list[tuple[str, str, str, float, float, float]]:
    """Gain ×4 and an offset inside one region of the SHARP image (float, no clipping).

    Returns rows (image, family, method, median before, median after, relative change), the
    medians taken over structured pixels of the region eroded by BORDER px (the region's own
    boundary is a new, legitimately blurred edge, so it is kept out of the comparison).
    """
    rows = []
    for name in images:
        for fam in FAMILIES:
            base = ctx.scene(name, "tilt", fam, 0.01)
            h, w = base.sharp.shape
            region = np.zeros((h, w), bool)
            region[int(0.2 * h) : int(0.8 * h), int(0.45 * w) : int(0.95 * w)] = True
            rng_ = float(base.sharp.max() - base.sharp.min())
            sharp2 = np.where(region, TRAP_GAIN * base.sharp + TRAP_OFFSET * rng_, base.sharp)
            sharp2 = sharp2.astype(np.float32)
            clean = ctx.render(sharp2, base.sigma, fam)
            noisy = S.add_noise(clean, 0.01, ref_range=rng_, seed=hash_seed(name, "trap", fam))
            trap = Scene(
                name, "trap", fam, 0.01, sharp2, base.sigma, noisy, base.struct, base.interior
            )
            inner = ndi.binary_erosion(region, iterations=S.BORDER) & base.struct
            for mname, fn in methods.items():
                try:
                    # relative methods: compare their raw score (sign restored)
                    sgn = 1.0 if mname in ABSOLUTE else -1.0
                    a = float(np.median(sgn * fn(base)[inner]))
                    b = float(np.median(sgn * fn(trap)[inner]))
                    rows.append((name, fam, mname, a, b, abs(b / a - 1) if a else np.inf))
                except Exception as exc:
                    print(f"trap {mname}: {exc}", flush=True)
                    rows.append((name, fam, mname, np.nan, np.nan, np.nan))
    return rows


# --------------------------------------------------------------------------- realistic track


def scene_kinds(name: str) -> list[str]:
    return ["tilt", "regions"] + (["depth"] if name == "motorcycle_left" else [])


def condition_label(cond: str) -> str:
    return S.DEGRADATIONS[cond][0] if cond in S.DEGRADATIONS else cond


def realistic_scene(ctx: Ctx, name: str, kind: str, family: str, cond: str) -> Scene:
    """The scene degraded by ``cond``; truth, masks and clean render are the ideal track's."""
    base = ctx.scene(name, kind, family, REALISTIC_CALIB_NOISE)
    if cond == WHITE_REF:
        return replace(base, condition=cond)
    clean = ctx.clean_render(name, kind, family)
    if cond == NO_NOISE:
        recorded = clean
    else:
        rng = np.random.default_rng(hash_seed(name, kind, family, cond))
        recorded = S.DEGRADATIONS[cond][1](clean, rng)
    return replace(base, noise=np.nan, blurred=recorded, condition=cond)


def compact(s: Score) -> Score:
    """Keep what pooling needs: the per-pixel relative errors, in float16 (3 significant
    digits, finer than the table prints); the right fraction and counts are exact."""
    if s.relerr is not None:
        s.relerr = s.relerr.astype(np.float16)
    s.ok = s.dense_ok = None
    return s


def realistic_track(
    ctx: Ctx,
    methods: dict[str, Callable[..., F32]],
    images: tuple[str, ...],
    conditions: tuple[str, ...],
) -> dict[tuple[str, str, str, str], dict[str, Score]]:
    """Score every method on every (condition, family, image, scene kind)."""
    out = {}
    for cond in conditions:
        for fam in FAMILIES:
            for name in images:
                for kind in scene_kinds(name):
                    sc = realistic_scene(ctx, name, kind, fam, cond)
                    row = {m: compact(r) for m, r in score_scene(ctx, methods, sc).items()}
                    out[(cond, name, kind, fam)] = row
                    print(f"[{cond} {sc.label} {fam}] {brief(row)}", flush=True)
    return out


def pool_rows(rows: list[Score]) -> Score:
    """Pool scenes: right fraction and median relative error over all their structured
    pixels (absolute methods); mean per-scene ρ; total seconds."""
    bad = [r for r in rows if r.error]
    if bad or not rows:
        return Score(error=bad[0].error if bad else "not run")
    s = Score(rho=float(np.mean([r.rho for r in rows])), seconds=sum(r.seconds for r in rows))
    errs = [r.relerr for r in rows if r.relerr is not None]
    if errs:
        n = np.array([e.size for e in errs], float)
        s.struct_right = float(np.dot([r.struct_right for r in rows], n) / n.sum())
        s.struct_medrel = float(np.median(np.concatenate(errs)))
    return s


def cell(m: str, s: Score, target: float | None = None) -> str:
    if s.error:
        return "error"
    if m not in ABSOLUTE:
        return f"ρ {s.rho:.2f}"
    txt = f"{pct(s.struct_right)} ({100 * s.struct_medrel:.0f} %)"
    return txt if target is None else f"{txt} {verdict(s.struct_right >= target)}"


def realistic_report(
    args: argparse.Namespace,
    res: dict,
    methods: list[str],
    images: tuple[str, ...],
    conditions: tuple[str, ...],
    elapsed: float,
) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "python benchmarks/bench_blurmap.py" + (" --quick" if args.quick else "")
    cmd += f" --track {args.track}" if args.track != "all" else ""
    pooled_conds = [c for c in conditions if c in S.DEGRADATIONS]

    def agg(conds: list[str], fams: tuple[str, ...], m: str, imgs: tuple[str, ...] = images):
        return pool_rows(
            [r[m] for (c, i, _, f), r in res.items() if c in conds and f in fams and i in imgs]
        )

    L = [
        BEGIN_REALISTIC,
        "## Realistic-degradation track (issue 14)",
        "",
        f"- Command: `{cmd}`"
        + (" (QUICK mode: one image, a subset of conditions)" if args.quick else ""),
        f"- Date: {now}; run time of this track {elapsed / 60:.1f} min",
        f"- Images: {', '.join(images)}; the ideal track's scenes (tilt, regions, depth), σ maps "
        "and clean renders, Gaussian and disk PSFs, then each degradation below instead of "
        "white noise (seeded per scene and condition). Intensities: 1.0 = the source's 8-bit "
        "white. See README.",
        "- Score as in the ideal track: % of structured pixels right (|σ̂ − σ| ≤ max(0.3 σ, "
        "0.3 px)), median relative error in brackets, pooled over images, scenes and both PSF "
        "families; relative methods: mean per-scene ρ. Peers keep their 1 % white-noise "
        "calibration (as our method keeps its training): the track measures how methods built "
        "for white noise read real degradations. Peers get the luminance of RGB inputs; ours "
        "gets the RGB with `channel_axis=-1`.",
        "- The two reference rows are measured in this run, with the code of this run; the "
        "ideal-track tables elsewhere in this file come from their own run (see its date).",
        "",
        "| Condition | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for c in conditions:
        ref = " *(reference, not pooled)*" if c not in S.DEGRADATIONS else ""
        cells = [cell(m, agg([c], FAMILIES, m)) for m in methods]
        L += [f"| {condition_label(c)}{ref} | " + " | ".join(cells) + " |"]
    cells = [cell(m, agg(pooled_conds, FAMILIES, m), REALISTIC_TARGET) for m in methods]
    L += [
        f"| **All realistic conditions, pooled** (target ≥ {100 * REALISTIC_TARGET:g} %) | "
        + " | ".join(cells)
        + " |",
        "",
        "### By PSF family",
        "",
        "| Condition | PSF | " + " | ".join(methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    for c in [*conditions, "all"]:
        for fam in FAMILIES:
            conds = pooled_conds if c == "all" else [c]
            label = "**All realistic conditions, pooled**" if c == "all" else condition_label(c)
            tgt = REALISTIC_TARGET if c == "all" else None
            cells = [cell(m, agg(conds, (fam,), m), tgt) for m in methods]
            L += [f"| {label} | {fam} | " + " | ".join(cells) + " |"]
    if OURS in methods:
        L += [
            "",
            f"### {OURS} by condition and image",
            "",
            "% structured right, both families and all scenes of the image pooled.",
            "",
            "| Condition | " + " | ".join(images) + " |",
            "|---|" + "---|" * len(images),
        ]
        for c in conditions:
            cells = [pct(agg([c], FAMILIES, OURS, (i,)).struct_right) for i in images]
            L += [f"| {condition_label(c)} | " + " | ".join(cells) + " |"]
    L += [END_REALISTIC]
    return "\n".join(L)


def merge_report(old: str, standard: str | None, realistic: str | None) -> str:
    """The new report: a freshly written track replaces its part, the other part is kept."""
    base = standard if standard is not None else old
    if realistic is None and BEGIN_REALISTIC in old:
        realistic = old[old.index(BEGIN_REALISTIC) : old.index(END_REALISTIC) + len(END_REALISTIC)]
    if BEGIN_REALISTIC in base:
        i, j = base.index(BEGIN_REALISTIC), base.index(END_REALISTIC) + len(END_REALISTIC)
        base = base[:i].rstrip("\n") + "\n\n" + base[j:].lstrip("\n")
    if realistic is None:
        return base
    at = base.find("## Speed and memory")
    if at < 0:
        return (base.rstrip("\n") + "\n\n" if base.strip() else "") + realistic + "\n"
    return base[:at] + realistic + "\n\n" + base[at:]


# --------------------------------------------------------------------------- speed


SIZES = {1: (1000, 1000), 3: (1500, 2000), 6: (2000, 3000), 12: (3000, 4000)}


def speed_image(mp: int) -> F32:
    """A real blurred greyscale image of ``mp`` megapixels (mirror-tiled, so no seams)."""
    sharp = S.load_image("camera")
    sig = S.tilt_sigma(sharp.shape, band_frac=0.45, angle_deg=5.0)
    small = S.add_noise(S.blur_varying_levels(sharp, sig, psf="gauss"), 0.01, ref_range=1.0, seed=7)
    h, w = SIZES[mp]
    reps = (-(-h // small.shape[0]), -(-w // small.shape[1]))
    tile = np.block(
        [
            [small if (i + j) % 2 == 0 else small[:, ::-1] for j in range(reps[1])]
            for i in range(reps[0])
        ]
    )
    return np.ascontiguousarray(tile[:h, :w], dtype=np.float32)


def time_one(method: str, path: str, repeat: int) -> dict:
    """Run in a fresh subprocess: wall times and peak RSS of one method on one saved image.

    The image is loaded from .npy so that the RSS high-water mark before the call is only
    interpreter + imports + input, and the peak after the call is the method's own.
    """
    img = np.load(path)
    fns: dict[str, Callable[[F32], object]] = {
        "seed LoG (calibrated)": lambda im: P.LogCalibration()(im),
        "Zhuo & Sim": lambda im: P.zhuo_sim(im, sigma0=2.0),
        "block acutance": P.block_acutance,
        "blur-detector": P.blur_detector_map,
    }
    if method == OURS:
        ours, _ = find_ours()
        assert ours is not None
        fns[OURS] = lambda im: run_ours(ours, im, "gauss")
    base_kb = peak_rss_kb()
    times, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fns[method](img)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)  # all threads of the process
    peak_kb = peak_rss_kb()
    return {"times": times, "cpu": cpu, "base_mb": base_kb / 1024, "peak_mb": peak_kb / 1024}


def peak_rss_kb() -> float:
    """Peak RSS of this process in KiB.

    Linux's VmHWM belongs to the current address space, so it starts afresh at exec;
    getrusage's ru_maxrss does not (a child inherits the forking parent's high-water mark).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def speed_runs(plan: list[tuple[str, int]], repeat: int) -> dict[tuple[str, int], dict]:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for mp in sorted({mp for _, mp in plan}):
            paths[mp] = str(Path(tmp) / f"img_{mp}mp.npy")
            np.save(paths[mp], speed_image(mp))
        for method, mp in plan:
            cmd = [sys.executable, __file__, "--time-one", method, paths[mp], str(repeat)]
            t0 = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            if p.returncode != 0:
                out[(method, mp)] = {"error": (p.stderr.strip().splitlines() or ["?"])[-1]}
            else:
                out[(method, mp)] = json.loads(p.stdout.strip().splitlines()[-1])
            print(
                f"[speed {method} {mp} MP] {out[(method, mp)]} ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    return out


def colour_frame(mp: int) -> NDArray[np.uint8] | None:
    """A real 8-bit colour JPEG frame (focus-stack pcb) tiled to ``mp`` megapixels, its 8 x 8
    block grid kept (the frame's sides are multiples of 8); None without the shared data."""
    root = Path(os.environ.get("DEFOCUS_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
    path = root / "real_stacks" / "focus-stack_pcb" / "pcb_003.jpg"
    if not path.exists():
        return None
    import imageio.v3 as iio

    frame = np.asarray(iio.imread(path))
    h, w = SIZES[mp]
    reps = (-(-h // frame.shape[0]), -(-w // frame.shape[1]), 1)
    return np.ascontiguousarray(np.tile(frame, reps)[:h, :w])


def speed_track(repeat: int, baseline: str | None) -> str:
    """12 MP blur map, greyscale float32 and 8-bit colour JPEG, each run in a fresh process;
    with ``baseline`` (another checkout's ``src``) the two codes alternate, run by run."""
    codes = [("this code", None)]
    if baseline:
        rev = subprocess.run(
            ["git", "-C", baseline, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        codes.insert(0, (f"baseline {rev or '(no git)'}", baseline))
    runs: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        images = {"12 MP greyscale float32 (mirror-tiled camera)": speed_image(12)}
        colour = colour_frame(12)
        if colour is not None:
            images["12 MP 8-bit colour JPEG (tiled pcb frame)"] = colour
        paths = {}
        for i, (name, img) in enumerate(images.items()):
            paths[name] = str(Path(tmp) / f"img{i}.npy")
            np.save(paths[name], img)
        for r in range(repeat):
            order = codes if r % 2 == 0 else codes[::-1]
            for name in images:
                for label, src in order:
                    env = dict(os.environ)
                    if src:
                        env["PYTHONPATH"] = src
                    load = os.getloadavg()[0]
                    cmd = [sys.executable, __file__, "--time-one", OURS, paths[name], "1"]
                    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
                    if p.returncode != 0:
                        raise RuntimeError(p.stderr.strip().splitlines()[-1])
                    got = json.loads(p.stdout.strip().splitlines()[-1])
                    got["load"] = (load + os.getloadavg()[0]) / 2
                    runs.setdefault((name, label), []).append(got)
                    print(f"[speed {r} {name} {label}] {got}", flush=True)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cmd = f"python benchmarks/bench_blurmap.py --track speed --repeat {repeat}"
    L = [
        "# Blur map speed at 12 MP (issues 14 and 17)",
        "",
        f"- Command: `{cmd}{' --baseline <older checkout>/src' if baseline else ''}`",
        f"- Date: {now}; {os.cpu_count()} cores, shared with other jobs: the load (1-minute "
        "average around each run) is given: wall time depends on it, CPU time (all threads) "
        "much less.",
        "- Each run is a fresh process (`--time-one`, one call of `blur_map`); medians over the "
        "runs. Peak RSS is the process's (Python, imports and the input included).",
        "",
        "| image | code | median wall (s) | median CPU (s) | runs | peak RSS (MB) | load |",
        "|---|---|---|---|---|---|---|",
    ]
    for (name, label), rs in runs.items():
        L += [
            f"| {name} | {label} | {np.median([x['times'][0] for x in rs]):.2f} "
            f"| {np.median([x['cpu'][0] for x in rs]):.2f} | {len(rs)} "
            f"| {max(x['peak_mb'] for x in rs):.0f} | {np.median([x['load'] for x in rs]):.1f} |"
        ]
    walls = [x["times"][0] for (_, label), rs in runs.items() if label == "this code" for x in rs]
    peak = max(x["peak_mb"] for (_, label), rs in runs.items() if label == "this code" for x in rs)
    L += [
        "",
        f"Target 12 MP ≤ 5 s wall on 2 cores, ≤ 1.5 GB: median wall "
        f"{np.median(walls):.2f} s → {verdict(float(np.median(walls)) <= 5)} at the load above; "
        f"peak {peak:.0f} MB → {verdict(peak <= 1536)}.",
        "",
    ]
    return "\n".join(L)


# --------------------------------------------------------------------------- report


def pct(x: float) -> str:
    return "–" if not np.isfinite(x) else f"{100 * x:.1f} %"


def verdict(ok: bool) -> str:
    return "pass" if ok else "**FAIL**"


def write_report(
    args: argparse.Namespace,
    ctx: Ctx,
    ours_where: str,
    renderer: str,
    scenes: list[Scene],
    res: dict,
    methods: list[str],
    trap: list,
    speed: dict,
    elapsed: float,
) -> str:
    L: list[str] = []
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "python benchmarks/bench_blurmap.py" + (" --quick" if args.quick else "")
    cmd += f" --track {args.track}" if args.track != "all" else ""
    L += [
        "# Blur-radius map benchmark (issue 4)",
        "",
        f"- Command: `{cmd}`{' (QUICK mode: subset, not the reference run)' if args.quick else ''}",
        f"- Date: {now}; run time {elapsed / 60:.1f} min",
        f"- Machine: {os.cpu_count()} cores (the 2-core shared dev box; timings are noisy), "
        f"{platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}",
        f"- Our method: `{ours_where}`",
        f"- Renderer: {renderer}",
        f"- Test images: {', '.join(ctx.images)}; scenes: tilt ramp and Voronoi regions on each, "
        "plus thin-lens depth from the motorcycle disparity; σ 0.5–8 px; Gaussian and disk "
        "(R ≈ 2σ) PSFs; noise 1 % and 3 % of the sharp image's range.",
        "- A pixel is *right* when |σ̂ − σ| ≤ max(0.3 σ, 0.3 px). *Structured*: see README. "
        f"All scores exclude a {S.BORDER}-px border. Pixels are pooled over scenes; ρ is the "
        "mean over scenes of Spearman's rank correlation with the true σ on structured pixels.",
        "",
    ]
    absm = [m for m in methods if m in ABSOLUTE]

    def agg(m: str, fam: str, noise: float) -> Score:
        return pooled(res, scenes, m, fam, noise)

    # ---- targets
    L += ["## Targets (issue 4)", ""]
    L += ["| Criterion | Target | " + " | ".join(absm) + " |"]
    L += ["|---|---|" + "---|" * len(absm)]
    for fam in FAMILIES:
        cells = []
        for m in absm:
            s = agg(m, fam, 0.01)
            cells.append(
                f"{pct(s.struct_right)} {verdict(s.struct_right >= 0.9)}"
                if not s.error
                else "error"
            )
        L += [f"| Structured right, {fam}, 1 % noise | ≥ 90 % | " + " | ".join(cells) + " |"]
        cells = []
        for m in absm:
            s = agg(m, fam, 0.01)
            cells.append(
                f"{pct(s.struct_medrel)} {verdict(s.struct_medrel <= 0.10)}"
                if not s.error
                else "error"
            )
        L += [
            f"| Median rel. error (structured), {fam}, 1 % | ≤ 10 % | " + " | ".join(cells) + " |"
        ]
        cells = []
        for m in absm:
            s = agg(m, fam, 0.01)
            cells.append(
                f"{pct(s.dense_right)} {verdict(s.dense_right >= 0.8)}" if not s.error else "error"
            )
        L += [
            f"| Dense right (> {S.BORDER} px from border), {fam}, 1 % | ≥ 80 % | "
            + " | ".join(cells)
            + " |"
        ]
        cells = []
        for m in absm:
            s = agg(m, fam, 0.03)
            cells.append(
                f"{pct(s.struct_right)} {verdict(s.struct_right >= 0.75)}"
                if not s.error
                else "error"
            )
        L += [f"| Structured right, {fam}, 3 % noise | ≥ 75 % | " + " | ".join(cells) + " |"]
    cells = []
    for m in absm:
        ch = [r[5] for r in trap if r[2] == m]
        worst = max(ch) if ch else np.nan
        cells.append(
            f"{pct(worst)} {verdict(bool(worst <= 0.05))}" if np.isfinite(worst) else "error"
        )
    L += [
        "| Contrast trap: worst median-σ change (gain ×4 + offset) | ≤ 5 % | "
        + " | ".join(cells)
        + " |"
    ]
    L += [""]

    # ---- all methods summary
    L += ["## All methods, pooled", ""]
    L += [
        "Absolute methods: % structured right / median rel. error / % dense right. Every "
        "method: ρ (mean per-scene Spearman with true σ; relative methods' sharpness scores "
        "are negated so that +1 is a perfect ranking). Time: total seconds over the scenes.",
        "",
    ]
    L += [
        "| Method | PSF | Noise | Structured right | Median rel. err | Dense right | ρ | time (s) |"
    ]
    L += ["|---|---|---|---|---|---|---|---|"]
    for m in methods:
        for noise in NOISES:
            for fam in FAMILIES:
                s = agg(m, fam, noise)
                if s.error:
                    L += [f"| {m} | {fam} | {noise:.0%} | error: {s.error} | | | | |"]
                    continue
                L += [
                    f"| {m} | {fam} | {noise:.0%} | {pct(s.struct_right)} | {pct(s.struct_medrel)} "
                    f"| {pct(s.dense_right)} | {s.rho:.3f} | {s.seconds:.1f} |"
                ]
    if P.blur_detector_available() is not None:
        L += [f"| blur-detector | – | – | not run: {P.blur_detector_available()} | | | | |"]
    L += [""]

    # ---- per scene
    L += ["## Per scene", "", "Absolute: % structured right (median rel. error); relative: ρ.", ""]
    L += ["| Scene | PSF | Noise | " + " | ".join(methods) + " |"]
    L += ["|---|---|---|" + "---|" * len(methods)]
    for sc in scenes:
        row = res[(sc.image, sc.kind, sc.family, sc.noise)]
        cells = []
        for m in methods:
            r = row.get(m)
            if r is None or r.error:
                cells.append("error")
            elif m in ABSOLUTE:
                cells.append(f"{100 * r.struct_right:.0f} ({100 * r.struct_medrel:.0f} %)")
            else:
                cells.append(f"ρ {r.rho:.2f}")
        L += [f"| {sc.label} | {sc.family} | {sc.noise:.0%} | " + " | ".join(cells) + " |"]
    L += [""]

    # ---- calibrations
    L += [
        "## Peer calibration (fitted on the next test image's tilt scene, never the scored one)",
        "",
    ]
    L += [
        "| Calibration scene | PSF | Noise | LoG power p | LoG smoothing (px) "
        "| σ = a·scale + b | Zhuo & Sim σ0 |"
    ]
    L += ["|---|---|---|---|---|---|---|"]
    for (img, fam, noise), (c, s0) in sorted(ctx.calib.items()):
        L += [
            f"| {img}/tilt | {fam} | {noise:.0%} | {c.power:g} | {c.smooth:g} "
            f"| {c.a:.3f}·s {c.b:+.3f} | {s0:g} |"
        ]
    L += [""]

    # ---- trap
    L += [
        "## Contrast trap",
        "",
        f"Region (rows 20–80 %, columns 45–95 %) of the sharp image gets gain ×{TRAP_GAIN:g} and "
        f"offset +{TRAP_OFFSET:g}×range before blurring (tilt scene, 1 % noise of the ORIGINAL "
        "range). Median over the region's structured pixels, eroded by "
        f"{S.BORDER} px. Relative methods: their raw sharpness score.",
        "",
    ]
    L += [
        "| Image | PSF | Method | median before | median after | change |",
        "|---|---|---|---|---|---|",
    ]
    for name, fam, m, a, b, ch in trap:
        L += [f"| {name} | {fam} | {m} | {a:.4g} | {b:.4g} | {pct(ch)} |"]
    L += [""]

    # ---- speed
    L += [
        "## Speed and memory",
        "",
        "Greyscale float32 images made by mirror-tiling a blurred `camera` scene; each method "
        "in a fresh subprocess; median wall time of the repeats; peak RSS of the whole process "
        "(Python + input image included; Linux VmHWM), and its increase over the "
        "pre-call baseline.",
        "",
    ]
    L += [
        "| Method | MP | median wall (s) | runs | peak RSS (MB) | Δ over baseline (MB) | × ours |"
    ]
    L += ["|---|---|---|---|---|---|---|"]
    for (m, mp), r in speed.items():
        if "error" in r:
            L += [f"| {m} | {mp} | error: {r['error']} | | | | |"]
            continue
        med = float(np.median(r["times"]))
        ref = speed.get((OURS, mp), {})
        ratio = f"{med / np.median(ref['times']):.2f}" if "times" in ref and m != OURS else "–"
        L += [
            f"| {m} | {mp} | {med:.2f} | {len(r['times'])} | {r['peak_mb']:.0f} "
            f"| {r['peak_mb'] - r['base_mb']:.0f} | {ratio} |"
        ]
    ours_pts = [
        (mp, float(np.median(r["times"])))
        for (m, mp), r in speed.items()
        if m == OURS and "times" in r
    ]
    if len(ours_pts) >= 2:
        x, y = np.log([p[0] for p in ours_pts]), np.log([p[1] for p in ours_pts])
        slope = np.polyfit(x, y, 1)[0]
        L += [
            "",
            f"Growth of our time with pixel count: t ∝ MP^{slope:.2f} (log-log fit over "
            f"{', '.join(str(p[0]) for p in ours_pts)} MP).",
        ]
    r12 = speed.get((OURS, 12))
    if r12 and "times" in r12:
        med = float(np.median(r12["times"]))
        L += [
            "",
            f"Target 12 MP ≤ 5 s on 2 cores: {med:.2f} s → {verdict(med <= 5)}; "
            f"peak ≤ 1.5 GB: {r12['peak_mb']:.0f} MB → {verdict(r12['peak_mb'] <= 1536)}.",
        ]
    L += [""]
    if (RESULTS / "blurmap_example.png").exists():
        L += ["## Example", "", "![truth vs estimates](blurmap_example.png)", ""]
    return "\n".join(L)


def figure(ctx: Ctx, methods: dict[str, Callable[..., F32]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sc = ctx.scene("camera" if "camera" in ctx.images else ctx.images[0], "tilt", "gauss", 0.01)
    panels = [
        ("blurred input (gauss, 1 % noise)", sc.blurred, "gray", None),
        ("true σ (px)", sc.sigma, "viridis", (0, 8)),
    ]
    for m, fn in methods.items():
        try:
            est = fn(sc)
        except Exception:
            continue
        if m in ABSOLUTE:
            panels.append((f"{m} σ (px)", est, "viridis", (0, 8)))
        else:
            panels.append((f"{m} (blurriness, relative)", est, "viridis", None))
    n = len(panels)
    cols = 4
    rows = -(-n // cols)
    fig, axs = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.3 * rows), squeeze=False)
    for ax, (title, im, cmap, lim) in zip(axs.flat, panels, strict=False):
        h = ax.imshow(im, cmap=cmap, vmin=lim[0] if lim else None, vmax=lim[1] if lim else None)
        ax.set_title(title, fontsize=8)
        fig.colorbar(h, ax=ax, fraction=0.046)
    for ax in axs.flat:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(RESULTS / "blurmap_example.png", dpi=80)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="3 images, short speed test (≤ 2 min)")
    ap.add_argument(
        "--track",
        choices=("all", "standard", "realistic", "speed"),
        default="all",
        help="standard: ideal white noise, contrast trap, speed; realistic: camera and "
        "microscope degradations; all: both (default); speed: the 12 MP timing alone, "
        "written to results/blurmap_speed.md",
    )
    ap.add_argument("--repeat", type=int, default=5, help="runs per image (--track speed)")
    ap.add_argument("--baseline", help="another checkout's src to time against (--track speed)")
    ap.add_argument(
        "--time-one", nargs=3, metavar=("METHOD", "NPY", "REPEAT"), help=argparse.SUPPRESS
    )
    args = ap.parse_args(argv)
    if args.time_one:
        m, path, rep = args.time_one
        print(json.dumps(time_one(m, path, int(rep))))
        return 0

    t_start = time.perf_counter()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.track == "speed":
        out = RESULTS / "blurmap_speed.md"
        tmp = out.with_suffix(".md.tmp")
        tmp.write_text(speed_track(args.repeat, args.baseline))
        tmp.replace(out)  # atomic: a failed run never leaves half a table
        print(f"wrote {out}")
        return 0
    images = ("camera", "gravel", "motorcycle_left") if args.quick else S.TEST_IMAGES
    render, renderer = S.get_renderer()
    ours, ours_where = find_ours()
    print(f"ours: {ours_where}\nrenderer: {renderer}", flush=True)
    ctx = Ctx(images=images, render=render)
    methods = method_table(ours, ctx)
    out = RESULTS / "blurmap.md"
    old = out.read_text() if out.exists() else ""

    standard = realistic = None
    if args.track in ("all", "standard"):
        standard = standard_track(args, ctx, methods, ours, ours_where, renderer, t_start)
    if args.track in ("all", "realistic"):
        t0 = time.perf_counter()
        r_images = ("camera",) if args.quick else images  # calibrated on the next of `images`
        conds = REALISTIC_QUICK if args.quick else (NO_NOISE, WHITE_REF, *S.DEGRADATIONS)
        r_res = realistic_track(ctx, methods, r_images, conds)
        realistic = realistic_report(
            args, r_res, list(methods), r_images, conds, time.perf_counter() - t0
        )
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text(merge_report(old, standard, realistic).rstrip("\n") + "\n")
    tmp.replace(out)  # atomic: a failed run never leaves half a table
    print(f"wrote {out} in {(time.perf_counter() - t_start) / 60:.1f} min")
    return 0


def standard_track(
    args: argparse.Namespace,
    ctx: Ctx,
    methods: dict[str, Callable[..., F32]],
    ours: Callable[..., object] | None,
    ours_where: str,
    renderer: str,
    t_start: float,
) -> str:
    """Ideal white-noise scenes, contrast trap, figure and speed; returns the report."""
    images = ctx.images
    scenes = []
    for noise in NOISES:
        for fam in FAMILIES:
            for name in images:
                scenes += [ctx.scene(name, k, fam, noise) for k in scene_kinds(name)]
    res = evaluate(ctx, methods, scenes)
    trap = contrast_trap(ctx, methods, ("camera", "gravel") if not args.quick else ("camera",))
    figure(ctx, methods)

    peers_t = ["seed LoG (calibrated)", "Zhuo & Sim", "block acutance"]
    if P.blur_detector_available() is None:
        peers_t.append("blur-detector")
    if args.quick:
        plan = [(OURS, mp) for mp in (1, 3)] + [(m, 1) for m in peers_t]
        repeat = 1
    else:
        plan = [(OURS, mp) for mp in (1, 3, 6, 12)] + [(m, 1) for m in peers_t]
        plan += [("seed LoG (calibrated)", 3), ("Zhuo & Sim", 3)]
        repeat = 3
    if ours is None:
        plan = [p for p in plan if p[0] != OURS]
    speed = speed_runs(plan, repeat)
    return write_report(
        args,
        ctx,
        ours_where,
        renderer,
        scenes,
        res,
        list(methods),
        trap,
        speed,
        time.perf_counter() - t_start,
    )


if __name__ == "__main__":
    raise SystemExit(main())
