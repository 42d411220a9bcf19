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
    return {p.name for p in out.glob("*.map.json") if not p.name.startswith(".")}


def _local_cluster():
    from distributed import LocalCluster

    return LocalCluster(n_workers=1, processes=False, dashboard_address=None, threads_per_worker=1)


def test_killed_batch_resumes_without_partial_files(tmp_path):
    paths = _images(tmp_path / "in", 12, size=160)
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
        stem = name.removesuffix(".map.json")
        assert read_image(out / f"{stem}.sigma.tif").data.shape == (160, 160)
    stamps = {n: (out / n).stat().st_mtime_ns for n in done_before}

    with _local_cluster() as cluster:
        args = ["batch", *paths, "-o", str(out), "--task", "map"]
        assert main([*args, "--scheduler", cluster.scheduler_address]) == 0
    rows = _table(out)
    assert [r["input"] for r in rows] == paths
    assert all(r["status"] in ("done", "skipped (done before)") for r in rows)
    skipped = {os.path.basename(r["input"]) for r in rows if r["status"].startswith("skipped")}
    assert {n.removesuffix(".map.json") + ".tif" for n in done_before} <= skipped
    assert all((out / n).stat().st_mtime_ns == t for n, t in stamps.items())
    assert len(list(out.glob("*.sigma.tif"))) == len(paths)
    assert _partials(out) == []


def test_batch_reports_bad_file_in_its_row_and_exits_2(tmp_path, capsys):
    paths = _images(tmp_path / "in", 3, size=128)
    missing = str(tmp_path / "in" / "gone.tif")
    inputs = [paths[0], missing, *paths[1:]]
    out = tmp_path / "out"
    # attach to a running cluster, as with a facility's scheduler
    with _local_cluster() as cluster:
        code = main(["batch", *inputs, "-o", str(out), "--scheduler", cluster.scheduler_address])
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
    assert "both write im00" in capsys.readouterr().err
