"""One self-contained HTML page per analysis: pictures embedded as PNG, numbers with their units.

For each image the page shows the image, the blur-sigma heatmap with its colourbar, the profile
across the sharpest line with the focal-plane fit, histograms of intensity, sigma and confidence,
the summary numbers and the blur by band; given a sharp image of the same scene, also the
estimated kernel beside the PSF model that explains it best. Everything is inline (no scripts,
no links), so the file can be mailed or archived on its own, and the same input always gives the
same bytes.
"""

from __future__ import annotations

import base64
import html
import io as _io
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from . import __version__
from ._array import luminance
from ._errors import BadInputError
from ._types import Progress, PSFFamily, progress_part
from .blurmap import PSF_FAMILIES, blur_map
from .focalplane import FocalPlane, focal_plane
from .io import ImageData, PixelSize, atomic_path, parse_pixel_size, read_image
from .kernel import estimate_kernel, fit_psf
from .psf import convert_width, render
from .viz import (
    focal_plane_figure,
    histogram_figure,
    kernel_figure,
    kernel_model_figure,
    series_figure,
    sigma_heatmap,
    surface_figure,
    to_display,
)

__all__ = [
    "Section",
    "make_report",
    "report_page",
    "report_section",
    "through_focus_section",
]

ImageLike = str | os.PathLike | ImageData | np.ndarray

# Pictures of the image itself are shrunk (block mean) to at most this many pixels a side:
# enough for a page, and it keeps a report of a large SEM frame a few MB at most.
_MAX_DISPLAY = 1024
_DPI = 90

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1180px;margin:1.5em auto;padding:0 1em;
color:#222;background:#fff}
h1{font-size:1.5em}h2{border-bottom:2px solid #3b528b;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em;margin:1.2em 0 .4em}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:.92em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f2f2f2}td.n{text-align:right;font-variant-numeric:tabular-nums}
figure{display:inline-block;margin:.5em 1em .8em 0;vertical-align:top;max-width:100%}
figure.half{width:calc(50% - 1.2em)}figure.half img{width:100%}
figure img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:.85em;color:#555;max-width:560px}
.error{color:#a40000}.note{color:#555;font-size:.9em}
"""


@dataclass(frozen=True)
class Section:
    """The report of one image: its HTML fragment and the numbers shown in it.

    Attributes
    ----------
    name : str
        Heading of the section (the file name for files).
    html : str
        Self-contained HTML fragment (``<section>`` element, pictures inline).
    summary : dict
        JSON-ready numbers: ``image``, ``blur`` (:meth:`BlurMap.summary`), ``focal_plane``
        (:meth:`FocalPlane.summary`, or an ``error``) and, with a pair, ``kernel``.
    """

    name: str
    html: str
    summary: dict[str, Any]


def _png(fig: Figure) -> bytes:
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    return buf.getvalue()


def _picture_png(picture: np.ndarray) -> bytes:
    import imageio.v3 as iio
    from skimage.transform import downscale_local_mean

    factor = int(np.ceil(max(picture.shape[:2]) / _MAX_DISPLAY))
    if factor > 1:
        f = (factor, factor) + (1,) * (picture.ndim - 2)
        picture = np.round(downscale_local_mean(picture, f)).astype(np.uint8)
    return iio.imwrite("<bytes>", picture, extension=".png")


def _img(png: bytes, alt: str, caption: str, *, half: bool = False) -> str:
    data = base64.b64encode(png).decode("ascii")
    cls = ' class="half"' if half else ""
    return (
        f'<figure{cls}><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _table(rows: Sequence[tuple[str, str]]) -> str:
    """Two columns: a name and its value."""
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _grid(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """A table with a header row and right-aligned cells."""
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{html.escape(c)}</td>' for c in r) + "</tr>" for r in rows
    )
    return f"<table>{head}{body}</table>"


def _as_image(
    image: ImageLike, pixel_size: str | PixelSize | None, channel_axis: int | None
) -> ImageData:
    """Read a path, or wrap an array, as ImageData; ``pixel_size`` overrides metadata."""
    override = parse_pixel_size(pixel_size)
    if isinstance(image, ImageData):
        return (
            image
            if override is None
            else replace(image, pixel_size=override, pixel_size_source="override")
        )
    if isinstance(image, str | os.PathLike):
        return read_image(image, pixel_size=override)
    data = np.asarray(image)
    if data.ndim not in (2, 3) or (data.ndim == 3 and channel_axis is None):
        raise BadInputError(
            f"an image must be 2-D, or 3-D with channel_axis, got shape {data.shape}"
        )
    return ImageData(
        data=data,
        luminance=luminance(data, channel_axis=channel_axis),
        channel_axis=channel_axis,
        pixel_size=override,
        pixel_size_source="none" if override is None else "override",
    )


def _physical(ps: PixelSize | None) -> tuple[str, float] | None:
    """(unit, length of one pixel in it): geometric mean of x and y, in a readable unit."""
    if ps is None:
        return None
    r = ps.readable()
    return r.unit, float(np.sqrt(r.x * r.y))


def _fmt(v: float, err: float | None, unit: str) -> str:
    """``v ± err unit``, leaving out an unknown or infinite error."""
    text = f"{v:.4g}" if err is None or not np.isfinite(err) else f"{v:.4g} ± {err:.2g}"
    return f"{text} {unit}"


def _kernel_part(
    sharp: ImageData,
    image: ImageData,
    name: str,
    models: Sequence[str] | None,
    progress: Progress | None,
) -> tuple[str, dict[str, Any]]:
    if sharp.channel_axis != image.channel_axis:
        raise BadInputError("one image is colour and the other greyscale; give a matching pair")
    est = estimate_kernel(
        sharp.data,
        image.data,
        channel_axis=image.channel_axis,
        progress=progress_part(progress, 50, 85, 100),
    )
    k = est.kernel if est.kernel.ndim == 2 else est.kernel.mean(axis=-1)
    fit = fit_psf(k) if models is None else fit_psf(k, models=models)
    if progress is not None:
        progress(100, 100, "PSF model fit")
    best = fit.best
    shown = ", ".join(
        f"{p} = {_fmt(v, best.errors.get(p), '°' if p == 'angle' else 'px')}"
        for p, v in best.params.items()
    )
    title = f"{fit.model}({shown}); sigma {best.sigma:.3g} px"
    model = render(fit.model, shape=k.shape, offset=best.centre, **best.params)
    rows = [
        ("best model (lowest BIC)", title),
        ("kernel sigma (moments)", f"{est.sigma:.4g} px"),
        ("kernel size", f"{k.shape[0]} x {k.shape[1]} px"),
        ("model misfit ‖model − kernel‖ / ‖kernel‖", f"{best.rel_error:.3g}"),
        ("registration shift (dy, dx)", f"({est.shift[0]:.2f}, {est.shift[1]:.2f}) px"),
        ("intensity mapping", f"gain {np.mean(est.gain):.4g}, offset {np.mean(est.offset):.4g}"),
        ("fit residual (RMS)", f"{np.mean(est.residual):.4g} (blurred image's units)"),
    ]
    fits = [
        (
            m + (" (chosen)" if m == fit.model else ""),
            ", ".join(f"{p}={v:.3g}" for p, v in f.params.items()),
            f"{f.sigma:.3g}",
            f"{f.rel_error:.3g}",
            f"{f.bic - best.bic:.1f}",
        )
        for m, f in sorted(fit.fits.items(), key=lambda kv: kv[1].bic)
    ]
    part = (
        "<h3>Kernel from the pair</h3>"
        + _table(rows)
        + _grid(fits, ("model", "parameters (px; angles in °)", "sigma (px)", "misfit", "ΔBIC"))
        + _img(
            _png(kernel_figure(k, title=f"estimated kernel, sigma {est.sigma:.3g} px")),
            f"{name}: estimated kernel",
            "Kernel estimated from the pair (sharp → this image), with its radial profile on "
            "linear and log axes.",
        )
        + _img(
            _png(kernel_model_figure(k, model, title=title)),
            f"{name}: kernel and model",
            "The kernel beside the model that explains it best, and their radial profiles.",
        )
    )
    summary = {
        "sigma_px": est.sigma,
        "model": fit.model,
        "params": best.params,
        "model_sigma_px": best.sigma,
        "fit_rel_error": best.rel_error,
        "estimate": est.to_dict(),
    }
    return part, summary


def report_section(
    image: ImageLike,
    *,
    sharp: ImageLike | None = None,
    psf: PSFFamily = "gauss",
    pixel_size: str | PixelSize | None = None,
    channel_axis: int | None = None,
    name: str | None = None,
    models: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> Section:
    """Analyse one image and lay out its part of the report.

    Parameters
    ----------
    image : path, ImageData or ndarray
        The (blurred) image.
    sharp : path, ImageData or ndarray, optional
        A sharp image of the same scene: adds the kernel estimated from the pair and its model.
    psf : {"gauss", "disk", "auto"}
        PSF family for :func:`defocus.blur_map`.
    pixel_size : str or PixelSize, optional
        Overrides the pixel size from metadata, e.g. ``"10nm"``.
    channel_axis : int, optional
        Colour axis of array inputs (files carry their own layout).
    name : str, optional
        Heading; default the file name, or ``"image"``.
    models : sequence of str, optional
        PSF models to fit to the kernel (default: those of :func:`defocus.fit_psf`).
    progress : callable, optional
        Called as ``progress(done, 100, what)`` through the blur map, the focal plane, the
        pictures and, with ``sharp``, the kernel estimate and its model fit.

    Returns
    -------
    Section

    Examples
    --------
    >>> from skimage import data
    >>> sec = report_section(data.camera()[::4, ::4], pixel_size="50nm")
    >>> sec.summary["blur"]["unit"], sec.html.count("<img")
    ('px', 4)
    """
    if psf not in PSF_FAMILIES:
        raise BadInputError(f"unknown psf {psf!r}; choose from {', '.join(PSF_FAMILIES)}")
    img = _as_image(image, pixel_size, channel_axis)
    if name is None:
        name = img.path.name if img.path is not None else "image"
    # Shares of the work in percent: the blur map dominates unless a kernel is estimated too.
    mapped, fitted, drawn = (35, 40, 50) if sharp is not None else (70, 75, 100)

    def report(done: int, what: str) -> None:
        if progress is not None:
            progress(done, 100, what)

    bm = blur_map(
        img.data,
        psf=psf,
        pixel_size=img.pixel_size,
        channel_axis=img.channel_axis,
        progress=progress_part(progress, 0, mapped, 100),
    )
    try:
        fp: FocalPlane | None = focal_plane(bm)
        fp_note = ""
    except BadInputError as exc:  # e.g. too few confident measurements: the map still stands
        fp, fp_note = None, str(exc)
    report(fitted, "focal plane")
    physical = _physical(img.pixel_size)
    blur = bm.summary()
    q = blur["sigma"]
    summary: dict[str, Any] = {
        "image": {
            "name": name,
            "shape": list(img.data.shape),
            "dtype": str(img.data.dtype),
            "pixel_size": None if img.pixel_size is None else str(img.pixel_size),
            "pixel_size_source": img.pixel_size_source,
        },
        "blur": blur,
    }

    def px(v: float) -> str:
        text = f"{v:.2f} px"
        return text if physical is None else f"{text} ({v * physical[1]:.3g} {physical[0]})"

    ps_text = "unknown" if img.pixel_size is None else str(img.pixel_size)
    rows = [
        ("image", f"{' x '.join(map(str, img.data.shape))}, {img.data.dtype}"),
        ("pixel size", f"{ps_text} (source: {img.pixel_size_source})"),
        ("PSF family assumed", psf),
    ]
    if q is None:  # the image supports no blur value: say so instead of a number
        rows.append(("blur sigma", blur["verdict"]))
    else:
        rows += [
            ("blur sigma, median", px(q["median"])),
            ("blur sigma, 10-90 %", f"{px(q['p10'])} – {px(q['p90'])}"),
            (
                "median as other sizes",
                # the blur-width conversions of defocus.psf (docs/architecture.md)
                f"FWHM {convert_width(q['median'], to='fwhm', model='gauss'):.2f} px, "
                f"20-80 % edge {convert_width(q['median'], to='edge', model='gauss'):.2f} px "
                f"(Gaussian); disk radius {convert_width(q['median'], to='radius'):.2f} px",
            ),
        ]
    rows += [
        ("mean confidence", f"{blur['mean_confidence']:.2f}"),
        ("measured fraction of cells", f"{blur['measured_fraction']:.0%}"),
        ("noise sigma", f"{blur['noise_sigma']:.4g} (intensity units)"),
    ]
    if fp is not None and not fp.significant:
        summary["focal_plane"] = fp.summary()
        rows.append(("sharpest line", summary["focal_plane"]["text"]))
    elif fp is not None:
        fps = fp.summary()
        summary["focal_plane"] = fps
        e = fp.errors
        where = "height" if fp.axis == "rows" else "width"
        ends = ("top", "bottom") if fp.axis == "rows" else ("left", "right")
        line = (
            f"{fp.fitted_position:.1%} ± {e['position']:.1%} of the {where} from the {ends[0]} "
            f"({1 - fp.fitted_position:.1%} from the {ends[1]})"
        )
        if fp.outside:  # position is clamped to the nearer edge; say so and give the fit's
            line = (
                f"least blur at the {ends[int(fp.position)]} edge ({fp.note}); the fitted "
                f"line, extrapolated, lies at {line}"
            )
        rows += [
            ("sharpest line", line),
            ("tilt of the line", f"{fp.angle:.1f} ± {e['angle']:.1f}°"),
            ("sigma on the line, sigma0", f"{fp.sigma0:.2f} ± {e['sigma0']:.2f} px"),
            ("growth k (sigma per px of distance)", f"{fp.slope:.4f} ± {e['slope']:.4f} px/px"),
            ("fit RMS residual", f"{fp.rms_log_residual:.3f} (log units; 0.1 ≈ 10 %)"),
        ]
    else:
        summary["focal_plane"] = {"error": fp_note}
        rows.append(("sharpest line", f"not fitted: {fp_note}"))

    pictures = [
        _img(
            _picture_png(to_display(img.data, channel_axis=img.channel_axis)),
            f"{name}: image",
            f"The image ({ps_text} per pixel), stretched for display (0.5-99.5 % percentiles).",
            half=True,
        ),
        _img(
            _png(
                sigma_heatmap(
                    img.data,
                    bm.sigma,
                    channel_axis=img.channel_axis,
                    pixel_size=img.pixel_size,
                    title=f"blur sigma ({psf} PSF)",
                )
            ),
            f"{name}: blur heatmap",
            "Blur sigma in px over the image: the per-axis standard deviation of the local PSF.",
            half=True,
        ),
    ]
    if fp is not None:
        pictures.append(
            _img(
                _png(
                    focal_plane_figure(
                        bm,
                        fp,
                        title=f"sharpest at {fp.position:.1%}, tilt {fp.angle:.1f}°; "
                        f"sigma0 = {fp.sigma0:.2f} px, k = {fp.slope:.4f} px/px"
                        if fp.significant
                        else fp.headline,
                    )
                ),
                f"{name}: profile with focal-plane fit",
                "Median blur per row (or column) with its 16-84 % range, and the fitted model.",
            )
        )
    pictures.append(
        _img(
            _png(histogram_figure(img, bm)),
            f"{name}: histograms",
            "Intensities (full dtype range, log counts), blur sigma and confidence.",
        )
    )
    parts = [
        f"<section><h2>{html.escape(name)}</h2>",
        "<h3>Summary</h3>",
        _table(rows),
    ]
    if fp is not None:
        key = "rows" if fp.axis == "rows" else "cols"
        bands = [
            (
                f"{100 * b[key][0]:.0f}–{100 * b[key][1]:.0f} %",
                f"{b['sigma']:.2f} ± {b['spread']:.2f}",
                f"{b['confidence']:.2f}",
            )
            for b in fp.bands
        ]
        span = "height from the top" if fp.axis == "rows" else "width from the left"
        parts.append(
            "<h3>Blur by band</h3>"
            + _grid(bands, (f"band ({span})", "sigma ± half 16-84 % (px)", "confidence"))
        )
    parts.append("<h3>Pictures</h3>" + "".join(pictures))
    report(drawn, "pictures")
    if sharp is not None:
        sharp_img = _as_image(sharp, pixel_size, channel_axis)
        part, summary["kernel"] = _kernel_part(sharp_img, img, name, models, progress)
        parts.append(part)
    parts.append("</section>")
    return Section(name=name, html="\n".join(parts), summary=summary)


def report_page(
    sections: Sequence[Section],
    *,
    title: str = "defocus report",
    failures: Sequence[tuple[str, str]] = (),
) -> str:
    """Assemble sections into one HTML page, listing inputs that could not be analysed.

    Examples
    --------
    >>> parts = [Section(n, f"<section>{n}</section>", {}) for n in ("a.tif", "b.tif")]
    >>> page = report_page(parts, failures=[("c.tif", "no such file")])
    >>> page.startswith("<!DOCTYPE html>"), 'href="#s1"' in page, "c.tif: no such file" in page
    (True, True, True)
    """
    esc = html.escape
    items = "".join(f'<li><a href="#s{i}">{esc(s.name)}</a></li>' for i, s in enumerate(sections))
    bodies = "\n".join(
        s.html.replace("<section>", f'<section id="s{i}">', 1) for i, s in enumerate(sections)
    )
    failed = ""
    if failures:
        failed = (
            '<h2 class="error">Not analysed</h2><ul>'
            + "".join(f'<li class="error">{esc(n)}: {esc(m)}</li>' for n, m in failures)
            + "</ul>"
        )
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_CSS}</style></head><body>\n"
        f"<h1>{esc(title)}</h1>"
        f'<p class="note">defocus {esc(__version__)}. Blur is sigma in pixels: the per-axis '
        "standard deviation of the local point-spread function (Gaussian FWHM = 2.3548 sigma, "
        "uniform disk radius = 2 sigma). Confidence is low where the blur was filled in from "
        "elsewhere (flat regions).</p>"
        + (f"<ul>{items}</ul>" if len(sections) > 1 else "")
        + failed
        + f"\n{bodies}\n</body></html>\n"
    )


def make_report(
    images: ImageLike | Sequence[ImageLike],
    *,
    sharp: ImageLike | None = None,
    psf: PSFFamily = "gauss",
    pixel_size: str | PixelSize | None = None,
    channel_axis: int | None = None,
    models: Sequence[str] | None = None,
    title: str = "defocus report",
    output: str | os.PathLike | None = None,
    progress: Progress | None = None,
) -> str:
    """Analyse images and return (and optionally write) a self-contained HTML report.

    Parameters
    ----------
    images : path, ImageData or ndarray, or a sequence of them
        The images to report on, one section each.
    sharp : path, ImageData or ndarray, optional
        A sharp image of the same scene: each section adds the kernel estimated from the pair
        (sharp → image) and the PSF model that explains it.
    psf, pixel_size, channel_axis, models
        As in :func:`report_section`.
    title : str
        Page title.
    output : path, optional
        Also write the page there, atomically (temporary file, then rename).
    progress : callable, optional
        Called as ``progress(done, 100 × images, what)``, each image's section counting 100.

    Returns
    -------
    str
        The HTML page.

    Examples
    --------
    >>> import tempfile
    >>> from skimage import data
    >>> out = Path(tempfile.mkdtemp()) / "report.html"
    >>> page = make_report(data.camera()[::4, ::4], output=out)
    >>> out.read_text(encoding="utf-8") == page
    True
    """
    if isinstance(images, str | os.PathLike | ImageData) or (
        isinstance(images, np.ndarray) and images.dtype != object
    ):
        images = [images]
    if not images:
        raise BadInputError("give at least one image to report on")
    sharp_img = None if sharp is None else _as_image(sharp, pixel_size, channel_axis)
    names = [Path(im).name if isinstance(im, str | os.PathLike) else None for im in images]
    sections = [
        report_section(
            im,
            sharp=sharp_img,
            psf=psf,
            pixel_size=pixel_size,
            channel_axis=channel_axis,
            models=models,
            name=name if name is not None or len(images) == 1 else f"image {i + 1}",
            progress=progress_part(progress, 100 * i, 100 * (i + 1), 100 * len(images)),
        )
        for i, (im, name) in enumerate(zip(images, names, strict=True))
    ]
    page = report_page(sections, title=title)
    if output is not None:
        with atomic_path(output) as tmp:
            tmp.write_text(page, encoding="utf-8")
    return page


# --------------------------------------------------------------------------------------------
# Through-focus series


def through_focus_section(
    tf: Any, image: ImageLike, *, name: str = "through-focus series"
) -> Section:
    """The report part of a :class:`~defocus.zseries.ThroughFocus`: height over ``image`` (one
    frame), its 3-D view, the focus curve and series fit, and the numbers.

    Examples
    --------
    >>> from defocus.zseries import through_focus
    >>> rng = np.random.default_rng(0)
    >>> frames = [rng.random((64, 64)) * (1 + i) for i in range(3)]
    >>> sec = through_focus_section(through_focus(frames, [0, 1, 2], align=False), frames[1])
    >>> sec.html.count("<img"), sec.summary["z_unit"]
    (3, 'µm')
    """
    from .viz import height_figure

    img = _as_image(image, None, None)
    s = tf.summary()
    u = tf.z_unit
    ok = tf.confidence >= 0.3
    rows = [
        ("frames", f"{len(tf.z)}, z {tf.z[0]:g} to {tf.z[-1]:g} {u}"),
        ("series best focus (focus-curve peak)", f"{tf.focus_peak:.4g} {u}"),
        ("series fit", tf.fit.statement),
    ]
    k = s["blur_growth_k"]["value"]
    rows.append(("blur growth k", "not measurable" if k is None else f"{k:.4g} px/{u}"))
    dof = s["depth_of_field"]
    if dof["value"] is not None:
        rows.append(
            (
                "depth of field",
                f"{dof['value']:.4g} {u} (sigma within {dof['tolerance_sigma_px']:.3g} px)",
            )
        )
    plane = tf.plane
    if plane.get("tilt_x_deg") is not None:
        rows.append(
            (
                "mean plane",
                f"tilt {plane['tilt_x_deg']:.2f}° along x, {plane['tilt_y_deg']:.2f}° along y",
            )
        )
    else:
        rows.append(("mean plane", plane.get("note", "fitted, tilt needs the pixel size")))
    rows += [("note", n) for n in s["notes"]]
    pictures = []
    if ok.mean() >= 0.01:
        pictures += [
            _img(
                _png(
                    height_figure(
                        tf,
                        img.data,
                        label=f"best-focus z ({u}); blank: not measurable",
                        channel_axis=img.channel_axis,
                    )
                ),
                f"{name}: height",
                "Height: the z at which each pixel is sharpest, where the focus curve peaks "
                "clearly (confidence >= 0.3).",
                half=True,
            ),
            _img(_png(surface_figure(tf)), f"{name}: 3-D", "The height map in 3-D.", half=True),
        ]
    pictures.append(
        _img(
            _png(series_figure(tf)),
            f"{name}: focus curve and blur",
            "Left: the field's mean focus measure per frame. Right: the field's mean sigma² "
            "per frame with the fit sigma² = sigma0² + k² (z - z0)².",
        )
    )
    body = f"<section><h2>{html.escape(name)}</h2>{_table(rows)}" + "".join(pictures) + "</section>"
    return Section(name=name, html=body, summary=s)
