"""Kernel estimation from a pair and PSF model selection."""

from __future__ import annotations

import os
from pathlib import Path

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


def test_gram_matrix_is_exact():
    from numpy.lib.stride_tricks import sliding_window_view

    from defocus.kernel import _gram

    rng = np.random.default_rng(3)
    for shape, m in (((21, 26), 5), ((17, 19), 9), ((50, 57), 21), ((9, 12), 1), ((30, 23), 2)):
        x = rng.normal(size=shape)
        windows = sliding_window_view(x, (m, m)).reshape(-1, m * m)
        exact = windows.T @ windows
        # The corner bands are summed in float32: relative error ~1e-7 of the diagonal.
        np.testing.assert_allclose(_gram(x, m), exact, atol=1e-7 * np.abs(exact).max())


def test_dropped_tiles_are_covered_once_by_few_rectangles():
    from defocus.kernel import _CLIP_TILE, _dropped_runs

    t = _CLIP_TILE
    dropped = np.zeros((5 * t, 4 * t), bool)
    dropped[10, 70] = dropped[t + 5, t + 3] = dropped[2 * t + 1, t + 1] = True  # one column
    dropped[4 * t + 2, 3 * t + 9] = True
    runs = _dropped_runs(dropped)
    cover = np.zeros(dropped.shape, int)
    for r0, r1, c0, c1 in runs:
        cover[r0:r1, c0:c1] += 1
    tiles = dropped.reshape(5, t, 4, t).any(axis=(1, 3))
    np.testing.assert_array_equal(cover, np.kron(tiles, np.ones((t, t), int)))
    assert len(runs) == 2  # three tiles stacked in one column merge into one rectangle


def test_beats_fourier_division_at_one_percent_noise(sharp):
    kernel = P.disk(5.5)
    blurry = _pair(sharp, kernel, 2.55)
    est = estimate_kernel(sharp, blurry, size=kernel.shape[0])
    n = kernel.shape[0]
    k = np.fft.fftshift(np.fft.ifft2(np.fft.fft2(blurry) / np.fft.fft2(sharp)).real)
    c = sharp.shape[0] // 2
    naive = np.clip(k[c - n // 2 : c + n // 2 + 1, c - n // 2 : c + n // 2 + 1], 0, None)
    assert _rel(est.kernel, kernel) < 0.5 * _rel(naive / naive.sum(), kernel)
    assert est.noise == pytest.approx(2.55, rel=0.3)


def test_automatic_size_does_not_run_away_with_noise(sharp):
    kernel = P.gaussian(1.5)
    est = estimate_kernel(sharp, _pair(sharp, kernel, 2.55))
    assert est.kernel.shape[0] <= 23
    assert est.sigma == pytest.approx(1.5, rel=0.15)


def test_colour_gives_one_kernel_per_channel():
    rgb = data.astronaut()[100:228, 150:278].astype(float)
    kernel = P.gaussian(1.5, shape=11)
    full = data.astronaut().astype(float)
    blurry = blur(full, kernel, channel_axis=-1)[100:228, 150:278]
    est = estimate_kernel(rgb, blurry, size=11, channel_axis=-1)
    assert est.kernel.shape == (11, 11, 3)
    for c in range(3):
        assert _rel(est.kernel[..., c], kernel) < 0.1


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return data.camera().astype(float)


@pytest.mark.parametrize("diameter", [9, 14, 23])
def test_identify_finds_the_disk_diameter(scene, diameter):
    from defocus.kernel import identify

    blurry = add_gaussian_noise(blur(scene, P.disk(diameter / 2))[64:320, 64:320], 2.55, rng=2)
    found = identify(blurry)
    assert found.model == "disk"
    assert found.diameter == pytest.approx(diameter, abs=1.0)
    assert found.sigma == pytest.approx(found.params["radius"] / 2)
    assert 0.0 <= found.confidence <= 1.0
    rendered = found.kernel()
    np.testing.assert_allclose(rendered, P.render("disk", **found.params))


@pytest.mark.parametrize("sigma", [1.5, 4.0])
def test_identify_tells_gaussian_blur(scene, sigma):
    from defocus.kernel import identify

    blurry = add_gaussian_noise(blur(scene, P.gaussian(sigma))[64:320, 64:320], 2.55, rng=2)
    found = identify(blurry)
    assert found.model == "gauss" and found.diameter is None
    assert found.params["sigma"] == pytest.approx(sigma, rel=0.2)
    assert found.sigma == found.params["sigma"]


def test_identify_more_blur_reads_larger_and_rejects_bad_input(scene):
    from defocus.kernel import identify

    sizes = [
        identify(add_gaussian_noise(blur(scene, P.gaussian(s))[128:384, 128:384], 0.255)).sigma
        for s in (1.0, 2.0, 3.0, 5.0)
    ]
    assert sizes == sorted(sizes)
    with pytest.raises(BadInputError, match="at least 64"):
        identify(scene[:40, :40])
    with pytest.raises(BadInputError, match="disk"):
        identify(scene, models=("airy",))


def test_identify_says_so_when_pure_noise_holds_no_blur():
    from defocus.kernel import identify

    found = identify(np.random.default_rng(2).normal(100, 5, (256, 256)))
    assert not found.identified
    assert found.verdict.startswith("blur not identifiable")
    assert found.to_dict()["identified"] is False


def _demosaiced_noise(shape: tuple[int, int], sd: float, seed: int) -> np.ndarray:
    """Noise with lag-1 correlation 0.6, as after demosaicing."""
    white = np.random.default_rng(seed).normal(0, 1, shape)
    return sd / 0.403 * ndi.gaussian_filter(white, 0.7)


def test_identify_reads_blur_through_correlated_noise_and_refuses_it_alone(scene):
    # Correlated noise falls with frequency like a blur: with a white noise floor identify
    # called pure demosaiced noise a 2 px disk (confidence 0.48) and misread or refused the
    # real blurs below; the measured noise spectrum tells them apart.
    from defocus.kernel import identify

    assert not identify(100 + _demosaiced_noise((256, 256), 5, 2)).identified
    disk = identify(blur(scene, P.disk(6.0)) + _demosaiced_noise(scene.shape, 2, 3))
    assert disk.model == "disk" and disk.diameter == pytest.approx(12, abs=1.0)
    for sigma in (1.5, 3.0):
        found = identify(blur(scene, P.gaussian(sigma)) + _demosaiced_noise(scene.shape, 2, 4))
        assert found.identified and found.sigma == pytest.approx(sigma, rel=0.2)


def test_identify_reads_large_blur_in_a_jpeg_at_lower_resolution(scene):
    # JPEG at quality 70 bends the noise floor where a 6 px blur leaves nothing but floor:
    # at full resolution the fit explains nothing, at half resolution the fall-off is clean.
    import io

    import imageio.v3 as iio

    from defocus.kernel import _identify, identify

    noisy = blur(scene, P.gaussian(6.0)) + _demosaiced_noise(scene.shape, 3, 5)
    buf = io.BytesIO()
    iio.imwrite(buf, np.clip(np.rint(noisy), 0, 255).astype(np.uint8), extension=".jpg", quality=70)
    jpeg = iio.imread(buf.getvalue(), extension=".jpg")
    assert not _identify(jpeg.astype(float), ("disk", "gauss")).identified
    found = identify(jpeg)
    assert found.model == "gauss" and found.sigma == pytest.approx(6.0, rel=0.15)


@pytest.mark.slow  # an end-to-end run: more than 10 s on 2 cores
def test_automatic_size_finds_a_hollow_ring():
    # The best small-support fit of a ring blur is a compact blob; the search must not stop
    # there.
    kernel = P.ring(8.0, width=2.0)
    full = data.brick().astype(float)
    sharp = full[96:352, 96:352]
    blurry = add_gaussian_noise(blur(full, kernel)[96:352, 96:352], 0.255, rng=4)
    est = estimate_kernel(sharp, blurry)
    assert est.kernel.shape[0] >= kernel.shape[0]
    assert est.shift == pytest.approx((0.0, 0.0), abs=0.2)
    m = est.kernel.shape[0]
    assert _rel(est.kernel, np.pad(kernel, (m - kernel.shape[0]) // 2)) < 0.15


def test_given_size_registers_a_ring_from_its_rim():
    # The gradient correlation peaks on the ring's rim, 12 px from its centre; a box of 31 px
    # once registered the pair on the rim (a 9 px shift) and returned half a ring.
    kernel = P.ring(12.0, width=2.0)
    full = data.camera().astype(float)
    sharp = full[32:-32, 32:-32]
    blurry = add_gaussian_noise(blur(full, kernel, mode="reflect")[32:-32, 32:-32], 0.255, rng=2)
    est = estimate_kernel(sharp, blurry, size=31)
    assert est.shift == pytest.approx((0.0, 0.0), abs=0.2)
    assert _rel(est.kernel, np.pad(kernel, 2)) < 0.1


def test_colour_kernels_match_the_grey_fit():
    # Channels fit from the luminance fit's weights and solution; an achromatic blur gives
    # each channel the grey kernel.
    kernel = P.disk(3.5)
    rgb = data.astronaut()[100:260, 150:310].astype(float)
    blurry = add_gaussian_noise(blur(rgb, kernel, channel_axis=-1), 1.0, rng=5, channel_axis=-1)
    est = estimate_kernel(rgb, blurry, channel_axis=-1, size=kernel.shape[0])
    grey = estimate_kernel(rgb.mean(-1), blurry.mean(-1), size=kernel.shape[0])
    for c in range(3):
        assert _rel(est.kernel[..., c], grey.kernel) < 0.15
    assert _rel(est.kernel.mean(-1), kernel) < 0.1


# --------------------------------------------------------------------------------------------
# trust: mismatch, clipping, border

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DEFOCUS_SHARED_DATA", ROOT.parent / "shared" / "data"))
SEM = DATA / "real" / "sem_deepfocus_wd"


@pytest.fixture(scope="module")
def matching() -> tuple[np.ndarray, np.ndarray]:
    full = data.camera().astype(float)
    blurred = add_gaussian_noise(blur(full, P.disk(3.0)), 2.55, rng=3)
    return full[64:320, 64:320], blurred


@pytest.mark.parametrize("kind", ["unrelated", "rotated", "inverted", "shifted 200 px"])
def test_a_wrong_pair_is_flagged(matching, kind):
    sharp, blurred = matching
    blurry = {
        "unrelated": lambda: add_gaussian_noise(
            data.coins()[:256, :256].astype(float), 2.55, rng=3
        ),
        "rotated": lambda: np.rot90(blurred[64:320, 64:320]),
        "inverted": lambda: 255.0 - blurred[64:320, 64:320],
        "shifted 200 px": lambda: blurred[184:440, 224:480],  # (120, 160) px away
    }[kind]()
    try:
        est = estimate_kernel(sharp, blurry, size=15)
    except BadInputError as err:  # no positive kernel at all: refused outright
        assert str(err).startswith("the pair does not match")
        return
    assert not est.matches
    assert est.explained < 0.5 * est.explainable
    assert est.warnings[0].startswith("the pair does not match:")
    assert est.to_dict()["warnings"] == est.warnings


def test_a_matching_pair_is_not_flagged(matching):
    sharp, blurred = matching
    est = estimate_kernel(sharp, blurred[64:320, 64:320])
    assert est.matches and est.warnings == []
    assert est.explained > 0.99
    # The residual is the noise: 2.55 added, measured on blurry alone.
    assert est.residual / est.measured_noise == pytest.approx(1.0, abs=0.15)


def test_a_clipped_region_is_left_out_and_counted(matching):
    sharp, blurred = matching
    blurry = blurred[64:320, 64:320].copy()
    ref = estimate_kernel(sharp, blurry, size=15)
    assert ref.excluded < 0.01  # camera's own few saturated pixels
    # Saturate a block of the blurred frame at its own maximum and a block of the sharp one
    # at 255 (uint8's limit): the model does not hold there.
    top = float(blurry.max()) + 60.0
    blurry[20:60, 150:210] = top
    clipped_sharp = sharp.copy()
    clipped_sharp[180:220, 30:70] = 255.0
    est = estimate_kernel(clipped_sharp.astype(np.uint8), blurry, size=15)
    assert est.clipped >= ref.clipped + 40 * 60 + 40 * 40
    assert ref.excluded < est.excluded < 0.6
    assert _rel(est.kernel, ref.kernel) < 0.05
    assert est.matches
    # Fitting through the clipped pixels instead distorts the kernel.
    import defocus.kernel as K

    def nothing(image, channel_axis=None):
        return np.zeros(np.shape(image)[:2], bool)

    try:
        K.saturated, saved = nothing, K.saturated
        naive = estimate_kernel(clipped_sharp.astype(np.uint8), blurry, size=15)
    finally:
        K.saturated = saved
    assert _rel(naive.kernel, ref.kernel) > 2 * _rel(est.kernel, ref.kernel)


def test_a_box_too_small_for_the_kernel_is_flagged(matching):
    sharp, blurred = matching
    est = estimate_kernel(sharp, blurred[64:320, 64:320], size=5)
    assert est.border > 0.1
    assert any(w.startswith("the kernel box (5 px) is too small") for w in est.warnings)


def test_progress_reports_each_step(matching):
    sharp, blurred = matching
    seen: list[tuple[int, int, str]] = []
    estimate_kernel(sharp, blurred[64:320, 64:320], progress=lambda *a: seen.append(a))
    whats = [w for *_, w in seen]
    assert whats[0] == "registration" and any(w.startswith("kernel support") for w in whats)
    done = [d for d, *_ in seen]
    assert done == sorted(done) and all(d <= t for d, t, _ in seen)


@pytest.mark.skipif(not SEM.is_dir(), reason="shared real data not available")
def test_real_sem_pair_is_reproduced_to_the_noise():
    from defocus.io import read_image

    stem = "series_0_def-13324_astx-466_asty219_"
    sharp = read_image(SEM / f"{stem}pert5000.png").data[128:640, 256:768]
    blurry = read_image(SEM / f"{stem}base.png").data[128:640, 256:768]
    est = estimate_kernel(sharp, blurry)
    assert est.clipped > 0  # the dark ends of the 8-bit range are cut at 0
    assert est.matches and est.warnings == []
    assert est.residual <= 1.5 * est.measured_noise


def _noisy(k: np.ndarray, seed: int = 0) -> np.ndarray:
    return k + np.random.default_rng(seed).normal(0, 0.01 * k.max(), k.shape)


def _angle_gap(a: float, b: float) -> float:
    """Difference of two axis directions in degrees, modulo 180."""
    return abs((a - b + 90) % 180 - 90)


@pytest.mark.parametrize("angle", [-60.0, 15.0, 75.0])
@pytest.mark.parametrize("swap", [False, True])
def test_fit_recovers_the_astigmatic_axes_and_angle(angle, swap):
    # (7, 3) along ``angle`` is the same ellipse as (3, 7) across it: both must read (7, 3).
    axes = (
        {"radius_major": 3.0, "radius_minor": 7.0, "angle": angle - 90}
        if swap
        else {
            "radius_major": 7.0,
            "radius_minor": 3.0,
            "angle": angle,
        }
    )
    k = _noisy(P.astigmatic(**axes, airy_radius=1.5, shape=31))
    fit = fit_psf(k, models=("gauss", "defocus", "astigmatic"))
    assert fit.model == "astigmatic"
    p, d = fit.best.params, fit.best.derived
    assert p["radius_major"] == pytest.approx(7.0, abs=0.3)
    assert p["radius_minor"] == pytest.approx(3.0, abs=0.3)
    assert _angle_gap(p["angle"], angle) < 2 and -90 < d["angle"] <= 90
    assert d["sigma_major"] > d["sigma_minor"] and d["axis_ratio"] > 1.5


@pytest.mark.parametrize("angle", [-30.0, 50.0, 90.0])
@pytest.mark.parametrize("swap", [False, True])
def test_fit_recovers_the_elliptical_gaussian(angle, swap):
    params = (1.5, 3.5, angle - 90) if swap else (3.5, 1.5, angle)
    k = _noisy(P.elliptical_gauss(params[0], params[1], angle=params[2], shape=25))
    fit = fit_psf(k, models=("gauss", "elliptical_gauss"))
    assert fit.model == "elliptical_gauss"
    d = fit.best.derived
    assert (d["sigma_major"], d["sigma_minor"]) == pytest.approx((3.5, 1.5), abs=0.05)
    assert _angle_gap(d["angle"], angle) < 1


@pytest.mark.parametrize(
    ("model", "params"),
    [("gauss", {"sigma": 2.5}), ("disk", {"radius": 6.0}), ("defocus", {"waves": 1.2})],
)
def test_round_blur_is_not_called_anisotropic(model, params):
    extra = {"airy_radius": 2.0} if model == "defocus" else {}
    k = _noisy(P.render(model, shape=25, **params, **extra), seed=3)
    fit = fit_psf(k)
    assert fit.model == model


BEADS = (
    Path(os.environ.get("DEFOCUS_SHARED_DATA", Path(__file__).parents[2] / "shared" / "data"))
    / "real"
    / "psf_beads_pyotf"
    / "psf_wl520nm_z300nm_x130nm_na0.85_n1.0.tif"
)


@pytest.mark.skipif(not BEADS.exists(), reason="the shared bead PSF stack is not present")
def test_measured_bead_psf_is_airy_in_focus_and_defocus_linear_in_z():
    import tifffile

    stack = tifffile.imread(BEADS).astype(float)
    focus = int(np.argmax(stack.reshape(len(stack), -1).max(axis=1)))
    cy, cx = np.unravel_index(int(np.argmax(stack[focus])), stack[focus].shape)

    def frame(i: int) -> np.ndarray:
        crop = stack[i, cy - 32 : cy + 33, cx - 32 : cx + 33]
        return crop - np.median(stack[i, :16])  # the camera offset

    models = ("gauss", "ring", "airy", "defocus")
    fit = fit_psf(frame(focus), models=models)
    assert fit.model in ("airy", "defocus")
    assert abs(fit.fits["defocus"].params["waves"]) < 0.3
    z, w = [], []
    for step in (3, 6, 9, 12):
        fit = fit_psf(frame(focus + step), models=models)
        assert fit.model == "defocus"
        z.append(0.3 * step)
        w.append(fit.best.params["waves"])
    slope, icept = np.polyfit(z, w, 1)
    resid = np.array(w) - (slope * np.array(z) + icept)
    assert 1 - resid @ resid / np.sum((np.array(w) - np.mean(w)) ** 2) >= 0.95


def test_identify_confidence_falls_as_noise_buries_the_blur(scene):
    # A constant or range-only confidence would pass the other identify tests: here the same
    # 14 px disk is read confidently under light noise and less and less as noise buries its
    # spectral zeros, until identify refuses it.
    from defocus.kernel import identify

    blurry = blur(scene, P.disk(7.0))[64:320, 64:320]
    found = [identify(add_gaussian_noise(blurry, sd, rng=2)) for sd in (2.55, 40.0, 80.0)]
    light, heavy, buried = (f.confidence for f in found)
    assert light > 0.75 and found[0].diameter == pytest.approx(14, abs=1.0)
    assert light > heavy > buried
    assert buried < 0.3 and not found[2].identified


def test_noise_keyword_is_noise_sigma_under_its_old_name(sharp):
    blurry = _pair(sharp, P.disk(3.0, shape=9), 0.5)
    new = estimate_kernel(sharp, blurry, size=9, noise_sigma=0.5)
    with pytest.warns(FutureWarning, match="noise= is deprecated; use noise_sigma="):
        old = estimate_kernel(sharp, blurry, size=9, noise=0.5)
    np.testing.assert_array_equal(old.kernel, new.kernel)
    assert new.noise != estimate_kernel(sharp, blurry, size=9, noise_sigma=5.0).noise
