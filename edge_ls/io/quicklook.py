"""The quicklook: a small PNG of the probability over the imagery, built while the scene streams past.

Everything it shows is averaged per quicklook cell *as the data goes by* (:class:`CellMeans`): the
probability and the detected share from the writer's rows, the imagery from the tiles the readers
read anyway. Nothing is read back at the end: re-reading the input at quicklook size decoded every block
of it a second time, and averaging the finished full-size rasters cost as much again (together the
``commit.quicklook`` stage: 3.2 s of the 10k² edge-nano run in bench/results/pipeline-2026-12-01.json,
serial after the stream).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

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
        out[:, self._counts == 0] = np.nan  # in place: no second copy of the planes
        return out


def render_rgb(prob: np.ndarray, detected_share: np.ndarray, background: np.ndarray | None) -> np.ndarray:
    """RGB uint8: ``prob`` (NaN = nodata) on the ramp over ``background`` (RGB uint8, optional), with the
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
    return rgb


def encode_png(rgb: np.ndarray) -> bytes:
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError("PNG encoding failed")
    return png.tobytes()


def render_png(prob: np.ndarray, detected_share: np.ndarray, background: np.ndarray | None) -> bytes:
    """PNG bytes of :func:`render_rgb` (the map alone, no annotation)."""
    return encode_png(render_rgb(prob, detected_share, background))


# -- annotation: title, legend, scale bar -------------------------------------------------------------

#: Narrowest annotated quicklook: the legend and scale bar need this much room on a tiny scene.
MIN_ANNOTATED_WIDTH = 560
_TITLE_H = 30
_LEGEND_H = 58
_PAPER = (255, 255, 255)
_INK = (20, 20, 20)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class Annotation:
    """What the quicklook says around the map."""

    title: str
    threshold: float
    #: Ground metres per pixel of the map as drawn; None (no georeference): no scale bar.
    metres_per_pixel: float | None = None


def nice_length(target: float) -> float:
    """The 1-2-5 x 10^k value at or below ``target`` (a scale bar's length)."""
    if not (target > 0 and math.isfinite(target)):
        raise ValueError(f"scale bar target must be positive, got {target}")
    power = 10.0 ** math.floor(math.log10(target))
    return max(step * power for step in (1.0, 2.0, 5.0) if step * power <= target * (1 + 1e-9))


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.45, max_w: int = 10**6) -> None:
    """Draw ``text`` (ASCII: OpenCV's Hershey font has no other glyphs), shortened to fit ``max_w`` px."""
    text = text.encode("ascii", "replace").decode()
    while text and cv2.getTextSize(text, _FONT, scale, 1)[0][0] > max_w:
        text = text[:-4] + "..." if len(text) > 4 else ""
    cv2.putText(img, text, org, _FONT, scale, _INK, 1, cv2.LINE_AA)


def annotate(rgb: np.ndarray, note: Annotation) -> np.ndarray:
    """The map with a title above it and, below, the probability colour bar (threshold marked), the
    detection outline's meaning and a scale bar: what a reader needs without opening a GIS."""
    h, w = rgb.shape[:2]
    width = max(w, MIN_ANNOTATED_WIDTH)
    canvas = np.full((_TITLE_H + h + _LEGEND_H, width, 3), _PAPER, dtype=np.uint8)
    x0 = (width - w) // 2
    canvas[_TITLE_H : _TITLE_H + h, x0 : x0 + w] = rgb
    _text(canvas, note.title, (8, 20), 0.5, width - 16)
    top = _TITLE_H + h + 10
    # Colour bar: probability 0..1 on the map's ramp, the decision threshold marked.
    bar_w, bar_h, bx = 180, 12, 8
    canvas[top : top + bar_h, bx : bx + bar_w] = magma_ramp(np.linspace(0.0, 1.0, bar_w, dtype=np.float32))[
        None
    ]
    cv2.rectangle(canvas, (bx, top), (bx + bar_w - 1, top + bar_h - 1), _INK, 1)
    tx = bx + round(note.threshold * (bar_w - 1))
    cv2.line(canvas, (tx, top - 3), (tx, top + bar_h + 2), MASK_OUTLINE_RGB, 2)
    for value in (0.0, 0.5, 1.0):
        x = bx + round(value * (bar_w - 1))
        _text(canvas, f"{value:g}", (max(0, x - 6), top + bar_h + 14), 0.4)
    _text(canvas, "probability", (bx, top + bar_h + 30), 0.4)
    # The outline's meaning.
    lx = bx + bar_w + 24
    cv2.rectangle(canvas, (lx, top), (lx + 14, top + bar_h), MASK_OUTLINE_RGB, 2)
    _text(canvas, f"detected (p >= {note.threshold:g})", (lx + 22, top + bar_h - 1), 0.4)
    # Scale bar, right-aligned.
    if note.metres_per_pixel and note.metres_per_pixel > 0:
        length_m = nice_length(note.metres_per_pixel * width / 5.0)
        px = max(1, round(length_m / note.metres_per_pixel))
        x1 = width - 12
        sx = x1 - px
        cv2.rectangle(canvas, (sx, top + 2), (x1, top + 8), _INK, -1)
        label = f"{length_m / 1000:g} km" if length_m >= 1000 else f"{length_m:g} m"
        _text(canvas, label, (sx, top + 26), 0.4)
    else:
        _text(canvas, "no georeference: no scale", (width - 200, top + 12), 0.4)
    return canvas


def ramp_stops() -> list[tuple[float, str]]:
    """The ramp's anchors as (value in [0, 1], "#rrggbb"): the quicklook's colours for other tools."""
    n = len(_RAMP_ANCHORS) - 1
    return [(i / n, "#{:02x}{:02x}{:02x}".format(*map(int, rgb))) for i, rgb in enumerate(_RAMP_ANCHORS)]


def probability_qml(threshold: float | None = None) -> str:
    """A QGIS layer style for probability.tif: the quicklook's ramp, interpolated over 0..1.

    QGIS applies a raster's band scale/offset before styling, so the same style fits the percent layer
    (uint8, scale 0.01) and the float32 one. QGIS loads ``<name>.qml`` beside ``<name>.tif`` on its own.
    """
    items = "".join(
        f'          <item alpha="255" value="{v:g}" label="{v:g}" color="{c}"/>\n' for v, c in ramp_stops()
    )
    note = "" if threshold is None else f" (decision threshold {threshold:g})"
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.28.0" styleCategories="AllStyleCategories">
  <!-- edge-ls landslide probability 0..1{note} -->
  <pipe>
    <rasterrenderer type="singlebandpseudocolor" band="1" opacity="1" alphaBand="-1"
                    classificationMin="0" classificationMax="1" nodataColor="">
      <rasterTransparency/>
      <minMaxOrigin>
        <limits>None</limits>
        <extent>WholeRaster</extent>
        <statAccuracy>Estimated</statAccuracy>
        <cumulativeCutLower>0.02</cumulativeCutLower>
        <cumulativeCutUpper>0.98</cumulativeCutUpper>
        <stdDevFactor>2</stdDevFactor>
      </minMaxOrigin>
      <rastershader>
        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="0"
                         minimumValue="0" maximumValue="1" labelPrecision="2">
{items}        </colorrampshader>
      </rastershader>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation saturation="0" grayscaleMode="0" colorizeOn="0"/>
    <rasterresampler maxOversampling="2"/>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
"""
