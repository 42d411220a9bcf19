"""``defocus report``: one page for several images, per-file failures listed, exit codes."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

import defocus
from defocus.cli import main


@pytest.fixture
def pair(tmp_path):
    sharp = data.camera()[200:264, 200:264]
    blurry = np.round(defocus.blur(sharp, defocus.render("gauss", sigma=1.5))).astype(np.uint8)
    defocus.write_image(tmp_path / "sharp.tif", sharp, pixel_size="50nm")
    defocus.write_image(tmp_path / "blurry.tif", blurry, pixel_size="50nm")
    return tmp_path / "sharp.tif", tmp_path / "blurry.tif"


@pytest.mark.slow  # a report with kernel estimation and model fits: 13 s
def test_report_with_pair_and_a_missing_file(pair, tmp_path, capsys):
    sharp, blurry = pair
    out = tmp_path / "out" / "report.html"
    args = ["report", str(blurry), str(tmp_path / "missing.tif"), "--sharp", str(sharp)]
    code = main([*args, "--models", "gauss", "disk", "--pixel-size", "0.1um", "-o", str(out)])
    assert code == 2  # one input was bad, the other still reported
    page = out.read_text(encoding="utf-8")
    captured = capsys.readouterr()
    assert f"wrote {out}" in captured.out
    assert "missing.tif: no such file" in captured.err
    assert "Not analysed" in page and "missing.tif" in page
    assert "<h2>blurry.tif</h2>" in page and "Kernel from the pair" in page
    assert "0.1 µm (source: override)" in page
    assert page.count("<img") == 6
    # the pair was blurred by a Gaussian: its fit must be listed and chosen among the two
    assert "gauss (chosen)" in page


def test_metadata_pixel_size_and_no_page_when_nothing_worked(pair, tmp_path):
    sharp, _ = pair
    out = tmp_path / "r.html"
    assert main(["report", str(tmp_path / "nope.tif"), "-o", str(out)]) == 2
    assert not out.exists()
    assert main(["report", str(sharp), "-o", str(out)]) == 0
    assert "50 nm (source: OME PhysicalSizeX)" in out.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["report.png", "folder.html"])
def test_bad_output_names(pair, tmp_path, name, capsys):
    (tmp_path / "folder.html").mkdir()
    assert main(["report", str(pair[1]), "-o", str(tmp_path / name)]) == 2
    assert capsys.readouterr().err.count("\n") == 1  # one line


def test_unknown_psf_is_a_usage_error(pair):
    assert main(["report", str(pair[1]), "--psf", "box", "-o", "r.html"]) == 2


def test_progress_bar_on_stderr_only_when_asked(pair, tmp_path, capsys, monkeypatch):
    _, blurry = pair
    monkeypatch.setenv("DEFOCUS_PROGRESS", "1")
    assert main(["report", str(blurry), "-o", str(tmp_path / "a.html")]) == 0
    err = capsys.readouterr().err
    assert "report: 100%" in err
    monkeypatch.delenv("DEFOCUS_PROGRESS")
    assert main(["report", str(blurry), "-o", str(tmp_path / "b.html")]) == 0
    assert "report:" not in capsys.readouterr().err  # tqdm writes "<desc>: <percent>"
