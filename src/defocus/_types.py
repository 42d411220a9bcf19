"""Types shared by the public signatures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

__all__ = ["PSFFamily", "Progress"]

#: The progress protocol of every long-running function: ``progress(done, total, what)``, called
#: after each step with the steps done so far, their total, and a few words on the last one.
#: The command line turns it into a tqdm bar on stderr.
Progress = Callable[[int, int, str], None]

#: The PSF families of the blur map (:data:`defocus.blurmap.PSF_FAMILIES`).
PSFFamily = Literal["gauss", "disk", "auto"]
