"""`defocus psf render` and `defocus psf convert` end to end."""

from __future__ import annotations

import numpy as np
import pytest

from defocus import psf as P
from defocus.cli import main
from defocus.io import read_image


@pytest.mark.parametrize(
    ("model", "flags", "params"),
    [
        ("disk", ["--radius", "5"], {"radius": 5.0}),
        (
            "ring",
            ["--radius", "8", "--width", "2", "--softness", "1"],
            {"radius": 8.0, "width": 2.0, "softness": 1.0},
        ),
        ("motion", ["--length", "9", "--angle", "30"], {"length": 9.0, "angle": 30.0}),
        (
            "defocus",
            ["--waves", "1", "--airy-radius", "3", "--shape", "45"],
            {"waves": 1.0, "airy_radius": 3.0, "shape": 45},
        ),
    ],
)
def test_render_writes_kernel_and_profile_png(tmp_path, capsys, model, flags, params):
    out = tmp_path / "k.tif"
    assert main(["psf", "render", model, *flags, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "sigma" in printed
    kernel = read_image(out).data
    assert kernel.dtype == np.float32
    assert float(kernel.sum(dtype=np.float64)) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(kernel, P.render(model, **params), atol=1e-7)
    png = tmp_path / "k.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_render_airy_from_optics_uses_the_pixel_size(tmp_path, capsys):
    out = tmp_path / "airy.tif"
    args = ["psf", "render", "airy", "--wavelength", "520nm", "--na", "0.9"]
    assert main([*args, "--pixel-size", "0.05um", "--shape", "33", "-o", str(out)]) == 0
    expected = P.airy(P.airy_radius(520, 0.9, 50), shape=33)
    np.testing.assert_allclose(read_image(out).data, expected, atol=1e-7)
    # Without a pixel size the wavelength cannot be used.
    assert main([*args, "-o", str(tmp_path / "x.tif")]) == 2


def test_convert_prints_every_measure(capsys):
    assert main(["psf", "convert", "2", "--model", "disk"]) == 0
    lines = dict(line.split()[:2] for line in capsys.readouterr().out.splitlines())
    assert float(lines["radius"]) == pytest.approx(4.0)
    assert float(lines["diameter"]) == pytest.approx(8.0)
    assert main(["psf", "convert", "3", "--from", "fwhm", "--model", "gauss"]) == 0
    lines = dict(line.split()[:2] for line in capsys.readouterr().out.splitlines())
    assert float(lines["sigma"]) == pytest.approx(3 / 2.3548, rel=1e-3)
    assert "radius" not in lines  # a Gaussian has none


@pytest.mark.parametrize(
    "args",
    [
        ["psf", "render", "disk", "--radius", "3", "-o", "k.png"],  # kernel must be TIFF
        ["psf", "render", "disk", "--sigma", "3", "-o", "k.tif"],
        ["psf", "render", "disk", "--radius", "-3", "-o", "k.tif"],
    ],
)
def test_render_bad_requests_exit_2(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert not (tmp_path / "k.tif").exists() and not (tmp_path / "k.png").exists()


def test_unknown_model_is_a_usage_error(capsys):
    assert main(["psf", "render", "lorentz", "-o", "k.tif"]) == 2
    assert "lorentz" in capsys.readouterr().err


@pytest.mark.slow  # an end-to-end run: more than 10 s on 2 cores
def test_estimate_writes_kernel_png_and_json(tmp_path, capsys):
    import json

    from skimage import data

    from defocus.io import write_image
    from defocus.synth import blur

    full = data.camera().astype(np.float32)
    kernel = P.disk(4.0, shape=11)
    write_image(tmp_path / "sharp.tif", full[100:228, 150:278])
    write_image(tmp_path / "blurry.tif", blur(full, kernel)[100:228, 150:278])
    out = tmp_path / "out"
    args = ["psf", "estimate", str(tmp_path / "sharp.tif"), str(tmp_path / "blurry.tif")]
    assert main([*args, "--size", "11", "-o", str(out)]) == 0
    k = read_image(out / "blurry.kernel.tif").data
    assert k.dtype == np.float32 and k.shape == (11, 11)
    assert np.linalg.norm(k - kernel) < 0.05 * np.linalg.norm(kernel)
    summary = json.loads((out / "blurry.kernel.json").read_text())
    assert summary["fit"]["model"] in P.MODELS
    assert summary["fit"]["sigma_px"] == pytest.approx(2.0, rel=0.05)
    assert (out / "blurry.kernel.png").read_bytes()[:4] == b"\x89PNG"
    # Mismatched shapes are bad input (exit 2).
    write_image(tmp_path / "small.tif", full[:64, :64])
    assert (
        main(
            [
                "psf",
                "estimate",
                str(tmp_path / "sharp.tif"),
                str(tmp_path / "small.tif"),
                "-o",
                str(out),
            ]
        )
        == 2
    )


@pytest.mark.slow  # an end-to-end run: more than 10 s on 2 cores
def test_estimate_identify_and_blur_with_the_kernel_end_to_end(tmp_path, capsys):
    import json

    from skimage import data

    from defocus.io import write_image
    from defocus.synth import blur

    full = data.camera().astype(np.float32)
    kernel = P.disk(5.0)
    sharp, blurry = tmp_path / "sharp.tif", tmp_path / "blurry.tif"
    write_image(sharp, full[96:352, 96:352])
    write_image(blurry, blur(full, kernel)[96:352, 96:352])
    out = tmp_path / "out"
    assert main(["psf", "estimate", str(sharp), str(blurry), "-o", str(out)]) == 0
    summary = json.loads((out / "blurry.kernel.json").read_text())
    assert summary["model"] == "disk"
    assert summary["diameter_px"] == pytest.approx(10.0, abs=0.5)
    assert summary["sigma_px"] > 0 and summary["residual_rms"] >= 0
    capsys.readouterr()

    assert main(["psf", "identify", str(blurry), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["model"] == "disk" and found["diameter_px"] == pytest.approx(10.0, abs=1.0)
    assert main(["psf", "identify", str(blurry)]) == 0
    assert "diameter" in capsys.readouterr().out

    # The estimated kernel reproduces the blur when applied with `defocus blur --kernel`.
    again = tmp_path / "again.tif"
    args = ["blur", str(sharp), "-o", str(again), "--kernel", str(out / "blurry.kernel.tif")]
    assert main(args) == 0
    reblurred = read_image(again).data.astype(float)
    target = read_image(blurry).data.astype(float)
    inner = (slice(20, -20), slice(20, -20))
    assert np.abs(reblurred[inner] - target[inner]).mean() < 0.5


def test_identify_bad_input_exits_2(tmp_path):
    from defocus.io import write_image

    write_image(tmp_path / "tiny.tif", np.random.default_rng(0).random((20, 20)).astype(np.float32))
    assert main(["psf", "identify", str(tmp_path / "tiny.tif")]) == 2


def test_estimate_warns_on_a_wrong_pair_and_strict_refuses(tmp_path, capsys):
    import json

    from skimage import data

    from defocus.io import write_image
    from defocus.synth import blur

    full = data.camera().astype(np.float32)
    write_image(tmp_path / "sharp.tif", full[100:228, 150:278])
    # The blurred frame turned by 90 degrees: not the same scene.
    write_image(tmp_path / "turned.tif", np.rot90(blur(full, P.disk(3.0))[100:228, 150:278]))
    args = ["psf", "estimate", str(tmp_path / "sharp.tif"), str(tmp_path / "turned.tif")]
    out = tmp_path / "out"
    assert main([*args, "--size", "9", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "the pair does not match:" in err and "% of the variance explained" in err
    summary = json.loads((out / "turned.kernel.json").read_text())
    assert summary["matches"] is False
    assert summary["warnings"][0].startswith("the pair does not match")
    assert summary["kernel"]["explained_variance"] < 0.5

    strict = tmp_path / "strict"
    assert main([*args, "--size", "9", "--strict", "-o", str(strict)]) == 2
    assert "the pair does not match" in capsys.readouterr().err
    assert not strict.exists() or not any(strict.iterdir())


def test_estimate_reports_clipped_pixels(tmp_path, capsys):
    import json

    from skimage import data

    from defocus.io import write_image
    from defocus.synth import blur

    full = data.camera().astype(np.float32)
    blurry = blur(full, P.disk(3.0))[100:228, 150:278]
    blurry[10:40, 10:40] = 255.0  # saturated
    write_image(tmp_path / "sharp.tif", full[100:228, 150:278].astype(np.uint8))
    write_image(tmp_path / "blurry.tif", np.clip(np.rint(blurry), 0, 255).astype(np.uint8))
    args = ["psf", "estimate", str(tmp_path / "sharp.tif"), str(tmp_path / "blurry.tif")]
    assert main([*args, "--size", "9", "--strict", "-o", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "clipped pixels left out" in printed
    summary = json.loads((tmp_path / "out" / "blurry.kernel.json").read_text())
    assert summary["kernel"]["clipped_pixels"] >= 900
    assert summary["matches"] is True


def test_estimate_reports_an_anisotropic_kernel(tmp_path, capsys):
    import json

    from skimage import data

    from defocus.io import write_image
    from defocus.synth import blur

    full = data.camera().astype(np.float32)
    kernel = P.elliptical_gauss(3.0, 1.0, angle=30.0, shape=15)
    write_image(tmp_path / "sharp.tif", full[100:228, 150:278])
    write_image(tmp_path / "blurry.tif", blur(full, kernel)[100:228, 150:278])
    out = tmp_path / "out"
    args = ["psf", "estimate", str(tmp_path / "sharp.tif"), str(tmp_path / "blurry.tif")]
    assert main([*args, "--size", "15", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "anisotropic" in printed and "axis ratio" in printed
    summary = json.loads((out / "blurry.kernel.json").read_text())
    assert summary["model"] in ("elliptical_gauss", "astigmatic")
    d = summary["derived"]
    assert d["sigma_major"] > 2 * d["sigma_minor"]
    assert abs((d["angle"] - 30.0 + 90) % 180 - 90) < 3


def test_estimate_shows_progress_only_when_asked(tmp_path, capsys, monkeypatch):
    from skimage import data

    from defocus.io import write_image
    from defocus.synth import blur

    full = data.camera().astype(np.float32)
    write_image(tmp_path / "sharp.tif", full[100:164, 150:214])
    write_image(tmp_path / "blurry.tif", blur(full, P.gaussian(1.0))[100:164, 150:214])
    args = ["psf", "estimate", str(tmp_path / "sharp.tif"), str(tmp_path / "blurry.tif")]
    monkeypatch.setenv("DEFOCUS_PROGRESS", "1")
    assert main([*args, "--size", "7", "-o", str(tmp_path / "a")]) == 0
    assert "psf estimate" in capsys.readouterr().err
    monkeypatch.delenv("DEFOCUS_PROGRESS")
    assert main([*args, "--size", "7", "-o", str(tmp_path / "b")]) == 0
    assert "psf estimate" not in capsys.readouterr().err
