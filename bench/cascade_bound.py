"""The fastest a cascade can run on a labelled scene, whatever its triage: the refined pixel share of a
triage that flags exactly the tiles (or windows) a landslide touches, and the speed-up over the
refiner alone it allows, 1 / (triage cost + share). Crops of windows count whole.

    python bench/cascade_bound.py /tmp/bscenes/labelled_low_2048_s11_v1.truth.tif --triage-cost 0.146
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: ``edge_ls`` from the tree

from edge_ls.backends.cascade import WINDOW_MARGIN, windows
from edge_ls.tiling import plan_tiles


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("truth", type=Path)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=float, default=0.2)
    parser.add_argument("--triage-cost", type=float, required=True, help="triage time per tile / refiner's")
    args = parser.parse_args()
    with rasterio.open(args.truth) as src:
        truth = src.read(1) > 0
    tiles = list(plan_tiles(truth.shape[1], truth.shape[0], args.tile, args.overlap))
    print("refined unit | refined pixel share | bound")
    for step in (0, 256, 128, 64):
        cost = 0.0
        for t in tiles:
            sub = truth[t.y0 : t.y0 + t.height, t.x0 : t.x0 + t.width]
            if step == 0:
                cost += float(sub.any())
                continue
            hot = sum(bool(sub[win].any()) for win in windows(*sub.shape, step))
            cost += min(1.0, hot * (step + 2 * WINDOW_MARGIN) ** 2 / sub.size)
        share = cost / len(tiles)
        unit = "whole tile" if step == 0 else f"{step}-px windows"
        print(f"{unit} | {share:.3f} | {1 / (args.triage_cost + share):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
