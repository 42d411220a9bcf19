"""Optional dependencies, imported on first use with a message that says how to install them."""

from __future__ import annotations

from typing import Any

_INSTALL = "install it with: pip install 'defocus[dask]'"


def dask_array() -> Any:
    """Import dask.array, or explain how to get it."""
    try:
        import dask.array as da
    except ImportError:
        raise ImportError(f"tiled images need Dask; {_INSTALL}") from None
    return da


def distributed() -> Any:
    """Import dask.distributed, or explain how to get it."""
    try:
        import distributed
    except ImportError:
        raise ImportError(f"batches need dask.distributed; {_INSTALL}") from None
    return distributed
