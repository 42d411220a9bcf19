"""Kernel estimation from a pair and PSF model selection."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
from skimage import data

from defocus import BadInputError
from defocus import psf as P
from defocus.kernel import estimate_kernel, fit_psf
from defocus.synth import add_gaussian_noise, blur


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def sharp() -> np.ndarray:
    return data.camera()[100:228, 150:278].astype(float)


def _pair(image: np.ndarray, kernel: np.ndarray, noise: float = 0.0) -> np.ndarray:
    full = data.camera().astype(float)
    out = blur(full, kernel)[100:228, 150:278]
    return add_gaussian_noise(out, noise, rng=1) if noise else out


@pytest.mark.parametrize(
    ("kernel", "tol"),
    [(P.disk(4.5, shape=11), 0.05), (P.gaussian(2.0, shape=15), 0.05)],
)
def test_recovers_known_kernels(sharp, kernel, tol):
    est = estimate_kernel(sharp, _pair(sharp, kernel, 0.255), size=kernel.shape[0])
    assert est.kernel.min() >= 0
    assert est.kernel.sum() == pytest.approx(1.0)
    assert _rel(est.kernel, kernel) < tol
    assert est.sigma == pytest.approx(P.moments(kernel).sigma, rel=0.05)


def test_automatic_size_holds_the_kernel(sharp):
    kernel = P.disk(4.5)
    est = estimate_kernel(sharp, _pair(sharp, kernel, 0.255))
    m = est.kernel.shape[0]
    assert m >= kernel.shape[0]
    padded = np.pad(kernel, (m - kernel.shape[0]) // 2)
    assert _rel(est.kernel, padded) < 0.1


def test_gain_and_offset_are_separated_from_the_kernel(sharp):
    kernel = P.gaussian(1.5, shape=11)
    blurry = _pair(sharp, kernel)
    ref = estimate_kernel(sharp, blurry, size=11)
    est = estimate_kernel(sharp, 0.6 * blurry + 40.0, size=11)
    assert est.gain == pytest.approx(0.6 * ref.gain, rel=1e-3)
    assert est.offset == pytest.approx(40.0, abs=0.5)
    np.testing.assert_allclose(est.kernel, ref.kernel, atol=1e-3)


def test_sub_pixel_shift_is_registered_not_blurred(sharp):
    kernel = P.gaussian(1.5, shape=11)
    full = blur(data.camera().astype(float), kernel)
    moved = ndi.shift(full, (2.3, -1.6), order=3, mode="nearest")[100:228, 150:278]
    est = estimate_kernel(sharp, moved, size=11)
    assert est.shift == pytest.approx((2.3, -1.6), abs=0.1)
    assert _rel(est.kernel, kernel) < 0.15


def test_errors_are_one_line(sharp):
    with pytest.raises(BadInputError, match="differ in shape"):
        estimate_kernel(sharp, sharp[:-1])
    with pytest.raises(BadInputError, match="too small"):
        estimate_kernel(sharp[:40, :40], sharp[:40, :40], size=31)
    with pytest.raises(BadInputError, match="odd"):
        estimate_kernel(sharp, sharp, size=10)


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ("gauss", {"sigma": 2.5}),
        ("disk", {"radius": 6.0}),
        ("ring", {"radius": 8.0, "width": 2.0, "softness": 0.7}),
        ("airy", {"radius": 3.0}),
        ("motion", {"length": 11.0, "angle": 30.0}),
    ],
)
def test_model_selection_on_each_family(model, params):
    k = P.render(model, shape=25, **params)
    noisy = k + np.random.default_rng(0).normal(0, 0.01 * k.max(), k.shape)
    fit = fit_psf(noisy, models=("gauss", "disk", "ring", "airy", "motion"))
    assert fit.model == model
    for name, value in params.items():
        assert fit.best.params[name] == pytest.approx(value, rel=0.1, abs=0.3)
        assert fit.best.errors[name] < 0.5


def test_fit_of_an_estimated_kernel_names_the_blur(sharp):
    kernel = P.disk(5.0, shape=13)
    est = estimate_kernel(sharp, _pair(sharp, kernel, 0.255), size=13)
    fit = fit_psf(est.kernel, models=("gauss", "disk", "ring"))
    assert fit.model == "disk"
    assert fit.best.params["radius"] == pytest.approx(5.0, abs=0.3)
