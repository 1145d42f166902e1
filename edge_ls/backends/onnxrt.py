"""ONNX Runtime runner: the embedded default backend (CPU), with CUDA/TensorRT providers when present."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_ls.backends.base import Runner
from edge_ls.errors import ModelError

#: Provider preference: TensorRT, then CUDA, then CPU; only those this onnxruntime build has are used.
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def available_providers(preferred: Sequence[str] = PREFERRED_PROVIDERS) -> list[str]:
    """The preferred providers this onnxruntime build can actually use, best first."""
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    chosen = [p for p in preferred if p in have]
    return chosen or ["CPUExecutionProvider"]


class OnnxRuntimeRunner(Runner):
    """Runs an ONNX model with ONNX Runtime; one session per runner.

    ``streams`` threads may call :meth:`infer` at once (``InferenceSession.run`` is thread-safe); the
    cores are then split between them (``intra_op_threads`` defaults to cores // streams). On a CPU,
    two single-threaded streams keep both cores busy without the per-operator barrier of one
    two-threaded call, which stalls whenever the pipeline's reader or writer thread takes a core.
    """

    backend = "onnxruntime"

    def __init__(
        self,
        model_path: str | Path,
        providers: Sequence[str] | None = None,
        intra_op_threads: int | None = None,
        allow_spinning: bool = False,
        streams: int = 1,
    ) -> None:
        super().__init__()
        if streams < 1:
            raise ValueError(f"streams must be at least 1, got {streams}")
        self.model_path = Path(model_path)
        self.providers = list(providers) if providers else available_providers()
        self.concurrency = streams
        # Default: every core for the math, split between the streams.
        self.intra_op_threads = intra_op_threads or max(1, (os.cpu_count() or 1) // streams)
        # Spinning worker threads burn the cores the pipeline's reader and writer threads need
        # (measured: 2x slower inference on 2 contended cores); off by default.
        self.allow_spinning = allow_spinning
        self._session = None
        self._input_name = ""
        self._output_name = ""

    def activate(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        spinning = "1" if self.allow_spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        try:
            self._session = ort.InferenceSession(str(self.model_path), options, providers=self.providers)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ModelError(f"cannot load {self.model_path.name} with ONNX Runtime: {first}") from None
        self._input_name = self._session.get_inputs()[0].name
        self._output_name = self._session.get_outputs()[0].name

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self._session is None:
            raise RuntimeError("runner is not active: use it as a context manager or call activate()")
        (out,) = self._session.run([self._output_name], {self._input_name: batch})
        return np.asarray(out, dtype=np.float32)

    def deactivate(self) -> None:
        self._session = None

    @property
    def device(self) -> str:
        if self._session is not None and self._session.get_providers()[0] != "CPUExecutionProvider":
            return "cuda:0"
        return "cpu"

    @property
    def active_providers(self) -> list[str]:
        return list(self._session.get_providers()) if self._session is not None else []
