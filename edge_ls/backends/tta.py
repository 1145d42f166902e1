"""The uncertainty layer: test-time augmentation over the D4 group (flips and 90° rotations).

Each tile is run through the model ``count`` times, once per D4 transform (identity first), each output
mapped back onto the tile, and the per-pixel standard deviation of the calibrated probability across
them becomes ``uncertainty.tif``. The probability layer stays the identity transform's output, so
switching uncertainty on changes no other output; it costs ``count`` times the inference.

High uncertainty means the model's answer depends on the orientation of the image, i.e. it is not
sure; it is not the distance from the threshold (``confidence.tif``), which a confidently wrong
model also shows as high.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edge_ls.artifact import ModelSpec
from edge_ls.backends.base import Runner, TileOutput, WrappingRunner
from edge_ls.profiles.profile import D4_SIZE
from edge_ls.tiling import Tile

Transform = Callable[[np.ndarray], np.ndarray]


def _t(k: int, flip: bool) -> tuple[Transform, Transform]:
    """Forward (on N x C x H x W) and inverse (on N x H x W) of rot90^k after an optional flip."""

    def forward(x: np.ndarray) -> np.ndarray:
        y = x[..., ::-1] if flip else x
        return np.rot90(y, k, axes=(-2, -1))

    def inverse(p: np.ndarray) -> np.ndarray:
        y = np.rot90(p, -k, axes=(-2, -1))
        return y[..., ::-1] if flip else y

    return forward, inverse


#: The D4 group, identity first, then the transforms that differ most from it (flips, 180°).
D4: tuple[tuple[Transform, Transform], ...] = (
    _t(0, False),
    _t(0, True),
    _t(2, False),
    _t(2, True),
    _t(1, False),
    _t(3, False),
    _t(1, True),
    _t(3, True),
)
assert len(D4) == D4_SIZE


def mean_probability(runner: Runner, spec: ModelSpec, batch: np.ndarray, views: int) -> np.ndarray:
    """The calibrated probability (N x H x W) averaged over the first ``views`` D4 transforms, each
    mapped back onto the tile; ``views == 1`` is the model's own output, bit for bit."""
    total = np.zeros((len(batch), *batch.shape[2:]), np.float32)
    for forward, inverse in D4[:views]:
        x = np.ascontiguousarray(forward(batch), dtype=np.float32)
        total += inverse(spec.probabilities(runner.infer(x)[:, 0]))
    return total / views if views > 1 else total


class AveragingRunner(WrappingRunner):
    """Wraps a runner: its probability averaged over ``views`` D4 transforms (the ``views`` setting).

    Averaging over flips and quarter turns removes the orientation bias of a model trained with
    them as augmentation; eight views of Edge-Lite gained 1.7 F1 points on the test splits
    (training/README.md) for eight times the inference.
    """

    returns_probability = True

    def __init__(self, inner: Runner, spec: ModelSpec, views: int) -> None:
        if not 2 <= views <= D4_SIZE:
            raise ValueError(f"views must be 2..{D4_SIZE}, got {views}")
        super().__init__(inner)
        self.spec, self.views = spec, views

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return mean_probability(self.inner, self.spec, batch, self.views)[:, None]

    def infer_tiles(self, batch: np.ndarray, tiles: Sequence[Tile]) -> list[TileOutput]:
        prob = mean_probability(self.inner, self.spec, batch, self.views)
        return [(tile, prob[i], None) for i, tile in enumerate(tiles)]

    def report(self) -> dict[str, Any]:
        return {**self.inner.report(), "views": {"count": self.views, "group": "D4"}}


class TTARunner(WrappingRunner):
    """Wraps a runner: probability from the identity, ``uncertainty`` = std over ``count`` D4 transforms."""

    returns_probability = True

    def __init__(self, inner: Runner, spec: ModelSpec, count: int) -> None:
        if not 2 <= count <= D4_SIZE:
            raise ValueError(f"test-time augmentations must be 2..{D4_SIZE}, got {count}")
        super().__init__(inner)
        self.spec, self.count = spec, count

    def probabilities(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(identity probability, std over the transforms), each N x H x W."""
        views = []
        for forward, inverse in D4[: self.count]:
            x = np.ascontiguousarray(forward(batch), dtype=np.float32)
            raw = self.inner.infer(x)
            views.append(inverse(self.spec.probabilities(raw[:, 0])))
        stack = np.stack(views)
        return np.ascontiguousarray(stack[0]), stack.std(axis=0).astype(np.float32)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.probabilities(batch)[0][:, None]

    def infer_tiles(self, batch: np.ndarray, tiles: Sequence[Tile]) -> list[TileOutput]:
        prob, std = self.probabilities(batch)
        return [(tile, prob[i], {"uncertainty": std[i]}) for i, tile in enumerate(tiles)]

    def report(self) -> dict[str, Any]:
        return {**self.inner.report(), "uncertainty": {"tta": self.count, "group": "D4"}}
