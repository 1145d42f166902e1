"""Score an ONNX model on a labelled dataset, the way the runtime runs it (numpy + ONNX Runtime).

Every tier is scored by this one path: the model's own metadata says how to scale and normalize the
bands, ONNX Runtime (the runtime's :class:`OnnxRuntimeRunner`) computes the output, and logits become
probabilities with the model's calibrated temperature, exactly as ``edge-ls detect`` does. A PyTorch
checkpoint is first exported to a temporary ONNX file (``edge-ls evaluate`` does that), so PyTorch and
ONNX models are compared on equal terms. Metrics are aggregated over every pixel of the split.

Each tile is inferred whole (reflect-padded to a multiple of 32, then cropped back): the labelled
tiles here are one model tile in size, so this is what the tiled runtime sees for them.

This is the one :func:`evaluate_onnx`: ``edge-ls evaluate`` feeds it a reader of dataset pairs (the
dataset loaders sit in the training layer, so the CLI passes them in), the export's accuracy budget
feeds it :class:`~edge_ls.io.labelled.LabelledTiles` already normalized, scored in batches. Both
count pixels with :class:`edge_ls.metrics.PixelMetrics`.

No torch here: the runtime must not import it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_ls.artifact import ModelSpec, read_spec
from edge_ls.backends.onnxrt import OnnxRuntimeRunner
from edge_ls.backends.tta import mean_probability
from edge_ls.errors import InputError, ModelError
from edge_ls.io.labelled import LabelledTiles
from edge_ls.metrics import PixelMetrics
from edge_ls.pixel_math import normalize

#: Tiles are padded to a multiple of this before inference (encoders downsample by 32).
PAD_MULTIPLE = 32
#: What ``edge-ls evaluate --json`` prints at least.
REPORTED = ("f1", "iou", "precision", "recall", "accuracy", "mcc", "auc", "ece", "pixels")

#: (image C x H x W in [0, 1], mask H x W, valid pixels or None): one labelled tile as a dataset reads it.
Pair = tuple[np.ndarray, np.ndarray, np.ndarray | None]
#: The model's band names -> its labelled pairs in that band order (e.g. a split of some datasets).
PairReader = Callable[[tuple[str, ...]], Iterable[Pair]]


@dataclass
class OnnxScorer:
    """One ONNX model, ready to turn [0, 1] band stacks into landslide probabilities."""

    path: Path
    spec: ModelSpec
    runner: OnnxRuntimeRunner

    @classmethod
    def open(cls, path: str | Path, threads: int | None = None) -> OnnxScorer:
        path = Path(path)
        spec = read_spec(path)
        runner = OnnxRuntimeRunner(path, providers=["CPUExecutionProvider"], intra_op_threads=threads)
        runner.activate()
        return cls(path, spec, runner)

    def close(self) -> None:
        self.runner.deactivate()

    def __enter__(self) -> OnnxScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def probability(self, unit: np.ndarray, views: int = 1, scales: tuple[float, ...] = (1.0,)) -> np.ndarray:
        """C x H x W values in [0, 1] (the model's band order) -> H x W probabilities; ``views`` > 1 or
        other ``scales``: averaged over D4 views and scales by the runtime's own
        :func:`~edge_ls.backends.tta.mean_probability` (the ``views`` / ``scales`` settings)."""
        if unit.ndim != 3 or unit.shape[0] != len(self.spec.bands):
            raise InputError(
                f"{self.path.name} expects {len(self.spec.bands)} bands ({', '.join(self.spec.bands)}), "
                f"got an array of shape {unit.shape}"
            )
        x = normalize(
            unit.astype(np.float32, copy=False), np.asarray(self.spec.mean), np.asarray(self.spec.std)
        )
        h, w = x.shape[1:]
        ph, pw = (-h) % PAD_MULTIPLE, (-w) % PAD_MULTIPLE
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="reflect")
        batch = np.ascontiguousarray(x[None], dtype=np.float32)
        if views != 1 or tuple(scales) != (1.0,):
            return mean_probability(self.runner, self.spec, batch, views, scales)[0, :h, :w]
        out = self.runner.infer(batch)
        if out.ndim != 4 or out.shape[:2] != (1, 1):
            raise ModelError(f"{self.path.name} output has shape {out.shape}; edge-ls expects N x 1 x H x W")
        return self.spec.probabilities(out[0, 0, :h, :w])

    def batch_probability(self, batch: np.ndarray) -> np.ndarray:
        """N x C x H x W tiles already normalized as the spec says -> N x 1 x H x W probabilities."""
        out = self.runner.infer(np.ascontiguousarray(batch, dtype=np.float32))
        return self.spec.probabilities(out)


def score_pairs(scorer: OnnxScorer, pairs: Iterable[Pair]) -> dict[str, Any]:
    """Pixel metrics of ``scorer`` over (image in [0, 1] C x H x W, mask H x W, valid or None)."""
    acc = PixelMetrics(threshold=scorer.spec.threshold)
    n = 0
    for unit, mask, valid in pairs:
        acc.update(scorer.probability(unit), mask, valid)
        n += 1
    return _result(acc, n, scorer)


def score_tiles(
    scorer: OnnxScorer, data: LabelledTiles | Iterable[LabelledTiles], batch: int = 2
) -> dict[str, Any]:
    """Pixel metrics of ``scorer`` over normalized labelled tiles, ``batch`` tiles per inference
    (a big model scored on many tiles must not hold every activation at once)."""
    acc = PixelMetrics(threshold=scorer.spec.threshold)
    n = 0
    for part in [data] if isinstance(data, LabelledTiles) else data:
        for i in range(0, len(part), batch):
            masks = part.masks[i : i + batch]
            acc.update(scorer.batch_probability(part.images[i : i + batch]).reshape(masks.shape), masks)
            n += len(masks)
    return _result(acc, n, scorer)


def evaluate_onnx(
    model_path: str | Path,
    data: PairReader | LabelledTiles | Iterable[LabelledTiles],
    threads: int | None = None,
    batch: int = 2,
) -> dict[str, Any]:
    """Score an ONNX artifact on labelled data: every metric of :class:`PixelMetrics`, the tile
    count, the threshold and which model it was.

    ``data``: a :data:`PairReader` (given the model's bands, yields its pairs: ``edge-ls evaluate``),
    or labelled tiles already normalized for this model (the export's accuracy budget).
    """
    with OnnxScorer.open(model_path, threads) as scorer:
        if callable(data):
            result = score_pairs(scorer, data(tuple(scorer.spec.bands)))
        else:
            result = score_tiles(scorer, data, batch)
    result.update(model=scorer.spec.name, tier=scorer.spec.tier, model_precision=scorer.spec.precision)
    return result


def _result(acc: PixelMetrics, tiles: int, scorer: OnnxScorer) -> dict[str, Any]:
    if tiles == 0:
        raise InputError("no labelled tiles to score")
    result = _plain(acc.compute())
    result["tiles"] = tiles
    result["threshold"] = scorer.spec.threshold
    return result


def undefined_as_null(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with each metric :class:`PixelMetrics` lists as ``undefined`` set to None, and why in
    ``undefined_reasons``: on all-zero masks an AUC of 0.0 read as "worst possible model" when no
    AUC exists at all. (The export and trainer keep the numeric 0.0, which their comparisons need.)"""
    out = dict(result)
    undefined = list(out.get("undefined", []))
    positives, pixels = out.get("positives"), out.get("pixels")
    if pixels == 0:
        why = "undefined: no pixels scored"
    elif positives == 0:
        why = "undefined: no positive pixels"
    elif positives == pixels:
        why = "undefined: no negative pixels"
    else:
        why = "undefined: nothing predicted positive"
    reasons = {}
    for key in undefined:
        if key in out:
            out[key] = None
            reasons[key] = why
    out["undefined_reasons"] = reasons
    return out


def _plain(value: Any) -> Any:
    """numpy scalars/arrays -> JSON-able Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
