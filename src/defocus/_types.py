"""Types shared by the public signatures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

__all__ = ["Family", "PSFFamily", "Progress", "progress_part"]

#: The progress protocol of every long-running function: ``progress(done, total, what)``, called
#: after each step with the steps done so far, their total, and a few words on the last one.
#: The command line turns it into a tqdm bar on stderr.
Progress = Callable[[int, int, str], None]

#: The PSF families of sigma maps (:data:`defocus.psf.FAMILIES`).
Family = Literal["gauss", "disk"]
#: The PSF families of the blur map, which adds "auto" (:data:`defocus.blurmap.PSF_FAMILIES`).
PSFFamily = Literal[Family, "auto"]


def progress_part(progress: Progress | None, start: int, stop: int, total: int) -> Progress | None:
    """The callback of one part of a task: its own steps map onto ``start..stop`` of ``total``.

    Lets a function that runs several long calls report one run of steps, ``done`` never
    decreasing, whatever each call counts in.

    Examples
    --------
    >>> seen = []
    >>> part = progress_part(lambda d, t, w: seen.append((d, t, w)), 50, 100, 100)
    >>> part(1, 4, "a"); part(4, 4, "b")
    >>> seen
    [(62, 100, 'a'), (100, 100, 'b')]
    """
    if progress is None:
        return None
    report = progress

    def part(done: int, steps: int, what: str) -> None:
        report(start + (stop - start) * min(done, steps) // max(steps, 1), total, what)

    return part
