"""OME-Zarr (NGFF 0.4) output: multiscale maps with their physical scale, written atomically.

The store is written with zarr-python (format 2, "/" chunk keys, as NGFF 0.4 asks) and its
metadata follows the NGFF 0.4 specification: ``multiscales`` with ``axes`` (UDUNITS-2 units),
per-level ``scale`` and ``translation``, and ``omero`` channel labels and windows. The test suite
reads every store back with ome-zarr-py's reader, napari's reference implementation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._errors import BadInputError
from .._optional import dask_array
from .._types import Progress
from ._files import atomic_dir
from ._lazy import _ngff
from ._units import NGFF_UNITS, PixelSize, parse_pixel_size

if TYPE_CHECKING:
    import dask.array as da

__all__ = ["read_ome_zarr", "write_ome_zarr"]


class _TaskProgress:
    """Report finished Dask tasks to a ``progress(done, total, what)`` callable while active."""

    def __init__(self, progress: Progress | None, what: str) -> None:
        self.progress, self.what = progress, what
        self.callback: Any = None

    def __enter__(self) -> None:
        if self.progress is None:
            return
        from dask.callbacks import Callback

        report, what = self.progress, self.what

        def posttask(key: Any, result: Any, dsk: Any, state: dict, worker_id: Any) -> None:
            done = len(state["finished"])
            report(done, done + sum(len(state[k]) for k in ("ready", "waiting", "running")), what)

        self.callback = Callback(posttask=posttask)
        self.callback.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self.callback is not None:
            self.callback.__exit__(*exc)


def _ngff_metadata(
    name: str,
    n_levels: int,
    n_channels: int,
    pixel_size: PixelSize | None,
    channel_names: Sequence[str],
    windows: Sequence[tuple[float, float]],
) -> dict[str, Any]:
    sy, sx = (1.0, 1.0) if pixel_size is None else (pixel_size.y, pixel_size.x)
    unit = {} if pixel_size is None else {"unit": NGFF_UNITS[pixel_size.unit]}
    axes = [
        {"name": "c", "type": "channel"},
        {"name": "y", "type": "space", **unit},
        {"name": "x", "type": "space", **unit},
    ]
    datasets = []
    for k in range(n_levels):
        f = 2.0**k
        # a 2^k block mean is centred (2^k - 1) / 2 level-0 pixels from the block's first pixel
        shift = (f - 1) / 2
        datasets.append(
            {
                "path": str(k),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [1.0, sy * f, sx * f]},
                    {"type": "translation", "translation": [0.0, sy * shift, sx * shift]},
                ],
            }
        )
    channels = [
        {
            "label": label,
            "color": "FFFFFF",
            "active": True,
            "window": {"start": lo, "end": hi, "min": lo, "max": hi},
        }
        for label, (lo, hi) in zip(channel_names, windows, strict=True)
    ]
    return {
        "multiscales": [
            {
                "version": "0.4",
                "name": name,
                "axes": axes,
                "datasets": datasets,
                "type": "mean",
                "metadata": {"method": "2 x 2 block mean (dask.array.coarsen)"},
            }
        ],
        "omero": {"version": "0.4", "channels": channels[:n_channels], "rdefs": {}},
    }


def write_ome_zarr(
    path: str | os.PathLike,
    data: Any,
    *,
    pixel_size: str | PixelSize | None = None,
    channel_names: Sequence[str] | None = None,
    chunks: int = 1024,
    min_size: int = 256,
    attrs: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> Path:
    """Write a (C, H, W) or (H, W) map as a multiscale OME-Zarr image (NGFF 0.4), atomically.

    Level 0 is ``data`` itself; each further level is the 2 x 2 block mean of the one before,
    read back from the store (so a lazy ``data`` is computed once), until the larger side is
    at most ``min_size``. Each level's ``scale`` and ``translation`` give the physical pixel
    size and the block centres, with the unit on the axes, so napari and other NGFF readers
    show the map at its physical scale. The store is built in a hidden folder beside ``path``
    and renamed into place, so a killed run leaves no half-written store under ``path``.

    Parameters
    ----------
    path : str or path-like
        Output ``.zarr`` folder; replaced if it exists.
    data : ndarray or dask array
        Map(s) to write, any real dtype.
    pixel_size : str or PixelSize, optional
        Physical pixel size of level 0.
    channel_names : sequence of str, optional
        One label per channel (NGFF ``omero`` metadata).
    chunks : int
        Zarr chunk side, px.
    min_size : int
        Stop adding levels once the larger side is at most this.
    attrs : dict, optional
        Extra JSON attributes stored on the image group.
    progress : callable, optional
        Called as ``progress(done, total, what)`` as the tasks that compute and store each
        level finish (Dask's local schedulers; a distributed client reports nothing here).

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile, os, json
    >>> out = os.path.join(tempfile.mkdtemp(), "m.zarr")
    >>> _ = write_ome_zarr(out, np.zeros((1000, 600), np.float32), pixel_size="2nm")
    >>> meta = json.loads(Path(out, ".zattrs").read_text())["multiscales"][0]
    >>> [d["coordinateTransformations"][0]["scale"] for d in meta["datasets"]]
    [[1.0, 2.0, 2.0], [1.0, 4.0, 4.0], [1.0, 8.0, 8.0]]
    """
    import zarr

    da = dask_array()
    dest = Path(path)
    arr = data if isinstance(data, da.Array) else da.from_array(np.asarray(data))
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise BadInputError(f"OME-Zarr output needs a (C, H, W) or (H, W) map, got {arr.shape}")
    names = list(channel_names or [f"channel {i}" for i in range(arr.shape[0])])
    if len(names) != arr.shape[0]:
        raise BadInputError(f"{len(names)} channel names for {arr.shape[0]} channels")
    ps = parse_pixel_size(pixel_size)
    with atomic_dir(dest) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=2)
        level, n_levels, windows = arr, 0, []
        while True:
            zc = (1, min(chunks, level.shape[1]), min(chunks, level.shape[2]))
            z = group.create_array(
                str(n_levels),
                shape=level.shape,
                chunks=zc,
                dtype=level.dtype,
                chunk_key_encoding={"name": "v2", "separator": "/"},
                fill_value=0,
            )
            # Every dask chunk must cover whole zarr chunks, or two tasks would write one.
            with _TaskProgress(progress, f"level {n_levels}"):
                da.store(level.rechunk(zc), z, lock=False)
            stored = da.from_zarr(z)
            if n_levels == 0:
                lo = stored.min(axis=(1, 2))
                hi = stored.max(axis=(1, 2))
                lo, hi = da.compute(lo, hi)
                windows = [(float(a), float(b)) for a, b in zip(lo, hi, strict=True)]
            n_levels += 1
            if max(level.shape[1:]) <= min_size or min(level.shape[1:]) < 2:
                break
            level = da.coarsen(np.mean, stored, {1: 2, 2: 2}, trim_excess=True).astype(level.dtype)
        meta = _ngff_metadata(dest.stem, n_levels, arr.shape[0], ps, names, windows)
        group.attrs.update({**meta, **({"defocus": attrs} if attrs else {})})
    return dest


def read_ome_zarr(path: str | os.PathLike, *, level: int = 0) -> tuple[da.Array, dict[str, Any]]:
    """Open one resolution level of an OME-Zarr image: (lazy array, NGFF multiscales entry).

    Examples
    --------
    >>> import tempfile, os, numpy as np
    >>> out = os.path.join(tempfile.mkdtemp(), "m.zarr")
    >>> _ = write_ome_zarr(out, np.ones((2, 600, 700), np.float32), pixel_size="0.5um")
    >>> arr, meta = read_ome_zarr(out, level=1)
    >>> arr.shape, meta["axes"][1]["unit"]
    ((2, 300, 350), 'micrometer')
    """
    import zarr

    da = dask_array()
    group = zarr.open_group(str(path), mode="r")
    ms = _ngff(dict(group.attrs))
    if ms is None:
        raise BadInputError(f"{path}: no OME-NGFF multiscales metadata")
    return da.from_zarr(group[ms["datasets"][level]["path"]]), ms
