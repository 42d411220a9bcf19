"""defocus.parallel: tiled maps equal the in-memory ones, lazy I/O, and QC batches."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import data

import defocus
from defocus import BadInputError
from defocus.io import read_image, write_image
from defocus.noise import noise_variance_map

da = pytest.importorskip("dask.array")
parallel = pytest.importorskip("defocus.parallel")

ODD = (97, 131)
# Measures whose in-memory version uses an image-wide statistic (see defocus.parallel).
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
    lazy = parallel.focus_map(da.from_array(camera, chunks=ODD), measure=measure)
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
    d = parallel.focus_support("gradient_ratio")
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
    lazy = parallel.focus_map(rgb, measure="tenengrad", channel_axis=-1, chunks=ODD)
    expected = defocus.focus_map(rgb, measure="tenengrad", channel_axis=-1)
    np.testing.assert_array_equal(lazy.compute(), expected)
    img16 = camera.astype(np.uint16) * 257
    got = parallel.focus_map(da.from_array(img16, chunks=ODD)).compute()
    np.testing.assert_allclose(got, defocus.focus_map(img16), rtol=1e-5, atol=1e-7)


def test_depth_is_the_support_and_smaller_is_not_exact(camera):
    # the exact match above relies on the depth; one px less must show at the seams
    depth = parallel.focus_support("tenengrad", scale=5)
    short = da.from_array(camera, chunks=ODD).map_overlap(
        lambda b: defocus.focus_map(b, measure="tenengrad"),
        depth=depth - 1,
        boundary="none",
        dtype=np.float32,
    )
    assert not np.array_equal(short.compute(), defocus.focus_map(camera, measure="tenengrad"))


def test_global_spectrum_measure_is_refused():
    with pytest.raises(BadInputError, match="whole image"):
        parallel.focus_map(np.ones((64, 64)), measure="spectral_ratio")


def test_constant_image_gives_zero_focus_map():
    lazy = parallel.focus_map(np.full((200, 300), 9, np.uint8), chunks=ODD)
    assert not lazy.compute().any()


def test_tiled_blur_map_matches_in_memory_within_tolerance(camera):
    lazy = parallel.blur_map(da.from_array(camera, chunks=ODD), chunks=ODD)
    ref = defocus.blur_map(camera, noise_sigma=lazy.noise_sigma)
    sigma, conf = lazy.data.compute()
    assert sigma.dtype == np.float32 and np.isfinite(sigma).all()
    rel = np.abs(sigma - ref.sigma) / np.maximum(ref.sigma, 0.1)
    # the tolerances stated in defocus.parallel's docstring
    assert np.median(rel) < 0.01
    assert np.percentile(rel[ref.confidence > 0.5], 95) < 0.02
    assert np.percentile(np.abs(conf - ref.confidence), 95) < 0.02
    # large differences, if any, are in propagated values: their mean confidence is below 0.1
    big = rel > 0.1
    assert ref.confidence[big].sum() <= 0.1 * big.sum()
    # and they are not met trivially: a different noise level moves the map
    other = defocus.blur_map(camera, noise_sigma=4 * lazy.noise_sigma + 2)
    assert np.median(np.abs(other.sigma - ref.sigma) / np.maximum(ref.sigma, 0.1)) > 0.01


def test_blur_tiles_sit_on_the_method_grid():
    lazy = parallel.blur_map(np.random.default_rng(0).random((300, 500)), chunks=ODD)
    starts = np.cumsum((0, *lazy.data.chunks[2][:-1]))
    assert all(s % 32 == 0 for s in starts) and lazy.depth % 32 == 0


def test_blur_noise_is_estimated_once_and_tiles_agree():
    rng = np.random.default_rng(3)
    sharp = ndi.zoom(rng.random((64, 64)), 8, order=0)
    noisy = ndi.gaussian_filter(sharp, 2.0) + rng.normal(0, 0.02, sharp.shape)
    lazy = parallel.blur_map(noisy, chunks=160)
    # True noise 0.02; the blurred blocks leave some texture in the flattest noise blocks.
    assert 0.01 < lazy.noise_sigma < 0.05
    sigma = lazy.sigma.compute()
    assert 1.4 < np.median(sigma) < 2.8  # true sigma 2 px, on every tile alike
    tiles = [sigma[y : y + 160, x : x + 160] for y in (0, 320) for x in (0, 320)]
    medians = [np.median(t) for t in tiles]
    assert max(medians) / min(medians) < 1.3


def test_constant_tile_gets_zero_confidence_not_nan():
    img = np.zeros((512, 512), np.uint8)
    img[:256] = (np.random.default_rng(0).random((256, 512)) * 255).astype(np.uint8)
    sigma, conf = parallel.blur_map(img, chunks=128, depth=32, noise_sigma=1.0).data.compute()
    assert np.isfinite(sigma).all() and np.isfinite(conf).all()
    assert (conf[-64:] == 0).all()


def test_open_tiled_tiff_keeps_dtype_and_pixel_size(tmp_path, camera):
    import tifffile

    img16 = camera.astype(np.uint16) * 200
    path = tmp_path / "tiled.ome.tif"
    tifffile.imwrite(
        path,
        img16,
        tile=(128, 128),
        ome=True,
        metadata={"axes": "YX", "PhysicalSizeX": 0.25, "PhysicalSizeXUnit": "µm"},
    )
    lazy = parallel.open_image(path)
    assert lazy.data.dtype == np.uint16
    assert all(c % 128 == 0 for c in lazy.data.chunks[0] + lazy.data.chunks[1])  # whole tiles
    assert parallel.open_image(path, chunks=ODD).data.chunks[0][:2] == (97, 97)
    assert lazy.pixel_size.to("nm").x == pytest.approx(250)
    assert lazy.pixel_size_source == "OME PhysicalSizeX"
    # nothing was converted to float64 before chunking: the only float step is per tile
    assert all(np.dtype(layer.dtype) != np.float64 for layer in [lazy.data])
    np.testing.assert_array_equal(
        parallel.focus_map(lazy.data, measure="brenner").compute(),
        defocus.focus_map(img16, measure="brenner"),
    )


def test_open_plain_zarr_and_rgb(tmp_path):
    import zarr

    rgb = data.astronaut()[:100, :120]
    z = zarr.open_array(
        tmp_path / "rgb.zarr", mode="w", shape=rgb.shape, chunks=(64, 64, 3), dtype=rgb.dtype
    )
    z[:] = rgb
    lazy = parallel.open_image(tmp_path / "rgb.zarr")
    assert lazy.channel_axis == 2 and lazy.data.dtype == np.uint8
    got = parallel.focus_map(lazy.data, channel_axis=2, measure="tenengrad").compute()
    np.testing.assert_array_equal(got, defocus.focus_map(rgb, channel_axis=2, measure="tenengrad"))


def test_ome_zarr_round_trip_with_scale_and_units(tmp_path):
    maps = np.stack([np.random.default_rng(1).random((600, 700)), np.ones((600, 700))])
    maps = maps.astype(np.float32)
    out = parallel.write_ome_zarr(
        tmp_path / "m.zarr", maps, pixel_size="0.2um", channel_names=["sigma (px)", "conf"]
    )
    meta = json.loads((out / ".zattrs").read_text())
    ms = meta["multiscales"][0]
    assert ms["version"] == "0.4" and [a["name"] for a in ms["axes"]] == ["c", "y", "x"]
    assert ms["axes"][2]["unit"] == "micrometer"
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    assert scales[0] == [1.0, 0.2, 0.2] and scales[1] == [1.0, 0.4, 0.4]
    assert [c["label"] for c in meta["omero"]["channels"]] == ["sigma (px)", "conf"]
    level0, _ = parallel.read_ome_zarr(out)
    np.testing.assert_array_equal(level0.compute(), maps)
    level1, _ = parallel.read_ome_zarr(out, level=1)
    np.testing.assert_allclose(
        level1[0].compute(), maps[0, :600, :700].reshape(300, 2, 350, 2).mean((1, 3)), rtol=1e-6
    )
    # no hidden temporary folder is left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.zarr"]


def test_ome_zarr_input_uses_ngff_scale(tmp_path):
    img = data.camera()[:200, :300]
    parallel.write_ome_zarr(tmp_path / "in.zarr", img, pixel_size="5nm")
    lazy = parallel.open_image(tmp_path / "in.zarr")
    assert lazy.data.shape == img.shape and lazy.data.dtype == np.uint8
    assert lazy.pixel_size.to("nm").x == pytest.approx(5) and lazy.pixel_size_source == "NGFF scale"


def test_tiled_tiff_output(tmp_path):
    import tifffile

    values = np.random.default_rng(2).random((300, 520)).astype(np.float32)
    path = parallel.write_tiled_tiff(
        tmp_path / "m.tif", da.from_array(values, chunks=97), pixel_size="3nm"
    )
    with tifffile.TiffFile(path) as tf:
        assert tf.pages.first.is_tiled
    back = read_image(path)
    np.testing.assert_array_equal(back.data, values)
    assert back.pixel_size.to("nm").x == pytest.approx(3)


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client():
    c = parallel.start_client(workers=1, processes=False)
    yield c
    cluster = c.cluster
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batch")
    sharp = data.camera()[160:288, 160:288].astype(np.float32)
    paths = []
    for i, s in enumerate((0.0, 1.0, 2.5, 4.0)):
        p = folder / f"img{i}.tif"
        write_image(p, np.round(ndi.gaussian_filter(sharp, s)).astype(np.uint8), pixel_size="10nm")
        paths.append(str(p))
    bad = folder / "broken.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 20)
    return [*paths[:2], str(bad), *paths[2:]]


def test_batch_focus_table_rows_flags_and_bad_file(images, tmp_path, client):
    out = tmp_path / "out"
    rows = parallel.run_batch(images, out, task="focus", client=client, progress=False)
    assert [r["input"] for r in rows] == images
    bad = rows[2]
    assert bad["status"] == "bad input" and "broken.tif" in bad["error"]
    good = [r for r in rows if r["status"] == "done"]
    assert len(good) == 4 and all(r["error"] is None for r in good)
    scores = [r["focus_score"] for r in good]
    assert scores == sorted(scores, reverse=True)  # more blur, lower score
    assert [r["out_of_focus"] for r in good] == [s < parallel.MIN_FOCUS for s in scores]
    assert good[0]["out_of_focus"] is False and good[-1]["out_of_focus"] is True
    assert all(0 <= r["sharpest_position"] <= 1 for r in good)
    # the CSV holds the same rows, every column, the bad file in its row
    import csv

    with open(out / "qc.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert tuple(table[0]) == parallel.QC_COLUMNS and len(table) == 5
    assert table[2]["status"] == "bad input" and table[2]["focus_score"] == ""
    assert float(table[0]["focus_score"]) == pytest.approx(scores[0])
    assert read_image(out / "img0.qc.focus.tif").pixel_size.to("nm").x == pytest.approx(10)


def test_batch_map_sigma_percentiles_grow_with_blur_and_resume_skips(images, tmp_path, client):
    out = tmp_path / "out"
    rows = parallel.run_batch(images, out, task="map", client=client, progress=False)
    good = [r for r in rows if r["status"] == "done"]
    medians = [r["sigma_median"] for r in good]
    assert medians == sorted(medians)
    assert all(r["sigma_p10"] <= r["sigma_median"] <= r["sigma_p90"] for r in good)
    assert [r["out_of_focus"] for r in good] == [m > parallel.MAX_SIGMA for m in medians]
    stamp = (out / "img0.qc.sigma.tif").stat().st_mtime_ns
    again = parallel.run_batch(images, out, task="map", client=client, progress=False)
    assert [r["status"] for r in again].count("skipped (done before)") == 4
    assert again[2]["status"] == "bad input"  # a bad file is tried again, and fails again
    assert (out / "img0.qc.sigma.tif").stat().st_mtime_ns == stamp
    assert [r["sigma_median"] for r in again if r["error"] is None] == medians
