"""Pixel F1 / IoU of an ONNX model on labelled tiles, in percentage points, for the accuracy budget.

Scores are pooled over every pixel of every tile (micro-averaged): one tile with few landslide pixels
cannot swing the figure. F1 here is the landslide-class F1 (= 2 IoU / (1 + IoU)), in percentage points,
so "a delta of 1 point" reads directly off two of these dicts. The scoring is the runtime's own
(:func:`edge_ls.evaluate.evaluate_onnx` with :class:`edge_ls.metrics.PixelMetrics`); this module only
states the result in the export's units, on tiles already in memory, so calibration and evaluation
tiles can be checked for overlap and big models scored in small batches.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edge_ls.evaluate import evaluate_onnx
from edge_ls.io.labelled import LabelledTiles
from edge_ls.metrics import percent_scores


def budget_scores(
    onnx_path: str | Path,
    data: LabelledTiles | Iterable[LabelledTiles],
    batch: int = 2,
    threads: int | None = None,
) -> dict[str, Any]:
    """Score one ONNX model on labelled tiles; returns percent scores plus the pixel counts behind them."""
    result = evaluate_onnx(onnx_path, data, threads=threads, batch=batch)
    counts = result["confusion"]
    return {
        **percent_scores(result),
        "tiles": result["tiles"],
        "pixels": result["pixels"],
        "threshold": result["threshold"],
        "counts": {k: counts[k] for k in ("tp", "fp", "fn", "tn")},
    }
