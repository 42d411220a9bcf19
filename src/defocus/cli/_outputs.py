"""The output planner: every command names all its outputs before it computes anything.

A plan is refused, with one line and exit code 2, when an output would replace an input (also
through a symlink, ``..``, a hard link or another spelling of the name on a case-insensitive
file system), when two outputs are the same file, or when an output already exists and
``--overwrite`` was not given. Each command's outputs carry its own suffix (see the README's
"Command line" section), so commands sharing a folder never collide.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from .._errors import BadInputError
from ..io import remove_stale_partials, stem_of

__all__ = [
    "IMAGE_SUFFIXES",
    "add_output_options",
    "check_image_name",
    "check_plan",
    "output_names",
    "resolved",
]


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """``--overwrite``, as every writing command has."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace outputs that already exist (never an input)",
    )


def output_names(path: str, out: Path, command: str, **endings: str) -> dict[str, Path]:
    """A command's outputs for one input: ``name -> out/<stem>.<command>.<ending>``.

    Examples
    --------
    >>> output_names("a/cam.tif", Path("o"), "blur", summary="json")
    {'summary': PosixPath('o/cam.blur.json')}
    """
    stem = stem_of(path)
    return {name: out / f"{stem}.{command}.{end}" for name, end in endings.items()}


IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


def check_image_name(path: str | os.PathLike) -> None:
    """Refuse an output image name whose format cannot be written, before any work."""
    if not os.fsdecode(path).lower().endswith(IMAGE_SUFFIXES):
        raise BadInputError(
            f"{os.fsdecode(path)}: unsupported output format; name it .tif, .png or .jpg"
        )


def resolved(path: str | os.PathLike) -> str:
    """The path with symlinks and ``..`` resolved, in the file system's case convention.

    Unlike :meth:`pathlib.Path.resolve` before Python 3.13, a symlink loop does not raise.

    Examples
    --------
    >>> resolved("/a/b/../c") == os.path.normcase(os.path.realpath("/a/c"))
    True
    """
    return os.path.normcase(os.path.realpath(os.fsdecode(path)))


def _same(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` are one file: one resolved name, or one inode."""
    if resolved(a) == resolved(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links, and case-insensitive names that exist
    except OSError:
        return False


def _zarr_above(path: Path) -> Path | None:
    """The Zarr store that holds ``path`` (a folder above it), or None."""
    for folder in path.parents:
        if folder.is_dir() and (
            folder.suffix.lower() == ".zarr"
            or any((folder / n).exists() for n in (".zarray", ".zgroup", "zarr.json"))
        ):
            return folder
    return None


def _inside(inner: str, outer: str) -> bool:
    return inner.startswith(outer.rstrip(os.sep) + os.sep)


def check_plan(
    inputs: Sequence[str | os.PathLike],
    outputs: Iterable[tuple[Path, str | os.PathLike | None]],
    *,
    overwrite: bool = False,
    may_exist: Iterable[Path] = (),
) -> list[Path]:
    """Refuse an output plan that would lose data; sweep a killed run's temporary files.

    Parameters
    ----------
    inputs : sequence of path
        Every file or store the command reads.
    outputs : iterable of (Path, path or None)
        Every file or store the command may write, each with the input it derives from (named
        in the message when two outputs collide), or None.
    overwrite : bool
        Allow outputs that already exist to be replaced (inputs never are).
    may_exist : iterable of Path
        Outputs that are merged or resumed rather than replaced (a batch's QC table).

    Returns
    -------
    list of Path
        The planned outputs, in order.

    Raises
    ------
    BadInputError
        An output is an input, lies inside an input or any Zarr store, or holds an input, two
        outputs are one file, an output exists (without ``overwrite``), or an output's folder
        is a file.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "a.png").write_bytes(b"x")
    >>> [p.name for p in check_plan([d / "a.png"], [(d / "a.focus.json", d / "a.png")])]
    ['a.focus.json']
    >>> check_plan([d / "a.png"], [(d / "sub" / ".." / "a.png", None)])
    Traceback (most recent call last):
    ...
    defocus._errors.BadInputError: ... would replace the input .../a.png; choose another -o
    """
    keep = {resolved(p) for p in may_exist}
    plan = [(Path(out), source) for out, source in outputs]
    ins = [(p, resolved(p)) for p in inputs]
    seen: dict[str, str | os.PathLike | None] = {}
    for out, source in plan:
        key = resolved(out)
        parent = out.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if parent.exists() and not parent.is_dir():
            raise BadInputError(f"{parent}: is a file, not a folder; cannot write {out} there")
        store = _zarr_above(out)
        if store is not None:
            raise BadInputError(f"{out}: lies inside the Zarr store {store}; choose another -o")
        for given, ikey in ins:
            if key == ikey or _same(out, given):
                raise BadInputError(f"{out}: would replace the input {given}; choose another -o")
            if _inside(ikey, key):
                raise BadInputError(f"{out}: would replace a folder holding the input {given}")
            if _inside(key, ikey):
                raise BadInputError(f"{out}: lies inside the input {given}; choose another -o")
        # outputs that differ only in case are one file on case-insensitive file systems
        fold = key.casefold()
        if fold in seen:
            first_source = seen[fold]
            if first_source is not None and source is not None and first_source != source:
                raise BadInputError(
                    f"{first_source} and {source} would both write {out}; rename one, or "
                    "run them into different folders"
                )
            raise BadInputError(f"{out}: planned twice; give distinct output names")
        seen[fold] = source
        if (os.path.lexists(out)) and key not in keep and not overwrite:
            raise BadInputError(
                f"{out}: already exists (an earlier output?); give --overwrite to replace it, "
                "or another -o"
            )
    for folder in {out.parent for out, _ in plan}:
        if folder.is_dir():
            remove_stale_partials(folder)
    return [out for out, _ in plan]
