"""ONNX Runtime runner: the embedded default backend (CPU), with CUDA/TensorRT providers when present."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_ls.backends.base import Runner
from edge_ls.errors import ModelError, first_line

#: Provider preference: TensorRT, then CUDA, then CPU; only those this onnxruntime build has are used.
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def available_providers(preferred: Sequence[str] = PREFERRED_PROVIDERS) -> list[str]:
    """The preferred providers this onnxruntime build can actually use, best first."""
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    chosen = [p for p in preferred if p in have]
    return chosen or ["CPUExecutionProvider"]


def open_session(
    model_path: str | Path,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    *,
    threads: int | None = None,
    inter_op_threads: int | None = None,
    optimize: bool = True,
    spinning: bool | None = None,
    memory_arena: bool = True,
    error: str = "cannot load {name} with ONNX Runtime: {reason}",
) -> Any:
    """The one place an ONNX Runtime ``InferenceSession`` is made (runner, spec reader, export, bench).

    ``threads``/``inter_op_threads``: ONNX Runtime's defaults when None. ``optimize``: every graph
    optimization (what the runtime runs) or none (reading metadata, calibration). ``spinning``: the
    intra-op threads' busy-wait, left at ONNX Runtime's default when None. ``memory_arena``: False
    hands freed activations back to the system (calibration observes every activation). A file that
    does not load is a :class:`ModelError` whose text is ``error`` with ``{name}`` and ``{reason}``.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    if inter_op_threads:
        options.inter_op_num_threads = inter_op_threads
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    if spinning is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if not memory_arena:
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
    try:
        return ort.InferenceSession(str(model_path), options, providers=list(providers))
    except Exception as exc:  # onnxruntime raises many unrelated types for a bad file
        raise ModelError(error.format(name=Path(model_path).name, reason=first_line(exc))) from None


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
        self._session = open_session(
            self.model_path,
            self.providers,
            threads=self.intra_op_threads,
            inter_op_threads=1,
            spinning=self.allow_spinning,
        )
        self._input_name = self._session.get_inputs()[0].name
        self._output_name = self._session.get_outputs()[0].name

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self._session is None:
            raise RuntimeError("runner is not active: use it as a context manager or call activate()")
        try:
            (out,) = self._session.run([self._output_name], {self._input_name: batch})
        except Exception as exc:  # ONNX Runtime raises its own types (InvalidArgument, Fail, ...)
            declared = [d if isinstance(d, int) else "?" for d in self._session.get_inputs()[0].shape]
            raise ModelError(
                f"model {self.model_path.name} (input {'x'.join(map(str, declared))}) cannot run on an input "
                f"of shape {'x'.join(map(str, batch.shape))}: {first_line(exc)} (its graph does not fit its "
                "edge-ls metadata: bands, tile size or batch)"
            ) from exc
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
