"""Start-up cost (issue "Interactive speed"): ``import defocus`` and ``defocus --help``.

Each command runs in a fresh interpreter, interleaved with the others (A B C A B C ...), and
the table gives medians of wall and CPU (user + system) seconds. The reference row imports what
any scikit-image user already pays for: numpy, scipy.ndimage and skimage. ``--baseline REV``
adds the same rows for the package as it was at git revision REV.

Targets: ``import defocus`` <= 0.3 s CPU, ``defocus --help`` <= 0.5 s.

Usage: python benchmarks/bench_imports.py [--repeats N] [--baseline REV]
Writes benchmarks/results/imports.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULT = HERE / "results" / "imports.md"
COMMANDS = {
    "`import numpy, scipy.ndimage, skimage` (reference)": [
        "-c",
        "import numpy, scipy.ndimage, skimage",
    ],
    "`import defocus`": ["-c", "import defocus"],
    "`defocus --help`": ["-m", "defocus", "--help"],
    "`from defocus import blur_map` (first use)": ["-c", "from defocus import blur_map"],
}


def run_once(args: list[str], src: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one fresh interpreter running ``args``."""
    env = dict(os.environ, PYTHONPATH=str(src))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def checkout(rev: str) -> Path:
    """``src/`` as it was at ``rev``, unpacked into a temporary folder."""
    tar = subprocess.run(
        ["git", "archive", rev, "src"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    where = Path(tempfile.mkdtemp())
    with tarfile.open(fileobj=BytesIO(tar)) as tf:
        tf.extractall(where, filter="data")
    return where / "src"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--baseline", metavar="REV", help="also time src/ at this git revision")
    args = ap.parse_args()
    trees = {"current": ROOT / "src"}
    if args.baseline:
        trees[f"before ({args.baseline})"] = checkout(args.baseline)
    rows = [(code, name) for name in COMMANDS for code in trees]
    for code, name in rows:  # warm the file cache and byte-code before timing
        run_once(COMMANDS[name], trees[code])
    times: dict[tuple[str, str], list[tuple[float, float]]] = {row: [] for row in rows}
    for _ in range(args.repeats):
        for code, name in rows:
            times[code, name].append(run_once(COMMANDS[name], trees[code]))
    ref = next(iter(COMMANDS))
    ref_cpu = statistics.median(c for _, c in times["current", ref])
    lines = [
        "# Start-up cost: `import defocus` and `defocus --help`",
        "",
        f"Command: `python benchmarks/bench_imports.py{' ' + ' '.join(sys.argv[1:])}`. "
        f"Fresh interpreter per run, runs interleaved, medians of {args.repeats}. Machine: 2 "
        "cores shared with other jobs, so read the ratio to the reference row, measured in "
        "the same run.",
        "",
        "| command | code | wall s | CPU s | CPU / reference |",
        "|---|---|---|---|---|",
    ]
    for code, name in rows:
        if name == ref and code != "current":
            continue  # the reference does not depend on the code
        wall = statistics.median(w for w, _ in times[code, name])
        cpu = statistics.median(c for _, c in times[code, name])
        label = "–" if name == ref else code
        lines.append(f"| {name} | {label} | {wall:.3f} | {cpu:.3f} | {cpu / ref_cpu:.2f} |")
    lines += ["", "Targets: `import defocus` ≤ 0.3 s CPU; `defocus --help` ≤ 0.5 s."]
    RESULT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
