"""The overview levels GDAL's COG driver builds itself: the reference edge-ls's streamed levels match."""

from __future__ import annotations

import uuid

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.io import MemoryFile


def gdal_levels(values: np.ndarray, nodata: float, resampling: str, block: int = 512) -> list[np.ndarray]:
    """Every overview level of a COG that GDAL makes from ``values`` (``OVERVIEWS=AUTO``), finest first."""
    height, width = values.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 1, "dtype": values.dtype.name}
    target = f"/vsimem/{uuid.uuid4().hex}.tif"
    with MemoryFile() as memory:
        with memory.open(**profile, nodata=nodata) as ds:
            ds.write(values, 1)
        with memory.open() as ds:
            rasterio.shutil.copy(
                ds, target, driver="COG", BLOCKSIZE=block, RESAMPLING=resampling, OVERVIEWS="AUTO"
            )
    try:
        with rasterio.open(target) as ds:
            count = len(ds.overviews(1))
        levels = []
        for level in range(count):
            with rasterio.open(target, overview_level=level) as ds:
                levels.append(ds.read(1))
        return levels
    finally:
        rasterio.shutil.delete(target)
