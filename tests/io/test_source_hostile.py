"""Inputs built to hang or mislead the source: a sparse 10^6 x 10^6 GeoTIFF, a FIFO, a latitude of
120 degrees. Each fails at once with one InputError line, or runs as what it truly is."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest
import rasterio
from rasterio.transform import from_origin

from edge_ls.errors import ConfigError, InputError
from edge_ls.io.source import MAX_PIXELS_ENV, RasterSource, max_scene_pixels
from tests.hostile import tiny_raster, tiny_spec


def sparse_huge(path: Path, side: int = 1_000_000) -> Path:
    """A side x side uint8 RGB GeoTIFF with no data blocks at all (~200 kB on disk)."""
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=side,
        height=side,
        count=3,
        dtype="uint8",
        tiled=True,
        blockxsize=8192,
        blockysize=8192,
        sparse_ok=True,
        BIGTIFF="YES",
        crs="EPSG:32633",
        transform=from_origin(500000.0, 5000000.0, 1.0, 1.0),
    ):
        pass
    return path


def test_sparse_huge_geotiff_fails_fast_with_the_limit(tmp_path: Path) -> None:
    path = sparse_huge(tmp_path / "huge.tif")
    assert path.stat().st_size < 1_000_000
    t0 = time.perf_counter()
    with pytest.raises(InputError, match=r"1000000 x 1000000 px.*EDGE_LS_MAX_PIXELS"):
        RasterSource(path, tiny_spec())
    assert time.perf_counter() - t0 < 5.0


def test_the_pixel_limit_is_raised_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_PIXELS_ENV, "1e13")
    assert max_scene_pixels() == 10**13
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(ConfigError, match=MAX_PIXELS_ENV):
        max_scene_pixels()


def test_a_scene_under_a_lowered_limit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tiny_raster(tmp_path / "small.tif", 96)
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000")
    with pytest.raises(InputError, match="96 x 96 px"):
        RasterSource(path, tiny_spec())


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_refused_at_once_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "scene.tif"
    os.mkfifo(fifo)
    result: list[BaseException | None] = []

    def open_it() -> None:
        try:
            RasterSource(fifo, tiny_spec())
            result.append(None)
        except BaseException as exc:
            result.append(exc)

    worker = threading.Thread(target=open_it, daemon=True)
    worker.start()
    worker.join(timeout=5)
    if worker.is_alive():  # unblock the reader so the test process can end
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        pytest.fail("opening a FIFO blocked")
    assert isinstance(result[0], InputError) and "not a regular file" in str(result[0])


def test_latitude_120_is_not_taken_as_georeferenced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tiny_raster(tmp_path / "lat120.tif", 96, crs="EPSG:4326", origin=(10.0, 120.0), res=0.001)
    with caplog.at_level(logging.WARNING):
        source = RasterSource(path, tiny_spec())
    assert source.georeferenced is False and source.gsd_m is None and source.pixel_area_m2 is None
    lines = [r.getMessage() for r in caplog.records if "impossible georeference" in r.getMessage()]
    assert len(lines) == 1 and "lat120.tif" in lines[0]


def test_plausible_geographic_bounds_stay_georeferenced(tmp_path: Path) -> None:
    path = tiny_raster(tmp_path / "ok.tif", 96, crs="EPSG:4326", origin=(10.0, 45.0), res=0.001)
    source = RasterSource(path, tiny_spec())
    assert source.georeferenced is True and source.gsd_m is not None
