"""``defocus report``: one self-contained HTML page with the pictures and numbers of each image."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._errors import BadInputError
from ..blurmap import PSF_FAMILIES
from ..io import atomic_path
from ..psf import MODELS
from . import COMMANDS
from ._common import add_input_options, blur_line, for_each_image, progress_bar, read_input
from ._outputs import add_output_options, check_plan


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help=COMMANDS["report"],
        description=(
            "Write one HTML page (pictures embedded, no external files) with a section per "
            "IMAGE: the image, the blur-sigma heatmap with its colourbar, the profile with the "
            "focal-plane fit, histograms, the summary numbers and the blur by band. With "
            "--sharp, each section also shows the kernel estimated from the pair (sharp -> "
            "IMAGE) and the PSF model that explains it. Images that cannot be read are listed "
            "on the page and the exit code is 2."
        ),
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-o", "--output", required=True, metavar="REPORT.html", help="page to write")
    p.add_argument(
        "--sharp", metavar="SHARP", help="sharp image of the same scene: adds kernel and model"
    )
    p.add_argument(
        "--psf", choices=PSF_FAMILIES, default="gauss", help="PSF family (default gauss)"
    )
    p.add_argument(
        "--models",
        nargs="+",
        choices=tuple(MODELS),
        metavar="MODEL",
        help="PSF models to fit to the kernel (default: all but box; fewer is faster)",
    )
    p.add_argument("--title", default="defocus report", help="page title")
    add_input_options(p)
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..report import report_page, report_section

    out = Path(args.output)
    if out.suffix.lower() not in (".html", ".htm"):
        raise BadInputError(f"{out}: the report is HTML; give a name ending in .html")
    if out.is_dir():
        raise BadInputError(f"{out}: is a directory; give the name of the page to write")
    inputs = [*args.images, *([args.sharp] if args.sharp else [])]
    check_plan(inputs, [(out, None)], overwrite=args.overwrite)
    sharp = read_input(args.sharp, args) if args.sharp else None
    sections, failures = [], []

    def work(path: str) -> None:
        try:
            with progress_bar("report") as progress:
                sec = report_section(
                    read_input(path, args),
                    sharp=sharp,
                    psf=args.psf,
                    name=Path(path).name,
                    models=args.models,
                    progress=progress,
                )
        except Exception as exc:
            failures.append((path, str(exc)))
            raise
        sections.append(sec)
        print(f"{path}: {blur_line(sec.summary['blur'])}", file=sys.stderr)

    code = for_each_image(args.images, work)
    if not sections:
        return code
    page = report_page(sections, title=args.title, failures=failures)
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    print(f"wrote {out} ({len(sections)} image{'s' * (len(sections) > 1)})")
    return code
