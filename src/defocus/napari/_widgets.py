"""napari dock widgets: focus map, blur map with its focal plane, stack fusion, through-focus
height, kernel from a pair.

Each widget runs the library function in a :func:`napari.qt.threading.thread_worker`, so the
viewer stays responsive, then adds the results as layers. Result layers take their ``scale``
and ``units`` from the pixel size: the one typed into the widget, else the source layer's own
(when its units are a length), so maps overlay their image and napari's scale bar reads in
physical units. The numbers (sharpest line, tilt, kernel model) are shown in the widget and kept
in each result layer's ``metadata["defocus"]``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    LineEdit,
    PushButton,
    Select,
    SpinBox,
    TextEdit,
)
from napari.layers import Image, Layer
from napari.qt.threading import thread_worker
from napari.viewer import Viewer

from .._errors import BadInputError
from ..blurmap import PSF_FAMILIES, blur_map
from ..focalplane import FocalPlane, focal_plane
from ..focus import (
    DEFAULT_MEASURE,
    DEFAULT_SCALE,
    focus_map,
    focus_profile,
    in_focus_mask,
    list_measures,
    sharpest_band,
)
from ..io import PixelSize, parse_pixel_size
from ..kernel import estimate_kernel, fit_psf
from ..psf import MODELS, render
from ..stack import METHODS, fuse
from ..zseries import parse_z, through_focus

__all__ = [
    "BlurMapWidget",
    "FocusMapWidget",
    "KernelWidget",
    "StackWidget",
    "ThroughFocusWidget",
    "focal_line",
    "layer_pixel_size",
]

# the models fit_psf tries by default (all but "box"), preselected in the kernel widget
_FIT_MODELS = inspect.signature(fit_psf).parameters["models"].default


def layer_pixel_size(layer: Layer) -> PixelSize | None:
    """The pixel size (x, y) of a layer from its ``scale`` and ``units``, if they are lengths.

    Examples
    --------
    >>> layer_pixel_size(Image(np.zeros((4, 4)), scale=(2.0, 3.0), units=("nm", "nm")))
    PixelSize(x=3.0, y=2.0, unit='nm')
    >>> layer_pixel_size(Image(np.zeros((4, 4)))) is None  # plain pixels
    True
    """
    units = [f"{u:~}" for u in layer.units[-2:]]
    if units[0] != units[1]:
        return None
    try:
        return PixelSize(float(layer.scale[-1]), float(layer.scale[-2]), units[0])
    except BadInputError:  # "pixel" or another non-length unit
        return None


def focal_line(fp: FocalPlane) -> np.ndarray:
    """End points ((y0, x0), (y1, x1)), in pixel coordinates, of the fitted sharpest line.

    The line crosses the image's centre line at ``fp.position`` and is tilted ``fp.angle``
    degrees counter-clockwise as displayed (rows grow downwards); it is clipped to the image.

    Examples
    --------
    >>> from defocus.blurmap import BlurMap
    >>> from defocus.synth import tilt_map
    >>> sig = tilt_map((80, 120), position=0.5, angle=0.0, slope=0.05, floor=0.5)
    >>> one = np.ones_like(sig)
    >>> fp = focal_plane(BlurMap(sig, one, sig[2::4, 2::4], one[2::4, 2::4], 4, 0.0, "gauss"))
    >>> np.round(focal_line(fp)).astype(int).tolist()
    [[40, 0], [40, 119]]
    """
    h, w = fp.shape
    a = math.radians(fp.angle)
    if fp.axis == "rows":
        cy, cx = fp.position * h - 0.5, (w - 1) / 2
    else:
        cy, cx = (h - 1) / 2, fp.position * w - 0.5
    dy, dx = -math.sin(a), math.cos(a)
    # Liang-Barsky: the range of t for which (cy + t dy, cx + t dx) stays inside the image.
    lo, hi = -math.inf, math.inf
    for c, d, top in ((cy, dy, h - 1), (cx, dx, w - 1)):
        if abs(d) < 1e-12:
            continue
        t0, t1 = sorted(((0 - c) / d, (top - c) / d))
        lo, hi = max(lo, t0), min(hi, t1)
    if lo > hi:  # the line misses the image: nothing to draw
        return np.empty((0, 2))
    return np.array([[cy + lo * dy, cx + lo * dx], [cy + hi * dy, cx + hi * dx]])


def _pixel_size_field() -> LineEdit:
    field = LineEdit(label="pixel size", value="")
    field.tooltip = "e.g. 2.5nm; blank: from the layer's scale and units"
    return field


class _LayerCombo(ComboBox):
    """A choice of the viewer's image layers (filled in by :class:`_Widget`)."""

    def __init__(self, label: str) -> None:
        super().__init__(label=label, nullable=False)


class _Widget(Container):
    """A form, a Run button and a status line; the work runs in a napari thread worker."""

    title = ""

    def __init__(self, viewer: Viewer, fields: list) -> None:
        self.viewer = viewer
        self._run = PushButton(text="Run")
        # read-only text, not a label: the focal-plane line is long and wraps
        self.status = TextEdit(value="")
        self.status.read_only = True
        super().__init__(widgets=[*fields, self._run, self.status])
        for field in fields:
            if isinstance(field, _LayerCombo):
                field.choices = self._images
        self._run.changed.connect(self.run)
        viewer.layers.events.inserted.connect(self.reset_choices)
        viewer.layers.events.removed.connect(self.reset_choices)
        self.worker = None
        self.result: Any = None

    def _images(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Image)]

    def _plan(self) -> tuple[Callable[[], Any], Callable[[Any], None], str]:
        """Read the form: (work for the thread, what to do with its result, status text)."""
        raise NotImplementedError

    def run(self, _: Any = None):
        """Start the work in a thread; returns the worker (its ``finished`` signal ends it)."""
        try:
            work, done, what = self._plan()
        except BadInputError as exc:
            self.status.value = f"error: {exc}"
            return None

        def finish(result: Any) -> None:
            self.result = result
            done(result)

        def fail(exc: Exception) -> None:
            # like the CLI: bad input in one line, anything else named as ours
            if isinstance(exc, BadInputError):
                self.status.value = f"error: {exc}"
            else:
                self.status.value = f"error: internal: {type(exc).__name__}: {exc}"

        self._run.enabled = False
        self.status.value = what
        self.worker = thread_worker(
            work,
            connect={
                "returned": finish,
                "errored": fail,
                "finished": lambda: setattr(self._run, "enabled", True),
            },
            progress={"desc": self.title},
        )()
        return self.worker

    def _pixel_size(self, layer: Layer, text: str) -> PixelSize | None:
        return parse_pixel_size(text.strip()) if text.strip() else layer_pixel_size(layer)

    @staticmethod
    def _layer(combo: _LayerCombo) -> Image:
        if combo.value is None:
            raise BadInputError("add an image layer first")
        return combo.value

    @staticmethod
    def _frames(layer: Image, what: str) -> list[np.ndarray]:
        """The frames of a 3-D layer (frames first), refused in one line otherwise."""
        if layer.ndim != 3:
            raise BadInputError(
                f"{layer.name}: a {what} is a 3-D layer (frames first), got {layer.ndim}-D"
            )
        return [np.asarray(layer.data[i]) for i in range(layer.data.shape[0])]

    def _add_confidence(self, values: np.ndarray, layer: Layer, ps: PixelSize | None, **kw):
        """A map's confidence (0-1, grey), hidden until asked for."""
        return self._add(
            values, layer, ps, colormap="gray", contrast_limits=(0.0, 1.0), visible=False, **kw
        )

    def _add(self, data: Any, layer: Layer, ps: PixelSize | None, kind: str = "image", **kw):
        """Add a 2-D result over ``layer``: its (y, x) translate, scale/units from ``ps``."""
        place: dict[str, Any] = {"translate": tuple(layer.translate[-2:])}
        if ps is not None:
            place.update(scale=(ps.y, ps.x), units=(ps.unit, ps.unit))
        else:
            place.update(scale=tuple(layer.scale[-2:]), units=tuple(layer.units[-2:]))
        add = getattr(self.viewer, f"add_{kind}")
        return add(data, **place, **kw)

    def _plane(self, layer: Image) -> tuple[np.ndarray, str]:
        """The 2-D plane of ``layer`` shown now (the whole image for 2-D layers)."""
        nd = layer.ndim
        if nd == 2:
            return np.asarray(layer.data), ""
        point = layer.world_to_data(self.viewer.dims.point[-nd:])
        idx = tuple(
            int(np.clip(round(p), 0, s - 1)) for p, s in zip(point, layer.data.shape, strict=False)
        )
        return np.asarray(layer.data[idx[: nd - 2]]), f" [{', '.join(map(str, idx[:-2]))}]"


class FocusMapWidget(_Widget):
    """Focus map (higher = sharper), in-focus mask and the sharpest band of the shown plane."""

    title = "defocus: focus map"

    def __init__(self, napari_viewer: Viewer) -> None:
        self.image = _LayerCombo("image")
        self.measure = ComboBox(label="measure", choices=list_measures(), value=DEFAULT_MEASURE)
        self.scale = FloatSpinBox(label="scale (px)", value=DEFAULT_SCALE, min=0.5, max=100)
        self.pixel_size = _pixel_size_field()
        super().__init__(napari_viewer, [self.image, self.measure, self.scale, self.pixel_size])

    def _plan(self):
        layer = self._layer(self.image)
        plane, where = self._plane(layer)
        ps = self._pixel_size(layer, self.pixel_size.value)
        measure, scale = self.measure.value, float(self.scale.value)
        channel_axis = -1 if layer.rgb else None

        def work():
            fmap = focus_map(plane, measure=measure, scale=scale, channel_axis=channel_axis)
            return fmap, in_focus_mask(fmap), sharpest_band(focus_profile(fmap, axis="rows"))

        def done(result) -> None:
            fmap, mask, band = result
            text = (
                f"sharpest rows {band.start:.0%}–{band.end:.0%} of the height "
                f"(peak {band.peak:.0%} from the top, {band.peak_from_end:.0%} from the bottom); "
                f"{mask.mean():.0%} of pixels in focus"
            )
            meta = {"defocus": {"measure": measure, "scale_px": scale, "band": band.to_dict()}}
            top = float(np.percentile(fmap, 99.5)) or 1.0
            self._add(
                fmap,
                layer,
                ps,
                name=f"{layer.name}{where} focus ({measure})",
                colormap="inferno",
                blending="additive",
                contrast_limits=(0.0, top),
                metadata=meta,
            )
            self._add(
                mask.astype(np.uint8),
                layer,
                ps,
                kind="labels",
                name=f"{layer.name}{where} in focus",
                opacity=0.35,
                metadata=meta,
            )
            self.status.value = text

        return work, done, f"focus map of {layer.name}{where}…"


class BlurMapWidget(_Widget):
    """Blur sigma (px) and confidence of the shown plane, with the fitted focal plane."""

    title = "defocus: blur map"

    def __init__(self, napari_viewer: Viewer) -> None:
        self.image = _LayerCombo("image")
        self.psf = ComboBox(label="PSF", choices=list(PSF_FAMILIES), value="gauss")
        self.pixel_size = _pixel_size_field()
        super().__init__(napari_viewer, [self.image, self.psf, self.pixel_size])

    def _plan(self):
        layer = self._layer(self.image)
        plane, where = self._plane(layer)
        ps = self._pixel_size(layer, self.pixel_size.value)
        psf, channel_axis = self.psf.value, -1 if layer.rgb else None

        def work():
            bm = blur_map(plane, psf=psf, pixel_size=ps, channel_axis=channel_axis)
            try:
                return bm, focal_plane(bm)
            except BadInputError as exc:  # the map stands without a focal plane
                return bm, str(exc)

        def done(result) -> None:
            bm, fp = result
            summary = bm.summary()
            q = summary["sigma"]
            if q is None:
                lines = [summary["verdict"]]
            else:
                lines = [
                    f"sigma median {q['median']:.2f} px (10–90 %: {q['p10']:.2f}–{q['p90']:.2f})"
                ]
            if ps is not None and q is not None:
                f = math.sqrt(ps.x * ps.y)
                lines[0] += f" = {q['median'] * f:.3g} {ps.unit}"
            if isinstance(fp, FocalPlane):
                summary["focal_plane"] = fp.summary()
                lines.append(summary["focal_plane"]["text"])
            else:
                lines.append(f"no focal plane: {fp}")
            meta = {"defocus": summary}
            name = f"{layer.name}{where}"
            self._add(
                bm.sigma,
                layer,
                ps,
                name=f"{name} blur sigma (px)",
                colormap="viridis",
                opacity=0.7,
                contrast_limits=(0.0, float(np.percentile(bm.sigma, 99)) or 1.0),
                metadata=meta,
            )
            self._add_confidence(bm.confidence, layer, ps, name=f"{name} confidence", metadata=meta)
            if isinstance(fp, FocalPlane) and fp.significant and len(line := focal_line(fp)):
                self._add(
                    [line],
                    layer,
                    ps,
                    kind="shapes",
                    shape_type="line",
                    edge_color="red",
                    edge_width=max(bm.shape) / 200,
                    # drawn at fp.position: the nearer edge when the fitted line lies outside
                    # (the status text, from fp.summary(), carries fp.note)
                    name=f"{name} {'least-blur edge' if fp.outside else 'sharpest line'}",
                    metadata=meta,
                )
            self.status.value = "\n".join(lines)

        return work, done, f"blur map of {layer.name}{where}…"


class StackWidget(_Widget):
    """Fuse a z-stack layer (first axis = focus) into one image with a depth map."""

    title = "defocus: focus stack"

    def __init__(self, napari_viewer: Viewer) -> None:
        self.image = _LayerCombo("stack")
        self.method = ComboBox(label="method", choices=list(METHODS), value="pyramid")
        self.align = CheckBox(label="align frames", value=True)
        self.pixel_size = _pixel_size_field()
        super().__init__(napari_viewer, [self.image, self.method, self.align, self.pixel_size])

    def _plan(self):
        layer = self._layer(self.image)
        frames = self._frames(layer, "focus stack")
        ps = self._pixel_size(layer, self.pixel_size.value)
        method, align = self.method.value, bool(self.align.value)
        channel_axis = -1 if layer.rgb else None

        def work():
            return fuse(frames, method=method, align=align, channel_axis=channel_axis)

        def done(res) -> None:
            meta = {"defocus": {"method": res.method, "aligned": res.aligned.tolist()}}
            self._add(
                res.image, layer, ps, name=f"{layer.name} fused", rgb=layer.rgb, metadata=meta
            )
            self._add(
                res.depth,
                layer,
                ps,
                name=f"{layer.name} depth (frame)",
                colormap="turbo",
                contrast_limits=(0.0, max(len(frames) - 1, 1)),
                opacity=0.6,
                metadata=meta,
            )
            self._add_confidence(
                res.confidence, layer, ps, name=f"{layer.name} depth confidence", metadata=meta
            )
            failed = int((~res.aligned).sum())
            self.status.value = f"fused {len(frames)} frames ({res.method})" + (
                f"; {failed} could not be aligned" if failed else ""
            )

        return work, done, f"fusing {len(frames)} frames…"


class ThroughFocusWidget(_Widget):
    """Best focus per pixel of a through-focus layer (frames first): height in the unit of z,
    its confidence, and the best-focus surface as points in the stack's own world frame."""

    title = "defocus: through focus"

    def __init__(self, napari_viewer: Viewer) -> None:
        self.image = _LayerCombo("series")
        self.z = LineEdit(label="z", value="")
        self.z.tooltip = (
            "z of each frame, e.g. -5,0,5um; blank: from the layer's first axis (scale, "
            "translate and unit)"
        )
        self.align = CheckBox(label="align frames", value=True)
        self.pixel_size = _pixel_size_field()
        super().__init__(napari_viewer, [self.image, self.z, self.align, self.pixel_size])

    def _z(self, layer: Image, n: int) -> tuple[np.ndarray, str]:
        if self.z.value.strip():
            return parse_z(self.z.value)
        unit = f"{layer.units[0]:~}"
        try:
            PixelSize(1.0, 1.0, unit)
        except BadInputError:
            raise BadInputError(
                f"{layer.name}: the first axis has no length unit ({unit}); type the z values"
            ) from None
        return float(layer.translate[0]) + float(layer.scale[0]) * np.arange(n), unit

    def _plan(self):
        layer = self._layer(self.image)
        frames = self._frames(layer, "through-focus series")
        z, unit = self._z(layer, len(frames))
        ps = self._pixel_size(layer, self.pixel_size.value)
        align = bool(self.align.value)
        channel_axis = -1 if layer.rgb else None

        def work():
            return through_focus(
                frames, z, z_unit=unit, pixel_size=ps, align=align, channel_axis=channel_axis
            )

        def done(tf) -> None:
            summary = tf.summary()
            meta = {"defocus": summary}
            ok = tf.confidence >= 0.3
            lo, hi = np.percentile(tf.height[ok], (1, 99)) if ok.any() else (z.min(), z.max())
            self._add(
                tf.height,
                layer,
                ps,
                name=f"{layer.name} height ({unit})",
                colormap="viridis",
                contrast_limits=(float(lo), float(max(hi, lo + 1e-6))),
                opacity=0.7,
                metadata=meta,
            )
            self._add_confidence(
                tf.confidence, layer, ps, name=f"{layer.name} height confidence", metadata=meta
            )
            # best focus on a coarse grid of confident pixels, in the stack's world frame: the
            # height as a fractional frame index through the layer's own scale and translate
            # (typed z may be in another unit or origin than the layer's first axis), with the
            # layer's units, so the points overlay the stack and keep the scale bar physical
            step = max(1, max(tf.height.shape) // 64)
            rr, cc = np.mgrid[0 : tf.height.shape[0] : step, 0 : tf.height.shape[1] : step]
            keep = ok[rr, cc]
            order = np.argsort(z)
            frame = np.interp(tf.height[rr, cc][keep], z[order], order.astype(np.float64))
            world = np.stack([frame, rr[keep], cc[keep]], axis=1) * np.asarray(layer.scale)
            self.viewer.add_points(
                world + np.asarray(layer.translate),
                name=f"{layer.name} best focus",
                size=float(step * layer.scale[2]),
                face_color="yellow",
                units=tuple(layer.units),
                visible=False,
                metadata=meta,
            )
            plane = tf.plane
            tilt = (
                f"; tilt {plane['tilt_x_deg']:.2f}° x, {plane['tilt_y_deg']:.2f}° y"
                if plane.get("tilt_x_deg") is not None
                else ""
            )
            notes = [n for n in tf.notes if n != tf.fit.statement]
            self.status.value = "; ".join([tf.fit.statement + tilt, *notes])

        return work, done, f"best focus of {len(frames)} frames…"


class KernelWidget(_Widget):
    """The blur kernel from a sharp/blurred pair and the PSF model that explains it."""

    title = "defocus: kernel from pair"

    def __init__(self, napari_viewer: Viewer) -> None:
        self.sharp = _LayerCombo("sharp")
        self.blurry = _LayerCombo("blurred")
        self.size = SpinBox(label="size (px, 0 = auto)", value=0, min=0, max=63)
        self.models = Select(label="models", choices=list(MODELS), value=list(_FIT_MODELS))
        super().__init__(napari_viewer, [self.sharp, self.blurry, self.size, self.models])

    def _plan(self):
        sharp, blurry = self.sharp.value, self.blurry.value
        if sharp is None or blurry is None or sharp is blurry:
            raise BadInputError("choose two image layers: the sharp one and the blurred one")
        if sharp.rgb != blurry.rgb:
            raise BadInputError("one image is colour and the other greyscale")
        models = tuple(self.models.value)
        if not models:
            raise BadInputError("choose at least one model")
        size = int(self.size.value) or None
        s, b = self._plane(sharp)[0], self._plane(blurry)[0]
        channel_axis = -1 if blurry.rgb else None
        ps = layer_pixel_size(blurry)

        def work():
            est = estimate_kernel(s, b, size=size, channel_axis=channel_axis)
            k = est.kernel if est.kernel.ndim == 2 else est.kernel.mean(axis=-1)
            fit = fit_psf(k, models=models)
            model = render(fit.model, shape=k.shape, offset=fit.best.centre, **fit.best.params)
            return est, k, fit, model

        def done(result) -> None:
            est, k, fit, model = result
            best = fit.best
            params = ", ".join(f"{n}={v:.3g}" for n, v in best.params.items())
            text = f"{fit.model}({params}) px; kernel sigma {est.sigma:.3g} px"
            if ps is not None:
                text += f" = {est.sigma * math.sqrt(ps.x * ps.y):.3g} {ps.unit}"
            meta = {"defocus": {"kernel": est.to_dict(), "fit": fit.to_dict()}}
            self._add(
                k,
                blurry,
                ps,
                name=f"{blurry.name} kernel",
                colormap="magma",
                interpolation2d="nearest",
                metadata=meta,
            )
            self._add(
                model,
                blurry,
                ps,
                name=f"{blurry.name} kernel model ({fit.model})",
                colormap="magma",
                interpolation2d="nearest",
                visible=False,
                metadata=meta,
            )
            self.status.value = text + f"; model misfit {best.rel_error:.2g}"

        return work, done, f"kernel {sharp.name} → {blurry.name}…"
