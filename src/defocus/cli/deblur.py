"""``defocus deblur``: undo blur with a PSF model, a kernel file, a sigma map, or blindly."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import psf as P
from .. import restore
from .._errors import BadInputError
from ..io import write_image
from . import COMMANDS
from ._common import (
    add_input_options,
    check_kernel,
    number,
    progress_bar,
    read_input,
)
from ._outputs import add_output_options, check_image_name, check_plan
from .psf import (
    add_model_options,
    describe,
    kernel_file,
    model_kernel,
    refuse_model_params,
    sigma_map,
)

#: Most iterations a deconvolution may be asked for (Richardson-Lucy's default is 200).
MAX_ITERATIONS = 5000


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deblur",
        help=COMMANDS["deblur"],
        description=(
            "Deblur IMAGE and write OUT with the input's dtype (rounded and clipped to its "
            "range). Give the blur as a model (--psf disk --radius R, --psf gauss --sigma S, "
            "...), a kernel image (--kernel K.tif), a per-pixel sigma map in px "
            "(--sigma-map MAP.tif, family from --psf gauss or disk) or identify it from the "
            "image itself (--auto). Borders are handled without ringing."
        ),
    )
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="image to write")
    p.add_argument("--psf", choices=tuple(P.MODELS), help="PSF model (or sigma-map family)")
    p.add_argument("--kernel", metavar="K.tif", help="kernel image (normalised to sum 1)")
    p.add_argument("--sigma-map", metavar="MAP.tif", help="per-pixel sigma (px): varying blur")
    p.add_argument("--auto", action="store_true", help="identify the PSF from the image")
    p.add_argument(
        "--method",
        choices=restore.METHODS,
        default="wiener",
        help="wiener (fast, default), tv (sharpest, slower) or rl (Richardson-Lucy)",
    )
    p.add_argument(
        "--noise",
        type=number(0, 1e300),
        metavar="SIGMA",
        help="noise standard deviation in intensity units (default: estimated)",
    )
    p.add_argument(
        "--iterations",
        type=number(1, MAX_ITERATIONS, integer=True),
        metavar="N",
        help=f"cap on iterations (at most {MAX_ITERATIONS})",
    )
    p.add_argument(
        "--boundary",
        choices=restore.BOUNDARIES,
        default="valid",
        help="valid (default: no assumption beyond the border) or periodic",
    )
    p.add_argument(
        "--tile",
        type=number(8, 2**16, integer=True),
        metavar="PX",
        help="tile spacing for --sigma-map",
    )
    add_model_options(p)
    add_input_options(p)
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import kernel as K  # loaded on use, so that the parser builds fast

    sources = [s for s in (args.kernel, args.sigma_map, args.auto) if s]
    if len(sources) > 1 or ((args.kernel or args.auto) and args.psf):
        raise BadInputError("give one of --psf, --kernel, --sigma-map (with --psf) or --auto")
    if not sources and not args.psf:
        raise BadInputError("no blur given: use --psf MODEL, --kernel, --sigma-map or --auto")
    out = Path(args.output)
    check_image_name(out)
    inputs = [f for f in (args.image, args.kernel, args.sigma_map) if f]
    check_plan(inputs, [(out, args.image)], overwrite=args.overwrite)
    img = read_input(args.image, args)
    options = {
        "method": args.method,
        "noise_sigma": args.noise,
        "iterations": args.iterations,
        "channel_axis": img.channel_axis,
    }
    if args.kernel or args.auto:
        refuse_model_params(args, "--kernel and --auto")
    if args.sigma_map:
        family, smap, what = sigma_map(args, img)
        with progress_bar("deblur") as progress:
            result = restore.deblur_varying(
                img.data, smap, psf=family, tile=args.tile, progress=progress, **options
            )
    else:
        if args.tile is not None:
            raise BadInputError("--tile applies to --sigma-map only")
        if args.kernel:
            kernel, what = kernel_file(args, img)
        elif args.auto:
            found = K.identify(img.data, channel_axis=img.channel_axis)
            if not found.identified:
                raise BadInputError(f"{args.image}: {found.verdict}; give --psf or --kernel")
            kernel = found.kernel()
            check_kernel(kernel.shape, img.luminance.shape, "the identified kernel")
            what = f"identified {describe(found.model, dict(found.params))}, "
            what += f"confidence {found.confidence:.2f}"
        else:
            kernel, what = model_kernel(args, img)
        with progress_bar("deblur") as progress:
            result = restore.deblur(
                img.data, kernel, boundary=args.boundary, progress=progress, **options
            )
    write_image(out, result, pixel_size=img.pixel_size, channel_axis=img.channel_axis)
    print(f"wrote {out}: {args.method} deconvolution with {what}")
    return 0
