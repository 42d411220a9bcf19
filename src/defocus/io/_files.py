"""Files: input checks, and atomic writes that never leave a partial output.

Writers write to a hidden temporary file (or folder) in the destination folder and rename it into
place. The temporary name carries the writer's process id and host, so that a later run can
remove what a killed writer left (:func:`remove_stale_partials`) without touching a live one's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .._errors import BadInputError

__all__ = ["atomic_dir", "atomic_path", "remove_stale_partials", "scratch_path", "stem_of"]


def _check_path(path: str | bytes | os.PathLike) -> Path:
    # bytes paths (non-UTF-8 names on POSIX) become str with surrogate escapes, which the OS
    # maps back to the same bytes
    p = Path(os.fsdecode(path))
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            raise BadInputError(f"{p}: is a broken symlink (its target does not exist)") from None
        raise BadInputError(f"{p}: no such file") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BadInputError(f"{p}: is a symlink loop, not an image file") from None
        raise BadInputError(f"{p}: cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise BadInputError(f"{p}: is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block, a device never ends
        raise BadInputError(f"{p}: not a regular file (a pipe, socket or device)")
    if st.st_size == 0:
        raise BadInputError(f"{p}: file is empty")
    if not os.access(p, os.R_OK):
        raise BadInputError(f"{p}: permission denied")
    return p


def _is_tiff(p: Path) -> bool:
    with open(p, "rb") as fh:
        magic = fh.read(4)
    return magic[:2] in (b"II", b"MM") and magic[2:4] in (b"*\x00", b"\x00*", b"+\x00", b"\x00+")


def _mp(n: int) -> str:
    x = n / 1e6
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _tmp_prefix(stem: str) -> str:
    # the writer's process id and host name let a rerun tell a killed writer's leftovers
    # from a live writer's temporary file
    return f".{stem}.{os.getpid()}@{_host()}."


def _host() -> str:
    return socket.gethostname().replace(".", "-")


# a temporary name: "." stem "." pid "@" host "." random ".partial" suffix
_PARTIAL = re.compile(r"^\..*\.(?P<pid>[0-9]+)@(?P<host>[^.]+)\..*\.partial(\.|$)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or no such process id at all
        return False
    except PermissionError:  # another user's
        return True
    return True


def remove_stale_partials(folder: str | os.PathLike) -> int:
    """Delete the temporary files and folders that killed writers on this host left in ``folder``.

    A writer's temporary name carries its process id and host (see :func:`atomic_path`); one
    whose process is gone is removed, a live writer's is kept. Returns how many were removed.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / f".a.{2**22 + 7}@{_host()}.x1.partial.tif").write_bytes(b"")
    >>> remove_stale_partials(d), list(d.iterdir())
    (1, [])
    """
    if os.name != "posix":  # os.kill(pid, 0) only probes on POSIX
        return 0

    host, n = _host(), 0
    try:
        entries = list(os.scandir(os.fspath(folder)))
    except OSError:
        return 0
    for entry in entries:
        m = _PARTIAL.match(entry.name)
        if m is None or m["host"] != host or int(m["pid"]) == os.getpid():
            continue
        if _alive(int(m["pid"])):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
        n += 1
    return n


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    The temporary name keeps the extension so that writers choosing a format by suffix work. On
    any exception the temporary file is removed and ``path`` is left as it was. A process
    killed outright (SIGKILL, power loss) cannot clean up: its hidden ``.partial`` file is
    removed by the next write to the same ``path``, and ``path`` itself is never partial.

    Examples
    --------
    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "x.txt")
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> Path(target).read_text()
    'done'
    """
    dest = Path(os.fsdecode(path))
    parent = dest.parent
    suffix = f".partial{''.join(dest.suffixes)}"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(parent)
        fd, tmp_name = tempfile.mkstemp(dir=parent, prefix=_tmp_prefix(dest.stem), suffix=suffix)
    except OSError as exc:
        raise BadInputError(f"cannot write to {parent}: {exc.strerror}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private (0600); give the output the usual umask permissions
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BadInputError(f"cannot write {dest}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def scratch_path(near: str | os.PathLike, name: str) -> Path:
    """A hidden path beside ``near`` for intermediate data that no output keeps.

    Its name marks it as this process's temporary, so :func:`remove_stale_partials` removes it
    if the process is killed before it cleans up.

    Examples
    --------
    >>> scratch_path("/data/out.zarr", "tiles.zarr").name.endswith(".tiles.partial.zarr")
    True
    """
    near = Path(near)
    stem, _, suffix = name.partition(".")
    return near.parent / f"{_tmp_prefix(near.name)}{stem}.partial.{suffix}".rstrip(".")


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` only on success."""

    path.parent.mkdir(parents=True, exist_ok=True)
    # the writer's pid in the name lets the next run remove what a killed one left
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_tmp_prefix(path.name), suffix=".partial"))
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def stem_of(path: str | os.PathLike) -> str:
    """File name without its image extension(s): ``a.ome.tif`` -> ``a``.

    Examples
    --------
    >>> stem_of("/data/a.ome.tif"), stem_of("b.png")
    ('a', 'b')
    """
    name = Path(path).name
    for suffix in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem
