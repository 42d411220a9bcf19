"""Shared ground-truth scene generation for the defocus benchmarks.

Everything here is deterministic: each function takes explicit parameters or a seed.

Test images are real sharp photographs shipped with scikit-image (no download). They are the
benchmark's TEST set: the blur-map method is developed on *other* scikit-image images
(astronaut, coffee, chelsea, rocket, retina, hubble, page, text, ...), which must never appear here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import lru_cache, partial

import numpy as np
from numpy.typing import NDArray
from scipy import fft as sfft
from scipy import ndimage as ndi

from defocus import synth

F32 = NDArray[np.float32]

TEST_IMAGES: tuple[str, ...] = (
    "gravel",
    "brick",
    "grass",
    "camera",
    "moon",
    "coins",
    "motorcycle_left",
)
SIGMA_MIN, SIGMA_MAX = 0.5, 8.0
BORDER = 16  # px excluded from all scores (= 2 * SIGMA_MAX: padding artefacts live there)


# --------------------------------------------------------------------------- images


def load_image(name: str) -> F32:
    """Return a scikit-image TEST image as float32 greyscale in [0, 1] (values / 255)."""
    import skimage.data as data
    from skimage.color import rgb2gray

    if name == "motorcycle_left":
        rgb = data.stereo_motorcycle()[0]  # reads files shipped with scikit-image
        return rgb2gray(rgb).astype(np.float32)
    img = getattr(data, name)()
    if img.ndim == 3:
        img = rgb2gray(img)
        return img.astype(np.float32)
    return (img / 255.0).astype(np.float32)


def load_motorcycle_disparity() -> F32:
    """Motorcycle disparity (px), with occluded/invalid (inf) pixels filled by nearest valid."""
    import skimage.data as data

    disp = np.asarray(data.stereo_motorcycle()[2], dtype=np.float32)
    bad = ~np.isfinite(disp)
    if bad.any():
        idx = ndi.distance_transform_edt(bad, return_distances=False, return_indices=True)
        disp = disp[tuple(idx)]
    return disp


# --------------------------------------------------------------------------- sigma maps


def tilt_sigma(
    shape: tuple[int, int],
    *,
    band_frac: float,
    angle_deg: float,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
) -> F32:
    """Tilted-plane blur: sharp band at ``band_frac`` of the height, sigma linear in distance."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = np.deg2rad(angle_deg)
    y0 = band_frac * (h - 1) + np.tan(a) * (xx - (w - 1) / 2)
    d = np.abs(yy - y0) * np.cos(a)
    return (sigma_min + (sigma_max - sigma_min) * d / d.max()).astype(np.float32)


def region_sigma(
    shape: tuple[int, int],
    *,
    seed: int,
    values: tuple[float, ...] = (0.5, 1.0, 1.8, 3.0, 5.0, 8.0),
) -> F32:
    """Piecewise-constant blur: Voronoi cells, each with one sigma from ``values`` (shuffled)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    n = len(values)
    centres = rng.uniform([0, 0], [h, w], size=(n, 2))
    yy, xx = np.mgrid[0:h, 0:w]
    d2 = (yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2
    lab = np.argmin(d2, axis=0)
    vals = rng.permutation(np.asarray(values, dtype=np.float32))
    return vals[lab].astype(np.float32)


def depth_sigma(
    disparity: F32,
    *,
    focus_percentile: float = 60.0,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
) -> F32:
    """Thin-lens blur from disparity: defocus ∝ |1/Z - 1/Z_f| ∝ |d - d_f|.

    The defocus term adds in quadrature to a residual lens blur ``sigma_min``; the 99th
    percentile of |d - d_f| maps to ``sigma_max`` (values above are clipped).
    """
    dd = np.abs(disparity - np.percentile(disparity, focus_percentile))
    k = np.sqrt(sigma_max**2 - sigma_min**2) / np.percentile(dd, 99)
    s = np.sqrt(sigma_min**2 + (k * dd) ** 2)
    return np.clip(s, sigma_min, sigma_max).astype(np.float32)


# --------------------------------------------------------------------------- rendering


@lru_cache(maxsize=64)
def disk_kernel(sigma: float, oversample: int = 32) -> F32:
    """Anti-aliased uniform disk whose per-axis second moment is exactly ``sigma**2``.

    A pixel-integrated disk of radius R has variance ≈ R²/4 + 1/12, so R is solved for (it is
    ≈ 2·sigma for sigma ≥ 1, and 0.82 px rather than 1 px at sigma = 0.5).
    """

    def render(r: float) -> NDArray[np.float64]:
        half = int(np.ceil(r)) + 1
        n = 2 * half + 1
        sub = (np.arange(n * oversample) + 0.5) / oversample - half - 0.5
        yy, xx = np.meshgrid(sub, sub, indexing="ij")
        inside = (yy**2 + xx**2 <= r * r).astype(np.float64)
        k = inside.reshape(n, oversample, n, oversample).mean(axis=(1, 3))
        return k / k.sum()

    def var(r: float) -> float:
        k = render(r)
        x = np.arange(k.shape[0]) - k.shape[0] // 2
        return float((k.sum(axis=0) * x**2).sum())

    lo, hi = 0.3, 2 * sigma + 2
    for _ in range(40):  # bisection: var(r) is monotone in r
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if var(mid) < sigma**2 else (lo, mid)
    return render(0.5 * (lo + hi)).astype(np.float32)


def blur_uniform(image: F32, sigma: float, family: str) -> F32:
    """Blur with one PSF (reflect boundary). Gaussian: scipy; disk: FFT convolution."""
    if family == "gauss":
        return ndi.gaussian_filter(image, sigma, mode="reflect", truncate=4.0)
    k = disk_kernel(round(float(sigma), 6))
    p = k.shape[0] // 2
    padded = np.pad(image, p, mode="symmetric")  # same as ndimage "reflect"
    shape = [s + k.shape[0] - 1 for s in padded.shape]
    fshape = [sfft.next_fast_len(s, real=True) for s in shape]
    out = sfft.irfft2(sfft.rfft2(padded, fshape) * sfft.rfft2(k, fshape), fshape)
    return out[2 * p : 2 * p + image.shape[0], 2 * p : 2 * p + image.shape[1]].astype(np.float32)


def blur_varying_levels(
    image: F32, sigma_map: F32, *, psf: str = "gauss", max_log_step: float = 0.1
) -> F32:
    """Spatially varying blur by a level stack (gather model).

    The image is blurred at levels spaced ≤ ``max_log_step`` in log sigma; each pixel linearly
    interpolates (in log sigma) between the two levels that bracket its sigma.
    """
    smin = float(sigma_map.min())
    smax = float(sigma_map.max())
    if smax / smin < 1 + 1e-6:
        return blur_uniform(image, smin, psf)
    n = int(np.ceil(np.log(smax / smin) / max_log_step)) + 1
    levels = np.geomspace(smin, smax, n)
    t = (np.log(sigma_map) - np.log(smin)) / (np.log(smax / smin)) * (n - 1)
    t = np.clip(t, 0, n - 1)
    out = np.zeros_like(image, dtype=np.float32)
    for i, s in enumerate(levels):
        w = np.clip(1.0 - np.abs(t - i), 0.0, None)  # hat weight of level i
        if w.any():
            out += w * blur_uniform(image, float(s), psf)
    return out


def get_renderer() -> tuple[Callable[[F32, F32, str], F32], str]:
    """Return ``(render(image, sigma_map, family), description)``.

    Uses ``defocus.synth.blur_varying`` (gather model) when it is importable, otherwise the
    private level stack above.
    """
    try:
        synth = importlib.import_module("defocus.synth")
        fn = synth.blur_varying
    except (ImportError, AttributeError):
        return (
            lambda im, s, fam: blur_varying_levels(im, s, psf=fam),
            "private level stack (benchmarks/_scenes.py; Δlog σ ≤ 0.1, linear interpolation)",
        )

    def render(im: F32, s: F32, fam: str) -> F32:
        return np.asarray(fn(im, s, psf=fam, method="gather"), dtype=np.float32)

    return render, "defocus.synth.blur_varying(method='gather')"


def add_noise(image: F32, level: float, *, ref_range: float, seed: int) -> F32:
    """Add white Gaussian noise of std ``level * ref_range`` (ref_range = sharp image's range)."""
    if level <= 0:
        return image
    rng = np.random.default_rng(seed)
    n = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(level * ref_range)
    return (image + n).astype(np.float32)


# --------------------------------------------------------------------------- realistic degradations
#
# Each takes the clean blurred scene (float, 1.0 = the 8-bit white of the source photograph)
# and a seeded generator, and returns what a camera or microscope would record: 2-D, or
# (H, W, 3) RGB after demosaicing. They never change the blur, so the σ map stays the truth.

READ_NOISE_E = 3.0  # read noise in electrons rms: a typical scientific / phone CMOS sensor
RAW_RGB_GAIN = (0.55, 1.0, 0.75)  # raw R, G, B response to grey in daylight, G = 1
SCAN_OFFSET_STD = 0.01  # SEM per-line offset, std in units of the 8-bit white
JITTER_RMS_PX = 0.3  # SEM per-line horizontal position error, rms px
SEM_FULL_WELL = 1000.0  # detected electrons at white, for the SEM-like conditions


def photon_noise(image: F32, rng: np.random.Generator, *, full_well: float) -> F32:
    """Poisson–Gaussian sensor noise: intensity 1.0 collects ``full_well`` electrons."""
    counts = synth.add_poisson_noise(np.clip(image, 0, None), counts_per_unit=full_well, rng=rng)
    return synth.add_gaussian_noise(counts, READ_NOISE_E / full_well, rng=rng)


def bayer_mosaic(rgb: F32) -> F32:
    """RGGB colour-filter array: R at (even, even), B at (odd, odd), G elsewhere."""
    raw = rgb[..., 1].copy()
    raw[0::2, 0::2] = rgb[0::2, 0::2, 0]
    raw[1::2, 1::2] = rgb[1::2, 1::2, 2]
    return raw


def demosaic_bilinear(raw: F32) -> F32:
    """Bilinear demosaicing of an RGGB mosaic to (H, W, 3).

    Each channel's samples, zero elsewhere, are convolved with the kernel that averages the
    nearest samples of that channel; "mirror" keeps the colour-filter parity at the edges.
    """
    h, w = raw.shape
    yy, xx = np.mgrid[0:h, 0:w]
    sites = ((yy % 2 == 0) & (xx % 2 == 0), (yy + xx) % 2 == 1, (yy % 2 == 1) & (xx % 2 == 1))
    k_rb = np.outer([1, 2, 1], [1, 2, 1]).astype(np.float32) / 4
    k_g = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], np.float32) / 4
    return np.stack(
        [
            ndi.convolve(raw * m, k_g if c == 1 else k_rb, mode="mirror")
            for c, m in enumerate(sites)
        ],
        axis=-1,
    ).astype(np.float32)


def colour_camera(image: F32, rng: np.random.Generator, *, full_well: float = 1000.0) -> F32:
    """A grey scene through a Bayer sensor: raw channel gains, sensor noise, demosaic, white
    balance (which amplifies the R and B noise, as in a real camera)."""
    gain = np.asarray(RAW_RGB_GAIN, np.float32)
    raw = photon_noise(bayer_mosaic(image[..., None] * gain), rng, full_well=full_well)
    return (demosaic_bilinear(raw) / gain).astype(np.float32)


def quantise_8bit(image: F32) -> F32:
    """Round to 256 grey levels (clipped to [0, 1])."""
    return (np.rint(np.clip(image, 0, 1) * 255) / 255).astype(np.float32)


def jpeg(image: F32, *, quality: int) -> F32:
    """8-bit JPEG round trip in memory (grey or RGB)."""
    rgb = image.ndim == 3
    out = synth.jpeg_compress(
        np.clip(image, 0, 1) * 255, quality=quality, channel_axis=-1 if rgb else None
    )
    return (out / 255).astype(np.float32)


def camera_pipeline(image: F32, rng: np.random.Generator) -> F32:
    """Bayer sensor with noise, demosaic, white balance, 8 bits, JPEG quality 90."""
    return jpeg(quantise_8bit(colour_camera(image, rng)), quality=90)


def scan_lines(image: F32, rng: np.random.Generator) -> F32:
    """SEM-like: detector shot noise plus a random offset on every scan line (row)."""
    offsets = rng.normal(0.0, SCAN_OFFSET_STD, (image.shape[0], 1)).astype(np.float32)
    return photon_noise(image + offsets, rng, full_well=SEM_FULL_WELL)


def line_jitter(image: F32, rng: np.random.Generator) -> F32:
    """SEM-like: every row sampled at a random sub-pixel horizontal shift, then shot noise."""
    h, w = image.shape
    dx = rng.normal(0.0, JITTER_RMS_PX, (h, 1))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    shifted = ndi.map_coordinates(image, [yy, xx + dx], order=3, mode="mirror")
    return photon_noise(shifted.astype(np.float32), rng, full_well=SEM_FULL_WELL)


def gain_field(shape: tuple[int, int], rng: np.random.Generator) -> F32:
    """Smooth multiplicative field spanning exactly 0.5–1.5 (vignetting, uneven illumination)."""
    f = ndi.gaussian_filter(rng.standard_normal(shape), min(shape) / 6, mode="reflect")
    return (0.5 + (f - f.min()) / (f.max() - f.min())).astype(np.float32)


def gain_gradient(image: F32, rng: np.random.Generator) -> F32:
    """Slow gain field 0.5–1.5 times the scene, then shot noise (full well 1000 at gain 1)."""
    return photon_noise(image * gain_field(image.shape, rng), rng, full_well=1000.0)


#: Realistic-degradation conditions: key -> (short description, fn(clean, rng) -> recorded).
DEGRADATIONS: dict[str, tuple[str, Callable[[F32, np.random.Generator], F32]]] = {
    f"photon{n}": (
        f"Poisson–Gaussian, full well {n} e⁻ (read {READ_NOISE_E:g} e⁻)",
        partial(photon_noise, full_well=float(n)),
    )
    for n in (100, 1000, 10000)
} | {
    "bayer": ("Bayer RGGB + bilinear demosaic (raw noise, 1000 e⁻), RGB in", colour_camera),
    **{
        f"jpeg{q}": (f"JPEG q{q} (noise-free 8-bit)", lambda im, rng, q=q: jpeg(im, quality=q))
        for q in (70, 90)
    },
    "scanlines": (
        f"SEM scan-line offsets {100 * SCAN_OFFSET_STD:g} % rms + shot noise "
        f"({SEM_FULL_WELL:g} e⁻)",
        scan_lines,
    ),
    "jitter": (
        f"SEM line jitter {JITTER_RMS_PX:g} px rms + shot noise ({SEM_FULL_WELL:g} e⁻)",
        line_jitter,
    ),
    "8bit": ("8-bit quantisation, no noise", lambda im, rng: quantise_8bit(im)),
    "gain": ("slow gain field 0.5–1.5 + shot noise (1000 e⁻)", gain_gradient),
    "pipeline": ("camera pipeline: Bayer, noise, demosaic, 8 bit, JPEG q90", camera_pipeline),
}


# --------------------------------------------------------------------------- scoring masks


def structured_mask(
    sharp: F32, *, noise_level: float = 0.01, k: float = 5.0, dilate: int = 3
) -> NDArray[np.bool_]:
    """Pixels where the SHARP image has an edge or texture within ``dilate`` px.

    Local gradient energy E = sqrt(G_2 * |∇(G_1 * I)|²) (Gaussian scales 1 and 2 px). A pixel is
    structural when E > k × the RMS of the same operator on white noise of std
    ``noise_level × range(I)`` (computed analytically: 0.2821 × std for these scales, up to the
    G_2 averaging which leaves the RMS unchanged). The mask is dilated by a disk of ``dilate`` px
    and the ``BORDER`` px frame removed.
    """
    g = ndi.gaussian_gradient_magnitude(sharp.astype(np.float32), 1.0)
    e = np.sqrt(ndi.gaussian_filter(g * g, 2.0))
    # RMS of |∇(G_1 * n)| for white noise n of std s: s * sqrt(2 / (8 π)) for sigma = 1.
    noise_rms = noise_level * float(sharp.max() - sharp.min()) * np.sqrt(2.0 / (8.0 * np.pi))
    m = e > k * noise_rms
    yy, xx = np.mgrid[-dilate : dilate + 1, -dilate : dilate + 1]
    m = ndi.binary_dilation(m, structure=(yy**2 + xx**2) <= dilate**2)
    return m & interior_mask(sharp.shape)


def interior_mask(shape: tuple[int, ...], border: int = BORDER) -> NDArray[np.bool_]:
    """True for pixels more than ``border`` px from the image edge."""
    m = np.zeros(shape, dtype=bool)
    m[border:-border, border:-border] = True
    return m
