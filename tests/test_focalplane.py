"""Tests for defocus.focalplane: a known tilt is recovered, statistics are consistent."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import data

from defocus import BadInputError
from defocus.blurmap import BlurMap, blur_map
from defocus.focalplane import focal_plane, region_stats
from defocus.io import read_image
from defocus.synth import add_gaussian_noise, blur_varying, tilt_map

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DEFOCUS_SHARED_DATA", ROOT.parent / "shared" / "data"))
DEEPFOCUS = SHARED / "real" / "sem_deepfocus_wd"


def _ideal(sigma: np.ndarray) -> BlurMap:
    one = np.ones_like(sigma)
    return BlurMap(sigma, one, sigma[2::4, 2::4], one[2::4, 2::4], 4, 0.0, "gauss")


@pytest.mark.parametrize(("position", "angle"), [(0.62, 0.0), (0.3, -25.0), (0.45, 70.0)])
def test_exact_tilt_is_recovered(position, angle):
    truth = tilt_map((160, 200), position=position, angle=angle, slope=0.04, floor=0.7)
    fp = focal_plane(_ideal(truth))
    assert fp.angle == pytest.approx(angle, abs=0.5)
    assert fp.sigma0 == pytest.approx(0.7, abs=0.05)
    assert fp.slope == pytest.approx(0.04, rel=0.02)
    assert np.allclose(fp.predict(), truth, rtol=0.02, atol=0.02)


def test_tilt_recovered_from_an_estimated_blur_map():
    sharp = data.camera()[:256, 128:384].astype(np.float32) / 255
    truth = tilt_map(sharp.shape, position=0.4, angle=10.0, slope=0.035, floor=0.5)
    img = add_gaussian_noise(blur_varying(sharp, truth), 0.01, rng=0)
    fp = focal_plane(blur_map(img))
    assert fp.significant and fp.axis == "rows"
    assert fp.position == pytest.approx(0.4, abs=0.08)
    assert abs(fp.angle - 10.0) <= 3 * fp.errors["angle"]
    assert fp.slope == pytest.approx(0.035, rel=0.4)
    assert all(np.isfinite(v) and v >= 0 for v in fp.errors.values())
    s = json.loads(json.dumps(fp.summary()))
    assert "sharpest line at" in s["text"] and len(s["bands"]) == 10


def test_estimated_tilt_follows_the_true_tilt():
    # the error bar alone could be wide enough to hold 0°: the angle must also move with the
    # truth, by more than its errors
    sharp = data.camera()[:256, 128:384].astype(np.float32) / 255
    angles, errors = [], []
    for angle in (0.0, 10.0, 20.0):
        truth = tilt_map(sharp.shape, position=0.4, angle=angle, slope=0.035, floor=0.5)
        fp = focal_plane(blur_map(add_gaussian_noise(blur_varying(sharp, truth), 0.01, rng=0)))
        angles.append(fp.angle)
        errors.append(fp.errors["angle"])
    # the error bars are honest (each truth within 3 of them) and useful (under 5°; this crop
    # read 3.3-4.7° with the noise-calibrated blur map, 2.1-2.6° with the earlier one)
    for truth_angle, angle, error in zip((0.0, 10.0, 20.0), angles, errors, strict=True):
        assert abs(angle - truth_angle) <= 3 * error
        assert error < 5.0
    assert angles[1] - angles[0] > 3.0 and angles[2] - angles[1] > 3.0


def _noisy(truth: np.ndarray, seed: int) -> BlurMap:
    """Blur map of a known sigma map with correlated 15 % log-normal errors per 4 px cell."""
    rng = np.random.default_rng(seed)
    cells = truth[2::4, 2::4]
    e = ndi.gaussian_filter(rng.standard_normal(cells.shape), 2.0)
    sig = (cells * np.exp(0.15 * e / e.std())).astype(np.float32)
    conf = rng.uniform(0.3, 1.0, cells.shape).astype(np.float32)
    dense = [
        np.repeat(np.repeat(a, 4, 0), 4, 1)[: truth.shape[0], : truth.shape[1]] for a in (sig, conf)
    ]
    return BlurMap(dense[0], dense[1], sig, conf, 4, 0.0, "gauss")


def test_large_map_is_fitted_on_binned_cells():
    # 250 x 300 cells, far more than the 4096 bins the fit runs on.
    truth = tilt_map((1000, 1200), position=0.35, angle=15.0, slope=0.01, floor=0.6)
    fp = focal_plane(_ideal(truth))
    assert fp.significant
    assert fp.position == pytest.approx(0.35, abs=0.005)
    assert fp.angle == pytest.approx(15.0, abs=0.5)
    assert fp.slope == pytest.approx(0.01, rel=0.02)
    assert fp.sigma0 == pytest.approx(0.6, abs=0.1)


def test_noisy_tilt_line_lies_within_its_errors_and_errors_match_the_scatter():
    # Bootstrap blocks (60 x 80 px) well beyond the errors' correlation length (~ 3 cells).
    truth = tilt_map((480, 640), position=0.4, angle=10.0, slope=0.01, floor=0.8)
    fits = [focal_plane(_noisy(truth, seed)) for seed in range(12)]
    assert all(fp.significant and fp.axis == "rows" for fp in fits)
    # Truth within two standard errors: 95 % of draws if the errors are right.
    within = [abs(fp.fitted_position - 0.4) <= 2 * fp.errors["position"] for fp in fits]
    assert sum(within) >= 10
    # The bootstrap error is the estimator's real scatter over noise draws, within 2x.
    for key, attr in (("position", "fitted_position"), ("slope", "slope"), ("angle", "angle")):
        scatter = np.std([getattr(fp, attr) for fp in fits], ddof=1)
        reported = np.median([fp.errors[key] for fp in fits])
        assert 0.5 < reported / scatter < 2, key


@pytest.mark.parametrize("sigma", [0.3, 1.5, 6.0])
def test_no_blur_gradient_claims_no_focal_line(sigma):
    flat = np.full((240, 320), sigma, np.float32)
    for bm in (_ideal(flat), _noisy(flat, 0), _noisy(flat, 1)):
        fp = focal_plane(bm)
        assert not fp.significant and fp.reason
        s = json.loads(json.dumps(fp.summary()))
        assert s["text"].startswith("no significant blur gradient: no focal line (")
        assert s["significant"] is False and s["position"] is None and s["angle_deg"] is None


def test_gradient_below_the_maps_accuracy_claims_no_line():
    # Exact, but blur grows by only ~10 % across the image: under the 30 % a line needs.
    fp = focal_plane(_ideal(tilt_map((160, 200), position=0.5, slope=0.004, floor=1.0)))
    assert fp.blur_range < 1.3 and not fp.significant
    assert "across the image" in fp.reason
    strong = focal_plane(_ideal(tilt_map((160, 200), position=0.5, slope=0.02, floor=1.0)))
    assert strong.blur_range > 1.3 and strong.significant and strong.reason == ""


def test_bands_profiles_and_region_stats():
    truth = tilt_map((120, 80), position=0.5, slope=0.05, floor=1.0)
    fp = focal_plane(_ideal(truth), n_bands=4)
    sig = [b["sigma"] for b in fp.bands]
    assert sig[0] > sig[1] and sig[3] > sig[2]  # blur grows away from the middle
    assert fp.rows.median.shape == fp.rows.coord.shape == (30,)
    assert np.all(fp.rows.p16 <= fp.rows.p84)
    assert fp.rows.median.argmin() in (14, 15)
    bottom = region_stats(_ideal(truth), rows=(0.0, 0.25), origin="bottom")
    top = region_stats(_ideal(truth), rows=(0.75, 1.0))
    assert bottom["sigma"] == pytest.approx(top["sigma"], rel=0.05)
    assert bottom["text"].startswith("rows 0-25 % from the bottom: sigma = ")


def test_bad_input():
    with pytest.raises(BadInputError, match="origin"):
        region_stats(_ideal(np.ones((40, 40), np.float32)), origin="left")
    with pytest.raises(BadInputError, match="fractions"):
        region_stats(_ideal(np.ones((40, 40), np.float32)), rows=(0.6, 0.2))
    zero = _ideal(np.ones((40, 40), np.float32))
    zero.confidence[:] = 0
    with pytest.raises(BadInputError, match="too few"):
        focal_plane(zero)


@pytest.mark.parametrize(
    ("position", "angle", "axis", "edge", "side"),
    [
        (-0.4, 0.0, "rows", 0.0, "top"),
        (1.5, 10.0, "rows", 1.0, "bottom"),
        (1.3, 5.0, "columns", 1.0, "right"),
    ],
)
def test_focal_line_outside_the_image_reports_the_nearest_edge(position, angle, axis, edge, side):
    # Blur grows monotonically across the image: the fitted line lies beyond one end.
    if axis == "rows":
        truth = tilt_map((160, 200), position=position, angle=angle, slope=0.03, floor=0.5)
    else:  # tilt_map's lines cross the height; transposed, they cross the width
        truth = tilt_map((200, 160), position=position, angle=angle, slope=0.03, floor=0.5).T
    profile = truth.mean(axis=1 if axis == "rows" else 0)
    assert np.all(np.diff(profile) > 0) if edge == 0 else np.all(np.diff(profile) < 0)
    fp = focal_plane(_ideal(truth))
    assert fp.axis == axis and fp.outside
    assert fp.position == edge  # within the image, where blur is least
    # The fit itself is kept, not bent to the edge: extrapolated line and model are honest.
    assert fp.fitted_position == pytest.approx(position, abs=0.02)
    assert np.allclose(fp.predict(), truth, rtol=0.02, atol=0.02)
    assert "outside the field of view" in fp.note
    s = json.loads(json.dumps(fp.summary()))
    assert s["position"] == edge and s["note"] == fp.note
    assert s["fitted_position"] == pytest.approx(position, abs=0.02)
    assert s["text"].startswith(f"least blur at the {side} edge, {100 * edge:.0f} %")


def test_focal_line_inside_the_image_has_no_note():
    fp = focal_plane(_ideal(tilt_map((120, 100), position=0.3, slope=0.03, floor=0.5)))
    assert not fp.outside and fp.note == "" and fp.position == fp.fitted_position
    assert fp.summary()["text"].startswith("sharpest line at 30.")


def test_tilted_line_through_a_corner_is_not_called_outside_the_field_of_view():
    # Crosses the centre column below the image but cuts through its right-hand side.
    truth = tilt_map((160, 200), position=1.2, angle=40.0, slope=0.03, floor=0.5)
    fp = focal_plane(_ideal(truth))
    assert fp.outside and fp.position == 1.0
    assert fp.fitted_position == pytest.approx(1.2, abs=0.02)
    assert "centre line outside" in fp.note and "field of view" not in fp.note


def _no_line(fp) -> None:
    assert not fp.significant and fp.p_value >= 0.00135
    text = fp.summary()["text"]
    assert text.startswith("no significant blur gradient: no focal line (") and "\n" not in text
    assert "correlated errors alone" in fp.reason


@pytest.mark.parametrize("texture", ["grass to camera", "grass under a gain ramp"])
def test_uniform_blur_with_varying_texture_claims_no_line(texture):
    # One blur everywhere, but the texture (or its contrast) changes across the width, and with
    # it the blur map's texture-dependent error: k came out 5.2 and 5.3 bootstrap errors from
    # zero, which a test that took the map's cells as independent called a line.
    grass = data.grass()[:256, :320].astype(np.float32) / 255
    mix = np.linspace(0, 1, 320, dtype=np.float32)[None, :]
    if texture == "grass to camera":
        img = grass * (1 - mix) + data.camera()[:256, 100:420].astype(np.float32) / 255 * mix
    else:
        img = grass * (0.2 + 0.8 * mix) + 0.3
    blurred = add_gaussian_noise(ndi.gaussian_filter(img, 1.5), 0.01, rng=0)
    _no_line(focal_plane(blur_map(blurred)))


@pytest.mark.skipif(not DEEPFOCUS.is_dir(), reason="shared real data not present")
@pytest.mark.parametrize("frame", ["base", "pert-5000", "pert5000"])
def test_uniformly_defocused_sem_frame_claims_no_line(frame):
    # A flat section imaged at one working distance (the set's SOURCE.txt): no gradient.
    path = DEEPFOCUS / f"series_0_def-13324_astx-466_asty219_{frame}.png"
    _no_line(focal_plane(blur_map(read_image(path).data)))


@pytest.mark.parametrize(("position", "angle"), [(0.6, -15.0), (0.3, 5.0)])
def test_known_tilt_is_found_within_its_stated_errors(position, angle):
    sharp = data.camera()[:256, 128:384].astype(np.float32) / 255
    truth = tilt_map(sharp.shape, position=position, angle=angle, slope=0.035, floor=0.5)
    fp = focal_plane(blur_map(add_gaussian_noise(blur_varying(sharp, truth), 0.01, rng=0)))
    assert fp.significant and fp.p_value < 1e-4
    assert abs(fp.fitted_position - position) <= 3 * fp.errors["position"]
    assert abs(fp.angle - angle) <= 3 * fp.errors["angle"]
    assert fp.summary()["p_value"] == pytest.approx(fp.p_value, rel=0.05, abs=1e-300)


def test_significance_does_not_depend_on_the_blur_scale():
    # The same correlated errors on a flat map at 1 and at 4 px, and on the same tilt scaled:
    # the test works in log sigma, so a scale changes nothing but the floor's share.
    flat, tilt = np.full((240, 320), 1.5, np.float32), tilt_map((240, 320), slope=0.03, floor=1.5)
    for truth in (flat, tilt):
        p = [focal_plane(_noisy(truth * scale, 3)).p_value for scale in (1.0, 4.0)]
        assert (p[0] < 0.00135) == (p[1] < 0.00135) == (truth is tilt)


def test_blur_at_several_depths_without_a_tilt_says_it_varies():
    # Two halves at 1 and 8 px, side by side: blur varies 8-fold but does not grow away from
    # any line, so there is no focal line and the summary must not say "no gradient".
    sigma = np.full((240, 320), 1.0, np.float32)
    sigma[:, 160:] = 8.0
    fp = focal_plane(_noisy(sigma, 0))
    flat = focal_plane(_noisy(np.full((240, 320), 8.0, np.float32), 0))
    assert not fp.significant
    assert fp.summary()["text"].startswith("blur varies (")
    assert "not as a tilted plane: no focal line (" in fp.summary()["text"]
    lo, hi = fp.spread
    assert lo < 2 and hi > 6
    assert flat.summary()["text"].startswith("no significant blur gradient")


def test_bundled_fib_image_claims_no_line():
    # The needle is in focus before a defocused substrate: blur varies 10-fold, but not away
    # from a line. A p-value alone (5e-4 at some seeds) claimed "70 +- 54 %", a line whose
    # growth the bootstrap could not resolve.
    from defocus.data import sample_path

    bm = blur_map(read_image(sample_path("fib_needle.tif")).data)
    for seed in range(3):
        fp = focal_plane(bm, rng=seed)
        assert not fp.significant
        assert fp.summary()["text"].startswith("blur varies (")


def test_too_few_independent_measurements_is_said_so():
    # An exact tilt, but confident only in a 4-px strip across it: simulated constant maps fit
    # the V as well, and the reason must not blame errors the map does not have.
    sig = tilt_map((400, 400), slope=0.05, floor=0.5)
    conf = np.zeros_like(sig)
    conf[:, 100:104] = 1
    strip = focal_plane(BlurMap(sig, conf, sig[2::4, 2::4], conf[2::4, 2::4], 4, 0.0, "gauss"))
    assert not strip.significant and "too few independent measurements" in strip.reason
    conf[:, 100:140] = 1
    wide = focal_plane(BlurMap(sig, conf, sig[2::4, 2::4], conf[2::4, 2::4], 4, 0.0, "gauss"))
    assert wide.significant


def test_unmeasurable_scatter_is_not_called_varied_blur():
    # Scattered values, all below the blur map's measurable confidence (0.3): the spread of a
    # fill the map itself calls "not measurable" is no evidence that blur varies.
    rng = np.random.default_rng(3)
    blocks = 0.8 * np.exp(rng.normal(0, 0.6, (15, 20)))
    sig = np.kron(blocks, np.ones((16, 16))).astype(np.float32)
    conf = np.full_like(sig, 0.2)
    fp = focal_plane(BlurMap(sig, conf, sig[2::4, 2::4], conf[2::4, 2::4], 4, 0.0, "gauss"))
    assert not fp.significant
    assert fp.summary()["text"].startswith("no significant blur gradient: no focal line (")
    assert fp.summary()["spread"] is None
