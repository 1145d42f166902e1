"""Cross-dataset matrix: models trained on one dataset (or both), test split of each dataset.

Run ``python bench/cross_dataset.py --json OUT.json [--md OUT.md] [--split test]
[--model NAME=MODEL ...]``.

Every cell is ``edge-ls evaluate --model MODEL <dataset> --split SPLIT --split-file
training/configs/real_split_<dataset>.json --json`` (the dataset's part of ``real_split.json``:
the same tiles in the same splits), i.e. the exported ONNX through ONNX Runtime as the runtime runs
it. ``training.metrics.cross_dataset_matrix`` tabulates F1 and IoU; rows = trained on, columns =
tested on. Default models: the single-dataset Edge-Lite runs (``training/configs/edge_lite_<dataset>.toml``)
and the Edge-Lite trained on both (``edge_ls/models/edge-lite.onnx``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGE_LS_SHARED", REPO.parent / "shared"))
DATASETS = ("cas_hokkaido", "bijie")
CACHE = Path("~/.cache/edge-ls/models").expanduser()
DEFAULT_MODELS = {
    "cas_hokkaido": str(CACHE / "edge-lite-cas_hokkaido.onnx"),
    "bijie": str(CACHE / "edge-lite-bijie.onnx"),
    "cas_hokkaido+bijie": str(REPO / "edge_ls" / "models" / "edge-lite.onnx"),
}


def evaluate(model: str, dataset: str, split: str, threads: int) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-c",
        "import sys; from edge_ls.cli import main; sys.exit(main())",
        "evaluate",
        "--model",
        model,
        str(SHARED / "data" / "real" / dataset),
        "--split",
        split,
        "--split-file",
        str(REPO / "training" / "configs" / f"real_split_{dataset}.json"),
        "--threads",
        str(threads),
        "--json",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    from edge_ls.training.metrics import cross_dataset_matrix

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True, help="write the matrices and every cell's metrics here")
    ap.add_argument("--md", help="also write the markdown tables here")
    ap.add_argument("--split", default="test", choices=("train", "val", "test"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=MODEL",
        help="trained-on name = ONNX file / run folder (repeatable; default: the Edge-Lite runs)",
    )
    args = ap.parse_args(argv)
    models = dict(m.split("=", 1) for m in args.model) if args.model else dict(DEFAULT_MODELS)
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for name, model in models.items():
        for dataset in DATASETS:
            m = evaluate(model, dataset, args.split, args.threads)
            results[(name, dataset)] = m
            print(f"{name} -> {dataset}: f1 {m['f1']:.4f} iou {m['iou']:.4f}", file=sys.stderr)
    order = [*DATASETS, *models]
    tables = {metric: cross_dataset_matrix(results, metric, order=order) for metric in ("f1", "iou")}
    doc = {
        "split": args.split,
        "models": models,
        "matrices": {k: t.to_dict() for k, t in tables.items()},
        "cells": [{"train": a, "test": b, "metrics": m} for (a, b), m in results.items()],
    }
    Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    md = "\n\n".join(t.to_markdown() for t in tables.values())
    if args.md:
        Path(args.md).write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
