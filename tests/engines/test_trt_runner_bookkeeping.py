"""The runner's own bookkeeping, driven through a FAKE CUDA driver and a FAKE engine.

What this checks is edge-ls code, not CUDA or TensorRT: slot rotation, the views into the pinned
buffers for batches smaller than the maximum, that a slot is not refilled before its previous
copies ran, that results come back in submission order, that peak memory is tracked and everything
is freed. The fake driver queues every async operation on its stream and runs the queue only when
the code synchronizes, so a missing synchronization shows up as wrong numbers. The fake engine
computes ``2 * mean over channels``. Nothing here says anything about real GPU behaviour or speed.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest

import edge_ls.engines.trt_runner as trt_runner
from edge_ls.errors import InputError

MIN, OPT, MAX = (1, 3, 32, 32), (2, 3, 64, 64), (4, 3, 64, 64)


class FakeCuda:
    def __init__(self) -> None:
        self.buffers: dict[int, np.ndarray] = {}
        self.streams: dict[int, FakeStream] = {}
        self.total = 1 << 30
        self.ids = itertools.count(1000)
        self.freed = 0
        self.contexts = []

    # device, context, memory
    def Device(self, index):
        return SimpleNamespace(make_context=lambda: self._context())

    def _context(self):
        ctx = SimpleNamespace(depth=1)
        ctx.push = lambda: setattr(ctx, "depth", ctx.depth + 1)
        ctx.pop = lambda: setattr(ctx, "depth", ctx.depth - 1)
        ctx.detach = lambda: setattr(ctx, "detached", True)
        self.contexts.append(ctx)
        return ctx

    def mem_get_info(self):
        used = sum(b.nbytes for b in self.buffers.values())
        return self.total - used, self.total

    def pagelocked_empty(self, shape, dtype):
        return np.full(shape, np.nan, dtype)

    def mem_alloc(self, nbytes):
        alloc = FakeAlloc(self, next(self.ids))
        self.buffers[alloc.ptr] = np.zeros(nbytes, np.uint8)
        return alloc

    def Stream(self):
        stream = FakeStream(next(self.ids))
        self.streams[stream.handle] = stream
        return stream

    def Event(self):
        return FakeEvent()

    # async copies: queued on the stream
    def memcpy_htod_async(self, dev, host, stream):
        stream.queue.append(
            lambda: self.buffers[dev.ptr][: host.nbytes].__setitem__(
                slice(None), np.frombuffer(host.tobytes(), np.uint8)
            )
        )

    def memcpy_dtoh_async(self, host, dev, stream):
        def run():
            host[...] = np.frombuffer(self.buffers[dev.ptr][: host.nbytes].tobytes(), host.dtype).reshape(
                host.shape
            )

        stream.queue.append(run)


class FakeAlloc:
    """pycuda's DeviceAllocation: ``int()`` gives the device pointer, ``free()`` releases it."""

    def __init__(self, cuda: FakeCuda, ptr: int) -> None:
        self.cuda, self.ptr = cuda, ptr

    def __int__(self) -> int:
        return self.ptr

    def free(self) -> None:
        self.cuda.freed += 1
        del self.cuda.buffers[self.ptr]


class FakeStream:
    def __init__(self, handle: int) -> None:
        self.handle = handle
        self.queue: list = []

    def synchronize(self) -> None:
        while self.queue:
            self.queue.pop(0)()


class FakeEvent:
    def record(self, stream) -> None:
        self.stream, self.mark = stream, len(stream.queue)

    def synchronize(self) -> None:
        for _ in range(self.mark):
            self.stream.queue.pop(0)()
        self.mark = 0

    def query(self) -> bool:
        return self.mark == 0


class FakeContext:
    def __init__(self, cuda: FakeCuda) -> None:
        self.cuda, self.shape, self.addr = cuda, None, {}

    def set_input_shape(self, name, shape):
        self.shape = tuple(shape)
        return all(lo <= s <= hi for s, lo, hi in zip(self.shape, MIN, MAX, strict=True))

    def get_tensor_shape(self, name):
        n, _c, h, w = self.shape
        return self.shape if name == "image" else (n, 1, h, w)

    def set_tensor_address(self, name, ptr):
        self.addr[name] = ptr

    def execute_async_v3(self, handle):
        shape, src, dst = self.shape, self.addr["image"], self.addr["logits"]

        def run():
            x = np.frombuffer(self.cuda.buffers[src][: int(np.prod(shape)) * 4].tobytes(), np.float32)
            y = 2 * x.reshape(shape).mean(axis=1, keepdims=True)
            self.cuda.buffers[dst][: y.nbytes] = np.frombuffer(y.astype(np.float32).tobytes(), np.uint8)

        self.cuda.streams[handle].queue.append(run)
        return True


def fake_tensorrt(cuda: FakeCuda) -> SimpleNamespace:
    engine = SimpleNamespace(
        num_io_tensors=2,
        get_tensor_name=lambda i: ("image", "logits")[i],
        get_tensor_mode=lambda n: "in" if n == "image" else "out",
        get_tensor_profile_shape=lambda n, p: (MIN, OPT, MAX),
        get_tensor_dtype=lambda n: np.float32,
        create_execution_context=lambda: FakeContext(cuda),
    )
    logger = lambda level: None  # noqa: E731
    logger.WARNING = 2
    return SimpleNamespace(
        Logger=logger,
        Runtime=lambda logger: SimpleNamespace(deserialize_cuda_engine=lambda blob: engine),
        TensorIOMode=SimpleNamespace(INPUT="in"),
        nptype=lambda dtype: dtype,
    )


@pytest.fixture
def runner(monkeypatch):
    cuda = FakeCuda()
    trt = fake_tensorrt(cuda)
    monkeypatch.setattr(trt_runner, "import_tensorrt", lambda purpose: trt)
    monkeypatch.setattr(trt_runner, "import_cuda_driver", lambda purpose: cuda)
    monkeypatch.setattr(trt_runner, "find_native_fatbin", lambda: None)
    return trt_runner.TensorRTRunner(b"fake engine", pipeline_depth=2), cuda


def expected(batch: np.ndarray) -> np.ndarray:
    return 2 * batch.mean(axis=1, keepdims=True)


def test_pipelined_results_come_back_in_order_and_correct(runner):
    r, cuda = runner
    rng = np.random.default_rng(0)
    shapes = [(4, 3, 64, 64), (1, 3, 32, 32), (3, 3, 48, 64), (2, 3, 64, 64), (4, 3, 64, 64)]
    batches = [rng.random(s, dtype=np.float32) for s in shapes]
    with r:
        outs = list(r.infer_pipelined(batches))
        single = r.infer(batches[2])
        assert r.peak_vram_mb() > 0  # the pinned/device buffers were counted
    for out, batch in zip(outs, batches, strict=True):
        assert out.shape == (batch.shape[0], 1, *batch.shape[2:]) and out.dtype == np.float32
        np.testing.assert_allclose(out, expected(batch), rtol=1e-6)
    np.testing.assert_allclose(single, expected(batches[2]), rtol=1e-6)
    assert not cuda.buffers and cuda.freed == 4  # 2 slots x (in, out), all freed
    assert cuda.contexts[0].depth == 0 and cuda.contexts[0].detached  # pushes and pops balance


def test_async_submissions_beyond_the_depth_wait_for_the_slot(runner):
    r, _ = runner
    rng = np.random.default_rng(1)
    batches = [rng.random((2, 3, 64, 64), dtype=np.float32) for _ in range(5)]
    with r:
        pending = [r.infer_async(b) for b in batches]  # 5 in a 2-slot pipeline: slots are reused
        results = [p.result() for p in pending]
    for out, batch in zip(results, batches, strict=True):
        np.testing.assert_allclose(out, expected(batch), rtol=1e-6)


def test_shapes_outside_the_engine_profile_are_refused(runner):
    r, _ = runner
    with r:
        with pytest.raises(
            InputError, match=r"outside the engine's range \(1, 3, 32, 32\)\.\.\(4, 3, 64, 64\)"
        ):
            r.infer(np.zeros((8, 3, 64, 64), np.float32))
        with pytest.raises(InputError, match="outside the engine's range"):
            r.infer(np.zeros((1, 4, 64, 64), np.float32))
