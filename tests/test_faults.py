"""Faults: runs killed or interrupted mid-write, and output folders that refuse writes.

A child process runs the real command with the TIFF writer wrapped so that it stops the
process itself at a chosen write, after half of the file is on disk: the kill always lands
mid-write, never by luck of timing.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from defocus.cli import main
from defocus.io import read_image, write_image

# The child: wrap the TIFF writer behind defocus.io so that write number KILL_AT leaves half a
# file and then gets SIGNAL; then run CALL.
CHILD = """
import os, signal, sys, time
import defocus.io._write as dio

# Ctrl-C as in a terminal, whatever disposition the test process handed down (an ignored
# SIGINT is inherited across exec, and a Dask cluster in an earlier test may have set one).
signal.signal(signal.SIGINT, signal.default_int_handler)

real, count = dio._write_tiff, [0]

def write_then_die(tmp, *args, **kwargs):
    real(tmp, *args, **kwargs)
    count[0] += 1
    if count[0] == {kill_at}:
        with open(tmp, "r+b") as fh:
            fh.truncate(tmp.stat().st_size // 2)
        os.kill(os.getpid(), signal.{signal})
        time.sleep(30)  # the signal arrives here

dio._write_tiff = write_then_die
{call}
"""


def _child(tmp: Path, call: str, *, kill_at: int, sig: str) -> subprocess.CompletedProcess:
    script = CHILD.format(kill_at=kill_at, signal=sig, call=textwrap.dedent(call))
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp
    )


def _inputs(tmp: Path, n: int = 2) -> list[Path]:
    files = []
    for i in range(n):
        files.append(tmp / f"img{i}.png")
        write_image(files[-1], data.camera()[100 * i : 100 * i + 96, 200:296])
    return files


def _visible(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if not p.name.startswith("."))


def _hidden(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith("."))


@pytest.mark.slow  # a child process killed mid-write, then a rerun: 5-12 s
def test_sigkill_mid_write_leaves_no_partial_output_and_the_rerun_completes(tmp_path):
    files = _inputs(tmp_path)
    before = [f.read_bytes() for f in files]
    out = tmp_path / "out"
    # the second TIFF write is the second image's focus map: the first image is complete
    argv = ["focus", *map(str, files), "-o", str(out)]
    call = f"from defocus.cli import main; main({argv!r})"
    done = _child(tmp_path, call, kill_at=2, sig="SIGKILL")
    assert done.returncode == -signal.SIGKILL, done.stderr
    # no output under its real name is partial: the first image's are complete and readable,
    # the second image's map exists only as the killed writer's hidden temporary file
    assert "img1.focus.tif" not in _visible(out)
    assert read_image(out / "img0.focus.tif").data.shape == (96, 96)
    assert [n for n in _hidden(out) if n.startswith(".img1.focus.")]
    # a plain rerun would replace the first image's outputs: it is refused, changing nothing
    kept = {n: (out / n).read_bytes() for n in _visible(out)}
    assert main(["focus", *map(str, files), "-o", str(out)]) == 2
    assert {n: (out / n).read_bytes() for n in _visible(out)} == kept
    # with --overwrite it completes and removes what the killed run left
    assert main(["focus", *map(str, files), "-o", str(out), "--overwrite"]) == 0
    assert _hidden(out) == []
    for stem in ("img0", "img1"):
        assert read_image(out / f"{stem}.focus.tif").data.shape == (96, 96)
        assert (out / f"{stem}.focus.json").stat().st_size > 0
    assert [f.read_bytes() for f in files] == before


@pytest.mark.slow  # a child process killed mid-write, then a rerun: 5-12 s
def test_killed_batch_resumes_where_it_stopped(tmp_path):
    pytest.importorskip("distributed")
    from defocus.batch import run_batch, start_client

    files = _inputs(tmp_path, 3)
    out = tmp_path / "out"
    # one worker thread in the child, so the wrapped writer runs there; the second image's
    # map is the second TIFF write
    call = f"""
    from defocus.batch import run_batch, start_client
    client = start_client(workers=1, processes=False)
    run_batch({[str(f) for f in files]!r}, {str(out)!r}, client=client)
    """
    done = _child(tmp_path, call, kill_at=2, sig="SIGKILL")
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert "img1.qc.focus.tif" not in _visible(out) and "qc.csv" not in _visible(out)
    assert _hidden(out), "the kill should have landed mid-write"
    client = start_client(workers=1, processes=False)
    try:
        rows = run_batch(files, out, client=client)
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    assert [r["status"] for r in rows] == ["skipped (done before)", "done", "done"]
    assert _hidden(out) == [".qc.lock"]  # the table's lock file stays; no temporary file does
    with open(out / "qc.csv", newline="") as fh:
        assert [r["input"] for r in csv.DictReader(fh)] == [str(f) for f in files]
    for f in files:
        assert read_image(out / f"{f.stem}.qc.focus.tif").data.shape == (96, 96)


@pytest.mark.slow  # a child process interrupted mid-write: 7 s
def test_ctrl_c_mid_write_exits_130_with_one_clean_line(tmp_path):
    files = _inputs(tmp_path, 1)
    out = tmp_path / "out"
    call = f"""
    import sys
    from defocus.cli import main
    sys.exit(main(['map', {str(files[0])!r}, '-o', {str(out)!r}]))
    """
    done = _child(tmp_path, call, kill_at=1, sig="SIGINT")
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == "defocus: interrupted; no partial output was left"
    assert list(out.iterdir()) == []


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root writes into read-only folders; test_hostile.py simulates it",
)
def test_read_only_output_folder(tmp_path, capsys):
    src = _inputs(tmp_path, 1)[0]
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        assert main(["focus", str(src), "-o", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "Permission denied" in err
        assert list(out.iterdir()) == []
    finally:
        out.chmod(0o700)


def test_stale_temporary_files_of_live_writers_are_kept(tmp_path):
    """Only a dead process's leftovers go: a live writer's temporary file is not touched."""
    import socket

    host = socket.gethostname().replace(".", "-")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    live = tmp_path / f".m.{os.getppid()}@{host}.abc.partial.tif"
    gone = tmp_path / f".m.{dead}@{host}.abc.partial.tif"
    other = tmp_path / f".m.{dead}@elsewhere.abc.partial.tif"
    for f in (live, gone, other):
        f.write_bytes(b"half")
    write_image(tmp_path / "m.tif", np.zeros((4, 4), np.uint8))
    assert live.exists() and other.exists() and not gone.exists()
