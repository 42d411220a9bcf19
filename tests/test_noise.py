"""Properties of the noise model: it measures what was put in, of every kind."""

from __future__ import annotations

import io
import itertools
import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import data
from skimage.draw import polygon

from defocus import blur_map
from defocus.io import read_image
from defocus.noise import (
    band_noise,
    compression_variance,
    estimate_noise,
    haar_sigma,
    local_noise_variance,
    noise_floor,
    noise_level,
    noise_spectrum,
    white_haar,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DEFOCUS_SHARED_DATA", ROOT.parent / "shared" / "data"))
DEEPFOCUS = SHARED / "real" / "sem_deepfocus_wd"
PCB = SHARED / "real_stacks" / "focus-stack_pcb_depthmap"


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


def _band(spectrum: np.ndarray):
    f = np.fft.fftfreq(64)
    w2 = (2 * np.pi) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2)
    return band_noise(spectrum, w2 * np.exp(-w2))


def test_local_noise_of_correlated_noise_is_measured_with_its_spectrum():
    # Demosaicing-like noise (lag-1 correlation 0.6) has little energy at the finest Haar
    # level: taken as white it reads as texture, with its spectrum it is measured in full.
    img = 100 + 10 * ndi.gaussian_filter(np.random.default_rng(5).normal(0, 1, (512, 512)), 0.7)
    true = float(np.var(img))
    band = _band(noise_spectrum(img))
    assert band.weight > 1.5 and band.haar[0] < 0.5
    assert np.median(local_noise_variance(img, haar=band.haar)) == pytest.approx(true, rel=0.15)
    assert np.median(local_noise_variance(img)) < 0.2 * true


def test_texture_is_not_taken_for_correlated_noise():
    # Flat blocks of a textured image hold sparse, non-Gaussian detail: the spectrum stays
    # white, so fine texture is not measured as noise.
    spectrum = noise_spectrum(data.gravel())
    np.testing.assert_allclose(spectrum, 1.0)
    band = _band(spectrum)
    assert band.haar == pytest.approx(white_haar())


def test_last_partial_block_measures_its_own_noise():
    rng = np.random.default_rng(6)
    img = rng.normal(0, 1, (100, 200))
    img[:, 180:] += rng.normal(0, 5, (100, 20))  # the last 8 columns of blocks are a partial one
    v = local_noise_variance(img, block=32)
    assert np.median(v[:, 192:]) > 4 * np.median(v[:, :128])


@pytest.mark.skipif(not DEEPFOCUS.is_dir(), reason="shared real data not available")
@pytest.mark.parametrize("frame", [0, 1, 2])
def test_poisson_gaussian_fit_on_real_sem_frames(frame):
    # Real SEM frames (8 bit, brain tissue): the Foi et al. fit gives a variance that grows
    # with the signal and is positive over the image's range, and the noise-level function
    # predicts the variance measured independently in the flattest regions within 20 %.
    path = sorted(DEEPFOCUS.glob("*.png"))[frame]
    img = read_image(path).data.astype(np.float64)
    nm = estimate_noise(img)
    lo, hi = np.percentile(img, [1, 99])
    assert nm.gain > 0 and nm.gain * lo + nm.floor > 0 and nm.gain * hi + nm.floor > 0
    # Independent measure: residual from a 4-px Gaussian in the 16-px blocks whose smoothed
    # gradient is in the lowest fifth, per third of their intensity range.
    smooth = ndi.gaussian_filter(img, 4)
    grad = np.hypot(*np.gradient(smooth))
    b = 16
    h, w = img.shape[0] // b, img.shape[1] // b

    def blocks(x: np.ndarray) -> np.ndarray:
        return x[: h * b, : w * b].reshape(h, b, w, b).transpose(0, 2, 1, 3).reshape(h * w, -1)

    means = blocks(img).mean(axis=1)
    var = blocks(img - smooth).var(axis=1)
    flat = blocks(grad).mean(axis=1) <= np.quantile(blocks(grad).mean(axis=1), 0.2)
    edges = np.quantile(means[flat], [0, 1 / 3, 2 / 3, 1])
    for a, c in itertools.pairwise(edges):
        sel = flat & (means >= a) & (means <= c)
        measured = float(np.median(var[sel]))
        assert float(nm.variance(np.median(means[sel]))) == pytest.approx(measured, rel=0.2)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    iio.imwrite(buf, image, extension=".jpg", quality=quality)
    return iio.imread(buf.getvalue(), extension=".jpg")


@pytest.mark.skipif(not DEEPFOCUS.is_dir(), reason="shared real data not available")
@pytest.mark.parametrize("frame", [0, 1, 2])
def test_jpeg_raises_the_noise_to_its_compression_error(frame):
    # A real SEM frame (8 bit, uncompressed PNG) shows no block grid: its model is unchanged.
    # Compressed, its flat blocks lose noise, but the steps across the grid bound the error
    # from below, and the model's variance never drops under that bound.
    img = read_image(sorted(DEEPFOCUS.glob("*.png"))[frame]).data
    raw = estimate_noise(img)
    assert raw.compression == 0.0
    jpeg = _jpeg(img, 50)
    error = float(np.var(jpeg.astype(np.float64) - img))
    nm = estimate_noise(jpeg)
    assert 0.3 * error < nm.compression <= error
    levels = np.linspace(*np.percentile(jpeg, [1, 99]), 20)
    assert np.all(nm.variance(levels) >= nm.compression)
    assert compression_variance(jpeg) == nm.compression


@pytest.mark.parametrize("quality", [50, 75, 90])
def test_compressed_pure_noise_never_reads_as_detail(quality):
    noise = np.random.default_rng(quality).normal(128, 8, (512, 512))
    jpeg = _jpeg(np.clip(noise, 0, 255).astype(np.uint8), quality)
    summary = blur_map(jpeg).summary()
    assert summary["sigma"] is None and "not measurable" in summary["verdict"]


@pytest.mark.skipif(not DEEPFOCUS.is_dir(), reason="shared real data not available")
def test_deconvolution_noise_level_sees_the_compression_error():
    img = read_image(sorted(DEEPFOCUS.glob("*.png"))[0]).data
    assert noise_level(img) == haar_sigma(img)  # uncompressed: unchanged
    jpeg = _jpeg(img, 50)
    assert noise_level(jpeg) ** 2 >= compression_variance(jpeg) > haar_sigma(jpeg) ** 2


@pytest.mark.skipif(not DEEPFOCUS.is_dir(), reason="shared real data not available")
def test_focus_noise_floor_sees_the_compression_error():
    # Compressed, the blocks' finest detail shows less noise than the compression error; the
    # focus measures' noise floor never drops below it.
    img = read_image(sorted(DEEPFOCUS.glob("*.png"))[0]).data
    jpeg = _jpeg(img, 50).astype(np.float64)
    _, floor = noise_floor(jpeg)
    seen = float(np.median(local_noise_variance(jpeg)))
    assert floor.min() >= 0.9 * compression_variance(jpeg) > seen


def test_detrend_is_the_least_squares_plane():
    from defocus.noise import _detrend

    blocks = data.camera()[:64, :96].astype(np.float64).reshape(2, 32, 3, 32)
    blocks = blocks.transpose(0, 2, 1, 3).reshape(6, 32, 32)
    resid, means, varis, slopes = _detrend(blocks)
    yy, xx = np.mgrid[:32, :32]
    design = np.stack([np.ones(1024), yy.ravel(), xx.ravel()], axis=1)
    coef, *_ = np.linalg.lstsq(design, blocks.reshape(6, -1).T, rcond=None)
    ref = blocks.reshape(6, -1) - (design @ coef).T
    np.testing.assert_allclose(resid, ref, atol=1e-9)
    np.testing.assert_allclose(slopes, np.hypot(coef[1], coef[2]), rtol=1e-9)
    np.testing.assert_allclose(means, blocks.mean(axis=(1, 2)))
    np.testing.assert_allclose(varis, (ref**2).sum(axis=1) / (1024 - 3))


def test_block_compression_needs_blocks_of_32_px():
    # Blocks must hold both halves of every phase of the 16-px period the grid test compares;
    # 16-px blocks cannot (the line between blocks is not measured): 0, quietly, not a guess.
    from defocus.noise import _block_compression

    rng = np.random.default_rng(0)
    soft = ndi.gaussian_filter(data.camera() * 1.0, 4) + rng.normal(0, 3, (512, 512))
    jpeg = _jpeg(np.clip(soft, 0, 255).astype(np.uint8), 50).astype(np.float64)

    def cut(b: int) -> np.ndarray:
        return jpeg.reshape(512 // b, b, 512 // b, b).transpose(0, 2, 1, 3).reshape(-1, b, b)

    assert _block_compression(cut(32)) == pytest.approx(compression_variance(jpeg), rel=0.5)
    assert _block_compression(cut(32)) > 0
    assert _block_compression(cut(16)) == 0.0


def _ramps(seed: int = 0) -> np.ndarray:
    """Smooth intensity ramps of every slope: blocky regions blurred by a Gaussian of 8 px."""
    rng = np.random.default_rng(seed)
    return ndi.gaussian_filter(ndi.zoom(rng.random((16, 16)), 64, order=0) * 160 + 40, 8)


@pytest.mark.parametrize("eight_bit", [False, True])
def test_white_noise_on_ramps_has_no_slope_term(eight_bit):
    # White noise is the same on a slope as on a flat area: the measured slope term is zero,
    # or a few percent of the noise at most.
    img = _ramps() + np.random.default_rng(1).normal(0, 1.5, (1024, 1024))
    if eight_bit:
        img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    nm = estimate_noise(img)
    assert float(nm.slope_variance(10.0)) <= 0.05 * float(nm.variance(120.0))
    assert float(nm.variance(120.0, slope=3.0)) == pytest.approx(
        float(nm.variance(120.0)), rel=0.05
    )


def _rectangles(seed: int = 0, n: int = 1024) -> np.ndarray:
    """Sharp-edged scene: 400 rotated rectangles of random grey levels, blurred by 0.7 px."""
    rng = np.random.default_rng(seed)
    img = np.full((n, n), 100.0)
    for _ in range(400):
        (cy, cx), (h, w), a = rng.uniform(0, n, 2), rng.uniform(30, 200, 2), rng.uniform(0, np.pi)
        u, v = np.array([-h, -h, h, h]) / 2, np.array([-w, w, w, -w]) / 2
        rows, cols = polygon(cy + u * np.cos(a) - v * np.sin(a), cx + u * np.sin(a) + v * np.cos(a))
        img[rows.clip(0, n - 1), cols.clip(0, n - 1)] = rng.uniform(30, 220)
    return ndi.gaussian_filter(img, 0.7)


def _mirrored_camera() -> np.ndarray:
    """A real sharp photograph, mirrored to 1024 px so that every slope bin is measured."""
    cam = data.camera().astype(np.float64)
    return np.block([[cam, cam[:, ::-1]], [cam[::-1], cam[::-1, ::-1]]])


@pytest.mark.parametrize("scene", ["rectangles", "camera"])
@pytest.mark.parametrize("eight_bit", [False, True])
def test_white_noise_on_sharp_edges_has_no_slope_term(scene, eight_bit):
    # Edges are steep, and their own fine detail is not noise: white noise on a scene of sharp
    # edges gives no slope term either.
    clean = _rectangles() if scene == "rectangles" else _mirrored_camera()
    img = clean + np.random.default_rng(2).normal(0, 2, clean.shape)
    if eight_bit:
        img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    # At most 5 % of the noise variance put in (4); the rectangles read 0.5-1.2 at slopes of
    # 0.5-4 when edges counted.
    assert float(estimate_noise(img).slope_variance(20.0)) <= 0.05 * 4.0


@pytest.mark.skipif(not PCB.is_dir(), reason="shared real data not available")
@pytest.mark.parametrize("frame", [0, 3, 9])
def test_camera_jpeg_has_more_noise_on_slopes(frame):
    # Real camera JPEGs (a focus stack of a circuit board) leave more error on intensity ramps
    # than on flat areas: the slope term is there, grows with the slope, exceeds what rounding
    # to 8 bits can leave (1/12 grey level²) at 1.5 levels per px, and is a sizeable share of
    # the noise on the steepest slopes.
    img = iio.imread(sorted(PCB.glob("*.JPG"))[frame])
    nm = estimate_noise(img, channel_axis=-1)
    steps = nm.slope_variance(np.array([0.0, 0.5, 1.0, 1.5]))
    assert steps[0] == 0 and np.all(np.diff(steps) >= 0) and steps[-1] > 1 / 12
    assert float(nm.slope_variances[-1]) > 0.1 * float(nm.variance(128.0))


def _edge_aware_denoise(img: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """A camera's adaptive noise reduction: smooths flat areas, keeps the noise on slopes."""
    keep = 1 - np.exp(-(ndi.gaussian_gradient_magnitude(clean, 3) ** 2))
    return keep * img + (1 - keep) * ndi.gaussian_filter(img, 1.5)


def test_slope_term_measures_noise_left_on_slopes():
    clean = _ramps()
    img = _edge_aware_denoise(clean + np.random.default_rng(1).normal(0, 1.5, clean.shape), clean)
    nm = estimate_noise(img)
    steps = nm.slope_variance(np.array([0.0, 0.5, 1.0, 2.0, 4.0]))
    assert steps[0] == 0 and np.all(np.diff(steps) >= 0)
    # Flat areas keep a tenth of the noise; on slopes of 2 px and more, all of it returns.
    assert steps[-2] > 3 * float(nm.variance(120.0))


def test_slope_term_follows_gain_and_offset():
    clean = _ramps()
    img = _edge_aware_denoise(clean + np.random.default_rng(1).normal(0, 1.5, clean.shape), clean)
    a, b = estimate_noise(img), estimate_noise(4 * img + 10)
    np.testing.assert_allclose(b.slopes, 4 * a.slopes, rtol=1e-4)
    np.testing.assert_allclose(b.slope_variances, 16 * a.slope_variances, rtol=1e-4)
    assert b.slope_block == a.slope_block


def test_cell_slope_matches_the_block_planes():
    # The slope the blur map reads per cell is the plane slope estimate_noise measured per block.
    from defocus.noise import _blocks, cell_slope

    img = _ramps()
    blocks = _blocks(img, 32, np.float64)
    c = np.arange(32) - 15.5
    norm = 32 * float(c @ c)
    plane = np.hypot(blocks.sum(axis=2) @ c / norm, blocks.sum(axis=1) @ c / norm)
    cells = img.reshape(256, 4, 256, 4).mean(axis=(1, 3))
    # The window of 8 cells starting at cell 8 j covers block j.
    per_cell = cell_slope(cells, cell=4, block=32)[4::8, 4::8].ravel()
    np.testing.assert_allclose(per_cell, plane, rtol=0.02, atol=1e-3)


def test_noise_free_inputs_give_a_finite_zero_model():
    # A constant image and an exact plane leave every block's residual at 0: no noise spectrum
    # to average and no variance to weight, yet the model is finite and (but for one grey
    # level's quantisation) zero.
    ramp = np.add.outer(np.arange(256.0), np.arange(256.0))
    for img, step in [(np.full((256, 256), 7.0), 0.0), (ramp, 1.0), (ramp.astype(np.uint16), 1.0)]:
        nm = estimate_noise(img)
        assert np.all(np.isfinite(nm.spectrum)) and np.isfinite(nm.correlation).all()
        assert nm.gain == 0 and nm.floor == 0
        assert float(nm.variance(100.0)) == pytest.approx(step**2 / 12)


@pytest.mark.parametrize("dtype", [np.float64, np.uint16])
def test_blur_map_of_a_clean_ramp_is_not_a_measurement(dtype):
    # A noise-free ramp has no edge: the map is made, and little of it is confident.
    ramp = np.add.outer(np.arange(512.0), np.arange(512.0)).astype(dtype)
    est = blur_map(ramp)
    assert est.sigma.shape == ramp.shape
    assert est.summary()["mean_confidence"] < 0.2


def test_blur_map_of_a_clean_ramp_with_an_edge_finds_the_sharp_edge():
    img = np.add.outer(np.arange(512.0), np.arange(512.0))
    img[:, 256:] += 100  # a perfect step: no blur
    est = blur_map(img)
    at_edge = est.sigma[128:384, 252:260]
    assert float(np.nanmedian(at_edge)) < 1.0
