"""Tests for ``defocus zseries`` and ``defocus map --k``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from defocus.cli import main
from defocus.io import read_image, write_image
from defocus.synth import blur_varying, tilt_map

Z = (-0.3, 0.6, 1.5, 2.4, 3.3)


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> list[str]:
    """Five 8-bit frames of a plane tilted 2° along x (0.5 µm pixels), named by their z."""
    folder = tmp_path_factory.mktemp("zseries")
    sharp = data.camera()[::4, ::4].astype(np.float32)
    cc = np.mgrid[0:128, 0:128][1] * 0.5
    height = 1.5 + math.tan(math.radians(2.0)) * (cc - cc.mean())
    paths = []
    for zi in Z:
        frame = blur_varying(sharp, np.hypot(0.5, 2.0 * (zi - height)))
        path = folder / f"plane_z{zi:g}um.png"
        write_image(path, np.clip(np.round(frame), 0, 255).astype(np.uint8))
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def run(series, tmp_path_factory) -> tuple[Path, int]:
    """One run of the command on the series, shared by the tests that read its outputs."""
    out = tmp_path_factory.mktemp("run") / "out"
    args = ["zseries", *series, "-o", str(out), "--pixel-size", "0.5um", "--no-align", "--report"]
    return out, main(args)


def test_cli_end_to_end(run, series, capsys):
    out, code = run
    assert code == 0
    stem = Path(series[0]).stem
    names = ["height.tif", "confidence.tif", "height.png", "surface.png", "json", "html"]
    for name in names:
        assert (out / f"{stem}.zseries.{name}").is_file()
    height = read_image(out / f"{stem}.zseries.height.tif")
    assert height.data.dtype == np.float32 and height.data.shape == (128, 128)
    assert str(height.pixel_size) == "0.5 µm"
    summary = json.loads((out / f"{stem}.zseries.json").read_text())
    assert summary["z_source"] == "file names"
    assert summary["z"] == list(Z)
    assert abs(summary["plane"]["tilt_x_deg"] - 2.0) < 0.5
    assert summary["series_fit"]["bracketed"] is True
    page = (out / f"{stem}.zseries.html").read_text(encoding="utf-8")
    assert page.count("<img") == 3 and "° along x" in page
    # a second run does not replace the first without --overwrite
    before = (out / f"{stem}.zseries.json").read_bytes()
    capsys.readouterr()
    assert main(["zseries", *series, "-o", str(out), "--no-align"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / f"{stem}.zseries.json").read_bytes() == before


def test_cli_json_summary(tmp_path, series, capsys):
    out = tmp_path / "o"
    assert main(["zseries", *series[:3], "-o", str(out), "--no-align", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["z_source"] == "file names" and len(summary["z"]) == 3


@pytest.mark.parametrize(
    ("z", "message"),
    [
        ("0,1,2", "3 z values for 5 frames"),
        ("0,1,3,2,4", "not monotonic"),
        ("0,1,1,2,3", "duplicate value 1"),
        ("0;1", "cannot read z list"),
    ],
)
def test_cli_bad_z_exit_2(tmp_path, series, capsys, z, message):
    out = tmp_path / "out"
    assert main(["zseries", *series, "-o", str(out), f"--z={z}"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()  # refused before any work


def test_cli_z_step_and_names_without_z(tmp_path, series, capsys):
    plain = tmp_path / "frame.png"
    plain.write_bytes(Path(series[0]).read_bytes())
    assert main(["zseries", str(plain), series[1], "-o", str(tmp_path / "o")]) == 2
    assert "no z in the file name" in capsys.readouterr().err
    assert main(["zseries", *series, "-o", str(tmp_path / "o"), "--z-step", "0um"]) == 2
    assert "non-zero step" in capsys.readouterr().err


def test_cli_never_replaces_an_input(tmp_path, series, capsys):
    # a frame that happens to carry the name of a planned output
    frame = tmp_path / "a.png"
    frame.write_bytes(Path(series[0]).read_bytes())
    clash = tmp_path / "a.zseries.height.tif"
    write_image(clash, read_image(series[1]).data)
    before = clash.read_bytes()
    code = main(["zseries", str(frame), str(clash), "--z", "0,1", "-o", str(tmp_path)])
    assert code == 2
    assert "would replace the input" in capsys.readouterr().err
    assert clash.read_bytes() == before


def test_map_with_k_and_calibration(tmp_path, run, series, capsys):
    sharp = data.camera()[::2, ::2]
    image = tmp_path / "tilted.tif"
    blurred = blur_varying(sharp, tilt_map(sharp.shape, position=0.5, slope=0.03, floor=0.5))
    write_image(image, blurred.astype(np.float32), pixel_size="0.5um")
    out = tmp_path / "maps"
    assert main(["map", str(image), "-o", str(out), "--k", "2px/um"]) == 0
    assert "height:" in capsys.readouterr().out
    summary = json.loads((out / "tilted.blur.json").read_text())
    height = summary["height"]
    assert height["signed"] and height["unit"] == "µm"
    assert height["plane"]["tilt_deg"] is not None
    h = read_image(out / "tilted.blur.height.tif").data
    col = np.median(h[:, 96:160], axis=1)
    assert col[20] > col[236]  # one slope through the sharp line, top higher by default
    # the calibration of a through-focus series gives the same kind of output
    calib = run[0] / f"{Path(series[0]).stem}.zseries.json"
    out2 = tmp_path / "maps2"
    assert main(["map", str(image), "-o", str(out2), "--calibration", str(calib)]) == 0
    k = json.loads(calib.read_text())["blur_growth_k"]["value"]
    assert json.loads((out2 / "tilted.blur.json").read_text())["height"]["k_px_per_unit"] == k
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["map", str(image), "-o", str(tmp_path / "m3"), "--calibration", str(bad)]) == 2
    assert "not a zseries calibration" in capsys.readouterr().err
