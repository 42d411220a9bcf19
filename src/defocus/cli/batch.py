"""``defocus batch``: QC of many files on Dask, with one table, resumable."""

from __future__ import annotations

import argparse
import sys

from .._errors import BadInputError
from ..blurmap import PSF_FAMILIES
from ..focus import DEFAULT_MEASURE, DEFAULT_SCALE, list_measures
from ..io import DEFAULT_MAX_PIXELS
from ..parallel import MAX_SIGMA, MIN_FOCUS, TASKS  # defocus.parallel imports Dask lazily
from ._common import output_dir


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch",
        help="QC many images on Dask: one table, resumable, one row per image",
        description=(
            "Run one task per IMAGE on a dask.distributed cluster (a LocalCluster unless "
            "--scheduler is given) and write OUTDIR/qc.csv (and qc.parquet when pyarrow is "
            "installed): focus score, sigma percentiles (px), sharpest band, an out-of-focus "
            "flag and an error column, one row per image. Each image's outputs and its row "
            "(<stem>.<task>.json) are written atomically; a rerun skips images already done, "
            "so a killed batch resumes. A bad image is reported in its row and the batch "
            "goes on."
        ),
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for results")
    p.add_argument(
        "--task",
        choices=TASKS,
        default="focus",
        help="focus: focus map and score; map: blur map (sigma px); identify: blind PSF model",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--workers", type=int, metavar="N", help="local worker processes (default: CPU cores)"
    )
    where.add_argument(
        "--scheduler", metavar="ADDRESS", help="attach to a running Dask scheduler instead"
    )
    p.add_argument("--measure", choices=list_measures(), default=DEFAULT_MEASURE)
    p.add_argument("--scale", type=float, default=DEFAULT_SCALE, metavar="PX")
    p.add_argument("--psf", choices=PSF_FAMILIES, default="gauss", help="PSF family for map")
    p.add_argument(
        "--min-focus",
        type=float,
        default=MIN_FOCUS,
        metavar="F",
        help=f"task focus: flag images whose focus score is below F (default {MIN_FOCUS})",
    )
    p.add_argument(
        "--max-sigma",
        type=float,
        default=MAX_SIGMA,
        metavar="PX",
        help=f"task map/identify: flag images whose median sigma exceeds PX (default {MAX_SIGMA})",
    )
    p.add_argument("--pixel-size", metavar="VALUE+UNIT", help="override the pixel size, e.g. 5nm")
    p.add_argument("--index", type=int, metavar="N", help="plane to read from multi-page files")
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help="refuse larger images (decompression-bomb guard)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..parallel import _distributed, run_batch, start_client

    try:
        _distributed()
    except ImportError as exc:
        raise BadInputError(str(exc)) from None
    out = output_dir(args.output, args.images)
    client = None
    if args.scheduler or args.workers:
        client = start_client(workers=args.workers, scheduler=args.scheduler)
    try:
        rows = run_batch(
            args.images,
            out,
            task=args.task,
            client=client,
            measure=args.measure,
            scale=args.scale,
            psf=args.psf,
            min_focus=args.min_focus,
            max_sigma=args.max_sigma,
            pixel_size=args.pixel_size,
            index=args.index,
            max_pixels=args.max_pixels,
            progress=not args.no_progress,
        )
    finally:
        if client is not None:
            cluster = client.cluster
            client.close()
            if cluster is not None and not args.scheduler:
                cluster.close()
    bad = [r for r in rows if r["status"] not in ("done", "skipped (done before)")]
    for r in bad:
        err = r["error"] if r["input"] in r["error"] else f"{r['input']}: {r['error']}"
        print(f"defocus: error: {err}", file=sys.stderr)
    flagged = sum(bool(r["out_of_focus"]) for r in rows)
    print(
        f"{len(rows)} images: {len(rows) - len(bad)} done, {len(bad)} failed, "
        f"{flagged} out of focus -> {out}/qc.csv"
    )
    if any(r["status"] == "failed" for r in bad):
        return 1
    return 2 if bad else 0
