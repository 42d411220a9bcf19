"""Deconvolution: exact recovery, borders without ringing, varying blur, dtypes and errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from skimage import data, restoration

import defocus
from defocus import BadInputError
from defocus import psf as P
from defocus import synth as S
from defocus.restore import deblur, deblur_varying


def _psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    return float(10 * np.log10(peak**2 / np.mean((np.asarray(a, float) - b) ** 2)))


def _scene(size: int = 192, margin: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """A crop of camera and the larger scene around it, in [0, 1]."""
    big = data.camera()[100 : 100 + size + 2 * margin, 150 : 150 + size + 2 * margin]
    big = big.astype(np.float64) / 255
    return big[margin:-margin, margin:-margin], big


def _observe(big: np.ndarray, kernel: np.ndarray, margin: int, noise: float) -> np.ndarray:
    """Blur the larger scene, keep the crop: light enters the frame from outside, as in life."""
    blurred = S.blur(big, kernel)[margin:-margin, margin:-margin]
    return S.add_gaussian_noise(blurred, noise, rng=3) if noise else blurred


@pytest.mark.parametrize("method", ["wiener", "tv"])
def test_exact_recovery_noise_free_periodic(method):
    sharp = data.camera()[200:264, 220:284].astype(np.float64) / 255
    blurred = S.blur(sharp, P.gaussian(1.0), mode="wrap")
    out = deblur(blurred, P.gaussian(1.0), boundary="periodic", noise_sigma=0, method=method)
    np.testing.assert_allclose(out, sharp, atol=2e-3)
    assert np.abs(blurred - sharp).max() > 0.1  # the blur was not negligible


@pytest.mark.parametrize(
    ("kernel", "method"),
    [(P.disk(6.0), "wiener"), (P.gaussian(2.5), "wiener"), (P.disk(6.0), "tv")],
)
def test_no_boundary_ringing(kernel, method):
    sharp, big = _scene()
    blurred = _observe(big, kernel, 24, 0.01)
    out = deblur(blurred, kernel, method=method)
    band = np.ones(sharp.shape, bool)
    band[16:-16, 16:-16] = False
    border, interior = _psnr(out[band], sharp[band]), _psnr(out[~band], sharp[~band])
    assert border > interior - 1.5
    assert border > _psnr(blurred[band], sharp[band]) + 1  # and the border is deblurred too
    # scikit-image's periodic Wiener, at its best balance for the border, rings there.
    sk = max(
        _psnr(np.clip(restoration.wiener(blurred, kernel, b), 0, 1)[band], sharp[band])
        for b in (0.01, 0.03, 0.1, 0.3, 1.0)
    )
    assert border > sk + 2


def test_methods_beat_the_blurred_input_and_tv_beats_wiener():
    sharp, big = _scene(128, 16)
    kernel = P.disk(4.0)
    blurred = _observe(big, kernel, 16, 0.01)
    scores = {m: _psnr(deblur(blurred, kernel, method=m), sharp) for m in ("wiener", "tv", "rl")}
    assert min(scores.values()) > _psnr(blurred, sharp) + 1
    assert scores["tv"] > scores["wiener"]


def test_noise_level_sets_the_regularisation():
    sharp, big = _scene(128, 16)
    kernel = P.gaussian(2.0)
    blurred = _observe(big, kernel, 16, 0.01)
    # Claiming far too little noise under-regularises; far too much over-smooths.
    auto = _psnr(deblur(blurred, kernel), sharp)
    assert auto > _psnr(deblur(blurred, kernel, noise_sigma=0.0005), sharp)
    assert auto > _psnr(deblur(blurred, kernel, noise_sigma=0.2), sharp)


def test_gain_and_offset_commute():
    _, big = _scene(96, 16)
    kernel = P.disk(3.0)
    blurred = 100 * _observe(big, kernel, 16, 0.005) + 50  # away from any clipping
    out = deblur(blurred, kernel)
    assert out.min() > 0
    np.testing.assert_allclose(deblur(3 * blurred + 7, kernel), 3 * out + 7, rtol=1e-6)


def test_psf_spec_equals_kernel():
    img = data.camera()[:80, :80]
    a = deblur(img, ("disk", {"radius": 3.0}))
    b = deblur(img, P.disk(3.0))
    np.testing.assert_array_equal(a, b)


def test_rgb_and_dtypes_are_kept():
    rgb = data.astronaut()[100:196, 150:246]
    blurred = S.blur(rgb, P.gaussian(1.5), channel_axis=-1, dtype=np.uint8)
    out = deblur(blurred, P.gaussian(1.5), channel_axis=-1)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    # Grey stored as RGB has no chroma: each channel comes out as the grey deblur.
    grey = S.add_gaussian_noise(blurred[..., 0].astype(float), 2.0, rng=0)
    tripled = deblur(np.repeat(grey[..., None], 3, axis=-1), P.gaussian(1.5), channel_axis=-1)
    for c in range(3):
        np.testing.assert_allclose(tripled[..., c], deblur(grey, P.gaussian(1.5)), atol=1e-6)
    first = deblur(np.moveaxis(blurred, -1, 0), P.gaussian(1.5), channel_axis=0)
    np.testing.assert_array_equal(np.moveaxis(first, 0, -1), out)
    wide = deblur(blurred[..., 0].astype(np.uint16) * 257, P.gaussian(1.5))
    assert wide.dtype == np.uint16 and int(wide.max()) > 255
    unit = deblur(blurred[..., 0] / 255.0, P.gaussian(1.5))
    assert unit.dtype == np.float64 and unit.min() >= 0 and unit.max() <= 1


def test_progress_is_monotonic_and_complete():
    seen: list[tuple[int, int, str]] = []

    def record(done: int, total: int, what: str) -> None:
        seen.append((done, total, what))

    rgb = data.astronaut()[:64, :64]
    deblur(rgb, P.disk(3.0), channel_axis=-1, method="tv", progress=record)
    fractions = [d / t for d, t, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(seen) > 3
    assert {w for *_, w in seen} == {"luminance", "red-green", "yellow-blue"}
    ramp = np.tile(np.linspace(0.5, 3, 64, dtype=np.float32)[:, None], (1, 64))
    for tile in (None, 32):
        seen.clear()
        deblur_varying(rgb, ramp, channel_axis=-1, tile=tile, progress=record)
        fractions = [d / t for d, t, _ in seen]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(seen) > 3


def test_constant_image_stays_constant():
    out = deblur(np.full((32, 40), 77, np.uint8), P.disk(4.0))
    assert (out == 77).all()


def test_constant_map_reproduces_uniform_result():
    sharp, big = _scene(160, 16)
    blurred = _observe(big, P.gaussian(2.0), 16, 0.01).astype(np.float32)
    uniform = deblur(blurred, ("gauss", {"sigma": 2.0}))
    smap = np.full(blurred.shape, 2.0, np.float32)
    tiled = deblur_varying(blurred, smap, tile=48)  # a 4 x 4 grid of tiles
    # Each tile fits its own image prior, so the two differ slightly, mostly at the frame's
    # edge; the restoration is as good, and no tile seam stands out from the difference.
    assert _psnr(tiled, uniform) > 40
    assert abs(_psnr(tiled, sharp) - _psnr(uniform, sharp)) < 0.2
    diff = np.abs(tiled - uniform)[8:-8, 8:-8]
    seams = np.zeros(blurred.shape, bool)
    for c in np.linspace(0, 159, 5)[1:-1].round().astype(int):  # tile centres = blend edges
        seams[c - 1 : c + 2, :] = seams[:, c - 1 : c + 2] = True
    assert diff[seams[8:-8, 8:-8]].mean() < 2 * diff.mean()
    # Untiled, a constant map is one level: exactly the uniform result.
    np.testing.assert_array_equal(deblur_varying(blurred, smap), uniform)


def test_varying_beats_the_median_psf_on_a_tilt():
    sharp, big = _scene(160, 24)
    smap_big = S.tilt_map(big.shape, position=0.15, slope=0.035, floor=0.5)
    blurred = S.blur_varying(big, smap_big)[24:-24, 24:-24]
    blurred = S.add_gaussian_noise(blurred, 0.005, rng=4)
    smap = smap_big[24:-24, 24:-24]
    varying = deblur_varying(blurred, smap, psf="gauss")
    median = deblur(blurred, ("gauss", {"sigma": float(np.median(smap))}))
    assert _psnr(varying, sharp) > _psnr(median, sharp) + 1
    assert _psnr(varying, sharp) > _psnr(blurred, sharp) + 1


def _depth_edge(shape: tuple[int, int], near: float, far: float) -> np.ndarray:
    """Sigma map of a sharp depth edge: ``near`` left of a vertical step, ``far`` right."""
    smap = np.full(shape, far, np.float32)
    smap[:, : shape[1] * 2 // 5] = near
    return smap


def test_varying_beats_the_median_psf_across_a_depth_edge():
    sharp, big = _scene(128, 24)
    smap_big = _depth_edge(big.shape, 0.5, 3.0)
    blurred = S.blur_varying(big, smap_big, psf="disk")[24:-24, 24:-24]
    blurred = S.add_gaussian_noise(blurred, 0.005, rng=5)
    smap = smap_big[24:-24, 24:-24]
    varying = deblur_varying(blurred, smap, psf="disk")
    median = deblur(blurred, ("disk", {"radius": 2 * float(np.median(smap))}))
    assert _psnr(varying, sharp) > _psnr(median, sharp) + 2
    assert _psnr(varying, sharp) > _psnr(blurred, sharp) + 1


def test_blur_does_not_leak_across_a_depth_edge():
    # Each side is restored from its own pixels: changing the data beyond the edge leaves the
    # near side untouched (the noise level is given, so it is not re-estimated either).
    _, big = _scene(96, 0)
    smap = _depth_edge(big.shape, 1.0, 4.0)
    out = deblur_varying(big, smap, noise_sigma=0.01)
    other = big.copy()
    other[:, 60:] = other[::-1, 60:]
    near = slice(0, 38)  # columns whose sigma is 1 (the edge is at column 38)
    np.testing.assert_array_equal(
        deblur_varying(other, smap, noise_sigma=0.01)[:, near], out[:, near]
    )
    assert not np.array_equal(deblur_varying(other, smap, noise_sigma=0.01), out)


def test_blurmap_input_uses_its_sigma_and_family():
    img = data.camera()[:96, :96]
    bm = defocus.blur_map(img)
    out = deblur_varying(img, bm)
    np.testing.assert_array_equal(out, deblur_varying(img, bm.sigma, psf=bm.psf))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: deblur(np.ones((8, 8)), P.disk(2.0), method="magic"), "method must be"),
        (lambda: deblur(np.ones((8, 8)), [[1, -1]]), "kernel sums to 0"),
        (lambda: deblur(np.full((8, 8), np.nan), P.disk(2.0)), "NaN"),
        (lambda: deblur(np.ones((8, 8, 3)), P.disk(2.0)), "channel_axis"),
        (lambda: deblur(np.ones((8, 8)), ("disk", 5.0)), "PSF spec"),
        (lambda: deblur(np.ones((8, 8)), P.disk(2.0), iterations=0), "iterations"),
        (lambda: deblur(np.ones((8, 8)), P.disk(2.0), noise_sigma=-1), "noise_sigma"),
        (lambda: deblur(np.ones((8, 8)), P.disk(2.0), boundary="edge"), "boundary"),
        (lambda: deblur(np.ones((8, 8)), P.disk(2.0), noise_sigma=[1, 2]), "one per channel"),
        (lambda: deblur_varying(np.ones((8, 8)), np.ones((8, 9))), "does not match"),
        (lambda: deblur_varying(np.ones((8, 8)), -np.ones((8, 8))), "negative"),
        (lambda: deblur_varying(np.ones((8, 8)), np.ones((8, 8)), psf="ring"), "family"),
    ],
)
def test_bad_input_gets_a_clear_error(call, message):
    with pytest.raises(BadInputError, match=message):
        call()


@pytest.mark.parametrize("method", ["wiener", "tv", "rl"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_power_of_two_gain_is_exact_from_tiny_to_huge(method, dtype):
    # The work runs on each channel scaled into [0.5, 1) by a power of two, so neither the
    # squares of 1e14-sized values overflow nor those of 1e-30-sized values underflow.
    _, big = _scene(48, 8)
    blurred = (100 * _observe(big, P.disk(2.0), 8, 0.005) + 50).astype(dtype)
    kw = {"method": method, "iterations": 10}
    ref = deblur(blurred, P.disk(2.0), **kw)
    for e in (-100, 40):  # values near 1e-28 and 3e14
        gain = dtype(2.0**e)
        out = deblur(blurred * gain, P.disk(2.0), **kw)
        assert out.dtype == dtype and np.isfinite(out).all()
        np.testing.assert_array_equal(out, ref * gain)


def test_magnitudes_beyond_the_limit_are_refused():
    img = data.camera()[:32, :32] * 1e154
    for method in ("wiener", "tv", "rl"):
        with pytest.raises(BadInputError, match="magnitudes up to"):
            deblur(img, P.disk(2.0), method=method)
    with pytest.raises(BadInputError, match="magnitudes up to"):
        deblur_varying(img, np.ones(img.shape))


@pytest.mark.parametrize("method", ["wiener", "tv", "rl"])
def test_int32_near_its_maximum(method):
    # float32 rounds 2**31 - 1 up to 2**31, which no int32 holds: the result must still be
    # clipped to the int32 range, not wrap round (or warn about an invalid cast).
    blurred = S.blur(data.camera()[100:164, 150:214], P.disk(2.5), dtype=np.uint8)
    offset = 2**31 - 1 - 255 * 2**15 - 2**15  # the brightest pixel lands 1 step below the max
    wide = (offset + blurred.astype(np.int64) * 2**15).astype(np.int32)
    out = deblur(wide, P.disk(2.5), method=method, noise_sigma=2**15)
    assert out.dtype == np.int32
    assert out.max() == np.iinfo(np.int32).max  # overshoot at bright edges is clipped there
    assert out.min() > offset - 100 * 2**15
    if method == "wiener":  # linear: the 8-bit data's result under gain and offset
        # (lifted by 1000 so that it is not clipped at 0, as the int32 result is not)
        lifted = blurred.astype(np.float64) + 1000
        narrow = deblur(lifted, P.disk(2.5), method=method, noise_sigma=1) - 1000
        expected = np.clip(offset + narrow * 2**15, None, np.iinfo(np.int32).max)
        assert np.abs(out - expected).max() / 2**15 < 1e-3


def test_noise_above_the_signal_is_refused():
    with pytest.raises(BadInputError, match="intensity units"):
        deblur(data.camera()[:32, :32] / 255.0, P.disk(2.0), noise_sigma=5.0)


ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DEFOCUS_SHARED_DATA", ROOT.parent / "shared" / "data"))
PCB = DATA / "real_stacks" / "focus-stack_pcb" / "pcb_001.jpg"


@pytest.mark.skipif(not PCB.is_file(), reason="shared real data not available")
@pytest.mark.parametrize("corner", [(1000, 400), (1100, 1300)])
def test_real_colour_deblur_with_its_estimated_kernel_adds_no_fringes(corner):
    from defocus.io import read_image
    from defocus.kernel import estimate_kernel
    from defocus.restore import _OPPONENT

    y0, x0 = corner
    full = read_image(PCB).data[y0 - 32 : y0 + 224, x0 - 32 : x0 + 224].astype(float)
    blurred = S.add_gaussian_noise(
        S.blur(full, P.disk(2.5), channel_axis=-1), 2.0, rng=1, channel_axis=-1
    )
    sharp = full[32:-32, 32:-32]
    blurry = np.clip(np.rint(blurred[32:-32, 32:-32]), 0, 255).astype(np.uint8)
    est = estimate_kernel(sharp, blurry, channel_axis=-1)
    out = deblur(blurry, est.kernel.mean(axis=-1), channel_axis=-1)

    def errors(image: np.ndarray) -> tuple[float, float]:
        d = ((image.astype(float) - sharp) @ _OPPONENT.T)[16:-16, 16:-16]
        return float(np.sqrt(np.mean(d[..., 0] ** 2))), float(np.sqrt(np.mean(d[..., 1:] ** 2)))

    lum_b, chroma_b = errors(blurry)
    lum_d, chroma_d = errors(out)
    assert lum_d < 0.9 * lum_b  # sharper
    assert chroma_d <= 1.02 * chroma_b  # and no colour fringes
    # Channel by channel, each with its own prior, the colours drift apart at edges.
    apart = np.stack([deblur(blurry[..., c], est.kernel.mean(axis=-1)) for c in range(3)], -1)
    assert errors(apart)[1] > 1.2 * chroma_b


def test_family_keyword_still_works_with_a_warning():
    img = data.camera()[:64, :64]
    smap = np.full(img.shape, 1.2, np.float32)
    with pytest.warns(FutureWarning, match="family= is deprecated"):
        old = deblur_varying(img, smap, family="disk", noise_sigma=1.0)
    np.testing.assert_array_equal(old, deblur_varying(img, smap, psf="disk", noise_sigma=1.0))
