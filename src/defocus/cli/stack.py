"""``defocus stack``: align and fuse a focus stack, with depth, confidence and source maps."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import focus as F
from .. import stack as S
from .._errors import BadInputError
from ..io import read_image, write_image, write_json, write_map, write_png
from . import COMMANDS
from ._common import progress_bar, stem_of
from ._outputs import add_output_options, check_image_name, check_plan


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stack",
        help=COMMANDS["stack"],
        description=(
            "Align FRAMES (in focus order) to the first, fuse them into one all-in-focus image "
            "with the frames' dtype (8- and 16-bit kept), and optionally write the depth map "
            "(sub-frame index of the sharpest frame, float32) and per-frame maps."
        ),
    )
    p.add_argument("frames", nargs="+", metavar="FRAME")
    p.add_argument(
        "-o", "--output", required=True, metavar="FUSED", help="fused image (.tif/.png/.jpg)"
    )
    p.add_argument(
        "--depth", metavar="DEPTH.tif", help="write the depth map (frame index, float32)"
    )
    p.add_argument(
        "--method", choices=S.METHODS, default="pyramid", help="fusion method (default pyramid)"
    )
    p.add_argument(
        "--motion",
        choices=("translation", "similarity", "affine"),
        default="similarity",
        help="alignment motion model (default similarity: shift, rotation, scale)",
    )
    p.add_argument("--no-align", action="store_true", help="frames are already aligned")
    p.add_argument(
        "--maps",
        metavar="OUTDIR",
        help="also write each frame's focus map and in-focus mask view "
        "(<frame>.stack.focus.tif, <frame>.stack.mask.png), and the depth, confidence and "
        "source-frame pictures and maps (<fused>.stack.*), into OUTDIR",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_output_options(p)
    p.set_defaults(func=run)


def _maps_outputs(out: Path, frames: Sequence[str], fused: str) -> dict[str, Path]:
    """The files ``--maps`` writes: per frame, then for the stack (named after the fused image)."""
    files = {}
    for path in frames:
        stem = stem_of(path)
        files[f"{path}:focus"] = out / f"{stem}.stack.focus.tif"
        files[f"{path}:mask"] = out / f"{stem}.stack.mask.png"
    stem = stem_of(fused)
    for name in ("depth.png", "confidence.png", "source.png", "confidence.tif", "source.tif"):
        files[name] = out / f"{stem}.stack.{name}"
    files["summary"] = out / f"{stem}.stack.json"
    return files


def _write_maps(files: dict[str, Path], frames: list[str], res: S.StackResult) -> list[Path]:
    """Per-frame focus map and mask view as ``defocus focus`` makes them, plus stack pictures."""
    # matplotlib (viz, report) loads on use, so that the parser builds fast
    from ..viz import heatmap_figure, mask_view, save_figure

    written = []
    for path in frames:
        img = read_image(path)
        fmap = F.focus_map(img.data, channel_axis=img.channel_axis)
        write_map(files[f"{path}:focus"], fmap, pixel_size=img.pixel_size)
        mask = F.in_focus_mask(fmap)
        write_png(files[f"{path}:mask"], mask_view(img.data, mask, channel_axis=img.channel_axis))
        written += [files[f"{path}:focus"], files[f"{path}:mask"]]
    n = len(frames)
    pictures = {
        "depth.png": (res.depth, "depth (frame index, 0 = first frame)", 0.0, n - 1.0),
        "confidence.png": (res.confidence, "depth confidence (0-1)", 0.0, 1.0),
        "source.png": (res.source.astype(np.float32), "source frame of each pixel", 0.0, n - 1.0),
    }
    for name, (values, label, vmin, vmax) in pictures.items():
        save_figure(
            heatmap_figure(
                res.image,
                values,
                label=label,
                channel_axis=res.channel_axis,
                vmin=vmin,
                vmax=vmax,
            ),
            files[name],
        )
        written.append(files[name])
    write_map(files["confidence.tif"], res.confidence)
    write_map(files["source.tif"], res.source.astype(np.float32))
    write_json(
        files["summary"],
        {
            "frames": frames,
            "method": res.method,
            "transforms": res.transforms,
            "gain": res.gain,
            "aligned": res.aligned,
        },
    )
    return [*written, files["confidence.tif"], files["source.tif"], files["summary"]]


def run(args: argparse.Namespace) -> int:
    if len(args.frames) < 2:
        raise BadInputError(f"a focus stack needs at least 2 frames, got {len(args.frames)}")
    check_image_name(args.output)
    planned: list[tuple[Path, str | None]] = [(Path(args.output), None)]
    if args.depth:
        planned.append((Path(args.depth), None))
    maps = _maps_outputs(Path(args.maps), args.frames, args.output) if args.maps else None
    if maps is not None:
        planned += [(f, key.rpartition(":")[0] or None) for key, f in maps.items()]
    check_plan(args.frames, planned, overwrite=args.overwrite)
    with progress_bar("fusing", enabled=not args.quiet) as progress:
        res = S.fuse(
            args.frames,
            align=not args.no_align,
            method=args.method,
            motion=args.motion,
            progress=progress,
        )
    write_image(args.output, res.image, channel_axis=res.channel_axis)
    written = [Path(args.output)]
    if args.depth:
        write_map(args.depth, res.depth)
        written.append(Path(args.depth))
    if maps is not None:
        written += _write_maps(maps, list(args.frames), res)
    failed = [f for f, ok in zip(args.frames, res.aligned, strict=True) if not ok]
    scale = np.sqrt(np.abs(np.linalg.det(res.transforms[:, :2, :2])))
    print(
        f"fused {len(args.frames)} frames ({res.method}), scale change "
        f"{(scale.max() / scale.min() - 1):.1%}, depth {float(res.depth.min()):.1f}-"
        f"{float(res.depth.max()):.1f}"
        + (f", NOT aligned: {', '.join(failed)}" if failed else "")
        + f" -> {', '.join(str(p) for p in written[:3])}"
        + (f" (+{len(written) - 3} more)" if len(written) > 3 else "")
    )
    return 0
