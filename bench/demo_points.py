"""The demo scene as a check: hit rate on its landslide points, false alarms on its other points.

``examples/chattogram_s2.tif`` (Sentinel-2, ~10 m) comes with labelled points on the same grid
(``sentinel2_chattogram/labels/``: 1 = not landslide, 2 = landslide, small 1-13 px polygons). For each
model this runs ``edge-ls detect`` on the scene exactly as a user would and reads the committed
``mask.tif``: hit rate = share of landslide-point pixels flagged, false-alarm rate = share of
non-landslide-point pixels flagged, and the share of the whole scene flagged. Points, not polygons:
good for "do detections fall on known landslides", not for IoU.

Run from the repository root (the command behind the README's demo table):

    python bench/demo_points.py --model edge-lite --model edge-lite:int8 --model edge-nano \
        --json bench/results/demo-points-<date>.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGE_LS_SHARED", REPO.parent / "shared"))
SCENE = REPO / "examples" / "chattogram_s2.tif"
LABELS = SHARED / "data" / "real" / "sentinel2_chattogram" / "labels"
LANDSLIDE, OTHER = 2, 1


def label_grid(scene: Path, labels: Path) -> np.ndarray:
    """The label tiles mosaicked onto the scene's grid (nearest, max where tiles overlap)."""
    import rasterio
    from rasterio.merge import merge

    tiles = sorted(labels.glob("*.tif"))
    if not tiles:
        raise SystemExit(f"no label tiles in {labels}")
    with rasterio.open(scene) as src:
        bounds, res = src.bounds, src.res
        shape = (src.height, src.width)
    sources = [rasterio.open(p) for p in tiles]
    try:
        mosaic, _ = merge(sources, bounds=bounds, res=res, nodata=0, method="max")
    finally:
        for s in sources:
            s.close()
    grid = mosaic[0]
    if grid.shape != shape:
        raise SystemExit(f"labels mosaic {grid.shape} does not match the scene {shape}")
    return grid


def run_detect(model: str, scene: Path, out: Path) -> dict[str, Any]:
    """``profile:NAME`` runs a tier profile (``--profile NAME``), anything else a model."""
    is_profile = model.startswith("profile:")
    which = ["--profile", model.removeprefix("profile:")] if is_profile else ["--model", model]
    cmd = [sys.executable, "-m", "edge_ls", "detect", str(scene), "--out", str(out), *which]
    proc = subprocess.run([*cmd, "--quiet"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return json.loads((out / "report.json").read_text())


def check(model: str, labels: np.ndarray, scene: Path) -> dict[str, Any]:
    import rasterio

    with tempfile.TemporaryDirectory() as tmp:
        report = run_detect(model, scene, Path(tmp) / "out")
        with rasterio.open(Path(tmp) / "out" / "mask.tif") as src:
            mask = src.read(1)
            nodata = src.nodata
    valid = mask != nodata if nodata is not None else np.ones(mask.shape, bool)
    flagged = (mask == 1) & valid
    slide, other = labels == LANDSLIDE, labels == OTHER
    return {
        "model": report.get("model"),
        "precision": report.get("precision"),
        "hit_rate": round(float(flagged[slide].mean()), 4),
        "false_alarm_rate": round(float(flagged[other].mean()), 4),
        "scene_flagged": round(float(flagged[valid].mean()), 4),
        "landslide_px": int(slide.sum()),
        "other_px": int(other.sum()),
        "tiles_per_s": report.get("tiles_per_s"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        help="model name or path, or profile:NAME for a tier profile (repeatable)",
    )
    parser.add_argument("--scene", type=Path, default=SCENE)
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    labels = label_grid(args.scene, args.labels)
    rows = {m: check(m, labels, args.scene) for m in args.model}
    lines = [
        "| model | hit rate (landslide points) | false alarms (other points) | scene flagged |",
        "|---|---|---|---|",
    ]
    for m, r in rows.items():
        lines.append(
            f"| {m} | {r['hit_rate']:.3f} | {r['false_alarm_rate']:.3f} | {r['scene_flagged']:.3f} |"
        )
    print("\n".join(lines))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        cmd = "python bench/demo_points.py " + " ".join(argv if argv is not None else sys.argv[1:])
        args.json.write_text(
            json.dumps({"command": cmd, "scene": str(args.scene.name), "models": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
