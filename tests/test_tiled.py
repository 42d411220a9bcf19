"""defocus.tiled: tiled maps equal the in-memory ones, and follow the same rules."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import data

import defocus
from defocus import BadInputError
from defocus.noise import noise_variance_map

da = pytest.importorskip("dask.array")
tiled = pytest.importorskip("defocus.tiled")

ODD = (97, 131)
# Measures whose in-memory version uses an image-wide statistic (see defocus.tiled).
GLOBAL_STAT = {
    "gradient_ratio",
    "local_variance",
    "laplacian_variance",
    "normalized_variance",
    "spectral_slope",
}
TILEABLE = [m for m in defocus.list_measures() if m != "spectral_ratio"]


@pytest.fixture(scope="module")
def camera():
    return data.camera()


@pytest.mark.parametrize("measure", TILEABLE)
def test_tiled_focus_map_equals_in_memory_on_odd_chunks(camera, measure):
    expected = defocus.focus_map(camera, measure=measure)
    lazy = tiled.focus_map(da.from_array(camera, chunks=ODD), measure=measure)
    assert lazy.dtype == np.float32 and lazy.shape == camera.shape
    got = lazy.compute()
    if measure == "spectral_slope":  # a log-log slope that crosses 0: absolute tolerance
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    elif measure in GLOBAL_STAT:
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    else:
        np.testing.assert_array_equal(got, expected)


def test_crop_with_the_whole_images_contrast_floor_equals_the_whole_map(camera):
    # what the tiled gradient_ratio relies on: given the whole image's noise map and contrast
    # floor, a crop's map equals the whole map wherever the crop's edges are out of reach
    from defocus import focus

    img = camera.astype(np.float32)
    var = noise_variance_map(img, spectral_weight=focus._spectral_weight(img, 0.8), step=1.0)
    noise = np.sqrt(var)
    floor = focus._contrast_floor(float(focus._coarse_energy(img, 5.0, 3.0).mean()))
    whole = focus.gradient_ratio(img)
    same = focus.gradient_ratio(img, noise_sigma=noise, contrast_floor=floor)
    np.testing.assert_allclose(same, whole, rtol=1e-5, atol=1e-6)  # None: the same floor
    d = tiled.focus_support("gradient_ratio")
    crop = (slice(100, 300), slice(150, 400))
    inner = (slice(d, -d), slice(d, -d))
    got = focus.gradient_ratio(img[crop], noise_sigma=noise[crop], contrast_floor=floor)
    np.testing.assert_allclose(got[inner], whole[crop][inner], rtol=1e-5, atol=1e-7)
    # the crop's own floor would not do
    own = focus.gradient_ratio(img[crop], noise_sigma=noise[crop])
    assert not np.allclose(own[inner], whole[crop][inner], rtol=1e-3)
    for bad in (0.0, -1.0, np.nan):
        with pytest.raises(BadInputError, match="contrast_floor"):
            focus.gradient_ratio(img, contrast_floor=bad)


def test_tiled_focus_map_of_colour_and_16_bit(camera):
    rgb = data.astronaut()[:200, :300]
    lazy = tiled.focus_map(rgb, measure="tenengrad", channel_axis=-1, chunks=ODD)
    expected = defocus.focus_map(rgb, measure="tenengrad", channel_axis=-1)
    np.testing.assert_array_equal(lazy.compute(), expected)
    img16 = camera.astype(np.uint16) * 257
    got = tiled.focus_map(da.from_array(img16, chunks=ODD)).compute()
    np.testing.assert_allclose(got, defocus.focus_map(img16), rtol=1e-5, atol=1e-7)


def test_depth_is_the_support_and_smaller_is_not_exact(camera):
    # the exact match above relies on the depth; one px less must show at the seams
    depth = tiled.focus_support("tenengrad", scale=5)
    short = da.from_array(camera, chunks=ODD).map_overlap(
        lambda b: defocus.focus_map(b, measure="tenengrad"),
        depth=depth - 1,
        boundary="none",
        dtype=np.float32,
    )
    assert not np.array_equal(short.compute(), defocus.focus_map(camera, measure="tenengrad"))


def test_global_spectrum_measure_is_refused():
    with pytest.raises(BadInputError, match="whole image"):
        tiled.focus_map(np.ones((64, 64)), measure="spectral_ratio")


def test_constant_image_gives_zero_focus_map():
    lazy = tiled.focus_map(np.full((200, 300), 9, np.uint8), chunks=ODD)
    assert not lazy.compute().any()


def _tiles(lazy) -> tuple[int, int]:
    return len(lazy.data.chunks[1]), len(lazy.data.chunks[2])


def _differences(lazy, ref) -> tuple[float, float, float]:
    """Relative sigma difference (median; 95th percentile where ref's confidence > 0.5) and
    the 95th percentile of the confidence difference, tiled against in-memory."""
    sigma, conf = lazy.data.compute()
    assert sigma.dtype == np.float32 and np.isfinite(sigma).all()
    rel = np.abs(sigma - ref.sigma) / np.maximum(ref.sigma, 0.1)
    sure = ref.confidence > 0.5
    return (
        float(np.median(rel)),
        float(np.percentile(rel[sure], 95)),
        float(np.percentile(np.abs(conf - ref.confidence), 95)),
    )


@pytest.mark.parametrize("correction", [True, False], ids=["learned", "physics"])
def test_tiled_blur_map_matches_in_memory_within_tolerance(camera, correction):
    # 4 x 3 tiles of 128-160 px with a 128-px overlap: the depth from which the stated
    # tolerances hold on this image (the default is more than twice that; see the next test)
    lazy = tiled.blur_map(
        da.from_array(camera, chunks=ODD), chunks=ODD, depth=128, correction=correction
    )
    assert _tiles(lazy) == (4, 3)
    ref = defocus.blur_map(camera, correction=correction)  # the mosaic is the whole image
    assert lazy.noise_sigma == ref.noise_sigma
    median, p95, conf95 = _differences(lazy, ref)
    # the tolerances stated in defocus.tiled's docstring
    assert median < 0.01 and p95 < 0.02 and conf95 < 0.02
    # and they are not met trivially: a 64-px overlap already shows at the seams (measured:
    # the confidence 0.10-0.11 apart at the 99th percentile, none at 128 px)...
    short = tiled.blur_map(camera, chunks=ODD, depth=64, correction=correction)
    conf = short.confidence.compute()
    assert np.percentile(np.abs(conf - ref.confidence), 99) > 0.05
    # ...and a different noise level moves the map
    other = defocus.blur_map(camera, noise_sigma=4 * lazy.noise_sigma + 2)
    assert np.median(np.abs(other.sigma - ref.sigma) / np.maximum(ref.sigma, 0.1)) > 0.01


def test_default_depth_tiles_match_in_memory():
    # the default overlap (blur_support) on an image it cuts into 3 x 3 tiles, the learned
    # stage on: a real photograph (the retina's fundus image, luminance)
    from defocus._array import luminance

    img = luminance(data.retina(), channel_axis=-1)[250:1114, 250:1114]
    lazy = tiled.blur_map(img, chunks=tiled.blur_support())
    assert lazy.depth == tiled.blur_support() and _tiles(lazy) == (3, 3)
    median, p95, conf95 = _differences(lazy, defocus.blur_map(img))
    assert median < 0.01 and p95 < 0.02 and conf95 < 0.02


def test_default_depth_covers_the_learned_stages_context():
    # the learned stage reads measured cells CONTEXT_CELLS cells (to 3 sigma) around the one it
    # corrects, each of them measured from the largest scale to 3 sigma
    from defocus._blurcorrect import CONTEXT_CELLS
    from defocus.blurmap import SCALES, STRIDE

    context = (int(3 * CONTEXT_CELLS + 0.5) + 1) * STRIDE
    assert tiled.blur_support() >= 3 * SCALES[-1] + context


def test_blur_tiles_sit_on_the_method_grid():
    rng = np.random.default_rng(0)
    for image, depth in ((rng.random((300, 500)), 64), (rng.random((1000, 1300)), None)):
        lazy = tiled.blur_map(image, chunks=ODD, depth=depth)
        assert min(_tiles(lazy)) > 1
        for chunks in lazy.data.chunks[1:]:
            starts = np.cumsum((0, *chunks[:-1]))
            assert all(s % 32 == 0 for s in starts)
        assert lazy.depth % 32 == 0


def test_blur_noise_is_estimated_once_and_tiles_agree():
    rng = np.random.default_rng(3)
    sharp = ndi.zoom(rng.random((64, 64)), 8, order=0)
    noisy = ndi.gaussian_filter(sharp, 2.0) + rng.normal(0, 0.02, sharp.shape)
    lazy = tiled.blur_map(noisy, chunks=160, depth=64)
    assert _tiles(lazy) == (3, 3)
    # True noise 0.02; the blurred blocks leave some texture in the flattest noise blocks.
    assert 0.01 < lazy.noise_sigma < 0.05
    sigma = lazy.sigma.compute()
    assert 1.4 < np.median(sigma) < 2.8  # true sigma 2 px, on every tile alike
    tiles = [sigma[y : y + 160, x : x + 160] for y in (0, 320) for x in (0, 320)]
    medians = [np.median(t) for t in tiles]
    assert max(medians) / min(medians) < 1.3


def test_constant_tile_gets_no_confidence_not_nan():
    img = np.zeros((512, 512), np.uint8)
    img[:256] = (np.random.default_rng(0).random((256, 512)) * 255).astype(np.uint8)
    sigma, conf = tiled.blur_map(img, chunks=128, depth=32, noise_sigma=1.0).data.compute()
    assert np.isfinite(sigma).all() and np.isfinite(conf).all()
    # no measurement reaches it: the in-memory map's confidence there, a round-off above 0
    assert conf[-64:].max() < 1e-6
    ref = defocus.blur_map(img, noise_sigma=1.0).confidence[-64:]
    np.testing.assert_allclose(conf[-64:], ref, rtol=1e-4)


def _fib_agreement(lazy, ref) -> tuple[float, float, float]:
    """Largest relative sigma difference, largest confidence difference and share of pixels
    whose lower-bound flag differs, tiled against in-memory."""
    (sigma, conf), lower = da.compute(lazy.data, lazy.lower_bound)
    rel = np.abs(sigma - ref.sigma) / np.maximum(ref.sigma, 0.1)
    return (
        float(rel.max()),
        float(np.abs(conf - ref.confidence).max()),
        float((lower != ref.lower_bound).mean()),
    )


def test_tiled_blur_map_fills_as_the_whole_image_does():
    # The FIB needle before its defocused glow: a tile that holds only the glow reads its own
    # wide blur unless the fill sees the sharp needle in the other tiles, as the in-memory
    # fill does. Tiles assemble their cells, and the fill runs once on the whole grid.
    from defocus.data import sample_path
    from defocus.io import read_image

    fib = read_image(sample_path("fib_needle.tif")).data
    # 1024 px a side: the noise model's mosaic is the whole image, so both maps get one model
    crop = fib[:, 512:]
    lazy = tiled.blur_map(crop, chunks=512)
    assert _tiles(lazy) == (2, 2) and lazy.depth == tiled.blur_support()
    ref = defocus.blur_map(crop)
    assert lazy.noise_sigma == ref.noise_sigma
    sigma, conf, lower = _fib_agreement(lazy, ref)
    # equal to float32 rounding of the per-cell measurements (measured: 5e-7, 4e-7, 0)
    assert sigma < 1e-4 and conf < 1e-4 and lower < 1e-4
    # the whole image in 2 x 3 tiles, the same white noise given to both (measured: 6e-7,
    # 3e-7, 0; 4e-5 and 2e-5 when the tiles' intensity spread was the mosaic's and the
    # in-memory map's its own)
    lazy = tiled.blur_map(fib, chunks=512, noise_sigma=ref.noise_sigma)
    assert _tiles(lazy) == (2, 3)
    ref = defocus.blur_map(fib, noise_sigma=ref.noise_sigma)
    sigma, conf, lower = _fib_agreement(lazy, ref)
    assert sigma < 1e-4 and conf < 1e-4 and lower < 1e-4


def _bar_ramps() -> np.ndarray:
    """The camera tiled 2 x 2 beside bars of 128 px that each ramp over 10 grey levels (blurred
    4 px, then rounded: a staircase of one-level steps), all x 200: 1024 x 2048 float64."""
    saw = (np.arange(1024) % 128) / 128 * 10
    ramp = np.round(ndi.gaussian_filter1d(np.broadcast_to(saw, (1024, 1024)), 4, axis=1))
    return np.hstack([np.tile(data.camera(), (2, 2)), ramp]) * 200.0


def test_tiles_with_a_given_noise_level_read_the_whole_images_grey_levels():
    # A staircase of one-grey-level steps is quantisation, not edges: the whole image shows
    # its step (200), a tile of the ramp alone (under 16 levels) shows none and measures the
    # steps. Tiles get the step, the shift of wide data and the intensity spread of the same
    # image-wide sample as the in-memory map, whose float32 rounding then is theirs.
    from defocus.noise import quantum

    img = _bar_ramps()
    assert img.dtype == np.float64 and quantum(img) == 200 and quantum(img[:, 1536:]) == 0
    ref = defocus.blur_map(img, noise_sigma=20)
    alone = defocus.blur_map(img[:, 1536:], noise_sigma=20)
    assert np.isfinite(alone.sparse).sum() > 2 * np.isfinite(ref.sparse[:, 384:]).sum()
    lazy = tiled.blur_map(img, chunks=512, noise_sigma=20)
    assert _tiles(lazy) == (2, 4)
    # measured: 1.6e-6, 5e-7, 0 (each tile its own step, shift and spread: 0.96, 0.22, 0)
    sigma, conf, lower = _fib_agreement(lazy, ref)
    assert sigma < 1e-4 and conf < 1e-4 and lower < 1e-4


def test_image_too_large_for_the_cell_grids_is_refused_before_any_work():
    huge = da.zeros((50_000, 50_000), dtype=np.uint8, chunks=4096)  # 2.5 gigapixels, lazy
    with pytest.raises(BadInputError, match="gigapixels"):
        tiled.blur_map(huge)


def test_tiled_lower_bound_spreads_as_the_whole_images_does():
    # the FIB crop's right half blurred far beyond the largest scale: 3 % of the in-memory map
    # is a lower bound, spread by the fill from the cells that hold one; the flat blurred half
    # reads its noise floors relative to the whole image's intensity spread, as in memory
    from defocus.data import sample_path
    from defocus.io import read_image

    crop = read_image(sample_path("fib_needle.tif")).data[:, 512:]
    img = crop.copy()
    img[:, 512:] = ndi.gaussian_filter(crop, 90)[:, 512:]
    ref = defocus.blur_map(img)
    assert 0.01 < ref.lower_bound.mean() < 0.1
    lazy = tiled.blur_map(img, chunks=512)
    assert _tiles(lazy) == (2, 2)
    # measured: 1e-5, 2e-7 and none (each tile filling its own: 0.49, 0.11 and 0.2 %; each
    # tile measuring relative to its own intensity spread: 0.42, 0.11 and 3 in a million)
    sigma, conf, lower = _fib_agreement(lazy, ref)
    assert sigma < 1e-4 and conf < 1e-4 and lower < 1e-4


SHARED = Path(
    os.environ.get("DEFOCUS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
PCB = SHARED / "real_stacks" / "focus-stack_pcb" / "pcb_001.jpg"  # a camera photograph


def _outcome(call):
    try:
        return call().pixel_size
    except BadInputError as exc:
        return f"refused: {exc}"


@pytest.mark.parametrize(
    "image",
    [
        np.full((64, 64), 7, np.uint8),  # constant
        np.ones((10, 300)),  # too small
        np.where(np.eye(64, dtype=bool), np.nan, 1.0),  # NaN
    ],
    ids=["constant", "10x300", "nan"],
)
def test_bad_images_get_the_in_memory_message(image):
    with pytest.raises(BadInputError) as memory:
        defocus.blur_map(image)
    with pytest.raises(BadInputError) as lazy:
        tiled.blur_map(image, chunks=64)
    assert str(lazy.value) == str(memory.value)


@pytest.mark.parametrize(
    "pixel_size",
    [None, 2e-9, 1, defocus.PixelSize(5, 5, "nm"), "5nm", "5", -1.0, float("nan")],
)
def test_pixel_size_follows_the_in_memory_rules(camera, pixel_size):
    img = camera[:64, :64]
    memory = _outcome(lambda: defocus.blur_map(img, pixel_size=pixel_size))
    lazy = _outcome(lambda: tiled.blur_map(img, pixel_size=pixel_size, noise_sigma=1.0))
    if isinstance(pixel_size, str) and pixel_size == "5":
        pytest.skip("the in-memory path reads the text '5' as 5 m; the tiled path refuses text")
    assert lazy == memory


def test_small_image_on_the_cli_is_bad_input_not_a_crash(tmp_path, capsys):
    from defocus.cli import main
    from defocus.io import write_image

    f = tmp_path / "tiny.tif"
    write_image(f, np.ones((10, 300), np.uint8))
    assert main(["map", str(f), "-o", str(tmp_path / "out"), "--chunks", "64"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "at least 16x16" in line


def _real_crop():
    if not PCB.is_file():
        pytest.skip("shared real data not present")
    from defocus.io import read_image

    return read_image(PCB).luminance[300:620, 400:848]


def test_summary_equals_the_in_memory_summary_in_one_tile():
    img = _real_crop()
    lazy = tiled.blur_map(img)
    memory = defocus.blur_map(img)  # one tile with the image's noise model: the same map
    np.testing.assert_array_equal(lazy.sigma.compute(), memory.sigma)
    got, want = lazy.summary(), memory.summary()
    for key in ("measured_fraction", "noise"):  # not kept by the tiles
        got.pop(key), want.pop(key)
    assert got == want and want["sigma"] is not None


def _persisted(lazy):
    """The tiled map computed once (summary() makes several passes over it)."""
    from dataclasses import replace

    import dask

    data, lower = dask.persist(lazy.data, lazy.lower_bound)
    return replace(lazy, data=data, lower_bound=lower)


def test_summary_of_tiles_is_close_and_grows_with_blur():
    # Tiles get the image's noise model and read what the whole map reads. Growth with blur is
    # checked at one given noise level (an 8-bit frame's rounding, 1/sqrt(12)): the model's JPEG
    # floor leaves the unblurred crop's median above the 2-px-blurred one's in the whole map too.
    img = _real_crop()
    medians = []
    for s in (0.0, 2.0, 4.0):
        blurred = ndi.gaussian_filter(img, s) if s else img
        lazy = tiled.blur_map(blurred, chunks=160, depth=128)
        assert _tiles(lazy) == (2, 3)
        whole = defocus.blur_map(blurred).summary()
        assert _persisted(lazy).summary()["sigma"]["median"] == pytest.approx(
            whole["sigma"]["median"], rel=0.05
        )
        given = tiled.blur_map(blurred, chunks=160, depth=128, noise_sigma=12**-0.5)
        given = _persisted(given).summary()
        medians.append(given["sigma"]["median"])
    assert medians == sorted(medians) and medians[2] > medians[0] + 2


def test_summary_says_not_measurable_on_pure_noise():
    noise = np.random.default_rng(0).normal(100, 5, (300, 400))
    lazy = tiled.blur_map(noise, chunks=160, depth=64)
    assert min(_tiles(lazy)) > 1
    summary = lazy.summary()
    assert summary["sigma"] is None and "not measurable" in summary["verdict"]


def test_psf_family_literal_lists_the_blur_map_families():
    from typing import get_args

    from defocus._types import PSFFamily
    from defocus.blurmap import PSF_FAMILIES

    assert get_args(PSFFamily) == tuple(PSF_FAMILIES)


def test_colour_noise_level_is_the_in_memory_one():
    # the noise floor of 8-bit colour is its quantisation, which the luminance no longer shows:
    # the level is measured on the image as given, as blur_map measures it
    if not PCB.is_file():
        pytest.skip("shared real data not present")
    from defocus.io import read_image

    rgb = read_image(PCB).data[300:620, 400:848]
    lazy = tiled.blur_map(rgb, channel_axis=-1, chunks=160)
    memory = defocus.blur_map(rgb, channel_axis=-1)
    assert memory.noise_sigma > 0.2  # 1/sqrt(12) grey levels at least
    assert lazy.noise_sigma == pytest.approx(memory.noise_sigma, rel=1e-6)


def test_colour_tiles_see_the_colour_image_as_blur_map_does():
    # tiles get the colour data (its dtype and quantisation), not a float luminance: one tile
    # is the in-memory map, and tiles agree with it where it is confident
    if not PCB.is_file():
        pytest.skip("shared real data not present")
    from defocus.io import read_image

    rgb = read_image(PCB).data[200:840, 300:1196]
    one = tiled.blur_map(rgb[:320, :448], channel_axis=-1, noise_sigma=0.3)
    ref = defocus.blur_map(rgb[:320, :448], channel_axis=-1, noise_sigma=0.3)
    np.testing.assert_array_equal(one.sigma.compute(), ref.sigma)
    lazy = tiled.blur_map(rgb, channel_axis=-1, chunks=320, noise_sigma=0.3)
    assert len(lazy.data.chunks[1]) > 1 and len(lazy.data.chunks[2]) > 1
    sigma, conf = lazy.data.compute()
    ref = defocus.blur_map(rgb, channel_axis=-1, noise_sigma=0.3)
    rel = np.abs(sigma - ref.sigma) / np.maximum(ref.sigma, 0.1)
    assert np.percentile(rel[ref.confidence > 0.5], 95) < 0.02
    assert np.percentile(np.abs(conf - ref.confidence), 95) < 0.02


def test_tiled_blur_map_of_a_jpeg_frame_carries_its_compression_floor():
    # A real JPEG photograph, colour as read: the tiles get the whole image's noise model, JPEG
    # block grid included, and equal the in-memory map where it is confident.
    if not PCB.is_file():
        pytest.skip("shared real data not present")
    from defocus.io import read_image

    rgb = read_image(PCB).data[200:840, 300:1196]
    memory = defocus.blur_map(rgb, channel_axis=-1)
    assert memory.noise is not None and memory.noise.compression > 0.5
    lazy = tiled.blur_map(rgb, channel_axis=-1, chunks=320)
    assert len(lazy.data.chunks[1]) > 1 and len(lazy.data.chunks[2]) > 1
    assert lazy.noise_sigma == memory.noise_sigma
    sigma, conf = lazy.data.compute()
    rel = np.abs(sigma - memory.sigma) / np.maximum(memory.sigma, 0.1)
    assert np.percentile(rel[memory.confidence > 0.5], 95) < 0.02
    assert np.percentile(np.abs(conf - memory.confidence), 95) < 0.02
    # without the floor (the old per-tile level) the map is another one
    level = defocus.blur_map(rgb, channel_axis=-1, noise_sigma=12**-0.5)
    assert np.median(np.abs(level.sigma - memory.sigma) / np.maximum(memory.sigma, 0.1)) > 0.05


def test_noise_level_is_blur_maps_without_running_it():
    # The level is the median of the noise model's deviation over the mosaic's luminance, as
    # blur_map reports it; measured directly, not by a whole blur map of the mosaic.
    rng = np.random.default_rng(2)
    cam = ndi.zoom(data.camera(), 2.5, order=1)[:1100, :1230]  # more than one mosaic tile
    grey = np.clip(cam + rng.normal(0, 3, cam.shape), 0, 255).astype(np.uint16) * 7
    plane = da.from_array(grey, chunks=512)
    sample = tiled._mosaic(plane)
    assert sample.shape != grey.shape
    nm, level = tiled._noise_model(sample, colour=False)
    assert nm is not None and level > 0
    assert level == defocus.blur_map(sample).noise_sigma
    assert tiled.blur_map(plane).noise_sigma == level


def test_physics_only_tiles_equal_the_physics_only_map():
    # correction= reaches every tile: without the learned stage the tiles give the in-memory
    # physics-alone map (one tile: to the bit), which on dense texture differs from the learned.
    sharp = data.gravel().astype(np.float32) / 255
    rng = np.random.default_rng(11)
    img = (ndi.gaussian_filter(sharp, 3.0) + rng.normal(0, 0.01, sharp.shape)).astype(np.float32)
    one = tiled.blur_map(img[:256, :256], correction=False).sigma.compute()
    np.testing.assert_array_equal(one, defocus.blur_map(img[:256, :256], correction=False).sigma)
    lazy = tiled.blur_map(img, chunks=ODD, depth=128, correction=False)
    assert len(lazy.data.chunks[1]) > 1 and len(lazy.data.chunks[2]) > 1
    sigma = lazy.sigma.compute()
    physics = defocus.blur_map(img, correction=False)
    learned = defocus.blur_map(img)

    def rel(ref: np.ndarray) -> np.ndarray:
        return np.abs(sigma - ref) / np.maximum(ref, 0.1)

    assert np.median(rel(physics.sigma)) < 0.01
    assert np.percentile(rel(physics.sigma)[physics.confidence > 0.5], 95) < 0.02
    assert np.median(rel(learned.sigma)) > 0.05


@pytest.mark.parametrize("dtype, offset", [(np.uint32, 1_000_000), (np.float64, 1e4)])
def test_wide_data_read_the_noise_where_the_model_was_fitted(camera, dtype, offset):
    # Shot noise on a large dark offset: blur_map shifts wide data by their median, and the
    # tiles and the noise model must be shifted alike, or the signal-dependent model is read
    # at other intensities (the noise level came out 4x too low, the map 2x too sharp).
    rng = np.random.default_rng(0)
    counts = rng.poisson(camera.astype(np.float64) * 8 + 20)
    img = (counts + offset).astype(dtype)
    memory = defocus.blur_map(img)
    one = tiled.blur_map(img)  # one tile: the in-memory map
    assert one.noise_sigma == memory.noise_sigma
    np.testing.assert_array_equal(one.sigma.compute(), memory.sigma)
    # in tiles, as the same counts without the offset (16 bits, which no one shifts) are
    lazy = tiled.blur_map(img, chunks=128, depth=64)
    narrow = tiled.blur_map(counts.astype(np.uint16), chunks=128, depth=64)
    assert _tiles(lazy) == (4, 4) and lazy.noise_sigma == pytest.approx(narrow.noise_sigma)
    # (to float rounding: the shifted and the 16-bit data differ in float32)
    np.testing.assert_allclose(lazy.sigma.compute(), narrow.sigma.compute(), rtol=1e-3)


def test_wide_colour_is_shifted_as_blur_map_shifts_it():
    rgb = data.astronaut()[:256, :320].astype(np.float64) * 40 + 1e6
    memory = defocus.blur_map(rgb, channel_axis=-1)
    lazy = tiled.blur_map(rgb, channel_axis=-1)
    assert lazy.noise_sigma == pytest.approx(memory.noise_sigma, rel=1e-6)
    np.testing.assert_allclose(lazy.sigma.compute(), memory.sigma, rtol=1e-4, atol=1e-4)


def test_jpeg_floor_is_found_on_a_sampled_mosaic():
    # A whole camera frame (larger than the mosaic, which then samples 4 x 4 tiles): the jumps
    # of the scene where the tiles meet lie on the JPEG grid's phase and hid the grid, so the
    # tiles got the 8-bit rounding (0.29) for noise instead of the compression error (2.2).
    if not PCB.is_file():
        pytest.skip("shared real data not present")
    from defocus.io import read_image
    from defocus.noise import estimate_noise

    rgb = read_image(PCB).data
    lazy = tiled.blur_map(rgb, channel_axis=-1)
    sample = tiled._mosaic(da.from_array(rgb))
    assert sample.shape[:2] != rgb.shape[:2]
    whole = estimate_noise(rgb, channel_axis=-1)  # the floor of blur_map's level here
    assert whole.compression > 1
    assert lazy.noise_sigma == pytest.approx(np.sqrt(whole.compression), rel=0.1)
    # leaving the seams out changes nothing where the mosaic shows no grid
    grey = data.camera()
    assert tiled._seamless_compression(grey.astype(np.float32), (128, 128)) == 0
