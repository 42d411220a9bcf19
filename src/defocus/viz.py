"""Every figure: heatmap overlays, mask views, sketches, profiles, histograms and kernels.

Pictures are for people, so they may stretch intensities for display; the data outputs (TIFF
maps) never do. Figures use matplotlib's non-interactive Agg canvas, so nothing needs a screen.
"""

from __future__ import annotations

import io as _io
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from ._array import luminance
from ._errors import BadInputError
from .io import PixelSize, atomic_path

if TYPE_CHECKING:
    from .blurmap import BlurMap
    from .focalplane import FocalPlane
    from .io import ImageData
    from .zseries import ThroughFocus

__all__ = [
    "focal_plane_figure",
    "heatmap_figure",
    "height_figure",
    "histogram_figure",
    "kernel_figure",
    "kernel_model_figure",
    "mask_view",
    "profile_figure",
    "save_figure",
    "series_figure",
    "sigma_heatmap",
    "sketch_view",
    "surface_figure",
    "to_display",
]


def to_display(
    image: np.ndarray,
    *,
    channel_axis: int | None = None,
    percentiles: tuple[float, float] = (0.5, 99.5),
) -> np.ndarray:
    """Stretch an image of any dtype to uint8 for display (RGB stays RGB, alpha is dropped).

    The stretch maps the given luminance percentiles to 0 and 255, so 12-bit data in a 16-bit
    container and float data are both visible. Only for pictures, never for data outputs.

    Examples
    --------
    >>> to_display(np.array([[0, 4095]], dtype=np.uint16), percentiles=(0, 100))
    array([[  0, 255]], dtype=uint8)
    """
    img = np.asarray(image)
    if channel_axis is not None:
        img = np.moveaxis(img, channel_axis, -1)[..., :3]
        if img.shape[-1] == 1:
            img = img[..., 0]
    img = img.astype(np.float32)
    lo, hi = np.percentile(img, percentiles)
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((img - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)


def _as_rgb(display: np.ndarray) -> np.ndarray:
    return np.repeat(display[..., None], 3, axis=-1) if display.ndim == 2 else display


def mask_view(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    background: str | Sequence[int] = "white",
    channel_axis: int | None = None,
) -> np.ndarray:
    """Show in-focus pixels in their original colour over a plain background colour.

    Parameters
    ----------
    image : ndarray
        The original image (any dtype; stretched for display).
    mask : ndarray of bool
        True where in focus.
    background : str or sequence of int
        A matplotlib colour name (``"white"``, ``"black"``, ``"magenta"``...) or an RGB triple.

    Returns
    -------
    ndarray of uint8, shape (M, N, 3)

    Examples
    --------
    >>> img = np.arange(4, dtype=np.uint8).reshape(2, 2)
    >>> mask_view(img, img > 1, background="black")[0, 0].tolist()
    [0, 0, 0]
    """
    from matplotlib.colors import to_rgb

    rgb = _as_rgb(to_display(image, channel_axis=channel_axis))
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != rgb.shape[:2]:
        raise BadInputError(f"mask shape {mask.shape} does not match image {rgb.shape[:2]}")
    try:
        bg = (
            np.round(np.array(to_rgb(background)) * 255)
            if isinstance(background, str)
            else np.asarray(background, dtype=float)
        )
    except ValueError:
        raise BadInputError(f"unknown background colour {background!r}") from None
    if bg.shape != (3,) or bg.min() < 0 or bg.max() > 255:
        raise BadInputError(
            f"background must be a colour name or 3 values in 0..255, got {background!r}"
        )
    out = np.empty_like(rgb)
    out[:] = bg.astype(np.uint8)
    out[mask] = rgb[mask]
    return out


def sketch_view(focus: np.ndarray) -> np.ndarray:
    """The seed's "sketch": ``1 - focus`` in grey, so in-focus detail draws dark on white.

    The map is normalised by its 99.5th percentile (robust to a few extreme pixels).

    Examples
    --------
    >>> sketch_view(np.array([[0.0, 1.0]])).tolist()
    [[255, 0]]
    """
    f = np.asarray(focus, dtype=np.float32)
    top = float(np.percentile(f, 99.5)) if f.size else 0.0
    norm = np.clip(f / top, 0, 1) if top > 0 else np.zeros_like(f)
    return np.round(255.0 * (1.0 - norm)).astype(np.uint8)


def _scalebar(ax, width_px: int, pixel_size: PixelSize) -> None:
    """Draw a scale bar of a round physical length, about a fifth of the width."""
    target_m = width_px * pixel_size.metres[0] / 5
    bar = PixelSize(target_m, target_m, "m").readable()  # unit that suits the bar, not the pixel
    exp = np.floor(np.log10(bar.x))
    nice = min((1, 2, 5, 10), key=lambda m: abs(m * 10**exp - bar.x)) * 10**exp
    n_px = nice * width_px / 5 / bar.x
    x0 = width_px * 0.04
    trans = ax.get_xaxis_transform()
    ax.plot(
        [x0, x0 + n_px], [0.95, 0.95], transform=trans, color="white", lw=3, solid_capstyle="butt"
    )
    ax.text(
        x0 + n_px / 2,
        0.91,
        f"{nice:g} {bar.unit}",
        transform=trans,
        color="white",
        ha="center",
        va="top",
        fontsize=9,
    )


#: Longest side, in pixels, that an overlay figure draws: about twice what a 7-inch figure shows
#: at 110 dpi, so larger images are drawn as block means at a fraction of the cost.
_DRAW_PX = 1536


def _block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Mean over ``f`` x ``f`` blocks of the first two axes (a ragged edge under ``f`` dropped)."""
    h, w = a.shape[0] // f * f, a.shape[1] // f * f
    blocks = a[:h, :w].reshape(h // f, f, w // f, f, *a.shape[2:])
    return blocks.mean(axis=(1, 3), dtype=np.float32)


def heatmap_figure(
    image: np.ndarray,
    values: np.ndarray,
    *,
    label: str,
    channel_axis: int | None = None,
    cmap: str = "inferno",
    alpha: float = 0.6,
    vmin: float | None = None,
    vmax: float | None = None,
    pixel_size: PixelSize | None = None,
    secondary: tuple[str, float] | None = None,
    title: str | None = None,
) -> Figure:
    """Overlay a map on the image as a heatmap, with a colourbar that names the unit.

    Images longer than 1536 px are drawn as means over square blocks (the figure shows fewer
    pixels than that), with axes still in the image's pixels.

    Parameters
    ----------
    image, values : ndarray
        The image (any dtype) and a 2-D map of the same height and width.
    label : str
        Colourbar label, including the unit, e.g. ``"blur sigma (px)"``.
    pixel_size : PixelSize, optional
        Adds a scale bar.
    secondary : (str, float), optional
        A second colourbar axis as (label, factor), e.g. ``("sigma (nm)", 97.7)`` to show
        physical units beside pixels.

    Examples
    --------
    >>> fig = heatmap_figure(np.eye(8), np.eye(8), label="focus (a.u.)")
    >>> fig.axes[1].get_ylabel()
    'focus (a.u.)'
    """
    img = np.asarray(image)
    if channel_axis is not None:
        img = np.moveaxis(img, channel_axis, -1)
    values = np.asarray(values, dtype=np.float32)
    if values.shape != img.shape[:2]:
        raise BadInputError(f"map shape {values.shape} does not match image {img.shape[:2]}")
    h, w = values.shape
    f = -(-max(h, w) // _DRAW_PX)
    if f > 1:  # the figure shows far fewer pixels: draw block means, in image coordinates
        img, values = _block_mean(img, f), _block_mean(values, f)
    disp = to_display(img, channel_axis=None if channel_axis is None else -1)
    grey = disp if disp.ndim == 2 else luminance(disp, channel_axis=-1)
    extent = (-0.5, values.shape[1] * f - 0.5, values.shape[0] * f - 0.5, -0.5)
    fig = Figure(figsize=(7.0, 7.0 * h / w * 0.9 + 0.6), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(grey, cmap="gray", vmin=0, vmax=255, interpolation="antialiased", extent=extent)
    im = ax.imshow(
        values,
        cmap=cmap,
        alpha=alpha,
        vmin=vmin,
        vmax=vmax,
        interpolation="antialiased",
        extent=extent,
    )
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    if pixel_size is not None:
        _scalebar(ax, w, pixel_size)
    cb = fig.colorbar(im, ax=ax, shrink=0.85)
    if cb.solids is not None:
        cb.solids.set_alpha(1)
    cb.set_label(label)
    if secondary is not None:
        name, factor = secondary
        cb.ax.secondary_yaxis(
            "left", functions=(lambda v: np.multiply(v, factor), lambda v: np.divide(v, factor))
        ).set_ylabel(name)
    return fig


def sigma_heatmap(
    image: np.ndarray,
    sigma: np.ndarray,
    *,
    channel_axis: int | None = None,
    pixel_size: PixelSize | None = None,
    title: str | None = None,
) -> Figure:
    """Heatmap of a blur map in px, with a second colourbar axis in physical units when known.

    The colour scale runs from 0 to the 99th percentile of sigma, so a few extreme cells do
    not wash out the rest.

    Examples
    --------
    >>> from defocus.io import PixelSize
    >>> ps = PixelSize(5e-9, 5e-9, "m")
    >>> fig = sigma_heatmap(np.eye(8), np.full((8, 8), 2.0), pixel_size=ps)
    >>> bar = fig.axes[1]
    >>> bar.get_ylabel(), [a.get_ylabel() for a in bar.child_axes]
    ('blur sigma (px)', ['sigma (nm)'])
    """
    secondary = None
    if pixel_size is not None:
        ps = pixel_size.readable()
        secondary = (f"sigma ({ps.unit})", float(np.sqrt(ps.x * ps.y)))
    return heatmap_figure(
        image,
        sigma,
        label="blur sigma (px)",
        channel_axis=channel_axis,
        cmap="viridis",
        vmin=0.0,
        vmax=float(np.percentile(sigma, 99)),
        pixel_size=pixel_size,
        secondary=secondary,
        title=title,
    )


def profile_figure(
    positions: np.ndarray,
    centre: np.ndarray,
    *,
    low: np.ndarray | None = None,
    high: np.ndarray | None = None,
    ylabel: str,
    xlabel: str = "position (fraction of height, 0 = top)",
    band: tuple[float, float] | None = None,
    peak: float | None = None,
    fit: tuple[np.ndarray, np.ndarray, str] | None = None,
    spread_label: str = "interquartile range",
    title: str | None = None,
) -> Figure:
    """Plot a profile with its spread, the sharpest band shaded and an optional model fit.

    Parameters
    ----------
    positions : ndarray
        Positions along the axis (e.g. fractions of the height).
    centre, low, high : ndarray
        The profile (e.g. median per row) and its spread (e.g. quartiles).
    band : (float, float), optional
        Start and end of the sharpest band, in the units of ``positions``.
    peak : float, optional
        The sharpest position, marked with a line.
    fit : (x, y, label), optional
        A fitted model curve.
    spread_label : str, optional
        Legend text for the ``low``-``high`` band.

    Examples
    --------
    >>> x = np.linspace(0, 1, 50)
    >>> fig = profile_figure(x, np.exp(-((x - 0.6) ** 2) / 0.02), ylabel="focus", band=(0.5, 0.7))
    >>> fig.axes[0].get_ylabel()
    'focus'
    """
    fig = Figure(figsize=(7.0, 3.6), layout="constrained")
    ax = fig.add_subplot()
    if low is not None and high is not None:
        ax.fill_between(positions, low, high, color="C0", alpha=0.25, lw=0, label=spread_label)
    ax.plot(positions, centre, color="C0", lw=1.5, label="median")
    if band is not None:
        ax.axvspan(
            *band, color="C2", alpha=0.15, label=f"sharpest band {band[0]:.0%}–{band[1]:.0%}"
        )
    if peak is not None:
        ax.axvline(peak, color="C2", lw=1.2, ls="--", label=f"sharpest at {peak:.0%}")
    if fit is not None:
        ax.plot(fit[0], fit[1], color="C3", lw=1.2, label=fit[2])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(float(np.min(positions)), float(np.max(positions)))
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = 110) -> None:
    """Render a figure to PNG and write it atomically."""
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def _radial_profile(k: np.ndarray, centre: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``k`` in 1-px rings about ``centre``: radii and values of the rings present."""
    y, x = np.indices(k.shape)
    bins = np.rint(np.hypot(y - centre[0], x - centre[1])).astype(int).ravel()
    counts = np.bincount(bins)
    profile = np.bincount(bins, weights=k.ravel()) / np.maximum(counts, 1)
    return np.arange(profile.size)[counts > 0], profile[counts > 0]


def kernel_figure(
    kernel: np.ndarray,
    *,
    title: str | None = None,
    model: np.ndarray | None = None,
    model_label: str = "model",
) -> Figure:
    """Show a PSF kernel with a colourbar beside its azimuthally averaged radial profile.

    The kernel is drawn on a square-root (gamma 0.5) colour scale, so faint wings and rings
    show beside a bright core, and its colourbar reads in kernel weights. The profile is taken
    about the kernel's centroid, in pixels, and drawn on linear and logarithmic axes so both
    the core and faint rings (Airy, defocus) are visible. A fitted ``model`` kernel (same
    centre convention, any odd size) is overlaid on the profile as a dashed line.

    Examples
    --------
    >>> from defocus.psf import disk, gaussian
    >>> fig = kernel_figure(disk(4.0), title="disk R = 4 px", model=gaussian(2.0))
    >>> [ax.get_xlabel() for ax in fig.axes[:2]]
    ['x (px)', 'radius (px)']
    """
    from matplotlib.colors import PowerNorm

    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or k.size == 0 or not np.isfinite(k).all():
        raise BadInputError(f"kernel must be a finite 2-D array, got shape {k.shape}")
    total = k.sum()
    weights = k / total if total > 0 else k
    y, x = np.indices(k.shape)
    cy, cx = (float((weights * y).sum()), float((weights * x).sum())) if total > 0 else (0, 0)
    radii, profile = _radial_profile(k, (cy, cx))

    fig = Figure(figsize=(10.0, 4.2), layout="constrained")
    ax_img, ax_prof = fig.subplots(1, 2, width_ratios=(1.0, 1.3))
    top = float(k.max()) if float(k.max()) > 0 else 1.0
    norm = PowerNorm(gamma=0.5, vmin=0.0, vmax=top)
    im = ax_img.imshow(np.clip(k, 0, None), cmap="magma", interpolation="nearest", norm=norm)
    ax_img.set_xlabel("x (px)")
    ax_img.set_ylabel("y (px)")
    fig.colorbar(im, ax=ax_img, shrink=0.85, label="weight (square-root scale)")
    ax_prof.plot(radii, profile, "o-", ms=3, color="C0", label="kernel, mean at radius")
    curves = [(radii, profile, "C1", "-", "kernel (log scale)")]
    if model is not None:
        mk = np.asarray(model, dtype=np.float64)
        mc = (
            (mk.shape[0] - 1) / 2 + cy - (k.shape[0] - 1) / 2,
            (mk.shape[1] - 1) / 2 + cx - (k.shape[1] - 1) / 2,
        )
        mr, mp = _radial_profile(mk, mc)
        ax_prof.plot(mr, mp, "--", color="C3", lw=1.5, label=model_label)
        curves.append((mr, mp, "C3", "--", f"{model_label} (log scale)"))
    ax_prof.set_xlabel("radius (px)")
    ax_prof.set_ylabel("weight")
    ax_prof.grid(alpha=0.3)
    ax_prof.legend(fontsize=8, loc="upper right")
    # Six decades show Airy and defocus rings without rounding noise in empty corners.
    ax_log = None
    for r, p, colour, style, _ in curves:
        positive = p > profile.max() * 1e-6
        if positive.sum() > 1:
            ax_log = ax_log or ax_prof.twinx()
            ax_log.semilogy(r[positive], p[positive], color=colour, ls=style, lw=1, alpha=0.6)
    if ax_log is not None:
        ax_log.set_ylabel("weight (log scale, thin lines)")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def focal_plane_figure(bm: BlurMap, fp: FocalPlane, *, title: str | None = None) -> Figure:
    """Blur profile across the sharpest line with the fitted ``sigma² = sigma0² + (k·d)²``.

    The profile runs along the axis the line crosses (down the height for a near-horizontal
    line): the confidence-weighted median of sigma per row (or column) with its 16-84 % range,
    the fitted model's median on the same rows, and the sharpest position. Without a significant
    blur gradient (``fp.significant`` False) it shows the profile alone.

    Examples
    --------
    >>> from defocus.blurmap import BlurMap
    >>> from defocus.focalplane import focal_plane
    >>> from defocus.synth import tilt_map
    >>> sig = tilt_map((96, 80), position=0.5, slope=0.05, floor=0.5)
    >>> one = np.ones_like(sig)
    >>> bm = BlurMap(sig, one, sig[2::4, 2::4], one[2::4, 2::4], 4, 0.0, "gauss")
    >>> fig = focal_plane_figure(bm, focal_plane(bm))
    >>> fig.axes[0].get_ylabel()
    'blur sigma (px)'
    """
    prof = fp.rows if fp.axis == "rows" else fp.columns
    assert prof is not None  # the profile along the fitted axis is always kept
    n = bm.shape[0] if fp.axis == "rows" else bm.shape[1]
    model = np.median(fp.predict(), axis=1 if fp.axis == "rows" else 0)
    grid = (np.arange(n) + 0.5) / n
    what = "height, 0 = top" if fp.axis == "rows" else "width, 0 = left"
    return profile_figure(
        (prof.coord + 0.5) / n,
        prof.median,
        low=prof.p16,
        high=prof.p84,
        ylabel="blur sigma (px)",
        xlabel=f"position (fraction of the {what})",
        peak=fp.position if fp.significant else None,
        fit=(grid, model, "fit: sigma² = sigma0² + (k·d)²") if fp.significant else None,
        spread_label="16-84 % range",
        title=title,
    )


def histogram_figure(image: ImageData, bm: BlurMap) -> Figure:
    """Histograms of the intensities, of sigma (all pixels and confidence-weighted) and of the
    confidence, side by side.

    The intensity histogram spans the dtype's full range for integer images, so clipping at
    either end shows as a spike at the edge.

    Examples
    --------
    >>> from defocus import blur_map
    >>> from defocus.io import ImageData
    >>> rng = np.random.default_rng(0)
    >>> img = ImageData(rng.random((64, 64)), rng.random((64, 64)).astype(np.float32))
    >>> fig = histogram_figure(img, blur_map(img.data))
    >>> [ax.get_xlabel() for ax in fig.axes]
    ['intensity (float64)', 'blur sigma (px)', 'confidence']
    """
    fig = Figure(figsize=(11.0, 3.2), layout="constrained")
    ax_i, ax_s, ax_c = fig.subplots(1, 3)
    data = image.data
    if data.dtype.kind in "ub":
        info = np.iinfo(np.uint8 if data.dtype == bool else data.dtype)
        rng = (float(info.min), float(info.max))
    else:
        rng = (float(data.min()), float(data.max()))
        rng = rng if rng[1] > rng[0] else (rng[0], rng[0] + 1.0)
    values = np.moveaxis(data, image.channel_axis, -1) if image.channel_axis is not None else data
    if values.ndim == 3:
        for c, colour in zip(range(min(values.shape[-1], 3)), ("C3", "C2", "C0"), strict=False):
            ax_i.hist(values[..., c].ravel(), bins=128, range=rng, color=colour, alpha=0.5)
    else:
        ax_i.hist(values.ravel(), bins=128, range=rng, color="0.3")
    ax_i.set_xlabel(f"intensity ({data.dtype})")
    ax_i.set_ylabel("pixels")
    ax_i.set_yscale("log")
    top = max(float(np.percentile(bm.sigma, 99.5)), 0.5) * 1.05
    kw = {"bins": 80, "range": (0.0, top), "density": True, "histtype": "step", "lw": 1.5}
    ax_s.hist(bm.sigma.ravel(), color="0.5", label="all pixels", **kw)
    ax_s.hist(
        bm.sigma.ravel(),
        weights=bm.confidence.ravel(),
        color="C0",
        label="confidence-weighted",
        **kw,
    )
    ax_s.set_xlabel("blur sigma (px)")
    ax_s.set_ylabel("density")
    ax_s.legend(fontsize=8)
    ax_c.hist(bm.confidence.ravel(), bins=50, range=(0.0, 1.0), color="C2")
    ax_c.set_xlabel("confidence")
    ax_c.set_ylabel("pixels")
    for ax in (ax_i, ax_s, ax_c):
        ax.grid(alpha=0.3)
    return fig


def kernel_model_figure(k: np.ndarray, model: np.ndarray, *, title: str = "") -> Figure:
    """Kernel and fitted model side by side, and their radial profiles about the kernel centroid.

    Examples
    --------
    >>> from defocus.psf import disk
    >>> fig = kernel_model_figure(disk(3.0), disk(3.2, shape=(7, 7)), title="disk")
    >>> fig.axes[2].get_xlabel()
    'radius (px)'
    """
    fig = Figure(figsize=(11.0, 3.6), layout="constrained")
    ax_k, ax_m, ax_p = fig.subplots(1, 3, width_ratios=(1, 1, 1.4))
    vmax = float(max(k.max(), model.max()))
    for ax, a, name in ((ax_k, k, "estimated kernel"), (ax_m, model, "fitted model")):
        im = ax.imshow(a, cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("x (px)")
    fig.colorbar(im, ax=ax_m, shrink=0.85, label="weight")
    total = k.sum()
    y, x = np.indices(k.shape)
    cy, cx = float((k * y).sum() / total), float((k * x).sum() / total)
    bins = np.rint(np.hypot(y - cy, x - cx)).astype(int).ravel()
    counts = np.maximum(np.bincount(bins), 1)
    radii = np.arange(counts.size)
    for a, style, name in ((k, "o-", "kernel"), (model, "-", "model")):
        ax_p.plot(radii, np.bincount(bins, weights=a.ravel()) / counts, style, ms=3, label=name)
    ax_p.set_xlabel("radius (px)")
    ax_p.set_ylabel("mean weight")
    ax_p.legend(fontsize=8)
    ax_p.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return fig


def height_figure(
    tf: ThroughFocus,
    image: np.ndarray,
    *,
    label: str,
    channel_axis: int | None = None,
    title: str | None = None,
) -> Figure:
    """Best-focus height of a through-focus series over one of its frames.

    Blank where the confidence is below 0.3; the colours span the 1-99 % range of the rest
    (the frames' z range if nothing is confident).

    Examples
    --------
    >>> from defocus.zseries import through_focus
    >>> rng = np.random.default_rng(0)
    >>> frames = [rng.random((64, 64)) * (1 + i) for i in range(3)]
    >>> tf = through_focus(frames, [0, 1, 2], align=False)
    >>> len(height_figure(tf, frames[1], label="z (µm)").axes)
    2
    """
    ok = tf.confidence >= 0.3
    if ok.any():
        lo, hi = (float(v) for v in np.percentile(tf.height[ok], (1, 99)))
    else:
        lo, hi = float(np.min(tf.z)), float(np.max(tf.z))
    return heatmap_figure(
        image,
        np.where(ok, tf.height, np.nan),
        label=label,
        channel_axis=channel_axis,
        cmap="viridis",
        alpha=0.75,
        vmin=lo,
        vmax=hi if hi > lo else lo + 1e-6,
        pixel_size=tf.pixel_size,
        title=title,
    )


def surface_figure(tf: ThroughFocus, *, title: str | None = None) -> Figure:
    """3-D view of a :class:`~defocus.zseries.ThroughFocus` height map where it is confident;
    x and y in the unit of z when the pixel size is known.

    Examples
    --------
    >>> from defocus.zseries import through_focus
    >>> rng = np.random.default_rng(0)
    >>> frames = [rng.random((64, 64)) * (1 + i) for i in range(3)]
    >>> surface_figure(through_focus(frames, [0, 1, 2], align=False)).axes[0].name
    '3d'
    """
    h, w = tf.height.shape
    step = max(1, max(h, w) // 96)
    ok = tf.confidence[::step, ::step] >= 0.3
    zz = np.where(ok, tf.height[::step, ::step].astype(np.float64), np.nan)
    rr, cc = np.mgrid[0:h:step, 0:w:step].astype(np.float64)
    unit = "px"
    if tf.pixel_size is not None:
        p = tf.pixel_size.to(tf.z_unit)
        rr, cc, unit = rr * p.y, cc * p.x, tf.z_unit
    fig = Figure(figsize=(7.0, 5.5), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    surf = ax.plot_surface(cc, rr, zz, cmap="viridis", linewidth=0, antialiased=False)
    ax.set_xlabel(f"x ({unit})")
    ax.set_ylabel(f"y ({unit}, down)")
    ax.set_zlabel(f"height ({tf.z_unit})")
    ax.invert_yaxis()
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(surf, ax=ax, shrink=0.6, label=f"best-focus z ({tf.z_unit})")
    return fig


def series_figure(tf: ThroughFocus) -> Figure:
    """The field's focus curve and mean sigma² against z, with the fitted
    sigma² = sigma0² + k² (z - z0)² extended to the fitted focus."""
    z, fit, unit = tf.z, tf.fit, tf.z_unit
    fig = Figure(figsize=(9.0, 3.4), layout="constrained")
    a1, a2 = fig.subplots(1, 2)
    a1.plot(z, tf.focus_curve, "o-", color="#3b528b")
    a1.axvline(tf.focus_peak, color="#5ec962", ls="--", label=f"peak {tf.focus_peak:.3g} {unit}")
    a1.set_xlabel(f"z ({unit})")
    a1.set_ylabel("mean focus measure (a.u.)")
    a1.legend(fontsize=8)
    a2.plot(z, fit.sigma2, "o", color="#3b528b", label="field mean")
    if fit.z0 is not None and fit.k is not None and fit.sigma0 is not None:
        lo, hi = min(z.min(), fit.z0), max(z.max(), fit.z0)
        zz = np.linspace(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo), 200)
        a2.plot(zz, fit.sigma0**2 + fit.k**2 * (zz - fit.z0) ** 2, color="#fde725")
        err = f" ± {fit.z0_error:.2g}" if fit.z0_error is not None else ""
        a2.axvline(fit.z0, color="#5ec962", ls="--", label=f"z0 {fit.z0:.3g}{err} {unit}")
    a2.set_xlabel(f"z ({unit})")
    a2.set_ylabel("sigma² (px²)")
    a2.legend(fontsize=8)
    return fig
