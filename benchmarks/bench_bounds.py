"""Bad-size inputs and options: each must be refused (exit 2) within 5 s and under 1 GB peak.

Each case is one ``python -m defocus`` process; its wall time and peak resident memory
(``ru_maxrss`` from ``os.wait4``, so the figure is that process's own) are reported with its exit
code and first line of stderr. Writes ``benchmarks/results/bounds.md``.

Usage: python benchmarks/bench_bounds.py [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TIME_LIMIT_S, MEMORY_LIMIT_MB = 5.0, 1024.0


def _tiff_header(width: int, height: int) -> bytes:
    """A little-endian TIFF whose only IFD claims ``width`` x ``height`` 8-bit pixels, no data."""
    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1)]
    tags += [(273, 4, 8), (277, 3, 1), (278, 4, height), (279, 4, (width * height) & 0xFFFFFFFF)]
    ifd = struct.pack("<H", len(tags))
    for tag, kind, value in tags:
        ifd += struct.pack("<HHI", tag, kind, 1)
        ifd += struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value & 0xFFFFFFFF)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)


def _cases(d: Path) -> dict[str, list[str]]:
    from skimage import data

    from defocus.io import write_image

    img = d / "cam.tif"
    write_image(img, data.camera()[:256, :256])
    (d / "bomb.tif").write_bytes(_tiff_header(2**31, 2**31))
    (d / "bomb16.tif").write_bytes(_tiff_header(100_000, 100_000))
    write_image(d / "sigma.tif", np.full((256, 256), 1e6, np.float32))
    fei = "[Scan]\r\nPixelWidth=1e-300\r\nPixelHeight=1e-300\r\n"
    import tifffile

    tifffile.imwrite(d / "fei.tif", data.camera()[:64, :64], extratags=[(34682, "s", 0, fei, True)])
    o = str(d / "out")
    cam = str(img)
    return {
        "blur --psf disk --radius 1e9": [
            "blur",
            cam,
            "-o",
            o + ".tif",
            "--psf",
            "disk",
            "--radius",
            "1e9",
        ],
        "blur --psf gauss --sigma 500 (kernel > image)": [
            "blur",
            cam,
            "-o",
            o + ".tif",
            "--psf",
            "gauss",
            "--sigma",
            "500",
        ],
        "blur --sigma-map (sigma 1e6 px)": [
            "blur",
            cam,
            "-o",
            o + ".tif",
            "--sigma-map",
            str(d / "sigma.tif"),
        ],
        "deblur --psf disk --radius 1e9": [
            "deblur",
            cam,
            "-o",
            o + ".tif",
            "--psf",
            "disk",
            "--radius",
            "1e9",
        ],
        "deblur --iterations 1e8": [
            "deblur",
            cam,
            "-o",
            o + ".tif",
            "--psf",
            "gauss",
            "--sigma",
            "1",
            "--iterations",
            "100000000",
        ],
        "psf render disk --radius 1e9": [
            "psf",
            "render",
            "disk",
            "--radius",
            "1e9",
            "-o",
            o + ".tif",
        ],
        "psf render gauss --shape 100000": [
            "psf",
            "render",
            "gauss",
            "--sigma",
            "1",
            "--shape",
            "100000",
            "-o",
            o + ".tif",
        ],
        "focus --scale 1e6": ["focus", cam, "-o", o, "--scale", "1e6"],
        "focus --pixel-size 1e-12nm": ["focus", cam, "-o", o, "--pixel-size", "1e-12nm"],
        "focus on FEI PixelWidth 1e-300": ["focus", str(d / "fei.tif"), "-o", o],
        "batch --workers 10000": ["batch", cam, "-o", o, "--workers", "10000"],
        "focus on a 100k x 100k TIFF header": ["focus", str(d / "bomb16.tif"), "-o", o],
        "map --chunks 2048 on a 2^31 x 2^31 TIFF header": [
            "map",
            str(d / "bomb.tif"),
            "-o",
            o,
            "--chunks",
            "2048",
        ],
        "map --chunks 2048 on a 100k x 100k one-strip TIFF": [
            "map",
            str(d / "bomb16.tif"),
            "-o",
            o,
            "--chunks",
            "2048",
        ],
    }


def _run(argv: list[str]) -> tuple[int, float, float, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "defocus", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    err = proc.stderr.read().decode("utf-8", "replace")
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    line = err.strip().splitlines()[0] if err.strip() else ""
    return proc.returncode, wall, usage.ru_maxrss / 1024, line  # ru_maxrss is in KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for name, argv in _cases(d).items():
            runs = [_run(argv) for _ in range(args.repeats)]
            codes = {r[0] for r in runs}
            wall = statistics.median(r[1] for r in runs)
            peak = max(r[2] for r in runs)
            message = runs[0][3].replace(str(d) + os.sep, "")
            ok = codes == {2} and wall <= TIME_LIMIT_S and peak <= MEMORY_LIMIT_MB
            rows.append((name, codes, wall, peak, ok, message))
            print(f"{name}: exit {codes}, {wall:.2f} s, {peak:.0f} MB, {'ok' if ok else 'MISSED'}")
    lines = [
        "# Bad sizes: refused within 5 s and under 1 GB",
        "",
        f"`python benchmarks/bench_bounds.py --repeats {args.repeats}`: each case is one "
        "`python -m defocus` process; wall time is the median of the runs, peak is the largest "
        "resident set (`ru_maxrss`) of that process. Most of both is starting Python and importing "
        "numpy, scikit-image and matplotlib.",
        "",
        "| case | exit | wall (s) | peak (MB) | within 5 s and 1 GB | message |",
        "|---|---|---|---|---|---|",
    ]
    for name, codes, wall, peak, ok, message in rows:
        text = message.replace("|", "\\|")
        code = ",".join(map(str, sorted(codes)))
        lines.append(
            f"| `{name}` | {code} | {wall:.2f} | {peak:.0f} | {'yes' if ok else 'NO'} | {text} |"
        )
    out = ROOT / "benchmarks" / "results" / "bounds.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
