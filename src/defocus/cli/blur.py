"""``defocus blur``: apply a uniform PSF, a kernel from a file, or a per-pixel sigma map."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from .. import psf as P
from .. import synth
from .._errors import BadInputError
from ..io import read_image, write_image
from . import COMMANDS
from ._common import add_input_options, check_kernel, check_sigma_map, read_input
from ._outputs import add_output_options, check_image_name, check_plan
from .psf import add_model_options, describe, model_params


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
        "--model",
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
        family: Any = args.psf or "gauss"  # checked against synth.FAMILIES below
        if family not in synth.FAMILIES:
            raise BadInputError(f"--sigma-map takes --psf {' or '.join(synth.FAMILIES)}")
        model_params(args, family, None)  # refuse stray parameters
        smap = read_image(args.sigma_map, max_pixels=args.max_pixels).data
        if smap.ndim != 2:
            raise BadInputError(f"{args.sigma_map}: a sigma map must be 2-D, got {smap.shape}")
        check_sigma_map(smap, img.luminance.shape, args.sigma_map)
        result = synth.blur_varying(
            img.data,
            smap.astype(np.float32),
            family=family,
            model=args.varying_model,
            **options,
        )
        what = f"{family} sigma map {args.sigma_map} ({args.varying_model}), "
        what += f"sigma {float(smap.min()):.3g}..{float(smap.max()):.3g} px"
    elif args.kernel:
        stray = [k[2:] for k, v in vars(args).items() if k.startswith("p_") and v is not None]
        if stray:
            raise BadInputError(f"--kernel takes no model parameters (got --{stray[0]})")
        kdata = read_image(args.kernel).data
        if kdata.ndim != 2:
            raise BadInputError(f"{args.kernel}: a kernel must be 2-D, got {kdata.shape}")
        kernel = P.as_kernel(kdata)
        check_kernel(kernel.shape, img.luminance.shape, f"{args.kernel}: the kernel")
        result = synth.blur(img.data, kernel, **options)
        what = f"kernel {args.kernel} ({kernel.shape[0]}x{kernel.shape[1]}), "
        what += f"sigma {P.moments(kernel).sigma:.4g} px"
    else:
        params: dict[str, Any] = model_params(args, args.psf, img.pixel_size)
        kernel = P.render(args.psf, **params)
        check_kernel(kernel.shape, img.luminance.shape, f"the {args.psf} kernel")
        result = synth.blur(img.data, kernel, **options)
        what = describe(args.psf, params)
    write_image(out, result, pixel_size=img.pixel_size, channel_axis=img.channel_axis)
    print(f"wrote {out}: {what}")
    return 0
