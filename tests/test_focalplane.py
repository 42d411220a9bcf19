"""Tests for defocus.focalplane: a known tilt is recovered, statistics are consistent."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage import data

from defocus import BadInputError
from defocus.blurmap import BlurMap, blur_map
from defocus.focalplane import focal_plane, region_stats
from defocus.synth import add_gaussian_noise, blur_varying, tilt_map


def _ideal(sigma: np.ndarray) -> BlurMap:
    one = np.ones_like(sigma)
    return BlurMap(sigma, one, sigma[2::4, 2::4], one[2::4, 2::4], 4, 0.0, "gauss")


@pytest.mark.parametrize(("position", "angle"), [(0.62, 0.0), (0.3, -25.0), (0.45, 70.0)])
def test_exact_tilt_is_recovered(position, angle):
    truth = tilt_map((160, 200), position=position, angle=angle, slope=0.04, floor=0.7)
    fp = focal_plane(_ideal(truth))
    assert fp.angle == pytest.approx(angle, abs=0.5)
    assert fp.sigma0 == pytest.approx(0.7, abs=0.05)
    assert fp.slope == pytest.approx(0.04, rel=0.02)
    assert np.allclose(fp.predict(), truth, rtol=0.02, atol=0.02)


def test_tilt_recovered_from_an_estimated_blur_map():
    sharp = data.camera()[:256, 128:384].astype(np.float32) / 255
    truth = tilt_map(sharp.shape, position=0.4, angle=10.0, slope=0.035, floor=0.5)
    img = add_gaussian_noise(blur_varying(sharp, truth), 0.01, rng=0)
    fp = focal_plane(blur_map(img))
    assert fp.axis == "rows"
    assert fp.position == pytest.approx(0.4, abs=0.08)
    assert fp.angle == pytest.approx(10.0, abs=10.0)
    assert fp.slope == pytest.approx(0.035, rel=0.4)
    assert all(np.isfinite(v) and v >= 0 for v in fp.errors.values())
    s = json.loads(json.dumps(fp.summary()))
    assert "sharpest line at" in s["text"] and len(s["bands"]) == 10


def test_bands_profiles_and_region_stats():
    truth = tilt_map((120, 80), position=0.5, slope=0.05, floor=1.0)
    fp = focal_plane(_ideal(truth), n_bands=4)
    sig = [b["sigma"] for b in fp.bands]
    assert sig[0] > sig[1] and sig[3] > sig[2]  # blur grows away from the middle
    assert fp.rows.median.shape == fp.rows.coord.shape == (30,)
    assert np.all(fp.rows.p16 <= fp.rows.p84)
    assert fp.rows.median.argmin() in (14, 15)
    bottom = region_stats(_ideal(truth), rows=(0.0, 0.25), origin="bottom")
    top = region_stats(_ideal(truth), rows=(0.75, 1.0))
    assert bottom["sigma"] == pytest.approx(top["sigma"], rel=0.05)
    assert bottom["text"].startswith("rows 0-25 % from the bottom: sigma = ")


def test_bad_input():
    with pytest.raises(BadInputError, match="origin"):
        region_stats(_ideal(np.ones((40, 40), np.float32)), origin="left")
    with pytest.raises(BadInputError, match="fractions"):
        region_stats(_ideal(np.ones((40, 40), np.float32)), rows=(0.6, 0.2))
    zero = _ideal(np.ones((40, 40), np.float32))
    zero.confidence[:] = 0
    with pytest.raises(BadInputError, match="too few"):
        focal_plane(zero)
