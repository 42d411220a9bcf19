"""Tests for defocus.psf: normalisation, size, moments, OTFs and conversions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft

from defocus import BadInputError
from defocus import psf as P

CASES = [
    ("gauss", {"sigma": 0.0}),
    ("gauss", {"sigma": 0.6}),
    ("gauss", {"sigma": 2.5}),
    ("disk", {"radius": 0.0}),
    ("disk", {"radius": 0.7}),
    ("disk", {"radius": 5.5}),
    ("ring", {"radius": 6.0, "width": 2.0, "softness": 1.0}),
    ("ring", {"radius": 3.0, "width": 1.0}),
    ("airy", {"radius": 2.5}),
    ("defocus", {"radius": 5.0, "airy_radius": 2.5}),
    ("defocus", {"waves": 0.3, "airy_radius": 3.0}),
    ("box", {"width": 3.5, "height": 2.0}),
    ("motion", {"length": 7.0, "angle": 30.0}),
    ("motion", {"length": 0.0}),
    ("defocus", {"waves": -0.8, "spherical": 0.5, "airy_radius": 2.5}),
    ("elliptical_gauss", {"sigma_major": 2.5, "sigma_minor": 1.0, "angle": 30.0}),
    ("astigmatic", {"radius_major": 5.0, "radius_minor": 2.0, "angle": -20.0, "airy_radius": 2.5}),
]


@pytest.mark.parametrize(("model", "params"), CASES)
@pytest.mark.parametrize("offset", [(0.0, 0.0), (0.3, -0.45)])
def test_every_kernel_sums_to_one(model, params, offset):
    for shape in (None, (20, 15)):
        k = P.render(model, shape=shape, offset=offset, **params)
        assert k.dtype == np.float64
        assert k.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.isfinite(k).all()
        if shape is not None:
            assert k.shape == shape


@pytest.mark.parametrize(("model", "params"), CASES)
def test_default_size_holds_999_of_the_energy(model, params):
    k = P.render(model, **params)
    n = k.shape[0]
    assert k.shape == (n, n) and n % 2 == 1
    big = P.render(model, shape=n + 40, **params)
    assert big[20:-20, 20:-20].sum() >= P.ENERGY


@pytest.mark.parametrize("radius", [2.0, 2.25, 2.5, 2.75, 3.0, 4.0, 5.5, 8.0, 13.0])
def test_disk_sigma_is_half_the_radius(radius):
    rng = np.random.default_rng(int(radius * 100))
    # Area sampling adds the pixel box (1/12 px²); Sheppard's correction removes it. What
    # remains is aliasing of the hard edge: < 2.6 % for 2 <= R < 3 and < 1 % from R = 3.
    tol = 0.01 if radius >= 3 else 0.026
    for offset in [(0.0, 0.0), *rng.uniform(-0.5, 0.5, (4, 2))]:
        k = P.disk(radius, offset=tuple(offset))
        assert P.moments(k, area_sampled=True).sigma == pytest.approx(radius / 2, rel=tol)
    # Without the correction the discrete blur is wider by the pixel box.
    raw = P.moments(P.disk(radius)).sigma
    assert raw == pytest.approx(math.sqrt(radius**2 / 4 + 1 / 12), rel=tol)


@pytest.mark.parametrize("sigma", [0.8, 1.0, 2.0, 5.0])
def test_gaussian_moments_and_centroid(sigma):
    k = P.gaussian(sigma, offset=(0.3, -0.2))
    m = P.moments(k)
    assert m.sigma == pytest.approx(sigma, rel=0.01)
    c = (k.shape[0] - 1) / 2
    assert m.centroid == pytest.approx((c + 0.3, c - 0.2), abs=1e-3)


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ("ring", {"radius": 7.0, "width": 2.0, "softness": 1.0}),
        ("ring", {"radius": 5.0, "width": 3.0}),
        ("box", {"width": 6.0, "height": 3.0}),
        ("motion", {"length": 12.0, "angle": 30.0}),
    ],
)
def test_moments_match_model_sigma(model, params):
    k = P.render(model, **params)
    m = P.moments(k, area_sampled=P.MODELS[model].area_sampled)
    assert m.sigma == pytest.approx(P.sigma_of(model, **params), rel=0.02)


def test_motion_direction():
    horizontal = P.moments(P.motion(11.0, angle=0.0))
    vertical = P.moments(P.motion(11.0, angle=90.0))
    assert horizontal.sigma_x > 3 * horizontal.sigma_y
    assert vertical.sigma_y > 3 * vertical.sigma_x
    # 45° counter-clockwise as displayed: up and to the right, so rows fall as columns rise.
    assert P.moments(P.motion(11.0, angle=45.0)).covariance[0, 1] < 0


def _mtf_error(model, params, fmax, n=128):
    k = P.render(model, **params)
    n = max(n, k.shape[0] + 8)
    grid = np.zeros((n, n))
    h = k.shape[0]
    grid[:h, :h] = k
    grid = np.roll(grid, (-(h // 2), -(h // 2)), axis=(0, 1))
    measured = np.abs(scipy.fft.fft2(grid))
    analytic = np.abs(P.otf(model, (n, n), **params))
    f = np.hypot(*np.meshgrid(scipy.fft.fftfreq(n), scipy.fft.fftfreq(n), indexing="ij"))
    return float(np.abs(measured - analytic)[f <= fmax].max())


# Tolerances: band-limited kernels (Gaussian sigma >= 1, Airy and defocus sampled at Nyquist or
# finer) match over the whole band up to the 0.1 % truncation; hard-edged area-sampled kernels
# alias near Nyquist, so they are checked up to half of it (0.25 cycles/px).
@pytest.mark.parametrize(
    ("model", "params", "fmax", "tol"),
    [
        ("gauss", {"sigma": 1.0}, 0.71, 0.01),
        ("gauss", {"sigma": 3.0}, 0.71, 0.002),
        ("airy", {"radius": 2.44}, 0.71, 0.003),
        ("airy", {"radius": 4.0}, 0.71, 0.003),
        ("defocus", {"radius": 6.0, "airy_radius": 3.0}, 0.71, 0.003),
        ("defocus", {"waves": 0.5, "airy_radius": 2.5}, 0.71, 0.003),
        ("ring", {"radius": 8.0, "width": 2.0, "softness": 1.0}, 0.71, 0.005),
        ("disk", {"radius": 2.0}, 0.25, 0.015),
        ("disk", {"radius": 5.0}, 0.25, 0.015),
        ("ring", {"radius": 8.0, "width": 2.0}, 0.25, 0.015),
        ("box", {"width": 5.0}, 0.25, 0.04),
        ("box", {"width": 4.0, "height": 7.0}, 0.25, 0.04),
        ("motion", {"length": 9.0, "angle": 30.0}, 0.25, 0.05),
        ("motion", {"length": 15.0, "angle": 60.0}, 0.25, 0.05),
        ("elliptical_gauss", {"sigma_major": 3.0, "sigma_minor": 1.2, "angle": 25.0}, 0.71, 0.01),
        # The pupil models' OTF is the pupil's autocorrelation, an independent computation.
        ("defocus", {"waves": 1.0, "spherical": 0.6, "airy_radius": 2.5}, 0.71, 0.01),
        (
            "astigmatic",
            {"radius_major": 6.0, "radius_minor": 2.0, "angle": 40.0, "airy_radius": 2.5},
            0.71,
            0.01,
        ),
    ],
)
def test_rendered_mtf_matches_analytic_otf(model, params, fmax, tol):
    assert _mtf_error(model, params, fmax) <= tol


def test_undersampled_airy_aliases():
    # Below Nyquist sampling the point samples cannot have the analytic OTF: the test above
    # is not vacuous.
    assert _mtf_error("airy", {"radius": 1.5}, 0.71) > 0.05


@pytest.mark.parametrize("waves", [0.0, 0.5, 2.0])
def test_hopkins_otf_matches_pupil_autocorrelation(waves):
    # Independent check: the OTF is the normalised autocorrelation of the defocused pupil.
    n, a = 256, 40
    y, x = np.mgrid[-n // 2 : n // 2, -n // 2 : n // 2] / a
    pupil = (x**2 + y**2 <= 1) * np.exp(2j * np.pi * waves * (x**2 + y**2))
    intensity = np.abs(np.fft.fft2(np.fft.ifftshift(pupil))) ** 2
    auto = np.fft.ifft2(intensity).real
    shifts = np.arange(0, 2 * a, 4)
    brute = auto[0, shifts] / auto[0, 0]
    # A shift of s pupil radii is the frequency s/2 of the cutoff.
    exact = P.defocus_otf(shifts / a / 2, waves=waves, cutoff=1.0)
    assert np.abs(exact - brute).max() < 0.01
    approx = P.defocus_otf(shifts / a / 2, waves=waves, cutoff=1.0, method="stokseth")
    assert np.abs(approx - exact).max() < 0.035


def test_defocus_limits():
    # No defocus is the Airy pattern; large defocus tends to the geometric disk.
    assert np.allclose(
        P.defocus(waves=0.0, airy_radius=3.0, shape=41), P.airy(3.0, shape=41), atol=1e-12
    )
    rho = np.linspace(0, 0.03, 50)
    radius, cutoff = 40.0, 0.5
    wave = P.defocus_otf(rho, waves=radius * cutoff / 4, cutoff=cutoff)
    geometric = P._jinc(rho, radius)
    assert np.abs(wave - geometric).max() < 0.05


@pytest.mark.parametrize(
    ("model", "fixed", "sigma"),
    [
        ("gauss", {}, 1.7),
        ("disk", {}, 2.2),
        ("ring", {"width": 2.0, "softness": 0.5}, 4.0),
        ("airy", {}, 1.2),
        ("defocus", {"airy_radius": 2.0}, 3.0),
        ("box", {"height": 3.0}, 2.0),
        ("motion", {"angle": 10.0}, 2.5),
        ("elliptical_gauss", {"sigma_minor": 1.0, "angle": 10.0}, 2.5),
        ("astigmatic", {"radius_minor": 2.0, "airy_radius": 2.0}, 3.0),
    ],
)
def test_natural_parameter_round_trip(model, fixed, sigma):
    value = P.natural_from_sigma(model, sigma, **fixed)
    params = {P.MODELS[model].natural: value, **fixed}
    assert P.sigma_of(model, **params) == pytest.approx(sigma, rel=1e-9)


def test_design_conversion_constants():
    assert P.blur_width("gauss", "fwhm", sigma=2.0) == pytest.approx(2.3548 * 2, rel=1e-4)
    assert P.blur_width("gauss", "edge", sigma=2.0) == pytest.approx(1.683 * 2, rel=1e-3)
    assert P.convert_width(3.0, from_="sigma", to="radius", model="disk") == pytest.approx(6.0)
    assert P.convert_width(10.0, from_="diameter", to="sigma", model="disk") == pytest.approx(2.5)
    assert P.convert_width(
        P.blur_width("gauss", "fwhm", sigma=1.3), from_="fwhm", to="sigma", model="gauss"
    ) == pytest.approx(1.3, rel=1e-6)
    # Airy FWHM is 0.514 λ/NA, its first zero 0.610 λ/NA (Born & Wolf §8.5).
    assert P.blur_width("airy", "fwhm", radius=1.0) == pytest.approx(0.5145 / 0.6098, rel=2e-3)


def _edge_width_of(kernel):
    """20–80 % rise of a blurred step, measured on the kernel's line spread."""
    lsf = kernel.sum(axis=0)
    esf = np.cumsum(lsf)
    x = np.arange(esf.size) + 0.5  # the cumulative sum rises across each pixel
    return float(np.interp(0.8, esf, x) - np.interp(0.2, esf, x))


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ("gauss", {"sigma": 4.0}),
        ("disk", {"radius": 9.0}),
        ("ring", {"radius": 9.0, "width": 2.0, "softness": 1.5}),
        ("ring", {"radius": 9.0, "width": 3.0}),
        ("airy", {"radius": 6.0}),
        ("defocus", {"radius": 10.0, "airy_radius": 3.0}),
    ],
)
def test_edge_width_matches_rendered_kernel(model, params):
    measured = _edge_width_of(P.render(model, **params))
    expected = P.blur_width(model, "edge", **params)
    # Area sampling widens hard-edged kernels by the pixel; the sampled ESF is piecewise linear.
    assert measured == pytest.approx(expected, rel=0.05)


def test_bad_parameters_are_refused():
    with pytest.raises(BadInputError, match="radius"):
        P.disk(-1.0)
    with pytest.raises(BadInputError, match="unknown PSF model"):
        P.render("lorentz", width=2)
    with pytest.raises(BadInputError, match="unknown parameter"):
        P.render("disk", sigma=2)
    with pytest.raises(BadInputError, match="exactly one"):
        P.defocus(3.0, waves=1.0, airy_radius=2.0)
    with pytest.raises(BadInputError, match="wavelength"):
        P.airy()
    with pytest.raises(BadInputError, match="NaN"):
        P.as_kernel([[np.nan, 1.0]])
    with pytest.raises(BadInputError, match="narrower"):
        P.natural_from_sigma("ring", 0.1, width=2.0, softness=1.0)


def test_airy_from_optics_equals_airy_from_radius():
    r = P.airy_radius(0.55, 0.8, 0.1)
    assert r == pytest.approx(0.6098 * 0.55 / 0.8 / 0.1, rel=1e-4)
    assert np.allclose(
        P.airy(wavelength=0.55, na=0.8, pixel_size=0.1, shape=31), P.airy(r, shape=31)
    )


@pytest.mark.parametrize(("model", "params"), CASES)
@pytest.mark.parametrize("offset", [(0.0, 0.0), (0.3, -0.45)])
def test_every_kernel_is_non_negative(model, params, offset):
    # A PSF is an intensity: no rounding residue below zero (a disk used to hold -6e-17).
    for shape in (None, (20, 15)):
        assert P.render(model, shape=shape, offset=offset, **params).min() >= 0
    assert P.render("disk", radius=3).min() >= 0


def _required_params(model: str) -> dict:
    """The first CASES entry of a model, which names everything it needs."""
    return next(p for m, p in CASES if m == model and all(v != 0 for v in p.values()))


@pytest.mark.parametrize("model", list(P.MODELS))
def test_every_model_names_missing_and_unknown_parameters(model):
    params = _required_params(model)
    P.render(model, **params)  # the complete set renders
    for name in params:
        partial = {k: v for k, v in params.items() if k != name}
        try:
            P.render(model, **partial)
        except BadInputError as exc:  # a one-line message that names the model and a need
            text = str(exc)
            assert model in text and "\n" not in text and "needs" in text
            assert name in text or any(p in text for p in P.MODELS[model].params)
        # else: ``name`` was optional (a ring's width, a box's height)
    for call in (P.render, P.sigma_of):
        with pytest.raises(BadInputError, match=rf"^{model} PSF needs"):
            call(model)
        with pytest.raises(
            BadInputError, match=rf"^{model} PSF takes .*unknown parameter\(s\) bogus"
        ):
            call(model, bogus=1.0, **params)
    with pytest.raises(BadInputError, match=rf"^{model} PSF needs"):
        P.otf(model, (8, 8))


@pytest.mark.parametrize("model", list(P.MODELS))
def test_non_numeric_parameters_are_refused(model):
    params = _required_params(model)
    for name in params:
        for bad in ("two", [1.0, 2.0]):
            with pytest.raises(BadInputError, match=name):
                P.render(model, **{**params, name: bad})


@pytest.mark.parametrize("waves", [0.0, 0.7, 2.5])
@pytest.mark.parametrize("airy_radius", [0.8, 2.5])
def test_pupil_rendering_matches_hopkins(waves, airy_radius):
    # Two independent computations of the same PSF: the pupil's Fourier transform (taken when
    # spherical aberration is present, here a negligible amount) and the Hopkins OTF.
    hopkins = P.defocus(waves=waves, airy_radius=airy_radius, shape=41, offset=(0.2, -0.3))
    pupil = P.defocus(
        waves=waves, spherical=1e-9, airy_radius=airy_radius, shape=41, offset=(0.2, -0.3)
    )
    assert np.linalg.norm(pupil - hopkins) / np.linalg.norm(hopkins) < 0.01


def test_spherical_aberration_tells_the_sides_of_focus():
    a = {"airy_radius": 2.5, "shape": 41}
    before = P.defocus(waves=-1.0, spherical=0.6, **a)
    after = P.defocus(waves=1.0, spherical=0.6, **a)
    assert np.linalg.norm(before - after) / np.linalg.norm(after) > 0.2
    # Only the relative sign is visible in an intensity PSF.
    flipped = P.defocus(waves=1.0, spherical=-0.6, **a)
    assert np.allclose(before, flipped, atol=1e-12)
    # Spherical aberration balances defocus on one side: the core is brighter there.
    assert before.max() > after.max()
    assert P.sigma_of("defocus", waves=-1.0, spherical=0.6, airy_radius=2.5) < P.sigma_of(
        "defocus", waves=1.0, spherical=0.6, airy_radius=2.5
    )


@pytest.mark.parametrize("angle", [-70.0, 0.0, 30.0, 90.0])
@pytest.mark.parametrize(("major", "minor"), [(3.0, 1.2), (1.2, 3.0)])
def test_elliptical_gauss_moments_follow_the_angle(angle, major, minor):
    k = P.elliptical_gauss(major, minor, angle=angle)
    t = np.radians(angle)
    a = np.array([-np.sin(t), np.cos(t)])  # (dy, dx): counter-clockwise as displayed
    b = np.array([np.cos(t), np.sin(t)])
    expected = major**2 * np.outer(a, a) + minor**2 * np.outer(b, b)
    # The default box holds 99.9 % of the energy, so the variance is within 0.5 %.
    assert np.allclose(P.moments(k).covariance, expected, atol=0.005 * max(major, minor) ** 2)


@pytest.mark.parametrize("angle", [-45.0, 0.0, 60.0])
def test_astigmatic_is_a_stretched_defocus(angle):
    # Equal axes give the round defocus PSF; unequal ones stretch it along ``angle``.
    round_ = P.astigmatic(5.0, 5.0, angle=angle, airy_radius=2.0, shape=41)
    assert np.linalg.norm(round_ - P.defocus(5.0, airy_radius=2.0, shape=41)) < 0.01 * (
        np.linalg.norm(round_)
    )
    k = P.astigmatic(9.0, 3.0, angle=angle, airy_radius=1.5, shape=51)
    vals, vecs = np.linalg.eigh(P.moments(k).covariance)
    dy, dx = vecs[:, 1]
    found = np.degrees(np.arctan2(-dy, dx))
    assert (found - angle + 90) % 180 - 90 == pytest.approx(0, abs=1.0)
    assert math.sqrt(vals[1] / vals[0]) > 2


def test_families_are_the_models_that_sigma_alone_sizes():
    from typing import get_args

    from defocus._types import Family

    assert P.FAMILIES == ("gauss", "disk") == get_args(Family)
    for name in P.FAMILIES:
        assert P.family_kernel(name, 0.0).max() == 1.0
        for sigma in (1.5, 3.0):
            k = P.family_kernel(name, sigma)
            area = P.MODELS[name].area_sampled
            assert P.moments(k, area_sampled=area).sigma == pytest.approx(sigma, rel=0.02)
    with pytest.raises(BadInputError, match="PSF family"):
        P.family_kernel("ring", 1.0)
