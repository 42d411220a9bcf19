"""``defocus batch``: QC of many files on Dask, with one table, resumable."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from .._errors import BadInputError
from ..batch import (  # defocus.batch imports Dask lazily
    MAX_SIGMA,
    MIN_FOCUS,
    TASKS,
    batch_outputs,
)
from ..blurmap import PSF_FAMILIES
from ..focus import DEFAULT_MEASURE, DEFAULT_SCALE, list_measures
from . import COMMANDS
from ._common import MAX_SCALE, add_input_options, number, progress_bar, stem_of
from ._outputs import add_output_options, check_plan

#: Most local workers: a few per core keeps I/O busy; thousands only exhaust file handles.
MAX_WORKERS = 4 * (os.cpu_count() or 1)


def scheduler_address(text: str) -> str:
    """An argparse ``type`` for ``--scheduler``: ``tcp://HOST:PORT`` (or ``HOST:PORT``)."""
    url = re.fullmatch(r"[a-z][a-z0-9+.-]*://[^\s/][^\s]*", text)
    if not (url or re.fullmatch(r"[A-Za-z0-9_.-]+:[0-9]{1,5}", text)):
        raise argparse.ArgumentTypeError(
            f"not a scheduler address: {text!r}; write it like tcp://10.0.0.5:8786"
        )
    return text


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch",
        help=COMMANDS["batch"],
        description=(
            "Run one task per IMAGE on a dask.distributed cluster (a LocalCluster unless "
            "--scheduler is given) and write OUTDIR/qc.csv (and qc.parquet when pyarrow is "
            "installed): focus score, sigma percentiles (px), sharpest band, an out-of-focus "
            "flag and an error column, one row per image. Each image's outputs "
            "(<stem>.qc.focus.tif, or <stem>.qc.sigma.tif and <stem>.qc.confidence.tif) and its "
            "row (<stem>.qc.<task>.json) are written atomically; a rerun skips images already "
            "done, so a killed batch resumes. Runs into one folder, one after the other or at "
            "the same time, merge their rows into one table. A bad image is reported in its "
            "row and the batch goes on."
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
        "--workers",
        type=number(1, MAX_WORKERS, integer=True),
        metavar="N",
        help=f"local worker processes (default: CPU cores; at most {MAX_WORKERS})",
    )
    where.add_argument(
        "--scheduler",
        type=scheduler_address,
        metavar="ADDRESS",
        help="attach to a running Dask scheduler instead (tcp://HOST:PORT)",
    )
    p.add_argument("--measure", choices=list_measures(), default=DEFAULT_MEASURE)
    p.add_argument(
        "--scale",
        type=number(0, MAX_SCALE, open_low=True),
        default=DEFAULT_SCALE,
        metavar="PX",
        help=f"focus window sigma in px (default {DEFAULT_SCALE:g}, at most {MAX_SCALE:g})",
    )
    p.add_argument("--psf", choices=PSF_FAMILIES, default="gauss", help="PSF family for map")
    p.add_argument(
        "--min-focus",
        type=number(-1e300, 1e300),
        default=MIN_FOCUS,
        metavar="F",
        help=f"task focus: flag images whose focus score is below F (default {MIN_FOCUS})",
    )
    p.add_argument(
        "--max-sigma",
        type=number(0, 1e300),
        default=MAX_SIGMA,
        metavar="PX",
        help=f"task map/identify: flag images whose median sigma exceeds PX (default {MAX_SIGMA})",
    )
    add_input_options(p)
    add_output_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..batch import require_distributed, run_batch, start_client

    try:
        require_distributed()
    except ImportError as exc:
        raise BadInputError(str(exc)) from None
    out = Path(args.output)
    tables = [(out / "qc.csv", None), (out / "qc.parquet", None)]
    planned = [
        (out / name, path)
        for path in args.images
        for name in batch_outputs(stem_of(path), args.task)
    ]
    # an image's earlier outputs are resumed, and the table merged; run_batch refuses the
    # outputs of another file of the same name
    check_plan(
        args.images,
        [*planned, *tables],
        overwrite=args.overwrite,
        may_exist=[f for f, _ in [*planned, *tables]],
    )
    client = None
    if args.scheduler or args.workers:
        client = start_client(workers=args.workers, scheduler=args.scheduler)
    try:
        with progress_bar("batch", enabled=not args.no_progress) as progress:
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
                progress=progress,
                overwrite=args.overwrite,
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
