"""COG write time and size per codec, for the choice in ``edge_ls/io/outputs.py`` (ZSTD level 1).

Writes a smooth 4096² float32 probability-like raster, then copies it to a COG with overviews with
each codec.  Run: ``python bench/cog_codecs.py [--size 4096]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import rasterio
import rasterio.shutil
from rasterio.transform import from_origin

CODECS = (
    ("DEFLATE", {}),
    ("DEFLATE", {"NUM_THREADS": "ALL_CPUS"}),
    ("ZSTD", {"LEVEL": "1"}),
    ("ZSTD", {"LEVEL": "1", "NUM_THREADS": "ALL_CPUS"}),
    ("LZW", {"NUM_THREADS": "ALL_CPUS"}),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    n = parser.parse_args().size
    rng = np.random.default_rng(0)
    prob = cv2.GaussianBlur(rng.random((n, n), dtype=np.float32), (0, 0), 8)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src.tif"
        profile = {"driver": "GTiff", "width": n, "height": n, "count": 1, "dtype": "float32",
                   "crs": "EPSG:32645", "transform": from_origin(500000, 3000000, 1, 1), "tiled": True,
                   "blockxsize": 512, "blockysize": 512}
        with rasterio.open(src, "w", **profile) as dst:
            dst.write(prob, 1)
        for codec, extra in CODECS:
            out = Path(tmp) / "cog.tif"
            t0 = time.perf_counter()
            rasterio.shutil.copy(src, out, driver="COG", BLOCKSIZE=512, COMPRESS=codec, PREDICTOR="YES",
                                 RESAMPLING="average", OVERVIEWS="AUTO", **extra)
            seconds = time.perf_counter() - t0
            print(f"{codec:8s} {extra!s:45s} {seconds:6.2f} s  {out.stat().st_size / 1e6:6.1f} MB")


if __name__ == "__main__":
    main()
