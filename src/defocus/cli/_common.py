"""Options and the per-file loop shared by the sub-commands."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .._errors import BadInputError
from ..io import DEFAULT_MAX_PIXELS, ImageData, read_image

__all__ = [
    "add_input_options",
    "display_name",
    "for_each_image",
    "output_dir",
    "read_input",
    "stem_of",
]


def add_input_options(parser: argparse.ArgumentParser) -> None:
    """``--pixel-size``, ``--index`` and ``--max-pixels``, as every image-reading command has."""
    parser.add_argument(
        "--pixel-size",
        metavar="VALUE+UNIT",
        help="override the pixel size from metadata, e.g. 2.5nm or 0.1um",
    )
    parser.add_argument(
        "--index", type=int, metavar="N", help="plane to read from a multi-page file"
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"refuse larger images (decompression-bomb guard; default {DEFAULT_MAX_PIXELS})",
    )


def read_input(path: str | Path, args: argparse.Namespace) -> ImageData:
    """Read one input with the options from :func:`add_input_options`."""
    return read_image(
        path, pixel_size=args.pixel_size, index=args.index, max_pixels=args.max_pixels
    )


def display_name(path: str | Path) -> str:
    """The file name, printable anywhere: bytes that are not UTF-8 are shown as U+FFFD.

    Python keeps such bytes as lone surrogates, which fonts and encoders refuse.

    Examples
    --------
    >>> display_name(os.fsdecode(b"/data/caf\\xe9.tif"))
    'caf\ufffd.tif'
    """
    return os.fsencode(Path(path).name).decode("utf-8", "replace")


def stem_of(path: str | Path) -> str:
    """File name without its image extension(s): ``a.ome.tif`` -> ``a``."""
    name = Path(path).name
    for suffix in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def output_dir(path: str | Path, inputs: Sequence[str | Path]) -> Path:
    """Validate the output folder: it may not be an input file."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"{out}: exists and is not a directory")
    resolved = {Path(p).resolve() for p in inputs}
    if out.resolve() in resolved:
        raise BadInputError(f"{out}: output folder is one of the inputs")
    return out


def for_each_image(
    paths: Sequence[str],
    work: Callable[[str], None],
    *,
    quiet: bool = False,
) -> int:
    """Run ``work`` on each path; report failures per file and carry on.

    Progress goes to stderr when there are several files. Returns the exit code: 0 if all
    succeeded, 2 if any input was bad, 1 if any failed inside defocus.
    """
    code = 0
    n = len(paths)
    for i, path in enumerate(paths, 1):
        if n > 1 and not quiet:
            print(f"[{i}/{n}] {path}", file=sys.stderr, flush=True)
        try:
            work(path)
        except BadInputError as exc:
            msg = str(exc)
            if str(path) not in msg and Path(path).name not in msg:
                msg = f"{path}: {msg}"  # say which file, as the reader's own errors do
            # a non-UTF-8 file name is shown escaped (\udcff) on any stderr, strict or not
            msg = msg.encode("utf-8", "backslashreplace").decode("utf-8")
            print(f"defocus: error: {msg}", file=sys.stderr)
            code = max(code, 2) if code != 1 else 1
            if n == 1:
                return 2
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            print(
                f"defocus: internal error on {path}: {type(exc).__name__}: {exc}", file=sys.stderr
            )
            code = 1
    return code
