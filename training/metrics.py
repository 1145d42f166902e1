"""Training-side metric tables; the pixel metrics themselves live in :mod:`edge_ls.metrics`.

The pixel metrics are numpy-only and shared with the runtime evaluator and the export, so they sit in
the runtime layer; their names are re-exported here for the callers that import them from training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_ls.metrics import (
    AUC_BINS,
    ECE_BINS,
    PixelMetrics,
    exact_auc,
    fit_temperature,
    histogram_auc,
)

__all__ = [
    "AUC_BINS",
    "ECE_BINS",
    "CrossDatasetMatrix",
    "PixelMetrics",
    "cross_dataset_matrix",
    "exact_auc",
    "fit_temperature",
    "histogram_auc",
]


@dataclass
class CrossDatasetMatrix:
    """One metric for every (trained on, tested on) pair; NaN where a pair was not run."""

    metric: str
    train: list[str]
    test: list[str]
    values: np.ndarray  # len(train) x len(test)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "train": self.train,
            "test": self.test,
            "values": [[None if math.isnan(v) else float(v) for v in row] for row in self.values],
        }

    def to_markdown(self, digits: int = 3) -> str:
        head = f"| train \\ test ({self.metric}) | " + " | ".join(self.test) + " |"
        rule = "|---" * (len(self.test) + 1) + "|"
        rows = [
            f"| {name} | " + " | ".join("—" if math.isnan(v) else f"{v:.{digits}f}" for v in row) + " |"
            for name, row in zip(self.train, self.values, strict=True)
        ]
        return "\n".join([head, rule, *rows])


def cross_dataset_matrix(
    results: Mapping[tuple[str, str], Mapping[str, Any]],
    metric: str = "iou",
    order: Sequence[str] | None = None,
) -> CrossDatasetMatrix:
    """Tabulate ``{(train_name, test_name): metrics}`` ("train on A, test on B") for one metric.

    Rows and columns follow ``order`` when given (names missing from it come after), else first
    appearance; the diagonal is the in-domain score.
    """
    names: list[str] = list(dict.fromkeys(order or []))  # a name given twice is one row/column
    for a, b in results:
        for n in (a, b):
            if n not in names:
                names.append(n)
    train = [n for n in names if any(a == n for a, _ in results)]
    test = [n for n in names if any(b == n for _, b in results)]
    values = np.full((len(train), len(test)), np.nan)
    for (a, b), m in results.items():
        if metric not in m:
            raise KeyError(f"result ({a}, {b}) has no metric '{metric}'")
        values[train.index(a), test.index(b)] = float(m[metric])
    return CrossDatasetMatrix(metric, train, test, values)
