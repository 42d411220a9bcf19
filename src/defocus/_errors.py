"""Exceptions shared by every module.

The CLI maps :class:`BadInputError` to exit code 2 and any other exception to exit code 1, so
raise it (with a one-line message that says what is wrong) whenever the caller's input, not our
code, is at fault.
"""

from __future__ import annotations

__all__ = ["BadInputError"]


class BadInputError(ValueError):
    """The input (file, array or parameter) cannot be used; the message says why, in one line."""
