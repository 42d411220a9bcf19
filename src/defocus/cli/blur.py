"""``defocus blur``: apply a uniform PSF, a kernel from a file, or a per-pixel sigma map."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import psf as P
from .. import synth
from .._errors import BadInputError
from ..io import write_image
from . import COMMANDS
from ._common import add_input_options, read_input
from ._outputs import add_output_options, check_image_name, check_plan
from .psf import add_model_options, kernel_file, model_kernel, refuse_model_params, sigma_map


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "blur",
        help=COMMANDS["blur"],
        description=(
            "Blur IMAGE and write OUT, keeping the input's dtype (values rounded and clipped "
            "to its range). Give a model with --psf and its parameters (uniform blur), "
            "--kernel K.tif (uniform blur with that kernel, normalised to sum 1), or "
            "--sigma-map MAP.tif (sigma in px per pixel; --psf gauss or disk picks the family)."
        ),
    )
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="image to write")
    p.add_argument("--psf", choices=tuple(P.MODELS), help="PSF model")
    p.add_argument("--kernel", metavar="K.tif", help="kernel image to apply instead of a model")
    p.add_argument("--sigma-map", metavar="MAP.tif", help="per-pixel sigma (px): varying blur")
    p.add_argument(
        "--method",
        "--model",  # its former name
        dest="varying_model",
        choices=("gather", "scatter"),
        default="gather",
        help="varying blur: each output pixel's own PSF (gather, default) or each source "
        "pixel's (scatter: conserves intensity)",
    )
    p.add_argument(
        "--mode",
        default="reflect",
        choices=("reflect", "mirror", "nearest", "wrap", "constant"),
        help="boundary handling (default reflect)",
    )
    add_model_options(p)
    add_input_options(p)
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    sources = [s for s in (args.kernel, args.sigma_map) if s]
    if len(sources) > 1 or (args.kernel and args.psf):
        raise BadInputError("give one of --psf, --kernel or --sigma-map (with --psf family)")
    if not sources and not args.psf:
        raise BadInputError("nothing to apply: give --psf MODEL, --kernel K.tif or --sigma-map")
    out = Path(args.output)
    check_image_name(out)
    inputs = [f for f in (args.image, args.kernel, args.sigma_map) if f]
    check_plan(inputs, [(out, args.image)], overwrite=args.overwrite)
    img = read_input(args.image, args)
    options = {"channel_axis": img.channel_axis, "dtype": img.data.dtype, "mode": args.mode}
    if args.sigma_map:
        family, smap, what = sigma_map(args, img)
        result = synth.blur_varying(
            img.data, smap, psf=family, method=args.varying_model, **options
        )
        what = what.replace(", sigma ", f" ({args.varying_model}), sigma ", 1)
    elif args.kernel:
        refuse_model_params(args, "kernel files")
        kernel, what = kernel_file(args, img)
        result = synth.blur(img.data, kernel, **options)
    else:
        kernel, what = model_kernel(args, img)
        result = synth.blur(img.data, kernel, **options)
    write_image(out, result, pixel_size=img.pixel_size, channel_axis=img.channel_axis)
    print(f"wrote {out}: {what}")
    return 0
