"""`defocus batch`: a killed batch resumes, the QC table, a bad file in its row."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import data

from defocus.cli import main
from defocus.io import read_image, write_image

pytest.importorskip("distributed")


def _images(folder, n, size=256):
    folder.mkdir()
    sharp = data.camera().astype(np.float32)
    paths = []
    for i in range(n):
        y, x = (37 * i) % (512 - size), (53 * i) % (512 - size)
        img = ndi.gaussian_filter(sharp[y : y + size, x : x + size], 0.3 * (i % 8))
        p = folder / f"im{i:02d}.tif"
        write_image(p, np.round(img).astype(np.uint8))
        paths.append(str(p))
    return paths


def _table(out):
    with open(out / "qc.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _partials(out):
    return [p.name for p in out.iterdir() if ".partial" in p.name]


def _rows_done(out):
    return {p.name for p in out.glob("*.qc.map.json") if not p.name.startswith(".")}


@pytest.fixture(scope="module")
def scheduler():
    """Address of a running in-process cluster, as a facility's scheduler would be."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1, processes=False, dashboard_address=None, threads_per_worker=1
    ) as cluster:
        yield cluster.scheduler_address


@pytest.mark.slow  # a child process killed mid-write, then a rerun: 5-12 s
def test_killed_batch_resumes_without_partial_files(tmp_path, scheduler):
    paths = _images(tmp_path / "in", 6, size=128)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "defocus", "batch", *paths, "-o", str(out)]
    cmd += ["--task", "map", "--workers", "1", "--no-progress"]
    # its own process group, so that the kill also takes the worker process down mid-write
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (out.exists() and _rows_done(out)):
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    done_before = _rows_done(out)
    assert 0 < len(done_before) < len(paths), "the kill should land part-way"
    assert not (out / "qc.csv").exists()
    # what is visible after a kill is complete: every finished row has readable maps
    for name in done_before:
        stem = name.removesuffix(".qc.map.json")
        assert read_image(out / f"{stem}.qc.sigma.tif").data.shape == (128, 128)
    stamps = {n: (out / n).stat().st_mtime_ns for n in done_before}

    args = ["batch", *paths, "-o", str(out), "--task", "map", "--no-progress"]
    assert main([*args, "--scheduler", scheduler]) == 0
    rows = _table(out)
    assert [r["input"] for r in rows] == paths
    assert all(r["status"] in ("done", "skipped (done before)") for r in rows)
    skipped = {os.path.basename(r["input"]) for r in rows if r["status"].startswith("skipped")}
    assert {n.removesuffix(".qc.map.json") + ".tif" for n in done_before} <= skipped
    assert all((out / n).stat().st_mtime_ns == t for n, t in stamps.items())
    assert len(list(out.glob("*.qc.sigma.tif"))) == len(paths)
    assert _partials(out) == []


def test_batch_reports_bad_file_in_its_row_and_exits_2(tmp_path, scheduler, capsys):
    paths = _images(tmp_path / "in", 3, size=128)
    missing = str(tmp_path / "in" / "gone.tif")
    inputs = [paths[0], missing, *paths[1:]]
    out = tmp_path / "out"
    code = main(["batch", *inputs, "-o", str(out), "--scheduler", scheduler])
    assert code == 2
    captured = capsys.readouterr()
    assert "gone.tif: no such file" in captured.err
    assert "4 images: 3 done, 1 failed" in captured.out
    rows = _table(out)
    assert [r["input"] for r in rows] == inputs
    assert rows[1]["status"] == "bad input" and "no such file" in rows[1]["error"]
    assert all(r["error"] == "" and float(r["focus_score"]) > 0 for r in rows if r is not rows[1])
    assert {r["out_of_focus"] for r in rows if r is not rows[1]} <= {"True", "False"}


def test_batch_refuses_two_inputs_with_one_name(tmp_path, capsys):
    a = tmp_path / "a"
    b = tmp_path / "b"
    pa, pb = _images(a, 1, size=64)[0], _images(b, 1, size=64)[0]
    assert main(["batch", pa, pb, "-o", str(tmp_path / "o")]) == 2
    assert "would both write" in capsys.readouterr().err


def test_batch_identify_fills_the_psf_columns(tmp_path, scheduler, capsys):
    from defocus import batch
    from defocus.kernel import identify
    from defocus.psf import render
    from defocus.synth import blur

    folder = tmp_path / "in"
    folder.mkdir()
    sharp = data.camera()[100:228, 150:278].astype(np.float32)
    # name: model, true sigma (px), kernel parameters
    truth = {
        "g15": ("gauss", 1.5, {"sigma": 1.5}),
        "d3": ("disk", 1.5, {"radius": 3.0}),
        "g3": ("gauss", 3.0, {"sigma": 3.0}),
        "d6": ("disk", 3.0, {"radius": 6.0}),
    }
    images = {}
    for name, (model, _, params) in truth.items():
        images[name] = np.round(blur(sharp, render(model, **params))).astype(np.uint8)
        write_image(folder / f"{name}.tif", images[name])
    write_image(folder / "tiny.tif", data.camera()[:40, :40])  # identify needs 64 px a side
    inputs = [str(folder / f"{name}.tif") for name in [*truth, "tiny"]]
    out = tmp_path / "out"
    args = ["batch", *inputs, "-o", str(out), "--task", "identify", "--no-progress"]
    assert main([*args, "--scheduler", scheduler]) == 2
    assert "tiny.tif" in capsys.readouterr().err
    rows = _table(out)
    assert tuple(rows[0]) == batch.QC_COLUMNS and [r["input"] for r in rows] == inputs
    for row, (name, (model, sigma, params)) in zip(rows[:-1], truth.items(), strict=True):
        assert row["status"] == "done" and row["error"] == "" and row["task"] == "identify"
        # the row is kernel.identify's answer on the same image
        found = identify(images[name])
        assert row["psf_model"] == found.model == model
        assert float(row["sigma_median"]) == pytest.approx(found.sigma, rel=1e-5)
        assert float(row["sigma_median"]) == pytest.approx(sigma, rel=0.15)
        assert float(row["psf_confidence"]) == pytest.approx(found.confidence, rel=1e-5)
        assert 0 <= float(row["psf_confidence"]) <= 1
        if model == "disk":
            assert float(row["psf_diameter"]) == pytest.approx(2 * params["radius"], abs=1)
        else:
            assert row["psf_diameter"] == ""
        assert row["sigma_p10"] == row["sigma_p90"] == ""  # one uniform blur: no spread
        assert row["out_of_focus"] == str(sigma > batch.MAX_SIGMA)
        assert float(row["focus_score"]) > 0
    assert rows[-1]["status"] == "bad input" and "64x64" in rows[-1]["error"]
    assert rows[-1]["psf_model"] == ""
    # identify writes no maps: only the rows and the table
    written = {p.name for p in out.iterdir()}
    rows_written = {f"{n}.qc.identify.json" for n in truth}
    assert written - {"qc.parquet", ".qc.lock"} == {"qc.csv"} | rows_written
