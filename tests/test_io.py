"""Round trips, pixel-size sources, and bad input for defocus.io, in memory and lazily."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from skimage import data

import defocus
from defocus import BadInputError
from defocus.io import (
    PixelSize,
    atomic_path,
    open_image,
    parse_pixel_size,
    read_image,
    read_ome_zarr,
    write_image,
    write_json,
    write_map,
    write_ome_zarr,
    write_tiled_tiff,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


@pytest.mark.parametrize(
    ("dtype", "suffix"),
    [
        (np.uint8, ".png"),
        (np.uint16, ".png"),
        (np.uint8, ".tif"),
        (np.uint16, ".tif"),
        (np.int32, ".tif"),
        (np.float32, ".tif"),
        (np.float64, ".tif"),
    ],
)
def test_round_trip_keeps_dtype_and_range(tmp_path, dtype, suffix):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None:
        img = rng.integers(info.min, info.max, size=(37, 53), endpoint=True).astype(dtype)
    else:
        img = (rng.standard_normal((37, 53)) * 1e4).astype(dtype)
    f = tmp_path / f"x{suffix}"
    write_image(f, img)
    back = read_image(f)
    assert back.data.dtype == img.dtype
    np.testing.assert_array_equal(back.data, img)
    assert back.luminance.dtype == np.float32
    np.testing.assert_allclose(back.luminance, img.astype(np.float32))


def test_rgb_round_trip_and_luminance(tmp_path):
    rgb = data.astronaut()[:64, :80]
    for suffix in (".png", ".tif"):
        f = tmp_path / f"rgb{suffix}"
        write_image(f, rgb, channel_axis=-1)
        back = read_image(f)
        np.testing.assert_array_equal(np.moveaxis(back.data, back.channel_axis, -1), rgb)
        assert back.luminance.shape == rgb.shape[:2]
        assert back.luminance.min() >= 0 and back.luminance.max() <= 255


def test_jpeg_is_read(tmp_path):
    f = tmp_path / "c.jpg"
    write_image(f, data.camera())
    back = read_image(f)
    assert back.data.shape == (512, 512) and back.data.dtype == np.uint8
    # lossy, but close
    assert np.abs(back.luminance - data.camera()).mean() < 5


@pytest.mark.parametrize("unit_text", ["2.5nm", "2.5 nm", "0.0025um", "0.0025µm", "2.5e-9 m"])
def test_pixel_size_parsing_is_unit_aware(unit_text):
    ps = parse_pixel_size(unit_text)
    assert ps.metres[0] == pytest.approx(2.5e-9)


@pytest.mark.parametrize("bad", ["3", "nm", "2.5 parsecs", "-1nm", "0nm"])
def test_pixel_size_parsing_rejects(bad):
    with pytest.raises(BadInputError):
        parse_pixel_size(bad)


def test_pixel_size_round_trip_via_ome(tmp_path):
    f = tmp_path / "m.tif"
    write_map(f, np.zeros((10, 12)), pixel_size="97.66nm")
    back = read_image(f)
    assert back.pixel_size_source == "OME PhysicalSizeX"
    assert back.pixel_size.to("nm").x == pytest.approx(97.66)
    # OME parser view (what Fiji's Bio-Formats reads)
    with tifffile.TiffFile(f) as tf:
        meta = tifffile.xml2dict(tf.ome_metadata)["OME"]["Image"]["Pixels"]
    assert float(meta["PhysicalSizeX"]) == pytest.approx(97.66)
    assert meta["PhysicalSizeXUnit"] == "nm"


def test_override_wins(tmp_path):
    f = tmp_path / "m.tif"
    write_map(f, np.zeros((10, 12)), pixel_size="97.66nm")
    back = read_image(f, pixel_size="1um")
    assert back.pixel_size_source == "override"
    assert back.pixel_size == PixelSize(1, 1, "µm")


def test_fei_pixel_width_is_read():
    f = SHARED / "fibsem_demarcolab" / "sem_tilted32_baseline_eb.tif"
    if not f.exists():
        pytest.skip("shared real data not present")
    img = read_image(f)
    assert img.pixel_size_source == "FEI PixelWidth"
    assert img.pixel_size.to("nm").x == pytest.approx(195.312, rel=1e-4)


def test_fei_metadata_in_written_copy(tmp_path):
    # The same FEI block as an SEM writes it, but in a file we make, so this runs without data.
    text = "[Scan]\r\nPixelWidth=4.5e-09\r\nPixelHeight=4.5e-09\r\n"
    f = tmp_path / "fei.tif"
    tifffile.imwrite(f, np.zeros((8, 8), np.uint8), extratags=[(34682, "s", 0, text, True)])
    img = read_image(f)
    assert img.pixel_size_source == "FEI PixelWidth"
    assert img.pixel_size.to("nm").x == pytest.approx(4.5)


def test_zeiss_pixel_size_is_read(tmp_path):
    text = "\r\n".join(["0", "AP_IMAGE_PIXEL_SIZE", "Image Pixel Size = 3.2 nm", ""])
    f = tmp_path / "zeiss.tif"
    tifffile.imwrite(f, np.zeros((8, 8), np.uint8), extratags=[(34118, "s", 0, text, True)])
    img = read_image(f)
    assert img.pixel_size_source == "Zeiss CZ_SEM"
    assert img.pixel_size.to("nm").x == pytest.approx(3.2)


def test_imagej_unit_and_tiff_resolution(tmp_path):
    f = tmp_path / "ij.tif"
    tifffile.imwrite(
        f,
        np.zeros((8, 8), np.uint8),
        imagej=True,
        resolution=(1 / 0.25, 1 / 0.25),
        metadata={"unit": "um"},
    )
    img = read_image(f)
    assert img.pixel_size_source == "ImageJ unit"
    assert img.pixel_size.to("µm").x == pytest.approx(0.25)

    g = tmp_path / "res.tif"
    tifffile.imwrite(
        g, np.zeros((8, 8), np.uint8), resolution=(200, 200), resolutionunit="CENTIMETER"
    )
    img = read_image(g)
    assert img.pixel_size_source == "TIFF resolution"
    assert img.pixel_size.to("µm").x == pytest.approx(50)


def test_placeholder_resolution_is_not_a_pixel_size(tmp_path):
    f = tmp_path / "plain.tif"
    tifffile.imwrite(f, np.zeros((8, 8), np.uint8), resolution=(1, 1), resolutionunit="INCH")
    assert read_image(f).pixel_size is None


def test_multipage_needs_an_index(tmp_path):
    f = tmp_path / "stack.tif"
    stack = np.arange(3 * 8 * 9, dtype=np.uint16).reshape(3, 8, 9)
    tifffile.imwrite(f, stack, photometric="minisblack")
    with pytest.raises(BadInputError, match="3 planes"):
        read_image(f)
    np.testing.assert_array_equal(read_image(f, index=2).data, stack[2])
    with pytest.raises(BadInputError, match="out of range"):
        read_image(f, index=3)


def test_big_endian_tiff_reads_native(tmp_path):
    f = tmp_path / "be.tif"
    img = np.arange(64, dtype=">u2").reshape(8, 8) * 1000
    tifffile.imwrite(f, img, byteorder=">")
    back = read_image(f)
    assert back.data.dtype.byteorder in ("=", "|")
    np.testing.assert_array_equal(back.data, img.astype(np.uint16))


def test_palette_and_alpha_png(tmp_path):
    from PIL import Image

    pal = Image.fromarray(data.camera()[:32, :32]).convert("P")
    pal.save(tmp_path / "pal.png")
    assert read_image(tmp_path / "pal.png").luminance.shape == (32, 32)
    rgba = np.dstack([data.astronaut()[:32, :32], np.full((32, 32), 7, np.uint8)])
    iio.imwrite(tmp_path / "rgba.png", rgba)
    img = read_image(tmp_path / "rgba.png")
    assert img.data.shape == (32, 32, 4)
    # alpha must not enter the luminance
    np.testing.assert_allclose(img.luminance, read_image_rgb_luma(rgba[..., :3]), rtol=1e-5)


def read_image_rgb_luma(rgb):
    return rgb.astype(np.float32) @ np.array([0.2126, 0.7152, 0.0722], np.float32)


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "directory",
        "empty",
        "truncated_png",
        "truncated_tif",
        "truncated_jpg",
        "garbage",
        "nan",
        "bomb",
    ],
)
def test_bad_input_gets_one_line_error(tmp_path, case):
    f = tmp_path / f"{case}.png"
    if case == "missing":
        f = tmp_path / "nope.png"
    elif case == "directory":
        f = tmp_path
    elif case == "empty":
        f.write_bytes(b"")
    elif case.startswith("truncated"):
        ext = case.split("_")[1]
        f = tmp_path / f"t.{ext}"
        write_image(f, data.camera())
        f.write_bytes(f.read_bytes()[: os.path.getsize(f) // 3])
    elif case == "garbage":
        f.write_bytes(b"this is not an image at all" * 10)
    elif case == "nan":
        f = tmp_path / "nan.tif"
        write_image(f, np.full((8, 8), np.nan, np.float32))
    elif case == "bomb":
        f = tmp_path / "bomb.tif"
        write_image(f, np.zeros((300, 400), np.uint8))
    with pytest.raises(BadInputError) as info:
        read_image(f, max_pixels=100_000 if case == "bomb" else 2**28)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 300


def test_bomb_guard_can_be_raised(tmp_path):
    f = tmp_path / "big.png"
    write_image(f, np.zeros((300, 400), np.uint8))
    with pytest.raises(BadInputError, match="MP limit"):
        read_image(f, max_pixels=100_000)
    assert read_image(f, max_pixels=200_000).data.shape == (300, 400)


def test_png_header_bomb_is_refused_before_decoding(tmp_path):
    # A PNG whose header claims 100k x 100k; only the header exists.
    import struct
    import zlib

    def chunk(kind, payload):
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    f = tmp_path / "bomb.png"
    f.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    with pytest.raises(BadInputError, match="limit"):
        read_image(f)


def test_inputs_are_not_modified(tmp_path):
    src = tmp_path / "in.tif"
    write_image(src, data.camera(), pixel_size="1um")
    before = src.read_bytes()
    read_image(src)
    assert src.read_bytes() == before


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.tif"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]


def test_unwritable_destination_is_bad_input(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that ignores permissions")
        with pytest.raises(BadInputError, match="cannot write"):
            write_map(ro / "m.tif", np.zeros((4, 4)))
    finally:
        ro.chmod(0o700)
        shutil.rmtree(ro)


def test_png_refuses_float_instead_of_rescaling(tmp_path):
    with pytest.raises(BadInputError, match="cannot hold float32"):
        write_image(tmp_path / "f.png", np.zeros((4, 4), np.float32))


def test_write_json_handles_numpy(tmp_path):
    f = tmp_path / "s.json"
    write_json(f, {"a": np.float32(1.5), "b": np.arange(3), "p": PixelSize(1, 1, "nm")})
    assert '"a": 1.5' in f.read_text()


def test_destination_under_a_file_is_bad_input(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BadInputError, match="cannot write"):
        write_map(blocker / "m.tif", np.zeros((4, 4)))


def test_outputs_get_umask_permissions_not_private(tmp_path):
    f = tmp_path / "p.tif"
    write_map(f, np.zeros((4, 4)))
    umask = os.umask(0)
    os.umask(umask)
    assert f.stat().st_mode & 0o777 == 0o666 & ~umask


def test_unsupported_dtype_and_shape_are_refused(tmp_path):
    f = tmp_path / "complex.tif"
    tifffile.imwrite(f, np.zeros((8, 8), np.complex64))
    with pytest.raises(BadInputError, match="unsupported pixel type"):
        read_image(f)
    g = tmp_path / "4d.tif"
    tifffile.imwrite(
        g, np.zeros((2, 3, 8, 8), np.uint8), photometric="minisblack", metadata={"axes": "TZYX"}
    )
    with pytest.raises(BadInputError, match="4-D"):
        read_image(g)


def test_animated_gif_needs_an_index(tmp_path):
    frames = np.stack([data.camera()[i * 32 : (i + 1) * 32, :32] for i in range(3)])
    f = tmp_path / "anim.gif"
    iio.imwrite(f, frames)
    with pytest.raises(BadInputError, match="3 frames"):
        read_image(f)
    assert read_image(f, index=1).data.shape[:2] == (32, 32)


@pytest.mark.parametrize(
    ("compression", "lossless"), [("lzw", True), ("zlib", True), ("jpeg", False)]
)
def test_compressed_tiffs_read_back(tmp_path, compression, lossless):
    # LZW, Deflate and JPEG: the usual microscope exports; decoding them needs imagecodecs
    img = data.camera()[:96, :128]
    f = tmp_path / f"{compression}.tif"
    tifffile.imwrite(f, img, compression=compression, photometric="minisblack")
    with tifffile.TiffFile(f) as tf:
        assert tf.pages.first.compression != tifffile.COMPRESSION.NONE
    back = read_image(f)
    assert back.data.dtype == np.uint8 and back.data.shape == img.shape
    if lossless:
        np.testing.assert_array_equal(back.data, img)
    else:  # JPEG: close, not equal
        assert np.abs(back.data.astype(int) - img).mean() < 3


# --- lazy: Zarr, OME-Zarr and tiled TIFF in and out (needs Dask) -------------------------------

ODD = (97, 131)


@pytest.fixture(scope="module")
def tiled():
    pytest.importorskip("dask.array")
    return pytest.importorskip("defocus.tiled")


def test_open_tiled_tiff_keeps_dtype_and_pixel_size(tiled, tmp_path):
    import tifffile

    img16 = data.camera().astype(np.uint16) * 200
    path = tmp_path / "tiled.ome.tif"
    tifffile.imwrite(
        path,
        img16,
        tile=(128, 128),
        ome=True,
        metadata={"axes": "YX", "PhysicalSizeX": 0.25, "PhysicalSizeXUnit": "µm"},
    )
    lazy = open_image(path)
    assert lazy.data.dtype == np.uint16
    assert all(c % 128 == 0 for c in lazy.data.chunks[0] + lazy.data.chunks[1])  # whole tiles
    assert open_image(path, chunks=ODD).data.chunks[0][:2] == (97, 97)
    assert lazy.pixel_size.to("nm").x == pytest.approx(250)
    assert lazy.pixel_size_source == "OME PhysicalSizeX"
    # nothing was converted to float64 before chunking: the only float step is per tile
    assert all(np.dtype(layer.dtype) != np.float64 for layer in [lazy.data])
    np.testing.assert_array_equal(
        tiled.focus_map(lazy.data, measure="brenner").compute(),
        defocus.focus_map(img16, measure="brenner"),
    )


def test_open_plain_zarr_and_rgb(tiled, tmp_path):
    import zarr

    rgb = data.astronaut()[:100, :120]
    z = zarr.open_array(
        tmp_path / "rgb.zarr", mode="w", shape=rgb.shape, chunks=(64, 64, 3), dtype=rgb.dtype
    )
    z[:] = rgb
    lazy = open_image(tmp_path / "rgb.zarr")
    assert lazy.channel_axis == 2 and lazy.data.dtype == np.uint8
    got = tiled.focus_map(lazy.data, channel_axis=2, measure="tenengrad").compute()
    np.testing.assert_array_equal(got, defocus.focus_map(rgb, channel_axis=2, measure="tenengrad"))


def test_ome_zarr_round_trip_with_scale_and_units(tiled, tmp_path):
    maps = np.stack([np.random.default_rng(1).random((600, 700)), np.ones((600, 700))])
    maps = maps.astype(np.float32)
    out = write_ome_zarr(
        tmp_path / "m.zarr", maps, pixel_size="0.2um", channel_names=["sigma (px)", "conf"]
    )
    meta = json.loads((out / ".zattrs").read_text())
    ms = meta["multiscales"][0]
    assert ms["version"] == "0.4" and [a["name"] for a in ms["axes"]] == ["c", "y", "x"]
    assert ms["axes"][2]["unit"] == "micrometer"
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    assert scales[0] == [1.0, 0.2, 0.2] and scales[1] == [1.0, 0.4, 0.4]
    assert [c["label"] for c in meta["omero"]["channels"]] == ["sigma (px)", "conf"]
    level0, _ = read_ome_zarr(out)
    np.testing.assert_array_equal(level0.compute(), maps)
    level1, _ = read_ome_zarr(out, level=1)
    np.testing.assert_allclose(
        level1[0].compute(), maps[0, :600, :700].reshape(300, 2, 350, 2).mean((1, 3)), rtol=1e-6
    )
    # no hidden temporary folder is left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.zarr"]


def test_ome_zarr_input_uses_ngff_scale(tiled, tmp_path):
    img = data.camera()[:200, :300]
    write_ome_zarr(tmp_path / "in.zarr", img, pixel_size="5nm")
    lazy = open_image(tmp_path / "in.zarr")
    assert lazy.data.shape == img.shape and lazy.data.dtype == np.uint8
    assert lazy.pixel_size.to("nm").x == pytest.approx(5) and lazy.pixel_size_source == "NGFF scale"


def test_tiled_tiff_output(tiled, tmp_path):
    import tifffile

    values = np.random.default_rng(2).random((300, 520)).astype(np.float32)
    path = write_tiled_tiff(
        tmp_path / "m.tif", tiled.require_dask().from_array(values, chunks=97), pixel_size="3nm"
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
def test_ome_zarr_reads_back_with_the_reference_reader(tiled, tmp_path, pixel_size):
    # ome-zarr-py is the reader napari uses: it must find every level, axis, scale and label
    pytest.importorskip("ome_zarr")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    maps = np.random.default_rng(4).random((2, 600, 700)).astype(np.float32)
    out = write_ome_zarr(
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


def test_formats_without_tiles_open_whole_under_the_in_memory_limit(tiled, tmp_path):
    rgb = data.astronaut()[:100, :120]
    f = tmp_path / "a.png"
    write_image(f, rgb)
    lazy = open_image(f, chunks=64)
    assert lazy.channel_axis == 2 and lazy.data.dtype == np.uint8
    assert lazy.data.chunks[:2] == ((64, 36), (64, 56))
    np.testing.assert_array_equal(lazy.data.compute(), rgb)
    got = tiled.focus_map(lazy.data, channel_axis=2, measure="tenengrad").compute()
    np.testing.assert_array_equal(got, defocus.focus_map(rgb, channel_axis=-1, measure="tenengrad"))
    with pytest.raises(BadInputError, match="limit"):
        open_image(f, max_pixels=100 * 119)


def test_ome_zarr_writer_reports_its_tasks(tiled, tmp_path):
    seen = []
    maps = np.random.default_rng(5).random((2, 600, 700)).astype(np.float32)
    data = tiled.require_dask().from_array(maps, chunks=(2, 256, 256))
    write_ome_zarr(tmp_path / "m.zarr", data, progress=lambda *a: seen.append(a))
    levels = sorted({what for _, _, what in seen})
    assert levels == ["level 0", "level 1", "level 2"]
    for level in levels:  # done counts up to the total of that level's tasks
        steps = [(d, t) for d, t, w in seen if w == level]
        assert [d for d, _ in steps] == sorted(d for d, _ in steps)
        assert steps[-1][0] == steps[-1][1] > 1
