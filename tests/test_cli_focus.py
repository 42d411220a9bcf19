"""`defocus focus` end to end, in a temporary folder, through the real entry points."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage
from skimage import data

from defocus.cli import main
from defocus.io import read_image, write_image


@pytest.fixture
def tilted(tmp_path):
    """A brick texture, sharp in the top third and blurred below (known sharp band)."""
    img = data.brick()[:192, :192].astype(np.float32)
    out = img.copy()
    for i, s in enumerate((0.0, 2.0, 4.0)):
        blurred = ndimage.gaussian_filter(img, s) if s else img
        out[i * 64 : (i + 1) * 64] = blurred[i * 64 : (i + 1) * 64]
    path = tmp_path / "tilted.tif"
    write_image(path, np.round(out).astype(np.uint8), pixel_size="50nm")
    return path


def test_focus_writes_every_output(tilted, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["focus", str(tilted), "-o", str(out), "--tile", "32"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "tilted.focus.json",
        "tilted.focus.mask.png",
        "tilted.focus.png",
        "tilted.focus.profile.png",
        "tilted.focus.sketch.png",
        "tilted.focus.tif",
    ]
    fmap = read_image(out / "tilted.focus.tif")
    assert fmap.data.dtype == np.float32 and fmap.data.shape == (192, 192)
    assert fmap.pixel_size.to("nm").x == pytest.approx(50)
    summary = json.loads((out / "tilted.focus.json").read_text())
    assert summary["pixel_size_source"] == "OME PhysicalSizeX"
    # the sharp band is the top third
    assert summary["sharpest_band"]["peak"] < 1 / 3
    assert np.array(summary["tiles"]["values"]).shape == (6, 6)
    assert "sharpest rows at" in capsys.readouterr().out


def test_a_flat_profile_claims_no_sharpest_band(tmp_path, capsys):
    # Noise with one small sharp square: every row's median focus is 0, so the argmax of the
    # profile (row 0) is no answer.
    img = np.random.default_rng(0).normal(100, 4, (192, 192))
    img[80:100, 80:100] += 60
    path = tmp_path / "sparse.tif"
    write_image(path, img.astype(np.float32))
    assert main(["focus", str(path), "-o", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "sparse.focus.json").read_text())
    assert summary["sharpest_band"] is None and summary["in_focus_fraction"] > 0
    assert "no sharpest rows (the focus profile is flat)" in capsys.readouterr().out


def test_focus_json_on_stdout_and_measure_choice(tilted, tmp_path, capsys):
    assert (
        main(
            [
                "focus",
                str(tilted),
                "-o",
                str(tmp_path / "o"),
                "--json",
                "--measure",
                "tenengrad",
                "--axis",
                "cols",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["measure"] == "tenengrad"
    assert summary["sharpest_band"]["axis"] == "cols"


def test_list_measures_names_at_least_twelve(capsys):
    assert main(["focus", "--list-measures"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) >= 12 and lines[0].startswith("gradient_ratio")


@pytest.mark.parametrize(
    "argv_tail",
    [["--measure", "nonsense"], ["--scale", "-1"], ["--tile", "0"]],
)
def test_bad_options_exit_2_with_one_line(tilted, tmp_path, capsys, argv_tail):
    code = main(["focus", str(tilted), "-o", str(tmp_path / "o"), *argv_tail])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("defocus: error:") and "\n" not in err


def test_batch_reports_bad_file_and_goes_on(tilted, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = tmp_path / "o"
    code = main(["focus", str(bad), str(tilted), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "broken.png" in err and "[2/2]" in err
    assert (out / "tilted.focus.json").exists() and not (out / "broken.focus.json").exists()
    assert not [p for p in out.iterdir() if ".partial" in p.name]


def test_input_is_not_modified_and_output_cannot_be_input(tilted, tmp_path):
    before = tilted.read_bytes()
    assert main(["focus", str(tilted), "-o", str(tilted)]) == 2
    assert main(["focus", str(tilted), "-o", str(tmp_path / "o")]) == 0
    assert tilted.read_bytes() == before


def test_python_m_defocus_runs(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "defocus", "focus", "--list-measures"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and "tenengrad" in proc.stdout
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "defocus",
            "focus",
            str(tmp_path / "missing.tif"),
            "-o",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"defocus: error: {tmp_path / 'missing.tif'}: no such file"
