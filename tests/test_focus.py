"""Property tests for defocus.focus: blur monotonicity, contrast invariance, tiles, masks."""

from __future__ import annotations

import io
import itertools

import imageio.v3 as iio
import numpy as np
import pytest
from scipy import ndimage
from skimage import data

from defocus import BadInputError
from defocus import focus as F
from defocus.data import sample_path
from defocus.io import read_image
from defocus.noise import noise_variance_map

ALL = F.list_measures()
INVARIANT = [m for m in ALL if F.get_measure(m).contrast_invariant]
NAMES = ("camera", "brick", "gravel", "grass", "coins", "moon")


@pytest.fixture(scope="module")
def crops() -> dict[str, np.ndarray]:
    return {name: getattr(data, name)()[:160, :160].astype(np.float32) for name in NAMES}


def _blurred(image: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(image, sigma) if sigma else image


def test_registry_is_complete_and_documented():
    assert len(ALL) >= 12
    assert ALL[0] == F.DEFAULT_MEASURE
    families = {F.get_measure(m).family for m in ALL}
    assert {"gradient", "laplacian", "statistics", "transform"} <= families
    for name in ALL:
        entry = F.get_measure(name)
        assert entry.name == name == entry.func.__name__
        assert entry.description and entry.reference
        assert "References" in entry.func.__doc__ and "Examples" in entry.func.__doc__
    assert F.get_measure(F.DEFAULT_MEASURE).contrast_invariant


@pytest.mark.parametrize("measure", ALL)
def test_score_falls_monotonically_with_gaussian_blur(crops, measure):
    for name, image in crops.items():
        scores = [F.focus_score(_blurred(image, s), measure=measure) for s in (0, 1, 2, 4)]
        assert all(a > b for a, b in itertools.pairwise(scores)), (name, scores)


def test_default_is_monotonic_in_subpixel_steps_at_a_known_noise_level(crops):
    # With the noise level estimated, a 0.5-px blur removes the Nyquist detail the estimator
    # sees as noise faster than the detail the measure uses, so sub-pixel steps can tie or
    # invert on textured images; at a fixed noise level every step counts.
    for name, image in crops.items():
        scores = [
            float(F.gradient_ratio(_blurred(image, s), noise_sigma=0.5).mean())
            for s in (0, 0.5, 1, 1.5, 2, 3, 4)
        ]
        assert all(a > b for a, b in itertools.pairwise(scores)), (name, scores)


def test_noise_correction_keeps_the_default_monotonic_on_noisy_images(crops):
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 3, (160, 160)).astype(np.float32)
    for image in crops.values():
        scores = [F.focus_score(_blurred(image, s) + noise) for s in (0, 1, 2, 4)]
        assert all(a > b for a, b in itertools.pairwise(scores)), scores
    # Without the correction, blurred noise reads as detail: the test above is meaningful.
    moon = crops["moon"]
    uncorrected = [
        float(F.gradient_ratio(_blurred(moon, s) + noise, noise_sigma=0).mean()) for s in (2, 4)
    ]
    assert uncorrected[1] > uncorrected[0]


@pytest.mark.parametrize("measure", INVARIANT)
def test_invariant_measures_ignore_gain_and_offset(crops, measure):
    image = crops["camera"]
    reference = F.focus_map(image, measure=measure)
    for gain, offset in ((0.2, 0.0), (7.5, 0.0), (1.0, 5000.0), (3.0, -40.0)):
        changed = F.focus_map(gain * image + offset, measure=measure)
        tol = 2e-3 * float(np.abs(reference).max())
        np.testing.assert_allclose(changed, reference, rtol=2e-3, atol=tol)


@pytest.mark.parametrize("measure", sorted(set(ALL) - set(INVARIANT)))
def test_flag_is_honest_for_contrast_dependent_measures(crops, measure):
    image = crops["camera"] + 10
    assert F.focus_score(3 * image, measure=measure) != pytest.approx(
        F.focus_score(image, measure=measure), rel=0.05
    )


@pytest.mark.parametrize("texture", ["brick", "gravel"])
def test_contrast_trap_default_ranks_dark_sharp_above_bright_blurry(texture):
    # The first seed's complaint: a bright region with large absolute gradients but blurred
    # (top) against a dark, low-gain but sharp region (bottom), both from one real texture.
    source = getattr(data, texture)().astype(np.float32)
    top = 600 + 4 * ndimage.gaussian_filter(source[:96, :192], 3)
    bottom = 0.5 * source[256:352, :192]
    rng = np.random.default_rng(0)
    image = np.vstack([top, bottom]) + rng.normal(0, 1, (192, 192)).astype(np.float32)

    def medians(measure: str) -> tuple[float, float]:
        fmap = F.focus_map(image, measure=measure)
        return float(np.median(fmap[16:80])), float(np.median(fmap[112:176]))

    top_default, bottom_default = medians(F.DEFAULT_MEASURE)
    assert bottom_default > 2 * top_default
    top_tenengrad, bottom_tenengrad = medians("tenengrad")
    assert top_tenengrad > bottom_tenengrad  # plain gradients fall into the trap


@pytest.mark.parametrize("measure", ALL)
def test_maps_are_dense_finite_float32_and_zero_on_constant_images(crops, measure):
    image = crops["coins"][:64, :80]
    fmap = F.focus_map(image, measure=measure, scale=2.5)
    assert fmap.shape == image.shape and fmap.dtype == np.float32
    assert np.isfinite(fmap).all()
    flat = np.full((40, 30), 1234, np.uint16)
    np.testing.assert_array_equal(F.focus_map(flat, measure=measure), np.zeros((40, 30)))
    # Black background next to detail: no 0/0 anywhere.
    padded = np.pad(image, 40)
    assert np.isfinite(F.focus_map(padded, measure=measure)).all()


def test_integer_dtypes_and_colour_are_not_rescaled(crops):
    image = crops["camera"]
    as16 = (image * 256).astype(np.uint16)
    f8 = F.tenengrad(image.astype(np.uint8))
    np.testing.assert_allclose(F.tenengrad(as16), 256**2 * f8, rtol=1e-4)
    rgb = np.stack([image] * 3, axis=0)
    grey = F.focus_map(image)
    np.testing.assert_allclose(
        F.focus_map(rgb, channel_axis=0), grey, rtol=1e-3, atol=1e-3 * float(grey.max())
    )


def test_larger_scale_gives_smoother_maps(crops):
    image = crops["camera"]
    fine, coarse = F.focus_map(image, scale=2), F.focus_map(image, scale=8)
    assert np.abs(np.diff(coarse, axis=0)).mean() < np.abs(np.diff(fine, axis=0)).mean()


@pytest.mark.parametrize("name", ["camera", "coins"])
@pytest.mark.parametrize("measure", sorted(set(ALL) - {"spectral_ratio"}))
def test_tile_grid_agrees_with_tiles_measured_on_their_own(name, measure):
    # spectral_ratio is left out: its ideal Fourier bands have global support.
    image = getattr(data, name)()[:256, :256]
    grid = F.tile_grid(image, tile=64, measure=measure)
    assert grid.values.shape == (4, 4)
    noise = None
    if measure == "gradient_ratio":  # noise map and contrast floor are the whole image's
        img = image.astype(np.float32)
        sw = F._spectral_weight(img, 0.8)
        noise = np.sqrt(noise_variance_map(img, spectral_weight=sw, step=1.0))
        floor = F._contrast_floor(float(F._coarse_energy(img, F.DEFAULT_SCALE, 3.0).mean()))

    def kw(i: int, j: int) -> dict:
        if noise is None:
            return {}
        return {"noise_sigma": noise[i : i + 64, j : j + 64], "contrast_floor": floor}

    direct = np.array(
        [
            [
                float(F.get_measure(measure).func(image[i : i + 64, j : j + 64], **kw(i, j)).mean())
                for j in range(0, 256, 64)
            ]
            for i in range(0, 256, 64)
        ]
    )
    # Tiles cut out alone lack their neighbours in a ~2*scale px border: 15 % of a typical value.
    error = np.abs(grid.values - direct)
    assert np.median(error) <= 0.15 * np.median(np.abs(direct))
    assert np.corrcoef(grid.values.ravel(), direct.ravel())[0, 1] > 0.9


def test_tile_grid_of_a_map_equals_block_means_and_keeps_partial_tiles():
    rng = np.random.default_rng(3)
    fmap = rng.random((130, 101)).astype(np.float32)
    grid = F.tile_grid(fmap, tile=(50, 40), measure=None)
    np.testing.assert_array_equal(grid.row_edges, [0, 50, 100, 130])
    np.testing.assert_array_equal(grid.col_edges, [0, 40, 80, 101])
    assert grid.values[2, 2] == pytest.approx(fmap[100:, 80:].mean(), rel=1e-5)
    assert grid.values[0, 1] == pytest.approx(fmap[:50, 40:80].mean(), rel=1e-5)
    assert set(grid.to_dict()) == {"measure", "values", "row_edges", "col_edges"}
    image = data.camera()[:200, :200]
    via_map = F.tile_grid(F.focus_map(image), tile=50, measure=None).values
    np.testing.assert_array_equal(F.tile_grid(image, tile=50).values, via_map)


def _tilted(image: np.ndarray, sharpest_row: int) -> np.ndarray:
    """Blur growing with distance from one row, as on a tilted SEM sample."""
    rows = np.arange(image.shape[0])
    sigma_of_row = 0.25 * np.abs(rows - sharpest_row) / 8
    levels = np.arange(0, sigma_of_row.max() + 0.25, 0.25)
    stack = [_blurred(image, s) for s in levels]
    index = np.round(sigma_of_row / 0.25).astype(int)
    return np.stack([stack[k][r] for r, k in enumerate(index)])


def test_profile_locates_the_sharpest_band_on_a_tilted_image():
    image = data.brick()[:256, :192].astype(np.float32)
    tilted = _tilted(image, sharpest_row=160)
    profile = F.focus_profile(F.focus_map(tilted), axis="rows")
    assert profile.median.shape == (256,)
    assert np.all(profile.q25 <= profile.median) and np.all(profile.median <= profile.q75)
    band = F.sharpest_band(profile)
    assert band.peak == pytest.approx(160.5 / 256, abs=0.05)
    assert band.peak_from_end == pytest.approx(1 - band.peak)
    assert band.start < band.peak < band.end
    summary = band.to_dict()
    assert summary["start_from_end"] == pytest.approx(1 - band.end)
    cols = F.focus_profile(F.focus_map(tilted.T), axis="cols")
    assert F.sharpest_band(cols).peak == pytest.approx(band.peak, abs=0.02)


def test_in_focus_mask_finds_the_sharp_half():
    image = data.gravel()[:128, :128].astype(np.float32)
    half = np.vstack([image[:64], _blurred(image, 4)[64:]])
    fmap = F.focus_map(half)
    mask = F.in_focus_mask(fmap)
    assert mask.dtype == bool and mask.shape == fmap.shape
    assert mask[:56].mean() > 0.9 and mask[72:].mean() < 0.1
    threshold = F.focus_threshold(fmap)
    np.testing.assert_array_equal(mask, fmap > threshold)
    assert not F.in_focus_mask(fmap, threshold=float(fmap.max())).any()
    assert F.in_focus_mask(fmap, threshold=-1.0).all()
    assert not F.in_focus_mask(np.zeros((8, 8), np.float32)).any()
    slope = F.focus_map(half, measure="spectral_slope")  # negative-valued maps work too
    assert F.in_focus_mask(slope)[:56].mean() > 0.9


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: F.focus_map(np.ones((8, 8)), measure="sharpness"), "tenengrad"),
        (lambda: F.focus_map(np.ones((8, 8)), scale=0), "scale"),
        (lambda: F.tenengrad(np.ones((8, 8)), scale=float("nan")), "scale"),
        (lambda: F.focus_map(np.full((8, 8), np.nan)), "NaN"),
        (lambda: F.focus_map(np.ones((8, 8, 3))), "channel_axis"),
        (lambda: F.focus_map(np.ones((8, 8), dtype=complex)), "dtype"),
        (lambda: F.tile_grid(np.ones((40, 40)), tile=50), "larger"),
        (lambda: F.tile_grid(np.ones((40, 40)), tile=0), "positive"),
        (lambda: F.tile_grid(np.ones((40, 40)), tile=2.5), "positive"),
        (lambda: F.focus_profile(np.ones((8, 8)), axis="diagonal"), "axis"),
        (lambda: F.sharpest_band(F.focus_profile(np.ones((8, 8))), level=1.5), "level"),
        (lambda: F.in_focus_mask(np.ones((8, 8)), threshold=float("inf")), "finite"),
        (lambda: F.normalized_variance(np.arange(-8.0, 8.0).reshape(4, 4)), "non-negative"),
        (lambda: F.gradient_ratio(np.eye(8), fine=3, coarse=1), "fine"),
        (lambda: F.gradient_ratio(np.eye(8), noise_sigma=-1), "noise_sigma"),
        (lambda: F.spectral_ratio(np.eye(8), split=0.7), "split"),
        (lambda: F.wavelet_energy(np.eye(8), wavelet="nope"), "wavelet"),
    ],
)
def test_bad_input_gets_a_one_line_error(call, match):
    with pytest.raises(BadInputError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------
# Noise of every kind a real instrument makes is not detail; real texture still is.


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    iio.imwrite(
        buf, np.clip(np.rint(image), 0, 255).astype(np.uint8), extension=".jpg", quality=quality
    )
    return iio.imread(buf.getvalue(), extension=".jpg")


# Each degrades a base image with one kind of real noise; standard deviations about 4 grey levels.
_DEGRADE = {
    "white": lambda b, rng: b + rng.normal(0, 4, b.shape),
    # photon counting, 4 photons per grey level: the variance is a quarter of the mean
    "poisson": lambda b, rng: rng.poisson(4 * b).astype(np.float32) / 4,
    # demosaicing-like: lag-1 correlation 0.6
    "correlated": lambda b, rng: b + 10 * ndimage.gaussian_filter(rng.normal(0, 1, b.shape), 0.7),
    # SEM scan lines: an offset per line on top of white noise
    "scan_lines": lambda b, rng: b + rng.normal(0, 2, b.shape) + rng.normal(0, 2, (b.shape[0], 1)),
    # SEM detector bandwidth: noise smoothed along the scan direction only
    "scan_correlated": lambda b, rng: (
        b + 7.5 * ndimage.gaussian_filter1d(rng.normal(0, 1, b.shape), 1.0, axis=1)
    ),
    "jpeg": lambda b, rng: _jpeg(b + rng.normal(0, 4, b.shape), 80),
    # 8 bits without noise: a staircase of one grey level on smooth content
    "staircase": lambda b, rng: np.rint(b).astype(np.uint8),
    "staircase_with_noise": lambda b, rng: np.rint(b + rng.normal(0, 0.5, b.shape)).astype(
        np.uint8
    ),
}


@pytest.fixture(scope="module")
def gravel512() -> np.ndarray:
    return data.gravel()[:512, :512].astype(np.float64)


@pytest.mark.parametrize("kind", sorted(_DEGRADE))
def test_noise_of_each_kind_never_reads_as_detail_but_texture_does(kind, gravel512):
    # Pure noise on a smooth ramp (no detail at all) against the same noise on a real texture.
    ramp = np.linspace(60, 140, 512)[None, :].repeat(512, axis=0)
    noise_only = F.focus_map(_DEGRADE[kind](ramp, np.random.default_rng(1)))
    textured = F.focus_map(_DEGRADE[kind](gravel512, np.random.default_rng(1)))
    assert (noise_only > 0).mean() <= 0.05
    assert F.in_focus_mask(noise_only).mean() <= 0.02
    assert noise_only.mean() <= 0.01 * textured.mean()
    assert (textured > 0).mean() >= 0.9
    assert F.in_focus_mask(textured).mean() >= 0.2


def test_correlated_noise_read_as_white_would_read_as_detail():
    # What the test above guards against: measured as white noise, demosaicing-like noise
    # passes the band-pass far more energy than predicted and reads as detail.
    ramp = np.linspace(60, 140, 512)[None, :].repeat(512, axis=0)
    img = _DEGRADE["correlated"](ramp, np.random.default_rng(1)).astype(np.float32)
    as_white = noise_variance_map(img, spectral_weight=1.0)
    assert (F.gradient_ratio(img, noise_sigma=np.sqrt(as_white)) > 0).mean() > 0.5


def test_gain_and_offset_do_not_change_the_map_with_physical_poisson_noise():
    # A detector's gain and offset scale the counted electrons: the map is unchanged.
    scene = data.camera()[100:356, 100:356].astype(np.float64)
    counts = np.random.default_rng(2).poisson(32 * scene + 20).astype(np.float32)
    reference = F.focus_map(counts)
    np.testing.assert_allclose(F.focus_map(7.5 * counts + 300), reference, rtol=2e-3, atol=2e-4)
    # With enough electrons (32 per grey level) and four times as many (a brighter region of
    # the same scene) the correction removes noise, not signal: both read the noise-free
    # detail. (At 8 per grey level the noise hides a quarter of it.)
    bright = np.random.default_rng(3).poisson(4 * (32 * scene + 20)).astype(np.float32)
    clean = np.median(F.focus_map(scene))
    assert np.median(reference) == pytest.approx(clean, rel=0.15)
    assert np.median(F.focus_map(bright)) == pytest.approx(clean, rel=0.15)
    # and not because it ignores the image: a blurred copy reads far less
    blurred = np.random.default_rng(3).poisson(4 * ndimage.gaussian_filter(32 * scene + 20, 2))
    assert np.median(F.focus_map(blurred.astype(np.float32))) < 0.5 * clean


def test_fib_demo_mask_shows_needle_and_lamella_not_the_substrate():
    # The bundled FIB image: the needle and lamella are in focus over a strongly defocused,
    # noisy substrate (its edges are about 68 px wide).
    fmap = F.focus_map(read_image(sample_path("fib_needle.tif")).data)
    mask = F.in_focus_mask(fmap)
    substrate = [(slice(60, 260), slice(60, 360)), (slice(700, 1000), slice(250, 600))]
    for box in substrate:
        assert mask[box].mean() <= 0.05
    lamella = (slice(450, 620), slice(260, 460))
    assert mask[lamella].mean() >= 0.15
    assert fmap[lamella].mean() > 10 * max(fmap[box].mean() for box in substrate)
