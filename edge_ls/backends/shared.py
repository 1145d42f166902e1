"""One loaded model for many scenes: a runner lent to each scene's stream, closed once by its owner.

:func:`edge_ls.pipeline.detect` enters and exits its runner around one scene; a multi-scene run (the
local loop in ``edge_ls/runs.py``, a Ray actor in ``edge_ls/cluster.py``) wraps its runner in
:class:`SharedRunner` and hands ``runner_factory=shared.lend`` to every scene, so the model is loaded
once and released when the owner closes it, not after the first scene.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

import numpy as np

from edge_ls.backends.base import Runner, TileOutput, WrappingRunner
from edge_ls.tiling import Tile


class SharedRunner(WrappingRunner):
    """Delegates to ``inner``; entering activates it once, exiting a scene leaves it loaded."""

    def __init__(self, inner: Runner) -> None:
        super().__init__(inner)
        self.returns_probability = inner.returns_probability

    def lend(self, *_: object) -> SharedRunner:
        """``runner_factory`` for :func:`edge_ls.pipeline.detect` (its arguments are not needed)."""
        return self

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

    def infer_tiles(self, batch: np.ndarray, tiles: Sequence[Tile]) -> list[TileOutput]:
        return self.inner.infer_tiles(batch, tiles)

    def skip_tiles(self, tiles: Sequence[Tile]) -> list[TileOutput]:
        return self.inner.skip_tiles(tiles)

    def flush(self) -> list[TileOutput]:
        return self.inner.flush()
