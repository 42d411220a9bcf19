"""Property tests for defocus.blurmap: monotonic, invariant, dense, and roughly calibrated."""

from __future__ import annotations

import io
import itertools
import json

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import data

from defocus import BadInputError
from defocus.blurmap import BlurMap, blur_map
from defocus.io import PixelSize
from defocus.psf import blur_width


@pytest.fixture(scope="module")
def sharp() -> np.ndarray:
    """A 192 x 192 crop of the camera image, in [0, 1]."""
    return data.camera()[64:256, 160:352].astype(np.float32) / 255


def _noisy(img: np.ndarray, level: float = 0.01, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (img + level * rng.standard_normal(img.shape)).astype(np.float32)


def _disk_blur(img: np.ndarray, radius: float) -> np.ndarray:
    n = int(np.ceil(radius)) + 1
    y, x = np.mgrid[-n : n + 1, -n : n + 1]
    k = (x * x + y * y <= radius * radius).astype(np.float32)
    return ndi.convolve(img, k / k.sum(), mode="reflect")


def _blurred(sharp: np.ndarray, sigma: float, psf: str) -> np.ndarray:
    """Gaussian blur of sigma, or a uniform disk of radius 2 sigma (the same sigma)."""
    return ndi.gaussian_filter(sharp, sigma) if psf == "gauss" else _disk_blur(sharp, 2 * sigma)


def _median_structured(est: BlurMap, sharp: np.ndarray) -> float:
    g = np.hypot(*np.gradient(ndi.gaussian_filter(sharp, 1.0)))
    mask = ndi.maximum_filter(g, 7) > 0.02
    mask[:16], mask[-16:], mask[:, :16], mask[:, -16:] = False, False, False, False
    return float(np.median(est.sigma[mask]))


def test_more_blur_gives_larger_sigma(sharp):
    meds = [
        _median_structured(blur_map(_noisy(ndi.gaussian_filter(sharp, s))), sharp)
        for s in (0.5, 1.0, 2.0, 4.0, 8.0)
    ]
    assert all(b > a for a, b in itertools.pairwise(meds)), meds


@pytest.mark.parametrize("psf", ["gauss", "disk"])
def test_uniform_blur_is_measured_within_tolerance(sharp, psf):
    est = blur_map(_noisy(_blurred(sharp, 2.5, psf)), psf=psf)
    assert _median_structured(est, sharp) == pytest.approx(2.5, rel=0.3)


def test_gain_and_offset_do_not_change_sigma(sharp):
    blurred = _noisy(ndi.gaussian_filter(sharp, 2.0))
    ref = blur_map(blurred).sigma
    scaled = blur_map(4.0 * blurred + 1000.0).sigma
    assert np.median(np.abs(scaled - ref) / np.maximum(ref, 0.3)) < 0.02


def test_local_gain_does_not_change_local_sigma(sharp):
    """The contrast trap: a brighter, higher-contrast half of the scene must not read sharper.

    The benchmark's target is 5 %, which the method does not meet yet (6.7 % there; see
    benchmarks/results/blurmap.md); this guards against regressions beyond 10 %.
    """
    trapped = sharp.copy()
    trapped[:, 96:] = 4 * trapped[:, 96:] + 0.5
    a = np.median(blur_map(_noisy(ndi.gaussian_filter(sharp, 2.0))).sigma[24:-24, 120:-24])
    b = np.median(blur_map(_noisy(ndi.gaussian_filter(trapped, 2.0))).sigma[24:-24, 120:-24])
    assert b == pytest.approx(a, rel=0.10)


def test_dense_output_and_lower_confidence_in_flat_regions(sharp):
    img = _noisy(ndi.gaussian_filter(sharp, 1.5))
    img[:, 100:] = 0.5 + 0.01 * np.random.default_rng(1).standard_normal((192, 92))
    est = blur_map(img)
    for a in (est.sigma, est.confidence):
        assert a.shape == img.shape and a.dtype == np.float32 and np.isfinite(a).all()
    assert est.confidence.min() >= 0 and est.confidence.max() <= 1
    assert est.confidence[:, 140:].mean() < 0.5 * est.confidence[:, :60].mean()
    assert np.isnan(est.sparse).any() and est.sparse.shape == (48, 48)


def test_odd_shapes_integer_dtypes_and_colour(sharp):
    img8 = (ndi.gaussian_filter(sharp, 1.0)[:77, :53] * 255).astype(np.uint8)
    est = blur_map(img8)
    assert est.sigma.shape == (77, 53)
    rgb = np.stack([img8] * 3, axis=-1)
    assert np.allclose(blur_map(rgb, channel_axis=-1).sigma, est.sigma, atol=1e-3)


def test_deterministic(sharp):
    img = _noisy(ndi.gaussian_filter(sharp, 3.0))
    assert np.array_equal(blur_map(img).sigma, blur_map(img).sigma)


def test_conversions_and_summary(sharp):
    est = blur_map(_noisy(ndi.gaussian_filter(sharp, 2.0)), psf="disk", pixel_size=5e-9)
    assert np.allclose(est.to_parameter(), 2 * est.sigma)
    # A disk's FWHM is its diameter: a disk map of sigma 2 is 8 px wide, as psf.blur_width says.
    fwhm_at_sigma_2 = blur_width("disk", "fwhm", radius=4.0)  # 8 px
    assert np.allclose(est.to_parameter("fwhm"), fwhm_at_sigma_2 / 2 * est.sigma, rtol=1e-4)
    gauss = blur_map(_noisy(ndi.gaussian_filter(sharp, 2.0)), psf="gauss")
    assert np.allclose(gauss.to_parameter("fwhm"), 2.3548 * gauss.sigma, rtol=1e-4)
    assert np.allclose(gauss.to_parameter("edge_width"), 1.6832 * gauss.sigma, rtol=1e-4)
    assert np.allclose(est.to_physical("nm"), 5 * est.sigma, rtol=1e-5)
    assert est.pixel_size == PixelSize(5e-9, 5e-9, "m")
    s = json.loads(json.dumps(est.summary()))
    assert s["unit"] == "px" and s["psf"] == "disk"
    assert s["sigma"]["p10"] <= s["sigma"]["median"] <= s["sigma"]["p90"]


@pytest.mark.parametrize(
    ("image", "kwargs", "match"),
    [
        (np.full((64, 64), 3.0), {}, r"constant \(3\)"),  # the input's value, not its shift
        (np.full((64, 64), np.nan), {}, "NaN"),
        (np.zeros((8, 64)), {}, "at least"),
        (np.random.default_rng(0).random((64, 64)), {"psf": "ring"}, "unknown psf"),
        (np.random.default_rng(0).random((64, 64)), {"noise_sigma": -1.0}, "noise_sigma"),
        (np.random.default_rng(0).random((64, 64)), {"pixel_size": "big"}, "pixel_size"),
    ],
)
def test_bad_input(image, kwargs, match):
    with pytest.raises(BadInputError, match=match):
        blur_map(image, **kwargs)


def test_unknown_physical_size_is_a_clear_error(sharp):
    with pytest.raises(BadInputError, match="pixel size unknown"):
        blur_map(sharp).to_physical()


def _edge(sigma: float, n: int = 256) -> np.ndarray:
    step = np.zeros((n, n), np.float64)
    step[:, n // 2 :] = 1.0
    return ndi.gaussian_filter(step, sigma) * 100 + 50


def _at_edge(est: BlurMap) -> float:
    n = est.shape[0]
    return float(np.median(est.sigma[n // 4 : 3 * n // 4, n // 2 - 2 : n // 2 + 2]))


@pytest.mark.parametrize("sigma", [2.0, 4.0, 8.0])
def test_edge_reads_the_same_in_float_8_bit_and_noisy_8_bit(sigma):
    # A quantised ramp is a staircase of one-grey-level steps: it must not read as detail.
    rng = np.random.default_rng(5)
    edge = _edge(sigma)
    float_ = _at_edge(blur_map(edge))
    eight = _at_edge(blur_map(np.round(edge).astype(np.uint8)))
    noisy = np.clip(np.round(edge + rng.normal(0, 0.5, edge.shape)), 0, 255).astype(np.uint8)
    assert float_ == pytest.approx(sigma, rel=0.15)
    assert eight == pytest.approx(float_, rel=0.15)
    assert _at_edge(blur_map(noisy)) == pytest.approx(float_, rel=0.15)


@pytest.mark.parametrize(
    "kind", ["white", "poisson", "correlated", "quantised", "scan lines", "constant + 1 level"]
)
def test_noise_of_any_kind_never_reads_as_detail(kind):
    rng = np.random.default_rng(6)
    shape = (192, 192)
    noise = {
        "white": lambda: rng.normal(100, 5, shape),
        "poisson": lambda: rng.poisson(50, shape).astype(np.float64),
        "correlated": lambda: 100 + ndi.gaussian_filter(rng.normal(0, 5, shape), 1.0),
        "quantised": lambda: np.round(rng.normal(100, 0.4, shape)).astype(np.uint8),
        "scan lines": lambda: rng.normal(100, 3, shape) + rng.normal(0, 2, (shape[0], 1)),
        "constant + 1 level": lambda: 100 + (rng.random(shape) < 0.01).astype(np.uint8),
    }[kind]()
    summary = blur_map(noise).summary()
    assert summary["sigma"] is None, summary
    assert summary["verdict"].startswith("blur not measurable here")


@pytest.mark.parametrize("sigma", [1.0, 2.0, 4.0, 8.0, 16.0, 24.0, 40.0])
def test_known_blur_on_a_real_frame_is_recovered(sigma):
    # The camera image is itself sharp to about a pixel, which adds in quadrature. At 24-40 px
    # the blur exceeds the spacing of most of its edges and reaches the 64-px top of the ladder.
    cam = data.camera().astype(np.float64)
    rng = np.random.default_rng(7)
    frame = rng.poisson(ndi.gaussian_filter(cam, sigma)).clip(0, 255).astype(np.uint8)
    median = blur_map(frame).summary()["sigma"]["median"]
    assert median == pytest.approx(np.hypot(sigma, 0.8), rel=0.3)


def test_gain_and_offset_with_physical_poisson_noise():
    # Four times the photons: four times the signal and twice the noise, plus a dark offset.
    cam = ndi.gaussian_filter(data.camera().astype(np.float64), 3.0)
    rng = np.random.default_rng(8)
    dim = rng.poisson(cam / 4).astype(np.float64)
    bright = rng.poisson(cam).astype(np.float64) + 500
    a = blur_map(dim).summary()["sigma"]["median"]
    b = blur_map(bright).summary()["sigma"]["median"]
    assert b == pytest.approx(a, rel=0.1)


def test_blur_beyond_the_image_is_a_lower_bound():
    est = blur_map(_edge(60.0, n=192))
    summary = est.summary()
    assert summary["verdict"].startswith("sigma >") or summary["sigma"] is None


def test_a_large_offset_loses_no_detail():
    # float32 holds about 7 digits: an offset of 1e6 or 1e12 must not turn the detail into a
    # staircase or the image into a constant.
    cam = ndi.gaussian_filter(data.camera().astype(np.float64), 2.0)[:256, :256]
    counts = cam.astype(np.int64)
    for plain, shifted in ((cam / 1000, 1e6 + cam / 1000), (counts, counts + 10**12)):
        ref = blur_map(plain).summary()["sigma"]["median"]
        assert blur_map(shifted).summary()["sigma"]["median"] == pytest.approx(ref, rel=0.02)


@pytest.mark.parametrize("quality", [50, 75])
def test_jpeg_leftovers_in_a_defocused_frame_do_not_read_sharp(quality):
    # Compression flattens flat blocks exactly, so only the block grid reveals its error; without
    # it, block steps and ringing in a smooth frame read as detail (22 % of cells < 2 px at q 50).
    from PIL import Image

    blurred = ndi.gaussian_filter(data.camera().astype(np.float32), 6.0)
    blurred += np.random.default_rng(0).normal(0, 0.7, blurred.shape).astype(np.float32)
    buf = io.BytesIO()
    Image.fromarray(np.clip(blurred, 0, 255).round().astype(np.uint8)).save(
        buf, "JPEG", quality=quality
    )
    jpg = np.asarray(Image.open(buf))
    for img in (jpg, jpg[3:, 5:]):  # the grid is found at any phase
        est = blur_map(img)
        cells = est.sparse[np.isfinite(est.sparse)]
        assert np.mean(cells < 2.0) < 0.06
        assert 4.5 < est.summary()["sigma"]["median"] < 7.5


# The fast paths of the map must compute what the plain numpy/scipy expressions compute.


@pytest.mark.parametrize(("f", "how"), list(itertools.product((1, 2, 4), ("mean", "max"))))
def test_block_reduction_is_numpys_to_the_bit(f, how):
    from defocus.blurmap import _blocks

    img = data.camera()[:203, :157].astype(np.float32) / 7  # ragged edges, fractional values
    h, w = img.shape[0] // f, img.shape[1] // f
    b = img[: h * f, : w * f].reshape(h, f, w, f)
    ref = b.max(axis=(1, 3)) if how == "max" else b.mean(axis=(1, 3), dtype=np.float32)
    got = _blocks(img, f, how)
    assert got.dtype == ref.dtype and np.array_equal(got, ref)


@pytest.mark.parametrize("f", [1, 2, 8])
def test_banded_edge_cells_equal_the_whole_level(f):
    from defocus.blurmap import STRIDE, _edge_cells, _nms_rows, _to_cells

    level = ndi.gaussian_filter(data.camera()[:301, :250].astype(np.float32), 1.5)
    cells = (-(-level.shape[0] * f // STRIDE), -(-level.shape[1] * f // STRIDE))
    p = np.pad(level, 1, mode="edge")
    gx, gy = p[1:-1, 2:] - p[1:-1, :-2], p[2:, 1:-1] - p[:-2, 1:-1]
    e = (gx * gx + gy * gy) * np.float32(0.25 / (f * f))
    e *= _nms_rows(e, gx, gy, 0, e.shape[0])
    assert np.array_equal(_edge_cells(level, f, cells), _to_cells(e, f, cells, "max"))


@pytest.mark.parametrize("var", [0.3, 2.0])
def test_banded_smoothing_equals_the_whole_level(var):
    from defocus.blurmap import _smooth

    level = data.camera()[:300, :200].astype(np.float32)
    got, _ = _smooth(level, var)
    if var <= 0.5:
        k = np.array([var / 2, 1 - var, var / 2], np.float32)
        ref = ndi.correlate1d(ndi.correlate1d(level, k, axis=0), k, axis=1)
    else:
        ref = ndi.gaussian_filter(level, float(np.sqrt(var)), mode="reflect", truncate=3.0)
    assert np.array_equal(got, ref)


@pytest.mark.parametrize("shape", [(40, 60), (37, 58)])
def test_upsampling_is_bilinear_zoom(shape):
    from defocus.blurmap import STRIDE, _upsample

    a = data.camera()[:10, :15].astype(np.float32) / 255
    ref = ndi.zoom(a, STRIDE, order=1, grid_mode=True, mode="nearest", prefilter=False)
    np.testing.assert_allclose(_upsample(a, shape), ref[: shape[0], : shape[1]], atol=1e-6)


def test_progress_counts_up_to_the_total_and_changes_nothing(sharp):
    img = _noisy(ndi.gaussian_filter(sharp, 2.0))
    seen: list[tuple[int, int, str]] = []
    est = blur_map(img, progress=lambda done, total, what: seen.append((done, total, what)))
    done = [d for d, _, _ in seen]
    assert len(seen) > 5 and all(b > a for a, b in itertools.pairwise(done))
    assert {t for _, t, _ in seen} == {seen[-1][1]} and done[-1] == seen[-1][1]
    assert any(what.startswith("scale") for _, _, what in seen)
    np.testing.assert_array_equal(est.sigma, blur_map(img).sigma)


@pytest.fixture(scope="module")
def texture() -> np.ndarray:
    """Dense gravel texture (256 x 256), blurred by a Gaussian of sigma 3 px, 1 % noise."""
    sharp = data.gravel()[:256, :256].astype(np.float32) / 255
    return _noisy(ndi.gaussian_filter(sharp, 3.0), seed=11)


@pytest.fixture(scope="module")
def wide_texture() -> np.ndarray:
    """The same gravel blurred by sigma 6 px: dense enough that the step law reads it > 30 % low."""
    sharp = data.gravel()[:256, :256].astype(np.float32) / 255
    return _noisy(ndi.gaussian_filter(sharp, 6.0), seed=11)


def test_dense_texture_of_known_sigma_reads_within_30_percent(wide_texture):
    # Neighbouring edges of opposite sign cancel at scales near their spacing; the isolated
    # step law alone reads such texture low, the learned correction of the curve shape less so.
    learned = blur_map(wide_texture).summary()["sigma"]["median"]
    physical = blur_map(wide_texture, correction=False).summary()["sigma"]["median"]
    assert physical < 0.7 * 6.0  # the case the stage is for
    assert learned == pytest.approx(6.0, rel=0.3)
    assert abs(learned - 6.0) < abs(physical - 6.0)


def test_correction_keeps_gain_and_offset_invariance(texture):
    ref = blur_map(texture).sigma
    scaled = blur_map(4.0 * texture + 1000.0).sigma
    assert np.median(np.abs(scaled - ref) / np.maximum(ref, 0.3)) < 0.02


def test_correction_only_reads_what_physics_measured(texture):
    # The physics decides which cells hold a measurement and which are lower bounds; the
    # correction changes values only, only on measured cells, within its training range.
    learned, physical = blur_map(texture), blur_map(texture, correction=False)
    np.testing.assert_array_equal(np.isnan(learned.sparse), np.isnan(physical.sparse))
    np.testing.assert_array_equal(learned.sparse_confidence, physical.sparse_confidence)
    assert not np.allclose(learned.sparse, physical.sparse, equal_nan=True)


def test_correction_never_changes_a_lower_bound(monkeypatch):
    # Blur beyond what the image shows reads ~30 px, outside the stage's range; widen the range
    # so that only the lower-bound guard keeps those cells as the physics read them.
    from defocus import _blurcorrect
    from defocus.blurmap import _MEASURABLE_SD, _cells

    trained = _blurcorrect._weights()
    assert trained is not None
    wide = _edge(30.0, n=192)
    opts = {"psf": "gauss", "noise_sigma": None, "channel_axis": None}
    _, _, phys, sd, lower, _ = _cells(wide, correction=False, **opts)
    assert lower.any() and np.nanmin(phys[lower]) > trained["sigma_range"][1]
    widened = {**trained, "sigma_range": np.array([1.0, 64.0])}
    monkeypatch.setattr(_blurcorrect, "_weights", lambda: widened)
    reads = _blurcorrect.applicable(phys, sd, lower, (1.0, 64.0), max_sd=_MEASURABLE_SD)
    assert not reads[lower].any()
    _, _, corrected, _, _, _ = _cells(wide, correction=True, **opts)
    np.testing.assert_array_equal(corrected[lower], phys[lower])


def test_correction_leaves_an_isolated_edge_alone():
    # The stage is for dense texture: a lone straight edge already follows the step law.
    rng = np.random.default_rng(3)
    for sigma in (2.0, 4.0):
        edge = _edge(sigma)
        edge = edge + rng.normal(0, 1.0, edge.shape)  # 1 % of the 100-level step
        physical = _at_edge(blur_map(edge, correction=False))
        assert _at_edge(blur_map(edge)) == pytest.approx(physical, rel=0.1)


@pytest.mark.parametrize("psf", ["gauss", "disk"])
def test_correction_leaves_isolated_round_objects_alone(psf):
    # Coin-like disks, apart on a flat background, blurred by sigma 3 px of either family: their
    # rims are isolated edges, which the step law reads; the stage may not move them by 10 %.
    yy, xx = np.mgrid[0:256, 0:256]
    sharp = np.full((256, 256), 0.2, np.float32)
    for cy, cx, r in ((64, 64, 30), (70, 180, 40), (185, 110, 35)):
        sharp[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 0.8
    noisy = _noisy(_blurred(sharp, 3.0, psf), seed=4)
    rim = ndi.morphological_gradient(sharp, size=3) > 0
    physical = np.median(blur_map(noisy, psf=psf, correction=False).sigma[rim])
    assert np.median(blur_map(noisy, psf=psf).sigma[rim]) == pytest.approx(physical, rel=0.1)


def test_correction_reads_only_measurable_cells(texture):
    # The physics' confidence decides: a cell below the "not measurable" threshold keeps its
    # physical sigma.
    from defocus.blurmap import CONFIDENCE_THRESHOLD

    learned, physical = blur_map(texture), blur_map(texture, correction=False)
    weak = np.isfinite(physical.sparse) & (physical.sparse_confidence < CONFIDENCE_THRESHOLD)
    assert weak.any()
    np.testing.assert_array_equal(learned.sparse[weak], physical.sparse[weak])


def test_correction_reads_the_blur_maps_scale_ladder():
    from defocus import _blurcorrect
    from defocus.blurmap import SCALES

    index = np.arange(-3, len(SCALES) + 6)
    ratio = SCALES[1] / SCALES[0]
    expected = SCALES[0] * ratio ** index.astype(np.float64)
    np.testing.assert_allclose(np.exp(_blurcorrect._log_scale(SCALES, index)), expected)


def test_correction_weights_are_small_and_complete():
    from defocus import _blurcorrect

    assert _blurcorrect.WEIGHTS.stat().st_size < 5 * 2**20
    w = _blurcorrect._weights()
    assert w is not None and np.isfinite(w["w0"]).all()
    lo, hi = w["out_range"]
    assert -1.0 < lo < 0 < hi < 1.5  # a correction, not a free answer


@pytest.mark.parametrize("sigma", [4.0, 8.0])
def test_noise_left_on_slopes_by_a_camera_is_not_read_as_detail(sigma):
    # Edge-aware noise reduction, as in camera pipelines, smooths the noise of flat areas and
    # keeps it on intensity ramps. A noise model of intensity alone read it as fine detail
    # (sigma 4 -> 2.3 px, 8 -> 2.0 px); the slope term measured from the image explains it.
    rng = np.random.default_rng(0)
    clean = ndi.gaussian_filter(ndi.zoom(rng.random((16, 16)), 64, order=0) * 160 + 40, sigma)
    noisy = clean + rng.normal(0, 1.5, clean.shape)
    keep = 1 - np.exp(-(ndi.gaussian_gradient_magnitude(clean, 3) ** 2))
    camera = keep * noisy + (1 - keep) * ndi.gaussian_filter(noisy, 1.5)
    est = blur_map(camera, correction=False)
    assert len(est.noise.slopes) > 0
    assert float(np.median(est.sigma)) == pytest.approx(sigma, rel=0.15)


def test_confident_values_are_ones_the_measurements_around_them_give():
    # The FIB needle before its defocused glow: the fill down-weights the glow's wide, repeated
    # measurements beside the needle's thin sharp ones. A value the fill took from elsewhere
    # must not borrow the confidence of the measurement it overruled: wherever the map is
    # confident, some measurement within two cells reads its value to 30 %.
    from defocus.data import sample_path
    from defocus.io import read_image

    bm = blur_map(read_image(sample_path("fib_needle.tif")).data[:512, :768])
    h, w = bm.sparse.shape
    value = np.log(bm.sigma[1::4, 1::4][:h, :w])
    sure = bm.confidence[1::4, 1::4][:h, :w] > 0.5
    with np.errstate(divide="ignore"):
        cells = np.pad(np.log(bm.sparse), 2, constant_values=np.nan)
    near = np.zeros((h, w), bool)
    for dy in range(5):
        for dx in range(5):
            near |= np.abs(cells[dy : dy + h, dx : dx + w] - value) <= np.log(1.3)
    # measured: 1.6 % confident, none far (with the measurements' own confidence: 2.6 %, 11 %)
    assert sure.mean() > 0.005
    assert (sure & ~near).sum() < 0.01 * sure.sum()


@pytest.mark.parametrize("sigma", [3.0, 4.0])
def test_disk_blurred_texture_reads_as_gaussian_blurred_texture(sigma):
    # A disk of radius 2 sigma and a Gaussian of sigma share their transfer function to second
    # order in frequency, so dense texture, whose energy sums its spectrum, reads alike under
    # both (the isolated step's 1.26x applies at a lone edge only). Physics alone, gravel.
    sharp = data.gravel()[:256, :256].astype(np.float32) / 255
    disk = _noisy(_disk_blur(sharp, 2 * sigma), seed=11)
    gauss = _noisy(ndi.gaussian_filter(sharp, sigma), seed=11)
    d = blur_map(disk, psf="disk", correction=False).summary()["sigma"]["median"]
    g = blur_map(gauss, psf="gauss", correction=False).summary()["sigma"]["median"]
    assert d == pytest.approx(g, rel=0.1)
    assert blur_map(disk, psf="disk").summary()["sigma"]["median"] == pytest.approx(sigma, rel=0.3)
