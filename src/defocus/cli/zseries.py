"""``defocus zseries``: best focus, blur growth and a height map from a through-focus series."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from .._errors import BadInputError
from ..blurmap import PSF_FAMILIES
from ..io import write_json, write_map
from . import COMMANDS
from ._common import display_name, number, pixel_size_option, stem_of
from ._outputs import add_output_options, check_plan, output_names

_STEP = re.compile(r"\s*(?P<value>[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)\s*(?P<unit>nm|um|µm|mm)?\s*")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "zseries",
        help=COMMANDS["zseries"],
        description=(
            "Read FRAMES of one field taken at known focus positions, align them, and write "
            "into OUTDIR <stem>.zseries.height.tif (best-focus z per pixel, float32 OME-TIFF "
            "with the physical pixel size), <stem>.zseries.confidence.tif, "
            "<stem>.zseries.height.png (height over the image, with a colourbar; blank where "
            "not measurable), <stem>.zseries.surface.png (3-D view) and <stem>.zseries.json "
            "(series fit sigma² = sigma0² + k² (z - z0)², tilt, depth of field). <stem> is the "
            "first frame's. z comes from --z, --z-step, or the file names: the letter z, a "
            "signed number and an optional unit, e.g. 'bead_z-0.6um.tif', 'stack_z300nm.tif'."
        ),
    )
    p.add_argument("frames", nargs="+", metavar="FRAME", help="frames in focus order")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for results")
    zs = p.add_mutually_exclusive_group()
    zs.add_argument("--z", metavar="LIST", help="z of each frame, e.g. -5,0,5um (unit default µm)")
    zs.add_argument(
        "--z-step", metavar="STEP", help="z step between frames, e.g. 0.3um (first frame at 0)"
    )
    p.add_argument("--pixel-size", type=pixel_size_option, metavar="VALUE+UNIT")
    p.add_argument(
        "--psf", choices=PSF_FAMILIES, default="gauss", help="PSF family of the blur maps"
    )
    p.add_argument("--no-align", action="store_true", help="frames are already aligned")
    p.add_argument(
        "--tolerance",
        type=number(0, 1e6, open_low=True),
        metavar="PX",
        help="blur sigma (px) allowed within the depth of field (default √2 x sigma at focus)",
    )
    p.add_argument(
        "--sigma0",
        type=number(0, 1e6),
        metavar="PX",
        help="assume this in-focus sigma (px) in the series fit instead of fitting it",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument(
        "--report", action="store_true", help="also write <stem>.zseries.html (one page)"
    )
    add_output_options(p)
    p.set_defaults(func=run)


def z_positions(args: argparse.Namespace) -> tuple[np.ndarray, str, str]:
    """The frames' z, its unit and where it came from; refused with one line when unusable."""
    from ..zseries import check_z, parse_z, z_from_names

    n = len(args.frames)
    if args.z is not None:
        z, unit = parse_z(args.z)
        source = "--z"
    elif args.z_step is not None:
        m = _STEP.fullmatch(args.z_step)
        if m is None or float(m["value"]) == 0:
            raise BadInputError(f"--z-step {args.z_step!r}: give a non-zero step like 0.3um")
        z = np.arange(n) * float(m["value"])
        unit = "µm" if m["unit"] in (None, "um") else m["unit"]
        source = "--z-step"
    else:
        z, unit = z_from_names(args.frames)
        source = "file names"
    return check_z(z, n), unit, source


def outputs(first: str, out: Path, *, report: bool = False) -> dict[str, Path]:
    return output_names(
        first,
        out,
        "zseries",
        height="height.tif",
        confidence="confidence.tif",
        picture="height.png",
        surface="surface.png",
        summary="json",
        **({"report": "html"} if report else {}),
    )


def run(args: argparse.Namespace) -> int:
    from ..io import atomic_path, read_image
    from ..report import report_page, through_focus_section
    from ..viz import height_figure, save_figure, surface_figure
    from ..zseries import through_focus

    z, unit, source = z_positions(args)
    out = Path(args.output)
    files = outputs(args.frames[0], out, report=args.report)
    check_plan(args.frames, [(f, None) for f in files.values()], overwrite=args.overwrite)
    tf = through_focus(
        args.frames,
        z,
        z_unit=unit,
        pixel_size=args.pixel_size,
        align=not args.no_align,
        psf=args.psf,
        tolerance=args.tolerance,
        sigma0=args.sigma0,
    )
    write_map(files["height"], tf.height, pixel_size=tf.pixel_size)
    write_map(files["confidence"], tf.confidence, pixel_size=tf.pixel_size)
    summary = tf.summary()
    plane = summary["plane"]
    if plane.get("tilt_x_deg") is not None:
        tilt = f"tilt {plane['tilt_x_deg']:.2f}° along x, {plane['tilt_y_deg']:.2f}° along y"
    elif plane.get("fitted"):
        tilt = "tilt needs the pixel size (--pixel-size)"
    else:
        tilt = "no plane"
    middle = read_image(args.frames[len(args.frames) // 2])
    name = display_name(args.frames[0])
    save_figure(
        height_figure(
            tf,
            middle.data,
            label=f"height: best-focus z ({unit}); blank: not measurable",
            channel_axis=middle.channel_axis,
            title=f"{len(z)} frames: {tilt}",
        ),
        files["picture"],
    )
    save_figure(surface_figure(tf, title=f"{name}: height ({unit}), {tilt}"), files["surface"])
    if args.report:
        section = through_focus_section(tf, middle, name=f"{name} … ({len(z)} frames)")
        page = report_page([section], title="defocus: through-focus series")
        with atomic_path(files["report"]) as tmp:
            tmp.write_text(page, encoding="utf-8")
    summary = {
        "frames": list(args.frames),
        "z_source": source,
        **summary,
        "outputs": {k: str(v) for k, v in files.items()},
    }
    write_json(files["summary"], summary)
    if args.json:
        print(json.dumps(summary, default=str))
        return 0
    fit = tf.fit
    k = summary["blur_growth_k"]["value"]
    print(
        f"{len(z)} frames, z {z[0]:g}..{z[-1]:g} {unit} ({source}): {fit.statement}; "
        + (f"k {k:.3g} px/{unit}; " if k is not None else "")
        + f"{tilt} -> {out}/{stem_of(args.frames[0])}.zseries.*"
    )
    for note in summary["notes"]:
        if note != fit.statement:
            print(f"  note: {note}")
    return 0
