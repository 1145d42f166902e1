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


def test_views_average_the_d4_transforms_of_the_tile(real_data: Path) -> None:
    """``views=8`` is the runtime's D4 average (``mean_probability``): equal to averaging by hand the
    model's probability of each flipped and turned tile, turned back; the bench's ladder scores TTA
    through it."""
    from edge_ls.training.tileset import read_split_pairs

    unit, _, _ = next(iter(read_split_pairs([str(real_data / "bijie")], ("red", "green", "blue"))))
    unit = np.ascontiguousarray(unit[:, :128, :160], dtype=np.float32)  # not square: turns change the shape
    with OnnxScorer.open(resolve("edge-lite"), threads=1) as scorer:
        total = np.zeros(unit.shape[1:], np.float64)
        for k in range(4):
            for flip in (False, True):
                x = np.rot90(unit, k, axes=(1, 2))
                x = x[:, :, ::-1] if flip else x
                p = scorer.probability(np.ascontiguousarray(x))
                total += np.rot90(p[:, ::-1] if flip else p, -k)
        averaged = scorer.probability(unit, views=8)
        single = scorer.probability(unit)
    np.testing.assert_allclose(averaged, total / 8, atol=1e-5)
    assert np.abs(averaged - single).max() > 1e-3  # the views do differ for a learned model
