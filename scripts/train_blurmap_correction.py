"""Train the blur map's learned per-cell correction (src/defocus/data/blurmap_correction.npz).

Run:  python scripts/train_blurmap_correction.py [--out PATH] [--quick]

Deterministic on CPU (fixed seeds; 3-5 minutes on two cores, most of it rendering and
measuring the 544 scenes). Training images are scikit-image samples the blur-map benchmark
does not use (it scores camera, gravel, brick, grass, moon, coins and motorcycle_left) and
synthetic textures: dead leaves (Lee, Mumford & Huang 2001), shapes, band-pass levels,
pebbles, strokes, brick bonds, craters and coin-like tokens. Each is blurred by a tilted-plane
or piecewise-constant sigma map (0.3-40 px) with a Gaussian or disk PSF, then recorded under
one of the realistic degradations of issue 14: white noise, Poisson-Gaussian shot noise, a
Bayer mosaic with bilinear demosaicing, JPEG quality 70-95, 8-bit quantisation, SEM scan-line
offsets and line jitter, a slow gain field. The physical estimator measures every scene; the
network learns log(true sigma) minus log(physical sigma) on the cells the physics measured,
from :func:`defocus._blurcorrect.cell_features`.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

# One BLAS thread (set before numpy loads): the same sums in the same order on every machine,
# and on two shared cores far faster than threads that wait on each other.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import skimage.data as skdata  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402
from skimage.color import rgb2gray  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from defocus import synth  # noqa: E402
from defocus._blurcorrect import WEIGHTS, cell_features  # noqa: E402
from defocus.blurmap import _FLOOR as FLOOR  # noqa: E402
from defocus.blurmap import _MEASURABLE_SD, STRIDE, _cells  # noqa: E402

IMAGES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "text",
    "page",
    "clock",
    "cell",
)
N_LEAVES = 4  # dead-leaves textures, from sparse to dense
CROP = 448
TRAIN_RANGE = (0.2, 40.0)  # physical estimates of the cells the network learns from
# Physical estimates the correction applies to. Cancellation needs a blur wider than the edge
# spacing, and without a lower limit the model moved the sharp edges of a real SEM image
# (1.3 px) up to 1.6 px: below 1 px the physics stands alone. Above 16 px a 448-px crop holds
# too few edges for the network to learn from (it read a 40-px blur as 22 px).
SIGMA_RANGE = (1.0, 16.0)
OUT_RANGE = (-0.7, 1.2)  # log-sigma corrections it may make
HIDDEN = 64
REPS = 4  # sigma maps and degradations per image, family and kind
DEPTH = 3  # hidden layers
BATCH = 1024
STEPS = 20000  # Adam steps of BATCH cells


def load(name: str) -> np.ndarray:
    """A training image as float32 grey in [0, 1], centre-cropped to at most CROP px."""
    img = np.asarray(getattr(skdata, name)())
    img = rgb2gray(img[..., :3]) if img.ndim == 3 else img / 255.0
    h, w = img.shape
    y0, x0 = max(0, (h - CROP) // 2), max(0, (w - CROP) // 2)
    return np.asarray(img[y0 : y0 + CROP, x0 : x0 + CROP], np.float32)


def _window(size: int, r: float, cy: float, cx: float) -> tuple[slice, slice] | None:
    """The pixels a disk of radius ``r`` at (``cy``, ``cx``) can cover; None off the image."""
    y0, y1 = int(max(0, cy - r)), int(min(size, cy + r + 1))
    x0, x1 = int(max(0, cx - r)), int(min(size, cx + r + 1))
    return None if y0 >= y1 or x0 >= x1 else (slice(y0, y1), slice(x0, x1))


def dead_leaves(seed: int, *, r_min: float, r_max: float, size: int = CROP) -> np.ndarray:
    """Occluding disks of random grey, radii with density ∝ r^-3 (scale invariant)."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size), np.nan, np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    while np.isnan(img).mean() > 0.002:
        u = rng.random()
        r = 1 / np.sqrt(u / r_min**2 + (1 - u) / r_max**2)  # inverse CDF of r^-3 on [min, max]
        cy, cx = rng.uniform(-r, size + r, 2)
        w = _window(size, r, cy, cx)
        if w is None:
            continue
        win = img[w]
        disk = (yy[w] - cy) ** 2 + (xx[w] - cx) ** 2 <= r * r
        win[disk & np.isnan(win)] = rng.uniform(0.1, 0.9)  # the first disk drawn stays on top
    return np.nan_to_num(img, nan=0.5)


def levels_texture(seed: int, *, spacing: float, size: int = CROP) -> np.ndarray:
    """Dense texture with sharp edges at a chosen spacing: band-pass noise (difference of
    Gaussians at ``spacing`` px) cut into four to eight flat grey levels."""
    rng = np.random.default_rng(seed)
    n = rng.standard_normal((size, size))
    band = ndi.gaussian_filter(n, spacing / 2) - ndi.gaussian_filter(n, spacing)
    cuts = np.quantile(band, np.linspace(0, 1, int(rng.integers(4, 9)) + 1)[1:-1])
    grey = rng.permutation(np.linspace(0.1, 0.9, len(cuts) + 1))
    return grey[np.digitize(band, cuts)].astype(np.float32)


def pebbles(seed: int, *, r_min: float, r_max: float, size: int = CROP) -> np.ndarray:
    """Gravel-like packing: dead-leaves disks, each shaded darker towards a thin dark rim."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size), np.nan, np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    while np.isnan(img).mean() > 0.002:
        r = float(rng.uniform(r_min, r_max))
        cy, cx = rng.uniform(-r, size + r, 2)
        w = _window(size, r, cy, cx)
        if w is None:
            continue
        win = img[w]
        d = np.hypot(yy[w] - cy, xx[w] - cx)
        shade = rng.uniform(0.3, 0.9) * (1 - 0.5 * (d / r) ** 2) * np.where(d > r - 1.5, 0.3, 1)
        new = (d <= r) & np.isnan(win)
        win[new] = shade[new]
    return np.nan_to_num(img, nan=0.1)


def shapes(seed: int, *, n: int, size: int = CROP) -> np.ndarray:
    """Isolated step edges: ``n`` flat ellipses and rotated rectangles on a flat background."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size), rng.uniform(0.2, 0.8), np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for _ in range(n):
        cy, cx = rng.uniform(0, size, 2)
        a, b = rng.uniform(8, size / 4, 2)
        t = rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
        v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
        inside = (
            (u / a) ** 2 + (v / b) ** 2 <= 1
            if rng.random() < 0.5
            else ((np.abs(u) <= a) & (np.abs(v) <= b))
        )
        img[inside] = rng.uniform(0.05, 0.95)
    return img


def _rotated(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates rotated by a random angle about the centre."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) - size / 2
    t = rng.uniform(0, np.pi)
    return xx * np.cos(t) + yy * np.sin(t), -xx * np.sin(t) + yy * np.cos(t)


def strokes(seed: int, *, n: int, length: float, width: float, size: int = CROP) -> np.ndarray:
    """Grass-like: ``n`` thin straight strokes of random grey and direction over each other."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size), rng.uniform(0.2, 0.8), np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(n):
        half, wide = rng.uniform(0.3, 0.5) * length, rng.uniform(0.5, 1.0) * width
        cy, cx = rng.uniform(0, size, 2)
        w = _window(size, half + wide, cy, cx)
        if w is None:
            continue
        t = rng.uniform(0, np.pi)
        u = (xx[w] - cx) * np.cos(t) + (yy[w] - cy) * np.sin(t)
        v = -(xx[w] - cx) * np.sin(t) + (yy[w] - cy) * np.cos(t)
        img[w][(np.abs(u) <= half) & (np.abs(v) <= wide / 2)] = rng.uniform(0.05, 0.95)
    return img


def bricks(seed: int, *, height: float, size: int = CROP) -> np.ndarray:
    """Brick-like: a running bond of blocks of random grey with fine speckle and dark mortar
    lines, at a random angle."""
    rng = np.random.default_rng(seed)
    u, v = _rotated(size, rng)
    width = height * rng.uniform(1.5, 3.0)
    row = np.floor(v / height)
    shifted = u + (row % 2) * width / 2
    col = np.floor(shifted / width)
    key = (row.astype(np.int64) * 7919 + col.astype(np.int64)) % 997
    grey = rng.uniform(0.3, 0.8, 997)[key]
    speckle = ndi.gaussian_filter(rng.standard_normal((size, size)), rng.uniform(0.7, 2.0))
    img = grey + rng.uniform(0.02, 0.1) * speckle / speckle.std()
    mortar = max(1.0, height * rng.uniform(0.08, 0.2))
    joint = (v - row * height < mortar) | (shifted - col * width < mortar)
    return np.where(joint, rng.uniform(0.05, 0.25), img).astype(np.float32)


def craters(seed: int, *, n: int, size: int = CROP) -> np.ndarray:
    """Moon-like: low-contrast craters (a bowl lit from one side and a raised rim) of radii
    3-60 px on a smooth background."""
    rng = np.random.default_rng(seed)
    bg = ndi.gaussian_filter(rng.standard_normal((size, size)), size / 16)
    img = 0.5 + 0.1 * bg / bg.std()
    yy, xx = np.mgrid[0:size, 0:size]
    light = rng.uniform(0, 2 * np.pi)
    for _ in range(n):
        r = float(np.exp(rng.uniform(np.log(3), np.log(60))))
        cy, cx = rng.uniform(0, size, 2)
        w = _window(size, 1.4 * r, cy, cx)
        if w is None:
            continue
        dy, dx = (yy[w] - cy) / r, (xx[w] - cx) / r
        d = np.hypot(dy, dx)
        a = rng.uniform(0.03, 0.15)
        slope = dx * np.cos(light) + dy * np.sin(light)
        img[w] += a * np.where(d < 1, slope, 0) + a * np.exp(-(((d - 1) / 0.12) ** 2))
    return img.astype(np.float32)


def tokens(seed: int, *, n: int, size: int = CROP) -> np.ndarray:
    """Coin-like: ``n`` disks with a sharp rim and a low-contrast relief inside, apart on a flat
    background (isolated strong edges the correction must leave alone)."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size), rng.uniform(0.1, 0.4), np.float32)
    relief = ndi.gaussian_filter(rng.standard_normal((size, size)), 2.0)
    relief = (relief / relief.std()).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(n):
        r = rng.uniform(15, 45)
        cy, cx = rng.uniform(r, size - r, 2)
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        img[inside] = rng.uniform(0.5, 0.9) + rng.uniform(0.02, 0.08) * relief[inside]
    return img


def sigma_scene(shape: tuple[int, int], kind: str, rng: np.random.Generator) -> np.ndarray:
    """A tilted plane (sigma from 0.3-1 px up to 3-40 px) or Voronoi regions of random sigma."""
    if kind == "tilt":
        top = float(np.exp(rng.uniform(np.log(3), np.log(40))))
        floor = float(rng.uniform(0.3, 1.0))
        s = synth.tilt_map(
            shape,
            position=float(rng.uniform(0.1, 0.9)),
            angle=float(rng.uniform(-30, 30)),
            slope=1.0,
            floor=floor,
        )
        d = np.sqrt(np.maximum(s**2 - floor**2, 0))
        return np.hypot(floor, d * top / d.max()).astype(np.float32)
    n = 7
    centres = rng.uniform(0, shape[0], (n, 2))
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    lab = np.argmin([(yy - cy) ** 2 + (xx - cx) ** 2 for cy, cx in centres], axis=0)
    values = np.exp(rng.uniform(np.log(0.3), np.log(24), n))
    return values[lab].astype(np.float32)


def photon(img: np.ndarray, rng: np.random.Generator, full_well: float) -> np.ndarray:
    counts = synth.add_poisson_noise(np.clip(img, 0, None), counts_per_unit=full_well, rng=rng)
    return synth.add_gaussian_noise(counts, 3.0 / full_well, rng=rng)


def bayer(img: np.ndarray, rng: np.random.Generator, full_well: float) -> np.ndarray:
    """Grey scene through an RGGB sensor with shot noise, bilinear demosaic, white balance."""
    gain = np.array([0.55, 1.0, 0.75], np.float32)
    h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w]
    sites = ((yy % 2 == 0) & (xx % 2 == 0), (yy + xx) % 2 == 1, (yy % 2 == 1) & (xx % 2 == 1))
    raw = sum(np.where(m, img * g, 0) for m, g in zip(sites, gain, strict=True))
    raw = photon(np.asarray(raw, np.float32), rng, full_well)
    k_rb = np.outer([1, 2, 1], [1, 2, 1]) / 4
    k_g = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]]) / 4
    rgb = [
        ndi.convolve(raw * m, k_g if c == 1 else k_rb, mode="mirror") for c, m in enumerate(sites)
    ]
    return (np.stack(rgb, -1) / gain).astype(np.float32)


def to8(img: np.ndarray) -> np.ndarray:
    return (np.rint(np.clip(img, 0, 1) * 255) / 255).astype(np.float32)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    axis = -1 if img.ndim == 3 else None
    return synth.jpeg_compress(to8(img) * 255, quality=quality, channel_axis=axis) / 255


CONDITIONS = (
    "white",
    "photon",
    "bayer",
    "jpeg",
    "8bit",
    "scanlines",
    "jitter",
    "gain",
    "pipeline",
    "float",
)


def degrade(clean: np.ndarray, cond: str, rng: np.random.Generator) -> np.ndarray:
    """What a camera or microscope would record of the clean blurred scene (2-D or RGB)."""
    well = float(np.exp(rng.uniform(np.log(100), np.log(10000))))
    if cond == "white":
        return clean + rng.normal(0, rng.uniform(0.003, 0.03), clean.shape).astype(np.float32)
    if cond == "photon":
        return photon(clean, rng, well)
    if cond == "bayer":
        return bayer(clean, rng, well)
    if cond == "jpeg":
        return jpeg(clean, int(rng.integers(70, 96)))
    if cond == "8bit":
        return to8(clean + rng.normal(0, rng.uniform(0, 0.002), clean.shape))
    if cond == "scanlines":
        off = rng.normal(0, rng.uniform(0.003, 0.02), (clean.shape[0], 1))
        return photon(clean + off.astype(np.float32), rng, well)
    if cond == "jitter":
        h, w = clean.shape
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        dx = rng.normal(0, rng.uniform(0.1, 0.5), (h, 1))
        return photon(ndi.map_coordinates(clean, [yy, xx + dx], order=3, mode="mirror"), rng, well)
    if cond == "gain":
        f = ndi.gaussian_filter(rng.standard_normal(clean.shape), clean.shape[0] / 6)
        return photon(clean * (0.5 + (f - f.min()) / (f.max() - f.min())), rng, well)
    if cond == "pipeline":
        return jpeg(to8(bayer(clean, rng, well)), int(rng.integers(80, 96)))
    return clean


def cell_truth(sigma: np.ndarray, cells: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per cell: mean log sqrt(sigma^2 + FLOOR^2), and whether sigma is uniform within 3 px."""
    h, w = cells
    ph, pw = h * STRIDE - sigma.shape[0], w * STRIDE - sigma.shape[1]
    s = np.log(np.hypot(np.pad(sigma, ((0, ph), (0, pw)), mode="edge"), FLOOR))
    blocks = s.reshape(h, STRIDE, w, STRIDE)
    spread = ndi.maximum_filter(s, 7) - ndi.minimum_filter(s, 7)
    return blocks.mean(axis=(1, 3)), spread.reshape(h, STRIDE, w, STRIDE).max(axis=(1, 3)) < 0.15


def scene_cells(seed: int, sharp: np.ndarray, family: str, kind: str, cond: str):
    """Features, targets and weights of the measured cells of one rendered scene."""
    rng = np.random.default_rng(seed)
    sigma = sigma_scene(sharp.shape, kind, rng)
    clean = np.asarray(synth.blur_varying(sharp, sigma, psf=family, method="gather"), np.float32)
    rec = degrade(clean, cond, rng)
    feats: dict = {}
    _, _, cell_sigma, sd, lower, _ = _cells(
        rec,
        psf=family,
        noise_sigma=None,
        channel_axis=-1 if rec.ndim == 3 else None,
        correction=False,
        features=feats,
    )
    x = cell_features(
        feats,
        cell_sigma,
        sd,
        lower,
        disk=family == "disk",
        sigma_range=SIGMA_RANGE,
        floor=FLOOR,
        max_sd=_MEASURABLE_SD,
    )
    truth, uniform = cell_truth(sigma, cell_sigma.shape)
    use = np.isfinite(cell_sigma) & ~lower
    use &= (cell_sigma >= TRAIN_RANGE[0]) & (cell_sigma <= TRAIN_RANGE[1])
    # 16 px from the border the scene's own padding shapes the curve; leave it out.
    b = 16 // STRIDE
    use[:b] = use[-b:] = False
    use[:, :b] = use[:, -b:] = False
    phys = np.log(np.hypot(cell_sigma, FLOOR))
    target = np.clip(truth - phys, *OUT_RANGE)
    # The fill weights cells by their precision; uniform-sigma cells teach the clean mapping.
    weight = (1.0 / (1.0 + (sd / 0.25) ** 2)) * np.where(uniform, 1.0, 0.3)
    # Every scene weighs the same: dense textures measure many more cells than sparse edges.
    weight = weight[use] / max(float(weight[use].sum()), 1e-9)
    return x[use], target[use], weight, truth[use]


def sharp_images() -> list[tuple[str, np.ndarray]]:
    """The training scenes' sharp images: scikit-image photographs and synthetic textures."""
    sharps = [(name, load(name)) for name in IMAGES]
    sharps += [
        (f"leaves{i}", dead_leaves(100 + i, r_min=1.0 + i, r_max=20.0 * (i + 1)))
        for i in range(N_LEAVES)
    ]
    sharps += [(f"shapes{i}", shapes(400 + i, n=6 * 2**i)) for i in range(3)]
    sharps += [(f"levels{i}", levels_texture(200 + i, spacing=1.5 * 2**i)) for i in range(3)]
    sharps += [
        (f"pebbles{i}", pebbles(300 + i, r_min=2 + 3 * i, r_max=5 + 8 * i)) for i in range(3)
    ]
    sharps += [
        (f"strokes{i}", strokes(500 + i, n=4000, length=40 / 2**i, width=2 + 2 * i))
        for i in range(3)
    ]
    sharps += [(f"bricks{i}", bricks(600 + i, height=8.0 * 2**i)) for i in range(3)]
    sharps += [(f"craters{i}", craters(700 + i, n=30 * 2**i)) for i in range(2)]
    sharps += [(f"tokens{i}", tokens(800 + i, n=4 + 4 * i)) for i in range(2)]
    return sharps


def scenes(quick: bool) -> Iterator[tuple[str, int, np.ndarray, str, str, str]]:
    """(image name, seed, sharp image, PSF family, sigma scene kind, degradation) of every
    training scene."""
    for i, (name, sharp) in enumerate(sharp_images()):
        for j, family in enumerate(("gauss", "disk")):
            for k, kind in enumerate(("tilt", "regions")):
                for r in range(1 if quick else REPS):
                    seed = 1000 * i + 100 * j + 10 * k + r
                    cond = CONDITIONS[(i + 3 * j + 5 * k + 7 * r) % len(CONDITIONS)]
                    yield name, seed, sharp, family, kind, cond


def build(quick: bool) -> tuple[np.ndarray, ...]:
    rows = []
    t0 = time.time()
    for n, (name, seed, sharp, family, kind, cond) in enumerate(scenes(quick), 1):
        rows.append(scene_cells(seed, sharp, family, kind, cond))
        if n % 20 == 0:
            print(f"{name}: {n} scenes, {time.time() - t0:.0f} s", flush=True)
    x, y, w, _ = (np.concatenate(c) for c in zip(*rows, strict=True))
    w = w / w.mean()
    return x.astype(np.float32), y.astype(np.float32), w.astype(np.float32)


def train(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, *, steps: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """A tanh MLP (DEPTH hidden layers of HIDDEN units), Huber loss on log sigma, Adam (Kingma
    & Ba 2015) with full determinism (one thread of numpy order, fixed seed)."""
    rng = np.random.default_rng(seed)
    mean, std = x.mean(0), x.std(0) + 1e-3
    xs = (x - mean) / std
    sizes = [x.shape[1], *[HIDDEN] * DEPTH, 1]
    ws = [rng.normal(0, 1 / np.sqrt(a), (a, b)) for a, b in itertools.pairwise(sizes)]
    bs = [np.zeros(b) for b in sizes[1:]]
    params = [p for pair in zip(ws, bs, strict=True) for p in pair]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    lr, b1, b2, batch, delta = 3e-3, 0.9, 0.999, BATCH, 0.1
    for step in range(1, steps + 1):
        idx = rng.integers(0, len(xs), batch)
        yt, wt = y[idx].astype(np.float64), w[idx]
        acts = [xs[idx].astype(np.float64)]
        for i in range(DEPTH):
            acts.append(np.tanh(acts[-1] @ ws[i] + bs[i]))
        out = (acts[-1] @ ws[-1] + bs[-1])[:, 0]
        err = out - yt
        g = (np.where(np.abs(err) <= delta, err, delta * np.sign(err)) * wt / wt.sum())[:, None]
        grads: list[np.ndarray] = []
        for i in range(DEPTH, -1, -1):
            grads = [acts[i].T @ g, g.sum(0), *grads]
            if i:
                g = (g @ ws[i].T) * (1 - acts[i] ** 2)
        # Step decay: the last fifth at a tenth of the rate.
        rate = lr * (0.1 if step > 0.8 * steps else 1.0)
        for p, gr, mi, vi in zip(params, grads, m, v, strict=True):
            mi *= b1
            mi += (1 - b1) * gr
            vi *= b2
            vi += (1 - b2) * gr * gr
            p -= rate * (mi / (1 - b1**step)) / (np.sqrt(vi / (1 - b2**step)) + 1e-8)
        if step % 2000 == 0:
            print(f"step {step}: batch weighted |err| {np.sum(np.abs(err) * wt) / wt.sum():.4f}")
    out = {f"w{i}": p.astype(np.float32) for i, p in enumerate(ws)}
    out |= {f"b{i}": p.astype(np.float32) for i, p in enumerate(bs)}
    return out | {"mean": mean.astype(np.float32), "std": std.astype(np.float32)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=WEIGHTS)
    ap.add_argument("--quick", action="store_true", help="a quarter of the scenes, fewer steps")
    ap.add_argument("--steps", type=int, default=None)
    args = ap.parse_args(argv)
    x, y, w = build(args.quick)
    print(f"{len(y)} cells, {x.shape[1]} features")
    before = np.sum(np.abs(y) * w) / w.sum()
    net = train(x, y, w, steps=args.steps or (4000 if args.quick else STEPS))
    net |= {
        "layers": np.array(DEPTH + 1),
        "sigma_range": np.array(SIGMA_RANGE, np.float32),
        "out_range": np.array(OUT_RANGE, np.float32),
    }
    from defocus._blurcorrect import predict

    after = np.sum(np.abs(predict(x, net) - y) * w) / w.sum()
    print(f"weighted mean |log error| on the training cells: {before:.3f} -> {after:.3f}")
    tmp = args.out.with_name("." + args.out.name + ".tmp.npz")
    np.savez_compressed(tmp, **net)
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
