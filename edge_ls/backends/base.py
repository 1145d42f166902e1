"""The runner interface every backend implements (after Polygraphy's runners).

A runner is cheap to construct; ``activate`` does the expensive work (load the model, allocate
buffers), ``infer`` maps a float32 NCHW batch to the model's raw N x 1 x H x W output, ``deactivate``
frees everything. Use it as a context manager.

The stream talks to a runner through :meth:`Runner.infer_tiles`, which by default is :meth:`infer` on the
batch. A runner that needs to know where tiles sit (the cascade refines the neighbours of a tile its
triage flags) overrides it: it may hold tiles back and hand them out with a later call or at
:meth:`flush`, and it may return calibrated probabilities instead of raw output
(``returns_probability``). The stream stays the same for every runner.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import numpy as np

from edge_ls.tiling import Tile, TilePlan

#: What :meth:`Runner.infer_tiles` hands back: each finished tile with its output (1 x H x W raw,
#: or H x W probabilities when the runner ``returns_probability``), and optional extra layers.
TileOutput = tuple[Tile, np.ndarray, "dict[str, np.ndarray] | None"]


class Runner(ABC):
    """Load / activate / infer / deactivate, with one small interface for every backend."""

    #: Backend name reported to the user ("onnxruntime", "tensorrt").
    backend: str = "unknown"
    #: How many threads may call ``infer`` at the same time (a TensorRT execution context: one).
    concurrency: int = 1
    #: Why the backends a profile preferred over this one were not used (see backends/select.py).
    selection_notes: tuple[str, ...] = ()
    #: True when :meth:`infer_tiles` returns calibrated probabilities (H x W), not raw model output.
    returns_probability: bool = False

    def __init__(self) -> None:
        self.is_active = False

    @abstractmethod
    def activate(self) -> None:
        """Load the model and allocate what inference needs."""

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run one float32 NCHW batch; return the model's raw float32 N x 1 x H x W output."""

    @abstractmethod
    def deactivate(self) -> None:
        """Release the model and its buffers."""

    def bind(self, plan: TilePlan, gsd_m: float | None = None) -> None:
        """Told the tile grid, and the ground size of the pixels it will be sent (None: unknown),
        before the stream starts (a plain runner needs neither)."""
        return None

    def infer_tiles(self, batch: np.ndarray, tiles: Sequence[Tile]) -> list[TileOutput]:
        """The outputs of the tiles finished now: by default every tile of ``batch``, in order."""
        raw = self.infer(batch)
        return [(tile, raw[i], None) for i, tile in enumerate(tiles)]

    def skip_tiles(self, tiles: Sequence[Tile]) -> list[TileOutput]:
        """Tiles the stream does not infer (all nodata); a runner waiting on them may finish others."""
        return []

    def flush(self) -> list[TileOutput]:
        """Every tile still held back, once the stream has handed over its last tile."""
        return []

    def report(self) -> dict[str, Any]:
        """What this runner adds to the report (a cascade's share of tiles refined); empty by default."""
        return {}

    @property
    def device(self) -> str:
        """Where inference runs, for the report ("cpu", "cuda:0")."""
        return "cpu"

    def peak_vram_mb(self) -> float | None:
        """Peak device memory used so far, or None when the backend runs on the CPU."""
        return None

    def __enter__(self) -> Runner:
        if not self.is_active:
            self.activate()
            self.is_active = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.is_active:
            self.deactivate()
            self.is_active = False


class WrappingRunner(Runner):
    """A runner around another (views averaged, the uncertainty layer, a model shared by many
    scenes): it takes the inner runner's name and limits and passes loading, inference, the tile
    plan, the report and the device figures through; a subclass overrides only what it changes."""

    def __init__(self, inner: Runner) -> None:
        super().__init__()
        self.inner = inner
        self.backend = inner.backend
        self.concurrency = inner.concurrency
        self.selection_notes = inner.selection_notes

    def activate(self) -> None:
        self.inner.__enter__()

    def deactivate(self) -> None:
        self.inner.__exit__(None, None, None)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.inner.infer(batch)

    def bind(self, plan: TilePlan, gsd_m: float | None = None) -> None:
        self.inner.bind(plan, gsd_m)

    def report(self) -> dict[str, Any]:
        return self.inner.report()

    @property
    def device(self) -> str:
        return self.inner.device

    def peak_vram_mb(self) -> float | None:
        return self.inner.peak_vram_mb()
