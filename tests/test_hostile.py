"""The catalogue of bad inputs: every row through the API and the CLI.

Each row builds one hostile input, feeds it to a library function and to a ``defocus``
command, and checks the contracts of DESIGN.md: a clear one-line message (no traceback), exit
code 2 for bad input (0 where the input is valid after all), the input file unchanged, and no
partial or temporary file in the output folder. ``docs/bad_inputs.md`` is the table of these
rows with the messages the CLI really prints; a test keeps it in step. After changing a row,
rewrite the table with ``DEFOCUS_WRITE_DOCS=1 pytest tests/test_hostile.py -k doc``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from PIL import Image
from skimage import data

import defocus
from defocus import BadInputError
from defocus.cli import main
from defocus.io import read_image, write_image

DOC = Path(__file__).resolve().parents[1] / "docs" / "bad_inputs.md"

# small crops keep every row fast; the camera's lower left has detail everywhere
CAM = data.camera()[300:364, 100:164]


def _png_header(width: int, height: int) -> bytes:
    """A PNG that is only a header: signature, IHDR claiming ``width`` x ``height``, IEND."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _tiff_header(width: int, height: int) -> bytes:
    """A little-endian TIFF whose only IFD claims ``width`` x ``height`` 8-bit pixels."""
    tags = [  # (tag, type, count, value); type 3 = SHORT, 4 = LONG
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 8),  # strip offset: right after the header, where no data is
        (277, 3, 1, 1),
        (278, 4, 1, height),
        (279, 4, 1, width * height),
    ]
    ifd = struct.pack("<H", len(tags))
    for tag, kind, count, value in tags:
        ifd += struct.pack("<HHI", tag, kind, count)
        ifd += struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value & 0xFFFFFFFF)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)


def _truncated(tmp: Path, suffix: str) -> Path:
    f = tmp / f"cut{suffix}"
    write_image(f, data.camera())
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return f


def _written(name: str, array: np.ndarray, **kwargs) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        f = tmp / name
        write_image(f, array, **kwargs)
        return f

    return make


def _raw(name: str, content: bytes) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        f = tmp / name
        f.write_bytes(content)
        return f

    return make


def _nonfinite(value: float) -> np.ndarray:
    img = CAM.astype(np.float32)
    img[10, 20] = value
    return img


def _ome_5d(tmp: Path) -> Path:
    f = tmp / "tczyx.ome.tif"
    stack = np.zeros((2, 2, 3, 16, 16), np.uint8)
    tifffile.imwrite(f, stack, ome=True, metadata={"axes": "TCZYX"})
    return f


def _palette(tmp: Path) -> Path:
    f = tmp / "palette.png"
    Image.fromarray(CAM).convert("P").save(f)
    return f


def _alpha(tmp: Path) -> Path:
    f = tmp / "rgba.png"
    iio.imwrite(f, np.dstack([data.astronaut()[:64, :64], np.full((64, 64), 40, np.uint8)]))
    return f


def _grey_alpha(tmp: Path) -> Path:
    f = tmp / "grey_alpha.png"
    Image.fromarray(np.dstack([CAM, np.full_like(CAM, 40)]), "LA").save(f)
    return f


def _big_endian(tmp: Path) -> Path:
    f = tmp / "big_endian.tif"
    tifffile.imwrite(f, CAM.astype(">u2") * 250, byteorder=">")
    return f


def _animated(tmp: Path) -> Path:
    f = tmp / "animated.gif"
    iio.imwrite(f, np.stack([CAM, CAM[::-1], CAM[:, ::-1]]))
    return f


def _tiff_loop(tmp: Path) -> Path:
    # found by scripts/fuzz_readers.py: 8 bytes inserted into the first IFD make its chain
    # loop back into itself, which tifffile's lazy page iteration followed forever
    f = tmp / "loop.tif"
    write_image(f, CAM.astype(np.uint16) * 250, pixel_size="0.1um")
    content = f.read_bytes()
    f.write_bytes(content[:26] + b'U\xfag\x0c\x1f\xa5\x1c"' + content[26:])
    return f


def _directory(tmp: Path) -> Path:
    d = tmp / "folder.png"
    d.mkdir()
    return d


def _non_utf8(tmp: Path) -> Path:
    # Linux file names are bytes; Python keeps undecodable ones as surrogate escapes
    name = os.fsdecode(b"caf\xe9-\xff.png")
    f = tmp / name
    write_image(f, CAM)
    return f


def _pair(tmp: Path, blurry: np.ndarray, *, colour: bool = False) -> list[Path]:
    a, b = tmp / "sharp.png", tmp / "blurry.png"
    write_image(
        a, data.astronaut()[:64, :64] if colour else CAM, channel_axis=-1 if colour else None
    )
    write_image(b, blurry)
    return [a, b]


def _frames(*arrays: np.ndarray) -> Callable[[Path], list[Path]]:
    def make(tmp: Path) -> list[Path]:
        files = []
        for i, a in enumerate(arrays):
            files.append(tmp / f"frame{i}.png")
            write_image(files[-1], a, channel_axis=-1 if a.ndim == 3 else None)
        return files

    return make


@dataclass
class Row:
    """One hostile input: how to build it, what the API and CLI must say about it."""

    id: str
    what: str  # the input, as the table shows it
    make: Callable[[Path], Path | list[Path]]
    api: Callable[[list[Path]], object]
    cli: Callable[[list[Path], Path], list[str]]
    code: int = 2
    match: str = ""  # regex the API's and the CLI's message must contain (exit 2 rows)
    options: list[str] = field(default_factory=list)


def read(files):
    return read_image(files[0])


def focus_api(files):
    img = read_image(files[0])
    return defocus.focus_map(img.data, channel_axis=img.channel_axis)


def map_api(files):
    img = read_image(files[0])
    return defocus.blur_map(img.data, channel_axis=img.channel_axis)


def focus_cli(files, out):
    return ["focus", *map(str, files), "-o", str(out)]


def map_cli(files, out):
    return ["map", *map(str, files), "-o", str(out)]


def blur_cli(files, out):
    # the lightest command that reads, processes and writes: valid inputs must get through
    return ["blur", str(files[0]), "-o", str(out / "blurred.tif"), "--psf", "gauss", "--sigma", "1"]


def estimate_api(files):
    a, b = (read_image(f) for f in files)
    return defocus.estimate_kernel(a.data, b.data, channel_axis=a.channel_axis)


def estimate_cli(files, out):
    return ["psf", "estimate", *map(str, files), "-o", str(out)]


def fuse_api(files):
    return defocus.fuse([str(f) for f in files])


def stack_cli(files, out):
    return ["stack", *map(str, files), "-o", str(out / "fused.png"), "--quiet"]


ROWS = [
    Row(
        "missing",
        "a path that does not exist",
        lambda t: t / "nope.png",
        read,
        focus_cli,
        match="no such file",
    ),
    Row("directory", "a directory", _directory, read, focus_cli, match="is a directory"),
    Row("empty", "an empty file", _raw("empty.png", b""), read, focus_cli, match="file is empty"),
    Row(
        "truncated_png",
        "PNG cut in half",
        lambda t: _truncated(t, ".png"),
        read,
        focus_cli,
        match="truncated",
    ),
    Row(
        "truncated_jpeg",
        "JPEG cut in half",
        lambda t: _truncated(t, ".jpg"),
        read,
        focus_cli,
        match="truncated",
    ),
    Row(
        "truncated_tiff",
        "TIFF cut in half",
        lambda t: _truncated(t, ".tif"),
        read,
        focus_cli,
        match="not a readable TIFF",
    ),
    Row(
        "tiff_ifd_loop",
        "TIFF whose IFD chain loops (a fuzzing find)",
        _tiff_loop,
        read,
        focus_cli,
        match="zero size|not a readable TIFF",
    ),
    Row(
        "not_an_image",
        "text saved as .png",
        _raw("notes.png", b"not an image\n" * 20),
        read,
        focus_cli,
        match="not a readable image",
    ),
    Row(
        "wrong_extension",
        "PNG named .tif (the content decides)",
        lambda t: _raw("png.tif", _written("x.png", CAM)(t).read_bytes())(t),
        focus_api,
        blur_cli,
        code=0,
    ),
    Row(
        "zero_tiff",
        "0×0 TIFF",
        lambda t: _raw("zero.tif", _tiff_header(0, 0))(t),
        read,
        focus_cli,
        match="zero size|not a readable",
    ),
    Row(
        "zero_png",
        "0×0 PNG header",
        _raw("zero.png", _png_header(0, 0)),
        read,
        focus_cli,
        match="not a readable image",
    ),
    Row(
        "one_pixel",
        "1×1 image",
        _written("one.png", np.full((1, 1), 9, np.uint8)),
        map_api,
        map_cli,
        match="1x1 pixels; at least 16x16",
    ),
    Row(
        "three_pixels",
        "3×3 image",
        _written("three.png", np.arange(9, dtype=np.uint8).reshape(3, 3)),
        map_api,
        map_cli,
        match="3x3 pixels; at least 16x16",
    ),
    Row(
        "bomb_png",
        "PNG header claiming 100k × 100k",
        _raw("bomb.png", _png_header(10**5, 10**5)),
        read,
        focus_cli,
        match="10,000 MP, above the 268 MP limit.*--max-pixels.*--chunks",
    ),
    Row(
        "bomb_tiff",
        "TIFF header claiming 100k × 100k",
        _raw("bomb.tif", _tiff_header(10**5, 10**5)),
        read,
        focus_cli,
        match="10,000 MP, above the 268 MP limit.*--max-pixels.*--chunks",
    ),
    Row(
        "bomb_overridden",
        "the same PNG with `--max-pixels 10000000000` (guard lifted; no data)",
        _raw("bomb.png", _png_header(10**5, 10**5)),
        lambda f: read_image(f[0], max_pixels=10**10),
        focus_cli,
        options=["--max-pixels", "10000000000"],
        match="cannot decode image",
    ),
    Row(
        "over_max_pixels",
        "genuine 64×64 image with `--max-pixels 1000`",
        _written("big.png", CAM),
        lambda f: read_image(f[0], max_pixels=1000),
        focus_cli,
        options=["--max-pixels", "1000"],
        match="above the 0.001 MP limit.*--max-pixels",
    ),
    Row(
        "max_pixels_raised",
        "the same image with `--max-pixels 4096` (its size)",
        _written("big.png", CAM),
        lambda f: read_image(f[0], max_pixels=4096),
        blur_cli,
        options=["--max-pixels", "4096"],
        code=0,
    ),
    Row(
        "nan",
        "float TIFF with a NaN",
        _written("nan.tif", _nonfinite(np.nan)),
        read,
        focus_cli,
        match="NaN or infinite",
    ),
    Row(
        "inf",
        "float TIFF with +Inf",
        _written("inf.tif", _nonfinite(np.inf)),
        read,
        focus_cli,
        match="NaN or infinite",
    ),
    Row(
        "constant",
        "constant image (`defocus map`)",
        _written("flat.png", np.full((64, 64), 77, np.uint8)),
        map_api,
        map_cli,
        match="constant \\(77\\); it holds no detail",
    ),
    Row(
        "constant_focus",
        "constant image (`defocus focus`)",
        _written("flat.png", np.full((64, 64), 77, np.uint8)),
        map_api,
        focus_cli,
        match="constant \\(77\\); it holds no detail",
    ),
    Row(
        "saturated",
        "fully saturated 16-bit image",
        _written("white.tif", np.full((64, 64), 65535, np.uint16)),
        map_api,
        map_cli,
        match="fully saturated \\(every pixel 65535\\)",
    ),
    Row("ome_5d", "5-D OME-TIFF (TCZYX)", _ome_5d, read, focus_cli, match="is 5-D"),
    Row("palette_png", "palette PNG", _palette, focus_api, blur_cli, code=0),
    Row("alpha_png", "RGBA PNG", _alpha, focus_api, blur_cli, code=0),
    Row("grey_alpha_png", "grey + alpha PNG", _grey_alpha, map_api, blur_cli, code=0),
    Row("big_endian_tiff", "big-endian 16-bit TIFF", _big_endian, map_api, blur_cli, code=0),
    Row(
        "animated_gif",
        "animated GIF (3 frames)",
        _animated,
        read,
        focus_cli,
        match="holds 3 frames; choose one with .*--index",
    ),
    Row(
        "animated_gif_index",
        "animated GIF with `--index 1`",
        _animated,
        lambda f: read_image(f[0], index=1),
        blur_cli,
        options=["--index", "1"],
        code=0,
    ),
    Row(
        "pair_shape",
        "kernel pair of different sizes",
        lambda t: _pair(t, CAM[:50, :40]),
        estimate_api,
        estimate_cli,
        match="differ in shape: \\(64, 64\\) vs \\(50, 40\\)",
    ),
    Row(
        "pair_colour",
        "kernel pair: colour and greyscale",
        lambda t: _pair(t, CAM, colour=True),
        estimate_api,
        estimate_cli,
        match="colour|channel",
    ),
    Row(
        "pair_constant",
        "kernel pair with a constant blurred image",
        lambda t: _pair(t, np.full((64, 64), 9, np.uint8)),
        estimate_api,
        estimate_cli,
        match="blurry is constant",
    ),
    Row(
        "stack_one",
        "focus stack of one frame",
        _frames(CAM),
        fuse_api,
        stack_cli,
        match="at least 2 frames, got 1",
    ),
    Row(
        "stack_sizes",
        "focus stack with mixed sizes",
        _frames(CAM, CAM[:50, :50]),
        fuse_api,
        stack_cli,
        match="shape \\(50, 50\\) differs from the first frame's \\(64, 64\\)",
    ),
    Row(
        "stack_colour",
        "focus stack mixing colour and greyscale",
        _frames(CAM, data.astronaut()[:64, :64]),
        fuse_api,
        stack_cli,
        match="differs from the first frame's",
    ),
]


def _digest(paths: list[Path]) -> dict[Path, str | None]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None for p in paths}


def _one_line(message: str) -> None:
    assert message and "\n" not in message.strip(), message
    assert "Traceback" not in message, message


# CLI messages seen by the row tests, for the catalogue table: id -> (exit code, message)
SEEN: dict[str, tuple[int, str]] = {}


def run_row(row: Row, tmp: Path, capsys) -> tuple[int, str]:
    """Run one row through the API and the CLI, checking every contract; return the CLI's."""
    made = row.make(tmp)
    files = made if isinstance(made, list) else [made]
    before = _digest(files)
    if row.code == 0:
        assert row.api(files) is not None
    else:
        with pytest.raises(BadInputError) as info:
            row.api(files)
        _one_line(str(info.value))
        assert re.search(row.match, str(info.value)), str(info.value)

    out = tmp / "out"
    capsys.readouterr()
    code = main([*row.cli(files, out), *row.options])
    err = capsys.readouterr().err
    assert code == row.code, err
    assert _digest(files) == before, "an input was modified"
    written = sorted(p.name for p in out.rglob("*")) if out.exists() else []
    assert not [n for n in written if ".partial" in n or n.startswith(".")], written
    if code == 0:
        assert written, "a valid input gave no output"
        message = "works"
    else:
        assert written == [], f"bad input left output files: {written}"
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("defocus: error: "), err
        _one_line(lines[0])
        assert re.search(row.match, lines[0]), lines[0]
        message = lines[0].removeprefix("defocus: error: ").replace(str(tmp) + os.sep, "")
    return code, message


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_catalogue_row(row, tmp_path, capsys):
    SEEN[row.id] = run_row(row, tmp_path, capsys)


def test_non_utf8_file_name_through_api_and_cli(tmp_path):
    f = _non_utf8(tmp_path)
    raw = os.fsencode(f)
    assert read_image(raw).data.shape == CAM.shape  # bytes path
    assert read_image(f).data.shape == CAM.shape  # surrogate-escaped str
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "defocus", "focus", raw, b"-o", os.fsencode(out)]
    done = subprocess.run(cmd, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    names = os.listdir(os.fsencode(out))
    assert b"caf\xe9-\xff.focus.tif" in names and not [n for n in names if b".partial" in n]


def test_non_utf8_missing_file_is_one_clear_line(tmp_path, capsys):
    # what Python makes of such a name in sys.argv: a surrogate-escaped str
    gone = os.fsdecode(os.fsencode(tmp_path) + b"/gone-\xff.png")
    with pytest.raises(BadInputError, match="no such file"):
        read_image(gone)
    assert main(["focus", gone, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    _one_line(err)
    assert err.startswith("defocus: error: ") and "no such file" in err
    assert not (tmp_path / "out").exists()


def _refuse(exc: OSError):
    def write(*args, **kwargs):
        raise exc

    return write


FAULTS = {
    "readonly_output": (errno.EACCES, "read-only output folder (simulated `EACCES`)"),
    "full_output": (errno.ENOSPC, "full disk (simulated: the write raises `ENOSPC` half-way)"),
}


def run_fault(key: str, tmp: Path, capsys, monkeypatch) -> tuple[int, str]:
    """Write ``defocus focus`` output while the file system refuses it half-way."""
    import defocus.io as dio

    err_no = FAULTS[key][0]
    src = _written("in.png", CAM)(tmp)
    before = _digest([src])
    real = dio._write_tiff

    def half_then_fail(path, *args, **kwargs):
        real(path, *args, **kwargs)
        with open(path, "r+b") as fh:  # a half-written file, as a full disk leaves it
            fh.truncate(path.stat().st_size // 2)
        raise OSError(err_no, os.strerror(err_no))

    capsys.readouterr()
    with monkeypatch.context() as m:
        m.setattr(dio, "_write_tiff", half_then_fail)
        code = main(["focus", str(src), "-o", str(tmp / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    _one_line(err)
    assert err.startswith("defocus: error: ") and f"cannot write {tmp / 'out'}" in err, err
    assert os.strerror(err_no) in err
    assert list((tmp / "out").iterdir()) == []
    assert _digest([src]) == before
    return code, err.removeprefix("defocus: error: ").replace(str(tmp) + os.sep, "")


@pytest.mark.parametrize("key", FAULTS)
def test_unwritable_output_is_one_clear_line(key, tmp_path, capsys, monkeypatch):
    """Simulated so that it runs as any user; test_faults.py uses a real read-only folder too."""
    SEEN[key] = run_fault(key, tmp_path, capsys, monkeypatch)


def test_max_pixels_guard_is_exposed_on_every_reading_command():
    from defocus.cli import build_parser

    parser = build_parser()
    for argv in (
        ["focus", "x"],
        ["map", "x", "-o", "o"],
        ["blur", "x", "-o", "o"],
        ["deblur", "x", "-o", "o"],
        ["psf", "estimate", "a", "b", "-o", "o"],
        ["psf", "identify", "x"],
        ["batch", "x", "-o", "o"],
    ):
        args = parser.parse_args([*argv, "--max-pixels", "123"])
        assert args.max_pixels == 123, argv


def test_memory_stays_bounded_for_one_plane_of_a_long_stack(tmp_path, monkeypatch):
    """Reading one plane decodes one page, so the guard counts one plane, not the stack."""
    f = tmp_path / "z.tif"
    stack = np.stack([CAM + i for i in range(40)])
    tifffile.imwrite(f, stack, photometric="minisblack")
    one = 64 * 64
    assert np.array_equal(read_image(f, index=7, max_pixels=one).data, stack[7])
    # an ImageJ hyperstack stored as one block cannot be read a plane at a time: then the
    # whole stack counts, and the message says how to get past it
    g = tmp_path / "hyper.tif"
    tifffile.imwrite(g, stack, imagej=True, metadata={"axes": "ZYX"})
    try:
        img = read_image(g, index=7, max_pixels=one)
    except BadInputError as exc:
        assert "x40 planes" in str(exc) and "--max-pixels" in str(exc)
    else:
        assert np.array_equal(img.data, stack[7])


def _table(seen: dict[str, tuple[int, str]]) -> str:
    whats = {r.id: r.what for r in ROWS}
    whats |= {key: what for key, (_, what) in FAULTS.items()}
    lines = [
        "# Bad inputs and what defocus says about them",
        "",
        "Every row is a test in `tests/test_hostile.py`, run through the Python API and the",
        "`defocus` command line. For each: the message is one line (no traceback), the exit code",
        "is 2 for bad input and 0 where the input is valid after all, the input file is byte for",
        "byte unchanged, and the output folder holds no partial or temporary file. The messages",
        "below are what the command prints after `defocus: error:`. This file is checked by the",
        "tests; rewrite it with `DEFOCUS_WRITE_DOCS=1 pytest tests/test_hostile.py -k doc`.",
        "",
        "| input | exit | message |",
        "|---|---|---|",
    ]
    for key, (code, message) in seen.items():
        text = message.replace("|", "\\|")
        lines.append(f"| {whats[key]} | {code} | {'*(works)*' if code == 0 else text} |")
    return "\n".join(lines) + "\n"


def test_doc_catalogue_matches_the_tests(tmp_path_factory, capsys, monkeypatch):
    seen = {}
    for row in ROWS:
        if row.id not in SEEN:  # run alone (-k doc): compute the rows not yet seen
            SEEN[row.id] = run_row(row, tmp_path_factory.mktemp(row.id), capsys)
        seen[row.id] = SEEN[row.id]
    for key in FAULTS:
        if key not in SEEN:
            SEEN[key] = run_fault(key, tmp_path_factory.mktemp(key), capsys, monkeypatch)
        seen[key] = SEEN[key]
    table = _table(seen)
    if os.environ.get("DEFOCUS_WRITE_DOCS"):
        DOC.write_text(table, encoding="utf-8")
    assert DOC.read_text(encoding="utf-8") == table, "docs/bad_inputs.md is stale"


def test_alpha_does_not_enter_the_analysis(tmp_path):
    for make, grey in ((_grey_alpha, CAM), (_alpha, None)):
        img = read_image(make(tmp_path))
        if grey is not None:
            np.testing.assert_array_equal(img.luminance, grey.astype(np.float32))
        opaque = np.moveaxis(img.data, img.channel_axis, -1).copy()
        opaque[..., -1] = 255
        np.testing.assert_array_equal(
            defocus.focus_map(img.data, channel_axis=img.channel_axis),
            defocus.focus_map(opaque, channel_axis=-1),
        )
