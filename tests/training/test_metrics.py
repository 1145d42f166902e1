"""The cross-dataset table of training runs (train on A, test on B)."""

from __future__ import annotations

import math

import pytest

from edge_ls.training.metrics import PixelMetrics, cross_dataset_matrix, fit_temperature


def test_training_metrics_names_are_the_runtime_ones() -> None:
    """Callers importing the pixel metrics from training get the runtime's objects, not copies."""
    import edge_ls.metrics as runtime

    assert PixelMetrics is runtime.PixelMetrics and fit_temperature is runtime.fit_temperature


def test_cross_dataset_matrix() -> None:
    results = {
        ("cas", "cas"): {"iou": 0.7},
        ("cas", "bijie"): {"iou": 0.2},
        ("bijie", "bijie"): {"iou": 0.6},
    }
    t = cross_dataset_matrix(results, "iou", order=["cas", "bijie"])
    assert t.train == ["cas", "bijie"] and t.test == ["cas", "bijie"]
    assert t.values[0].tolist() == [0.7, 0.2]
    assert math.isnan(t.values[1, 0]) and t.values[1, 1] == 0.6
    assert t.to_dict()["values"][1] == [None, 0.6]
    md = t.to_markdown()
    assert "| cas | 0.700 | 0.200 |" in md and "| bijie | — | 0.600 |" in md
    with pytest.raises(KeyError, match="f1"):
        cross_dataset_matrix(results, "f1")


def test_cross_dataset_matrix_order_with_repeated_names():
    # bench/cross_dataset.py passes [*datasets, *models]; a model named after its dataset repeats a name
    results = {
        ("a", "a"): {"f1": 0.7},
        ("a", "b"): {"f1": 0.3},
        ("b", "a"): {"f1": 0.1},
        ("b", "b"): {"f1": 0.4},
    }
    m = cross_dataset_matrix(results, "f1", order=["a", "b", "a", "b"])
    assert m.train == ["a", "b"] and m.test == ["a", "b"]
    assert m.values.tolist() == [[0.7, 0.3], [0.1, 0.4]]
