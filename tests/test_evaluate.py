"""The runtime-side scorer: ONNX models scored on labelled tiles the way the runtime runs them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_ls.errors import InputError
from edge_ls.evaluate import REPORTED, OnnxScorer, evaluate_onnx, score_pairs
from edge_ls.models.registry import resolve


def test_scores_every_pixel_of_a_real_set(real_data: Path) -> None:
    from edge_ls.training.tileset import read_split_pairs

    result = evaluate_onnx(
        resolve("edge-nano"), lambda bands: read_split_pairs([str(real_data / "bijie")], bands)
    )
    for key in REPORTED:
        assert key in result
    import cv2

    pixels = sum(
        cv2.imread(str(p), cv2.IMREAD_UNCHANGED).size for p in (real_data / "bijie" / "masks").glob("*.png")
    )
    assert result["pixels"] == pixels and result["tiles"] == 36
    assert 0.0 < result["f1"] < 1.0 and 0.5 < result["auc"] <= 1.0


def test_probability_pads_odd_sizes_and_checks_bands() -> None:
    with OnnxScorer.open(resolve("edge-nano"), threads=1) as scorer:
        prob = scorer.probability(np.random.default_rng(0).random((3, 45, 77), dtype=np.float32))
        assert prob.shape == (45, 77) and np.all((prob >= 0) & (prob <= 1))
        with pytest.raises(InputError, match="expects 3 bands"):
            scorer.probability(np.zeros((4, 32, 32), np.float32))
        with pytest.raises(InputError, match="no labelled tiles"):
            score_pairs(scorer, [])
