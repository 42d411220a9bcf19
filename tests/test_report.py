"""The HTML report: self-contained, the library's own numbers, atomic, and rendered by a browser."""

from __future__ import annotations

import base64
import itertools
import re
import shutil
import subprocess
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from skimage import data

import defocus
from defocus.report import make_report, report_page, report_section

MODELS = ("gauss", "disk", "ring")  # the slow band-limited models add nothing to these checks
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
_PNG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """A real sharp texture and its disk-blurred copy (radius 2.5 px, so sigma 1.25 px)."""
    sharp = data.camera()[100:228, 100:228]
    blurry = defocus.blur(sharp, defocus.render("disk", radius=2.5))
    return sharp, np.round(blurry).astype(np.uint8)


@pytest.fixture(scope="module")
def section(pair) -> defocus.report.Section:
    sharp, blurry = pair
    return report_section(blurry, sharp=sharp, pixel_size="20nm", models=MODELS)


@pytest.fixture(scope="module")
def page(section, tmp_path_factory) -> tuple[str, Path]:
    html = report_page([section])
    out = tmp_path_factory.mktemp("report") / "report.html"
    out.write_text(html, encoding="utf-8")
    return html, out


def _pngs(html: str) -> list[np.ndarray]:
    return [iio.imread(base64.b64decode(b), extension=".png") for b in _PNG.findall(html)]


def test_page_is_self_contained_and_its_pictures_decode(page):
    html, _ = page
    # image, heatmap, profile, histograms, kernel, kernel vs model
    pictures = _pngs(html)
    assert len(pictures) == html.count("<img") == 6
    assert all(p.ndim >= 2 and min(p.shape[:2]) >= 64 and p.std() > 0 for p in pictures)
    # nothing to fetch: no scripts, stylesheets, frames or remote sources
    assert not re.search(r"<script|<link|<iframe|src=\"(?!data:)|url\(", html, re.I)


def test_numbers_are_the_librarys(pair, section):
    sec = section
    bm = defocus.blur_map(pair[1], pixel_size=defocus.io.parse_pixel_size("20nm"))
    assert sec.summary["blur"] == bm.summary()
    fp = defocus.focal_plane(bm)
    assert sec.summary["focal_plane"] == fp.summary()
    med = bm.summary()["sigma"]["median"]
    assert f"{med:.2f} px ({med * 20:.3g} nm)" in sec.html  # px with the physical size beside
    # the kernel of the pair is a disk of sigma R/2 = 1.25 px, as rendered
    k = sec.summary["kernel"]
    assert k["model"] == "disk"
    assert k["sigma_px"] == pytest.approx(1.25, rel=0.15)


def test_more_blur_reads_larger_and_pixel_size_is_optional():
    sharp = data.camera()[::6, ::6]
    sections = [
        report_section(defocus.blur(sharp, defocus.render("gauss", sigma=s), dtype=np.float32))
        for s in (1.0, 3.0)
    ]
    medians = [s.summary["blur"]["sigma"]["median"] for s in sections]
    assert medians[0] < medians[1]
    assert "unknown (source: none)" in sections[0].html
    assert "kernel" not in sections[0].summary  # no pair, no kernel section
    assert sections[0].html.count("<img") == 4


def test_deterministic_and_colour_input():
    rgb = data.astronaut()[::10, ::10]
    one = make_report(rgb, channel_axis=-1)
    assert one == make_report(rgb, channel_axis=-1)
    assert "52 x 52 x 3, uint8" in one


def test_failed_analysis_leaves_the_old_page(tmp_path):
    out = tmp_path / "report.html"
    out.write_text("old", encoding="utf-8")
    with pytest.raises(defocus.BadInputError):
        make_report(np.full((64, 64), 7, np.uint8), output=out)
    assert out.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_bad_arguments_are_clear():
    img = data.camera()[::8, ::8]
    with pytest.raises(defocus.BadInputError, match="unknown psf"):
        report_section(img, psf="box")
    with pytest.raises(defocus.BadInputError, match="channel_axis"):
        report_section(np.zeros((8, 8, 3)))
    with pytest.raises(defocus.BadInputError, match="at least one image"):
        make_report([])


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=True)


# Counts, after the load event, the images that decoded; written into the title for --dump-dom.
_PROBE = (
    "<script>addEventListener('load',()=>{const i=[...document.images];"
    "document.title='loaded '+i.filter(x=>x.complete&&x.naturalWidth>0).length"
    "+' of '+i.length})</script></body>"
)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian: apt-get install -y chromium)")
def test_renders_in_headless_chromium(page, tmp_path):
    html, out = page
    shot = tmp_path / "shot.png"
    _chromium(
        "--screenshot=" + str(shot),
        "--window-size=1200,2000",
        out.as_uri(),
        profile=tmp_path / "p1",
    )
    screen = iio.imread(shot)[..., :3].astype(int)
    assert screen.shape[:2] == (2000, 1200)
    # not blank, and coloured: a text-only page is grey, the viridis heatmap is not
    assert screen.std() > 20
    saturation = screen.max(axis=-1) - screen.min(axis=-1)
    assert (saturation > 80).mean() > 0.01

    # every image decodes in the browser; a corrupted one is caught by the same probe
    good = tmp_path / "good.html"
    good.write_text(html.replace("</body>", _PROBE), encoding="utf-8")
    b64 = _PNG.search(html).group(1)
    bad = tmp_path / "bad.html"
    bad.write_text(
        html.replace(b64, base64.b64encode(b"not a png").decode()).replace("</body>", _PROBE),
        encoding="utf-8",
    )
    titles = [
        re.search(
            r"<title>(.*?)</title>",
            _chromium("--dump-dom", f.as_uri(), profile=tmp_path / f.stem).stdout,
        ).group(1)
        for f in (good, bad)
    ]
    assert titles == ["loaded 6 of 6", "loaded 5 of 6"]


def test_focal_line_outside_the_image_is_stated(monkeypatch):
    # Blur grows monotonically down the image: the fitted line lies above its top edge.
    img = data.camera()[::4, ::4]
    sigma = defocus.synth.tilt_map(img.shape, position=-0.4, slope=0.03, floor=0.5)
    one = np.ones_like(sigma)
    ramp = defocus.BlurMap(sigma, one, sigma[2::4, 2::4], one[2::4, 2::4], 4, 0.0, "gauss")
    monkeypatch.setattr(defocus.report, "blur_map", lambda *a, **k: ramp)
    sec = report_section(img)
    fp = defocus.focal_plane(ramp)
    assert fp.outside and fp.note and fp.position == 0.0
    assert sec.summary["focal_plane"] == fp.summary()
    (line,) = re.findall(r"<th>sharpest line</th><td>([^<]*)</td>", sec.html)
    assert line.startswith("least blur at the top edge") and fp.note in line
    assert f"{fp.fitted_position:.1%}" in line  # the extrapolated fit, beyond the image


def test_profile_figure_draws_no_line_without_a_significant_gradient():
    from defocus.blurmap import BlurMap
    from defocus.viz import focal_plane_figure

    def figure(sig):
        one = np.ones_like(sig)
        bm = BlurMap(sig, one, sig[2::4, 2::4], one[2::4, 2::4], 4, 0.0, "gauss")
        fp = defocus.focal_plane(bm)
        return fp, focal_plane_figure(bm, fp)

    tilt, fig = figure(defocus.tilt_map((96, 80), position=0.5, slope=0.05, floor=0.5))
    assert tilt.significant and len(fig.axes[0].lines) > 1  # profile, fit and the sharpest line
    flat, fig = figure(np.full((96, 80), 1.0, np.float32))
    assert not flat.significant and len(fig.axes[0].lines) == 1  # the profile alone


def test_progress_runs_once_through_every_image():
    seen: list[tuple[int, int]] = []
    img = data.camera()[::4, ::4]
    make_report([img, img[:96, :96]], progress=lambda done, total, what: seen.append((done, total)))
    done = [d for d, _ in seen]
    assert all(b >= a for a, b in itertools.pairwise(done))
    assert {t for _, t in seen} == {200} and done[-1] == 200 and 100 in done
