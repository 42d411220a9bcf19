"""defocus.io's lazy side: Zarr, OME-Zarr and tiled TIFF in and out, read back by other readers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage import data

import defocus
from defocus import io
from defocus.io import read_image

da = pytest.importorskip("dask.array")
tiled = pytest.importorskip("defocus.tiled")

ODD = (97, 131)


@pytest.fixture(scope="module")
def camera():
    return data.camera()


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
    lazy = io.open_image(path)
    assert lazy.data.dtype == np.uint16
    assert all(c % 128 == 0 for c in lazy.data.chunks[0] + lazy.data.chunks[1])  # whole tiles
    assert io.open_image(path, chunks=ODD).data.chunks[0][:2] == (97, 97)
    assert lazy.pixel_size.to("nm").x == pytest.approx(250)
    assert lazy.pixel_size_source == "OME PhysicalSizeX"
    # nothing was converted to float64 before chunking: the only float step is per tile
    assert all(np.dtype(layer.dtype) != np.float64 for layer in [lazy.data])
    np.testing.assert_array_equal(
        tiled.focus_map(lazy.data, measure="brenner").compute(),
        defocus.focus_map(img16, measure="brenner"),
    )


def test_open_plain_zarr_and_rgb(tmp_path):
    import zarr

    rgb = data.astronaut()[:100, :120]
    z = zarr.open_array(
        tmp_path / "rgb.zarr", mode="w", shape=rgb.shape, chunks=(64, 64, 3), dtype=rgb.dtype
    )
    z[:] = rgb
    lazy = io.open_image(tmp_path / "rgb.zarr")
    assert lazy.channel_axis == 2 and lazy.data.dtype == np.uint8
    got = tiled.focus_map(lazy.data, channel_axis=2, measure="tenengrad").compute()
    np.testing.assert_array_equal(got, defocus.focus_map(rgb, channel_axis=2, measure="tenengrad"))


def test_ome_zarr_round_trip_with_scale_and_units(tmp_path):
    maps = np.stack([np.random.default_rng(1).random((600, 700)), np.ones((600, 700))])
    maps = maps.astype(np.float32)
    out = io.write_ome_zarr(
        tmp_path / "m.zarr", maps, pixel_size="0.2um", channel_names=["sigma (px)", "conf"]
    )
    meta = json.loads((out / ".zattrs").read_text())
    ms = meta["multiscales"][0]
    assert ms["version"] == "0.4" and [a["name"] for a in ms["axes"]] == ["c", "y", "x"]
    assert ms["axes"][2]["unit"] == "micrometer"
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    assert scales[0] == [1.0, 0.2, 0.2] and scales[1] == [1.0, 0.4, 0.4]
    assert [c["label"] for c in meta["omero"]["channels"]] == ["sigma (px)", "conf"]
    level0, _ = io.read_ome_zarr(out)
    np.testing.assert_array_equal(level0.compute(), maps)
    level1, _ = io.read_ome_zarr(out, level=1)
    np.testing.assert_allclose(
        level1[0].compute(), maps[0, :600, :700].reshape(300, 2, 350, 2).mean((1, 3)), rtol=1e-6
    )
    # no hidden temporary folder is left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.zarr"]


def test_ome_zarr_input_uses_ngff_scale(tmp_path):
    img = data.camera()[:200, :300]
    io.write_ome_zarr(tmp_path / "in.zarr", img, pixel_size="5nm")
    lazy = io.open_image(tmp_path / "in.zarr")
    assert lazy.data.shape == img.shape and lazy.data.dtype == np.uint8
    assert lazy.pixel_size.to("nm").x == pytest.approx(5) and lazy.pixel_size_source == "NGFF scale"


def test_tiled_tiff_output(tmp_path):
    import tifffile

    values = np.random.default_rng(2).random((300, 520)).astype(np.float32)
    path = io.write_tiled_tiff(
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


@pytest.mark.parametrize("pixel_size", ["0.2um", None])
def test_ome_zarr_reads_back_with_the_reference_reader(tmp_path, pixel_size):
    # ome-zarr-py is the reader napari uses: it must find every level, axis, scale and label
    pytest.importorskip("ome_zarr")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    maps = np.random.default_rng(4).random((2, 600, 700)).astype(np.float32)
    out = io.write_ome_zarr(
        tmp_path / "m.zarr", maps, pixel_size=pixel_size, channel_names=["sigma (px)", "conf"]
    )
    (node,) = list(Reader(parse_url(str(out)))())
    assert [tuple(d.shape) for d in node.data] == [(2, 600, 700), (2, 300, 350), (2, 150, 175)]
    np.testing.assert_array_equal(np.asarray(node.data[0]), maps)
    np.testing.assert_allclose(
        np.asarray(node.data[1])[1], maps[1].reshape(300, 2, 350, 2).mean((1, 3)), rtol=1e-6
    )
    meta = node.metadata
    assert [a["name"] for a in meta["axes"]] == ["c", "y", "x"]
    assert meta["channel_names"] == ["sigma (px)", "conf"]
    step = 0.2 if pixel_size else 1.0
    scales = [t[0]["scale"] for t in meta["coordinateTransformations"]]
    assert scales == [[1.0, step * 2**k, step * 2**k] for k in range(3)]
    assert (meta["axes"][2].get("unit") == "micrometer") == (pixel_size is not None)
