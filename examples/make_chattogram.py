"""Build examples/chattogram_s2.tif: the bundled sample scene for the README's main job.

Mosaics the 100 georeferenced 256-px Sentinel-2 L2A tiles of ../shared/data/real/sentinel2_chattogram
(Red, Green, Blue, NIR; reflectance x 10000 stored as float64) into one 4-band uint16 Cloud-Optimized
GeoTIFF (EPSG:4326, ~10 m), with band colour interpretation and descriptions set so models find their
bands by name, and nodata 0 for the all-zero pixels outside the exported area.
Source: murad-geoAi/sentinel2-landslide-detection-dl @39e42013 (MIT); imagery: Copernicus Sentinel-2.
Run: ``python examples/make_chattogram.py [--src DIR] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.merge import merge
from rasterio.shutil import copy as rio_copy

HERE = Path(__file__).resolve().parent
SRC_DEFAULT = HERE.parents[1] / "shared" / "data" / "real" / "sentinel2_chattogram" / "images"


def build(src: Path, out: Path) -> Path:
    tiles = sorted(src.glob("*.tif"))
    if not tiles:
        raise SystemExit(f"no tiles in {src}")
    datasets = [rasterio.open(p) for p in tiles]
    try:
        mosaic, transform = merge(datasets, nodata=0)
        crs = datasets[0].crs
    finally:
        for d in datasets:
            d.close()
    data = np.clip(np.rint(mosaic), 0, 65535).astype(np.uint16)
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": 4,
        "dtype": "uint16",
        "crs": crs,
        "transform": transform,
        "nodata": 0,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "staged.tif"
        with rasterio.open(staged, "w", **profile) as dst:
            dst.write(data)
            dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.undefined]
            for i, name in enumerate(("red", "green", "blue", "nir"), start=1):
                dst.set_band_description(i, name)
            dst.update_tags(
                SOURCE="Copernicus Sentinel-2 L2A via murad-geoAi/sentinel2-landslide-detection-dl@39e42013",
                SCALE="reflectance x 10000",
            )
        rio_copy(
            staged,
            out,
            driver="COG",
            compress="DEFLATE",
            predictor=2,
            level=9,
            blocksize=256,
            overview_resampling="average",
        )
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Mosaic the Chattogram Sentinel-2 tiles into one COG.")
    parser.add_argument("--src", type=Path, default=SRC_DEFAULT)
    parser.add_argument("--out", type=Path, default=HERE / "chattogram_s2.tif")
    args = parser.parse_args()
    print(f"wrote {build(args.src, args.out)}")
