"""Speed of every command against its peer, interleaved in one run (issue 17).

Each command and its peer run as fresh processes, alternately (ours, peer, ours, peer, ...), so
that load from other jobs on a shared machine falls on both alike. For every run we record the
wall time, the CPU seconds (user + system, from the child's own resource usage) and the peak
resident memory. The table gives medians, the ratio against the peer, and each command's cost in
units of one ``scipy.ndimage.gaussian_filter(sigma=2)`` pass over the same image (float32), timed
in this process: a figure that depends far less on the machine than seconds do.

Inputs are made from a real photograph (``real_stacks/focus-stack_pcb``): its luminance, mirrored
and tiled up to the pixel count needed, so that the commands see real texture and noise.

Run ``python benchmarks/bench_speed.py`` (about 15 minutes; ``--quick`` for a 2-minute smoke run at
smaller sizes). The table goes to ``results/speed.md`` (``speed_quick.md``); a run of a few rows
with ``--only TEXT`` goes to its own file, ``speed_only_<text>.md``, and leaves the full table be.
``defocus psf estimate`` is timed here as a whole command against DIPlib's recipe run as a
script, both in fresh processes (the command-line target); ``bench_kernel.py --track speed``
compares the estimators themselves in one process, on the same arrays, with each kernel's error.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = Path(os.environ.get("DEFOCUS_SHARED_DATA", ROOT.parent / "shared" / "data"))
PCB = SHARED / "real_stacks" / "focus-stack_pcb"
PEER_SRC = ROOT.parent / "shared" / "peers" / "focus-stack"
RESULTS = HERE / "results"
PY = sys.executable
DEFOCUS = [PY, "-m", "defocus"]

# The last focus-stack figure measured on this class of machine, quoted when it cannot be built
# (from the issue: quiet machine, 7 x 3.1 MP pcb stack, 3 threads).
FOCUS_STACK_QUOTE = "3.9 s wall, 6.6 s CPU, 850 MB (measured 2026-12-01, quiet machine)"


@dataclass
class Runs:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)  # MB

    def add(self, wall: float, cpu: float, rss: float) -> None:
        self.wall.append(wall)
        self.cpu.append(cpu)
        self.rss.append(rss)

    def med(self, what: str) -> float:
        return float(statistics.median(getattr(self, what)))


@dataclass
class Case:
    name: str
    mpix: float
    ours: list[str]
    peer: list[str] | None
    peer_name: str
    target: str
    unit_image: Path | None  # image whose Gaussian pass is the cost unit
    check: str = ""  # how the verdict is computed: see verdict()
    ours_runs: Runs = field(default_factory=Runs)
    peer_runs: Runs = field(default_factory=Runs)


# GNU time reports the peak RSS of the command alone. A child's own ru_maxrss would start
# from this process's size, which it shares until exec (hundreds of MB of test images).
GNU_TIME = "/usr/bin/time" if Path("/usr/bin/time").is_file() else None


def run(argv: list[str], cwd: Path) -> tuple[float, float, float]:
    """Wall s, CPU s and peak RSS (MB) of one child process; its own rusage, not ours."""
    out = cwd / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    rss_file = cwd / "rss.txt"
    if GNU_TIME:
        argv = [GNU_TIME, "-f", "%M", "-o", str(rss_file), *argv]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {err.strip()[-300:]}")
    rss_kb = float(rss_file.read_text().split()[-1]) if GNU_TIME else usage.ru_maxrss
    return wall, usage.ru_utime + usage.ru_stime, rss_kb / 1024


def texture(mpix: float) -> np.ndarray:
    """Luminance of a real photograph (uint8), mirrored and tiled to about ``mpix`` megapixels."""
    import imageio.v3 as iio

    rgb = iio.imread(PCB / "pcb_001.jpg").astype(np.float32)
    y = rgb @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    side = np.sqrt(mpix * 1e6 / (4 / 3))
    h, w = round(side), round(side * 4 / 3)
    reps = (-(-h // y.shape[0]), -(-w // y.shape[1]))
    tiles = [
        [y if (i + j) % 2 == 0 else y[:, ::-1] for j in range(reps[1])] for i in range(reps[0])
    ]
    return np.clip(np.block(tiles)[:h, :w], 0, 255).astype(np.uint8)


def gaussian_pass(path: Path, repeat: int = 5) -> float:
    img = tifffile.imread(path).astype(np.float32)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        ndimage.gaussian_filter(img, 2.0)
        times.append(time.perf_counter() - t0)
    return float(statistics.median(times))


def disk_blur(img: np.ndarray, radius: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from defocus import psf
    from defocus.synth import blur

    k = psf.disk(radius)
    out = blur(img.astype(np.float32), k)
    out += np.random.default_rng(seed).normal(0, 2.0, out.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), k.astype(np.float32)


def build_focus_stack(work: Path) -> Path | None:
    """Build the focus-stack peer from its shipped source (needs g++, make and OpenCV)."""
    if not (PEER_SRC / "Makefile").exists() or shutil.which("g++") is None:
        return None
    dst = work / "focus-stack"
    shutil.copytree(PEER_SRC, dst)
    res = subprocess.run(["make", "-C", str(dst), "-j2"], capture_output=True, text=True)
    exe = dst / "build" / "focus-stack"
    return exe if res.returncode == 0 and exe.exists() else None


PEER_CODE = {
    "blur-detector": (
        "import sys, numpy as np, tifffile, blur_detector;"
        "img = tifffile.imread(sys.argv[1]).astype(np.float32) / 255;"
        "m = blur_detector.detectBlur(img, downsampling_factor=4, num_scales=4, scale_start=2);"
        "tifffile.imwrite('out/map.tif', np.asarray(m, np.float32))"
    ),
    "gaussian_filter": (
        "import sys, numpy as np, tifffile; from scipy import ndimage;"
        "img = tifffile.imread(sys.argv[1]).astype(np.float32);"
        "tifffile.imwrite('out/g.tif', ndimage.gaussian_filter(img, 2.0))"
    ),
    "DIPlib recipe": (
        "import sys, numpy as np, tifffile, diplib as dip;"
        "s = tifffile.imread(sys.argv[1]).astype(np.float32);"
        "b = tifffile.imread(sys.argv[2]).astype(np.float32);"
        "k = np.asarray(dip.WienerDeconvolution(b, s, 1e-9, {'pad'}));"
        "n = int(sys.argv[3]); c = [d // 2 for d in k.shape];"
        "k = k[c[0] - n // 2 : c[0] + n // 2 + 1, c[1] - n // 2 : c[1] + n // 2 + 1];"
        "tifffile.imwrite('out/k.tif', np.clip(k, 0, None) / max(k.clip(0).sum(), 1e-12))"
    ),
    "skimage wiener": (
        "import sys, numpy as np, tifffile; from skimage import restoration;"
        "y = tifffile.imread(sys.argv[1]).astype(np.float32) / 255;"
        "k = tifffile.imread(sys.argv[2]);"
        "x = restoration.wiener(y, k, 0.1);"
        "tifffile.imwrite('out/d.tif', np.clip(x * 255, 0, 255).astype(np.uint8))"
    ),
    "import numpy+scipy.ndimage+skimage": "import numpy, scipy.ndimage, skimage.filters",
}


def peer(name: str, *args: object) -> list[str]:
    return [PY, "-c", PEER_CODE[name], *map(str, args)]


def make_cases(work: Path, quick: bool) -> tuple[list[Case], str]:
    big = 3.0 if quick else 12.0
    small = 1.0
    files: dict[str, Path] = {}
    for label, mp in (("big", big), ("small", small)):
        files[label] = work / f"texture_{label}.tif"
        tifffile.imwrite(files[label], texture(mp))
    sharp = texture(4.2)[:2048, :2048] if not quick else texture(1.0)[:768, :768]
    files["sharp"] = work / "sharp.tif"
    tifffile.imwrite(files["sharp"], sharp)
    blurry, _ = disk_blur(sharp, 6.0, 1)
    files["blurry"] = work / "blurry.tif"
    tifffile.imwrite(files["blurry"], blurry)
    big_img = tifffile.imread(files["big"])
    deb, k = disk_blur(big_img, 15.0, 2)
    files["deb"] = work / "deblur_in.tif"
    files["k"] = work / "disk15.tif"
    tifffile.imwrite(files["deb"], deb)
    tifffile.imwrite(files["k"], k)
    mp_big = big_img.size / 1e6
    mp_pair = sharp.size / 1e6

    cases = [
        Case(
            f"`defocus map` {mp_big:.0f} MP",
            mp_big,
            [*DEFOCUS, "map", str(files["big"]), "-o", "out"],
            peer("blur-detector", files["big"]),
            "blur-detector (relative map only)",
            "≤ 2 s wall, ≤ 1.5 GB",
            files["big"],
            "map",
        ),
        Case(
            f"`defocus map` {small:.0f} MP",
            small,
            [*DEFOCUS, "map", str(files["small"]), "-o", "out"],
            peer("gaussian_filter", files["small"]),
            "one gaussian_filter pass (process)",
            "≤ 1 s/MP",
            files["small"],
            "per_mp",
        ),
        Case(
            f"`defocus focus` {mp_big:.0f} MP",
            mp_big,
            [*DEFOCUS, "focus", str(files["big"]), "-o", "out"],
            None,
            "",
            "≤ 1 s/MP",
            files["big"],
            "per_mp",
        ),
        Case(
            f"`defocus psf estimate --size 41` {mp_pair:.1f} MP pair",
            mp_pair,
            [
                *DEFOCUS,
                "psf",
                "estimate",
                str(files["sharp"]),
                str(files["blurry"]),
                "-o",
                "out",
                "--size",
                "41",
            ],
            peer("DIPlib recipe", files["sharp"], files["blurry"], 41),
            "DIPlib recipe (size 41)",
            "≤ 3× DIPlib (CLI)",
            files["sharp"],
            "ratio3",
        ),
        Case(
            f"`defocus psf estimate` (auto size) {mp_pair:.1f} MP pair",
            mp_pair,
            [*DEFOCUS, "psf", "estimate", str(files["sharp"]), str(files["blurry"]), "-o", "out"],
            peer("DIPlib recipe", files["sharp"], files["blurry"], 41),
            "DIPlib recipe (size 41)",
            "≤ 3× DIPlib (CLI)",
            files["sharp"],
            "ratio3",
        ),
        Case(
            f"`defocus deblur` {mp_big:.0f} MP, disk r 15 (Wiener)",
            mp_big,
            [*DEFOCUS, "deblur", str(files["deb"]), "--kernel", str(files["k"]), "-o", "out/d.tif"],
            peer("skimage wiener", files["deb"], files["k"]),
            "scikit-image `wiener` (periodic)",
            "≤ 2× skimage",
            files["big"],
            "ratio2",
        ),
        Case(
            "`python -c 'import defocus'`",
            0,
            [PY, "-c", "import defocus"],
            peer("import numpy+scipy.ndimage+skimage"),
            "import numpy + scipy.ndimage + skimage.filters",
            "≤ 0.3 s CPU",
            None,
            "cpu0.3",
        ),
        Case(
            "`defocus --help`",
            0,
            [*DEFOCUS, "--help"],
            None,
            "",
            "≤ 0.5 s wall",
            None,
            "wall0.5",
        ),
    ]
    stack_note = ""
    frames = sorted(PCB.glob("pcb_*.jpg"))
    if frames:
        exe = build_focus_stack(work)
        fs_cmd = (
            [str(exe), "--output=out/fused.jpg", *map(str, frames)] if exe is not None else None
        )
        if exe is None:
            stack_note = f"focus-stack could not be built here; last measured: {FOCUS_STACK_QUOTE}"
        cases.append(
            Case(
                f"`defocus stack`, {len(frames)} × 3.1 MP real pcb stack",
                3.1 * len(frames),
                [*DEFOCUS, "stack", *map(str, frames), "-o", "out/fused.tif", "--quiet"],
                fs_cmd,
                "focus-stack (C++, OpenCV, default threads)",
                "≤ 0.6× focus-stack wall",
                None,
                "ratio0.6",
            )
        )
    return cases, stack_note


def verdict(c: Case) -> str:
    o = c.ours_runs
    if not o.wall:
        return "–"
    wall, cpu, rss = o.med("wall"), o.med("cpu"), o.med("rss")
    p_wall = c.peer_runs.med("wall") if c.peer_runs.wall else None
    ok: bool | None
    if c.check == "map":
        ok = wall <= 2.0 * max(c.mpix, 1) / 12 and rss <= 1536
    elif c.check == "per_mp":
        ok = wall <= max(c.mpix, 1.0)
    elif c.check.startswith("ratio") and p_wall:
        ok = wall <= float(c.check[5:]) * p_wall
    elif c.check == "cpu0.3":
        ok = cpu <= 0.3
    elif c.check == "wall0.5":
        ok = wall <= 0.5
    else:
        ok = None
    return "–" if ok is None else ("pass" if ok else "**miss**")


def fmt(x: float | None, unit: str = "") -> str:
    return "–" if x is None else f"{x:.2f}{unit}"


def report(cases: list[Case], units: dict[Path, float], scaling, args, note, seconds) -> str:
    load = os.getloadavg()
    lines = [
        "# Speed against the peers (issue 17)",
        "",
        f"- Command: `python benchmarks/bench_speed.py{' --quick' if args.quick else ''}"
        f"{f' --only {shlex.quote(args.only)}' if args.only else ''}`"
        f" (repeats {args.repeats}, interleaved ours/peer)",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; run time "
        f"{seconds / 60:.1f} min",
        f"- Machine: {os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}, numpy {np.__version__}; load average at the end "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (a shared machine: read the ratios)",
        "- Every figure is a median over fresh processes: wall seconds, CPU seconds (user + system)"
        " and peak RSS (of the command alone, from GNU time), including interpreter start, "
        "reading and writing. *Passes*: the command's "
        "wall time in units of one `gaussian_filter(σ=2)` pass over the same image, timed in the "
        "benchmark's own process.",
        "",
        "| Command | defocus wall / CPU (s) | peak RSS (MB) | passes | peer | peer wall / CPU (s) "
        "| peer RSS (MB) | wall ratio | target | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        o, p = c.ours_runs, c.peer_runs
        unit = units.get(c.unit_image) if c.unit_image else None
        passes = f"{o.med('wall') / unit:.0f}" if unit and o.wall else "–"
        if p.wall:
            pw = f"{p.med('wall'):.2f} / {p.med('cpu'):.2f}"
            prss = f"{p.med('rss'):.0f}"
            ratio = f"{o.med('wall') / p.med('wall'):.2f}×"
        else:
            pw = prss = ratio = "–"
        lines.append(
            f"| {c.name} | {o.med('wall'):.2f} / {o.med('cpu'):.2f} | {o.med('rss'):.0f} | "
            f"{passes} | {c.peer_name or '–'} | {pw} | {prss} | {ratio} | {c.target} | "
            f"{verdict(c)} |"
        )
    if note:
        lines += ["", note]
    if not scaling["sizes"]:
        return "\n".join(lines) + "\n"
    lines += [
        "",
        "## Scaling with the pixel count",
        "",
        "One run each (fresh process, wall / CPU seconds), on the same real texture tiled to size;"
        " *s/MP* is wall seconds per megapixel.",
        "",
        "| Command | " + " | ".join(f"{mp:g} MP" for mp in scaling["sizes"]) + " |",
        "|---|" + "---|" * len(scaling["sizes"]),
    ]
    for cmd, row in scaling["rows"].items():
        pairs = zip(row, scaling["sizes"], strict=True)
        cells = [f"{w:.2f} / {c:.2f} ({w / mp:.2f} s/MP)" for (w, c), mp in pairs]
        lines.append(f"| `defocus {cmd}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def scaling_curve(work: Path, sizes: list[float]) -> dict:
    rows: dict[str, list[tuple[float, float]]] = {"map": [], "focus": [], "deblur": []}
    for mp in sizes:
        img = texture(mp)
        path = work / f"scale_{mp:g}.tif"
        tifffile.imwrite(path, img)
        deb, k = disk_blur(img, 15.0, 3)
        dpath, kpath = work / f"scale_{mp:g}_deb.tif", work / "scale_k.tif"
        tifffile.imwrite(dpath, deb)
        tifffile.imwrite(kpath, k)
        del img, deb
        for cmd, argv in (
            ("map", [*DEFOCUS, "map", str(path), "-o", "out"]),
            ("focus", [*DEFOCUS, "focus", str(path), "-o", "out"]),
            ("deblur", [*DEFOCUS, "deblur", str(dpath), "--kernel", str(kpath), "-o", "out/d.tif"]),
        ):
            w, c, _ = run(argv, work)
            rows[cmd].append((w, c))
            print(f"  scaling {cmd} {mp:g} MP: {w:.2f} s wall, {c:.2f} s CPU", flush=True)
        path.unlink()
        dpath.unlink()
    return {"sizes": sizes, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="3 MP instead of 12, 2 repeats")
    ap.add_argument("--no-scaling", action="store_true", help="skip the 1–48 MP curve")
    ap.add_argument("--only", help="run only cases whose name contains this text")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats = min(args.repeats, 2)
    if not PCB.exists():
        print(f"skipped: {PCB} not found (set DEFOCUS_SHARED_DATA)")
        return 0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cases, note = make_cases(work, args.quick)
        if args.only:
            cases = [c for c in cases if args.only in c.name]
        units = {c.unit_image: gaussian_pass(c.unit_image) for c in cases if c.unit_image}
        for r in range(args.repeats):
            for c in cases:
                c.ours_runs.add(*run(c.ours, work))
                if c.peer is not None:
                    c.peer_runs.add(*run(c.peer, work))
                print(
                    f"[{r + 1}/{args.repeats}] {c.name}: {c.ours_runs.wall[-1]:.2f} s"
                    + (f" (peer {c.peer_runs.wall[-1]:.2f} s)" if c.peer else ""),
                    flush=True,
                )
        sizes = [1.0, 3.0] if args.quick else [1.0, 3.0, 6.0, 12.0, 48.0]
        scaling = {"sizes": [], "rows": {}} if args.no_scaling else scaling_curve(work, sizes)
    text = report(cases, units, scaling, args, note, time.perf_counter() - t0)
    RESULTS.mkdir(exist_ok=True)
    name = "speed_quick" if args.quick else "speed"
    if args.only:  # a few rows: never in place of the full table
        name += "_only_" + re.sub(r"[^a-z0-9]+", "-", args.only.lower()).strip("-")
    tmp = RESULTS / f"{name}.md.tmp"  # written whole, then renamed into place
    tmp.write_text(text)
    tmp.replace(RESULTS / f"{name}.md")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
