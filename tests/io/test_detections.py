"""The vectorizer thread writes what the vectorizer gives, holds back a lagging producer, and hands its
failures to the caller (as one clear OutputError through OutputSet, leaving nothing behind)."""

from __future__ import annotations

import errno
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio

from edge_ls.errors import OutputError
from edge_ls.io import detections as detections_mod
from edge_ls.io.detections import DetectionWriter, GeoJSONStream
from edge_ls.io.outputs import OutputOptions, OutputSet
from edge_ls.io.polygons import StreamingPolygonizer
from edge_ls.pixel_math import confidence

THRESHOLD = 0.5


@pytest.fixture(scope="module")
def prob(geotiffs: Path) -> np.ndarray:
    """A real band as a fake probability, 0 where nodata (what the writer hands over)."""
    with rasterio.open(geotiffs / "rasterio" / "RGB.byte.tif") as src:
        return (src.read(2) / 255.0).astype(np.float32)


def _chunks(prob: np.ndarray, rows: int = 64):
    for row in range(0, prob.shape[0], rows):
        yield row, prob[row : row + rows]


def test_features_are_the_vectorizers_regions_in_order(prob: np.ndarray, tmp_path: Path) -> None:
    width = prob.shape[1]
    expected = []
    reference = StreamingPolygonizer(width)
    for row, rows in _chunks(prob):
        expected += reference.add_band(row, rows >= THRESHOLD, rows, confidence(rows, THRESHOLD))
    expected += reference.finish()

    path = tmp_path / "d.geojson"
    writer = DetectionWriter(
        [GeoJSONStream(path, {"type": "FeatureCollection"})], StreamingPolygonizer(width), THRESHOLD
    )
    for row, rows in _chunks(prob):
        writer.add(row, rows)
    writer.end()
    writer.close()
    features = json.loads(path.read_text())["features"]
    assert writer.count == len(features) == len(expected) > 20
    assert [f["properties"]["area_m2"] for f in features] == [r.area for r in expected]
    assert [f["id"] for f in features] == list(range(1, len(features) + 1))


def test_a_lagging_vectorizer_holds_the_producer_back(prob: np.ndarray, tmp_path: Path, monkeypatch) -> None:
    """At most one chunk waits in the queue: a slow vectorizer blocks ``add``, it does not buffer rows."""
    release = threading.Event()
    poly = StreamingPolygonizer(prob.shape[1])
    real_add = poly.add_band

    def slow_add(*args):
        release.wait()
        return real_add(*args)

    monkeypatch.setattr(poly, "add_band", slow_add)
    writer = DetectionWriter(
        [GeoJSONStream(tmp_path / "d.geojson", {"type": "FeatureCollection"})], poly, THRESHOLD
    )
    handed = []
    chunks = list(_chunks(prob))

    def produce() -> None:
        for row, rows in chunks[:4]:
            writer.add(row, rows)
            handed.append(row)

    producer = threading.Thread(target=produce)
    producer.start()
    producer.join(timeout=1.0)
    # one chunk taken by the (blocked) vectorizer, one queued; the third waits for room
    assert producer.is_alive() and len(handed) == 2
    release.set()
    producer.join(timeout=30)
    assert len(handed) == 4
    writer.discard()


def test_vectorizer_failure_reaches_the_caller_as_one_clear_error(
    prob: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk while writing the vectors (on the vectorizer's thread) fails the whole output set."""
    real_write = detections_mod.GeoPackageRegions.write
    calls = {"n": 0}

    def write_until_full(self, regions) -> None:
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(self, regions)

    monkeypatch.setattr(detections_mod.GeoPackageRegions, "write", write_until_full)
    out_dir = tmp_path / "out"
    h, w = prob.shape
    out = OutputSet(
        out_dir,
        width=w,
        height=h,
        crs=None,
        transform=None,
        georeferenced=False,
        pixel_area_m2=None,
        options=OutputOptions(threshold=THRESHOLD, quicklook_max_size=64),
    )
    with pytest.raises(OutputError) as info:
        for row, rows in _chunks(prob):
            out.write_rows(row, rows, np.ones(rows.shape, bool))
        out.commit({})
    assert str(info.value) == f"cannot write outputs to {out_dir}: No space left on device"
    assert list(out_dir.iterdir()) == []  # no partial set, no temporary folder


def test_discard_stops_a_working_vectorizer(prob: np.ndarray, tmp_path: Path) -> None:
    writer = DetectionWriter(
        [GeoJSONStream(tmp_path / "d.geojson", {})], StreamingPolygonizer(prob.shape[1]), THRESHOLD
    )
    for row, rows in list(_chunks(prob))[:3]:
        writer.add(row, rows)
    writer.discard()
    assert not writer._thread.is_alive()


def test_threshold_must_exclude_nodata_zeros(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"threshold must lie in \(0, 1\)"):
        DetectionWriter([GeoJSONStream(tmp_path / "d.geojson", {})], StreamingPolygonizer(8), 0.0)


def test_finalize_waits_for_the_vectorizer_before_any_cog_copy(
    prob: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The vectorizer's last regions are its memory peak: it must not overlap a COG copy's."""
    real_to_cog = OutputSet._to_cog
    seen: list[bool] = []
    h, w = prob.shape
    out = OutputSet(
        tmp_path / "out",
        width=w,
        height=h,
        crs=None,
        transform=None,
        georeferenced=False,
        pixel_area_m2=None,
        options=OutputOptions(threshold=THRESHOLD, quicklook_max_size=64),
    )

    def to_cog(src: Path, dst: Path) -> None:
        seen.append(out._detections._thread.is_alive())
        real_to_cog(src, dst)

    monkeypatch.setattr(OutputSet, "_to_cog", staticmethod(to_cog))
    for row, rows in _chunks(prob):
        out.write_rows(row, rows, np.ones(rows.shape, bool))
    out.commit({})
    assert seen == [False, False, False]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["output_stats"]["detections"] > 20


def test_a_geopackage_write_failure_is_one_clear_output_error(
    prob: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite reports a full disk as its own error type, not OSError: it must still end as OutputError."""
    import sqlite3

    from edge_ls.io import gpkg

    def full(self, geometries, values) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(gpkg.GeoPackageStream, "write", full)
    out_dir = tmp_path / "out"
    h, w = prob.shape
    out = OutputSet(
        out_dir,
        width=w,
        height=h,
        crs=None,
        transform=None,
        georeferenced=False,
        pixel_area_m2=None,
        options=OutputOptions(threshold=THRESHOLD, quicklook_max_size=64),
    )
    with pytest.raises(OutputError, match="database or disk is full"):
        for row, rows in _chunks(prob):
            out.write_rows(row, rows, np.ones(rows.shape, bool))
        out.commit({})
    assert list(out_dir.iterdir()) == []
