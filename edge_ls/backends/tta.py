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

import cv2
import numpy as np

from edge_ls.artifact import ModelSpec
from edge_ls.backends.base import Runner, TileOutput, WrappingRunner
from edge_ls.profiles.profile import D4_SIZE
from edge_ls.tiling import Tile, TilePlan

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


#: Side multiple of a rescaled tile: the models' coarsest stride.
SCALE_MULTIPLE = 32


def scaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    """(h, w) times ``scale``, rounded to the nearest multiple of :data:`SCALE_MULTIPLE` (at least one)."""
    m = SCALE_MULTIPLE
    return max(m, round(h * scale / m) * m), max(m, round(w * scale / m) * m)


def resize_planes(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """Every H x W plane of ``x`` (any leading axes) resized to h x w: area-averaged when shrinking
    (as an overview read), bilinear when enlarging."""
    if x.shape[-2:] == (h, w):
        return x
    shrink = h * w < x.shape[-2] * x.shape[-1]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    flat = x.reshape(-1, *x.shape[-2:])
    out = np.stack(
        [cv2.resize(np.ascontiguousarray(p, np.float32), (w, h), interpolation=interp) for p in flat]
    )
    return out.reshape(*x.shape[:-2], h, w)


def usable_scales(
    scales: Sequence[float], gsd_m: float | None, gsd_range_m: tuple[float, float] | None
) -> tuple[float, ...]:
    """The ``scales`` that keep a tile inside the model's trained GSD range: scale s reads pixels of
    ``gsd_m / s`` m. Scale 1 always stays; with the GSD or the range unknown, every scale stays."""
    if gsd_m is None or gsd_range_m is None:
        return tuple(scales)
    lo, hi = gsd_range_m
    return tuple(s for s in scales if s == 1.0 or lo <= gsd_m / s <= hi) or (1.0,)


def mean_probability(
    runner: Runner, spec: ModelSpec, batch: np.ndarray, views: int, scales: Sequence[float] = (1.0,)
) -> np.ndarray:
    """The calibrated probability (N x H x W) averaged over the first ``views`` D4 transforms, each
    mapped back onto the tile, and over ``scales`` (the tile resized by each, the probability resized
    back; each scale weighs the same). ``views == 1`` at scale 1 is the model's own output, bit for bit."""
    h, w = batch.shape[2:]
    per_scale = []
    for scale in scales:
        sh, sw = scaled_size(h, w, scale) if scale != 1.0 else (h, w)
        x_scaled = resize_planes(batch, sh, sw)
        total = np.zeros((len(batch), sh, sw), np.float32)
        for forward, inverse in D4[:views]:
            x = np.ascontiguousarray(forward(x_scaled), dtype=np.float32)
            total += inverse(spec.probabilities(runner.infer(x)[:, 0]))
        per_scale.append(resize_planes(total / views if views > 1 else total, h, w))
    return per_scale[0] if len(per_scale) == 1 else np.mean(per_scale, axis=0, dtype=np.float32)


class AveragingRunner(WrappingRunner):
    """Wraps a runner: its probability averaged over ``views`` D4 transforms and ``scales`` (the
    ``views`` and ``scales`` settings).

    Averaging over flips and quarter turns removes the orientation bias of a model trained with
    them as augmentation; eight views of Edge-Lite gained 1.7 F1 points on the test splits
    (training/README.md) for eight times the inference. Averaging over scales hedges a scene whose
    pixel size the model handles less well (training/README.md "Scales"); scale s costs s² of one.
    """

    returns_probability = True

    def __init__(self, inner: Runner, spec: ModelSpec, views: int, scales: Sequence[float] = (1.0,)) -> None:
        if not 1 <= views <= D4_SIZE:
            raise ValueError(f"views must be 1..{D4_SIZE}, got {views}")
        if views == 1 and tuple(scales) == (1.0,):
            raise ValueError("nothing to average: one view at scale 1")
        super().__init__(inner)
        self.spec, self.views, self.scales = spec, views, tuple(scales)
        self.used_scales = self.scales

    def bind(self, plan: TilePlan, gsd_m: float | None = None) -> None:
        """A new scene: only the scales that keep its pixels inside the trained GSD range."""
        self.used_scales = usable_scales(self.scales, gsd_m, self.spec.gsd_range_m)
        super().bind(plan, gsd_m)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return mean_probability(self.inner, self.spec, batch, self.views, self.used_scales)[:, None]

    def infer_tiles(self, batch: np.ndarray, tiles: Sequence[Tile]) -> list[TileOutput]:
        prob = mean_probability(self.inner, self.spec, batch, self.views, self.used_scales)
        return [(tile, prob[i], None) for i, tile in enumerate(tiles)]

    def report(self) -> dict[str, Any]:
        return {
            **self.inner.report(),
            "views": {"count": self.views, "group": "D4", "scales": list(self.used_scales)},
        }


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
