"""Maps open in Fiji with their scale: OME ``PhysicalSizeX/Y`` with units, read back independently.

The metadata are parsed with tifffile's OME-XML parser (``xml2dict``), not with defocus's own
reader, so a writer and reader that agree on a mistake cannot pass.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from skimage import data

import defocus
from defocus.cli import main


def _ome_pixels(path) -> tuple[dict, tifffile.TiffPage]:
    with tifffile.TiffFile(path) as tf:
        assert tf.is_ome
        ome = tifffile.xml2dict(tf.ome_metadata)["OME"]
        page = tf.pages[0]
        tags = {t.name: t.value for t in page.tags}
    return ome["Image"]["Pixels"], tags


@pytest.mark.parametrize(
    ("size", "x", "y", "unit"),
    [("2.5nm", 2.5, 2.5, "nm"), ("0.2x0.25um", 0.2, 0.25, "µm"), ("1.5 mm", 1.5, 1.5, "mm")],
)
def test_write_map_carries_physical_size_and_units(tmp_path, size, x, y, unit):
    values = np.random.default_rng(0).random((30, 40))
    f = tmp_path / "map.tif"
    defocus.write_map(f, values, pixel_size=size)
    px, tags = _ome_pixels(f)
    assert (px["SizeX"], px["SizeY"], px["Type"]) == (40, 30, "float")
    assert px["PhysicalSizeX"] == pytest.approx(x)
    assert px["PhysicalSizeY"] == pytest.approx(y)
    assert px["PhysicalSizeXUnit"] == px["PhysicalSizeYUnit"] == unit  # OME symbols (µ = U+00B5)
    # plain ImageJ (no Bio-Formats) uses the resolution tags: pixels per centimetre
    cm = defocus.io.PixelSize(x, y, unit).to("cm")
    assert tags["ResolutionUnit"] == tifffile.RESUNIT.CENTIMETER
    for tag, size_cm in (("XResolution", cm.x), ("YResolution", cm.y)):
        num, den = tags[tag]
        assert num / den == pytest.approx(1 / size_cm, rel=1e-6)
    np.testing.assert_array_equal(tifffile.imread(f), values.astype(np.float32))


def test_map_command_outputs_open_with_scale(tmp_path):
    image = tmp_path / "coins.tif"
    defocus.write_image(image, data.coins()[::3, ::3])  # no pixel size in the file
    out = tmp_path / "out"
    assert main(["map", str(image), "--pixel-size", "97.66nm", "-o", str(out)]) == 0
    for name in ("coins.blur.sigma.tif", "coins.blur.confidence.tif"):
        px, _ = _ome_pixels(out / name)
        assert (px["SizeY"], px["SizeX"]) == data.coins()[::3, ::3].shape
        assert px["PhysicalSizeX"] == px["PhysicalSizeY"] == pytest.approx(97.66)
        assert px["PhysicalSizeXUnit"] == px["PhysicalSizeYUnit"] == "nm"


def test_no_pixel_size_writes_no_scale(tmp_path):
    f = tmp_path / "map.tif"
    defocus.write_map(f, np.zeros((8, 8)))
    px, _ = _ome_pixels(f)
    assert "PhysicalSizeX" not in px and "PhysicalSizeY" not in px
