"""The output planner (``defocus.cli._outputs``) and what it guarantees for every command.

The central test builds a folder of real-looking inputs and runs every command with ``-o`` at
that folder, at a file in it and at each input, several times and in both orders, checking
that no input changes and no earlier output is lost without ``--overwrite``.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from defocus import BadInputError
from defocus.cli import main
from defocus.cli._outputs import check_plan, resolved
from defocus.io import write_image

CAM = data.camera()[300:364, 100:164]  # 64 x 64: every command runs in well under a second


def _tree(root: Path) -> dict[str, str]:
    """Every regular file under ``root`` with its content hash (symlinks not followed)."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            f = Path(folder) / name
            if f.is_file() and not f.is_symlink():
                out[str(f.relative_to(root))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def _inputs(folder: Path) -> list[Path]:
    folder.mkdir()
    rgb = data.astronaut()[100:164, 200:264]
    files = [folder / "cam.png", folder / "astro.jpg", folder / "cam16.tif"]
    write_image(files[0], CAM)
    write_image(files[1], rgb, channel_axis=-1)
    write_image(files[2], CAM.astype(np.uint16) * 250, pixel_size="20nm")
    try:
        import zarr
    except ImportError:
        return files
    z = zarr.open_array(folder / "big.zarr", mode="w", shape=(96, 96), chunks=(64, 64), dtype="u1")
    z[:] = data.camera()[200:296, 100:196]
    return [*files, folder / "big.zarr"]


def _commands(inputs: list[Path], target: Path | None) -> list[list[str]]:
    """Every writing command, each with ``-o`` at ``target`` (None: a fresh name of its own)."""
    images = [str(p) for p in inputs if p.suffix != ".zarr"]
    folder = inputs[0].parent

    def at(name: str) -> str:
        return str(folder / f"fresh-{name}" if target is None else target)

    cmds = [
        ["focus", *images[:2], "-o", at("focus")],
        ["map", images[2], "-o", at("map")],
        ["blur", images[0], "-o", at("blur.tif"), "--psf", "gauss", "--sigma", "1"],
        ["deblur", images[0], "-o", at("deblur.tif"), "--psf", "gauss", "--sigma", "1"],
        ["psf", "render", "gauss", "--sigma", "1", "-o", at("k.tif")],
        ["psf", "estimate", images[0], images[2], "-o", at("kernel"), "--size", "3", "--no-align"],
        ["stack", images[0], images[0], "-o", at("f.tif"), "--depth", at("d.tif"), "--quiet"],
        ["report", images[0], "-o", at("r.html")],
    ]
    zarrs = [str(p) for p in inputs if p.suffix == ".zarr"]
    if zarrs:
        cmds.append(["map", zarrs[0], "-o", at("tiled"), "--chunks", "64"])
    return cmds


@pytest.mark.slow  # every command, twice, over one folder: 35 s
def test_no_command_loses_an_input_or_an_earlier_output(tmp_path, capsys):
    folder = tmp_path / "data"
    inputs = _inputs(folder)
    originals = {str(p): _tree(p) if p.is_dir() else p.read_bytes() for p in inputs}
    (folder / "notes.txt").write_text("a file of the user's")
    inputs_and_notes = [*inputs, folder / "notes.txt"]
    originals[str(folder / "notes.txt")] = (folder / "notes.txt").read_bytes()
    targets = [None, folder, folder / "notes.txt", *inputs]
    runs = [(cmd, t) for t in targets for cmd in _commands(inputs, t)]
    succeeded = set()
    for order, repeats in ((runs, 2), (runs[::-1], 1)):
        for cmd, _ in order:
            for _ in range(repeats):  # a repeat meets the first run's outputs
                before = _tree(tmp_path)
                code = main(cmd)
                after = _tree(tmp_path)
                assert code in (0, 2), (cmd, capsys.readouterr().err)
                lost = [f for f, h in before.items() if after.get(f) != h]
                assert lost == [], f"{cmd} replaced {lost} without --overwrite"
                if code == 0:
                    succeeded.add(" ".join(cmd[:2]))
                for p in inputs_and_notes:
                    now = _tree(p) if p.is_dir() else p.read_bytes()
                    assert now == originals[str(p)], f"{cmd} changed the input {p}"
    capsys.readouterr()
    # every command ran somewhere: the refusals are not all there is
    assert succeeded == {" ".join(c[:2]) for c in _commands(inputs, folder)}
    assert [f for f in _tree(tmp_path) if ".partial" in f] == []


def test_overwrite_replaces_earlier_outputs_but_never_an_input(tmp_path, capsys):
    src = tmp_path / "in.png"
    write_image(src, CAM)
    out = tmp_path / "out"
    assert main(["focus", str(src), "-o", str(out)]) == 0
    stamp = (out / "in.focus.json").stat().st_mtime_ns
    assert main(["focus", str(src), "-o", str(out)]) == 2
    assert main(["focus", str(src), "-o", str(out), "--overwrite"]) == 0
    assert (out / "in.focus.json").stat().st_mtime_ns != stamp
    before = src.read_bytes()
    args = ["blur", str(src), "-o", str(src), "--psf", "gauss", "--sigma", "1", "--overwrite"]
    assert main(args) == 2
    assert "would replace the input" in capsys.readouterr().err
    assert src.read_bytes() == before


def test_commands_sharing_a_folder_never_share_a_name(tmp_path):
    src = tmp_path / "in.tif"
    write_image(src, CAM)
    out = tmp_path / "out"
    other = tmp_path / "other.tif"
    write_image(other, CAM[::-1])
    for cmd in (["focus"], ["map"]):
        assert main([*cmd, str(src), "-o", str(out)]) == 0
    fused = str(tmp_path / "fused.tif")
    assert main(["stack", str(src), str(other), "-o", fused, "--maps", str(out), "--quiet"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == len(set(names)) == 6 + 5 + 2 * 2 + 6
    assert {n.split(".")[1] for n in names if n.startswith("in.")} == {"focus", "blur", "stack"}


def test_plan_refuses_case_variants_and_resolves_links(tmp_path):
    a = tmp_path / "a.png"
    a.write_bytes(b"x")
    with pytest.raises(BadInputError, match="planned twice"):
        check_plan([a], [(tmp_path / "R.json", None), (tmp_path / "r.json", None)])
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    assert resolved(loop)  # a symlink loop resolves to a name instead of raising
    (tmp_path / "sub").mkdir()
    with pytest.raises(BadInputError, match="would replace the input"):
        check_plan([a], [(tmp_path / "sub" / ".." / "a.png", None)])
    assert check_plan([a], [(tmp_path / "a.focus.json", a)]) == [tmp_path / "a.focus.json"]


def test_plan_sweeps_a_killed_writers_temporary_files(tmp_path):
    import socket

    host = socket.gethostname().replace(".", "-")
    dead = 2**22 + 11  # above Linux's largest process id: never alive
    stale_file = tmp_path / f".a.{dead}@{host}.x1.partial.tif"
    stale_dir = tmp_path / f".a.blur.zarr.{dead}@{host}.x2.partial"
    live = tmp_path / f".b.{os.getpid()}@{host}.x3.partial.tif"
    stale_file.write_bytes(b"half")
    stale_dir.mkdir()
    live.write_bytes(b"mine")
    check_plan([], [(tmp_path / "new.json", None)])
    assert not stale_file.exists() and not stale_dir.exists() and live.exists()


def test_bad_inputs_are_reported_and_the_others_still_run(tmp_path, capsys):
    good = [tmp_path / "a.png", tmp_path / "b.png"]
    for f in good:
        write_image(f, CAM)
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    args = ["focus", str(good[0]), str(loop), str(fifo), str(good[1]), "-o", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "symlink loop" in err and "not a regular file" in err
    assert (out / "a.focus.json").exists() and (out / "b.focus.json").exists()


def test_memory_error_is_bad_input_with_one_line(tmp_path, capsys, monkeypatch):
    import defocus.focus as F

    src = tmp_path / "in.png"
    write_image(src, CAM)

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(F, "focus_map", exhausted)
    assert main(["focus", str(src), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"defocus: error: {src}: not enough memory to process it"


def test_library_warnings_do_not_reach_the_user(tmp_path, capsys, monkeypatch):
    import warnings

    import defocus.focus as F

    src = tmp_path / "in.png"
    write_image(src, CAM)
    real = F.focus_map

    def noisy(*args, **kwargs):
        warnings.warn("invalid value encountered in divide", RuntimeWarning, stacklevel=1)
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "focus_map", noisy)
    assert main(["focus", str(src), "-o", str(tmp_path / "out")]) == 0
    assert "Warning" not in capsys.readouterr().err


CHILD = """
import os, signal, sys, time
import defocus.io._write as dio
real = dio._write_tiff
def slow(path, *args, **kwargs):
    real(path, *args, **kwargs)
    print("writing", flush=True)
    time.sleep(30)  # the signal arrives here, mid-write
dio._write_tiff = slow
from defocus.cli import main
sys.exit(main({argv!r}))
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_clean_up_like_ctrl_c(tmp_path, sig):
    src = tmp_path / "in.png"
    write_image(src, CAM)
    out = tmp_path / "out"
    script = CHILD.format(argv=["focus", str(src), "-o", str(out)])
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + getattr(signal, sig), err
    assert err.strip() == f"defocus: stopped by {sig}; no partial output was left"
    assert list(out.iterdir()) == []


def _merge(args: tuple[str, int]) -> None:
    from defocus.batch import QC_COLUMNS, write_qc_table

    outdir, worker = args
    for i in range(8):
        row = dict.fromkeys(QC_COLUMNS) | {"input": f"w{worker}-{i}.png", "sha256": str(i)}
        write_qc_table(outdir, [row | {"task": "focus", "status": "done", "focus_score": 1.5}])
        time.sleep(0.001)


def test_concurrent_table_updates_lose_no_row(tmp_path):
    from defocus.batch import read_qc_table

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        pool.map(_merge, [(str(tmp_path), w) for w in range(4)])
    rows = read_qc_table(tmp_path)
    assert sorted(r["input"] for r in rows) == sorted(
        f"w{w}-{i}.png" for w in range(4) for i in range(8)
    )
    assert all(r["focus_score"] == 1.5 for r in rows)


def test_table_keeps_earlier_runs_and_replaces_the_same_file(tmp_path):
    from defocus.batch import QC_COLUMNS, read_qc_table, write_qc_table

    def row(name, digest, score):
        return dict.fromkeys(QC_COLUMNS) | {
            "input": name,
            "sha256": digest,
            "task": "focus",
            "focus_score": score,
            "out_of_focus": score < 1,
        }

    write_qc_table(tmp_path, [row("a.png", "1", 2.0), row("b.png", "2", 0.5)])
    write_qc_table(tmp_path, [row("c.png", "3", 3.0), row("a.png", "1", 2.5)])
    rows = read_qc_table(tmp_path)
    assert [(r["input"], r["focus_score"]) for r in rows] == [
        ("b.png", 0.5),
        ("c.png", 3.0),
        ("a.png", 2.5),
    ]
    assert [r["out_of_focus"] for r in rows] == [True, False, False]
    # a changed file (another hash) is another row: both results are kept
    write_qc_table(tmp_path, [row("a.png", "9", 1.2)])
    assert len(read_qc_table(tmp_path)) == 4
