"""Tile plans: pure functions from a raster size to the grid of overlapping tiles (after SAHI's slicing).

Tiles sit on a regular grid of ``stride = round(tile * (1 - overlap))``; the last row and column may
reach past the raster, and their missing part is padded by reflection and cropped back after
inference. A regular grid keeps every pixel covered by the same pattern of tiles, which is what
makes the blend normalization separable (see :mod:`edge_ls.blend`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from edge_ls.errors import InputError


@dataclass(frozen=True)
class Tile:
    """One tile: grid position and the pixel window it reads (clipped to the raster)."""

    index: int
    row: int
    col: int
    y0: int
    x0: int
    height: int  # rows read from the raster (<= tile size at the bottom edge)
    width: int  # columns read (<= tile size at the right edge)


@dataclass(frozen=True)
class TilePlan:
    """The grid of tiles covering a ``width`` x ``height`` raster."""

    width: int
    height: int
    tile_size: int
    stride: int
    rows: int
    cols: int

    @property
    def count(self) -> int:
        return self.rows * self.cols

    @property
    def overlap(self) -> float:
        return 1.0 - self.stride / self.tile_size

    def tile(self, index: int) -> Tile:
        row, col = divmod(index, self.cols)
        y0, x0 = row * self.stride, col * self.stride
        return Tile(
            index=index,
            row=row,
            col=col,
            y0=y0,
            x0=x0,
            height=min(self.tile_size, self.height - y0),
            width=min(self.tile_size, self.width - x0),
        )

    def core(self, tile: Tile) -> tuple[int, int]:
        """(rows, cols) of ``tile`` from its origin that no later tile reads: the cores of all tiles
        partition the raster, so per-pixel sums taken over cores count every pixel exactly once."""
        rows = self.stride if tile.row < self.rows - 1 else tile.height
        cols = self.stride if tile.col < self.cols - 1 else tile.width
        return min(rows, tile.height), min(cols, tile.width)

    def __iter__(self) -> Iterator[Tile]:
        """Tiles in raster order (row by row), the order the blender completes rows in."""
        for index in range(self.count):
            yield self.tile(index)


def _grid_count(length: int, tile: int, stride: int) -> int:
    return 1 if length <= tile else math.ceil((length - tile) / stride) + 1


def plan_tiles(width: int, height: int, tile_size: int, overlap: float) -> TilePlan:
    """Plan the tile grid. A raster smaller than one tile gets one tile, padded by reflection like any
    edge tile (the caller warns that the model sees mostly padding)."""
    if not 0.0 <= overlap < 0.9:
        raise InputError(f"overlap must be in [0, 0.9), got {overlap}")
    if tile_size < 16:
        raise InputError(f"tile size must be at least 16 px, got {tile_size}")
    if width < 1 or height < 1:
        raise InputError(f"raster is {width}x{height} px: nothing to tile")
    stride = max(1, round(tile_size * (1.0 - overlap)))
    return TilePlan(
        width=width,
        height=height,
        tile_size=tile_size,
        stride=stride,
        rows=_grid_count(height, tile_size, stride),
        cols=_grid_count(width, tile_size, stride),
    )


def pad_tile(data: np.ndarray, tile_size: int) -> np.ndarray:
    """Pad a C x h x w edge tile to C x tile x tile by reflection, so the model sees plausible content."""
    _, h, w = data.shape
    if h == tile_size and w == tile_size:
        return data
    # numpy reflects repeatedly when the pad is wider than the data (and repeats a 1-px sliver).
    return np.pad(data, ((0, 0), (0, tile_size - h), (0, tile_size - w)), mode="reflect")
