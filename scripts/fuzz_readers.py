"""Fuzz the image readers with mutated real files, for a fixed time.

Seeds are real files: the samples bundled with defocus, small PNG/JPEG/TIFF/GIF files shipped
with scikit-image, and a few layouts written from scikit-image's pictures (16-bit and
big-endian TIFF, OME-TIFF with a pixel size, float TIFF, palette, alpha and 16-bit PNG,
JPEG, animated GIF). Hypothesis picks a seed and a list of mutations (bit flips, truncation,
inserted or deleted bytes, header fields overwritten with extreme integers) and the mutated
file goes through the whole command line:
``defocus blur FILE -o OUT --psf gauss --sigma 1 --index 0 --max-pixels 4000000``.

Each case must end with exit code 0, or 2 with one ``defocus: error:`` line; exit code 1
(internal error), an escaping exception, or a case that runs past ``--case-timeout`` is a
failure. The input must be unchanged and the output folder must hold no partial file.
Failing inputs are saved beside the summary. Usage::

    python scripts/fuzz_readers.py --budget 60 --summary benchmarks/results/fuzz_readers.md
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import hashlib
import io
import shutil
import struct
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]

# integers that break size and offset fields: zero, one, sign boundaries, all ones
EXTREMES = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]


def seed_files(folder: Path) -> list[Path]:
    """Real files to mutate: bundled samples, scikit-image's small files, and layouts."""
    import imageio.v3 as iio
    import skimage
    import tifffile
    from PIL import Image
    from skimage import data

    from defocus.io import write_image

    seeds = sorted((ROOT / "src" / "defocus" / "data").glob("*.tif"))
    sk = Path(skimage.__file__).parent / "data"
    for name in (
        "chessboard_GRAY.png",
        "chessboard_RGB.png",
        "multipage.tif",
        "multipage_rgb.tif",
        "no_time_for_that_tiny.gif",
        "phantom.png",
        "microaneurysms.png",
        "horse.png",
        "rocket.jpg",
    ):
        if (sk / name).exists():
            seeds.append(sk / name)
    cam = data.camera()[200:264, 200:264]
    rgb = data.astronaut()[100:164, 180:244]
    layouts = folder / "layouts"
    layouts.mkdir()
    write_image(layouts / "u16.tif", cam.astype(np.uint16) * 250, pixel_size="0.1um")
    write_image(layouts / "f32.tif", cam.astype(np.float32) / 255)
    write_image(layouts / "rgb.tif", rgb, channel_axis=-1)
    write_image(layouts / "u16.png", cam.astype(np.uint16) * 250)
    write_image(layouts / "rgb.jpg", rgb, channel_axis=-1)
    tifffile.imwrite(layouts / "big_endian.tif", cam.astype(">u2"), byteorder=">")
    tifffile.imwrite(layouts / "tiled.tif", np.tile(cam, (2, 2)), tile=(32, 32), compression="zlib")
    Image.fromarray(cam).convert("P").save(layouts / "palette.png")
    iio.imwrite(layouts / "rgba.png", np.dstack([rgb, np.full(cam.shape, 90, np.uint8)]))
    iio.imwrite(layouts / "anim.gif", np.stack([cam, cam[::-1]]))
    return seeds + sorted(layouts.iterdir())


def mutations(size: int) -> st.SearchStrategy:
    """One edit to a file of ``size`` bytes; offsets favour the first 512 (the headers)."""
    pos = st.one_of(st.integers(0, min(size, 512)), st.integers(0, max(size - 1, 0)))
    return st.one_of(
        st.tuples(st.just("flip"), pos, st.integers(1, 255)),
        st.tuples(st.just("truncate"), pos),
        st.tuples(st.just("insert"), pos, st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("delete"), pos, st.integers(1, 64)),
        st.tuples(
            st.just("extreme"),
            pos,
            st.sampled_from(EXTREMES),
            st.sampled_from(["<I", ">I", "<H", ">H"]),
        ),
    )


def mutate(content: bytes, edits: list[tuple]) -> bytes:
    buf = bytearray(content)
    for edit in edits:
        kind, at = edit[0], min(edit[1], len(buf))
        if kind == "flip" and at < len(buf):
            buf[at] ^= edit[2]
        elif kind == "truncate":
            del buf[at:]
        elif kind == "insert":
            buf[at:at] = edit[2]
        elif kind == "delete":
            del buf[at : at + edit[2]]
        elif kind == "extreme":
            fmt = edit[3]
            packed = struct.pack(fmt, edit[2] & (0xFFFF if fmt[1] == "H" else 0xFFFFFFFF))
            buf[at : at + len(packed)] = packed
    return bytes(buf)


class Fuzz:
    """Runs cases and keeps the tally."""

    def __init__(self, seeds: list[Path], work: Path, saved: Path, case_timeout: float):
        self.seeds = [(p.suffix.lower() or ".bin", p.read_bytes(), p.name) for p in seeds]
        self.work, self.saved, self.case_timeout = work, saved, case_timeout
        self.tally: Counter[str] = Counter()
        self.per_seed: Counter[str] = Counter()
        self.failures: list[str] = []
        self.partial_files = 0

    def run_case(self, index: int, edits: list[tuple]) -> str:
        """Run one mutated file through ``defocus blur``; return its outcome."""
        from defocus.cli import main

        suffix, content, name = self.seeds[index]
        case = self.work / "case"
        shutil.rmtree(case, ignore_errors=True)
        case.mkdir()
        src = case / f"input{suffix}"
        src.write_bytes(mutate(content, edits))
        (self.saved / "last-case.txt").write_text(f"{name} {edits!r}\n")  # for a hang
        before = hashlib.sha256(src.read_bytes()).hexdigest()
        out = case / "out"
        argv = ["blur", str(src), "-o", str(out / "x.tif"), "--psf", "gauss", "--sigma", "1"]
        # small cases (the guard is fuzzed too), and the first plane of multi-page files
        argv += ["--max-pixels", "4000000", "--index", "0"]
        err = io.StringIO()
        faulthandler.dump_traceback_later(self.case_timeout, exit=True)
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(argv)
        except BaseException as exc:  # anything escaping main is a crash
            code, outcome = None, f"crash: {type(exc).__name__}: {exc}"
        finally:
            faulthandler.cancel_dump_traceback_later()
        lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
        files = sorted(p.name for p in out.iterdir()) if out.exists() else []
        partial = [f for f in files if ".partial" in f or f.startswith(".")]
        self.partial_files += len(partial)
        if code == 0:
            outcome = "decoded" if files == ["x.tif"] else f"crash: exit 0 but wrote {files}"
        elif code == 2:
            one_line = len(lines) == 1 and lines[0].startswith("defocus: error: ")
            outcome = "clear error" if one_line and not files else f"crash: unclear {lines}"
        elif code is not None:
            outcome = f"crash: exit {code}: {' | '.join(lines)}"
        if hashlib.sha256(src.read_bytes()).hexdigest() != before:
            outcome = "crash: input modified"
        if partial:
            outcome = f"crash: partial files {partial}"
        self.tally["tried"] += 1
        self.tally[outcome if not outcome.startswith("crash") else "crash"] += 1
        self.per_seed[name] += 1
        if outcome.startswith("crash"):
            n = len(self.failures)
            (self.saved / f"failure-{n}{suffix}").write_bytes(src.read_bytes())
            self.failures.append(f"{name} {edits!r}: {outcome}")
        return outcome

    def batch(self, batch_seed: int, examples: int) -> None:
        sizes = [len(c) for _, c, _ in self.seeds]
        cases = st.integers(0, len(self.seeds) - 1).flatmap(
            lambda i: st.tuples(st.just(i), st.lists(mutations(sizes[i]), min_size=1, max_size=4))
        )

        @seed(batch_seed)
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.generate],  # a failure is saved as it is, not shrunk
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases)
        def one(case):
            self.run_case(*case)

        one()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=60, help="seconds to fuzz (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="first batch seed (default 0)")
    parser.add_argument(
        "--summary",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "fuzz_readers.md",
        help="markdown summary to write; failing inputs go beside it",
    )
    parser.add_argument(
        "--case-timeout", type=float, default=60, help="seconds before one case is a hang"
    )
    args = parser.parse_args(argv)
    saved = args.summary.parent / "fuzz_failures"
    saved.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fuzz = Fuzz(seed_files(work), work, saved, args.case_timeout)
        batch_seed = args.seed
        while time.monotonic() - start < args.budget:
            fuzz.batch(batch_seed, examples=20)
            batch_seed += 1
            print(
                f"\r{time.monotonic() - start:5.0f} s: {fuzz.tally['tried']} files, "
                f"{fuzz.tally['crash']} crashes",
                end="",
                file=sys.stderr,
                flush=True,
            )
    print(file=sys.stderr)
    elapsed = time.monotonic() - start
    (saved / "last-case.txt").unlink(missing_ok=True)
    if not any(saved.iterdir()):
        saved.rmdir()
    t = fuzz.tally
    lines = [
        "# Reader fuzzing",
        "",
        f"`python scripts/fuzz_readers.py --budget {args.budget:g} --seed {args.seed}`: "
        f"{elapsed:.0f} s, {len(fuzz.seeds)} seed files, batches of 20 from seed "
        f"{args.seed} to {batch_seed - 1}.",
        "",
        "| mutated files tried | decoded (exit 0) | clear one-line error (exit 2) | crashes, "
        "hangs or unclear errors | partial files left |",
        "|---|---|---|---|---|",
        f"| {t['tried']} | {t['decoded']} | {t['clear error']} | {t['crash']} | "
        f"{fuzz.partial_files} |",
        "",
        "Cases per seed file: "
        + ", ".join(f"{name} {n}" for name, n in sorted(fuzz.per_seed.items())),
        "",
    ]
    if fuzz.failures:
        lines += ["## Failures (inputs saved in fuzz_failures/)", ""]
        lines += [f"- {f}" for f in fuzz.failures]
    args.summary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines[2:7]))
    return 1 if fuzz.failures else 0


if __name__ == "__main__":
    sys.exit(main())
