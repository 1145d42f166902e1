"""Blending overlapping tile predictions into finished row bands, with no seams and bounded memory.

Each tile's prediction is weighted by a 2-D Hann window, so tile borders (where a CNN sees the least
context) count least. Because tiles sit on a regular grid, the sum of weights over the tiles covering
a pixel factorizes into a row profile times a column profile; dividing each tile's weights by those
profiles up front means the canvas holds the final blended value directly, with no weight-sum canvas.

Memory: only the row bands still receiving tiles are held (the rows the tiles in flight touch); a
band is handed out as soon as every tile row touching it is complete. Bands are ``BAND_ROWS`` high
rather than a whole stride, so the rows held, and the band the writer is still working through,
follow the tiles in flight closely: these full-width rows are the largest part of the memory that
grows with the scene's width (bench/memory_profile.py). So the canvas holds **fixed-point uint16**
(``SCALE`` units per 1.0, resolution 1.5e-5, a 650th of the percent the layers are stored in, also
below what ``--layers float32`` users could act on) rather than float32: half the bytes. Each
tile's weighted share is rounded once (by at most half a unit, 7.7e-6), and integer sums do not
depend on the order tiles arrive in. Nodata is the code
``NODATA_CODE``; a pixel any covering tile calls nodata stays nodata (as NaN + x stays NaN), and it
leaves the blender as NaN.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from edge_ls.pixel_math import hann_window
from edge_ls.tiling import Tile, TilePlan

#: Fixed-point units per probability 1.0 in the canvas. Each share rounds by at most half a unit,
#: so a pixel's sum stays below ``NODATA_CODE`` unless over a thousand tiles cover it.
SCALE = 65000
#: Canvas code of a nodata pixel.
NODATA_CODE = np.iinfo(np.uint16).max


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
        """The band in contiguous pieces of at most ``rows`` rows (views: the band is decoded fresh)."""
        for start in range(0, self.prob.shape[0], rows):
            yield FinishedBand(self.row_off + start, self.prob[start : start + rows])


#: Rows per band (at most the stride). Stride-high bands are released a whole stride at a time, so up to
#: about a stride more rows than the tiles in flight touch stay alive, plus the band being written.
BAND_ROWS = 128


def _coverage_profile(length: int, count: int, stride: int, window: np.ndarray) -> np.ndarray:
    """Sum of the 1-D windows of every tile along one axis, at each pixel."""
    total = np.zeros(max(length, (count - 1) * stride + window.size), dtype=np.float64)
    for i in range(count):
        total[i * stride : i * stride + window.size] += window
    return total[:length]


def _decode(codes: np.ndarray) -> np.ndarray:
    """Canvas codes -> float32 probabilities in [0, 1], NaN where nodata."""
    prob = codes.astype(np.float32)
    prob *= np.float32(1.0 / SCALE)
    np.minimum(prob, np.float32(1.0), out=prob)  # shares rounded up may sum a few units past SCALE
    prob[codes == NODATA_CODE] = np.nan
    return prob


class RowBandBlender:
    """Accumulates tiles (in any order within a few tile rows) and releases finished row bands in order."""

    def __init__(self, plan: TilePlan, band_rows: int = BAND_ROWS) -> None:
        self.plan = plan
        self.band_rows = max(1, min(band_rows, plan.stride))
        self._window = hann_window(plan.tile_size).astype(np.float64)
        self._row_scale = 1.0 / _coverage_profile(plan.height, plan.rows, plan.stride, self._window)
        self._col_scale = 1.0 / _coverage_profile(plan.width, plan.cols, plan.stride, self._window)
        self.n_bands = -(-plan.height // self.band_rows)
        self._bands: dict[int, np.ndarray] = {}
        self._tiles_left = np.full(plan.rows, plan.cols, dtype=np.int64)
        self._rows_done = 0  # tile rows 0.._rows_done-1 are complete
        self._next_band = 0
        self.peak_bands = 0
        self._marked_any = False  # has any pixel been marked nodata (skipped tile or invalid pixels)?
        self._first_band = 0  # bands before it were written by an earlier run (resume_at)

    def resume_at(self, row: int, tile_row: int) -> None:
        """Start clean at ``tile_row`` with rows ``[0, row)`` already written (a resumed scene):
        ``row`` must start a band and no tile row before ``tile_row`` may reach row ``row``. The
        tiles of ``tile_row`` on are then all a band from ``row`` on receives, so it blends exactly
        as in a run from the start; what they add above ``row`` is dropped."""
        if row % self.band_rows or not 0 <= tile_row <= self.plan.rows:
            raise ValueError(f"cannot resume at row {row}, tile row {tile_row}")
        if tile_row and (tile_row - 1) * self.plan.stride + self.plan.tile_size > row:
            raise ValueError(f"tile row {tile_row - 1} reaches row {row}: resume from an earlier tile row")
        self._tiles_left[:tile_row] = 0
        self._rows_done = tile_row
        self._next_band = self._first_band = row // self.band_rows

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
            band = self._bands[k] = np.zeros((end - start, self.plan.width), dtype=np.uint16)
            self.peak_bands = max(self.peak_bands, len(self._bands))
        return band

    def _scatter(self, tile: Tile, values: np.ndarray | None, nodata: np.ndarray | None = None) -> None:
        """Add a tile's coded shares into the bands it overlaps and mark its ``nodata`` pixels
        (``values=None``: the whole tile is nodata)."""
        y_end = tile.y0 + tile.height
        k = max(tile.y0 // self.band_rows, self._first_band)
        while k < self.n_bands:
            start, end = self._band_rows(k)
            if start >= y_end:
                break
            lo, hi = max(start, tile.y0), min(end, y_end)
            target = self._band(k)[lo - start : hi - start, tile.x0 : tile.x0 + tile.width]
            if values is None:
                target[...] = NODATA_CODE
            elif not self._marked_any:  # no nodata seen yet: nothing to keep marked
                target += values[lo - tile.y0 : hi - tile.y0]
            else:
                # Nodata wins, as NaN would: a pixel another tile marked stays marked (no wrap-around).
                marked = target == NODATA_CODE
                if nodata is not None:
                    marked |= nodata[lo - tile.y0 : hi - tile.y0]
                target += values[lo - tile.y0 : hi - tile.y0]
                if marked.any():
                    target[marked] = NODATA_CODE
            k += 1

    def add(self, tile: Tile, prob: np.ndarray, valid: np.ndarray) -> list[FinishedBand]:
        """Blend one tile's probabilities (tile x tile, cropped here) whose read window had ``valid``."""
        h, w = tile.height, tile.width
        wy = (self._window[:h] * self._row_scale[tile.y0 : tile.y0 + h]).astype(np.float32)
        wx = (self._window[:w] * self._col_scale[tile.x0 : tile.x0 + w]).astype(np.float32)
        weighted = np.clip(prob[:h, :w], 0.0, 1.0)  # a share above 1 could wrap the uint16 sum
        weighted *= (wy * np.float32(SCALE))[:, None]
        weighted *= wx[None, :]
        weighted += np.float32(0.5)  # round half up on the cast
        nodata = None
        if not valid.all():
            nodata = ~valid
            weighted[nodata] = 0.0
            self._marked_any = True
        self._scatter(tile, weighted.astype(np.uint16), nodata)
        return self._tile_done(tile)

    def skip(self, tile: Tile) -> list[FinishedBand]:
        """Record a tile that was not inferred because all its pixels are nodata."""
        self._marked_any = True
        self._scatter(tile, None)
        return self._tile_done(tile)

    def _tile_done(self, tile: Tile) -> list[FinishedBand]:
        self._tiles_left[tile.row] -= 1
        while self._rows_done < self.plan.rows and self._tiles_left[self._rows_done] == 0:
            self._rows_done += 1
        finished: list[FinishedBand] = []
        # A band is final once every tile row touching it is complete.
        while self._next_band < self.n_bands and self._last_tile_row(self._next_band) < self._rows_done:
            k = self._next_band
            codes = self._bands.pop(k, None)
            if codes is None:  # no tile ever touched it (cannot happen on a full plan): all nodata
                start, end = self._band_rows(k)
                codes = np.full((end - start, self.plan.width), NODATA_CODE, dtype=np.uint16)
            finished.append(FinishedBand(self._band_rows(k)[0], _decode(codes)))
            self._next_band += 1
        return finished

    @property
    def complete(self) -> bool:
        return self._next_band == self.n_bands
