"""Blur map on real instrument data: physics any correct estimator must obey (issue 14).

The scoring is the real-data benchmark's (benchmarks/bench_real.py). The real data lives
outside the repository (``../shared/data``, or DEFOCUS_SHARED_DATA); without it the real-data
test is skipped.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import data

import defocus
from defocus.io import read_image

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DEFOCUS_SHARED_DATA", ROOT.parent / "shared" / "data"))
STACK = DATA / "real_stacks" / "focus-stack_pcb_depthmap"


def _bench():
    path = ROOT / "benchmarks" / "bench_real.py"
    spec = importlib.util.spec_from_file_location("bench_real", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_through_focus_scoring_passes_the_truth_and_fails_a_constant():
    # A synthetic sweep with known blur: the check must be passable, and must not pass a
    # reading that ignores the image.
    sharp = data.camera()[128:384, 128:384].astype(np.float32)
    truth = [float(np.hypot(0.6, 0.9 * (i - 2.3))) for i in range(6)]
    frames = [ndi.gaussian_filter(sharp, s) for s in truth]

    def reader(values):
        it = iter(values)

        def estimator(image, *, psf, channel_axis):
            s = np.full(image.shape, next(it), np.float32)
            return SimpleNamespace(sigma=s, confidence=np.ones_like(s))

        return estimator

    tfc = _bench().through_focus_consistency
    right = tfc(frames, reader(truth), psf="gauss")
    assert right["n_textured"] >= 8
    assert right["r2_median"] > 0.99 and right["match_fraction"] == 1.0
    assert right["k_median"] == pytest.approx(0.9, rel=0.05)
    flat = tfc(frames, reader([0.5] * 6), psf="gauss")
    assert flat["r2_median"] < 0.1 and flat["match_fraction"] == 0.0


@pytest.mark.skipif(not STACK.is_dir(), reason="shared real data not available")
def test_least_blur_frame_is_the_sharpest_frame_on_a_real_sweep():
    # A 640 x 448 crop of the push button in a real DSLR focus sweep (8-bit JPEG, frames 2-8
    # of 10). The focus measure peaks mid-sweep here, so a sigma that merely drifts with the
    # frame index cannot pass; tiles where the measure does not vary are left out.
    paths = sorted(STACK.glob("pcb_*.JPG"))[2:9]
    frames = [read_image(p).data[448:896, 704:1344] for p in paths]
    res = _bench().through_focus_consistency(frames, defocus.blur_map, channel_axis=-1)
    assert res["n_textured"] >= 20
    assert res["match_fraction"] >= 0.8


def test_bundled_fib_image_reads_the_substrate_far_blurrier_than_the_needle():
    # The bundled FIB image (in the package, no shared data needed): needle and lamella are in
    # focus, the substrate behind them is far out of focus (hand-measured edges: sigma 25-36 px).
    bench = _bench()
    img = read_image(ROOT / "src" / "defocus" / "data" / "fib_needle.tif").data
    est = defocus.blur_map(img)
    regions = bench.FIB_REGIONS["pfib_needle_lamella_test_image_2.tif"]
    med = {}
    for name in ("needle", "substrate"):
        m = bench.region_mask(img.shape, regions[name])
        med[name] = bench.weighted_median(est.sigma[m], est.confidence[m])
    assert med["substrate"] >= 4.0, med
    assert med["substrate"] >= 3 * med["needle"], med


@pytest.mark.skipif(not (DATA / "real_stacks").is_dir(), reason="shared real data not available")
def test_defocused_background_of_a_real_jpeg_reads_blurred():
    # An in-camera JPEG (focus-stack_pcb): its flat blocks are exactly flat, so only the block
    # grid shows the compression error. The heat sinks behind the board are far out of focus
    # (their edges span tens of px); the pin header is in focus. Same rule as the FIB check.
    frame = read_image(DATA / "real_stacks" / "focus-stack_pcb" / "pcb_001.jpg").data
    med = {
        name: defocus.blur_map(
            frame[r : r + 320, c : c + 448], psf="disk", channel_axis=-1
        ).summary()["sigma"]["median"]
        for name, (r, c) in {"background": (300, 400), "pins": (1100, 1300)}.items()
    }
    assert med["background"] >= 4.0, med
    assert med["background"] >= 3 * med["pins"], med
