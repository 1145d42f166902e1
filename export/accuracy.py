"""Pixel F1 / IoU of an ONNX model on labelled tiles, through ONNX Runtime as the runtime runs it.

Scores are pooled over every pixel of every tile (micro-averaged): one tile with few landslide pixels
cannot swing the figure. F1 here is the landslide-class F1 (= 2 IoU / (1 + IoU)), in percentage points,
so "a delta of 1 point" reads directly off two of these dicts. The pixel math is that of the runtime's
scorer (:mod:`edge_ls.evaluate`: sigmoid(z / T), ``p >= threshold``, pooled counts, 0 when undefined)
-- a test holds the two to the same figures -- but works on tiles already in memory, so calibration
and evaluation tiles can be checked for overlap and big models scored in small batches.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from edge_ls.artifact import read_spec
from edge_ls.errors import ModelError
from edge_ls.export.tiles import LabelledTiles


def confusion(prob: np.ndarray, masks: np.ndarray, threshold: float) -> np.ndarray:
    """[tp, fp, fn, tn] pixel counts at ``threshold``."""
    pred = prob.reshape(masks.shape) >= threshold
    truth = masks.astype(bool)
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred & ~truth))
    fn = int(np.count_nonzero(~pred & truth))
    return np.array([tp, fp, fn, truth.size - tp - fp - fn], dtype=np.int64)


def scores(counts: np.ndarray) -> dict[str, float]:
    """F1, IoU, precision, recall (percent) from pooled [tp, fp, fn, tn]."""
    tp, fp, fn, _ = (int(c) for c in counts)
    iou = tp / (tp + fp + fn) if tp + fp + fn else 0.0
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {"f1": 100 * f1, "iou": 100 * iou, "precision": 100 * precision, "recall": 100 * recall}


def evaluate_onnx(
    onnx_path: str | Path,
    data: LabelledTiles | Iterable[LabelledTiles],
    batch: int = 2,
    threads: int | None = None,
) -> dict[str, Any]:
    """Score one ONNX model on labelled tiles; returns scores plus the pixel counts behind them."""
    import onnxruntime as ort

    path = Path(onnx_path)
    spec = read_spec(path)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises many unrelated types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelError(f"ONNX Runtime cannot load {path.name}: {first}") from None
    input_name = session.get_inputs()[0].name
    counts = np.zeros(4, dtype=np.int64)
    tiles = 0
    for part in [data] if isinstance(data, LabelledTiles) else data:
        for i in range(0, len(part), batch):
            x = np.ascontiguousarray(part.images[i : i + batch], dtype=np.float32)
            (raw,) = session.run(None, {input_name: x})[:1]
            counts += confusion(
                spec.probabilities(np.asarray(raw, np.float32)), part.masks[i : i + batch], spec.threshold
            )
            tiles += len(x)
    if tiles == 0:
        raise ModelError("no labelled tiles to score the model on")
    named = dict(zip(("tp", "fp", "fn", "tn"), (int(c) for c in counts), strict=True))
    return {
        **scores(counts),
        "tiles": tiles,
        "pixels": int(counts.sum()),
        "threshold": spec.threshold,
        "counts": named,
    }
