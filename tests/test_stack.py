"""Focus stacking: fusion beats every frame, alignment recovers known motion, dtype kept,
depth follows a tilt, colour comes from real frames, and bad stacks get clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from skimage import data
from skimage.metrics import peak_signal_noise_ratio as psnr

from defocus import BadInputError, StackResult, fuse, synth
from defocus.io import write_image
from defocus.stack import METHODS, AlignmentWarning, register, warp


def _bands_stack(image: np.ndarray, n: int = 3, sigma: float = 2.5, **kw) -> list[np.ndarray]:
    """Frame k is sharp in the k-th horizontal band and blurred (disk) elsewhere."""
    h = image.shape[0]
    band = np.minimum(np.arange(h) * n // h, n - 1)
    frames = []
    for k in range(n):
        smap = np.where(band[:, None] == k, 0.0, sigma) * np.ones(image.shape[:2])
        frames.append(synth.blur_varying(image, smap.astype(np.float32), psf="disk", **kw))
    return frames


def _to(frames: list[np.ndarray], dtype) -> list[np.ndarray]:
    info = np.iinfo(dtype)
    return [np.clip(np.rint(f), info.min, info.max).astype(dtype) for f in frames]


@pytest.fixture(scope="module")
def gray() -> np.ndarray:
    return data.camera()[::2, ::2]  # 256 x 256


@pytest.fixture(scope="module")
def gray_stack(gray) -> list[np.ndarray]:
    return _to(_bands_stack(gray), np.uint8)


@pytest.mark.parametrize("method", METHODS)
def test_fusion_beats_every_frame(gray, gray_stack, method):
    res = fuse(gray_stack, method=method, align=False)
    assert isinstance(res, StackResult)
    best = max(psnr(gray, f) for f in gray_stack)
    assert psnr(gray, res.image) > best + 3
    # each band's interior comes from the frame that is sharp there
    for k, rows in enumerate((slice(20, 65), slice(105, 150), slice(190, 236))):
        assert np.median(res.source[rows, 20:-20]) == k


def test_fusion_with_alignment_on_an_unmoved_stack_stays_put(gray, gray_stack):
    res = fuse(gray_stack)
    assert res.aligned.all()
    # corners of the frame move by well under half a pixel
    corners = np.array([[0, 0, 1], [0, 255, 1], [255, 0, 1], [255, 255, 1]], float).T
    for t in res.transforms:
        assert np.abs(t @ corners - corners).max() < 0.5
    assert psnr(gray, res.image) > max(psnr(gray, f) for f in gray_stack) + 3


def _similarity(scale: float, angle_deg: float, shift: tuple[float, float], centre) -> np.ndarray:
    th = np.deg2rad(angle_deg)
    a = scale * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    t = np.eye(3)
    t[:2, :2] = a
    t[:2, 2] = np.asarray(centre) - a @ np.asarray(centre) + np.asarray(shift)
    return t


@pytest.mark.parametrize(
    ("scale", "angle", "shift"), [(1.0, 0.0, (4.3, -2.7)), (1.03, 0.4, (-1.5, 2.2))]
)
def test_register_recovers_known_shift_and_scale(scale, angle, shift):
    ref = data.camera().astype(np.float32)
    truth = _similarity(scale, angle, shift, (255.5, 255.5))
    # moving(truth p) = ref(p), with a blur and an exposure change on top
    moving = warp(ref, np.linalg.inv(truth))
    moving = 0.7 * synth.blur(moving, np.full((3, 3), 1 / 9)) + 20
    found, ncc = register(ref, moving)
    assert ncc > 0.9
    pts = np.array([[64, 64, 1], [64, 448, 1], [448, 64, 1], [448, 448, 1]], float).T
    assert np.abs(found @ pts - truth @ pts).max() < 0.15  # pixels


def test_fuse_aligns_breathing_and_exposure(gray):
    frames = _bands_stack(gray.astype(np.float32))
    truth = _similarity(1.02, 0.0, (2.5, -1.5), (127.5, 127.5))
    frames[2] = warp(frames[2], np.linalg.inv(truth)) * 1.3  # zoomed, brighter
    res = fuse(_to(frames, np.uint8))
    interior = np.array([[40, 40, 1], [40, 215, 1], [215, 40, 1], [215, 215, 1]], float).T
    assert np.abs(res.transforms[2] @ interior - truth @ interior).max() < 0.3
    assert res.gain[2] == pytest.approx(1 / 1.3, rel=0.03)
    fused_unaligned = fuse(_to(frames, np.uint8), align=False)
    inner = (slice(20, -20), slice(20, -20))
    assert psnr(gray[inner], res.image[inner]) > psnr(gray[inner], fused_unaligned.image[inner]) + 2


def test_failed_alignment_warns_and_names_the_frame(gray, gray_stack):
    noise = np.random.default_rng(0).integers(0, 256, gray.shape, dtype=np.uint8)
    with pytest.warns(AlignmentWarning, match="frame 1"):
        res = fuse([gray_stack[0], noise, gray_stack[2]])
    assert res.aligned.tolist() == [True, False, True]


def test_sixteen_bit_in_sixteen_bit_out(gray):
    sharp = gray.astype(np.float32) * 250  # up to ~64000: uses the full 16-bit range
    frames = _to(_bands_stack(sharp), np.uint16)
    res = fuse(frames, align=False)
    assert res.image.dtype == np.uint16
    assert res.image.max() > 50000
    assert psnr(sharp, res.image, data_range=65535) > max(
        psnr(sharp, f, data_range=65535) for f in frames
    )


def test_float_frames_keep_their_float_dtype(gray_stack):
    res = fuse([f.astype(np.float32) / 255 for f in gray_stack], align=False)
    assert res.image.dtype == np.float32
    assert 0 <= float(res.image.mean()) <= 1


def test_depth_is_monotonic_along_a_tilt():
    image = data.brick()[:192, :192]
    rows = np.arange(192, dtype=np.float32)[:, None] * np.ones((1, 192), np.float32)
    n = 5
    focus_rows = np.linspace(0, 191, n)
    levels = np.linspace(0, 0.03 * 192, 12)  # a few blur levels keep the rendering fast
    frames = [
        synth.blur_varying(image, np.abs(rows - fr) * 0.03, levels=levels, dtype=np.uint8)
        for fr in focus_rows
    ]
    res = fuse(frames, align=False)
    profile = np.median(res.depth[:, 16:-16], axis=1)
    assert stats.spearmanr(np.arange(192), profile).statistic > 0.95
    bins = profile.reshape(12, 16).mean(axis=1)
    assert (np.diff(bins) > -0.05).all()
    # sub-frame: the true index is a continuous ramp 0..n-1 and the estimate follows it
    truth = rows[:, 0] / 191 * (n - 1)
    assert np.sqrt(np.mean((profile - truth)[16:-16] ** 2)) < 0.35
    assert res.depth.dtype == np.float32 and res.confidence.max() <= 1


def test_colour_comes_from_real_frames():
    rgb = data.astronaut()[::4, ::4]
    frames = _to(_bands_stack(rgb, channel_axis=-1), np.uint8)
    res = fuse(frames, align=False, channel_axis=-1)
    assert res.image.shape == rgb.shape and res.channel_axis == -1
    assert psnr(rgb, res.image) > max(psnr(rgb, f) for f in frames) + 2
    # fused = source-frame colour + one luminance offset: R-G and B-G are the source frame's
    src = np.take_along_axis(
        np.stack(frames).astype(int), res.source[None, ..., None].astype(int), 0
    )[0]
    fused = res.image.astype(int)
    unclipped = (fused > 0).all(-1) & (fused < 255).all(-1)
    for a, b in ((0, 1), (2, 1)):
        diff = (fused[..., a] - fused[..., b]) - (src[..., a] - src[..., b])
        assert np.abs(diff[unclipped]).max() <= 1  # rounding only


def test_grey_plus_alpha_is_fused_on_its_grey_channel(gray, gray_stack):
    # the alpha channel holds no detail: the fusion of grey + alpha frames is the fusion of the
    # grey frames, and an opaque alpha stays opaque
    alpha = np.full(gray.shape, 255, np.uint8)
    frames = [np.stack([f, alpha], axis=-1) for f in gray_stack]
    res = fuse(frames, align=False, channel_axis=-1)
    grey = fuse(gray_stack, align=False)
    np.testing.assert_array_equal(res.depth, grey.depth)
    assert np.abs(res.image[..., 0].astype(int) - grey.image).max() <= 1  # rounding only
    assert (res.image[..., 1] == 255).all()


def test_channel_axis_first(gray):
    rgb = data.astronaut()[::4, ::4]
    frames = [np.moveaxis(f, -1, 0) for f in _to(_bands_stack(rgb, channel_axis=-1), np.uint8)]
    res = fuse(frames, align=False, channel_axis=0)
    assert res.image.shape == (3, 128, 128) and res.channel_axis == 0


def test_paths_and_arrays_give_the_same_result(tmp_path, gray_stack):
    paths = []
    for k, f in enumerate(gray_stack):
        paths.append(tmp_path / f"f{k}.png")
        write_image(paths[-1], f)
    from_files = fuse(paths, align=False)
    from_arrays = fuse(gray_stack, align=False)
    assert np.array_equal(from_files.image, from_arrays.image)
    assert np.array_equal(from_files.depth, from_arrays.depth)


def test_progress_reports_every_step(gray_stack):
    seen = []
    fuse(gray_stack, align=False, progress=lambda done, total, what: seen.append((done, total)))
    assert [d for d, _ in seen] == list(range(1, seen[-1][1] + 1))


def test_bad_stacks_get_clear_errors(gray_stack):
    with pytest.raises(BadInputError, match="at least 2 frames"):
        fuse(gray_stack[:1])
    with pytest.raises(BadInputError, match=r"frame 1.*differs"):
        fuse([gray_stack[0], gray_stack[1][:-1]])
    with pytest.raises(BadInputError, match="dtype"):
        fuse([gray_stack[0], gray_stack[1].astype(np.uint16)])
    with pytest.raises(BadInputError, match="method"):
        fuse(gray_stack, method="median")
    with pytest.raises(BadInputError, match="levels must be"):
        fuse(gray_stack, levels=30)
    with pytest.raises(BadInputError, match="channel_axis"):
        fuse([np.zeros((8, 8, 3))] * 2)
    with pytest.raises(BadInputError, match=r"missing_a\.png: no such file"):
        fuse(["missing_a.png", "missing_b.png"])
