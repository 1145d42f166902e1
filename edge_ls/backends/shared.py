"""One loaded model for many scenes: a runner lent to each scene's stream, closed once by its owner.

:func:`edge_ls.pipeline.detect` enters and exits its runner around one scene; a multi-scene run (the
local loop in ``edge_ls/runs.py``, a Ray actor in ``edge_ls/cluster.py``) wraps its runner in
:class:`SharedRunner` and hands ``runner_factory=shared.lend`` to every scene, so the model is loaded
once and released when the owner closes it, not after the first scene.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

import numpy as np

from edge_ls.backends.base import Runner, TileOutput
from edge_ls.tiling import Tile, TilePlan


class SharedRunner(Runner):
    """Delegates to ``inner``; entering activates it once, exiting a scene leaves it loaded."""

    def __init__(self, inner: Runner) -> None:
        super().__init__()
        self.inner = inner
        self.backend = inner.backend
        self.concurrency = inner.concurrency
        self.selection_notes = inner.selection_notes
        self.returns_probability = inner.returns_probability

    def lend(self, *_: object) -> SharedRunner:
        """``runner_factory`` for :func:`edge_ls.pipeline.detect` (its arguments are not needed)."""
        return self

    def activate(self) -> None:
        if not self.inner.is_active:
            self.inner.activate()
            self.inner.is_active = True

    def deactivate(self) -> None:
        """Kept loaded: the owner calls :meth:`close` after the last scene."""

    def close(self) -> None:
        """Release the model (after the last scene)."""
        self.inner.__exit__(None, None, None)
        self.is_active = False

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None  # the next scene reuses the loaded model

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.inner.infer(batch)

    def bind(self, plan: TilePlan) -> None:
        self.inner.bind(plan)

    def infer_tiles(self, batch: np.ndarray, tiles: Sequence[Tile]) -> list[TileOutput]:
        return self.inner.infer_tiles(batch, tiles)

    def skip_tiles(self, tiles: Sequence[Tile]) -> list[TileOutput]:
        return self.inner.skip_tiles(tiles)

    def flush(self) -> list[TileOutput]:
        return self.inner.flush()

    def report(self) -> dict[str, Any]:
        return self.inner.report()

    @property
    def device(self) -> str:
        return self.inner.device

    def peak_vram_mb(self) -> float | None:
        return self.inner.peak_vram_mb()
