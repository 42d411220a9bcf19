"""``defocus map``: calibrated per-pixel blur maps (sigma in px) with focal-plane analysis."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import BadInputError
from ..blurmap import PSF_FAMILIES, blur_map
from ..focalplane import focal_plane
from ..io import write_json, write_map
from ..viz import heatmap_figure, profile_figure, save_figure
from ._common import add_input_options, for_each_image, output_dir, read_input, stem_of


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "map",
        help="per-pixel blur sigma (px) with confidence, and the focal plane",
        description=(
            "For each IMAGE write <stem>.sigma.tif (float32, px), <stem>.confidence.tif, "
            "<stem>.png (heatmap with a colourbar in px, and in physical units when the pixel "
            "size is known), <stem>.profile.png (profile with the focal-plane fit) and "
            "<stem>.json (sigma percentiles, focal plane, sharpest band, units)."
        ),
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for results")
    p.add_argument(
        "--psf", choices=PSF_FAMILIES, default="gauss", help="PSF family (default gauss)"
    )
    p.add_argument("--json", action="store_true", help="print each summary as JSON on stdout")
    add_input_options(p)
    p.set_defaults(func=run)


def map_one(path: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Estimate one image's blur map and write its maps, pictures and summary."""
    img = read_input(path, args)
    bm = blur_map(img.data, psf=args.psf, pixel_size=img.pixel_size, channel_axis=img.channel_axis)
    try:
        fp = focal_plane(bm)
    except BadInputError as exc:  # e.g. no confident measurements: still write the map
        fp, fp_note = None, str(exc)
    stem = stem_of(path)
    files = {
        "sigma": out / f"{stem}.sigma.tif",
        "confidence": out / f"{stem}.confidence.tif",
        "heatmap": out / f"{stem}.png",
        "profile": out / f"{stem}.profile.png",
        "summary": out / f"{stem}.json",
    }
    write_map(files["sigma"], bm.sigma, pixel_size=img.pixel_size)
    write_map(files["confidence"], bm.confidence, pixel_size=img.pixel_size)
    # one physical unit for the colourbar and the summary: geometric mean of the x and y sizes
    physical = None
    if img.pixel_size is not None:
        ps = img.pixel_size.readable()
        physical = (ps.unit, float(np.sqrt(ps.x * ps.y)))
    secondary = None if physical is None else (f"sigma ({physical[0]})", physical[1])
    save_figure(
        heatmap_figure(
            img.data,
            bm.sigma,
            label="blur sigma (px)",
            channel_axis=img.channel_axis,
            cmap="viridis",
            vmin=0.0,
            vmax=float(np.percentile(bm.sigma, 99)),
            pixel_size=img.pixel_size,
            secondary=secondary,
            title=f"{Path(path).name}: blur sigma ({args.psf} PSF)",
        ),
        files["heatmap"],
    )
    summary: dict[str, Any] = {
        "input": str(path),
        "shape": list(img.data.shape),
        "dtype": str(img.data.dtype),
        "pixel_size": img.pixel_size,
        "pixel_size_source": img.pixel_size_source,
        "blur": bm.summary(),
    }
    if physical is not None:
        unit, factor = physical
        summary["blur"]["sigma_physical"] = {
            k: round(v * factor, 4) for k, v in summary["blur"]["sigma"].items()
        } | {"unit": unit}
    if fp is None:
        summary["focal_plane"] = {"error": fp_note}
        prof_rows = None
    else:
        summary["focal_plane"] = fp.summary()
        summary["sharpest_band"] = {
            "axis": fp.axis,
            "position": round(fp.position, 4),
            "position_from_end": round(1 - fp.position, 4),
        }
        prof_rows = fp.rows if fp.axis == "rows" else fp.columns
    if prof_rows is not None:
        n = bm.shape[0] if prof_rows.axis == "rows" else bm.shape[1]
        pos = (prof_rows.coord + 0.5) / n
        model = fp.predict()
        model_profile = np.median(model, axis=1 if prof_rows.axis == "rows" else 0)
        grid = (np.arange(n) + 0.5) / n
        what = "height, 0 = top" if prof_rows.axis == "rows" else "width, 0 = left"
        save_figure(
            profile_figure(
                pos,
                prof_rows.median,
                low=prof_rows.p16,
                high=prof_rows.p84,
                ylabel="blur sigma (px)",
                xlabel=f"position (fraction of the {what})",
                peak=fp.position,
                fit=(grid, model_profile, "fit: sigma² = sigma0² + (k·d)²"),
                spread_label="16-84 % range",
                title=(
                    f"{Path(path).name}: sharpest at {fp.position:.1%}, tilt {fp.angle:.1f}°\n"
                    f"sigma0 = {fp.sigma0:.2f} px, k = {fp.slope:.4f} px/px"
                ),
            ),
            files["profile"],
        )
    else:
        files.pop("profile")
    summary["outputs"] = {k: str(v) for k, v in files.items()}
    write_json(files["summary"], summary)
    return summary


def run(args: argparse.Namespace) -> int:
    out = output_dir(args.output, args.images)

    def work(path: str) -> None:
        summary = map_one(path, args, out)
        if args.json:
            print(json.dumps(summary, default=str))
            return
        q = summary["blur"]["sigma"]
        fp = summary["focal_plane"]
        line = fp.get("text", fp.get("error"))
        print(
            f"{path}: sigma median {q['median']:.2f} px (10-90 %: {q['p10']:.2f}-{q['p90']:.2f}"
            f" px); {line} -> {out}/{stem_of(path)}.*"
        )

    return for_each_image(args.images, work)
