"""The ``defocus`` command line: one sub-command per domain, all calling the library functions.

Exit codes (docs/architecture.md): 0 success, 2 bad input (:class:`~defocus.BadInputError`, a
missing file, a bad option, not enough memory for the input), 1 internal failure, 130
interrupted (Ctrl-C), 128 + the signal number when stopped by SIGTERM (143) or SIGHUP (129). An
interrupted command leaves no temporary file behind.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
import warnings
from collections.abc import Collection, Iterator, Sequence
from typing import NoReturn

from .._errors import BadInputError

__all__ = ["COMMANDS", "build_parser", "main"]

# Sub-command modules in this package with their one-line help; each module defines
# ``add_parser(subparsers)`` and sets ``func(args) -> int`` as the parser default.
COMMANDS = {
    "focus": "focus maps, tile grid, profile, sharpest band and in-focus mask",
    "map": "per-pixel blur sigma (px) with confidence, and the focal plane",
    "blur": "blur an image with a PSF model, a kernel file or a sigma map",
    "psf": "render PSF kernels, convert blur sizes, estimate and identify kernels",
    "batch": "QC many images on Dask: one table, resumable, one row per image",
    "deblur": "deconvolve an image with a PSF model, a kernel file, a sigma map or --auto",
    "stack": "fuse a focus stack into one all-in-focus image, with a depth map",
    "zseries": "best focus, blur growth and a height map (µm) from a through-focus series",
    "report": "one self-contained HTML page: image, blur heatmap, focal plane, histograms",
    "demo": "run defocus on the bundled sample images",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line and exit code 2, like bad input
        command = self.prog.removeprefix("defocus").strip()
        self.exit(2, f"defocus: error: {command + ': ' if command else ''}{message}\n")


def build_parser(commands: Collection[str] | None = None) -> argparse.ArgumentParser:
    """Return the top-level argument parser with every sub-command registered.

    ``commands`` names the sub-commands to build in full (default: all); the others are listed
    by name and help only, so that ``defocus --help`` or one command loads no other command's
    modules (each costs scipy and more at import).
    """
    from .. import __version__

    parser = _Parser(
        prog="defocus",
        description="Measure, model and undo blur in images.",
    )
    parser.add_argument("--version", action="version", version=f"defocus {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, text in COMMANDS.items():
        if commands is None or name in commands:
            importlib.import_module(f".{name}", __name__).add_parser(sub)
        else:
            sub.add_parser(name, help=text)
    return parser


class _Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C so that every temporary file is removed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`_Terminated` for the length of one command."""
    names = [n for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers can only be set from the main thread
        return

    def raise_terminated(signum: int, frame: object) -> None:
        raise _Terminated(signum)

    old = {n: signal.signal(getattr(signal, n), raise_terminated) for n in names}
    try:
        yield
    finally:
        for n, handler in old.items():
            signal.signal(getattr(signal, n), handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # the sub-command is the first word; top-level options (--help, --version) take no value
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser([command] if command in COMMANDS else [])
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a bad option (2), --help or --version (0): nothing was run
        return exc.code if isinstance(exc.code, int) else 0
    # numpy, scikit-image and Dask warnings are for developers; what the user must know is
    # printed by the commands themselves
    with warnings.catch_warnings(), _signals_interrupt():
        warnings.simplefilter("ignore")
        try:
            return int(args.func(args) or 0)
        except BadInputError as exc:
            print(f"defocus: error: {exc}", file=sys.stderr)
            return 2
        except MemoryError:
            print(
                "defocus: error: not enough memory for this input and these options; use a "
                "smaller image, smaller options, or the tiled path (defocus map --chunks 2048)",
                file=sys.stderr,
            )
            return 2
        except _Terminated as exc:
            name = signal.Signals(exc.signum).name
            print(f"defocus: stopped by {name}; no partial output was left", file=sys.stderr)
            return 128 + exc.signum
        except KeyboardInterrupt:
            print("defocus: interrupted; no partial output was left", file=sys.stderr)
            return 130
        except Exception as exc:  # internal failure: still one line, but say it is ours
            print(f"defocus: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
