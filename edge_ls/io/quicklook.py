"""The quicklook: a small PNG of the probability over the imagery, built while the scene streams past.

Everything it shows is averaged per quicklook cell *as the data goes by* (:class:`CellMeans`): the
probability and the detected share from the writer's rows, the imagery from the tiles the readers
read anyway. Nothing is read back at the end: re-reading the input at quicklook size decoded every block
of it a second time, and averaging the finished full-size rasters cost as much again (together the
``commit.quicklook`` stage: 3.2 s of the 10k² edge-nano run in bench/results/pipeline-2026-12-01.json,
serial after the stream).
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

#: Anchors of a magma-like ramp (dark purple -> orange -> pale yellow), evenly spaced on [0, 1].
_RAMP_ANCHORS = np.array(
    [
        (0, 0, 4),
        (28, 16, 68),
        (79, 18, 123),
        (129, 37, 129),
        (181, 54, 122),
        (229, 80, 100),
        (251, 135, 97),
        (254, 194, 135),
        (252, 253, 191),
    ],
    dtype=np.float64,
)
MASK_OUTLINE_RGB = (0, 255, 255)
NODATA_RGB = (64, 64, 64)


def _ramp_table(levels: int = 256) -> np.ndarray:
    pos = np.linspace(0.0, len(_RAMP_ANCHORS) - 1, levels)
    table = [np.interp(pos, np.arange(len(_RAMP_ANCHORS)), _RAMP_ANCHORS[:, c]) for c in range(3)]
    return np.rint(np.stack(table, -1)).astype(np.uint8)


_RAMP_TABLE = _ramp_table()


def magma_ramp(values: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> RGB uint8 on a magma-like ramp (a 256-entry table lookup, not np.interp per pixel)."""
    index = (np.clip(values, 0.0, 1.0) * np.float32(len(_RAMP_TABLE) - 1) + np.float32(0.5)).astype(np.uint8)
    return _RAMP_TABLE[index]


def quicklook_shape(height: int, width: int, max_size: int) -> tuple[int, int]:
    """(rows, cols) of a quicklook whose long side is at most ``max_size`` (never upsampled)."""
    scale = min(1.0, max_size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _bins(start: int, length: int, full: int, cells: int) -> tuple[int, np.ndarray]:
    """First cell and reduceat offsets of ``length`` pixels from ``start`` on a ``full`` -> ``cells`` grid."""
    cell = (np.arange(start, start + length, dtype=np.int64) * cells) // full
    offsets = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
    return int(cell[0]), offsets


def _sum_rows(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Sum C x h x w rows over the segments starting at ``offsets``: one contiguous slice sum per
    segment (``np.add.reduceat`` along this middle axis was the slowest step of the writer's chunks)."""
    out = np.empty((values.shape[0], len(offsets), values.shape[2]), dtype=np.float32)
    ends = [*offsets[1:], values.shape[1]]
    for i, (start, end) in enumerate(zip(offsets, ends, strict=True)):
        np.sum(values[:, start:end], axis=1, out=out[:, i])
    return out


class CellMeans:
    """Per-cell means of a ``channels`` x ``height`` x ``width`` raster on a ``rows`` x ``cols`` grid,
    accumulated from windows in any order (each pixel should be added once). Thread-safe."""

    def __init__(self, height: int, width: int, rows: int, cols: int, channels: int = 1) -> None:
        self.height, self.width, self.rows, self.cols = height, width, rows, cols
        # float32: a cell sums at most a few thousand values in [0, 1] (exact counts up to 2**24), and
        # at a 1024² quicklook the five planes of a detect run take 20 MB instead of 40.
        self._sums = np.zeros((channels, rows, cols), dtype=np.float32)
        self._counts = np.zeros((rows, cols), dtype=np.float32)
        self._lock = threading.Lock()

    def add(self, y0: int, x0: int, values: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add a window (``values``: C x h x w or h x w) at (y0, x0), skipping pixels not ``valid``."""
        values = values if values.ndim == 3 else values[np.newaxis]
        _, h, w = values.shape
        if h == 0 or w == 0:
            return
        weight = np.ones((h, w), np.float32) if valid is None else valid.astype(np.float32)
        weighted = values.astype(np.float32, copy=False) * weight
        r0, row_offsets = _bins(y0, h, self.height, self.rows)
        c0, col_offsets = _bins(x0, w, self.width, self.cols)
        sums = np.add.reduceat(_sum_rows(weighted, row_offsets), col_offsets, axis=2)
        counts = np.add.reduceat(_sum_rows(weight[np.newaxis], row_offsets)[0], col_offsets, axis=1)
        rows, cols = slice(r0, r0 + counts.shape[0]), slice(c0, c0 + counts.shape[1])
        with self._lock:
            self._sums[:, rows, cols] += sums
            self._counts[rows, cols] += counts

    def means(self) -> np.ndarray:
        """C x rows x cols float32 means; NaN where a cell received no valid pixel."""
        with self._lock, np.errstate(invalid="ignore", divide="ignore"):
            out = self._sums / self._counts
        return np.where(self._counts > 0, out, np.nan).astype(np.float32)


def render_png(prob: np.ndarray, detected_share: np.ndarray, background: np.ndarray | None) -> bytes:
    """PNG bytes: ``prob`` (NaN = nodata) on the ramp over ``background`` (RGB uint8, optional), with the
    outline of cells holding any detection in cyan (a share > 0 keeps small detections visible)."""
    nodata = ~np.isfinite(prob)
    p = np.where(nodata, np.float32(0.0), prob).astype(np.float32)
    rgb = magma_ramp(p)
    if background is not None:
        bg = np.asarray(background, dtype=np.uint8)
        if bg.shape != (*prob.shape, 3):
            raise ValueError(f"background must be RGB uint8 of shape {(*prob.shape, 3)}, got {bg.shape}")
        alpha = (np.float32(0.7) * p)[..., None]
        base = bg.astype(np.float32)
        rgb = (base + (rgb - base) * alpha + np.float32(0.5)).astype(np.uint8)
        rgb[nodata] = (bg[nodata] // 2).astype(np.uint8)
    else:
        rgb[nodata] = NODATA_RGB
    detected = (np.nan_to_num(detected_share, nan=0.0) > 0).astype(np.uint8)
    outline = detected & ~cv2.erode(detected, np.ones((3, 3), np.uint8)).astype(bool)
    rgb[outline.astype(bool)] = MASK_OUTLINE_RGB
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError("PNG encoding failed")
    return png.tobytes()
