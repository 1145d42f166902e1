"""Labelled benchmark scenes: georeferenced RGB GeoTIFFs with a truth mask, mosaicked from real labelled
tiles, at a chosen landslide cover (low, medium, high).

The labelled sets (``cas_hokkaido``, ``bijie``: ``images/`` + ``masks/``) are cut into 128-px cells
(a 512-px tile gives 16; bijie is centre-cropped to 512 first), and each cell is classed by its
landslide share. A scene draws its cells by ``(seed, row, col)`` alone, each with a random D4
transform, so any scene is reproducible from its name:

- ``low``: 97 % of the cells from the cells without landslide, 3 % from any cell with landslide
  (about 0.4 % cover): what a routine scan of a large area looks like;
- ``medium``: any cell (about 10 % cover, the sets' own mix);
- ``high``: cells with more than 20 % landslide (about 35 % cover): an event's core.

The cells come from every tile of the sets, including the tiles Edge-Lite was trained on, so the F1
measured on these scenes is optimistic in absolute terms; comparisons between runners on the same
scene (cascade vs refiner, edge-ls vs a peer on the same model) are what they are for. Seams between
cells are real edges in the imagery a model sees, like the seams of ``bench/scenes.py``'s mosaics.

The truth mask is ``<scene>.truth.tif`` beside the scene (uint8 0/1, same grid). Both are written
under a temporary name and renamed, band by band (a large scene never sits in memory).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_ls.errors import InputError

CELL = 128
TILE = 512
#: Labelled sets (relative to ``shared/data/real``) the scenes draw from.
SOURCES = ("cas_hokkaido", "bijie")
COVERS = ("low", "medium", "high")
#: Share of cells drawn from the landslide pool in a ``low`` scene.
LOW_LANDSLIDE_CELLS = 0.03
#: A ``high`` scene's cells have more than this landslide share.
HIGH_CELL_SHARE = 0.2
CRS_EPSG = 32645
GSD_M = 1.0
ORIGIN_XY = (500_000.0, 3_100_000.0)
DEFAULT_SEED = 11
#: Bumped whenever the pixels a given (size, cover, seed) produce change, so stale caches are not reused.
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class CellPool:
    """128-px RGB cells (N x 3 x 128 x 128 uint8) with their masks (N x 128 x 128) and shares."""

    rgb: np.ndarray
    masks: np.ndarray

    @property
    def shares(self) -> np.ndarray:
        return self.masks.reshape(len(self.masks), -1).mean(axis=1)

    def indexes(self, cover: str) -> tuple[np.ndarray, np.ndarray]:
        """(primary pool, secondary pool) of cell indexes for a cover level."""
        shares = self.shares
        if cover == "low":
            return np.flatnonzero(shares == 0), np.flatnonzero(shares > 0)
        if cover == "medium":
            return np.arange(len(shares)), np.arange(0)
        if cover == "high":
            return np.flatnonzero(shares > HIGH_CELL_SHARE), np.arange(0)
        raise InputError(f"unknown landslide cover '{cover}': use one of {', '.join(COVERS)}")


def load_cell_pool(real_root: Path, sources: Sequence[str] = SOURCES) -> CellPool:
    """Every labelled tile of ``sources`` cut into cells; a mask that does not match its image fails."""
    from edge_ls.io.labelled import image_paths, read_mask, read_rgb

    rgb, masks = [], []
    for name in sources:
        root = Path(real_root) / name
        for path in image_paths(root):
            mask_path = root / "masks" / f"{path.stem}.png"
            if not mask_path.is_file():
                raise InputError(f"{root}: image {path.name} has no mask ({mask_path.name})")
            image, mask = read_rgb(path), read_mask(mask_path)
            if image.shape[:2] != mask.shape[:2]:
                raise InputError(
                    f"{root}: mask {mask_path.name} is {mask.shape[1]}x{mask.shape[0]} px but its image "
                    f"is {image.shape[1]}x{image.shape[0]}: the masks do not match the images"
                )
            image, mask = read_rgb(path, TILE), read_mask(mask_path, TILE)
            for y in range(0, TILE, CELL):
                for x in range(0, TILE, CELL):
                    rgb.append(np.transpose(image[y : y + CELL, x : x + CELL], (2, 0, 1)))
                    masks.append(mask[y : y + CELL, x : x + CELL])
    return CellPool(np.stack(rgb), np.stack(masks))


def cell_at(pool: CellPool, cover: str, seed: int, row: int, col: int) -> tuple[np.ndarray, np.ndarray]:
    """The cell at grid (row, col) of a ``cover`` scene: chosen and transformed by (seed, row, col)."""
    primary, secondary = pool.indexes(cover)
    rng = np.random.default_rng([seed, COVERS.index(cover), row, col])
    use_secondary = len(secondary) and rng.random() < LOW_LANDSLIDE_CELLS
    choices = secondary if use_secondary else primary
    i = int(choices[int(rng.integers(len(choices)))])
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    rgb = np.rot90(pool.rgb[i], k, axes=(1, 2))
    mask = np.rot90(pool.masks[i], k)
    if flip:
        rgb, mask = rgb[:, :, ::-1], mask[:, ::-1]
    return rgb, mask


def scene_paths(cache_dir: Path, size: int, cover: str, seed: int = DEFAULT_SEED) -> tuple[Path, Path]:
    stem = f"labelled_{cover}_{size}_s{seed}_v{GENERATOR_VERSION}"
    return cache_dir / f"{stem}.tif", cache_dir / f"{stem}.truth.tif"


def ensure_scene(
    cache_dir: Path, real_root: Path, size: int, cover: str, seed: int = DEFAULT_SEED
) -> tuple[Path, Path]:
    """The (scene, truth) pair for ``size`` x ``size`` px at ``cover``; made once, then reused."""
    image_path, truth_path = scene_paths(Path(cache_dir), size, cover, seed)
    if image_path.is_file() and truth_path.is_file():
        return image_path, truth_path
    write_scene(image_path, truth_path, size, cover, load_cell_pool(real_root), seed)
    return image_path, truth_path


def write_scene(
    image_path: Path, truth_path: Path, size: int, cover: str, pool: CellPool, seed: int = DEFAULT_SEED
) -> None:
    """Write the scene and its truth, one row of cells at a time (temporary names, then renamed)."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.enums import ColorInterp
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    pool.indexes(cover)  # an unknown cover fails before anything is written
    geo = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "crs": CRS.from_epsg(CRS_EPSG),
        "transform": from_origin(ORIGIN_XY[0], ORIGIN_XY[1], GSD_M, GSD_M),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "bigtiff": "IF_SAFER",
    }
    image_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_image = image_path.with_name(f".{image_path.name}.{os.getpid()}.tmp")
    tmp_truth = truth_path.with_name(f".{truth_path.name}.{os.getpid()}.tmp")
    cols = -(-size // CELL)
    try:
        with (
            rasterio.open(tmp_image, "w", count=3, dtype="uint8", photometric="RGB", **geo) as img,
            rasterio.open(tmp_truth, "w", count=1, dtype="uint8", **geo) as truth,
        ):
            img.colorinterp = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
            img.update_tags(EDGE_LS_BENCH_GENERATOR=f"edge_ls/bench/scenes.py v{GENERATOR_VERSION}",
                            EDGE_LS_BENCH_COVER=cover, EDGE_LS_BENCH_SEED=str(seed))  # fmt: skip
            for row, y0 in enumerate(range(0, size, CELL)):
                h = min(CELL, size - y0)
                cells = [cell_at(pool, cover, seed, row, c) for c in range(cols)]
                band = np.concatenate([c[0] for c in cells], axis=2)[:, :h, :size]
                mask = np.concatenate([c[1] for c in cells], axis=1)[:h, :size]
                img.write(band, window=Window(0, y0, size, h))
                truth.write(mask[None], window=Window(0, y0, size, h))
        os.replace(tmp_image, image_path)
        os.replace(tmp_truth, truth_path)
    finally:
        for tmp in (tmp_image, tmp_truth):
            if tmp.exists():
                tmp.unlink()


def cover_share(truth_path: Path) -> float:
    """Landslide share of a truth mask, read block by block."""
    import rasterio

    total = positive = 0
    with rasterio.open(truth_path) as ds:
        for _, window in ds.block_windows(1):
            block = ds.read(1, window=window)
            total += block.size
            positive += int(np.count_nonzero(block))
    return positive / total if total else 0.0
