"""``defocus focus``: focus maps, tile grids, profiles, masks and their pictures."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .. import focus as F
from .._array import as_float_image
from .._errors import BadInputError
from ..io import write_json, write_map, write_png
from . import COMMANDS
from ._common import (
    MAX_SCALE,
    add_input_options,
    check_scale,
    display_name,
    for_each_image,
    number,
    read_input,
    stem_of,
)
from ._outputs import add_output_options, check_plan, output_names


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "focus",
        help=COMMANDS["focus"],
        description=(
            "For each IMAGE write <stem>.focus.tif (float32 map, higher = sharper), "
            "<stem>.focus.png (heatmap overlay), <stem>.focus.mask.png (in-focus pixels over a "
            "background colour), <stem>.focus.sketch.png (1 - focus), <stem>.focus.profile.png "
            "and <stem>.focus.json (global score, tile grid, profile, sharpest band). Existing "
            "files are kept unless --overwrite is given; an input is never replaced."
        ),
    )
    p.add_argument("images", nargs="*", metavar="IMAGE")
    p.add_argument("-o", "--output", metavar="OUTDIR", help="folder for the results")
    p.add_argument(
        "--measure",
        default=F.DEFAULT_MEASURE,
        help=f"focus operator (default {F.DEFAULT_MEASURE}; see --list-measures)",
    )
    p.add_argument(
        "--scale",
        type=number(0, MAX_SCALE, open_low=True),
        default=F.DEFAULT_SCALE,
        metavar="PX",
        help=f"window sigma in px (default {F.DEFAULT_SCALE:g}, at most {MAX_SCALE:g})",
    )
    p.add_argument(
        "--tile",
        type=number(2, 2**16, integer=True),
        default=50,
        metavar="PX",
        help="tile size (default 50)",
    )
    p.add_argument("--axis", choices=("rows", "cols"), default="rows", help="profile axis")
    p.add_argument(
        "--threshold",
        type=number(-1e300, 1e300),
        help="in-focus threshold on the map (default: automatic, Otsu)",
    )
    p.add_argument(
        "--background", default="white", help="mask background colour (name, default white)"
    )
    p.add_argument("--list-measures", action="store_true", help="list the focus operators")
    p.add_argument("--json", action="store_true", help="print each summary as JSON on stdout")
    add_input_options(p)
    add_output_options(p)
    p.set_defaults(func=run)


def _list_measures() -> int:
    for name in F.list_measures():
        m = F.get_measure(name)
        flag = "contrast-invariant" if m.contrast_invariant else ""
        print(f"{name:24s} {m.family:11s} {flag:19s} {m.description}")
    return 0


def focus_outputs(path: str, out: Path) -> dict[str, Path]:
    """The files :func:`focus_one` writes for ``path`` into ``out``."""
    return output_names(
        path,
        out,
        "focus",
        map="tif",
        heatmap="png",
        mask="mask.png",
        sketch="sketch.png",
        profile="profile.png",
        summary="json",
    )


def check_options(args: argparse.Namespace) -> None:
    """Refuse a bad option before anything is read or written."""
    from ..viz import mask_view

    F.get_measure(args.measure)
    mask_view(np.zeros((1, 1), np.uint8), np.zeros((1, 1), bool), background=args.background)


def focus_one(path: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Analyse one image and write its maps, pictures and summary; return the summary."""
    check_options(args)
    # matplotlib (viz, report) loads on use, so that the parser builds fast
    from ..viz import heatmap_figure, mask_view, profile_figure, save_figure, sketch_view

    img = read_input(path, args)
    check_scale(args.scale, img.luminance.shape, path)
    # a blank or fully saturated frame has an all-zero map and no sharpest band: say so
    as_float_image(
        img.data, channel_axis=img.channel_axis, allow_constant=False, name=f"{path}: image"
    )
    fmap = F.focus_map(
        img.data, measure=args.measure, scale=args.scale, channel_axis=img.channel_axis
    )
    grid = F.tile_grid(fmap, tile=args.tile, measure=None)
    profile = F.focus_profile(fmap, axis=args.axis)
    # a profile that does not vary (every row's median is 0 where detail is sparse) has no
    # sharpest band: its argmax would be the first row
    band = F.sharpest_band(profile) if np.ptp(profile.median) > 0 else None
    threshold = F.focus_threshold(fmap) if args.threshold is None else args.threshold
    mask = F.in_focus_mask(fmap, threshold=threshold)

    files = focus_outputs(path, out)
    # every picture is drawn before the first file is written: a failure leaves nothing
    mask_picture = mask_view(
        img.data, mask, background=args.background, channel_axis=img.channel_axis
    )
    unit = "a.u., higher = sharper"
    write_map(files["map"], fmap, pixel_size=img.pixel_size)
    save_figure(
        heatmap_figure(
            img.data,
            fmap,
            label=f"focus: {args.measure} ({unit})",
            channel_axis=img.channel_axis,
            vmin=float(np.percentile(fmap, 1)),
            vmax=float(np.percentile(fmap, 99)),
            pixel_size=img.pixel_size,
            title=display_name(path),
        ),
        files["heatmap"],
    )
    write_png(files["mask"], mask_picture)
    write_png(files["sketch"], sketch_view(fmap))
    n = profile.median.size
    positions = (np.arange(n) + 0.5) / n
    what = "height, 0 = top" if args.axis == "rows" else "width, 0 = left"
    save_figure(
        profile_figure(
            positions,
            profile.median,
            low=profile.q25,
            high=profile.q75,
            ylabel=f"focus: {args.measure}",
            xlabel=f"position (fraction of the {what})",
            band=None if band is None else (band.start, band.end),
            peak=None if band is None else band.peak,
            title=display_name(path),
        ),
        files["profile"],
    )
    summary = {
        "input": str(path),
        "shape": list(img.data.shape),
        "dtype": str(img.data.dtype),
        "pixel_size": img.pixel_size,
        "pixel_size_source": img.pixel_size_source,
        "measure": args.measure,
        "scale_px": args.scale,
        "focus_score": float(fmap.mean(dtype=np.float64)),
        "threshold": threshold,
        "in_focus_fraction": float(mask.mean()),
        "sharpest_band": None if band is None else band.to_dict(),
        "profile": profile.to_dict(),
        "tiles": {"tile_px": args.tile, **grid.to_dict()},
        "outputs": {k: str(v) for k, v in files.items()},
    }
    write_json(files["summary"], summary)
    return summary


def band_line(summary: dict[str, Any]) -> str:
    """The sharpest band of a :func:`focus_one` summary in words, or why there is none."""
    band = summary["sharpest_band"]
    if band is None:
        return f"no sharpest {summary['profile']['axis']} (the focus profile is flat)"
    side = "top" if band["axis"] == "rows" else "left"
    return (
        f"sharpest {band['axis']} at {band['peak']:.0%} from the {side} "
        f"(band {band['start']:.0%}-{band['end']:.0%})"
    )


def run(args: argparse.Namespace) -> int:
    if args.list_measures:
        return _list_measures()
    if not args.images:
        raise BadInputError("no IMAGE given (or use --list-measures)")
    if not args.output:
        raise BadInputError("no output folder given; use -o OUTDIR")
    check_options(args)
    out = Path(args.output)
    planned = [(f, path) for path in args.images for f in focus_outputs(path, out).values()]
    check_plan(args.images, planned, overwrite=args.overwrite)

    def work(path: str) -> None:
        summary = focus_one(path, args, out)
        if args.json:
            print(json.dumps(summary, default=str))
        else:
            print(
                f"{path}: focus {summary['focus_score']:.4g}, {band_line(summary)}, "
                f"{summary['in_focus_fraction']:.0%} in focus -> {out}/{stem_of(path)}.focus.*",
                file=sys.stderr if args.json else sys.stdout,
            )

    return for_each_image(args.images, work)
