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
from collections.abc import Iterator, Sequence
from typing import NoReturn

from .._errors import BadInputError

__all__ = ["main"]

# Sub-command modules in this package; each defines ``add_parser(subparsers)`` and sets
# ``func(args) -> int`` as the parser default.
_COMMANDS = (
    "focus",
    "map",
    "blur",
    "psf",
    "batch",
    "deblur",
    "stack",
    "zseries",
    "report",
    "demo",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line and exit code 2, like bad input
        command = self.prog.removeprefix("defocus").strip()
        self.exit(2, f"defocus: error: {command + ': ' if command else ''}{message}\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level argument parser with every sub-command registered."""
    from .. import __version__

    parser = _Parser(
        prog="defocus",
        description="Measure, model and undo blur in images.",
    )
    parser.add_argument("--version", action="version", version=f"defocus {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in _COMMANDS:
        importlib.import_module(f".{name}", __name__).add_parser(sub)
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
    parser = build_parser()
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
