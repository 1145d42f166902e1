"""Reading a scene at a ground distance the model was trained for, and putting results back.

A model trained at 0.5-12 m (``ModelSpec.gsd_range_m``) sees a 0.1 m UAV orthophoto as a blur of
giant textures and a 30 m Landsat scene as a few pixels per slide. When the scene's GSD is far outside
the trained range (beyond ``TOLERANCE`` x its ends), tiles are read decimated (GDAL average, through
overviews when the file has them) or enlarged (bilinear) to the nearest GSD of the range, and each
tile's probabilities are resized back onto the scene's own pixels before blending. Every output then
lies on the scene's grid, as if the model had run at full resolution. Like GeoDeep's ``resolution``
metadata, but the trained range rather than one value decides, and the nearest trained GSD keeps as
much detail as the model can use.

Pure functions (numpy + OpenCV); the pipeline calls them.
"""

from __future__ import annotations

import math

import numpy as np

from edge_ls.artifact import ModelSpec

#: How far outside the trained GSD range a scene may be before it is resampled (a factor).
TOLERANCE = 1.5


def read_gsd(scene_gsd_m: float | None, spec: ModelSpec, enabled: bool = True) -> float | None:
    """The GSD to read the scene at, or None to read it as it is.

    None when resampling is off, the scene's GSD is unknown (no georeference), the model carries no
    trained range, or the scene is within ``TOLERANCE`` of that range.
    """
    if not enabled or not scene_gsd_m or spec.gsd_range_m is None:
        return None
    lo, hi = spec.gsd_range_m
    if lo / TOLERANCE <= scene_gsd_m <= hi * TOLERANCE:
        return None
    return float(min(max(scene_gsd_m, lo), hi))


def scene_tile_size(tile_size: int, scene_gsd_m: float, target_gsd_m: float) -> int:
    """Scene pixels covered by one model tile read at ``target_gsd_m`` (at least 16)."""
    return max(16, round(tile_size * target_gsd_m / scene_gsd_m))


def model_shape(height: int, width: int, scale: float) -> tuple[int, int]:
    """Model pixels of a ``height`` x ``width`` scene window read at ``scale`` scene px per model px."""
    return max(1, round(height / scale)), max(1, round(width / scale))


def to_scene(prob: np.ndarray, valid: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Model-pixel probabilities and validity (``h x w``) resized onto ``height x width`` scene pixels.

    Probabilities bilinear (smooth, stay in [0, 1]); validity nearest, so nodata stays nodata.
    """
    import cv2

    h, w = valid.shape
    p = cv2.resize(np.ascontiguousarray(prob[:h, :w], np.float32), (width, height), cv2.INTER_LINEAR)
    v = cv2.resize(valid.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    return p, v.astype(bool)


def describe(scene_gsd_m: float, target_gsd_m: float, spec: ModelSpec) -> str:
    """One line for the log and the report: what was resampled and why."""
    lo, hi = spec.gsd_range_m or (math.nan, math.nan)
    return (
        f"scene GSD {scene_gsd_m:.3g} m is outside the {lo:g}-{hi:g} m the model was trained on: "
        f"read at {target_gsd_m:.3g} m, outputs written on the scene's grid (--no-resample to turn off)"
    )
