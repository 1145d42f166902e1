"""Benchmark scenes: large georeferenced RGB GeoTIFFs mosaicked from the project's real 512-px tiles.

Why a mosaic: the benchmark must read real imagery (real texture, real DEFLATE ratios, real spectral
statistics), but the real data sets are small tiles without georeference. Placing those tiles on a
grid (each with a random flip/rotation) gives a scene of any size that decodes like real imagery.

Properties the benchmark relies on:
- Deterministic: cell (row, col) of the grid depends only on ``(seed, row, col)``, so the top-left
  N x N window of a larger scene is pixel-identical to the N x N scene with the same seed (the
  compute-bound crop *is* a window of the 10k scene).
- Streamed: written one 512-row band at a time, so generating a 20k x 20k scene holds ~30 MB, never
  the scene.
- Cached: ``mosaic_<W>x<H>_s<seed>_v<version>.tif`` under the cache folder; written under a temporary
  name and renamed, so an interrupted run never leaves a file that looks complete.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.errors
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import from_origin
from rasterio.windows import Window

#: Bumped whenever the pixels a given (size, seed) produces change, so stale caches are not reused.
GENERATOR_VERSION = 1
TILE = 512
#: Real RGB tile folders (relative to ``shared/data/real``) the mosaic draws from.
TILE_SOURCES = ("cas_hokkaido/images", "bijie/images", "cas_unlabeled")
TILE_SUFFIXES = (".png", ".tif", ".tiff")
#: UTM 45N (Nepal / Bangladesh), a projected CRS in metres; origin inside the zone.
CRS_EPSG = 32645
GSD_M = 0.5
ORIGIN_XY = (500_000.0, 3_100_000.0)
DEFAULT_SEED = 20240
CREATION_OPTIONS = {
    "driver": "GTiff",
    "tiled": True,
    "blockxsize": TILE,
    "blockysize": TILE,
    "compress": "deflate",
    "predictor": 2,
    "interleave": "pixel",
    "photometric": "RGB",
    "bigtiff": "IF_SAFER",
}


def default_real_root() -> Path:
    """``shared/data/real`` beside the checkout (as on CI); ``EDGE_LS_SHARED`` overrides ``shared``."""
    shared = os.environ.get("EDGE_LS_SHARED")
    base = Path(shared) if shared else Path(__file__).resolve().parents[1].parent / "shared"
    return base / "data" / "real"


def default_cache_dir() -> Path:
    """Where scenes and the benchmark model are cached: ``EDGE_LS_BENCH_CACHE`` or ~/.cache/edge-ls/bench."""
    env = os.environ.get("EDGE_LS_BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "edge-ls" / "bench"


@dataclass(frozen=True)
class TilePool:
    """The real tiles a mosaic draws from: uint8 arrays [3, 512, 512] and where each came from."""

    tiles: tuple[np.ndarray, ...]
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.tiles)


def load_tile_pool(real_root: Path, sources: Sequence[str] = TILE_SOURCES) -> TilePool:
    """Read every real RGB tile (centre-cropped to 512 x 512; bijie tiles are up to 754 px wide)."""
    tiles: list[np.ndarray] = []
    names: list[str] = []
    for rel in sources:
        folder = real_root / rel
        paths = sorted(p for p in folder.glob("*") if p.suffix.lower() in TILE_SUFFIXES)
        for path in paths:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(path) as ds:
                    if ds.count < 3 or ds.dtypes[0] != "uint8" or ds.width < TILE or ds.height < TILE:
                        continue
                    y0, x0 = (ds.height - TILE) // 2, (ds.width - TILE) // 2
                    tiles.append(ds.read((1, 2, 3), window=Window(x0, y0, TILE, TILE)))
            names.append(f"{rel}/{path.name}")
    if not tiles:
        raise FileNotFoundError(
            f"no real 512-px RGB tiles under {real_root} ({', '.join(sources)}): "
            "put shared/ beside the checkout or set EDGE_LS_SHARED"
        )
    return TilePool(tuple(tiles), tuple(names))


def cell_tile(pool: TilePool, seed: int, row: int, col: int) -> np.ndarray:
    """The tile at grid cell (row, col): a pool tile picked and flipped/rotated by (seed, row, col) alone."""
    rng = np.random.default_rng([seed, row, col])
    tile = pool.tiles[int(rng.integers(len(pool)))]
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    out = np.rot90(tile, k, axes=(1, 2))
    return out[:, :, ::-1] if flip else out


def write_mosaic(path: Path, width: int, height: int, pool: TilePool, seed: int = DEFAULT_SEED) -> Path:
    """Write a ``width`` x ``height`` RGB mosaic to ``path``, one 512-row band at a time (atomic rename)."""
    cols = -(-width // TILE)
    profile = dict(
        CREATION_OPTIONS,
        width=width,
        height=height,
        count=3,
        dtype="uint8",
        crs=CRS.from_epsg(CRS_EPSG),
        transform=from_origin(ORIGIN_XY[0], ORIGIN_XY[1], GSD_M, GSD_M),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.colorinterp = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
            dst.update_tags(
                EDGE_LS_BENCH_GENERATOR=f"bench/scenes.py v{GENERATOR_VERSION}",
                EDGE_LS_BENCH_SEED=str(seed),
                EDGE_LS_BENCH_SOURCES=",".join(TILE_SOURCES),
                EDGE_LS_BENCH_TILES=str(len(pool)),
            )
            for row, y0 in enumerate(range(0, height, TILE)):
                h = min(TILE, height - y0)
                band = np.concatenate([cell_tile(pool, seed, row, c) for c in range(cols)], axis=2)
                dst.write(band[:, :h, :width], window=Window(0, y0, width, h))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def mosaic_path(cache_dir: Path, width: int, height: int, seed: int = DEFAULT_SEED) -> Path:
    return cache_dir / f"mosaic_{width}x{height}_s{seed}_v{GENERATOR_VERSION}.tif"


def _is_complete(path: Path, width: int, height: int) -> bool:
    """A cached scene is reused only if it has the expected size and its last block decodes.

    Scenes are renamed into place only once complete; this catches a file damaged afterwards (its
    header still opens, the blocks written last are gone).
    """
    try:
        with rasterio.open(path) as ds:
            if (ds.width, ds.height, ds.count) != (width, height, 3) or ds.crs is None:
                return False
            x0, y0 = (width - 1) // TILE * TILE, (height - 1) // TILE * TILE
            ds.read(window=Window(x0, y0, width - x0, height - y0))
            return True
    except rasterio.errors.RasterioError:
        return False


def ensure_mosaic(
    size: int | tuple[int, int],
    cache_dir: Path | None = None,
    real_root: Path | None = None,
    seed: int = DEFAULT_SEED,
    pool: TilePool | None = None,
) -> Path:
    """Path of the cached mosaic of this size, generating it first if needed."""
    width, height = (size, size) if isinstance(size, int) else size
    path = mosaic_path(cache_dir or default_cache_dir(), width, height, seed)
    if path.is_file() and _is_complete(path, width, height):
        return path
    pool = pool or load_tile_pool(real_root or default_real_root())
    return write_mosaic(path, width, height, pool, seed)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate (or find cached) benchmark mosaics of real tiles.")
    parser.add_argument("sizes", nargs="+", type=int, help="square scene sizes in pixels, e.g. 10000 20000")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: ~/.cache/edge-ls/bench")
    parser.add_argument("--real-root", type=Path, default=None, help="default: ../shared/data/real")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    pool = None
    for size in args.sizes:
        t0 = time.perf_counter()
        cache_dir = args.cache_dir or default_cache_dir()
        path = mosaic_path(cache_dir, size, size, args.seed)
        if not (path.is_file() and _is_complete(path, size, size)):
            pool = pool or load_tile_pool(args.real_root or default_real_root())
        path = ensure_mosaic(size, cache_dir, args.real_root, args.seed, pool)
        mb = path.stat().st_size / 2**20
        print(f"{path}  {size}x{size}  {mb:.0f} MiB  ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
