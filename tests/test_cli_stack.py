"""``defocus stack`` end to end: fused image and depth written, dtype kept, maps, exit codes."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data
from skimage.metrics import peak_signal_noise_ratio as psnr

from defocus import synth
from defocus.cli import main
from defocus.io import read_image, write_image


def _frames(image: np.ndarray, n: int = 3, **kw) -> list[np.ndarray]:
    h = image.shape[0]
    band = np.minimum(np.arange(h) * n // h, n - 1)
    out = []
    for k in range(n):
        smap = (np.where(band[:, None] == k, 0.0, 2.5) * np.ones(image.shape[:2])).astype(
            np.float32
        )
        out.append(synth.blur_varying(image, smap, psf="disk", **kw))
    return out


@pytest.fixture(scope="module")
def rgb_stack(tmp_path_factory) -> tuple[np.ndarray, list[str]]:
    folder = tmp_path_factory.mktemp("rgb")
    sharp = data.astronaut()[::4, ::4]
    paths = []
    for k, f in enumerate(_frames(sharp, channel_axis=-1, dtype=np.uint8)):
        paths.append(str(folder / f"z{k}.png"))
        write_image(paths[-1], f)
    return sharp, paths


@pytest.fixture(autouse=True)
def _bars_on(monkeypatch):
    """Progress bars although stderr is captured (they show only on a terminal otherwise)."""
    monkeypatch.setenv("DEFOCUS_PROGRESS", "1")


def test_no_bar_when_stderr_is_not_a_terminal(tmp_path, rgb_stack, capsys, monkeypatch):
    monkeypatch.delenv("DEFOCUS_PROGRESS")
    _, paths = rgb_stack
    assert main(["stack", *paths, "-o", str(tmp_path / "f.png"), "--no-align"]) == 0
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("DEFOCUS_PROGRESS", "1")
    assert main(["stack", *paths, "-o", str(tmp_path / "g.png"), "--no-align"]) == 0
    assert "fusing" in capsys.readouterr().err


def test_cli_fuses_with_depth_and_maps(tmp_path, rgb_stack, capsys):
    sharp, paths = rgb_stack
    out, depth, maps = tmp_path / "fused.png", tmp_path / "depth.tif", tmp_path / "maps"
    code = main(["stack", *paths, "-o", str(out), "--depth", str(depth), "--maps", str(maps)])
    assert code == 0
    captured = capsys.readouterr()
    assert "fused 3 frames" in captured.out
    assert "3/3" in captured.err or "#" in captured.err  # progress bar on stderr
    fused = read_image(out).data
    assert fused.dtype == np.uint8 and fused.shape == sharp.shape
    assert psnr(sharp, fused) > max(psnr(sharp, read_image(p).data) for p in paths)
    d = read_image(depth).data
    assert d.dtype == np.float32 and d.shape == sharp.shape[:2]
    assert np.median(d[:30]) < np.median(d[-30:])
    for k in range(3):
        assert (maps / f"z{k}.stack.focus.tif").exists()
        assert (maps / f"z{k}.stack.mask.png").exists()
    for name in ("depth.png", "confidence.png", "source.png", "source.tif", "json"):
        assert (maps / f"fused.stack.{name}").exists()


def test_cli_keeps_sixteen_bit(tmp_path):
    sharp = data.camera()[::4, ::4].astype(np.float32) * 257
    paths = []
    for k, f in enumerate(_frames(sharp, dtype=np.uint16)):
        paths.append(str(tmp_path / f"s{k}.tif"))
        write_image(paths[-1], f)
    out = tmp_path / "fused.tif"
    assert main(["stack", *paths, "-o", str(out), "--method", "depthmap", "--quiet"]) == 0
    fused = read_image(out).data
    assert fused.dtype == np.uint16 and fused.max() > 255


def test_cli_exit_2_for_mixed_sizes_and_single_frames(tmp_path, rgb_stack, capsys):
    _, paths = rgb_stack
    small = tmp_path / "small.png"
    write_image(small, read_image(paths[0]).data[:-4])
    out = tmp_path / "f.png"
    assert main(["stack", paths[0], str(small), "-o", str(out)]) == 2
    assert "small.png" in capsys.readouterr().err
    assert main(["stack", paths[0], "-o", str(out)]) == 2
    assert "at least 2 frames" in capsys.readouterr().err
    assert main(["stack", *paths, "-o", paths[0]]) == 2  # would overwrite an input
    assert not out.exists()


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "defocus: " in line]


def test_cli_error_after_progress_starts_on_its_own_line(tmp_path, rgb_stack, capsys):
    _, paths = rgb_stack
    small = tmp_path / "small.png"
    write_image(small, read_image(paths[1]).data[:-4])
    assert main(["stack", paths[0], str(small), paths[2], "-o", str(tmp_path / "f.png")]) == 2
    err = capsys.readouterr().err
    assert "1/" in err  # the bar was drawn before the second frame failed
    (line,) = _error_lines(err)
    assert line.startswith("defocus: error:") and "small.png" in line


@pytest.mark.parametrize(
    ("exc", "code", "start"),
    [
        (RuntimeError("boom"), 1, "defocus: internal error:"),
        (KeyboardInterrupt(), 130, "defocus: interrupted"),
    ],
)
def test_cli_bar_line_ends_on_any_exit(tmp_path, rgb_stack, capsys, monkeypatch, exc, code, start):
    from defocus import stack

    load = stack._load

    def failing_load(frame, index, channel_axis):
        if index == 1:
            raise exc
        return load(frame, index, channel_axis)

    monkeypatch.setattr(stack, "_load", failing_load)
    _, paths = rgb_stack
    assert main(["stack", *paths, "-o", str(tmp_path / "f.png")]) == code
    err = capsys.readouterr().err
    assert "1/" in err
    (line,) = _error_lines(err)
    assert line.startswith(start)
