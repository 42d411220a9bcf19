"""Options and the per-file loop shared by the sub-commands."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import BadInputError
from .._types import Progress
from ..io import (
    DEFAULT_MAX_PIXELS,
    ImageData,
    PixelSize,
    parse_pixel_size,
    read_image,
    stem_of,
)

__all__ = [
    "MAX_SCALE",
    "add_input_options",
    "check_kernel",
    "check_scale",
    "check_sigma_map",
    "display_name",
    "for_each_image",
    "number",
    "pixel_size_option",
    "progress_bar",
    "read_input",
    "stem_of",
]


#: Largest focus-window sigma (px) the commands accept: the filters cost grows with it.
MAX_SCALE = 64.0


def number(
    low: float, high: float, *, integer: bool = False, open_low: bool = False
) -> Callable[[str], float | int]:
    """An argparse ``type`` accepting a finite number in ``[low, high]`` (``(low, high]``).

    A value outside is refused by the parser itself, before any file is read or written.

    Examples
    --------
    >>> number(1, 8, integer=True)("4")
    4
    >>> number(0, 64, open_low=True)("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be a number in (0, 64], got '0'
    """
    top = "inf)" if high >= 1e300 else f"{high:g}]"
    bottom = "(-inf" if low <= -1e300 else f"{'(' if open_low else '['}{low:g}"
    bounds = f"{bottom}, {top}"

    def parse(text: str) -> float | int:
        what = "a whole number" if integer else "a number"
        try:
            value = float(text)
            if integer and value != int(value):
                raise ValueError
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"must be {what} in {bounds}, got {text!r}") from None
        above_low = low < value if open_low else low <= value
        if not (math.isfinite(value) and above_low and value <= high):
            raise argparse.ArgumentTypeError(f"must be {what} in {bounds}, got {text!r}")
        return int(value) if integer else value

    parse.__name__ = "int" if integer else "float"  # argparse names the type in its errors
    return parse


def pixel_size_option(text: str) -> PixelSize:
    """An argparse ``type`` for ``--pixel-size``: parsed (and range-checked) before any work."""
    try:
        size = parse_pixel_size(text)
    except BadInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    assert size is not None
    return size


def add_input_options(parser: argparse.ArgumentParser) -> None:
    """``--pixel-size``, ``--index`` and ``--max-pixels``, as every image-reading command has."""
    parser.add_argument(
        "--pixel-size",
        type=pixel_size_option,
        metavar="VALUE+UNIT",
        help="override the pixel size from metadata, e.g. 2.5nm or 0.1um",
    )
    parser.add_argument(
        "--index",
        type=number(0, 2**31, integer=True),
        metavar="N",
        help="plane (page) to read from a multi-page file",
    )
    parser.add_argument(
        "--max-pixels",
        type=number(1, 2**62, integer=True),
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"refuse larger images (decompression-bomb guard; default {DEFAULT_MAX_PIXELS})",
    )


def check_kernel(kernel: tuple[int, ...], image: tuple[int, ...], what: str) -> None:
    """Refuse a PSF wider or taller than the image: nothing of the image would be left."""
    if kernel[0] > image[0] or kernel[1] > image[1]:
        raise BadInputError(
            f"{what} is {kernel[0]}x{kernel[1]} px, larger than the {image[0]}x{image[1]} image; "
            "use a smaller PSF, or blur a larger image"
        )


def check_sigma_map(smap: Any, image: tuple[int, ...], path: str | Path) -> None:
    """Refuse a sigma map of another size, or whose largest PSF (±4 sigma) exceeds the image."""
    if tuple(smap.shape) != tuple(image[:2]):
        raise BadInputError(
            f"{path}: the sigma map is {smap.shape[0]}x{smap.shape[1]}, the image "
            f"{image[0]}x{image[1]}; they must match"
        )
    top = float(np.max(smap))
    if not np.isfinite(smap).all() or float(np.min(smap)) < 0:
        raise BadInputError(f"{path}: sigma must be finite and >= 0 everywhere")
    side = 2 * math.ceil(4 * top) + 1
    check_kernel((side, side), image, f"{path}: the PSF for sigma {top:g} px (±4 sigma)")


def check_scale(scale: float, shape: tuple[int, ...], path: str | Path) -> None:
    """Refuse a focus window wider than a quarter of the image: it would average it all."""
    side = min(shape[:2])
    if 4 * scale > side:
        raise BadInputError(
            f"{path}: --scale {scale:g} px is too large for a {shape[0]}x{shape[1]} image "
            f"(at most {side / 4:g} px, a quarter of its shorter side)"
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


def blur_line(blur: dict[str, Any]) -> str:
    """One line for a blur summary: its quantiles, or its verdict when it has none (the
    image does not support a blur value, and no number is printed)."""
    q = blur.get("sigma")
    if q is None:
        return str(blur["verdict"])
    return f"sigma median {q['median']:.2f} px (10-90 %: {q['p10']:.2f}-{q['p90']:.2f} px)"


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
            try:
                work(path)
            except MemoryError:  # the input's size (or an option) asks for more than there is
                raise BadInputError(f"{path}: not enough memory to process it") from None
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


#: Environment variable that forces progress bars on ("1") or off ("0"); by default they show
#: only when stderr is a terminal.
PROGRESS_ENV = "DEFOCUS_PROGRESS"


@contextlib.contextmanager
def progress_bar(desc: str, *, enabled: bool = True) -> Iterator[Progress]:
    """A tqdm bar on stderr, driven by the library's ``progress(done, total, what)`` callbacks.

    The bar shows when ``enabled`` and stderr is a terminal, or when the environment variable
    ``DEFOCUS_PROGRESS=1`` asks for it (``0`` turns it off everywhere). Leaving the block closes
    the bar, whatever the exit, so an error message that follows starts on its own line.

    Examples
    --------
    >>> with progress_bar("demo", enabled=False) as progress:
    ...     progress(1, 2, "first half")
    """
    forced = os.environ.get(PROGRESS_ENV, "").strip()
    show = enabled and (forced == "1" or (forced != "0" and sys.stderr.isatty()))
    bar: Any = None

    def update(done: int, total: int, what: str) -> None:
        nonlocal bar
        if not show:
            return
        if bar is None or bar.total != total or done < bar.n:  # a new run of steps
            if bar is not None:
                bar.close()
            from tqdm import tqdm  # loaded on use, so that the parser builds fast

            bar = tqdm(total=total, desc=desc, file=sys.stderr, dynamic_ncols=True, leave=True)
        bar.set_postfix_str(what, refresh=False)
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()
