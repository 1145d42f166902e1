"""How raw pixel values become [0, 1] per band for a model's ``input_range``: fixed scales for 8-bit
imagery and reflectance, a 2-98 percentile stretch for other integer data, decided once per input from
a small sample by :class:`edge_ls.io.source.RasterSource`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import rasterio.io

from edge_ls.artifact import ModelSpec

log = logging.getLogger(__name__)

#: Percentiles of the stretch applied to non-8-bit imagery fed to an ``8bit`` model.
STRETCH_PERCENTILES = (2.0, 98.0)
#: A float raster fed to a ``reflectance`` model whose 98th percentile exceeds this is not reflectance
#: in [0, 1] but integer reflectance stored as floats (as the real Chattogram Sentinel-2 export is):
#: it is divided by ``reflectance_scale`` instead of being clipped to 1 everywhere.
SCALED_FLOAT_REFLECTANCE_P98 = 1.5


@dataclass(frozen=True)
class BandScaling:
    """How raw values become [0, 1] per band: ``unit = clip((raw - offset) * scale, 0, 1)``."""

    offset: np.ndarray
    scale: np.ndarray
    method: str


def _scaling(
    ds: rasterio.io.DatasetReader,
    indexes: tuple[int, ...],
    spec: ModelSpec,
    sample: np.ndarray,
    valid: np.ndarray,
    sampled_from: str,
) -> BandScaling:
    """Per-band offset/scale for ``spec.input_range``, from the dtype and the sample's valid pixels."""
    offsets: list[float] = []
    scales: list[float] = []
    methods: list[str] = []
    rs = spec.reflectance_scale
    for pos, index in enumerate(indexes):
        dtype = np.dtype(ds.dtypes[index - 1])
        values = sample[pos][valid]
        gdal_scale, gdal_offset = ds.scales[index - 1], ds.offsets[index - 1]
        if spec.input_range == "8bit":
            if dtype == np.uint8:
                offset, scale, method = 0.0, 1.0 / 255.0, "uint8/255"
            else:
                offset, scale, method = _stretch(values, sampled_from)
        elif (gdal_scale, gdal_offset) != (1.0, 0.0) and gdal_scale:
            # reflectance = raw * scale + offset  ==  (raw - (-offset / scale)) * scale
            offset, scale, method = -gdal_offset / gdal_scale, gdal_scale, "GDAL scale/offset metadata"
        elif dtype.kind in "ui":
            offset, scale, method = 0.0, 1.0 / rs, f"reflectance/{rs:g}"
            if dtype == np.uint8:
                log.warning("%s band %d is 8-bit but the model expects reflectance", ds.name, index)
        else:
            p98 = float(np.percentile(values, 98.0))
            if p98 > SCALED_FLOAT_REFLECTANCE_P98:
                offset, scale = 0.0, 1.0 / rs
                method = f"reflectance/{rs:g} (floats > {SCALED_FLOAT_REFLECTANCE_P98:g}: scaled integers)"
            else:
                offset, scale, method = 0.0, 1.0, "float as is"
        offsets.append(offset)
        scales.append(scale)
        methods.append(method)
    if len(set(methods)) == 1:
        described = methods[0]
    else:
        described = "; ".join(f"band {i}: {m}" for i, m in zip(indexes, methods, strict=True))
    return BandScaling(
        offset=np.asarray(offsets, dtype=np.float32),
        scale=np.asarray(scales, dtype=np.float32),
        method=described,
    )


def input_spread(sample: np.ndarray, valid: np.ndarray, scaling: BandScaling) -> float:
    """The largest per-band 2-98 percentile spread of the sample, in the model's [0, 1] input units.

    A percentile-stretched band always spans [0, 1] after scaling, so its spread is measured before
    the stretch: at most 2 integer levels (or a relative 1e-3 for floats) counts as no contrast (0).
    A constant or near-constant scene (blank tile, saturated or uniform image) scores below ~0.01;
    what a model predicts on it means nothing.
    """
    spreads = []
    for pos in range(sample.shape[0]):
        values = sample[pos][valid]
        lo, hi = (float(v) for v in np.percentile(values, STRETCH_PERCENTILES))
        if "percentile" in scaling.method:
            flat = (
                hi - lo <= 2 if sample.dtype.kind in "ui" else hi - lo <= 1e-3 * max(abs(hi), abs(lo), 1e-12)
            )
            spreads.append(0.0 if flat else 1.0)
        else:
            spreads.append((hi - lo) * abs(float(scaling.scale[pos])))
    return max(spreads) if spreads else 0.0


def _stretch(values: np.ndarray, sampled_from: str) -> tuple[float, float, str]:
    """Percentile stretch of one band's valid sample values to [0, 1]."""
    lo, hi = (float(v) for v in np.percentile(values, STRETCH_PERCENTILES))
    method = f"percentile {STRETCH_PERCENTILES[0]:g}-{STRETCH_PERCENTILES[1]:g} ({sampled_from})"
    if hi <= lo:  # a constant band carries no contrast: map it to 0 rather than divide by zero
        return lo, 1.0, method + ", constant band"
    return lo, 1.0 / (hi - lo), method
