"""Exceptions shared by every module.

The CLI maps :class:`BadInputError` to exit code 2 and any other exception to exit code 1, so
raise it (with a one-line message that says what is wrong) whenever the caller's input, not our
code, is at fault.
"""

from __future__ import annotations

__all__ = ["BadInputError", "short_message"]


class BadInputError(ValueError):
    """The input (file, array or parameter) cannot be used; the message says why, in one line."""


def short_message(exc: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), or its type's name.

    Examples
    --------
    >>> short_message(ValueError("bad tile" + chr(10) + "second line"))
    'bad tile'
    """
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
