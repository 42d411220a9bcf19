"""``defocus map``: calibrated per-pixel blur maps (sigma in px) with focal-plane analysis."""

from __future__ import annotations

import argparse
import json
import re
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from .._errors import BadInputError
from ..blurmap import PSF_FAMILIES, blur_map
from ..io import DEFAULT_MAX_PIXELS, scratch_path, write_json, write_map
from . import COMMANDS
from ._common import (
    add_input_options,
    blur_line,
    display_name,
    for_each_image,
    number,
    progress_bar,
    read_input,
    stem_of,
)
from ._outputs import add_output_options, check_plan, output_names


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "map",
        help=COMMANDS["map"],
        description=(
            "For each IMAGE write <stem>.blur.sigma.tif (float32, px), "
            "<stem>.blur.confidence.tif, <stem>.blur.png (heatmap with a colourbar in px, and in "
            "physical units when the pixel size is known), <stem>.blur.profile.png (profile "
            "with the focal-plane fit) and <stem>.blur.json (sigma percentiles, focal plane, "
            "sharpest band, units). Existing files are kept unless --overwrite is given; an "
            "input is never replaced."
        ),
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for results")
    p.add_argument(
        "--psf", choices=PSF_FAMILIES, default="gauss", help="PSF family (default gauss)"
    )
    p.add_argument(
        "--physics-only",
        action="store_true",
        help="measure with the physical edge model alone, without the learned stage that "
        "re-reads dense texture (which the edge model reads low); the summary records which",
    )
    p.add_argument("--json", action="store_true", help="print each summary as JSON on stdout")
    height = p.add_mutually_exclusive_group()
    height.add_argument(
        "--k",
        type=_growth,
        metavar="K",
        help="blur growth, e.g. 0.8px/um (sigma px per unit of defocus): also write "
        "<stem>.blur.height.tif (height from blur, in that unit) and its tilt in the summary",
    )
    height.add_argument(
        "--calibration",
        metavar="ZSERIES.json",
        help="take k from a 'defocus zseries' summary (as --k)",
    )
    p.add_argument(
        "--z0-side",
        choices=("top", "bottom", "left", "right"),
        default="top",
        help="with --k: the image side nearer the lens, which sets the height's sign",
    )
    tiled = p.add_argument_group(
        "tiled (Dask)",
        "With --chunks, or a Zarr input, images are read lazily and processed in tiles "
        "(needs defocus[dask]). IMAGE may be a Zarr / OME-Zarr store or a (tiled) TIFF; the "
        "result is <stem>.blur.zarr (OME-Zarr, channels sigma (px) and confidence, "
        "multiscale, with the physical pixel size) and <stem>.blur.json, or, with -o OUT.zarr "
        "and one IMAGE, OUT.zarr and OUT.json.",
    )
    tiled.add_argument(
        "--chunks",
        type=number(64, 16384, integer=True),
        metavar="PX",
        help="tile size in px (e.g. 2048, from 64 to 16384); turns tiling on",
    )
    tiled.add_argument(
        "--format",
        choices=("zarr", "tiff"),
        default="zarr",
        help="tiled output: OME-Zarr (default) or tiled OME-TIFF <stem>.blur.sigma.tif and "
        "<stem>.blur.confidence.tif",
    )
    add_input_options(p)
    add_output_options(p)
    p.set_defaults(func=run)


def _growth(text: str) -> tuple[float, str]:
    """``--k``: a blur growth such as ``0.8px/um`` or ``0.8`` (px per µm)."""
    m = re.fullmatch(
        r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?:px\s*/\s*(nm|um|µm|mm))?\s*", text
    )
    if m is None or not float(m[1]) > 0:
        raise argparse.ArgumentTypeError(f"must be a growth > 0 like 0.8px/um, got {text!r}")
    return float(m[1]), "µm" if m[2] in (None, "um") else m[2]


def _calibration(args: argparse.Namespace) -> tuple[float, str] | None:
    """(k, unit) from --k or --calibration, or None."""
    if getattr(args, "calibration", None):
        from ..zseries import read_calibration

        return read_calibration(args.calibration)
    return getattr(args, "k", None)


def map_outputs(path: str, out: Path, *, height: bool = False) -> dict[str, Path]:
    """The files :func:`map_one` writes for ``path`` into ``out``."""
    extra = {"height": "height.tif"} if height else {}
    return output_names(
        path,
        out,
        "blur",
        sigma="sigma.tif",
        confidence="confidence.tif",
        heatmap="png",
        profile="profile.png",
        summary="json",
        **extra,
    )


def _viz() -> ModuleType:
    from .. import viz  # matplotlib: about a second of pure Python at import

    return viz


def map_one(path: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Estimate one image's blur map and write its maps, pictures and summary."""
    from ..focalplane import focal_plane

    # Two workers: matplotlib loads while the blur map runs in numpy and scipy (which release
    # the GIL), then the TIFFs compress and the summary sorts while this thread draws.
    with ThreadPoolExecutor(2) as pool:
        written: dict[Path, Future] = {}
        try:
            viz = pool.submit(_viz)
            img = read_input(path, args)
            with progress_bar("blur map") as progress:
                bm = blur_map(
                    img.data,
                    psf=args.psf,
                    pixel_size=img.pixel_size,
                    channel_axis=img.channel_axis,
                    progress=progress,
                    correction=not args.physics_only,
                )
            calibration = _calibration(args)
            files = map_outputs(path, out, height=calibration is not None)
            for name, values in (("sigma", bm.sigma), ("confidence", bm.confidence)):
                written[files[name]] = pool.submit(
                    write_map, files[name], values, pixel_size=img.pixel_size
                )
            blur_summary = pool.submit(bm.summary)
            try:
                fp = focal_plane(bm)
            except BadInputError as exc:  # e.g. no confident measurements: still write the map
                fp, fp_note = None, str(exc)
            # physical unit for the summary: geometric mean of the x and y sizes, as in the heatmap
            physical = None
            if img.pixel_size is not None:
                ps = img.pixel_size.readable()
                physical = (ps.unit, float(np.sqrt(ps.x * ps.y)))
            draw = viz.result()
            draw.save_figure(
                draw.sigma_heatmap(
                    img.data,
                    bm.sigma,
                    channel_axis=img.channel_axis,
                    pixel_size=img.pixel_size,
                    title=f"{display_name(path)}: blur sigma ({args.psf} PSF)",
                ),
                files["heatmap"],
            )
            summary: dict[str, Any] = {
                "input": str(path),
                "shape": list(img.data.shape),
                "dtype": str(img.data.dtype),
                "pixel_size": img.pixel_size,
                "pixel_size_source": img.pixel_size_source,
                "learned_correction": not args.physics_only,
                "blur": blur_summary.result(),
            }
            if physical is not None and summary["blur"]["sigma"] is not None:
                unit, factor = physical
                summary["blur"]["sigma_physical"] = {
                    k: round(v * factor, 4) for k, v in summary["blur"]["sigma"].items()
                } | {"unit": unit}
            if fp is None:
                summary["focal_plane"] = {"error": fp_note}
                files.pop("profile")
            else:
                summary["focal_plane"] = fp.summary()
                if fp.significant:
                    summary["sharpest_band"] = {
                        "axis": fp.axis,
                        "position": round(fp.position, 4),
                        "position_from_end": round(1 - fp.position, 4),
                    }
                draw.save_figure(
                    draw.focal_plane_figure(
                        bm,
                        fp,
                        title=(
                            f"{display_name(path)}: sharpest at {fp.position:.1%}, "
                            f"tilt {fp.angle:.1f}°\n"
                            f"sigma0 = {fp.sigma0:.2f} px, k = {fp.slope:.4f} px/px"
                            if fp.significant
                            else f"{display_name(path)}: " + fp.headline
                        ),
                    ),
                    files["profile"],
                )
            if calibration is not None:
                from ..zseries import height_map

                k, unit = calibration
                hm = height_map(bm, k=k, unit=unit, z0_side=args.z0_side, focal=fp)
                written[files["height"]] = pool.submit(
                    write_map, files["height"], hm.height, pixel_size=img.pixel_size
                )
                summary["height"] = hm.summary()
            for job in written.values():
                job.result()  # a failed write raises here
        except BaseException:
            # Nothing of an interrupted or failed image is left: a write on a worker cannot be
            # stopped halfway, so it finishes and its file is removed.
            for dest, job in written.items():
                if not job.cancel() and job.exception() is None:
                    dest.unlink(missing_ok=True)
            raise
    summary["outputs"] = {k: str(v) for k, v in files.items()}
    write_json(files["summary"], summary)
    return summary


def _height_line(h: dict[str, Any]) -> str:
    if "median" not in h:
        return h["verdict"]
    plane = h["plane"]
    tilt = (
        f", tilt {plane['tilt_deg']:.2f}° ({plane['tilt_x_deg']:.2f}° x, "
        f"{plane['tilt_y_deg']:.2f}° y)"
        if plane.get("tilt_deg") is not None
        else ""
    )
    return f"{h['p05']:.3g} to {h['p95']:.3g} {h['unit']} (5-95 %){tilt}" + (
        f"; {h['note']}" if h["note"] else ""
    )


def map_tiled(path: str, args: argparse.Namespace, target: Path) -> dict[str, Any]:
    """Blur map of one image in tiles, written to ``target`` (OME-Zarr) or as tiled TIFFs."""
    import dataclasses
    import shutil

    from .. import io, tiled

    # --max-pixels left at its in-memory default: the tiled path's own, larger limit applies
    limit = args.max_pixels
    img = io.open_image(
        path,
        chunks=args.chunks,
        pixel_size=args.pixel_size,
        index=args.index,
        max_pixels=io.TILED_MAX_PIXELS if limit == DEFAULT_MAX_PIXELS else limit,
    )
    lazy = tiled.blur_map(
        img.data,
        psf=args.psf,
        pixel_size=img.pixel_size,
        channel_axis=img.channel_axis,
        chunks=args.chunks,
        correction=not args.physics_only,
    )
    attrs = {
        "quantity": "blur sigma (per-axis PSF standard deviation)",
        "unit": "px",
        "psf": args.psf,
        "learned_correction": not args.physics_only,
        "noise_sigma": lazy.noise_sigma,
        "tile_depth_px": lazy.depth,
        "input": str(path),
        "pixel_size_source": img.pixel_size_source,
    }
    names = ("sigma (px)", "confidence")
    if args.format == "zarr":
        zarr_path = target
    else:  # computed once into a hidden store, then streamed into the TIFFs
        zarr_path = scratch_path(target, "tiles.zarr")
    try:
        with progress_bar("blur map tiles") as progress:
            io.write_ome_zarr(
                zarr_path,
                lazy.data,
                pixel_size=img.pixel_size,
                channel_names=names,
                attrs=attrs,
                progress=progress,
            )
        stored, _ = io.read_ome_zarr(zarr_path)
        sigma, conf = stored[0], stored[1]
        # summarised from the store, so the tiles are not computed a second time
        blur = dataclasses.replace(lazy, data=stored, lower_bound=None).summary()
        outputs = {}
        if args.format == "zarr":
            outputs["maps"] = str(zarr_path)
        else:
            for name, data in (("sigma", sigma), ("confidence", conf)):
                f = _tiled_tiffs(target)[name]
                io.write_tiled_tiff(f, data, pixel_size=img.pixel_size)
                outputs[name] = str(f)
    finally:
        if zarr_path != target:
            shutil.rmtree(zarr_path, ignore_errors=True)
    summary: dict[str, Any] = {
        "input": str(path),
        "shape": list(lazy.shape),
        "dtype": str(img.data.dtype),
        "pixel_size": img.pixel_size,
        "pixel_size_source": img.pixel_size_source,
        "tiles": {"chunks": list(lazy.data.chunksize[1:]), "depth": lazy.depth},
        "learned_correction": not args.physics_only,
        "blur": blur,
        "outputs": outputs,
    }
    json_path = _tiled_json(target)
    summary["outputs"]["summary"] = str(json_path)
    write_json(json_path, summary)
    return summary


def _tiled_tiffs(target: Path) -> dict[str, Path]:
    stem = target.name.removesuffix(".zarr")
    return {n: target.parent / f"{stem}.{n}.tif" for n in ("sigma", "confidence")}


def _tiled_json(target: Path) -> Path:
    """``<stem>.blur.json`` beside ``<stem>.blur.zarr``; ``OUT.json`` beside ``-o OUT.zarr``."""
    return target.parent / f"{target.name.removesuffix('.zarr')}.json"


def _tiled(args: argparse.Namespace) -> bool:
    from ..io import is_zarr

    return args.chunks is not None or any(is_zarr(p) for p in args.images)


def run(args: argparse.Namespace) -> int:
    if _tiled(args):
        return run_tiled(args)
    out = Path(args.output)
    calibration = _calibration(args)  # a bad calibration is refused before any work
    planned = [
        (f, path)
        for path in args.images
        for f in map_outputs(path, out, height=calibration is not None).values()
    ]
    inputs = [*args.images, *([args.calibration] if args.calibration else [])]
    check_plan(inputs, planned, overwrite=args.overwrite)

    def work(path: str) -> None:
        summary = map_one(path, args, out)
        if args.json:
            print(json.dumps(summary, default=str))
            return
        fp = summary["focal_plane"]
        line = fp.get("text", fp.get("error"))
        print(f"{path}: {blur_line(summary['blur'])}; {line} -> {out}/{stem_of(path)}.blur.*")
        if "height" in summary:
            print(f"  height: {_height_line(summary['height'])}")

    return for_each_image(args.images, work)


def run_tiled(args: argparse.Namespace) -> int:
    from ..tiled import require_dask

    try:
        require_dask()
    except ImportError as exc:
        raise BadInputError(f"tiled maps: {exc}") from None
    single = args.output.rstrip("/").lower().endswith(".zarr")
    if single and len(args.images) != 1:
        raise BadInputError(f"-o {args.output}: one output store needs exactly one IMAGE")
    if single and args.format == "tiff":
        raise BadInputError("--format tiff writes <stem>.sigma.tif files: give -o a folder")
    out = Path(args.output)

    def target_of(path: str) -> Path:
        stem = stem_of(path.rstrip("/")).removesuffix(".ome")
        return out if single else out / f"{stem}.blur.zarr"

    planned: list[tuple[Path, str]] = []
    for path in args.images:
        target = target_of(path)
        tiles = _tiled_tiffs(target).values() if args.format == "tiff" else [target]
        planned += [(f, path) for f in [*tiles, _tiled_json(target)]]
    check_plan(args.images, planned, overwrite=args.overwrite)

    def work(path: str) -> None:
        summary = map_tiled(path, args, target_of(path))
        if args.json:
            print(json.dumps(summary, default=str))
            return
        print(
            f"{path}: {blur_line(summary['blur'])}, {summary['shape'][0]}x{summary['shape'][1]} "
            f"in tiles of {summary['tiles']['chunks']} -> {', '.join(summary['outputs'].values())}"
        )

    return for_each_image(args.images, work)
