"""The runner interface every backend implements (after Polygraphy's runners).

A runner is cheap to construct; ``activate`` does the expensive work (load the model, allocate
buffers), ``infer`` maps a float32 NCHW batch to the model's raw N x 1 x H x W output, ``deactivate``
frees everything. Use it as a context manager.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType

import numpy as np


class Runner(ABC):
    """Load / activate / infer / deactivate, with one small interface for every backend."""

    #: Backend name reported to the user ("onnxruntime", "tensorrt").
    backend: str = "unknown"
    #: How many threads may call ``infer`` at the same time (a TensorRT execution context: one).
    concurrency: int = 1
    #: Why the backends a profile preferred over this one were not used (see backends/select.py).
    selection_notes: tuple[str, ...] = ()

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
