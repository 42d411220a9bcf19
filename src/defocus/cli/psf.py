"""``defocus psf``: render PSF kernels, convert blur sizes, estimate and identify kernels."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .. import psf as P
from .._errors import BadInputError
from ..io import ImageData, PixelSize, parse_pixel_size, read_image, write_json, write_map
from . import COMMANDS
from ._common import (
    add_input_options,
    check_kernel,
    check_sigma_map,
    number,
    pixel_size_option,
    progress_bar,
    read_input,
    stem_of,
)
from ._outputs import add_output_options, check_plan

# Numeric model parameters as command-line options: name -> help text.
_PARAMS = {
    "sigma": "Gaussian sigma in px",
    "radius": "radius in px (disk, ring centre line, Airy first dark ring, defocus blur circle)",
    "width": "ring thickness or box width in px",
    "height": "box height in px (default: the width)",
    "softness": "ring edge softness (Gaussian sigma) in px",
    "waves": "defocus W020 in waves (instead of --radius)",
    "spherical": "spherical aberration W040 in waves (defocus)",
    "airy_radius": "in-focus Airy first-dark-ring radius in px (defocus, astigmatic)",
    "sigma_major": "elliptical Gaussian sigma along --angle, px",
    "sigma_minor": "elliptical Gaussian sigma across --angle, px",
    "radius_major": "astigmatic blur-ellipse semi-axis along --angle, px",
    "radius_minor": "astigmatic blur-ellipse semi-axis across --angle, px",
    "na": "numerical aperture (airy, defocus; with --wavelength and a pixel size)",
    "length": "motion length in px",
    "angle": "motion direction or major axis in degrees, counter-clockwise from +x",
}


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Options for every PSF model parameter (only those the model takes may be given)."""
    group = parser.add_argument_group("PSF parameters")
    for name, text in _PARAMS.items():
        group.add_argument(
            f"--{name.replace('_', '-')}", type=number(-1e12, 1e12), dest=f"p_{name}", help=text
        )
    group.add_argument(
        "--wavelength",
        dest="p_wavelength",
        metavar="VALUE+UNIT",
        help="wavelength with a unit, e.g. 520nm (airy, defocus; needs a pixel size)",
    )


def model_params(
    args: argparse.Namespace, model: str, pixel_size: PixelSize | None
) -> dict[str, float]:
    """The ``--PARAM`` options given for ``model``; the wavelength is put in pixel-size units."""
    params: dict[str, Any] = {
        k[2:]: v for k, v in vars(args).items() if k.startswith("p_") and v is not None
    }
    if "wavelength" in params:
        wavelength = parse_pixel_size(params["wavelength"])
        if pixel_size is None:
            raise BadInputError("--wavelength needs a pixel size (--pixel-size or file metadata)")
        params["wavelength"] = wavelength.to(pixel_size.unit).x  # type: ignore[union-attr]
        params["pixel_size"] = pixel_size.x
    if model not in P.MODELS:
        raise BadInputError(f"unknown PSF model {model!r}; choose from {', '.join(P.MODELS)}")
    extra = sorted(set(params) - set(P.MODELS[model].params))
    if extra:
        flags = ", ".join("--" + e.replace("_", "-") for e in extra)
        raise BadInputError(f"{model} does not take {flags}")
    return params


def describe(model: str, params: dict[str, float]) -> str:
    """One line: the model, its parameters and its sigma."""
    shown = ", ".join(f"{k}={v:g}" for k, v in params.items())
    return f"{model}({shown}), sigma {P.sigma_of(model, **params):.4g} px"


def refuse_model_params(args: argparse.Namespace, given: str) -> None:
    """Exit 2 when ``--PARAM`` options come with blur sources (``given``) that take none."""
    stray = [k[2:] for k, v in vars(args).items() if k.startswith("p_") and v is not None]
    if stray:
        raise BadInputError(f"{given} take no model parameters (got --{stray[0]})")


def model_kernel(args: argparse.Namespace, image: ImageData) -> tuple[np.ndarray, str]:
    """The ``--psf MODEL`` kernel with its ``--PARAM`` options, checked against the image, and
    a line describing it (``blur`` and ``deblur`` specify a uniform PSF the same way)."""
    params: dict[str, Any] = model_params(args, args.psf, image.pixel_size)
    kernel = P.render(args.psf, **params)
    check_kernel(kernel.shape, image.luminance.shape, f"the {args.psf} kernel")
    return kernel, describe(args.psf, params)


def kernel_file(args: argparse.Namespace, image: ImageData) -> tuple[np.ndarray, str]:
    """The ``--kernel K.tif`` kernel (normalised to sum 1), checked against the image, and a
    line describing it."""
    data = read_image(args.kernel).data
    if data.ndim != 2:
        raise BadInputError(f"{args.kernel}: a kernel must be 2-D, got {data.shape}")
    kernel = P.as_kernel(data)
    check_kernel(kernel.shape, image.luminance.shape, f"{args.kernel}: the kernel")
    what = f"kernel {args.kernel} ({kernel.shape[0]}x{kernel.shape[1]}), "
    return kernel, what + f"sigma {P.moments(kernel).sigma:.4g} px"


def sigma_map(args: argparse.Namespace, image: ImageData) -> tuple[Any, np.ndarray, str]:
    """The ``--sigma-map MAP.tif`` option: the PSF family (``--psf``, default gauss), the map
    as float32 (checked against the image) and a line describing it."""
    family = args.psf or "gauss"
    if family not in P.FAMILIES:
        raise BadInputError(f"--sigma-map takes --psf {' or '.join(P.FAMILIES)}")
    model_params(args, family, None)  # refuse stray parameters
    smap = read_image(args.sigma_map, max_pixels=args.max_pixels).data
    if smap.ndim != 2:
        raise BadInputError(f"{args.sigma_map}: a sigma map must be 2-D, got {smap.shape}")
    check_sigma_map(smap, image.luminance.shape, args.sigma_map)
    what = f"{family} sigma map {args.sigma_map}, "
    what += f"sigma {float(smap.min()):.3g}..{float(smap.max()):.3g} px"
    return family, smap.astype(np.float32), what


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("psf", help=COMMANDS["psf"])
    cmds = p.add_subparsers(dest="psf_command", required=True, parser_class=type(p))

    r = cmds.add_parser(
        "render",
        help="render a model kernel to a float32 TIFF and a PNG with its radial profile",
        description=(
            "Write the kernel of MODEL to OUT (float32 TIFF, sums to 1) and a picture with its "
            "radial profile beside it (same name, .png). Models: " + ", ".join(P.MODELS) + "."
        ),
    )
    r.add_argument("model", metavar="MODEL", choices=tuple(P.MODELS))
    r.add_argument("-o", "--output", required=True, metavar="K.tif", help="kernel TIFF to write")
    r.add_argument(
        "--shape",
        type=number(1, P.MAX_KERNEL_SIZE, integer=True),
        metavar="N",
        help=f"kernel size N×N (default: 99.9 %% energy; at most {P.MAX_KERNEL_SIZE})",
    )
    r.add_argument(
        "--offset",
        type=number(-1e4, 1e4),
        nargs=2,
        default=(0.0, 0.0),
        metavar=("DY", "DX"),
        help="sub-pixel shift of the PSF centre",
    )
    r.add_argument(
        "--pixel-size",
        type=pixel_size_option,
        metavar="VALUE+UNIT",
        help="pixel size, for --wavelength",
    )
    add_model_options(r)
    add_output_options(r)
    r.set_defaults(func=run_render)

    c = cmds.add_parser(
        "convert",
        help="convert a blur size between sigma, radius, diameter, FWHM and edge width",
        description="Print VALUE, given as --from for MODEL, in every other measure (px).",
    )
    c.add_argument("value", type=number(0, 1e12), metavar="VALUE")
    c.add_argument("--model", default="gauss", choices=tuple(P.MODELS))
    c.add_argument(
        "--from",
        dest="from_",
        default="sigma",
        choices=("sigma", "radius", "diameter", "fwhm", "edge"),
    )
    add_model_options(c)
    c.set_defaults(func=run_convert, pixel_size=None)

    e = cmds.add_parser(
        "estimate",
        help="estimate the blur kernel from a sharp/blurred pair and name its model",
        description=(
            "Write OUTDIR/<stem>.kernel.tif (float32, sums to 1; <stem> is BLURRY's), "
            "<stem>.kernel.png (square-root colour scale with a colourbar, and its radial "
            "profile with the best model's) and <stem>.kernel.json (best model and parameters, "
            "sigma, disk diameter, fit residual, shift, gain/offset, explained variance, "
            "clipped pixels and every model's fit). A pair whose fit explains less than 90 %% "
            "of the variance its noise leaves explainable does not match: a warning on stderr "
            "and in the JSON (exit 2 with --strict)."
        ),
    )
    e.add_argument("sharp", metavar="SHARP")
    e.add_argument("blurry", metavar="BLURRY")
    e.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    e.add_argument(
        "--size",
        type=number(3, P.MAX_KERNEL_SIZE, integer=True),
        metavar="N",
        help="kernel side (odd; default automatic)",
    )
    e.add_argument("--no-align", dest="align", action="store_false", help="skip registration")
    e.add_argument(
        "--strict",
        action="store_true",
        help="exit 2 (writing nothing) when the kernel is not to be trusted: the pair does not "
        "match, or the kernel box is too small",
    )
    add_input_options(e)
    add_output_options(e)
    e.set_defaults(func=run_estimate)

    i = cmds.add_parser(
        "identify",
        help="identify a disk or Gaussian blur and its size from one blurred image",
        description=(
            "Fit disk and Gaussian blur to the power spectrum of BLURRY and print the model, "
            "its parameters, sigma, the disk diameter and a confidence in [0, 1]."
        ),
    )
    i.add_argument("blurry", metavar="BLURRY")
    i.add_argument(
        "--models",
        nargs="+",
        default=["disk", "gauss"],
        choices=("disk", "gauss"),
        help="candidate models (default both)",
    )
    i.add_argument("--json", action="store_true", help="print the result as JSON")
    add_input_options(i)
    i.set_defaults(func=run_identify)


def run_render(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise BadInputError(f"{out}: the kernel is written as TIFF; use a .tif name")
    pixel_size = parse_pixel_size(args.pixel_size)
    params = model_params(args, args.model, pixel_size)
    png = out.with_name(stem_of(out) + ".png")
    check_plan([], [(out, None), (png, None)], overwrite=args.overwrite)
    kernel = P.render(args.model, shape=args.shape, offset=tuple(args.offset), **params)
    from ..viz import kernel_figure, save_figure

    write_map(out, kernel)
    save_figure(kernel_figure(kernel, title=describe(args.model, params)), png)
    m = P.moments(kernel, area_sampled=P.MODELS[args.model].area_sampled)
    print(
        f"{describe(args.model, params)}; kernel {kernel.shape[0]}x{kernel.shape[1]}, "
        f"moment sigma {m.sigma:.4g} px"
    )
    print(f"wrote {out} and {png}")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    params = model_params(args, args.model, None)
    natural = P.MODELS[args.model].natural
    params.pop(natural, None)
    for measure in ("sigma", "radius", "diameter", "fwhm", "edge"):
        try:
            value = P.convert_width(
                args.value, from_=args.from_, to=measure, model=args.model, **params
            )
        except BadInputError:
            if measure == args.from_:
                raise
            continue  # not defined for this model
        print(f"{measure:9s} {value:.4g} px")
    return 0


def run_estimate(args: argparse.Namespace) -> int:
    from ..kernel import estimate_kernel, fit_psf
    from ..viz import kernel_figure, save_figure

    out = Path(args.output)
    stem = stem_of(args.blurry)
    files = {k: out / f"{stem}.kernel.{k}" for k in ("tif", "png", "json")}
    check_plan(
        [args.sharp, args.blurry],
        [(f, args.blurry) for f in files.values()],
        overwrite=args.overwrite,
    )
    sharp, blurry = read_input(args.sharp, args), read_input(args.blurry, args)
    if sharp.channel_axis != blurry.channel_axis:
        raise BadInputError("one image is colour and the other greyscale; give a matching pair")
    with progress_bar("psf estimate") as progress:
        est = estimate_kernel(
            sharp.data,
            blurry.data,
            size=args.size,
            channel_axis=sharp.channel_axis,
            align=args.align,
            progress=progress,
        )
    for line in est.warnings:
        print(f"warning: {args.blurry}: {line}", file=sys.stderr)
    if args.strict and est.warnings:
        raise BadInputError(f"{args.blurry}: {est.warnings[0]} (--strict)")
    k = est.kernel if est.kernel.ndim == 2 else est.kernel.mean(axis=-1)
    fit = fit_psf(k)
    best = fit.best
    summary = {
        "model": fit.model,
        "params": best.params,
        "sigma_px": est.sigma,
        "model_sigma_px": best.sigma,
        "diameter_px": (
            2 * (best.params | best.derived)["radius"]
            if fit.model in ("disk", "ring", "defocus")
            else None
        ),
        "derived": best.derived,
        "fit_rel_error": best.rel_error,
        "residual_rms": est.to_dict()["residual_rms"],
        "matches": est.matches,
        "warnings": est.warnings,
        "kernel": est.to_dict(),
        "fit": fit.to_dict(),
    }
    title = describe(fit.model, best.params)
    model = P.render(fit.model, shape=k.shape[0], offset=best.centre, **best.params)
    figure = kernel_figure(k, title=title, model=model, model_label=f"{fit.model} fit")
    write_map(files["tif"], k)  # float32
    save_figure(figure, files["png"])
    write_json(files["json"], summary)
    print(
        f"kernel {k.shape[0]}x{k.shape[1]}, sigma {est.sigma:.4g} px; best model {title}; "
        f"{est.explained:.1%} of the variance explained (noise allows {est.explainable:.1%})"
        + (f"; {est.clipped} clipped pixels left out" if est.clipped else "")
    )
    if "axis_ratio" in best.derived:
        d = best.derived
        print(
            f"anisotropic: sigma {d['sigma_major']:.3g} px along {d['angle']:.1f} deg "
            f"(counter-clockwise from +x), {d['sigma_minor']:.3g} px across; "
            f"axis ratio {d['axis_ratio']:.2f}"
        )
    print(f"wrote {files['tif']}, {files['png'].name} and {files['json'].name}")
    misfit = float(np.mean(est.residual))
    if misfit > 2 * est.measured_noise:
        # JPEG and registration leave a misfit far above the noise the image shows; a
        # deconvolution regularised for that noise alone rings.
        print(f"to deblur with this kernel, give --noise {misfit:.3g} (the fit's residual)")
    return 0


def run_identify(args: argparse.Namespace) -> int:
    from ..kernel import identify

    img = read_input(args.blurry, args)
    found = identify(img.data, channel_axis=img.channel_axis, models=tuple(args.models))
    if args.json:
        print(json.dumps(found.to_dict()))
        return 0 if found.identified else 2
    if not found.identified:
        raise BadInputError(f"{args.blurry}: {found.verdict}")
    print(found.verdict)
    return 0
