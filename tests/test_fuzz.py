"""Property tests with random shapes, dtypes, values and parameters over the public API.

Whatever comes in, only the documented exception (:class:`defocus.BadInputError`, a
``ValueError``) may come out: never another exception, a crash or a hang. What does come out
is finite, has the documented shape and range, and is the same on a second call.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import defocus
from defocus import BadInputError
from defocus._array import as_float_image
from defocus.io import parse_pixel_size, read_image, write_image

FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same cases on every run: CI failures reproduce
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

DTYPES = st.sampled_from(
    [np.uint8, np.uint16, np.int16, np.int32, np.float16, np.float32, np.float64, np.bool_]
)
# deblur: 8/16-bit and float images in a camera's range (plus NaN and Inf)
DEBLUR_DTYPES = st.sampled_from([np.uint8, np.uint16, np.float32, np.float64])
ODD_DTYPES = st.sampled_from([np.complex64, np.dtype("M8[s]"), np.dtype("U3"), object])


@st.composite
def images(draw, *, min_side=0, max_side=24, channels=True, odd=True, dtypes=DTYPES, bound=None):
    """Arrays of any numeric dtype (and, rarely, a nonsense one), 1-4 dims, any values."""
    ndim = draw(st.integers(1, 4)) if odd else 2
    shape = tuple(draw(st.integers(min_side, max_side)) for _ in range(ndim))
    if channels and draw(st.booleans()):
        ndim, shape = 3, (*shape[:2], draw(st.sampled_from([1, 2, 3, 4, 5])))
    use_odd = odd and draw(st.integers(0, 9)) == 0
    dtype = np.dtype(draw(ODD_DTYPES if use_odd else dtypes))
    if dtype.kind in "OUMc":
        return np.zeros(shape, dtype)
    if dtype.kind == "f":
        width = min(dtype.itemsize * 8, 64)
        if bound is None:
            elements = st.floats(width=width, allow_subnormal=False)
        else:
            elements = st.floats(-bound, bound, width=width, allow_subnormal=False)
    else:
        elements = None
    return draw(hnp.arrays(dtype, shape, elements=elements))


def channel_axis_for(image: np.ndarray) -> int | None:
    return -1 if image.ndim == 3 else None


def _same(a, b) -> None:
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@FUZZ
@given(image=images())
def test_as_float_image_only_bad_input(image):
    try:
        lum = as_float_image(image, channel_axis=channel_axis_for(image))
    except BadInputError:
        return
    assert lum.dtype == np.float32 and lum.ndim == 2 and np.isfinite(lum).all()


@FUZZ
@given(
    image=images(min_side=1),
    scale=st.floats(-2, 8),
    measure=st.sampled_from(defocus.list_measures()),
)
def test_focus_map_only_bad_input_and_deterministic(image, scale, measure):
    axis = channel_axis_for(image)
    try:
        fmap = defocus.focus_map(image, measure=measure, scale=scale, channel_axis=axis)
    except BadInputError as exc:
        assert "\n" not in str(exc)
        return
    assert fmap.shape == image.shape[:2] and fmap.dtype == np.float32
    assert np.isfinite(fmap).all()
    _same(fmap, defocus.focus_map(image, measure=measure, scale=scale, channel_axis=axis))


@FUZZ
@given(
    image=images(min_side=10, max_side=40, odd=False),
    psf=st.sampled_from(["gauss", "disk", "cone"]),
    noise=st.one_of(st.none(), st.floats(-1, 50)),
)
def test_blur_map_only_bad_input_dense_and_deterministic(image, psf, noise):
    axis = channel_axis_for(image)
    try:
        bm = defocus.blur_map(image, psf=psf, noise_sigma=noise, channel_axis=axis)
    except BadInputError as exc:
        assert "\n" not in str(exc)
        return
    assert bm.sigma.shape == image.shape[:2] == bm.confidence.shape
    assert np.isfinite(bm.sigma).all() and (bm.sigma >= 0).all()
    assert ((bm.confidence >= 0) & (bm.confidence <= 1)).all()
    again = defocus.blur_map(image, psf=psf, noise_sigma=noise, channel_axis=axis)
    _same(bm.sigma, again.sigma)
    _same(bm.confidence, again.confidence)


VALUES = st.one_of(st.floats(-5, 25), st.sampled_from([0.0, np.nan, np.inf, -np.inf]))
# every model gets its natural size parameter (a missing one is a TypeError, as in any call)
# and any of the others, with any value
MODEL_PARAMS = st.sampled_from(sorted(defocus.MODELS)).flatmap(
    lambda m: st.tuples(
        st.just(m),
        st.fixed_dictionaries(
            {defocus.MODELS[m].natural: VALUES},
            optional={
                k: VALUES for k in defocus.MODELS[m].params if k != defocus.MODELS[m].natural
            },
        ),
    )
)


@FUZZ
@given(model_params=MODEL_PARAMS)
def test_render_only_bad_input_and_normalised(model_params):
    model, params = model_params
    try:
        kernel = defocus.render(model, **params)
    except BadInputError as exc:
        assert "\n" not in str(exc)
        return
    assert kernel.ndim == 2 and np.isfinite(kernel).all() and (kernel >= -1e-9).all()
    assert kernel.sum() == pytest.approx(1, abs=1e-5)
    _same(kernel, defocus.render(model, **params))


@FUZZ
@given(
    image=images(min_side=1, max_side=20),
    sigma=st.floats(0, 4),
    mode=st.sampled_from(["reflect", "mirror", "nearest", "wrap", "constant", "bogus"]),
)
def test_blur_only_bad_input_keeps_dtype(image, sigma, mode):
    kernel = defocus.render("gauss", sigma=sigma) if sigma > 0.05 else np.ones((1, 1))
    axis = channel_axis_for(image)
    try:
        out = defocus.blur(image, kernel, mode=mode, channel_axis=axis, dtype=image.dtype)
    except BadInputError as exc:
        assert "\n" not in str(exc)
        return
    assert out.shape == image.shape and out.dtype == image.dtype
    _same(out, defocus.blur(image, kernel, mode=mode, channel_axis=axis, dtype=image.dtype))


@FUZZ
@given(
    image=images(
        min_side=8, max_side=32, odd=False, channels=False, dtypes=DEBLUR_DTYPES, bound=1e6
    ),
    method=st.sampled_from(["wiener", "rl", "tv"]),
    noise=st.one_of(st.none(), st.floats(-1, 10)),
)
def test_deblur_only_bad_input_and_deterministic(image, method, noise):
    kernel = defocus.render("gauss", sigma=1.0)
    try:
        out = defocus.deblur(image, kernel, method=method, noise_sigma=noise, iterations=5)
    except BadInputError as exc:
        assert "\n" not in str(exc)
        return
    assert out.shape == image.shape and np.isfinite(np.asarray(out, dtype=np.float64)).all()
    _same(out, defocus.deblur(image, kernel, method=method, noise_sigma=noise, iterations=5))


@FUZZ
@given(text=st.one_of(st.text(max_size=12), st.floats(allow_nan=True), st.none()))
def test_parse_pixel_size_only_bad_input(text):
    try:
        ps = parse_pixel_size(text)
    except BadInputError as exc:
        assert "\n" not in str(exc)
        return
    assert ps is None or (np.isfinite(ps.x) and ps.x > 0 and np.isfinite(ps.y) and ps.y > 0)


@FUZZ
@given(
    image=images(max_side=16, odd=False),
    suffix=st.sampled_from([".tif", ".png", ".jpg"]),
)
def test_write_then_read_round_trips_or_refuses(tmp_path, image, suffix):
    """Anything write_image accepts, read_image gives back (exactly, but for JPEG)."""
    f = tmp_path / f"x{suffix}"
    f.unlink(missing_ok=True)
    axis = channel_axis_for(image)
    try:
        write_image(f, image, channel_axis=axis)
    except BadInputError as exc:
        assert "\n" not in str(exc) and not f.exists()
        return
    try:
        back = read_image(f)
    except BadInputError as exc:  # written, but values no analysis can use
        assert re.search("NaN or infinite|magnitudes up to", str(exc)), exc
        return
    if suffix != ".jpg":
        if back.channel_axis is not None:
            stored = np.moveaxis(back.data, back.channel_axis, -1)
        else:  # a single channel comes back as a greyscale image
            stored = back.data.reshape(image.shape)
        _same(stored.astype(image.dtype), image)
