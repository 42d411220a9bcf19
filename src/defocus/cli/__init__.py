"""The ``defocus`` command line: one sub-command per domain, all calling the library functions.

Exit codes follow DESIGN.md: 0 success, 2 bad input (:class:`~defocus.BadInputError`, a missing
file, a bad option), 1 internal failure, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .._errors import BadInputError

__all__ = ["main"]

# Sub-command modules in this package; each defines ``add_parser(subparsers)`` and sets
# ``func(args) -> int`` as the parser default.
_COMMANDS = ("focus", "map", "blur", "psf", "batch", "deblur", "stack", "report", "demo")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit code 2, like bad input
        self.exit(2, f"{self.prog}: error: {message}\n")


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BadInputError as exc:
        print(f"defocus: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("defocus: interrupted; no partial output was left", file=sys.stderr)
        return 130
    except Exception as exc:  # internal failure: still one line, but say it is ours
        print(f"defocus: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
