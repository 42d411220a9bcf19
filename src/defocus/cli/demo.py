"""``defocus demo``: run the main jobs on the bundled sample data and say what was written."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data import sample_path
from ..focus import DEFAULT_MEASURE, DEFAULT_SCALE
from .focus import focus_one


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run defocus on the bundled sample images")
    p.add_argument("-o", "--output", default="out", metavar="OUTDIR", help="default ./out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    sample = sample_path("fib_needle.tif")
    focus_args = argparse.Namespace(
        measure=DEFAULT_MEASURE,
        scale=DEFAULT_SCALE,
        tile=50,
        axis="rows",
        threshold=None,
        background="white",
        pixel_size=None,
        index=None,
        max_pixels=None,
    )
    summary = focus_one(str(sample), focus_args, out)
    band = summary["sharpest_band"]
    print(
        f"Focus map of {sample.name} (real FIB image, pixel {summary['pixel_size']} "
        f"from {summary['pixel_size_source']}):"
    )
    print(
        f"  sharpest rows at {band['peak']:.0%} from the top; "
        f"{summary['in_focus_fraction']:.0%} of pixels in focus"
    )
    for kind, path in summary["outputs"].items():
        print(f"  {kind:8s} {path}")
    return 0
