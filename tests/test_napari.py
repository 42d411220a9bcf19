"""The napari plugin: manifest, sample data and dock widgets in an offscreen viewer.

The viewer tests need napari (``pip install "defocus[napari]" pytest-qt``, or
``make test-napari``) and run with ``QT_QPA_PLATFORM=offscreen``; without napari they skip.
The import-isolation test always runs: the core package must not pull in napari or Qt.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from importlib import metadata, resources

import numpy as np
import pytest
from skimage import data

import defocus
from defocus.data import tilted_gravel

HAVE_NAPARI = importlib.util.find_spec("napari") is not None
needs_napari = pytest.mark.skipif(
    not HAVE_NAPARI,
    reason="napari is not installed; `make test-napari` installs defocus[napari] and runs these",
)
GUI = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "vispy")


def test_core_does_not_import_napari_or_qt():
    # a fresh interpreter: in this one the napari pytest plugin may already have loaded napari
    code = f"""
import importlib, pkgutil, sys
import defocus
for m in pkgutil.walk_packages(defocus.__path__, "defocus."):
    if not m.name.startswith("defocus.napari.") and m.name != "defocus.__main__":
        importlib.import_module(m.name)
gui = sorted({{n.split(".")[0] for n in sys.modules}} & set({GUI!r}))
assert not gui, gui
"""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]


def test_manifest_ships_and_is_registered():
    manifest = resources.files("defocus.napari") / "napari.yaml"
    assert manifest.is_file()
    points = {e.name: e.value for e in metadata.entry_points(group="napari.manifest")}
    assert points.get("defocus") == "defocus.napari:napari.yaml"


def test_sample_data_layers_carry_the_pixel_size():
    from defocus.napari._sample_data import tilted_gravel as sample

    (image, meta, kind), (sigma, smeta, _) = sample()
    img, true_sigma = tilted_gravel()
    assert kind == "image" and np.array_equal(image, img.data)
    assert meta["scale"] == smeta["scale"] == (img.pixel_size.y, img.pixel_size.x)
    assert meta["units"] == ("nm", "nm")
    assert np.array_equal(sigma, true_sigma)


@needs_napari
def test_manifest_validates_and_every_command_resolves():
    import npe2

    pm = npe2.PluginManifest.from_file(resources.files("defocus.napari") / "napari.yaml")
    for cmd in pm.contributions.commands:
        module, name = cmd.python_name.split(":")
        assert callable(getattr(importlib.import_module(module), name))
    assert {s.key for s in pm.contributions.sample_data} >= {"tilted_gravel"}


# ---------------------------------------------------------------------------------------------
# in a viewer


@pytest.fixture
def viewer(request):
    """An offscreen viewer; napari's canvas needs OpenGL, which on Linux comes from an X server."""
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        pytest.skip("napari needs OpenGL: on Linux run under xvfb-run (apt-get install xvfb)")
    return request.getfixturevalue("make_napari_viewer")()


def _finish(qtbot, widget, timeout=120_000):
    worker = widget.run()
    assert worker is not None, widget.status.value
    qtbot.waitUntil(lambda: widget._run.enabled, timeout=timeout)
    assert not widget.status.value.startswith("error"), widget.status.value


@needs_napari
def test_sample_data_opens_with_scale_and_units(viewer):
    viewer.open_sample("defocus", "tilted_gravel")
    layer = viewer.layers["tilted gravel"]
    assert tuple(layer.scale) == (10.0, 10.0)
    assert [f"{u:~}" for u in layer.units] == ["nm", "nm"]


@needs_napari
def test_blur_map_widget_adds_scaled_layers_and_focal_plane(viewer, qtbot):
    from defocus.napari._widgets import BlurMapWidget, focal_line

    img, _ = tilted_gravel()
    crop = img.data[:256, :192]
    _, widget = viewer.window.add_plugin_dock_widget("defocus", "Blur map")
    assert isinstance(widget, BlurMapWidget)
    source = viewer.add_image(crop, name="g", scale=(10, 10), units=("nm", "nm"))
    widget.image.value = source
    _finish(qtbot, widget)
    sigma = viewer.layers["g blur sigma (px)"]
    ps = defocus.io.PixelSize(10, 10, "nm")
    bm = defocus.blur_map(crop, pixel_size=ps)
    np.testing.assert_array_equal(sigma.data, bm.sigma)  # the library's map, untouched
    for name in ("g blur sigma (px)", "g confidence", "g sharpest line"):
        layer = viewer.layers[name]
        assert tuple(layer.scale) == (10.0, 10.0)
        assert [f"{u:~}" for u in layer.units] == ["nm", "nm"]
    fp = defocus.focal_plane(bm)
    assert fp.summary()["text"] in widget.status.value
    assert sigma.metadata["defocus"]["focal_plane"] == fp.summary()
    # the drawn line runs through the fitted model's minimum
    (y0, x0), (y1, x1) = focal_line(fp)
    t = np.linspace(0, 1, 9)
    ys, xs = np.round(y0 + t * (y1 - y0)).astype(int), np.round(x0 + t * (x1 - x0)).astype(int)
    assert np.allclose(fp.predict()[ys, xs], fp.sigma0, rtol=0.05, atol=0.05)


@needs_napari
def test_focal_line_follows_tilt_both_ways():
    from defocus.blurmap import BlurMap
    from defocus.napari._widgets import focal_line

    for angle, position in ((15.0, 0.3), (-25.0, 0.6), (70.0, 0.4)):
        sig = defocus.tilt_map((120, 160), position=position, angle=angle, slope=0.05, floor=0.5)
        one = np.ones_like(sig)
        fp = defocus.focal_plane(BlurMap(sig, one, sig[2::4, 2::4], one[2::4, 2::4], 4, 0.0, "g"))
        (y0, x0), (y1, x1) = focal_line(fp)
        t = np.linspace(0, 1, 11)
        ys = np.clip(np.round(y0 + t * (y1 - y0)).astype(int), 0, 119)
        xs = np.clip(np.round(x0 + t * (x1 - x0)).astype(int), 0, 159)
        assert sig[ys, xs].max() < 0.5 + 0.05 * 1.5  # within about a pixel of the true line


@needs_napari
def test_focus_widget_uses_the_typed_pixel_size(viewer, qtbot):
    from defocus.napari._widgets import FocusMapWidget

    image = data.camera()[::4, ::4]
    layer = viewer.add_image(image, name="cam")
    widget = FocusMapWidget(viewer)
    widget.image.value = layer
    widget.pixel_size.value = "2.5nm"
    _finish(qtbot, widget)
    focus = viewer.layers["cam focus (gradient_ratio)"]
    np.testing.assert_array_equal(focus.data, defocus.focus_map(image))
    mask = viewer.layers["cam in focus"]
    np.testing.assert_array_equal(mask.data.astype(bool), defocus.in_focus_mask(focus.data))
    assert tuple(mask.scale) == tuple(focus.scale) == (2.5, 2.5)
    assert [f"{u:~}" for u in focus.units] == ["nm", "nm"]
    assert "sharpest rows" in widget.status.value


@needs_napari
def test_stack_widget_depth_follows_the_sharp_band(viewer, qtbot):
    from defocus.napari._widgets import FocusMapWidget, StackWidget

    sharp = data.camera()[::4, ::4].astype(np.float32)
    blurred = defocus.blur(sharp, defocus.render("gauss", sigma=3.0))
    bands = np.array_split(np.arange(128), 3)
    frames = []
    for rows in bands:  # frame i is sharp only in band i
        f = blurred.copy()
        f[rows] = sharp[rows]
        frames.append(f)
    layer = viewer.add_image(np.stack(frames), name="z", scale=(1, 0.5, 0.5), units="µm")
    widget = StackWidget(viewer)
    widget.image.value = layer
    widget.align.value = False
    _finish(qtbot, widget)
    depth = viewer.layers["z depth (frame)"]
    medians = [np.median(depth.data[rows[4:-4]]) for rows in bands]
    assert medians[0] < medians[1] < medians[2]
    fused = viewer.layers["z fused"].data
    err = [np.abs(fused - sharp).mean()] + [np.abs(f - sharp).mean() for f in frames]
    assert err[0] < min(err[1:])  # fusion beats every single frame
    assert tuple(depth.scale) == (0.5, 0.5) and f"{depth.units[-1]:~}" == "µm"
    # the focus widget works on the plane shown
    viewer.dims.set_point(0, 2)
    focus = FocusMapWidget(viewer)
    focus.image.value = layer
    _finish(qtbot, focus)
    np.testing.assert_array_equal(
        viewer.layers["z [2] focus (gradient_ratio)"].data, defocus.focus_map(frames[2])
    )


def _steps_series():
    """Six frames 0.5 µm apart of a sample with two flat steps, in focus at 0.5 and 2.0 µm."""
    sharp = data.camera()[::4, ::4].astype(np.float32)
    height = np.where(np.arange(128)[None, :] < 64, 0.5, 2.0).repeat(128, 0)
    z = np.linspace(0.0, 2.5, 6)
    return np.stack([defocus.blur_varying(sharp, np.hypot(0.5, 2.0 * (zi - height))) for zi in z])


@needs_napari
def test_through_focus_widget_height_has_units_and_follows_the_steps(viewer, qtbot):
    from defocus.napari._widgets import ThroughFocusWidget

    # z from the layer's first axis: frame i at 1.0 + 0.5 i µm, so the steps sit at 1.5, 3.0 µm
    layer = viewer.add_image(
        _steps_series(), name="zs", scale=(0.5, 0.2, 0.2), translate=(1.0, 3.0, 4.0), units="µm"
    )
    widget = ThroughFocusWidget(viewer)
    widget.image.value = layer
    widget.align.value = False
    _finish(qtbot, widget)
    h = viewer.layers["zs height (µm)"]
    assert tuple(h.scale) == (0.2, 0.2) and tuple(h.translate) == (3.0, 4.0)
    assert [f"{u:~}" for u in h.units] == ["µm", "µm"]
    np.testing.assert_array_equal(h.data, widget.result.height)  # the library's map
    assert np.median(h.data[:, 8:56]) == pytest.approx(1.5, abs=0.1)
    assert np.median(h.data[:, 72:120]) == pytest.approx(3.0, abs=0.1)
    conf = viewer.layers["zs height confidence"]
    np.testing.assert_array_equal(conf.data, widget.result.confidence)
    assert h.metadata["defocus"] == widget.result.summary()
    # best focus as points in the stack's world frame, in its units
    points = viewer.layers["zs best focus"]
    assert [f"{u:~}" for u in points.units] == ["µm", "µm", "µm"]
    assert viewer.layers.extent.units is not None  # one unit for all: a physical scale bar
    left = points.data[:, 2] < 4.0 + 64 * 0.2
    assert left.any() and (~left).any()
    assert np.median(points.data[left, 0]) == pytest.approx(1.5, abs=0.1)
    assert np.median(points.data[~left, 0]) == pytest.approx(3.0, abs=0.1)
    lo, hi = viewer.layers["zs"].extent.world
    assert np.all(points.data >= lo - 1e-6) and np.all(points.data <= hi + 1e-6)
    assert widget.result.fit.statement in widget.status.value
    assert "inside the series" in widget.status.value


@needs_napari
def test_through_focus_widget_typed_z_keeps_points_on_the_stack(viewer, qtbot):
    from defocus.napari._widgets import ThroughFocusWidget

    layer = viewer.add_image(
        _steps_series(), name="zs", scale=(0.5, 0.2, 0.2), translate=(1.0, 0.0, 0.0), units="µm"
    )
    widget = ThroughFocusWidget(viewer)
    widget.image.value = layer
    widget.align.value = False
    widget.z.value = "0,500,1000,1500,2000,2500nm"  # another unit and origin than the axis
    _finish(qtbot, widget)
    h = viewer.layers["zs height (nm)"]
    assert np.median(h.data[:, 8:56]) == pytest.approx(500, abs=100)
    assert np.median(h.data[:, 72:120]) == pytest.approx(2000, abs=100)
    # the points stay on the stack's own z axis (µm, from 1.0), not at the typed nm values
    points = viewer.layers["zs best focus"].data
    left = points[:, 2] < 64 * 0.2
    assert np.median(points[left, 0]) == pytest.approx(1.5, abs=0.1)
    assert np.median(points[~left, 0]) == pytest.approx(3.0, abs=0.1)
    # a 2-D layer, or a first axis in pixels with no z typed, is refused in the status line
    flat = viewer.add_image(_steps_series()[0], name="flat")
    widget.image.value = flat
    assert widget.run() is None and "3-D layer" in widget.status.value
    widget.image.value = viewer.add_image(_steps_series(), name="px")
    widget.z.value = ""
    assert widget.run() is None and "type the z values" in widget.status.value


@needs_napari
def test_kernel_widget_finds_the_disk(viewer, qtbot):
    from defocus.napari._widgets import KernelWidget

    sharp = data.camera()[100:228, 100:228]
    blurry = defocus.blur(sharp, defocus.render("disk", radius=3.0), dtype=np.float32)
    a, b = viewer.add_image(sharp, name="sharp"), viewer.add_image(blurry, name="blurry")
    widget = KernelWidget(viewer)
    widget.sharp.value, widget.blurry.value = a, b
    widget.models.value = ["gauss", "disk"]
    _finish(qtbot, widget)
    kernel = viewer.layers["blurry kernel"].data
    assert kernel.sum() == pytest.approx(1.0, abs=1e-4)
    assert widget.status.value.startswith("disk(")
    fit = viewer.layers["blurry kernel"].metadata["defocus"]["fit"]
    assert fit["params"]["radius"] == pytest.approx(3.0, rel=0.1)


@needs_napari
def test_bad_input_shows_one_line_in_the_widget(viewer, qtbot):
    from defocus.napari._widgets import BlurMapWidget, StackWidget

    flat = viewer.add_image(np.full((64, 64), 3, np.uint8), name="flat")
    stack = StackWidget(viewer)
    stack.image.value = flat
    assert stack.run() is None
    assert stack.status.value.startswith("error: flat: a focus stack is a 3-D layer")
    blur = BlurMapWidget(viewer)
    blur.image.value = flat
    blur.run()  # fails inside the worker: reported, not raised
    qtbot.waitUntil(lambda: blur._run.enabled, timeout=60_000)
    assert blur.status.value.startswith("error:") and "\n" not in blur.status.value
    assert [la.name for la in viewer.layers] == ["flat"]
