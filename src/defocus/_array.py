"""Array validation and conversion helpers used by every analysis function.

The one home for channel handling (which axis, grey + alpha, RGB(A) luma), luminance, dtype and
finiteness checks, and the tile sizes of the lazy path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._errors import BadInputError

__all__ = [
    "DEFAULT_CHUNK",
    "as_chunks",
    "as_float_image",
    "bbox",
    "channels_last",
    "check_magnitude",
    "finish_channels",
    "level_weights",
    "luminance",
    "positive",
    "saturated",
]

# ITU-R BT.709 luma weights: the usual choice for linear-ish camera and microscope RGB.
_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)

#: Largest intensity magnitude accepted. Analysis runs in float32 (max 3.4e38), and focus
#: measures square intensities and sum them over windows; 1e15 leaves room for that.
MAX_MAGNITUDE = 1e15


def check_magnitude(image: np.ndarray) -> None:
    """Refuse values too large for float32 analysis instead of letting them become inf."""
    if image.dtype.kind not in "iuf" or (image.dtype.kind in "iu" and image.dtype.itemsize < 8):
        return  # 32-bit integers and below always fit
    finite = image[np.isfinite(image)] if image.dtype.kind == "f" else image
    if finite.size == 0:
        return
    big = max(abs(float(finite.max())), abs(float(finite.min())))
    if big > MAX_MAGNITUDE:
        raise BadInputError(
            f"image has values up to {big:.3g}; analysis runs in float32 and supports "
            f"magnitudes up to {MAX_MAGNITUDE:g}: rescale it"
        )


def positive(name: str, value: float, *, allow_zero: bool = True) -> float:
    """``value`` as a finite float >= 0 (> 0 without ``allow_zero``), else a one-line error.

    Examples
    --------
    >>> positive("sigma", "1.5")
    1.5
    >>> positive("radius", -1)
    Traceback (most recent call last):
    ...
    defocus._errors.BadInputError: radius must be a finite number >= 0, got -1
    """
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise BadInputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise BadInputError(f"{name} must be a finite number {bound}, got {value:g}")
    return value


def luminance(image: np.ndarray, *, channel_axis: int | None = None) -> np.ndarray:
    """Return a float32 single-channel image, averaging colour channels by BT.709 luma weights.

    Intensities keep their scale (no rescaling to [0, 1]): a 16-bit image gives values up to 65535.

    Parameters
    ----------
    image : ndarray
        2-D greyscale or 3-D multichannel image.
    channel_axis : int, optional
        Axis holding the channels. Two channels are read as grey + alpha and three or four as
        RGB(A): alpha is dropped, as it holds no image detail. Any other number is averaged.

    Returns
    -------
    ndarray of float32, 2-D

    Raises
    ------
    BadInputError
        Wrong dimensionality, or values beyond :data:`MAX_MAGNITUDE`.

    Examples
    --------
    >>> rgb = np.zeros((2, 2, 3), dtype=np.uint8); rgb[..., 1] = 100
    >>> float(luminance(rgb, channel_axis=-1)[0, 0])
    71.52...
    """
    image = np.asarray(image)
    check_magnitude(image)
    if channel_axis is None:
        if image.ndim != 2:
            raise BadInputError(
                f"expected a 2-D greyscale image, got shape {image.shape}; "
                "pass channel_axis for colour images"
            )
        return image.astype(np.float32, copy=False)
    if image.ndim != 3:
        raise BadInputError(f"expected a 2-D image with channels, got shape {image.shape}")
    image = np.moveaxis(image, channel_axis, -1)
    nch = image.shape[-1]
    if nch == 2:  # grey + alpha
        return image[..., 0].astype(np.float32)
    weights = _LUMA if nch in (3, 4) else np.full(nch, 1 / nch, np.float32)
    # One channel at a time: no float copy of the whole image (the same sums as a matrix
    # product with the weights).
    y = np.zeros(image.shape[:2], np.float32)
    for c, wc in enumerate(weights):
        y += image[..., c] * np.float32(wc)
    return y


def channels_last(
    image: Any, channel_axis: int | None, *, dtype: type[np.floating] | None = None
) -> tuple[np.ndarray, np.dtype]:
    """Validate an image and return it as float (H, W, C) plus the input dtype.

    The working type is ``dtype`` if given; otherwise float64 input stays float64 and anything
    else becomes float32. A greyscale image gets one channel.

    Examples
    --------
    >>> data, dtype = channels_last(np.zeros((3, 4, 5), np.uint8), channel_axis=0)
    >>> data.shape, data.dtype, dtype
    ((4, 5, 3), dtype('float32'), dtype('uint8'))
    """
    arr = np.asarray(image)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise BadInputError(f"image has unsupported dtype {arr.dtype}; expected integer or float")
    if channel_axis is None:
        if arr.ndim != 2:
            raise BadInputError(
                f"expected a 2-D image, got shape {arr.shape}; pass channel_axis for colour"
            )
        arr = arr[..., None]
    else:
        if arr.ndim != 3:
            raise BadInputError(f"expected a 2-D image with channels, got shape {arr.shape}")
        try:
            arr = np.moveaxis(arr, channel_axis, -1)
        except np.exceptions.AxisError:
            raise BadInputError(f"channel_axis {channel_axis} is out of range") from None
    if min(arr.shape[:2]) < 1:
        raise BadInputError(f"image is empty: shape {arr.shape}")
    work = dtype or (np.float64 if arr.dtype == np.float64 else np.float32)
    out = arr.astype(work)
    if not np.isfinite(out).all():
        raise BadInputError("image contains NaN or infinite values")
    return out, arr.dtype


def finish_channels(
    out: np.ndarray, channel_axis: int | None, dtype: Any, in_dtype: np.dtype
) -> np.ndarray:
    """Undo :func:`channels_last`: restore the channel axis and cast to ``dtype``.

    An integer ``dtype`` rounds and clips to its range; without one, float64 input stays float64
    and anything else keeps the working type.

    Examples
    --------
    >>> finish_channels(np.full((2, 2, 1), 300.4, np.float32), None, np.uint8, np.dtype(np.uint8))
    array([[255, 255],
           [255, 255]], dtype=uint8)
    """
    out = out[..., 0] if channel_axis is None else np.moveaxis(out, -1, channel_axis)
    target = np.dtype(dtype) if dtype is not None else out.dtype
    if np.issubdtype(target, np.integer):
        info = np.iinfo(target)
        # the largest float of the working type within range: float32(2**31 - 1) is 2**31
        hi = out.dtype.type(info.max)
        if int(hi) > info.max:
            hi = np.nextafter(hi, out.dtype.type(0))
        return np.clip(np.rint(out), out.dtype.type(info.min), hi).astype(target)
    if dtype is None and in_dtype == np.float64:
        return out.astype(np.float64, copy=False)
    return out.astype(target, copy=False)


def level_weights(sigma: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower level index and the upper level's weight per pixel, interpolating sigma².

    The spatially varying blur and deblur blend two PSFs per pixel with these weights, so
    that the blend has the pixel's own variance.

    Examples
    --------
    >>> idx, t = level_weights(np.array([1.0, 1.5]), np.array([1.0, 2.0]))
    >>> idx.tolist(), [round(float(v), 4) for v in t]
    ([0, 0], [0.0, 0.4167])
    """
    if levels.size == 1:
        return np.zeros(sigma.shape, np.intp), np.zeros(sigma.shape, np.float32)
    idx = np.clip(np.searchsorted(levels, sigma, side="right") - 1, 0, levels.size - 2)
    lo2, hi2 = levels[idx] ** 2, levels[idx + 1] ** 2
    t = np.clip((sigma.astype(np.float64) ** 2 - lo2) / (hi2 - lo2), 0.0, 1.0)
    return idx, t.astype(np.float32)


def bbox(mask: np.ndarray) -> tuple[slice, slice] | None:
    """Row and column slices of the smallest box holding every True pixel; None if none.

    Examples
    --------
    >>> rows, cols = bbox(np.eye(4, dtype=bool)[::-1] & (np.arange(4) < 2))
    >>> int(rows.start), int(rows.stop), int(cols.start), int(cols.stop)
    (2, 4, 0, 2)
    """
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if rows.size == 0:
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def saturated(image: Any, channel_axis: int | None = None) -> np.ndarray:
    """Pixels on a plateau (3×3 or larger) at a value the sensor clips to, in any channel.

    The clipping values are the integer dtype's limits and each channel's own maximum. An
    isolated pixel at the maximum is a highlight; a plateau is where the signal was cut, so a
    model that compares two images does not hold there.

    Examples
    --------
    >>> img = np.full((8, 8), 100, np.uint8); img[1:5, 1:5] = 255; img[6, 6] = 255
    >>> int(saturated(img).sum())  # the 4 x 4 block, not the lone highlight
    16
    """
    from scipy import ndimage  # loaded on use: this module is imported by the command line

    arr = np.asarray(image)
    arr = arr[..., None] if channel_axis is None else np.moveaxis(arr, channel_axis, -1)
    out = np.zeros(arr.shape[:2], bool)
    square = np.ones((3, 3), bool)
    for c in range(arr.shape[-1]):
        ch = arr[..., c]
        levels = {ch.max()}
        if ch.dtype.kind in "iu":
            info = np.iinfo(ch.dtype)
            levels |= {info.min, info.max}
        for level in levels:
            at = ch == level
            if at.any():
                out |= ndimage.binary_opening(at, square)
    return out


def as_float_image(
    image: np.ndarray,
    *,
    channel_axis: int | None = None,
    min_size: int = 1,
    allow_constant: bool = True,
    name: str = "image",
) -> np.ndarray:
    """Validate an image and return it as a 2-D float32 luminance array.

    Raises :class:`~defocus.BadInputError` for non-numeric data, wrong dimensionality, images
    smaller than ``min_size`` on either side, non-finite values, and (unless ``allow_constant``)
    constant images, which carry no focus information.

    Examples
    --------
    >>> as_float_image(np.ones((4, 4), dtype=np.uint16)).dtype
    dtype('float32')
    >>> as_float_image(np.full((4, 4), np.nan))
    Traceback (most recent call last):
    ...
    defocus._errors.BadInputError: image contains NaN or infinite values
    """
    arr = np.asarray(image)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise BadInputError(f"{name} has unsupported dtype {arr.dtype}; expected integer or float")
    lum = luminance(arr, channel_axis=channel_axis)
    if min(lum.shape) < min_size:
        raise BadInputError(
            f"{name} is {lum.shape[0]}x{lum.shape[1]} pixels; at least {min_size}x{min_size} needed"
        )
    if not np.isfinite(lum).all():
        raise BadInputError(f"{name} contains NaN or infinite values")
    if not allow_constant and lum.size and float(lum.max()) == float(lum.min()):
        if np.issubdtype(arr.dtype, np.integer) and arr.min() == np.iinfo(arr.dtype).max:
            raise BadInputError(
                f"{name} is fully saturated (every pixel {arr.min()}); it holds no detail; "
                "lower the exposure or gain"
            )
        raise BadInputError(f"{name} is constant ({float(lum.flat[0]):g}); it holds no detail")
    return lum


#: Tile side of the lazy path when the caller gives no chunks, in px.
DEFAULT_CHUNK = 2048


def as_chunks(chunks: int | Sequence[int] | None) -> tuple[int, int]:
    """A ``chunks`` argument as (rows, columns) of at least 16 px; None gives the default.

    Examples
    --------
    >>> as_chunks(97), as_chunks(None)
    ((97, 97), (2048, 2048))
    """
    if chunks is None:
        return DEFAULT_CHUNK, DEFAULT_CHUNK
    if isinstance(chunks, int | np.integer):
        chunks = (int(chunks), int(chunks))
    cy, cx = (int(c) for c in chunks)
    if cy < 16 or cx < 16:
        raise BadInputError(f"chunks must be at least 16 px, got {(cy, cx)}")
    return cy, cx
