"""Tests for defocus.zseries: through-focus series, best focus, height maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage import data

from defocus import BadInputError
from defocus.synth import blur_varying, tilt_map
from defocus.zseries import (
    blur_growth,
    check_z,
    height_map,
    parse_z,
    through_focus,
    z_from_names,
)

K = 2.0  # px of sigma per µm of defocus
SIGMA0 = 0.5


@pytest.fixture(scope="module")
def texture() -> np.ndarray:
    return data.camera()[::4, ::4].astype(np.float32)  # 128 x 128


def _series(sharp: np.ndarray, height: np.ndarray, z: np.ndarray) -> list[np.ndarray]:
    return [blur_varying(sharp, np.hypot(SIGMA0, K * (zi - height))) for zi in z]


def test_tilt_recovered(texture):
    # a plane rising 2° along x and falling 1° along y, 0.5 µm pixels
    px = 0.5
    rr, cc = np.mgrid[0:128, 0:128] * px
    gx, gy = math.tan(math.radians(2.0)), math.tan(math.radians(-1.0))
    height = (1.5 + gx * (cc - cc.mean()) + gy * (rr - rr.mean())).astype(np.float32)
    z = np.linspace(-0.3, 3.3, 7)
    tf = through_focus(_series(texture, height, z), z, pixel_size="0.5um", align=False)
    assert abs(tf.plane["tilt_x_deg"] - 2.0) < 0.5
    assert abs(tf.plane["tilt_y_deg"] + 1.0) < 0.5
    ok = tf.confidence >= 0.3
    assert ok.mean() > 0.3
    rmse = float(np.sqrt(np.mean((tf.height[ok] - height[ok]) ** 2)))
    assert rmse < 0.1 * float(np.ptp(height))


def test_height_follows_steps_and_ignores_exposure(texture):
    height = np.where(np.arange(128)[None, :] < 64, 0.5, 2.0).repeat(128, 0).astype(np.float32)
    z = np.linspace(0.0, 2.5, 6)
    frames = _series(texture, height, z)
    tf = through_focus(frames, z, align=False)
    drift = [f * g for f, g in zip(frames, np.linspace(0.7, 1.4, 6), strict=True)]
    tf2 = through_focus(drift, z, align=False)
    left, right = tf.height[:, 8:56], tf.height[:, 72:120]
    assert abs(np.median(left) - 0.5) < 0.15
    assert abs(np.median(right) - 2.0) < 0.15
    assert np.median(np.abs(tf2.height - tf.height)) < 0.05
    # one k for one lens: the cells that bracket their focus find it
    assert tf.k_global == pytest.approx(K, rel=0.35)


def test_focus_outside_series_is_said(texture):
    z = np.array([-5.0, -2.5, 0.0, 2.5])
    z0 = 6.0  # focus beyond the last frame
    frames = [
        blur_varying(texture, np.full(texture.shape, math.hypot(0.5, 0.4 * (zi - z0)))) for zi in z
    ]
    tf = through_focus(frames, z, align=False)
    fit = tf.fit
    assert not fit.bracketed
    assert "outside the series" in fit.statement
    assert fit.z0 > z.max()
    assert fit.z0_error is not None and fit.z0_error > 0
    assert "outside the series" in " ".join(tf.summary()["notes"])
    # every pixel peaks at the last frame, which only bounds the height: no plane
    assert not tf.plane["fitted"]


def test_sign_resolved_across_focal_line(texture):
    sharp = data.camera()[::2, ::2]
    bm = __import__("defocus").blur_map(
        blur_varying(sharp, tilt_map(sharp.shape, position=0.5, slope=0.03, floor=0.5))
    )
    top = height_map(bm, k=K, z0_side="top")
    bottom = height_map(bm, k=K, z0_side="bottom")
    assert top.signed
    prof = np.median(top.height[:, 96:160], axis=1)
    # one slope through the sharp line (a tilted plane), not a V
    assert prof[20] > prof[100] > prof[156] > prof[236]
    np.testing.assert_allclose(bottom.height, -top.height)
    # |dz| grows as the blur: about slope * distance / k far from the line
    assert np.median(np.abs(top.height[230:240, 96:160])) == pytest.approx(0.03 * 106 / K, rel=0.35)


def test_z_from_names_and_lists():
    z, unit = z_from_names(["a_z-0.6um.tif", "a_z0um.tif", "a_Z=0.6um.tif"])
    np.testing.assert_allclose(z, [-0.6, 0, 0.6])
    assert unit == "µm"
    assert z_from_names(["s_z300nm_01.tif", "s_z600nm_02.tif"])[0].tolist() == [300, 600]
    with pytest.raises(BadInputError, match="no z in the file name"):
        z_from_names(["size12.tif"])
    with pytest.raises(BadInputError, match="mix z units"):
        z_from_names(["a_z1um.tif", "a_z2nm.tif"])
    assert parse_z("-5,0,5um")[0].tolist() == [-5, 0, 5]
    with pytest.raises(BadInputError, match="cannot read z list"):
        parse_z("0;1;2")


@pytest.mark.parametrize(
    ("z", "message"),
    [
        ([0, 1], "2 z values for 3 frames"),
        ([0, 2, 1], "not monotonic"),
        ([0, 1, 1], "duplicate value 1"),
        ([0, np.nan, 1], "finite"),
    ],
)
def test_bad_z_refused(z, message):
    with pytest.raises(BadInputError, match=message):
        check_z(z, 3)


def test_decreasing_z_accepted():
    assert check_z([3, 2, 1], 3).tolist() == [3, 2, 1]


def test_blur_growth_from_optics():
    # a 10 mrad cone: disk diameter 2 α |dz| = 20 nm per µm, sigma = R / 2 = 5 nm = 0.5 px
    assert blur_growth(0.01, "10nm") == pytest.approx(0.5)
    with pytest.raises(BadInputError):
        blur_growth(-1, "10nm")


def test_frames_of_different_size_refused(texture):
    with pytest.raises(BadInputError, match="differ in size"):
        through_focus([texture, texture[:64]], [0, 1])
