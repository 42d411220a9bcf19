"""`defocus map` and `defocus demo` end to end, in temporary folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import data

from defocus.cli import main
from defocus.io import read_image, write_image
from defocus.synth import blur_varying, tilt_map


@pytest.fixture
def tilted(tmp_path):
    sharp = data.brick()[:160, :192].astype(np.float32)
    sigma = tilt_map(sharp.shape, position=0.5, slope=0.04, floor=0.6)
    image = np.clip(np.round(blur_varying(sharp, sigma, psf="gauss")), 0, 255)
    path = tmp_path / "tilted.tif"
    write_image(path, image.astype(np.uint8), pixel_size="20nm")
    return path


def test_map_writes_every_output_with_units(tilted, tmp_path):
    out = tmp_path / "out"
    assert main(["map", str(tilted), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "tilted.blur.confidence.tif",
        "tilted.blur.json",
        "tilted.blur.png",
        "tilted.blur.profile.png",
        "tilted.blur.sigma.tif",
    ]
    sigma = read_image(out / "tilted.blur.sigma.tif")
    conf = read_image(out / "tilted.blur.confidence.tif")
    assert sigma.data.dtype == np.float32 and sigma.data.shape == (160, 192)
    assert np.isfinite(sigma.data).all() and (sigma.data >= 0).all()
    assert conf.data.min() >= 0 and conf.data.max() <= 1
    assert sigma.pixel_size.to("nm").x == pytest.approx(20)
    summary = json.loads((out / "tilted.blur.json").read_text())
    assert summary["blur"]["unit"] == "px"
    assert summary["blur"]["sigma_physical"]["unit"] == "nm"
    # the sharp line is in the middle: the focal plane must find it there
    assert summary["sharpest_band"]["axis"] == "rows"
    assert abs(summary["sharpest_band"]["position"] - 0.5) < 0.1


def test_map_bad_input_exit_2(tmp_path, capsys):
    flat = tmp_path / "flat.tif"
    write_image(flat, np.full((64, 64), 7, np.uint8))
    assert main(["map", str(flat), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("defocus: error:") and "constant" in err and "\n" not in err
    assert not (tmp_path / "o" / "flat.blur.sigma.tif").exists()


def test_map_of_pure_noise_says_not_measurable_and_prints_no_number(tmp_path, capsys):
    src = tmp_path / "noise.png"
    write_image(src, np.random.default_rng(0).integers(90, 110, (256, 256)).astype(np.uint8))
    assert main(["map", str(src), "-o", str(tmp_path / "o")]) == 0
    line = capsys.readouterr().out
    assert "blur not measurable here" in line and "sigma median" not in line
    summary = json.loads((tmp_path / "o" / "noise.blur.json").read_text())
    assert summary["blur"]["sigma"] is None


@pytest.mark.slow  # an end-to-end run: more than 10 s on 2 cores
def test_demo_runs_on_bundled_samples(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    for name in (
        "fib_needle.focus.png",
        "fib_needle.focus.mask.png",
        "tilted_gravel.blur.sigma.tif",
        "tilted_gravel.blur.profile.png",
    ):
        assert (tmp_path / name).exists() and name in text


# --- tiled mode (Dask): Zarr / tiled TIFF in, OME-Zarr or tiled TIFF out -----------------------


def test_map_tiled_zarr_to_ome_zarr_matches_the_library(tmp_path, capsys):
    pytest.importorskip("dask")
    import zarr

    from defocus import io, tiled

    image = data.brick()[:320, :352].astype(np.uint16) * 100
    src = tmp_path / "big.zarr"
    z = zarr.open_array(src, mode="w", shape=image.shape, chunks=(128, 128), dtype=image.dtype)
    z[:] = image
    out = tmp_path / "OUT.zarr"
    args = ["map", str(src), "-o", str(out), "--chunks", "160", "--pixel-size", "20nm"]
    assert main(args) == 0
    assert "OUT.zarr" in capsys.readouterr().out
    maps, meta = io.read_ome_zarr(out)
    assert maps.shape == (2, 320, 352) and maps.dtype == np.float32
    assert meta["axes"][1]["unit"] == "nanometer"
    assert meta["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 20.0, 20.0]
    summary = json.loads((tmp_path / "OUT.json").read_text())
    assert summary["blur"]["unit"] == "px" and summary["dtype"] == "uint16"
    # The tiles get the noise model measured once on the image, as the library's do.
    lazy = tiled.blur_map(image, chunks=160)
    assert summary["blur"]["noise_sigma"] == pytest.approx(lazy.noise_sigma, rel=1e-5)
    np.testing.assert_allclose(maps.compute(), lazy.data.compute(), rtol=1e-4)
    q = summary["blur"]["sigma"]
    assert q["p10"] <= q["median"] <= q["p90"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["OUT.json", "OUT.zarr", "big.zarr"]


def test_map_tiled_tiff_in_tiled_tiff_out(tilted, tmp_path):
    pytest.importorskip("dask")
    import tifffile

    out = tmp_path / "tiles"
    assert main(["map", str(tilted), "-o", str(out), "--chunks", "96", "--format", "tiff"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "tilted.blur.confidence.tif",
        "tilted.blur.json",
        "tilted.blur.sigma.tif",
    ]
    sigma = read_image(out / "tilted.blur.sigma.tif")
    assert sigma.data.shape == (160, 192) and sigma.pixel_size.to("nm").x == pytest.approx(20)
    with tifffile.TiffFile(out / "tilted.blur.sigma.tif") as tf:
        assert tf.pages.first.is_tiled
    # the same sharp line as the in-memory map: blur grows away from the middle rows
    rows = np.median(sigma.data, axis=1)
    assert rows[70:90].mean() < rows[:20].mean() and rows[70:90].mean() < rows[-20:].mean()


def test_progress_bar_on_stderr_only_when_asked_or_a_terminal(
    tilted, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("DEFOCUS_PROGRESS", "1")  # a bar although stderr is not a terminal
    assert main(["map", str(tilted), "-o", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "blur map" in err and "100%" in err
    monkeypatch.delenv("DEFOCUS_PROGRESS")
    assert main(["map", str(tilted), "-o", str(tmp_path / "b")]) == 0
    assert capsys.readouterr().err == ""


def test_physics_only_turns_the_learned_stage_off_in_memory_and_tiled(tmp_path):
    import defocus

    pytest.importorskip("dask")
    rng = np.random.default_rng(11)
    gravel = data.gravel()[:256, :256].astype(np.float64)
    soft = ndi.gaussian_filter(gravel, 3.0) + rng.normal(0, 2.5, gravel.shape)
    path = tmp_path / "gravel.tif"
    write_image(path, np.clip(soft, 0, 255).astype(np.float32))
    img = read_image(path).data
    for extra in ([], ["--chunks", "128"]):
        medians = {}
        for flag in ([], ["--physics-only"]):
            out = tmp_path / f"o{len(extra)}{len(flag)}"
            assert main(["map", str(path), "-o", str(out), *extra, *flag]) == 0
            summary = json.loads(next(out.glob("*.json")).read_text())
            assert summary["learned_correction"] == (not flag)
            medians[bool(flag)] = summary["blur"]["sigma"]["median"]
        physics = defocus.blur_map(img, correction=False).summary()["sigma"]["median"]
        assert medians[True] == pytest.approx(physics, rel=0.01)
        assert medians[False] > 1.05 * medians[True]  # dense texture: the stage reads higher
