"""``defocus demo``: run the main jobs on the bundled sample data and say what was written."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..data import sample_path, tilted_gravel
from ..focus import DEFAULT_MEASURE, DEFAULT_SCALE
from ..io import read_image
from . import COMMANDS
from ._outputs import add_output_options, check_plan
from .focus import band_line, focus_one, focus_outputs
from .map import map_one, map_outputs


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help=COMMANDS["demo"])
    p.add_argument("-o", "--output", default="out", metavar="OUTDIR", help="default ./out")
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    sample = sample_path("fib_needle.tif")
    tilted, truth = tilted_gravel()
    assert tilted.path is not None  # the bundled sample is read from its file
    planned = [(f, sample) for f in focus_outputs(str(sample), out).values()]
    planned += [(f, tilted.path) for f in map_outputs(str(tilted.path), out).values()]
    check_plan([sample, tilted.path], planned, overwrite=args.overwrite)
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
    print(
        f"Focus map of {sample.name} (real FIB image, pixel {summary['pixel_size']} "
        f"from {summary['pixel_size_source']}):"
    )
    print(f"  {band_line(summary)}; {summary['in_focus_fraction']:.0%} of pixels in focus")
    for kind, path in summary["outputs"].items():
        print(f"  {kind:8s} {path}")

    map_args = argparse.Namespace(
        psf="gauss", pixel_size=None, index=None, max_pixels=None, physics_only=False
    )
    summary = map_one(str(tilted.path), map_args, out)
    estimate = read_image(summary["outputs"]["sigma"]).data
    # the benchmark's tolerance: within 30 % of the true sigma, or 0.3 px where that is wider
    right = np.abs(estimate - truth) <= np.maximum(0.3 * truth, 0.3)
    print(
        f"\nBlur map of {tilted.path.name} (synthetic tilted sample, true sigma "
        f"{truth.min():.1f}-{truth.max():.1f} px, sharp line 40 % from the top, tilt 4°):"
    )
    print(f"  {summary['focal_plane'].get('text', summary['focal_plane'].get('error'))}")
    print(f"  {right.mean():.0%} of pixels within ±30 % (or ±0.3 px) of the true sigma")
    for kind, path in summary["outputs"].items():
        print(f"  {kind:10s} {path}")
    return 0
