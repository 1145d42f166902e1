"""The benchmark's scene generator makes a valid georeferenced mosaic of the real tiles, and caches it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp
from rasterio.windows import Window

from bench.scenes import (
    CRS_EPSG,
    GSD_M,
    TILE,
    cell_tile,
    ensure_mosaic,
    load_tile_pool,
    mosaic_path,
)


@pytest.fixture(scope="module")
def pool(real_data: Path):
    return load_tile_pool(real_data)


def _dihedral(tile: np.ndarray) -> list[np.ndarray]:
    rots = [np.rot90(tile, k, axes=(1, 2)) for k in range(4)]
    return rots + [r[:, :, ::-1] for r in rots]


def test_pool_holds_every_real_folder(pool) -> None:
    folders = {name.split("/")[0] for name in pool.names}
    assert folders == {"cas_hokkaido", "bijie", "cas_unlabeled"}
    assert len(pool) >= 90
    assert all(t.shape == (3, TILE, TILE) and t.dtype == np.uint8 for t in pool.tiles)


def test_mosaic_is_georeferenced_tiled_and_made_of_real_tiles(tmp_path: Path, real_data: Path, pool) -> None:
    path = ensure_mosaic((1536, 1200), cache_dir=tmp_path, real_root=real_data, pool=pool)
    with rasterio.open(path) as ds:
        assert (ds.width, ds.height, ds.count) == (1536, 1200, 3)
        assert ds.dtypes == ("uint8",) * 3
        assert ds.crs.to_epsg() == CRS_EPSG
        assert ds.transform.a == GSD_M and ds.transform.e == -GSD_M
        assert ds.block_shapes[0] == (TILE, TILE)
        assert ds.compression.name.lower() == "deflate"
        assert ds.colorinterp == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
        # Every full grid cell is a real tile under one of the 8 flips/rotations.
        for row, col in [(0, 0), (0, 2), (1, 1)]:
            cell = ds.read(window=Window(col * TILE, row * TILE, TILE, TILE))
            assert any(any(np.array_equal(cell, t) for t in _dihedral(tile)) for tile in pool.tiles), (
                f"cell {row},{col} is not a real tile"
            )
        # The cropped bottom row holds the top of its cells.
        bottom = ds.read(window=Window(0, 2 * TILE, TILE, 1200 - 2 * TILE))
        assert np.array_equal(bottom, cell_tile(pool, 20240, 2, 0)[:, : 1200 - 2 * TILE])


def test_smaller_scene_is_the_top_left_window_of_a_larger_one(tmp_path: Path, pool) -> None:
    small = ensure_mosaic(1024, cache_dir=tmp_path, pool=pool)
    large = ensure_mosaic(1536, cache_dir=tmp_path, pool=pool)
    with rasterio.open(small) as a, rasterio.open(large) as b:
        assert np.array_equal(a.read(), b.read(window=Window(0, 0, 1024, 1024)))


def test_cache_is_reused_and_a_torn_file_regenerated(tmp_path: Path, pool) -> None:
    path = ensure_mosaic(600, cache_dir=tmp_path, pool=pool)
    stamp = path.stat().st_mtime_ns
    assert ensure_mosaic(600, cache_dir=tmp_path, pool=pool) == path
    assert path.stat().st_mtime_ns == stamp
    path.write_bytes(path.read_bytes()[:1000])  # torn write
    assert ensure_mosaic(600, cache_dir=tmp_path, pool=pool) == mosaic_path(tmp_path, 600, 600)
    with rasterio.open(path) as ds:
        assert ds.read().shape == (3, 600, 600)
    assert not list(tmp_path.glob(".*tmp"))
