"""TensorRT runner behind the runtime's :class:`Runner` interface (TensorRT 10/11 + pycuda).

Double buffering: the runner keeps ``pipeline_depth`` (default 2) slots, each with its own CUDA
stream, execution context, page-locked host buffers and device buffers sized for the engine's
maximum shape. A batch goes host -> pinned buffer -> device (async copy), executes
(``execute_async_v3``) and comes back (async copy) on its slot's stream, so while batch k executes,
batch k+1 is already being copied in and batch k-1 copied out. One execution context per stream,
because TensorRT forbids enqueueing one context on two streams concurrently; the price is one set of
activation memory per slot (``pipeline_depth=1`` trades the overlap for memory on small devices).

Tensors are addressed by name (TensorRT 10 API: ``num_io_tensors``, ``get_tensor_name``,
``set_input_shape``, ``set_tensor_address``). Peak VRAM is read from ``cuda.mem_get_info`` after
every batch (device-wide, minus what was in use once the context existed). The native CUDA kernels
(pre/post-processing fatbin built by CMake) are loaded when found, as :attr:`kernels`.

Not run here: no GPU on these machines. The code follows the documented APIs; what can be tested
without a GPU (missing extras, plans, the cache, the ONNX the engine is built from) is tested.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_ls.backends.base import Runner
from edge_ls.engines.optional import import_cuda_driver, import_tensorrt
from edge_ls.errors import InputError, ModelError

log = logging.getLogger(__name__)

RUN_PURPOSE = "Running TensorRT engines"
MB = 1 << 20
#: Environment variable pointing at the native kernels' fatbin (``native/`` built by CMake).
NATIVE_FATBIN_ENV = "EDGE_LS_NATIVE_FATBIN"
#: File name the top-level CMake build gives the fatbin (native/CMakeLists.txt).
NATIVE_FATBIN_NAME = "edge_ls_kernels.fatbin"


@dataclass
class _Slot:
    """One pipeline stage's resources: stream, context, pinned host and device buffers."""

    stream: Any
    context: Any
    host_in: np.ndarray
    dev_in: Any
    host_out: np.ndarray
    dev_out: Any
    done: Any
    pending: PendingBatch | None = None


class PendingBatch:
    """A submitted batch; :meth:`result` waits for its copy-out and returns the output (float32)."""

    def __init__(self, runner: TensorRTRunner, slot: _Slot, view: np.ndarray) -> None:
        self._runner, self._slot, self._view = runner, slot, view
        self._value: np.ndarray | None = None

    def ready(self) -> bool:
        return self._value is not None or bool(self._slot.done.query())

    def result(self) -> np.ndarray:
        if self._value is None:
            self._runner._collect(self._slot)
        assert self._value is not None
        return self._value

    def _materialize(self) -> None:
        """Copy out of the pinned buffer (which the slot reuses for its next batch)."""
        self._value = np.array(self._view, dtype=np.float32, copy=True)


class TensorRTRunner(Runner):
    """Runs a serialized TensorRT engine on one GPU with double-buffered async copies."""

    backend = "tensorrt"

    def __init__(
        self,
        engine: str | Path | bytes,
        device: int = 0,
        pipeline_depth: int = 2,
        native_fatbin: str | Path | None = None,
    ) -> None:
        super().__init__()
        if pipeline_depth < 1:
            raise InputError("pipeline_depth must be at least 1")
        # Fail now, not mid-run, when the gpu extra is missing (MissingExtraError names it).
        self._trt = import_tensorrt(RUN_PURPOSE)
        self._cuda = import_cuda_driver(RUN_PURPOSE)
        self.engine_source = engine
        self.device_index = device
        self.pipeline_depth = pipeline_depth
        self.native_fatbin = Path(native_fatbin) if native_fatbin else find_native_fatbin()
        self.kernels: Any = None  # pycuda Module of the native kernels, when loaded
        self._ctx: Any = None
        self._engine: Any = None
        self._slots: list[_Slot] = []
        self._next = 0
        self._input = self._output = ""
        self._min_shape: tuple[int, ...] = ()
        self._max_shape: tuple[int, ...] = ()
        self._baseline_used = 0
        self._peak_used = 0

    # ------------------------------------------------------------------------------ Runner interface

    def activate(self) -> None:
        cuda, trt = self._cuda, self._trt
        self._ctx = cuda.Device(self.device_index).make_context()
        try:
            free, total = cuda.mem_get_info()
            self._baseline_used = self._peak_used = total - free
            self._engine = self._deserialize(trt)
            self._bind_names(trt)
            self._slots = [self._make_slot(cuda, trt) for _ in range(self.pipeline_depth)]
            self.kernels = load_native_kernels(cuda, self.native_fatbin)
            self._track_memory()
        except BaseException:
            self._release()
            raise
        finally:
            if self._ctx is not None:
                self._ctx.pop()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.infer_async(batch).result()

    def infer_async(self, batch: np.ndarray) -> PendingBatch:
        """Queue ``batch`` (copy in, execute, copy out) and return at once; ``.result()`` waits."""
        if not self._slots:
            raise RuntimeError("runner is not active: use it as a context manager or call activate()")
        shape = self._check_shape(batch)
        self._ctx.push()
        try:
            slot = self._slots[self._next]
            self._next = (self._next + 1) % len(self._slots)
            if slot.pending is not None:  # the slot's previous batch must be out before reuse
                self._collect(slot, pushed=True)
            host_in = slot.host_in.reshape(-1)[: int(np.prod(shape))].reshape(shape)
            np.copyto(host_in, batch, casting="same_kind")
            ctx = slot.context
            if not ctx.set_input_shape(self._input, shape):
                raise InputError(
                    f"TensorRT refused input shape {shape} (engine range {self._min_shape}.."
                    f"{self._max_shape})"
                )
            out_shape = tuple(ctx.get_tensor_shape(self._output))
            ctx.set_tensor_address(self._input, int(slot.dev_in))
            ctx.set_tensor_address(self._output, int(slot.dev_out))
            self._cuda.memcpy_htod_async(slot.dev_in, host_in, slot.stream)
            if not ctx.execute_async_v3(slot.stream.handle):
                raise ModelError("TensorRT failed to enqueue the batch (see TensorRT's log)")
            out_view = slot.host_out.reshape(-1)[: int(np.prod(out_shape))].reshape(out_shape)
            self._cuda.memcpy_dtoh_async(out_view, slot.dev_out, slot.stream)
            slot.done.record(slot.stream)
            slot.pending = PendingBatch(self, slot, out_view)
            return slot.pending
        finally:
            self._ctx.pop()

    def infer_pipelined(self, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Outputs of ``batches`` in order, keeping ``pipeline_depth`` batches in flight."""
        in_flight: deque[PendingBatch] = deque()
        for batch in batches:
            in_flight.append(self.infer_async(batch))
            if len(in_flight) >= self.pipeline_depth:
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()

    def deactivate(self) -> None:
        if self._ctx is None:
            return
        self._ctx.push()
        try:
            for slot in self._slots:
                slot.stream.synchronize()
        finally:
            self._release(pushed=True)

    @property
    def device(self) -> str:
        return f"cuda:{self.device_index}"

    def peak_vram_mb(self) -> float | None:
        """Peak device memory this runner added (engine, buffers, activations), in MB."""
        return (self._peak_used - self._baseline_used) / MB

    @property
    def engine_activation_mb(self) -> float | None:
        """Activation memory one execution context needs at the engine's max shape (TensorRT's figure)."""
        if self._engine is None:
            return None
        size = getattr(self._engine, "device_memory_size_v2", None)
        return None if size is None else size / MB

    # ------------------------------------------------------------------------------------ internals

    def _deserialize(self, trt: Any) -> Any:
        source = self.engine_source
        if isinstance(source, bytes | bytearray):
            blob, name = bytes(source), "engine"
        else:
            path = Path(source)
            if not path.is_file():
                raise ModelError(f"engine file not found: {path}")
            blob, name = path.read_bytes(), path.name
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if hasattr(runtime, "engine_host_code_allowed"):
            runtime.engine_host_code_allowed = True  # version-compatible engines embed the lean runtime
        engine = runtime.deserialize_cuda_engine(blob)
        if engine is None:
            raise ModelError(
                f"TensorRT could not load {name}: it was probably built for another TensorRT "
                "version or GPU; rebuild it with 'edge-ls build-engine'"
            )
        self._runtime = runtime  # the engine must not outlive its runtime
        return engine

    def _bind_names(self, trt: Any) -> None:
        engine = self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or not outputs:
            raise ModelError(f"the engine needs one input and an output: inputs {inputs}, outputs {outputs}")
        self._input, self._output = inputs[0], outputs[0]
        lo, _opt, hi = engine.get_tensor_profile_shape(self._input, 0)
        self._min_shape, self._max_shape = tuple(lo), tuple(hi)

    def _make_slot(self, cuda: Any, trt: Any) -> _Slot:
        engine = self._engine
        context = engine.create_execution_context()
        context.set_input_shape(self._input, self._max_shape)
        out_max = tuple(context.get_tensor_shape(self._output))
        in_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._input)))
        out_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._output)))
        host_in = cuda.pagelocked_empty(self._max_shape, in_dtype)
        host_out = cuda.pagelocked_empty(out_max, out_dtype)
        return _Slot(
            stream=cuda.Stream(),
            context=context,
            host_in=host_in,
            dev_in=cuda.mem_alloc(host_in.nbytes),
            host_out=host_out,
            dev_out=cuda.mem_alloc(host_out.nbytes),
            done=cuda.Event(),
        )

    def _check_shape(self, batch: np.ndarray) -> tuple[int, ...]:
        shape = tuple(batch.shape)
        if len(shape) != len(self._max_shape) or any(
            not lo <= s <= hi for s, lo, hi in zip(shape, self._min_shape, self._max_shape, strict=True)
        ):
            raise InputError(
                f"batch shape {shape} is outside the engine's range {self._min_shape}.."
                f"{self._max_shape}: rebuild the engine with a profile covering it"
            )
        return shape

    def _collect(self, slot: _Slot, pushed: bool = False) -> None:
        """Wait for the slot's copy-out, hand its output to the pending batch, free the slot."""
        pending = slot.pending
        if pending is None:
            return
        if not pushed:
            self._ctx.push()
        try:
            slot.done.synchronize()
            pending._materialize()
            slot.pending = None
            self._track_memory()
        finally:
            if not pushed:
                self._ctx.pop()

    def _track_memory(self) -> None:
        free, total = self._cuda.mem_get_info()
        self._peak_used = max(self._peak_used, total - free)

    def _release(self, pushed: bool = True) -> None:
        """Free buffers, contexts and the engine, then the CUDA context (which must be current)."""
        for slot in self._slots:
            slot.dev_in.free()
            slot.dev_out.free()
        self._slots = []
        self._engine = None
        self.kernels = None
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            if pushed:
                ctx.pop()
            ctx.detach()


def find_native_fatbin() -> Path | None:
    """The native kernels' fatbin: ``$EDGE_LS_NATIVE_FATBIN``, else where ``.ci/native.sh`` builds it
    (``$EDGE_LS_NATIVE_BUILD/lib``, default ``build/native/lib`` in the checkout)."""
    env = os.environ.get(NATIVE_FATBIN_ENV)
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[1]
    build = Path(os.environ.get("EDGE_LS_NATIVE_BUILD", repo / "build" / "native"))
    candidate = build / "lib" / NATIVE_FATBIN_NAME
    return candidate if candidate.is_file() else None


def load_native_kernels(cuda: Any, fatbin: Path | None) -> Any:
    """Load the fatbin as a pycuda module (``module.get_function(name)``), or None with a log line.

    Optional by design: the runner works without it (pre/post-processing then runs in numpy).
    """
    if fatbin is None:
        log.info("native CUDA kernels not found (set %s): pre/post-processing in numpy", NATIVE_FATBIN_ENV)
        return None
    try:
        module = cuda.module_from_file(str(fatbin))
    except Exception as exc:  # a fatbin without code for this GPU's architecture, a corrupt file...
        log.warning("could not load native CUDA kernels from %s (%s): using numpy", fatbin, exc)
        return None
    log.info("loaded native CUDA kernels from %s", fatbin)
    return module
