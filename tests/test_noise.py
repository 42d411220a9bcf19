"""Properties of the noise model: it measures what was put in, of every kind."""

from __future__ import annotations

import io

import imageio.v3 as iio
import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import data

from defocus.noise import estimate_noise, haar_sigma


def test_white_noise_level_and_flat_spectrum():
    img = np.random.default_rng(0).normal(100, 4, (512, 512))
    nm = estimate_noise(img)
    assert np.sqrt(nm.variance(100.0)) == pytest.approx(4, rel=0.1)
    assert abs(nm.correlation[0]) < 0.05 and abs(nm.correlation[1]) < 0.05
    assert nm.spectral_weight(2.0) == pytest.approx(1, abs=0.15)


def test_poisson_noise_variance_grows_with_intensity():
    level = np.linspace(10, 250, 512)[None, :].repeat(512, axis=0)
    nm = estimate_noise(np.random.default_rng(1).poisson(level).astype(np.float32))
    assert nm.variance(200.0) / nm.variance(25.0) == pytest.approx(8, rel=0.3)


def test_correlated_noise_is_seen_as_correlated():
    white = np.random.default_rng(2).normal(0, 1, (512, 512))
    nm = estimate_noise(ndi.gaussian_filter(white, 0.8))
    assert min(nm.correlation) > 0.3
    # Correlated noise passes more energy to a 2-px derivative than white noise of its variance.
    assert nm.spectral_weight(2.0) > 1.5


def test_quantisation_floor_on_clean_8_bit_data():
    ramp = np.round(np.linspace(0, 40, 256))[None, :].repeat(256, axis=0).astype(np.uint8)
    nm = estimate_noise(ramp)
    assert nm.quantum == 1.0
    assert float(nm.variance(20.0)) >= 1 / 12


def test_jpeg_noise_is_measured_and_gain_scales_it():
    rng = np.random.default_rng(3)
    img = np.clip(rng.normal(128, 6, (256, 256)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    iio.imwrite(buf, img, extension=".jpg", quality=80)
    jpeg = iio.imread(buf.getvalue(), extension=".jpg")
    assert 3 < float(estimate_noise(jpeg).std(128.0)) < 7
    cam = data.camera().astype(np.float64)
    noisy = cam + rng.normal(0, 3, cam.shape)
    a = float(estimate_noise(noisy).std(np.median(noisy)))
    b = float(estimate_noise(4 * noisy + 10).std(4 * np.median(noisy) + 10))
    assert b == pytest.approx(4 * a, rel=0.05)


def test_haar_sigma_ignores_smooth_content():
    rng = np.random.default_rng(4)
    smooth = ndi.gaussian_filter(rng.random((256, 256)), 8) * 1000
    assert haar_sigma(smooth + rng.normal(0, 2, smooth.shape)) == pytest.approx(2, rel=0.1)
