"""defocus.batch: QC tables over many files, resumable, one row per file."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import data

from defocus import BadInputError
from defocus.io import read_image, write_image

pytest.importorskip("distributed")
batch = pytest.importorskip("defocus.batch")


@pytest.fixture(scope="module")
def client():
    c = batch.start_client(workers=1, processes=False)
    yield c
    cluster = c.cluster
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batch")
    sharp = data.camera()[160:288, 160:288].astype(np.float32)
    paths = []
    for i, s in enumerate((0.0, 1.0, 2.5, 4.0)):
        p = folder / f"img{i}.tif"
        write_image(p, np.round(ndi.gaussian_filter(sharp, s)).astype(np.uint8), pixel_size="10nm")
        paths.append(str(p))
    bad = folder / "broken.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 20)
    return [*paths[:2], str(bad), *paths[2:]]


def test_batch_focus_table_rows_flags_and_bad_file(images, tmp_path, client):
    out = tmp_path / "out"
    rows = batch.run_batch(images, out, task="focus", client=client)
    assert [r["input"] for r in rows] == images
    bad = rows[2]
    assert bad["status"] == "bad input" and "broken.tif" in bad["error"]
    good = [r for r in rows if r["status"] == "done"]
    assert len(good) == 4 and all(r["error"] is None for r in good)
    scores = [r["focus_score"] for r in good]
    assert scores == sorted(scores, reverse=True)  # more blur, lower score
    assert [r["out_of_focus"] for r in good] == [s < batch.MIN_FOCUS for s in scores]
    assert good[0]["out_of_focus"] is False and good[-1]["out_of_focus"] is True
    assert all(0 <= r["sharpest_position"] <= 1 for r in good)
    # the CSV holds the same rows, every column, the bad file in its row
    import csv

    with open(out / "qc.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert tuple(table[0]) == batch.QC_COLUMNS and len(table) == 5
    assert table[2]["status"] == "bad input" and table[2]["focus_score"] == ""
    assert float(table[0]["focus_score"]) == pytest.approx(scores[0])
    assert read_image(out / "img0.qc.focus.tif").pixel_size.to("nm").x == pytest.approx(10)


def test_batch_map_sigma_percentiles_grow_with_blur_and_resume_skips(images, tmp_path, client):
    out = tmp_path / "out"
    rows = batch.run_batch(images, out, task="map", client=client)
    good = [r for r in rows if r["status"] == "done"]
    medians = [r["sigma_median"] for r in good]
    assert medians == sorted(medians)
    assert all(r["sigma_p10"] <= r["sigma_median"] <= r["sigma_p90"] for r in good)
    assert [r["out_of_focus"] for r in good] == [m > batch.MAX_SIGMA for m in medians]
    stamp = (out / "img0.qc.sigma.tif").stat().st_mtime_ns
    again = batch.run_batch(images, out, task="map", client=client)
    assert [r["status"] for r in again].count("skipped (done before)") == 4
    assert again[2]["status"] == "bad input"  # a bad file is tried again, and fails again
    assert (out / "img0.qc.sigma.tif").stat().st_mtime_ns == stamp
    assert [r["sigma_median"] for r in again if r["error"] is None] == medians


def test_an_unreachable_scheduler_leaves_no_client_behind():
    import distributed

    def current():
        try:
            return distributed.default_client()
        except ValueError:  # no client at all
            return None

    before = current()
    with pytest.raises(BadInputError, match="cannot reach"):
        batch.start_client(scheduler="notaurl")
    assert current() is before
