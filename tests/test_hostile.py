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
    needs: str = ""  # an optional module the row needs (the dask extra)


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


# --------------------------------------------------------------------------------------------
# Outputs, options, resource bounds and unusual files (issue: never lose a user's data)
# --------------------------------------------------------------------------------------------


def _named(name: str, array: np.ndarray = CAM) -> Callable[[Path], Path]:
    return _written(name, array)


def _same_stem_in_two_folders(tmp: Path) -> list[Path]:
    for d in ("d1", "d2"):
        (tmp / d).mkdir()
    return [_written("d1/x.png", CAM)(tmp), _written("d2/x.png", CAM[::-1])(tmp)]


def _same_stem_two_formats(tmp: Path) -> list[Path]:
    return [_written("x.png", CAM)(tmp), _written("x.tif", CAM)(tmp)]


def _earlier_focus(tmp: Path) -> Path:
    """An image and the outputs an earlier ``defocus focus`` wrote for it."""
    f = _written("in.png", CAM)(tmp)
    assert main(["focus", str(f), "-o", str(tmp / "out")]) == 0
    return f


def _linked(kind: str) -> Callable[[Path], list[Path]]:
    def make(tmp: Path) -> list[Path]:
        f = _written("in.png", CAM)(tmp)
        link = tmp / f"{kind}.png"
        if kind == "symlink":
            link.symlink_to(f)
        else:
            os.link(f, link)
        return [f, link]

    return make


def _zarr(tmp: Path) -> Path:
    import zarr

    store = tmp / "big.zarr"
    z = zarr.open_array(store, mode="w", shape=(96, 96), chunks=(48, 48), dtype="uint8")
    z[:] = data.camera()[:96, :96]
    return store


def _empty_zarr(tmp: Path) -> Path:
    import zarr

    store = tmp / "void.zarr"
    zarr.open_array(store, mode="w", shape=(2**20, 2**20), chunks=(1024, 1024), dtype="uint8")
    return store


def _fei(value: str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        text = f"[Scan]\r\nPixelWidth={value}\r\nPixelHeight={value}\r\n"
        f = tmp / "fei.tif"
        tifffile.imwrite(f, CAM, extratags=[(34682, "s", 0, text, True)])
        return f

    return make


def _mixed_pages(tmp: Path) -> Path:
    f = tmp / "pages.tif"
    with tifffile.TiffWriter(f) as tw:
        tw.write(CAM)
        tw.write(data.camera()[:48, :80])
    return f


def _symlink_loop(tmp: Path) -> Path:
    a, b = tmp / "loop_a.png", tmp / "loop_b.png"
    a.symlink_to(b)
    b.symlink_to(a)
    return a


def _fifo(tmp: Path) -> Path:
    f = tmp / "pipe.png"
    os.mkfifo(f)
    return f


def _broken_link(tmp: Path) -> Path:
    f = tmp / "gone.png"
    f.symlink_to(tmp / "never-there.png")
    return f


def _big_kernel(tmp: Path) -> list[Path]:
    return [_written("in.png", CAM)(tmp), _written("k.tif", np.ones((99, 99), np.float32))(tmp)]


def _huge_sigma_map(tmp: Path) -> list[Path]:
    return [
        _written("in.png", CAM)(tmp),
        _written("sigma.tif", np.full(CAM.shape, 1e6, np.float32))(tmp),
    ]


def _other_batch_row(tmp: Path) -> list[Path]:
    """A batch folder holding the row of another file that has the same name."""
    from defocus.io import write_json

    (tmp / "a").mkdir()
    (tmp / "out").mkdir()
    f = _written("a/x.png", CAM)(tmp)
    write_json(tmp / "out" / "x.qc.focus.json", {"input": str(tmp / "b" / "x.png")})
    return [f]


def plan_api(outputs: Callable[[list[Path]], list[Path]], **kw) -> Callable[[list[Path]], None]:
    """The planner as the commands call it: these inputs, these outputs."""
    from defocus.cli._outputs import check_plan

    return lambda files: check_plan(files, [(o, None) for o in outputs(files)], **kw)


def blur_to(target: Callable[[list[Path], Path], Path], *extra: str):
    def cli(files, out):
        dest = str(target(files, out))
        return ["blur", str(files[0]), "-o", dest, "--psf", "gauss", "--sigma", "1", *extra]

    return cli


def tiled_map_cli(files, out):
    return ["map", str(files[0]), "-o", str(out), "--chunks", "2048"]


def scale_api(files):
    from defocus.cli._common import check_scale

    return check_scale(1e6, read_image(files[0]).luminance.shape, files[0])


def option_api(value: str, **bounds):
    """An option refused by its parser type, the same check the CLI makes before any work."""
    import argparse

    from defocus.cli._common import number

    def api(files):
        try:
            number(**bounds)(value)
        except argparse.ArgumentTypeError as exc:
            raise BadInputError(str(exc)) from None

    return api


def kernel_api(files):
    from defocus.cli._common import check_kernel

    kernel = defocus.psf.render("disk", radius=100)
    return check_kernel(kernel.shape, read_image(files[0]).luminance.shape, "the disk kernel")


def sigma_map_api(files):
    from defocus.cli._common import check_sigma_map

    smap = read_image(files[1]).data
    return check_sigma_map(smap, read_image(files[0]).luminance.shape, files[1])


def lazy_api(files, **kw):
    from defocus import io

    return io.open_image(files[0], chunks=2048, **kw)


def batch_api(files):
    from defocus.batch import run_batch

    return run_batch(files, files[0].parents[1] / "out")


ROWS += [
    Row(
        "map_into_input_folder",
        "`defocus map photo.png -o .` (the input's own folder)",
        _named("photo.png"),
        plan_api(lambda f: [f[0].parent / "photo.blur.png"]),
        lambda f, out: ["map", str(f[0]), "-o", str(f[0].parent)],
        code=0,
    ),
    Row(
        "map_output_is_input_file",
        "`-o` pointing at the input file itself",
        _named("photo.png"),
        plan_api(lambda f: [f[0] / "photo.blur.png"]),
        lambda f, out: ["map", str(f[0]), "-o", str(f[0])],
        match="is a file, not a folder",
    ),
    Row(
        "same_stem_two_folders",
        "`defocus focus d1/x.png d2/x.png -o out` (same name, two folders)",
        _same_stem_in_two_folders,
        lambda f: __import__("defocus.cli._outputs").cli._outputs.check_plan(
            f, [(Path("out/x.focus.tif"), f[0]), (Path("out/x.focus.tif"), f[1])]
        ),
        focus_cli,
        match="d1/x.png and .*d2/x.png would both write",
    ),
    Row(
        "same_stem_two_formats",
        "`defocus focus x.png x.tif` (same stem)",
        _same_stem_two_formats,
        lambda f: __import__("defocus.cli._outputs").cli._outputs.check_plan(
            f, [(Path("out/x.focus.tif"), f[0]), (Path("out/x.focus.tif"), f[1])]
        ),
        focus_cli,
        match="x.png and .*x.tif would both write",
    ),
    Row(
        "earlier_output",
        "`defocus focus` again into a folder holding its earlier outputs",
        _earlier_focus,
        plan_api(lambda f: [f[0].parent / "out" / "in.focus.tif"]),
        focus_cli,
        match="already exists .*--overwrite",
    ),
    Row(
        "earlier_output_overwrite",
        "the same with `--overwrite`",
        _earlier_focus,
        plan_api(lambda f: [f[0].parent / "out" / "in.focus.tif"], overwrite=True),
        focus_cli,
        options=["--overwrite"],
        code=0,
    ),
    Row(
        "blur_onto_input",
        "`defocus blur in.png -o in.png`",
        _named("in.png"),
        plan_api(lambda f: [f[0]]),
        blur_to(lambda f, out: f[0]),
        match="would replace the input",
    ),
    Row(
        "blur_onto_input_dotdot",
        "`-o` the input spelt through `sub/..`",
        _named("in.png"),
        plan_api(lambda f: [f[0].parent / "sub" / ".." / "in.png"]),
        blur_to(lambda f, out: f[0].parent / "sub" / ".." / "in.png"),
        match="would replace the input",
    ),
    Row(
        "blur_onto_symlink",
        "`-o` a symlink to the input",
        _linked("symlink"),
        plan_api(lambda f: [f[1]]),
        blur_to(lambda f, out: f[1]),
        match="would replace the input",
    ),
    Row(
        "blur_onto_hard_link",
        "`-o` a hard link to the input",
        _linked("hardlink"),
        plan_api(lambda f: [f[1]]),
        blur_to(lambda f, out: f[1]),
        match="would replace the input",
    ),
    Row(
        "deblur_onto_input",
        "`defocus deblur in.png -o in.png`",
        _named("in.png"),
        plan_api(lambda f: [f[0]]),
        lambda f, out: ["deblur", str(f[0]), "-o", str(f[0]), "--psf", "gauss", "--sigma", "1"],
        match="would replace the input",
    ),
    Row(
        "estimate_output_is_input",
        "`defocus psf estimate` with `-o` the sharp image",
        lambda t: _pair(t, CAM),
        plan_api(lambda f: [f[0] / "blurry.kernel.tif"]),
        lambda f, out: ["psf", "estimate", str(f[0]), str(f[1]), "-o", str(f[0])],
        match="is a file, not a folder",
    ),
    Row(
        "stack_onto_frame",
        "`defocus stack` with `-o` one of the frames",
        _frames(CAM, CAM[::-1]),
        plan_api(lambda f: [f[1]]),
        lambda f, out: ["stack", *map(str, f), "-o", str(f[1]), "--quiet"],
        match="would replace the input",
    ),
    Row(
        "stack_depth_is_output",
        "`defocus stack -o f.tif --depth f.tif`",
        _frames(CAM, CAM[::-1]),
        plan_api(lambda f: [f[0].parent / "f.tif", f[0].parent / "f.tif"]),
        lambda f, out: [
            "stack",
            *map(str, f),
            "-o",
            str(out / "f.tif"),
            "--depth",
            str(out / "f.tif"),
        ],
        match="planned twice",
    ),
    Row(
        "report_onto_input",
        "`defocus report` with `-o` the input (a PNG named .html)",
        lambda t: _raw("page.html", _written("x.png", CAM)(t).read_bytes())(t),
        plan_api(lambda f: [f[0]]),
        lambda f, out: ["report", str(f[0]), "-o", str(f[0])],
        match="would replace the input",
    ),
    Row(
        "render_over_earlier",
        "`defocus psf render -o k.tif` where k.tif exists",
        _written("k.tif", np.ones((5, 5), np.float32)),
        lambda f: __import__("defocus.cli._outputs").cli._outputs.check_plan([], [(f[0], None)]),
        lambda f, out: ["psf", "render", "gauss", "--sigma", "1", "-o", str(f[0])],
        match="already exists .*--overwrite",
    ),
    Row(
        "tiled_map_onto_input_store",
        "tiled `defocus map big.zarr -o big.zarr` (the input store)",
        _zarr,
        plan_api(lambda f: [f[0]]),
        lambda f, out: ["map", str(f[0]), "-o", str(f[0]), "--chunks", "64"],
        match="would replace the input",
        needs="zarr",
    ),
    Row(
        "tiled_map_inside_input_store",
        "tiled `defocus map big.zarr -o big.zarr/out.zarr`",
        _zarr,
        plan_api(lambda f: [f[0] / "out.zarr"]),
        lambda f, out: ["map", str(f[0]), "-o", str(f[0] / "out.zarr"), "--chunks", "64"],
        match="lies inside the (input|Zarr store)",
        needs="zarr",
    ),
    Row(
        "batch_other_file_same_name",
        "`defocus batch a/x.png` into a folder holding b/x.png's row",
        _other_batch_row,
        batch_api,
        lambda f, out: ["batch", str(f[0]), "-o", str(out), "--no-progress"],
        match="holds the results of .*b/x.png",
        needs="distributed",
    ),
    Row(
        "bad_background",
        "`defocus focus --background notacolour`",
        _named("in.png"),
        lambda f: defocus.viz.mask_view(CAM, CAM > 9, background="notacolour"),
        focus_cli,
        options=["--background", "notacolour"],
        match="unknown background colour",
    ),
    Row(
        "huge_scale",
        "`defocus focus --scale 1e6`",
        _named("in.png"),
        scale_api,
        focus_cli,
        options=["--scale", "1e6"],
        match="--scale|too large",
    ),
    Row(
        "zero_tile",
        "`defocus focus --tile 0`",
        _named("in.png"),
        option_api("0", low=2, high=2**16, integer=True),
        focus_cli,
        options=["--tile", "0"],
        match="must be a whole number in \\[2, 65536\\]",
    ),
    Row(
        "tiny_pixel_size",
        "`--pixel-size 1e-12nm`",
        _named("in.png"),
        lambda f: read_image(f[0], pixel_size="1e-12nm"),
        focus_cli,
        options=["--pixel-size", "1e-12nm"],
        match="outside 1 fm..1 km",
    ),
    Row(
        "too_many_workers",
        "`defocus batch --workers 10000`",
        _named("in.png"),
        option_api("10000", low=1, high=4 * (os.cpu_count() or 1), integer=True),
        lambda f, out: ["batch", str(f[0]), "-o", str(out), "--workers", "10000"],
        match="--workers|must be a whole number",
    ),
    Row(
        "scheduler_not_a_url",
        "`defocus batch --scheduler notaurl`",
        _named("in.png"),
        lambda f: __import__("defocus.batch").batch.start_client(scheduler="notaurl"),
        lambda f, out: ["batch", str(f[0]), "-o", str(out), "--scheduler", "notaurl"],
        match="scheduler",
        needs="distributed",
    ),
    Row(
        "too_many_iterations",
        "`defocus deblur --iterations 100000000`",
        _named("in.png"),
        option_api("100000000", low=1, high=5000, integer=True),
        lambda f, out: [
            "deblur",
            str(f[0]),
            "-o",
            str(out / "d.tif"),
            "--psf",
            "gauss",
            "--sigma",
            "1",
            "--iterations",
            "100000000",
        ],
        match="must be a whole number in \\[1, 5000\\]",
    ),
    Row(
        "unsupported_output_format",
        "`defocus blur -o out.bmp`",
        _named("in.png"),
        lambda f: write_image(f[0].parent / "out.bmp", CAM),
        blur_to(lambda f, out: out / "b.bmp"),
        match="unsupported output format",
    ),
    Row(
        "blur_radius_1e9",
        "`defocus blur --psf disk --radius 1e9`",
        _named("in.png"),
        lambda f: defocus.psf.render("disk", radius=1e9),
        lambda f, out: [
            "blur",
            str(f[0]),
            "-o",
            str(out / "b.tif"),
            "--psf",
            "disk",
            "--radius",
            "1e9",
        ],
        match="beyond the kernel limit of 4097 px",
    ),
    Row(
        "deblur_sigma_1e9",
        "`defocus deblur --psf gauss --sigma 1e9`",
        _named("in.png"),
        lambda f: defocus.psf.render("gauss", sigma=1e9),
        lambda f, out: [
            "deblur",
            str(f[0]),
            "-o",
            str(out / "d.tif"),
            "--psf",
            "gauss",
            "--sigma",
            "1e9",
        ],
        match="beyond the kernel limit",
    ),
    Row(
        "render_radius_1e9",
        "`defocus psf render disk --radius 1e9`",
        _named("in.png"),
        lambda f: defocus.psf.render("disk", radius=1e9),
        lambda f, out: ["psf", "render", "disk", "--radius", "1e9", "-o", str(out / "k.tif")],
        match="beyond the kernel limit",
    ),
    Row(
        "render_shape_huge",
        "`defocus psf render gauss --shape 100000`",
        _named("in.png"),
        lambda f: defocus.psf.render("gauss", sigma=1, shape=100000),
        lambda f, out: [
            "psf",
            "render",
            "gauss",
            "--sigma",
            "1",
            "--shape",
            "100000",
            "-o",
            str(out / "k.tif"),
        ],
        match="4097",
    ),
    Row(
        "kernel_larger_than_image",
        "`defocus blur --psf disk --radius 100` on a 64×64 image",
        _named("in.png"),
        kernel_api,
        lambda f, out: [
            "blur",
            str(f[0]),
            "-o",
            str(out / "b.tif"),
            "--psf",
            "disk",
            "--radius",
            "100",
        ],
        match="larger than the 64x64 image",
    ),
    Row(
        "kernel_file_larger_than_image",
        "`defocus blur --kernel` with a 99×99 kernel on a 64×64 image",
        _big_kernel,
        lambda f: defocus.cli._common.check_kernel((99, 99), CAM.shape, f"{f[1]}: the kernel"),
        lambda f, out: ["blur", str(f[0]), "-o", str(out / "b.tif"), "--kernel", str(f[1])],
        match="99x99 px, larger than the 64x64 image",
    ),
    Row(
        "sigma_map_absurd",
        "`defocus blur --sigma-map` holding sigma 1e6 px",
        _huge_sigma_map,
        sigma_map_api,
        lambda f, out: ["blur", str(f[0]), "-o", str(out / "b.tif"), "--sigma-map", str(f[1])],
        match="larger than the 64x64 image",
    ),
    Row(
        "tiled_bomb",
        "TIFF header claiming 2³¹ × 2³¹, `defocus map --chunks 2048`",
        _raw("bomb.tif", _tiff_header(2**31, 2**31)),
        lazy_api,
        tiled_map_cli,
        match="above the tiled limit of 1,099,512 MP",
        needs="dask",
    ),
    Row(
        "tiled_bomb_strip",
        "TIFF header claiming 60k × 60k in one strip, `defocus map --chunks 2048`",
        _raw("strip.tif", _tiff_header(60000, 60000)),
        lazy_api,
        tiled_map_cli,
        match="too large to read in tiles",
        needs="dask",
    ),
    Row(
        "tiled_truncated",
        "TIFF cut in half, `defocus map --chunks 2048`",
        lambda t: _truncated(t, ".tif"),
        lazy_api,
        tiled_map_cli,
        match="truncated or damaged TIFF",
        needs="dask",
    ),
    Row(
        "tiled_empty_zarr",
        "Zarr array of 2²⁰ × 2²⁰ with no chunk written, `defocus map`",
        _empty_zarr,
        lazy_api,
        lambda f, out: ["map", str(f[0]), "-o", str(out)],
        match="holds no data",
        needs="zarr",
    ),
    Row(
        "fei_tiny",
        "FEI `PixelWidth=1e-300` in the file",
        _fei("1e-300"),
        read,
        focus_cli,
        match="fei.tif: unusable FEI PixelWidth .*--pixel-size",
    ),
    Row(
        "fei_unreadable",
        "FEI `PixelWidth=abc` in the file",
        _fei("abc"),
        read,
        focus_cli,
        match="fei.tif: unusable FEI PixelWidth .*--pixel-size",
    ),
    Row(
        "fei_unreadable_override",
        "FEI `PixelWidth=abc` with `--pixel-size 5nm`",
        _fei("abc"),
        lambda f: read_image(f[0], pixel_size="5nm"),
        blur_cli,
        options=["--pixel-size", "5nm"],
        code=0,
    ),
    Row(
        "pages_index_99",
        "TIFF whose pages differ in shape, `--index 99`",
        _mixed_pages,
        lambda f: read_image(f[0], index=99),
        focus_cli,
        options=["--index", "99"],
        match="page index 99 out of range 0..1",
    ),
    Row(
        "pages_index_1",
        "the same with `--index 1` (reads page 1, 48×80)",
        _mixed_pages,
        lambda f: (
            read_image(f[0], index=1) if read_image(f[0], index=1).data.shape == (48, 80) else None
        ),
        blur_cli,
        options=["--index", "1"],
        code=0,
    ),
    Row("symlink_loop", "a symlink loop", _symlink_loop, read, focus_cli, match="symlink loop"),
    Row(
        "broken_symlink", "a broken symlink", _broken_link, read, focus_cli, match="broken symlink"
    ),
    Row("fifo", "a FIFO (named pipe)", _fifo, read, focus_cli, match="not a regular file"),
    Row(
        "device",
        "`/dev/urandom`",
        lambda t: Path("/dev/urandom"),
        read,
        focus_cli,
        match="not a regular file",
    ),
]


def _tree(root: Path) -> dict[str, str | None]:
    """Every entry under ``root`` (symlinks not followed): regular files by content hash."""
    entries: dict[str, str | None] = {}
    for folder, dirs, names in os.walk(root):
        for name in dirs + names:
            f = Path(folder) / name
            regular = f.is_file() and not f.is_symlink()
            entries[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest() if regular else None
    return entries


def _digest(paths: list[Path]) -> dict[Path, str | None]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None for p in paths}


def _one_line(message: str) -> None:
    assert message and "\n" not in message.strip(), message
    assert "Traceback" not in message, message


# CLI messages seen by the row tests, for the catalogue table: id -> (exit code, message)
SEEN: dict[str, tuple[int, str]] = {}


def run_row(row: Row, tmp: Path, capsys) -> tuple[int, str]:
    """Run one row through the API and the CLI, checking every contract; return the CLI's."""
    if row.needs:
        pytest.importorskip(row.needs)
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
    tree = _tree(tmp)
    capsys.readouterr()
    code = main([*row.cli(files, out), *row.options])
    err = capsys.readouterr().err
    assert code == row.code, err
    assert _digest(files) == before, "an input was modified"
    after = _tree(tmp)
    changed = sorted(k for k in after.keys() | tree.keys() if after.get(k) != tree.get(k))
    new = [Path(k).name for k in changed]
    assert not [n for n in new if ".partial" in n or n.startswith(".")], new
    if code == 0:
        assert changed, "a valid input gave no output"
        replaced = [k for k, h in tree.items() if h is not None and after.get(k) != h]
        assert not replaced or "--overwrite" in row.options, f"replaced: {replaced}"
        message = "works"
    else:
        assert changed == [], f"bad input changed files: {changed}"
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
    import defocus.io._write as dio

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
