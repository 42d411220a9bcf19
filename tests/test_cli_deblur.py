"""`defocus deblur` end to end in a temporary folder."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from defocus import psf as P
from defocus import synth as S
from defocus.cli import main
from defocus.io import read_image, write_image, write_map
from defocus.restore import deblur, deblur_varying


@pytest.fixture
def blurred_tif(tmp_path):
    path = tmp_path / "cam.tif"
    sharp = data.camera()[100:196, 150:278]
    write_image(path, S.blur(sharp, P.disk(3.0), dtype=np.uint8), pixel_size="50nm")
    return path


def test_psf_model_matches_the_library_and_keeps_dtype(blurred_tif, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DEFOCUS_PROGRESS", "1")  # a bar although stderr is not a terminal
    out = tmp_path / "sharp.tif"
    args = ["deblur", str(blurred_tif), "-o", str(out), "--psf", "disk", "--radius", "3"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "wiener deconvolution with disk(radius=3), sigma 1.5 px" in captured.out
    assert "100%" in captured.err  # progress went to stderr
    monkeypatch.delenv("DEFOCUS_PROGRESS")
    assert main([*args, "--overwrite"]) == 0
    assert capsys.readouterr().err == ""  # no bar when stderr is not a terminal
    result = read_image(out)
    src = read_image(blurred_tif).data
    assert result.data.dtype == np.uint8 and result.data.shape == src.shape
    np.testing.assert_array_equal(result.data, deblur(src, P.disk(3.0)))
    assert result.pixel_size is not None and result.pixel_size.unit == "nm"


def test_kernel_file_and_method(blurred_tif, tmp_path):
    kpath = tmp_path / "k.tif"
    write_map(kpath, 5.0 * P.disk(3.0).astype(np.float32))  # any positive scale
    out = tmp_path / "tv.png"
    args = ["deblur", str(blurred_tif), "-o", str(out), "--kernel", str(kpath), "--method", "tv"]
    assert main(args) == 0
    src = read_image(blurred_tif).data
    expected = deblur(src, read_image(kpath).data, method="tv")
    np.testing.assert_array_equal(read_image(out).data, expected)


def test_colour_png_gaussian(tmp_path):
    src = tmp_path / "astro.png"
    blurred = S.blur(data.astronaut()[::4, ::4], P.gaussian(1.5), channel_axis=-1, dtype="u1")
    write_image(src, blurred, channel_axis=-1)
    out = tmp_path / "astro_sharp.png"
    assert main(["deblur", str(src), "-o", str(out), "--psf", "gauss", "--sigma", "1.5"]) == 0
    img = read_image(out)
    assert img.data.shape == (128, 128, 3) and img.data.dtype == np.uint8
    np.testing.assert_array_equal(img.data, deblur(blurred, P.gaussian(1.5), channel_axis=-1))


def test_sigma_map_gives_varying_deblur(blurred_tif, tmp_path):
    smap = S.tilt_map((96, 128), position=0.2, slope=0.02, floor=0.5)
    map_path = tmp_path / "sigma.tif"
    write_map(map_path, smap)
    out = tmp_path / "varying.tif"
    args = ["deblur", str(blurred_tif), "-o", str(out), "--sigma-map", str(map_path)]
    assert main([*args, "--psf", "disk", "--tile", "48"]) == 0
    src = read_image(blurred_tif).data
    expected = deblur_varying(src, smap, psf="disk", tile=48)
    np.testing.assert_array_equal(read_image(out).data, expected)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "no blur given"),
        (["--psf", "disk", "--radius", "3", "--kernel", "k.tif"], "give one of"),
        (["--psf", "ring", "--radius", "3", "--sigma-map", "m.tif"], "takes --psf gauss or disk"),
        (["--psf", "disk", "--radius", "3", "--tile", "32"], "--tile applies"),
        (["--psf", "disk", "--sigma", "3"], "disk does not take --sigma"),
        (["--psf", "disk", "--radius", "3", "--noise", "-1"], "--noise: must be a number in [0"),
        (["--kernel", "missing.tif"], "missing.tif"),
    ],
)
def test_bad_input_exits_2(blurred_tif, tmp_path, capsys, extra, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "o.tif"
    assert main(["deblur", str(blurred_tif), "-o", str(out), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_refuses_to_overwrite_input(blurred_tif, capsys):
    before = blurred_tif.read_bytes()
    args = ["deblur", str(blurred_tif), "-o", str(blurred_tif), "--psf", "disk", "--radius", "3"]
    assert main(args) == 2
    assert "would replace the input" in capsys.readouterr().err
    assert blurred_tif.read_bytes() == before


def test_corrupt_image_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00garbage")
    args = ["deblur", str(bad), "-o", str(tmp_path / "o.tif"), "--psf", "gauss", "--sigma", "2"]
    assert main(args) == 2
    assert "error" in capsys.readouterr().err


def test_auto_deblurs_with_the_identified_psf(blurred_tif, tmp_path, capsys, monkeypatch):
    # The wiring only: the identification itself is tested with defocus.kernel.
    from defocus import kernel as K

    def identify(image, *, channel_axis=None):
        assert channel_axis is None and image.dtype == np.uint8
        return K.Identification("disk", {"radius": 3.0}, 1.5, 6.0, 0.9)

    monkeypatch.setattr(K, "identify", identify, raising=False)
    out = tmp_path / "auto.tif"
    assert main(["deblur", str(blurred_tif), "-o", str(out), "--auto"]) == 0
    assert "identified disk(radius=3)" in capsys.readouterr().out
    src = read_image(blurred_tif).data
    np.testing.assert_array_equal(read_image(out).data, deblur(src, P.disk(3.0)))


def test_auto_refuses_an_identification_without_confidence(
    blurred_tif, tmp_path, capsys, monkeypatch
):
    from defocus import kernel as K

    def identify(image, *, channel_axis=None):
        return K.Identification("disk", {"radius": 0.5}, 0.25, 1.0, 0.0)

    monkeypatch.setattr(K, "identify", identify, raising=False)
    out = tmp_path / "auto.tif"
    assert main(["deblur", str(blurred_tif), "-o", str(out), "--auto"]) == 2
    assert "not identifiable" in capsys.readouterr().err
    assert not out.exists()


def test_jpeg_input_needs_no_warning(tmp_path, capsys):
    # The noise estimate itself sees JPEG's compression error (defocus.noise.noise_level),
    # whatever the file is called, so a JPEG deblurs like any other image.
    from skimage import data as skdata

    src = tmp_path / "photo.jpg"
    write_image(src, S.blur(skdata.camera()[:96, :96], P.disk(2.0), dtype=np.uint8))
    args = ["deblur", str(src), "-o", str(tmp_path / "out.png"), "--psf", "disk", "--radius", "2"]
    assert main(args) == 0
    assert capsys.readouterr().err == ""
