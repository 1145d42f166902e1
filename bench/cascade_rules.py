"""What a cascade could save on a scene, for any ROI rule: replay it from two finished runs.

Given the triage model's run and the refiner's run on the same scene (``edge-ls bench`` leaves both in
its work folder: ``edge-lite-low-0`` and ``model_edge-lite@views=8-low-0``), and the scene's truth,
this replays tile-level rules "refine a tile when at least N of its pixels reach the decision
threshold (optionally with its eight neighbours)" and prints, per rule, the share of tiles refined,
the F1 of the stitched mask and the speed over the refiner alone that the share implies:
``1 / (t_triage / t_refiner + share)``, with the tiles/s of the two runs' reports. Each tile's core
cell (the grid of tile centres' Voronoi cells) takes the refined or the triage mask. It bounds what
an ROI rule can reach before anyone tunes one; it is arithmetic on measured outputs, not a run.

    python bench/cascade_rules.py --triage /tmp/bwork/edge-lite-low-0 \
        --refiner "/tmp/bwork/model_edge-lite@views=8-low-0" \
        --truth /tmp/bscenes/labelled_low_2048_s11_v1.truth.tif --json bench/results/cascade-rules-low.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

MIN_PIXELS = (1, 100, 500, 1000, 2000, 4000, 8000, 16000)


def _read(path: Path) -> tuple[np.ndarray, float]:
    """Band 1 and its scale (1 when unset)."""
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1), float(src.scales[0] or 1.0)


def _f1(pred: np.ndarray, truth: np.ndarray) -> float:
    denom = int(pred.sum()) + int(truth.sum())
    return 2 * int((pred & truth).sum()) / denom if denom else 0.0


def replay(triage: Path, refiner: Path, truth_path: Path) -> dict[str, Any]:
    """Every rule's refined share, F1 and implied speed-up (see the module docstring)."""
    t_report = json.loads((triage / "report.json").read_text())
    r_report = json.loads((refiner / "report.json").read_text())
    tri = _read(triage / "mask.tif")[0] == 1
    ref = _read(refiner / "mask.tif")[0] == 1
    raw, scale = _read(triage / "probability.tif")
    prob = raw.astype(np.float32) * scale
    truth = _read(truth_path)[0] > 0
    size, stride = t_report["tile_size"], t_report["stride"]
    threshold = t_report["threshold"]
    h, w = prob.shape
    rows = max(1, -(-(h - size) // stride) + 1)
    cols = max(1, -(-(w - size) // stride) + 1)
    # tile (r, c) covers [r*stride, r*stride + size); its core cell runs between the midpoints
    # of neighbouring tiles' centres.
    centres_y = [min(r * stride, h - size) + size // 2 for r in range(rows)]
    centres_x = [min(c * stride, w - size) + size // 2 for c in range(cols)]
    cuts_y = [0, *[(a + b) // 2 for a, b in itertools.pairwise(centres_y)], h]
    cuts_x = [0, *[(a + b) // 2 for a, b in itertools.pairwise(centres_x)], w]
    flagged = np.zeros((rows, cols), np.int64)
    for r in range(rows):
        for c in range(cols):
            y, x = min(r * stride, h - size), min(c * stride, w - size)
            flagged[r, c] = int((prob[y : y + size, x : x + size] >= threshold).sum())
    cost = t_report["tiles_per_s"] and r_report["tiles_per_s"] / t_report["tiles_per_s"]
    rules = []
    for min_px in MIN_PIXELS:
        for neighbours in (True, False):
            hot = flagged >= min_px
            if neighbours:
                grown = hot.copy()
                for r, c in np.argwhere(hot):
                    grown[max(0, r - 1) : r + 2, max(0, c - 1) : c + 2] = True
                hot = grown
            out = tri.copy()
            for r, c in np.argwhere(hot):
                ys, xs = slice(cuts_y[r], cuts_y[r + 1]), slice(cuts_x[c], cuts_x[c + 1])
                out[ys, xs] = ref[ys, xs]
            share = float(hot.mean())
            rules.append(
                {
                    "min_pixels": min_px,
                    "neighbours": neighbours,
                    "refined_share": round(share, 4),
                    "f1": round(100 * _f1(out, truth), 2),
                    "speedup_over_refiner": round(1.0 / (cost + share), 3) if cost else None,
                }
            )
    return {
        "triage": str(triage),
        "refiner": str(refiner),
        "tiles": rows * cols,
        "triage_over_refiner_cost": round(cost, 4) if cost else None,
        "f1_triage": round(100 * _f1(tri, truth), 2),
        "f1_refiner": round(100 * _f1(ref, truth), 2),
        "share_for_3x": round(1 / 3 - cost, 4) if cost else None,
        "rules": rules,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triage", type=Path, required=True, help="the triage model's detect output folder")
    parser.add_argument("--refiner", type=Path, required=True, help="the refiner's detect output folder")
    parser.add_argument("--truth", type=Path, required=True, help="the scene's truth raster (1 = landslide)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = replay(args.triage, args.refiner, args.truth)
    given = argv if argv is not None else sys.argv[1:]
    result["command"] = "python bench/cascade_rules.py " + " ".join(given)
    print(
        f"triage F1 {result['f1_triage']}, refiner F1 {result['f1_refiner']}, "
        f"triage/refiner cost {result['triage_over_refiner_cost']}, share for 3x {result['share_for_3x']}"
    )
    for rule in result["rules"]:
        print(json.dumps(rule))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
