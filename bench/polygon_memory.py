"""Memory of the streaming vectorizer alone: a finished mask.tif fed to ``StreamingPolygonizer`` in the
writer's 64-row chunks, Python/numpy allocations traced (tracemalloc).

Prints the largest live state between chunks (what the open regions hold) and the transient peak
(polygonizing the largest regions). Run: ``python bench/polygon_memory.py OUT_DIR/mask.tif``.
"""

from __future__ import annotations

import argparse
import tracemalloc
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from edge_ls.io.outputs import CHUNK_ROWS
from edge_ls.io.polygons import StreamingPolygonizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mask", type=Path, help="a mask.tif written by edge-ls detect (1 = detected)")
    args = parser.parse_args()
    with rasterio.open(args.mask) as ds:
        pixel = abs(ds.transform.a)
        poly = StreamingPolygonizer(
            ds.width,
            transform=ds.transform,
            pixel_area=pixel * pixel,
            min_area=9 * pixel * pixel,
            simplify_tolerance=0.5 * pixel,
        )
        tracemalloc.start()
        live = 0
        for row in range(0, ds.height, CHUNK_ROWS):
            detected = ds.read(1, window=Window(0, row, ds.width, min(CHUNK_ROWS, ds.height - row))) == 1
            prob = detected.astype(np.float32)
            poly.add_band(row, detected, prob, prob)
            live = max(live, tracemalloc.get_traced_memory()[0])
        regions = len(poly.finish())
        peak = tracemalloc.get_traced_memory()[1]
    print(
        f"{args.mask}: {ds.width}x{ds.height}, live state between chunks at most {live / 2**20:.1f} MiB, "
        f"transient peak {peak / 2**20:.1f} MiB (tracemalloc), {regions} regions closed by finish()"
    )


if __name__ == "__main__":
    main()
