"""Train the calibration that maps blur-map features to sigma (px); writes the shipped .npz.

Deterministic: fixed seeds, single-threaded numpy maths. Run from the repository root::

    python scripts/train_blurmap.py            # writes src/defocus/data/blurmap_calibration.npz
    python scripts/train_blurmap.py --holdout  # also reports accuracy on held-out training images

Training images are scikit-image and matplotlib samples that are NOT used by the tests or the
benchmark (those use camera, moon, coins, gravel, brick, grass and stereo_motorcycle), plus
procedural textures: dead leaves, dead leaves whose leaves carry their own fine grain, and
thresholded fractal noise. Each is blurred with known sigma,
uniform or varying smoothly in space, by a Gaussian or a uniform disk (radius 2 sigma) with
:func:`defocus.synth.blur_varying`, and noise
of 0-5 % of the range is added. The features are the ones :func:`defocus.blur_map` computes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import skimage.data as skd
from matplotlib import cbook
from scipy import ndimage as ndi
from skimage.color import rgb2gray
from skimage.transform import rescale

from defocus import blurmap as bm
from defocus import synth

TRAIN_IMAGES = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "retina",
    "hubble_deep_field",
    "page",
    "text",
    "shepp_logan_phantom",
    "immunohistochemistry",
    "horse",
    "cell",
    "clock",
    "binary_blobs",
    "checkerboard",
    "microaneurysms",
    "grace_hopper",
)
HOLDOUT = ("coffee", "grace_hopper", "immunohistochemistry")
SIGMA_RANGE = (0.3, 14.0)
FLOOR = bm.SIGMA_FLOOR
OUT = Path(__file__).resolve().parents[1] / "src" / "defocus" / "data" / "blurmap_calibration.npz"


def load_images(names: tuple[str, ...]) -> list[np.ndarray]:
    """Grey float images in [0, 1], with a half-size copy of the large ones (sharper detail)."""
    out = []
    for name in names:
        if name == "grace_hopper":  # ships with matplotlib
            a = plt.imread(cbook.get_sample_data("grace_hopper.jpg"))
        else:
            a = getattr(skd, name)()
        if a.ndim == 3:
            a = rgb2gray(a[..., :3])
        a = a.astype(np.float64)
        a = (a - a.min()) / max(a.max() - a.min(), 1e-12)
        if name == "retina":
            a = a[300:1100, 300:1100]
        if max(a.shape) > 900:
            a = rescale(a, 0.6, anti_aliasing=True)
        out.append(a)
        if min(a.shape) >= 300:
            out.append(rescale(a, 0.5, anti_aliasing=True))
    return out


def texture_images(seed: int, n: int) -> list[np.ndarray]:
    """Dense synthetic textures with sharp detail, a third of each kind.

    Plain dead leaves have sharp edges between flat patches; grained leaves also carry fine
    texture of their own (like gravel or brick); thresholded fractal noise has edges of every
    orientation and curvature. Together they span spectra from edge-dominated to grain-dominated.
    """
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = i % 3
        if kind == 2:
            out.append(fractal_texture((320, 320), rng))
            continue
        leaves = dead_leaves((320, 320), rng, rmin=rng.uniform(1.0, 4.0), rmax=rng.uniform(15, 150))
        if kind == 1:
            leaves = leaves + grain((320, 320), rng, leaves)
        out.append(leaves)
    return out


def fractal_texture(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Random-phase 1/f^(beta/2) noise (natural-image-like spectrum, beta in 1.6-2.6), passed
    through a random soft threshold so that it gains sharp edges."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = 1.0
    spec = f ** (-rng.uniform(1.6, 2.6) / 2) * np.exp(2j * np.pi * rng.random(f.shape))
    x = np.fft.irfft2(spec, s=shape)
    x = (x - x.mean()) / x.std()
    return np.tanh(rng.uniform(0.5, 6.0) * (x - rng.uniform(-0.5, 0.5)))


def grain(shape: tuple[int, int], rng: np.random.Generator, leaves: np.ndarray) -> np.ndarray:
    """Fine texture whose amplitude changes from leaf to leaf (leaves are told apart by value)."""
    white = rng.standard_normal(shape)
    field = ndi.gaussian_filter(white, rng.uniform(0.0, 1.5)) if rng.random() < 0.7 else white
    field /= field.std()
    amp = rng.uniform(0.0, 0.25, 256)[np.clip((leaves * 255).astype(int), 0, 255)]
    return amp * field


def dead_leaves(
    shape: tuple[int, int], rng: np.random.Generator, rmin: float, rmax: float
) -> np.ndarray:
    """Dead-leaves texture (Lee, Mumford & Huang 2001; ISO 19567-2 texture chart).

    Occluding discs and rotated rectangles with power-law sizes (p(r) ~ r^-3) have sharp edges
    at every scale, like real surfaces; rendered at 2x and block-averaged, as a sensor would.
    """
    ss = 2
    h, w = shape[0] * ss, shape[1] * ss
    canvas = np.full((h, w), np.nan)
    yy, xx = np.mgrid[0:h, 0:w]
    while np.isnan(canvas).mean() > 0.002:
        u = rng.random()
        r = ss / np.sqrt((1 - u) / rmin**2 + u / rmax**2)  # inverse CDF of r^-3
        cy, cx = rng.uniform(-r, h + r), rng.uniform(-r, w + r)
        y0, y1 = int(max(cy - r, 0)), int(min(cy + r + 1, h))
        x0, x1 = int(max(cx - r, 0)), int(min(cx + r + 1, w))
        if y0 >= y1 or x0 >= x1:
            continue
        dy, dx = yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx
        if rng.random() < 0.5:
            inside = dy * dy + dx * dx <= r * r
        else:
            t = rng.uniform(0, np.pi)
            a, b = r, r * rng.uniform(0.2, 1.0)
            inside = (np.abs(dx * np.cos(t) + dy * np.sin(t)) <= a) & (
                np.abs(-dx * np.sin(t) + dy * np.cos(t)) <= b
            )
        region = canvas[y0:y1, x0:x1]
        # Painted front to back: a new leaf only shows where nothing covers it yet.
        fill = inside & np.isnan(region)
        region[fill] = rng.beta(2, 2)
    canvas[np.isnan(canvas)] = 0.5
    return canvas.reshape(shape[0], ss, shape[1], ss).mean(axis=(1, 3))


def blur_varying(img: np.ndarray, sigma_map: np.ndarray, family: str) -> np.ndarray:
    """Gather-model varying blur, rendered by :func:`defocus.synth.blur_varying`."""
    if not sigma_map.any():
        return img.copy()
    return synth.blur_varying(img, sigma_map, family=family).astype(np.float64)


def random_sigma_map(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Smooth random log-sigma field spanning a random sub-range of SIGMA_RANGE."""
    lo, hi = np.log(SIGMA_RANGE)
    a, b = np.sort(rng.uniform(lo, hi, 2))
    b = max(b, a + 0.7)
    f = ndi.gaussian_filter(rng.standard_normal(shape), rng.uniform(25, 80))
    f = (f - f.min()) / max(f.max() - f.min(), 1e-12)
    return np.exp(a + (b - a) * f)


def random_ramp(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Sigma growing linearly with distance from a random focal line, as on a tilted sample."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    t = rng.uniform(0, np.pi)
    d = np.abs(
        (yy - rng.uniform(0, shape[0])) * np.cos(t) + (xx - rng.uniform(0, shape[1])) * np.sin(t)
    )
    s0, s1 = rng.uniform(0.0, 1.5), rng.uniform(3.0, SIGMA_RANGE[1])
    return np.sqrt(s0**2 + (s1 * d / max(d.max(), 1.0)) ** 2)


def cell_mean(a: np.ndarray) -> np.ndarray:
    s = bm.STRIDE
    h, w = -(-a.shape[0] // s), -(-a.shape[1] // s)
    p = np.pad(a, ((0, h * s - a.shape[0]), (0, w * s - a.shape[1])), mode="edge")
    return p.reshape(h, s, w, s).mean(axis=(1, 3))


def structure_weight(sharp: np.ndarray) -> np.ndarray:
    """1 where the sharp image has an edge or texture within a few px, else 0 (per cell)."""
    g = np.hypot(*np.gradient(ndi.gaussian_filter(sharp, 1.0)))
    st = ndi.maximum_filter(g, 7) > 0.02
    return cell_mean(st.astype(np.float64)) > 0.5


def make_samples(images: list[np.ndarray], rng: np.random.Generator, keep: float):
    noise_gain = bm.noise_gain()
    xs, ys, ws = [], [], []
    for img in images:
        for family in ("gauss", "disk"):
            configs = ["sharp", "const", "const", "field", "field", "ramp", "ramp"]
            for cfg in configs:
                if cfg == "sharp":
                    smap = np.zeros(img.shape)
                elif cfg == "const":
                    smap = np.full(img.shape, np.exp(rng.uniform(*np.log(SIGMA_RANGE))))
                elif cfg == "ramp":
                    smap = random_ramp(img.shape, rng)
                else:
                    smap = random_sigma_map(img.shape, rng)
                b = blur_varying(img, smap, family)
                nl = rng.choice([0.0, 0.003, 0.01, 0.02, 0.03, 0.05])
                b = b + nl * rng.standard_normal(b.shape)
                b = b.astype(np.float32)
                fam = {"gauss": (1.0, 0.0), "disk": (0.0, 1.0)}[family]
                x = bm._assemble(bm._features(b, noise_gain), fam)
                y = np.log(np.sqrt(cell_mean(smap) ** 2 + FLOOR**2)).ravel()
                w = structure_weight(img).ravel()
                sel = rng.random(y.size) < keep
                # A quarter of samples are also shown with the family unknown (0, 0).
                unk = sel & (rng.random(y.size) < 0.25)
                xu = x[unk].copy()
                xu[:, -2:] = 0.0
                xs += [x[sel], xu]
                ys += [y[sel], y[unk]]
                ws += [w[sel], w[unk]]
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ws).astype(np.float32)


def train_mlp(x, y, w, rng, hidden=64, epochs=20, batch=2048, lr=1e-3):
    """Two-hidden-layer tanh MLP with outputs (mean, log variance) of log(sigma_eff).

    The mean is fitted by structure-weighted squared error; the log variance by the Gaussian
    negative log-likelihood of the (detached) residual, so it learns where estimates are poor.
    """
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xn = ((x - mu) / sd).astype(np.float32)
    d = xn.shape[1]
    shapes = [(d, hidden), (hidden,), (hidden, hidden), (hidden,), (hidden, 2), (2,)]
    params = []
    for s in shapes:
        if len(s) == 2:
            params.append((rng.standard_normal(s) * np.sqrt(1.0 / s[0])).astype(np.float32))
        else:
            params.append(np.zeros(s, np.float32))
    params[5][0] = float(np.average(y, weights=w + 0.05))
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    step = 0
    n = len(y)
    wt = (w + 0.05).astype(np.float32)
    for ep in range(epochs):
        order = rng.permutation(n)
        rate = lr * (0.5 * (1 + np.cos(np.pi * ep / epochs)))
        for k in range(0, n - batch + 1, batch):
            idx = order[k : k + batch]
            xb, yb, wb = xn[idx], y[idx].astype(np.float32), wt[idx]
            w1, b1, w2, b2, w3, b3 = params
            h1 = np.tanh(xb @ w1 + b1)
            h2 = np.tanh(h1 @ w2 + b2)
            o = h2 @ w3 + b3
            r = o[:, 0] - yb
            lv = np.clip(o[:, 1], -12, 6)
            go = np.zeros_like(o)
            go[:, 0] = 2 * wb * r / wb.sum()
            go[:, 1] = 0.5 * (1 - r * r * np.exp(-lv)) / len(yb)
            gw3 = h2.T @ go
            gb3 = go.sum(0)
            gh2 = (go @ w3.T) * (1 - h2 * h2)
            gw2 = h1.T @ gh2
            gb2 = gh2.sum(0)
            gh1 = (gh2 @ w2.T) * (1 - h1 * h1)
            gw1 = xb.T @ gh1
            gb1 = gh1.sum(0)
            grads = [gw1, gb1, gw2, gb2, gw3, gb3]
            step += 1
            for i, g in enumerate(grads):
                m[i] = 0.9 * m[i] + 0.1 * g
                v[i] = 0.999 * v[i] + 0.001 * g * g
                mh = m[i] / (1 - 0.9**step)
                vh = v[i] / (1 - 0.999**step)
                params[i] -= (rate * mh / (np.sqrt(vh) + 1e-8)).astype(np.float32)
        pred = bm._mlp(x[:20000], dict(zip(bm.MLP_KEYS, params, strict=True)), mu, sd)
        err = np.average((pred[0] - y[:20000]) ** 2, weights=wt[:20000])
        print(f"epoch {ep:2d}  weighted rmse(log) {np.sqrt(err):.3f}", flush=True)
    return params, mu, sd


def report(x, y, w, model, label):
    mean, _ = bm._mlp(x, model, model["x_mean"], model["x_std"])
    s_true = np.sqrt(np.maximum(np.exp(2 * y) - FLOOR**2, 0))
    s_est = np.sqrt(np.maximum(np.exp(2 * mean) - FLOOR**2, 0))
    st = w > 0.5
    ok = np.abs(s_est - s_true) <= np.maximum(0.3 * s_true, 0.3)
    rel = np.abs(s_est - s_true) / np.maximum(s_true, 0.3)
    frac, med = ok[st].mean(), np.median(rel[st])
    print(f"held-out {label}, structured: within tol {frac:.3f}, median rel {med:.3f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--holdout", action="store_true", help="hold out some images and report")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--hidden", type=int, default=64, help="units per hidden layer")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(20240611)
    t0 = time.time()
    names = tuple(n for n in TRAIN_IMAGES if not (args.holdout and n in HOLDOUT))
    images = load_images(names) + texture_images(seed=1, n=30)
    x, y, w = make_samples(images, rng, keep=0.25)
    print(f"{len(y)} samples in {time.time() - t0:.0f} s", flush=True)
    params, mu, sd = train_mlp(x, y, w, rng, hidden=args.hidden)
    model = dict(zip(bm.MLP_KEYS, params, strict=True))
    model.update(x_mean=mu.astype(np.float32), x_std=sd.astype(np.float32))
    if args.holdout:
        check = np.random.default_rng(7)
        report(*make_samples(load_images(HOLDOUT), check, keep=0.5), model, "images")
        report(*make_samples(texture_images(seed=2, n=6), check, keep=0.5), model, "textures")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        noise_gain=bm.noise_gain().astype(np.float32),
        scales=np.array(bm.SCALES, np.float32),
        floor=np.float32(FLOOR),
        **model,
    )
    print(f"wrote {args.out} in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
