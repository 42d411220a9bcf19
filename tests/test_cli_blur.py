"""`defocus blur` end to end in a temporary folder."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from defocus import psf as P
from defocus import synth as S
from defocus.cli import main
from defocus.io import read_image, write_image, write_map


@pytest.fixture
def camera_tif(tmp_path):
    path = tmp_path / "cam.tif"
    write_image(path, data.camera()[:96, :128], pixel_size="50nm")
    return path


def test_uniform_disk_blur_keeps_dtype(camera_tif, tmp_path, capsys):
    out = tmp_path / "blurred.tif"
    assert main(["blur", str(camera_tif), "-o", str(out), "--psf", "disk", "--radius", "5"]) == 0
    assert "sigma 2.5 px" in capsys.readouterr().out
    result = read_image(out)
    src = read_image(camera_tif).data
    assert result.data.dtype == np.uint8 and result.data.shape == src.shape
    expected = S.blur(src, P.disk(5.0), dtype=np.uint8)
    np.testing.assert_array_equal(result.data, expected)
    assert result.pixel_size is not None and result.pixel_size.unit == "nm"


def test_colour_png_gaussian(tmp_path):
    src = tmp_path / "astro.png"
    write_image(src, data.astronaut()[::4, ::4], channel_axis=-1)
    out = tmp_path / "astro_blur.png"
    assert main(["blur", str(src), "-o", str(out), "--psf", "gauss", "--sigma", "1.5"]) == 0
    img = read_image(out)
    assert img.data.shape == (128, 128, 3) and img.data.dtype == np.uint8
    expected = S.blur(data.astronaut()[::4, ::4], P.gaussian(1.5), channel_axis=-1, dtype="u1")
    np.testing.assert_array_equal(img.data, expected)


@pytest.mark.parametrize("model", ["gather", "scatter"])
def test_sigma_map_gives_varying_blur(camera_tif, tmp_path, model):
    smap = S.tilt_map((96, 128), position=0.2, slope=0.05, floor=0.5)
    map_path = tmp_path / "sigma.tif"
    write_map(map_path, smap)
    out = tmp_path / "varying.tif"
    args = ["blur", str(camera_tif), "-o", str(out), "--sigma-map", str(map_path)]
    assert main([*args, "--psf", "disk", "--model", model]) == 0
    expected = S.blur_varying(
        read_image(camera_tif).data, smap, psf="disk", method=model, dtype=np.uint8
    )
    np.testing.assert_array_equal(read_image(out).data, expected)


def test_kernel_file_is_applied_normalised(camera_tif, tmp_path):
    kernel = 7.0 * P.ring(4.0, width=1.5, softness=0.7)  # any positive scale
    k_path = tmp_path / "k.tif"
    write_map(k_path, kernel)
    out = tmp_path / "ringed.tif"
    assert main(["blur", str(camera_tif), "-o", str(out), "--kernel", str(k_path)]) == 0
    expected = S.blur(
        read_image(camera_tif).data,
        P.as_kernel(kernel.astype(np.float32)),
        dtype=np.uint8,
    )
    np.testing.assert_array_equal(read_image(out).data, expected)


@pytest.mark.parametrize(
    "extra",
    [
        [],  # nothing to apply
        ["--psf", "disk", "--sigma", "2"],  # a parameter the model does not take
        ["--psf", "disk", "--radius", "-1"],
        ["--kernel", "k.tif", "--psf", "disk"],
        ["--sigma-map", "missing.tif"],
        ["--sigma-map", "m.tif", "--psf", "ring"],
    ],
)
def test_bad_requests_exit_2(camera_tif, tmp_path, extra, capsys):
    out = tmp_path / "never.tif"
    assert main(["blur", str(camera_tif), "-o", str(out), *extra]) == 2
    assert "error" in capsys.readouterr().err
    assert not out.exists()


def test_refuses_to_overwrite_input(camera_tif):
    before = camera_tif.read_bytes()
    args = ["blur", str(camera_tif), "-o", str(camera_tif), "--psf", "gauss", "--sigma", "1"]
    assert main(args) == 2
    assert camera_tif.read_bytes() == before
