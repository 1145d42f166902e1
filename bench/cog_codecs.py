"""COG write time, CPU and size per layer encoding and codec, for the choices in ``edge_ls/io/outputs.py``.

Writes a smooth 4096² probability-like raster (float32 0..1, and the same as uint8 percent 0..100),
then copies each to a COG with overviews per codec and thread setting: wall seconds, process CPU
seconds (what the copy takes from inference on a busy machine) and size.
Run: ``python bench/cog_codecs.py [--size 4096] [--quick]``.
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
#: The codec edge-ls writes, the only one timed with --quick.
CHOSEN = ("ZSTD", {"LEVEL": "1"})


def layers(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    prob = cv2.GaussianBlur(rng.random((n, n), dtype=np.float32), (0, 0), 8)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    return {"float32": prob, "percent": (prob * 100 + 0.5).astype(np.uint8)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--quick", action="store_true", help=f"only {CHOSEN[0]} level 1, 1 vs all threads")
    args = parser.parse_args()
    n = args.size
    codecs = CODECS if not args.quick else (CHOSEN, (CHOSEN[0], {**CHOSEN[1], "NUM_THREADS": "ALL_CPUS"}))
    print(f"{'layer':8s} {'codec':8s} {'options':45s} {'wall s':>7s} {'cpu s':>7s} {'MB':>7s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in layers(n).items():
            src = Path(tmp) / f"{name}.tif"
            profile = {
                "driver": "GTiff",
                "width": n,
                "height": n,
                "count": 1,
                "dtype": data.dtype.name,
                "crs": "EPSG:32645",
                "transform": from_origin(500000, 3000000, 1, 1),
                "tiled": True,
                "blockxsize": 512,
                "blockysize": 512,
            }
            with rasterio.open(src, "w", **profile) as dst:
                dst.write(data, 1)
            for codec, extra in codecs:
                out = Path(tmp) / "cog.tif"
                t0, c0 = time.perf_counter(), time.process_time()
                rasterio.shutil.copy(
                    src,
                    out,
                    driver="COG",
                    BLOCKSIZE=512,
                    COMPRESS=codec,
                    PREDICTOR="YES",
                    RESAMPLING="average",
                    OVERVIEWS="AUTO",
                    **extra,
                )
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                mb = out.stat().st_size / 1e6
                print(f"{name:8s} {codec:8s} {extra!s:45s} {wall:7.2f} {cpu:7.2f} {mb:7.1f}")


if __name__ == "__main__":
    main()
