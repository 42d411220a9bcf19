"""QC batches over many files on dask.distributed: one row per file, one table, resumable.

Each file is one task on the cluster: it is read, analysed by the in-memory functions
(:func:`defocus.focus_map`, :func:`defocus.blur_map`, :func:`defocus.kernel.identify`), and its
outputs and its row are written atomically, so a killed batch resumes where it stopped. The
rows of every run into one folder are merged into ``qc.csv`` (and ``qc.parquet`` with pyarrow).

dask.distributed is an optional dependency: ``pip install 'defocus[dask]'``.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ._errors import BadInputError, short_message
from ._optional import distributed
from ._types import Progress, PSFFamily
from .blurmap import blur_map as _blur_map
from .focus import DEFAULT_MEASURE, DEFAULT_SCALE, get_measure
from .io import (
    DEFAULT_MAX_PIXELS,
    atomic_path,
    read_image,
    remove_stale_partials,
    stem_of,
    write_json,
    write_map,
)

__all__ = [
    "MAX_SIGMA",
    "MIN_FOCUS",
    "QC_COLUMNS",
    "TASKS",
    "Task",
    "batch_outputs",
    "earlier_input",
    "file_sha256",
    "qc_one",
    "read_qc_table",
    "require_distributed",
    "run_batch",
    "start_client",
    "write_qc_table",
]

#: What one QC task does to each file.
Task = Literal["focus", "map", "identify"]


def require_distributed() -> Any:
    """Import dask.distributed, or raise ImportError saying how to install it."""
    return distributed()


#: Tasks :func:`run_batch` knows.
TASKS = ("focus", "map", "identify")
#: Columns of the QC table, in order.
QC_COLUMNS = (
    "input",
    "sha256",
    "task",
    "status",
    "height",
    "width",
    "focus_score",
    "sigma_p10",
    "sigma_median",
    "sigma_p90",
    "sharpest_axis",
    "sharpest_position",
    "out_of_focus",
    "psf_model",
    "psf_diameter",
    "psf_confidence",
    "pixel_size",
    "error",
)
#: Default out-of-focus rule for ``task="focus"``: a mean gradient_ratio below this. On
#: scikit-image's natural samples a Gaussian blur of sigma 2 px brings it to 0.4-1.3.
MIN_FOCUS = 1.0
#: Default out-of-focus rule for ``task="map"`` and ``"identify"``: blur sigma above this (px).
MAX_SIGMA = 2.0


def _finite(x: Any) -> float | None:
    x = float(x)
    return round(x, 6) if math.isfinite(x) else None


# Column types, to read rows of an earlier run's qc.csv back as they were written.
_QC_INT = ("height", "width")
_QC_FLOAT = (
    "focus_score",
    "sigma_p10",
    "sigma_median",
    "sigma_p90",
    "sharpest_position",
    "psf_diameter",
    "psf_confidence",
)


def batch_outputs(stem: str, task: str) -> list[str]:
    """Names of the files one image's QC task writes, its row (``<stem>.qc.<task>.json``) last.

    They carry ``.qc.``, so a batch never writes over what ``defocus focus`` or ``map`` wrote.

    Examples
    --------
    >>> batch_outputs("a", "map")
    ['a.qc.sigma.tif', 'a.qc.confidence.tif', 'a.qc.map.json']
    """
    maps = {
        "focus": [f"{stem}.qc.focus.tif"],
        "map": [f"{stem}.qc.sigma.tif", f"{stem}.qc.confidence.tif"],
        "identify": [],
    }[task]
    return [*maps, f"{stem}.qc.{task}.json"]


def _outputs(stem: str, task: str) -> list[str]:
    return batch_outputs(stem, task)[:-1]


def _marker(outdir: Path, stem: str, task: str) -> Path:
    return outdir / batch_outputs(stem, task)[-1]


def file_sha256(path: str | os.PathLike) -> str | None:
    """SHA-256 of a file's content, or None where it cannot be read."""
    import hashlib

    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def _qc_work(path: str, outdir: Path, stem: str, task: str, opts: dict[str, Any]) -> dict:
    from .focalplane import focal_plane
    from .focus import focus_profile, sharpest_band

    img = read_image(
        path, pixel_size=opts["pixel_size"], index=opts["index"], max_pixels=opts["max_pixels"]
    )
    lum = img.luminance
    row: dict[str, Any] = {
        "height": lum.shape[0],
        "width": lum.shape[1],
        "pixel_size": None if img.pixel_size is None else str(img.pixel_size),
    }
    fmap = get_measure(opts["measure"]).func(lum, scale=opts["scale"])
    row["focus_score"] = _finite(fmap.mean(dtype=np.float64))
    if task == "focus":
        band = sharpest_band(focus_profile(fmap, axis="rows"))
        row.update(sharpest_axis="rows", sharpest_position=_finite(band.peak))
        row["out_of_focus"] = bool(row["focus_score"] < opts["min_focus"])
        write_map(outdir / _outputs(stem, task)[0], fmap, pixel_size=img.pixel_size)
    elif task == "map":
        bm = _blur_map(lum, psf=opts["psf"], pixel_size=img.pixel_size)
        q = bm.summary()["sigma"]  # None: the image supports no blur value
        nan = {"p10": math.nan, "median": math.nan, "p90": math.nan}
        row.update({f"sigma_{k}": _finite(v) for k, v in (q or nan).items()})
        with contextlib.suppress(BadInputError):  # no confident measurement: no band
            fp = focal_plane(bm)
            if fp.significant:  # otherwise no line to report
                row.update(sharpest_axis=fp.axis, sharpest_position=_finite(fp.position))
        row["out_of_focus"] = None if q is None else bool(q["median"] > opts["max_sigma"])
        sigma_file, confidence_file = _outputs(stem, task)
        write_map(outdir / sigma_file, bm.sigma, pixel_size=img.pixel_size)
        write_map(outdir / confidence_file, bm.confidence, pixel_size=img.pixel_size)
    else:
        from .kernel import identify

        # One uniform blur for the whole image: its sigma fills sigma_median, and p10/p90,
        # which describe a spread, stay empty.
        ident = identify(lum)
        row.update(
            psf_model=ident.model,
            psf_diameter=None if ident.diameter is None else _finite(ident.diameter),
            psf_confidence=_finite(ident.confidence),
            sigma_median=_finite(ident.sigma),
        )
        row["out_of_focus"] = bool(ident.sigma > opts["max_sigma"])
    return row


def qc_one(path: str, outdir: str | os.PathLike, task: str, opts: dict[str, Any]) -> dict:
    """Run one QC task on one file and write its outputs; never raises for a bad file.

    The row is written last, as ``<stem>.<task>.json``, and marks the file as done: a batch
    that is run again skips it. A failure is returned in the row's ``error`` column (and not
    marked done, so that a rerun tries the file again).
    """
    out = Path(outdir)
    stem = stem_of(path)
    row: dict[str, Any] = dict.fromkeys(QC_COLUMNS)
    row.update(input=str(path), task=task)
    try:
        row.update(_qc_work(str(path), out, stem, task, opts))
        row["sha256"] = file_sha256(path)
    except BadInputError as exc:
        row.update(status="bad input", error=str(exc))
        return row
    except MemoryError:
        row.update(status="bad input", error=f"{path}: not enough memory to analyse it")
        return row
    except Exception as exc:
        row.update(status="failed", error=f"internal error: {type(exc).__name__}: {exc}")
        return row
    row["status"] = "done"
    write_json(_marker(out, stem, task), row)
    return row


def earlier_input(outdir: str | os.PathLike, stem: str, task: str) -> str | None:
    """The input whose row ``<stem>.qc.<task>.json`` in ``outdir`` holds, or None."""
    import json

    try:
        row = json.loads(_marker(Path(outdir), stem, task).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return str(row["input"]) if isinstance(row, dict) and row.get("input") else None


def _load_done(path: str, outdir: Path, task: str) -> dict | None:
    """The row of a file a previous run completed, or None."""
    import json

    stem = stem_of(path)
    marker = _marker(outdir, stem, task)
    if not marker.is_file():
        return None
    try:
        row = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if row.get("input") != str(path) or not all(
        (outdir / name).is_file() for name in _outputs(stem, task)
    ):
        return None
    if row.get("sha256") and row["sha256"] != file_sha256(path):
        return None  # the file changed since: analyse it again
    return {**dict.fromkeys(QC_COLUMNS), **row, "status": "skipped (done before)"}


def _qc_key(row: dict) -> tuple[str, str, str]:
    inp = str(row.get("input") or "")
    return os.path.realpath(inp), str(row.get("sha256") or ""), str(row.get("task") or "")


def _typed(row: dict[str, str]) -> dict[str, Any]:
    """A row read back from CSV with the types it was written with."""
    out: dict[str, Any] = {}
    for k in QC_COLUMNS:
        v = row.get(k)
        if v in (None, ""):
            out[k] = None
        elif k in _QC_INT:
            out[k] = int(float(v))
        elif k in _QC_FLOAT:
            out[k] = float(v)
        elif k == "out_of_focus":
            out[k] = v == "True"
        else:
            out[k] = v
    return out


@contextlib.contextmanager
def _locked(outdir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``outdir/.qc.lock`` (POSIX ``flock``; a no-op elsewhere)."""
    try:
        import fcntl
    except ImportError:  # Windows: runs into one folder are not serialised
        yield
        return
    with open(outdir / ".qc.lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def write_qc_table(outdir: str | os.PathLike, rows: Sequence[dict]) -> list[Path]:
    """Merge ``rows`` into ``qc.csv`` (and ``qc.parquet`` when pyarrow is importable).

    Rows an earlier run wrote are kept; a row for the same input file (resolved path), content
    (SHA-256) and task replaces the earlier one. The read, merge and write happen under a lock
    on ``.qc.lock``, so batches run at the same time into one folder lose no row, and each file
    is replaced atomically.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> row = dict.fromkeys(QC_COLUMNS) | {"input": "a.tif", "focus_score": 2.5}
    >>> [p.name for p in write_qc_table(d, [row])][0]
    'qc.csv'
    >>> _ = write_qc_table(d, [row | {"input": "b.tif"}])
    >>> [r["input"] for r in read_qc_table(d)]
    ['a.tif', 'b.tif']
    """
    import csv
    import io as _stdio

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        merged = {_qc_key(r): r for r in read_qc_table(out)}
        for row in rows:
            merged.pop(_qc_key(row), None)  # a newer row goes last, in this run's order
            merged[_qc_key(row)] = row
        table = list(merged.values())
        buf = _stdio.StringIO()
        writer = csv.DictWriter(buf, fieldnames=QC_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in table:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in QC_COLUMNS})
        written = [out / "qc.csv"]
        with atomic_path(written[0]) as tmp:
            tmp.write_text(buf.getvalue(), encoding="utf-8")
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            return written
        arrow = pa.Table.from_pylist([{k: r.get(k) for k in QC_COLUMNS} for r in table])
        written.append(out / "qc.parquet")
        with atomic_path(written[1]) as tmp:
            pq.write_table(arrow, tmp)
    return written


def read_qc_table(outdir: str | os.PathLike) -> list[dict]:
    """The rows of ``outdir/qc.csv`` (typed as written), or ``[]`` where there is none.

    A table that cannot be parsed is refused rather than silently replaced.
    """
    import csv

    f = Path(outdir) / "qc.csv"
    if not f.is_file():
        return []
    try:
        with open(f, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "input" not in reader.fieldnames:
                raise ValueError("no header with an input column")
            return [_typed(r) for r in reader]
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise BadInputError(
            f"{f}: cannot be merged ({short_message(exc)}); move it away or choose another -o"
        ) from None


def start_client(
    *, workers: int | None = None, scheduler: str | None = None, processes: bool = True
) -> Any:
    """A dask.distributed Client: attached to ``scheduler``, or on a new LocalCluster.

    The LocalCluster has ``workers`` single-threaded workers (default: one per CPU core),
    separate processes unless ``processes=False``; close the client and its cluster when done.
    """
    import logging

    dist = distributed()
    if scheduler:
        try:
            # not the process's default: a Client that fails to connect would otherwise stay
            # the default until garbage-collected, and every later dask compute would wait on it
            return dist.Client(scheduler, timeout="20s", set_as_default=False)
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            raise BadInputError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    n = workers or os.cpu_count() or 1
    if n < 1:
        raise BadInputError(f"--workers must be at least 1, got {n}")
    cluster = dist.LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=processes,
        # any free port: None still serves on 8787, which another cluster may hold
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    return dist.Client(cluster)


def run_batch(
    paths: Sequence[str | os.PathLike],
    outdir: str | os.PathLike,
    *,
    task: Task = "focus",
    client: Any = None,
    measure: str = DEFAULT_MEASURE,
    scale: float = DEFAULT_SCALE,
    psf: PSFFamily = "gauss",
    min_focus: float = MIN_FOCUS,
    max_sigma: float = MAX_SIGMA,
    pixel_size: str | None = None,
    index: int | None = None,
    max_pixels: int | None = None,
    progress: Progress | None = None,
    overwrite: bool = False,
) -> list[dict]:
    """QC many files on a dask.distributed cluster; one row per file, in input order.

    Each file is one task: it is read, analysed, and its outputs are written atomically to
    ``outdir`` (``<stem>.qc.focus.tif`` for ``task="focus"``; ``<stem>.qc.sigma.tif`` and
    ``<stem>.qc.confidence.tif`` for ``"map"``; nothing but the row for ``"identify"``), then
    its row as ``<stem>.qc.<task>.json``. Files whose row already exists (same path, same
    content) are skipped, so a killed batch resumes where it stopped; temporary files a killed
    run left are removed first. A bad file gets its message in the ``error`` column and does
    not stop the others. The rows are merged into ``qc.csv`` (and ``qc.parquet`` with pyarrow)
    with those of earlier runs into the same folder (see :func:`write_qc_table`).

    Parameters
    ----------
    paths : sequence of path
        Image files; their names (without extension) must differ, and must not be those of
        other files whose rows are already in ``outdir``.
    outdir : path
        Output folder; created if needed.
    task : {"focus", "map", "identify"}
        ``focus``: focus map, score and sharpest band; ``map``: blur map, sigma percentiles
        and focal plane; ``identify``: one uniform blur identified blindly by
        :func:`defocus.kernel.identify` (``psf_model``, ``psf_diameter`` for a disk,
        ``psf_confidence``, and its sigma in ``sigma_median``). Every task reports the mean
        focus score.
    client : distributed.Client, optional
        Where to run; default: a LocalCluster from :func:`start_client`, closed at the end.
    measure, scale
        Focus measure and window for the focus score.
    psf
        PSF family for ``task="map"``.
    min_focus, max_sigma : float
        Out-of-focus rules: ``focus_score < min_focus`` for ``focus``, median sigma (px)
        ``> max_sigma`` for ``map`` and ``identify``.
    pixel_size, index, max_pixels
        As for :func:`defocus.read_image`.
    progress : callable, optional
        Called as ``progress(done, total, what)`` as each file finishes (see
        :data:`defocus._types.Progress`); files done by an earlier run are not counted.
    overwrite : bool
        Replace the outputs of another file with the same name (without extension) that an
        earlier run wrote into ``outdir``, instead of refusing.

    Returns
    -------
    list of dict
        The QC rows (keys :data:`QC_COLUMNS`).
    """
    if task not in TASKS:
        raise BadInputError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    get_measure(measure)
    files = [str(p) for p in paths]
    stems: dict[str, str] = {}
    for p in files:
        s = stem_of(p)
        if s in stems and stems[s] != p:
            raise BadInputError(f"{stems[s]} and {p} would both write {s}.qc.*; rename one")
        stems[s] = p
    out = Path(outdir)
    for s, p in stems.items():
        other = earlier_input(out, s, task)
        if not overwrite and other is not None and os.path.realpath(other) != os.path.realpath(p):
            raise BadInputError(
                f"{p}: {out / batch_outputs(s, task)[-1]} holds the results of {other}; "
                "rename one, or choose another -o"
            )
    if out.exists() and not out.is_dir():
        raise BadInputError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out)
    read_qc_table(out)  # refuse a table that cannot be merged before any work
    opts = {
        "measure": measure,
        "scale": scale,
        "psf": psf,
        "min_focus": float(min_focus),
        "max_sigma": float(max_sigma),
        "pixel_size": pixel_size,
        "index": index,
        "max_pixels": DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels,
    }
    rows: dict[str, dict] = {}
    for p in dict.fromkeys(files):
        done = _load_done(p, out, task)
        if done is not None:
            rows[p] = done
    todo = [p for p in dict.fromkeys(files) if p not in rows]
    failed = 0
    own = client is None
    if todo:
        as_completed = distributed().as_completed
        client = start_client() if own else client
        try:
            futures = {
                client.submit(qc_one, p, str(out), task, opts, key=f"qc-{task}-{i}-{p}"): p
                for i, p in enumerate(todo)
            }
            for fut in as_completed(futures, loop=client.loop):  # not the default client
                p = futures[fut]
                try:
                    row = fut.result()
                except Exception as exc:  # the worker itself died (memory, crash)
                    row = dict.fromkeys(QC_COLUMNS) | {
                        "input": p,
                        "task": task,
                        "status": "failed",
                        "error": f"worker lost: {type(exc).__name__}: {exc}",
                    }
                rows[p] = row
                failed += row["status"] != "done"
                if progress is not None:
                    progress(len(rows) - (len(files) - len(todo)), len(todo), f"{failed} failed")
        finally:
            if own:
                cluster = client.cluster
                client.close()
                if cluster is not None:
                    cluster.close()
    ordered = [rows[p] for p in files]
    write_qc_table(out, ordered)
    return ordered
