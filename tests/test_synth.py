"""Tests for defocus.synth: uniform and varying blur, generators and noise."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
from skimage import data

from defocus import BadInputError
from defocus import psf as P
from defocus import synth as S

MODES = ["reflect", "mirror", "nearest", "wrap", "constant"]


@pytest.fixture(scope="module")
def camera():
    return data.camera()[160:256, 200:312]  # uint8, 96 x 112


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sigma", [0.7, 2.0, 4.5])
def test_gaussian_blur_matches_scipy(camera, mode, sigma):
    # scipy's kernel: point samples out to int(4 sigma + 0.5), normalised.
    kernel = P.gaussian(sigma, shape=2 * int(4 * sigma + 0.5) + 1)
    ours = S.blur(camera, kernel, mode=mode, cval=10.0)
    ref = ndi.gaussian_filter(camera.astype(np.float64), sigma, mode=mode, cval=10.0)
    assert ours.dtype == np.float32
    assert np.abs(ours - ref).max() < 1e-3


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(5, 5), (4, 6), (9, 8), (15, 15)])
def test_blur_methods_agree_with_ndimage_convolve(camera, mode, shape):
    rng = np.random.default_rng(1)
    kernel = rng.random(shape)
    separable = np.outer(rng.random(shape[0]), rng.random(shape[1]))
    for k, methods in ((kernel, ("auto", "direct", "fft")), (separable, ("auto", "separable"))):
        ref = ndi.convolve(camera.astype(np.float64), k, mode=mode, cval=3.0)
        for method in methods:
            out = S.blur(camera, k, mode=mode, cval=3.0, method=method)
            assert np.abs(out - ref).max() < 1e-4 * np.abs(ref).max()


def test_blur_dtypes_channels_and_input_untouched():
    rgb = data.astronaut()[:64, :80]
    before = rgb.copy()
    k = P.disk(3.0)
    out = S.blur(rgb, k, channel_axis=-1)
    assert out.shape == rgb.shape and out.dtype == np.float32
    np.testing.assert_array_equal(rgb, before)
    for c in range(3):
        assert np.allclose(out[..., c], S.blur(rgb[..., c], k), atol=1e-4)
    first = S.blur(np.moveaxis(rgb, -1, 0), k, channel_axis=0)
    assert np.allclose(np.moveaxis(first, 0, -1), out, atol=1e-4)
    as_uint8 = S.blur(rgb, k, channel_axis=-1, dtype=np.uint8)
    assert as_uint8.dtype == np.uint8
    assert np.abs(as_uint8.astype(float) - out).max() <= 0.5 + 1e-3
    assert S.blur(rgb[..., 0].astype(np.float64), k).dtype == np.float64
    # Integer output clips to the range rather than wrapping.
    clipped = S.blur(np.full((8, 8), 250.0), np.array([[2.0]]), dtype=np.uint8)
    assert (clipped == 255).all()


def test_blur_keeps_intensity_scale():
    img = data.camera()[:64, :64].astype(np.uint16) * 200  # 16-bit range
    out = S.blur(img, P.gaussian(1.5))
    assert out.mean() == pytest.approx(img.mean(), rel=0.01)
    assert out.max() > 255


@pytest.mark.parametrize("family", ["gauss", "disk"])
@pytest.mark.parametrize("model", ["gather", "scatter"])
def test_constant_map_equals_uniform_blur(camera, family, model):
    sigma = 2.3
    smap = np.full(camera.shape, sigma, np.float32)
    kernel = P.gaussian(sigma) if family == "gauss" else P.disk(2 * sigma)
    uniform = S.blur(camera, kernel)
    varying = S.blur_varying(camera, smap, psf=family, method=model)
    assert np.abs(varying - uniform).max() < 1e-3


@pytest.mark.parametrize("family", ["gauss", "disk"])
def test_interpolated_levels_stay_within_the_bound(camera, family):
    # Force blending: a constant sigma between two automatic levels.
    levels = S.sigma_levels(family, 8.0)
    i = int(np.searchsorted(levels, 3.0))
    sigma = float(np.sqrt(0.5 * (levels[i - 1] ** 2 + levels[i] ** 2)))
    smap = np.full(camera.shape, sigma, np.float32)
    kernel = P.gaussian(sigma) if family == "gauss" else P.disk(2 * sigma)
    exact = S.blur(camera, kernel)
    blended = S.blur_varying(camera, smap, psf=family, levels=levels)
    err = blended - exact
    assert np.abs(err).max() > 0  # it did blend
    # RMS error <= 0.5 % of the RMS contrast (the documented transfer-function bound).
    assert np.sqrt((err**2).mean()) <= S.LEVEL_TOLERANCE * camera.std()
    assert np.abs(err).max() <= 0.01 * np.ptp(camera)


def _gather_brute_force(img, smap, family):
    r = int(np.ceil(4 * smap.max())) + 2
    padded = np.pad(img.astype(np.float64), r, mode="symmetric")
    out = np.empty(img.shape)
    for y in range(img.shape[0]):
        for x in range(img.shape[1]):
            s = float(smap[y, x])
            k = (
                P.gaussian(s, shape=2 * r + 1)
                if family == "gauss"
                else P.disk(2 * s, shape=2 * r + 1)
            )
            out[y, x] = (padded[y : y + 2 * r + 1, x : x + 2 * r + 1] * k[::-1, ::-1]).sum()
    return out


@pytest.mark.parametrize("family", ["gauss", "disk"])
def test_gather_matches_per_pixel_kernels(family):
    img = data.camera()[100:140, 200:240]
    yy, xx = np.mgrid[0:40, 0:40]
    smap = (0.1 + 2.5 * yy / 39 + 0.6 * np.sin(xx / 5.0) ** 2).astype(np.float32)
    fast = S.blur_varying(img, smap, psf=family)
    exact = _gather_brute_force(img, smap, family)
    assert np.abs(fast - exact).max() <= 0.01 * np.ptp(img)


@pytest.mark.parametrize("mode", ["reflect", "wrap"])
@pytest.mark.parametrize("family", ["gauss", "disk"])
def test_scatter_conserves_total_intensity(camera, mode, family):
    smap = S.tilt_map(camera.shape, position=0.3, slope=0.08, floor=0.5)
    out = S.blur_varying(camera, smap, psf=family, method="scatter", mode=mode)
    assert out.sum(dtype=np.float64) == pytest.approx(camera.sum(dtype=np.float64), rel=1e-5)
    gathered = S.blur_varying(camera, smap, psf=family, method="gather", mode=mode)
    # Gather does not conserve intensity where sigma varies: the models really differ.
    assert np.abs(gathered - out).max() > 1.0
    lost = S.blur_varying(camera, smap, psf=family, method="scatter", mode="constant")
    assert lost.sum(dtype=np.float64) < camera.sum(dtype=np.float64)


def test_scatter_spreads_each_source_with_its_own_psf():
    img = np.zeros((41, 41), np.float32)
    img[20, 20] = 100.0
    smap = np.full(img.shape, 0.5, np.float32)
    smap[20, 20] = 3.0  # only the source's own sigma matters for scatter
    out = S.blur_varying(img, smap, method="scatter")
    expected = np.pad(100.0 * P.gaussian(3.0), 9)  # 23 x 23 kernel centred in 41 x 41
    assert np.abs(out - expected).max() < 1e-4
    # Gather uses each output pixel's sigma instead, so this light is not conserved.
    assert abs(S.blur_varying(img, smap, method="gather").sum() - 100.0) > 10


def test_more_blur_away_from_the_sharp_band():
    img = data.brick()[:128, :128]
    smap = S.tilt_map(img.shape, position=0.25, slope=0.06, floor=0.3)
    out = S.blur_varying(img, smap, psf="disk")
    detail = np.abs(np.diff(out, axis=1))
    near, far = detail[24:40].mean(), detail[100:128].mean()
    assert near > 2 * far


def test_blur_varying_rejects_bad_maps(camera):
    with pytest.raises(BadInputError, match="shape"):
        S.blur_varying(camera, np.ones((3, 3)))
    with pytest.raises(BadInputError, match="negative"):
        S.blur_varying(camera, -np.ones(camera.shape))
    with pytest.raises(BadInputError, match="finite"):
        S.blur_varying(camera, np.full(camera.shape, np.nan))
    with pytest.raises(BadInputError, match="family"):
        S.blur_varying(camera, np.ones(camera.shape), psf="airy")
    with pytest.raises(BadInputError, match="span"):
        S.blur_varying(camera, np.full(camera.shape, 5.0), levels=[0, 1, 2])


def test_tilt_map_geometry():
    m = S.tilt_map((200, 120), position=0.62, slope=0.05, floor=1.0)
    assert m.dtype == np.float32
    assert int(np.argmin(m[:, 60])) == 124
    assert m.min() == pytest.approx(1.0, abs=1e-3)
    assert m[24, 60] == pytest.approx(np.hypot(1.0, 0.05 * 100), rel=1e-5)
    assert np.ptp(m, axis=1).max() == 0  # horizontal band: constant along rows
    steep = S.tilt_map((200, 120), position=0.5, angle=90.0, slope=0.05, floor=1.0)
    assert int(np.argmin(steep[100])) in (59, 60)  # a vertical band through the centre


def test_depth_to_sigma_thin_lens():
    s, f = 2000.0, 50.0
    depth = np.array([[1000.0, 2000.0, 4000.0, 1e9]])
    sig = S.depth_to_sigma(depth, focus=s, aperture=f / 2.0, focal_length=f, pixel_size=0.004)
    assert sig[0, 1] == 0
    # The blur circle grows with |1/d - 1/s|: 1/2000 at 1000 mm and at infinity, 1/4000 at 4000.
    assert sig[0, 0] == pytest.approx(2 * sig[0, 2], rel=1e-6)
    assert sig[0, 3] == pytest.approx(2 * sig[0, 2], rel=1e-5)
    disp = S.depth_to_sigma(
        np.array([[10.0, 14.0, 22.0]]), focus=14.0, aperture=0.5, disparity=True
    )
    np.testing.assert_allclose(disp, [[0.5, 0.0, 1.0]])
    with pytest.raises(BadInputError, match="positive"):
        S.depth_to_sigma(-depth, focus=s, aperture=10, focal_length=f, pixel_size=0.004)
    with pytest.raises(BadInputError, match="focal length"):
        S.depth_to_sigma(depth, focus=40.0, aperture=10, focal_length=f, pixel_size=0.004)


def test_noise_models():
    flat = np.full((128, 128), 80.0, np.float32)
    g = S.add_gaussian_noise(flat, 4.0)
    assert g.std() == pytest.approx(4.0, rel=0.05)
    np.testing.assert_array_equal(g, S.add_gaussian_noise(flat, 4.0))  # deterministic
    assert not np.array_equal(g, S.add_gaussian_noise(flat, 4.0, rng=1))
    p = S.add_poisson_noise(flat, counts_per_unit=0.5)
    assert p.mean() == pytest.approx(80.0, rel=0.01)
    assert p.var() == pytest.approx(80.0 / 0.5, rel=0.05)
    with pytest.raises(BadInputError, match="non-negative"):
        S.add_poisson_noise(flat - 100)
    cam = data.camera()[:96, :96]
    errors = [np.abs(S.jpeg_compress(cam, quality=q).astype(float) - cam).mean() for q in (10, 90)]
    assert errors[0] > errors[1] > 0
    rgb = S.jpeg_compress(data.astronaut()[:64, :64], quality=50, channel_axis=-1)
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    with pytest.raises(BadInputError, match="8-bit"):
        S.jpeg_compress(cam.astype(np.uint16))


def test_old_keyword_names_still_work_with_a_warning(camera):
    smap = np.full(camera.shape, 1.5, np.float32)
    new = S.blur_varying(camera, smap, psf="disk", method="scatter")
    with pytest.warns(FutureWarning, match="family= is deprecated; use psf="):
        with pytest.warns(FutureWarning, match="model= is deprecated; use method="):
            old = S.blur_varying(camera, smap, family="disk", model="scatter")
    np.testing.assert_array_equal(old, new)
    with pytest.raises(TypeError, match="family= and psf="):
        S.blur_varying(camera, smap, family="disk", psf="gauss")
