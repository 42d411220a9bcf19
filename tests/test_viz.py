"""Pictures: shapes, colours and the promises each view makes."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from defocus import BadInputError
from defocus.io import PixelSize, read_image
from defocus.viz import (
    heatmap_figure,
    mask_view,
    profile_figure,
    save_figure,
    sketch_view,
    to_display,
)


def test_to_display_stretches_any_dtype_to_uint8():
    img16 = data.camera().astype(np.uint16) * 16  # 12-bit data in a 16-bit container
    disp = to_display(img16)
    assert disp.dtype == np.uint8
    assert disp.min() == 0 and disp.max() == 255
    rgb = to_display(data.astronaut(), channel_axis=-1)
    assert rgb.shape == data.astronaut().shape


def test_mask_view_keeps_original_colour_inside_and_background_outside():
    rgb = data.astronaut()[:64, :64]
    mask = np.zeros((64, 64), bool)
    mask[16:48, 16:48] = True
    out = mask_view(rgb, mask, background=(10, 200, 30), channel_axis=-1)
    assert out.dtype == np.uint8 and out.shape == (64, 64, 3)
    assert (out[~mask] == [10, 200, 30]).all()
    np.testing.assert_array_equal(out[mask], to_display(rgb, channel_axis=-1)[mask])


def test_mask_view_rejects_bad_colour_and_shape():
    img = np.zeros((4, 4), np.uint8)
    with pytest.raises(BadInputError):
        mask_view(img, np.ones((4, 4), bool), background="not-a-colour")
    with pytest.raises(BadInputError):
        mask_view(img, np.ones((3, 4), bool))


def test_sketch_is_dark_where_focus_is_high():
    f = np.linspace(0, 1, 100).reshape(10, 10)
    s = sketch_view(f)
    assert s.dtype == np.uint8
    assert s[0, 0] == 255 and s[-1, -1] == 0
    assert (np.diff(s.ravel().astype(int)) <= 0).all()
    assert (sketch_view(np.zeros((3, 3))) == 255).all()


def test_heatmap_png_has_colourbar_unit_and_is_written(tmp_path):
    img = data.camera()[:96, :128]
    fig = heatmap_figure(
        img,
        np.linspace(0, 5, img.size).reshape(img.shape),
        label="blur sigma (px)",
        pixel_size=PixelSize(97.66, 97.66, "nm"),
        secondary=("sigma (nm)", 97.66),
    )
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert "blur sigma (px)" in labels
    out = tmp_path / "h.png"
    save_figure(fig, out)
    png = read_image(out)
    assert png.data.dtype == np.uint8 and png.data.ndim == 3


def test_large_heatmap_draws_block_means_in_image_coordinates(tmp_path, monkeypatch):
    import defocus.viz as viz

    cam = data.camera()[:400]  # 400 x 512, each pixel repeated 4 x 4: 1600 x 2048
    big = np.repeat(np.repeat(cam, 4, axis=0), 4, axis=1)
    sigma = np.repeat(np.repeat(np.linspace(0, 5, cam.size).reshape(cam.shape), 4, 0), 4, 1)
    ps = PixelSize(97.66, 97.66, "nm")
    fig = heatmap_figure(big, sigma, label="sigma", pixel_size=ps)
    drawn = fig.axes[0].images[0]
    assert max(drawn.get_array().shape) <= 1536
    assert drawn.get_extent() == [-0.5, 2047.5, 1599.5, -0.5]
    save_figure(fig, tmp_path / "fast.png")
    monkeypatch.setattr(viz, "_DRAW_PX", 10**6)  # every pixel drawn: the reference picture
    full = heatmap_figure(big, sigma, label="sigma", pixel_size=ps)
    assert full.axes[0].images[0].get_array().shape == big.shape
    save_figure(full, tmp_path / "full.png")
    a, b = (read_image(tmp_path / f).data.astype(float) for f in ("fast.png", "full.png"))
    assert a.shape == b.shape
    assert np.abs(a - b).mean() < 0.3  # grey levels out of 255 (measured 0.05)


def test_heatmap_rejects_mismatched_map():
    with pytest.raises(BadInputError):
        heatmap_figure(np.zeros((4, 4)), np.zeros((5, 4)), label="x")


def test_profile_figure_marks_band(tmp_path):
    x = np.linspace(0, 1, 64)
    y = np.exp(-((x - 0.62) ** 2) / 0.01)
    fig = profile_figure(
        x, y, low=y * 0.9, high=y * 1.1, ylabel="focus", band=(0.55, 0.7), peak=0.62
    )
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("62%" in t for t in legend)
    save_figure(fig, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000
