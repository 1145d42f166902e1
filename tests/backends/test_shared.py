"""A shared runner stays loaded across scenes and is released once, by its owner."""

from __future__ import annotations

import numpy as np

from edge_ls.backends.base import Runner
from edge_ls.backends.shared import SharedRunner


class _Counting(Runner):
    backend = "counting"

    def __init__(self) -> None:
        super().__init__()
        self.loads = 0
        self.unloads = 0

    def activate(self) -> None:
        self.loads += 1

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return batch[:, :1] * 2.0

    def deactivate(self) -> None:
        self.unloads += 1


def test_three_scenes_load_the_model_once_and_the_owner_releases_it() -> None:
    inner = _Counting()
    shared = SharedRunner(inner)
    x = np.ones((1, 3, 4, 4), np.float32)
    for _ in range(3):
        with shared.lend() as runner:
            assert np.array_equal(runner.infer(x), x[:, :1] * 2.0)
    assert (inner.loads, inner.unloads) == (1, 0)
    shared.close()
    assert (inner.loads, inner.unloads) == (1, 1)
    assert shared.backend == "counting"
