"""Blending overlapping tile predictions into finished row bands, with no seams and bounded memory.

Each tile's prediction is weighted by a 2-D Hann window, so tile borders (where a CNN sees the least
context) count least. Because tiles sit on a regular grid, the sum of weights over the tiles covering
a pixel factorizes into a row profile times a column profile; dividing each tile's weights by those
profiles up front means the canvas holds the final blended value directly, with no weight-sum canvas.

Memory: only the row bands still receiving tiles are held (the rows the tiles in flight touch); a
band is handed out as soon as every tile row touching it is complete. Bands are ``BAND_ROWS`` high
rather than a whole stride, so the rows held, and the band the writer is still working through,
follow the tiles in flight closely: this full-width part is the only memory that grows with the
scene's width. Nodata is carried as NaN (every tile covering a pixel agrees on its validity, and
NaN + x stays NaN).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from edge_ls.pixel_math import hann_window
from edge_ls.tiling import Tile, TilePlan


@dataclass
class FinishedBand:
    """A fully blended band of rows, ready to be written.

    Nodata stays NaN in ``prob`` (no separate validity array travels with the band: one less
    full-width array per band in flight; the writer derives ``valid`` chunk by chunk).
    """

    row_off: int
    prob: np.ndarray  # float32 [h, width] in [0, 1], NaN where nodata

    @property
    def valid(self) -> np.ndarray:
        return ~np.isnan(self.prob)

    def chunks(self, rows: int) -> Iterator[FinishedBand]:
        """The band as contiguous copies of at most ``rows`` rows, so a writer queue holds chunks."""
        for start in range(0, self.prob.shape[0], rows):
            yield FinishedBand(self.row_off + start, self.prob[start : start + rows].copy())


#: Rows per band (at most the stride). Stride-high bands are released a whole stride at a time, so up to
#: about a stride more rows than the tiles in flight touch stay alive, plus the band being written.
BAND_ROWS = 128


def _coverage_profile(length: int, count: int, stride: int, window: np.ndarray) -> np.ndarray:
    """Sum of the 1-D windows of every tile along one axis, at each pixel."""
    total = np.zeros(max(length, (count - 1) * stride + window.size), dtype=np.float64)
    for i in range(count):
        total[i * stride : i * stride + window.size] += window
    return total[:length]


class RowBandBlender:
    """Accumulates tiles (in any order within a few tile rows) and releases finished row bands in order."""

    def __init__(self, plan: TilePlan, band_rows: int = BAND_ROWS) -> None:
        self.plan = plan
        self.band_rows = max(1, min(band_rows, plan.stride))
        self._window = hann_window(plan.tile_size).astype(np.float64)
        self._row_scale = (1.0 / _coverage_profile(plan.height, plan.rows, plan.stride, self._window))
        self._col_scale = (1.0 / _coverage_profile(plan.width, plan.cols, plan.stride, self._window))
        self.n_bands = -(-plan.height // self.band_rows)
        self._bands: dict[int, np.ndarray] = {}
        self._tiles_left = np.full(plan.rows, plan.cols, dtype=np.int64)
        self._rows_done = 0  # tile rows 0.._rows_done-1 are complete
        self._next_band = 0
        self.peak_bands = 0

    def _band_rows(self, k: int) -> tuple[int, int]:
        start = k * self.band_rows
        return start, min(self.plan.height, start + self.band_rows)

    def _last_tile_row(self, k: int) -> int:
        """The last tile row touching band k (tile row j starts at row j x stride)."""
        return min(self.plan.rows - 1, (self._band_rows(k)[1] - 1) // self.plan.stride)

    def _band(self, k: int) -> np.ndarray:
        band = self._bands.get(k)
        if band is None:
            start, end = self._band_rows(k)
            band = self._bands[k] = np.zeros((end - start, self.plan.width), dtype=np.float32)
            self.peak_bands = max(self.peak_bands, len(self._bands))
        return band

    def _scatter(self, tile: Tile, values: np.ndarray | float) -> None:
        """Add (or, for a scalar NaN, mark) a tile's window into the bands it overlaps."""
        y_end = tile.y0 + tile.height
        k = tile.y0 // self.band_rows
        while k < self.n_bands:
            start, end = self._band_rows(k)
            if start >= y_end:
                break
            lo, hi = max(start, tile.y0), min(end, y_end)
            target = self._band(k)[lo - start : hi - start, tile.x0 : tile.x0 + tile.width]
            if isinstance(values, np.ndarray):
                target += values[lo - tile.y0 : hi - tile.y0]
            else:
                target[...] = values
            k += 1

    def add(self, tile: Tile, prob: np.ndarray, valid: np.ndarray) -> list[FinishedBand]:
        """Blend one tile's probabilities (tile x tile, cropped here) whose read window had ``valid``."""
        h, w = tile.height, tile.width
        wy = (self._window[:h] * self._row_scale[tile.y0 : tile.y0 + h]).astype(np.float32)
        wx = (self._window[:w] * self._col_scale[tile.x0 : tile.x0 + w]).astype(np.float32)
        weighted = prob[:h, :w] * wy[:, None]
        weighted *= wx[None, :]
        weighted[~valid] = np.nan
        self._scatter(tile, weighted)
        return self._tile_done(tile)

    def skip(self, tile: Tile) -> list[FinishedBand]:
        """Record a tile that was not inferred because all its pixels are nodata."""
        self._scatter(tile, np.nan)
        return self._tile_done(tile)

    def _tile_done(self, tile: Tile) -> list[FinishedBand]:
        self._tiles_left[tile.row] -= 1
        while self._rows_done < self.plan.rows and self._tiles_left[self._rows_done] == 0:
            self._rows_done += 1
        finished: list[FinishedBand] = []
        # A band is final once every tile row touching it is complete.
        while self._next_band < self.n_bands and self._last_tile_row(self._next_band) < self._rows_done:
            k = self._next_band
            band = self._bands.pop(k, None)
            if band is None:  # no tile ever touched it (cannot happen on a full plan): all nodata
                start, end = self._band_rows(k)
                band = np.full((end - start, self.plan.width), np.nan, dtype=np.float32)
            np.clip(band, 0.0, 1.0, out=band)  # NaN (nodata) stays NaN
            finished.append(FinishedBand(self._band_rows(k)[0], band))
            self._next_band += 1
        return finished

    @property
    def complete(self) -> bool:
        return self._next_band == self.n_bands
