"""Does averaging the refiner over scales hold up on whole scenes? Edge-Lite over 8 D4 views, at
scale 1 and at scales (1, 0.5), on the bench's labelled scenes of low and medium landslide cover from
a seed the bench does not report (12): pixel F1, precision and recall of each run's ``mask.tif``.

    python bench/scales_low_cover.py --json bench/results/scales-low-cover-2026-12-06.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: ``edge_ls`` from the tree

from edge_ls.bench.scenes import ensure_scene
from edge_ls.deployment import deploy
from edge_ls.pipeline import detect

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "bscenes12")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for cover in ("low", "medium"):
            scene, truth_path = ensure_scene(args.cache_dir, REAL, args.size, cover, args.seed)
            with rasterio.open(truth_path) as t:
                truth = t.read(1) > 0
            for scales in ((1.0,), (1.0, 0.5)):
                out = Path(work) / f"{cover}-{len(scales)}"
                report = detect(scene, deploy(model="edge-lite", views=8, scales=scales), out)
                with rasterio.open(out / "mask.tif") as m:
                    mask = m.read(1) == 1
                tp, fp = int((mask & truth).sum()), int((mask & ~truth).sum())
                fn = int((~mask & truth).sum())
                row = {
                    "cover": cover,
                    "scales": list(scales),
                    "scales_used": report.as_dict()["runner"]["views"]["scales"],
                    "f1": round(200 * tp / max(1, 2 * tp + fp + fn), 2),
                    "precision": round(100 * tp / max(1, tp + fp), 2),
                    "recall": round(100 * tp / max(1, tp + fn), 2),
                }
                rows.append(row)
                print(row, flush=True)
    args.json.write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
