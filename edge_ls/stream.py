"""The stream of one run: read -> infer -> blend -> write, overlapped on threads, one named stage per
function (:func:`read_stage`, :func:`infer_stage`, :func:`blend_stage`, :func:`write_stage`; this
thread runs :func:`batch_stage`). Each stage times itself into :attr:`RunStats.stages`, so the report
carries per-stage timers and no benchmark patches internals.

Threads and queues::

    reader threads (one dataset handle each) --bounded queue--> batcher (this thread)
        --bounded queue--> inference threads (runner.concurrency; each blends its results)
        --one-chunk queue--> writer thread

Memory is bounded by the queue depths, the batch, what the runner holds back (a cascade: about one
row of tiles) and the rows the blender holds (about one tile height of full-width rows), never by the
scene. ONNX Runtime, GDAL and numpy release the GIL for their heavy work.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.windows import Window

from edge_ls.artifact import ModelSpec
from edge_ls.backends.base import Runner, TileOutput
from edge_ls.blend import FinishedBand, RowBandBlender
from edge_ls.errors import EdgeLSError, InputError, ModelError
from edge_ls.io import resample
from edge_ls.io.outputs import CHUNK_ROWS, OutputSet
from edge_ls.io.source import RasterSource
from edge_ls.report import RunStats
from edge_ls.tiling import Tile, TilePlan, pad_tile

_POLL_S = 0.1


@dataclass
class ReadTile:
    """A tile as a reader hands it on: model-ready bands, validity, when its read started."""

    tile: Tile
    data: np.ndarray | None  # C x tile x tile, None when the tile is all nodata
    valid: np.ndarray | None
    started: float


class _Done:
    """End-of-stream marker from one reader thread."""


class Stop(Exception):
    """Raised inside workers when another stage failed."""


@dataclass
class StreamSetup:
    """What the stream needs besides the source, runner and outputs."""

    plan: TilePlan
    spec: ModelSpec
    batch_size: int
    readers: int
    queue_depth: int
    #: Tiles read at another GSD arrive this many times smaller (``edge_ls.io.resample``).
    scale: float = 1.0
    #: Ground size (m) of the pixels the runner is sent (the read GSD); None: unknown.
    gsd_m: float | None = None
    #: Extra per-pixel layers the runner returns beside the probability (``uncertainty``).
    extra_layers: tuple[str, ...] = ()
    #: Called with each tile's model-ready bands as it is read (the quicklook's imagery).
    on_read: Callable[[TilePlan, Tile, np.ndarray, np.ndarray], None] | None = None
    progress: bool = False
    #: Rows ``[0, start_row)`` are already written (a resumed scene, ``OutputSet.resumed_rows``):
    #: the stream starts at the first tile row reaching ``start_row`` (:func:`resume_tile_row`).
    start_row: int = 0
    #: Every this many seconds at most, the writer records its durable rows at a band's end
    #: (``OutputSet.checkpoint``); None: never.
    checkpoint_s: float | None = None


def resume_tile_row(plan: TilePlan, row: int) -> int:
    """The first tile row whose tiles reach row ``row``: no earlier one touches a row >= ``row``."""
    first = 0
    while first < plan.rows and first * plan.stride + plan.tile_size <= row:
        first += 1
    return first


class _Channel:
    """Queues with stop-aware put/get: a failed stage stops every other one within ``_POLL_S``."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.errors: list[BaseException] = []

    def put(self, q: queue.Queue, item: object) -> None:
        while True:
            if self.stop.is_set():
                raise Stop
            try:
                q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def get(self, q: queue.Queue) -> Any:
        while True:
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                if self.stop.is_set():
                    raise Stop from None

    def fail(self, exc: BaseException) -> None:
        if not isinstance(exc, Stop):
            self.errors.append(exc)
        self.stop.set()


class _Stream:
    """The shared state of one run's stages."""

    def __init__(self, source: RasterSource, runner: Runner, outputs: OutputSet, setup: StreamSetup) -> None:
        self.source, self.runner, self.outputs, self.setup = source, runner, outputs, setup
        self.plan = setup.plan
        self.ch = _Channel()
        self.stats = RunStats()
        self.streams = max(1, runner.concurrency)
        self.read_q: queue.Queue[ReadTile | _Done] = queue.Queue(maxsize=setup.queue_depth)
        self.infer_q: queue.Queue[list[ReadTile] | None] = queue.Queue(maxsize=self.streams)
        self.write_q: queue.Queue[tuple[FinishedBand, dict[str, FinishedBand]] | None] = queue.Queue(1)
        self.blender = RowBandBlender(self.plan)
        self.extra_blenders = {name: RowBandBlender(self.plan) for name in setup.extra_layers}
        first_tile = 0
        if setup.start_row:
            tile_row = resume_tile_row(self.plan, setup.start_row)
            for blender in [self.blender, *self.extra_blenders.values()]:
                blender.resume_at(setup.start_row, tile_row)
            first_tile = tile_row * self.plan.cols
        self.blend_lock = threading.Lock()
        self.next_index = iter(range(first_tile, self.plan.count))
        self.tiles_left = self.plan.count - first_tile
        self.index_lock = threading.Lock()
        #: Tiles handed to the runner and not yet returned (a runner may hold tiles back).
        self.in_runner: dict[int, ReadTile] = {}
        scale = setup.scale
        self.model_tile = self.plan.tile_size if scale == 1.0 else round(self.plan.tile_size / scale)
        self.progress = _progress_bar(self.tiles_left, setup.progress)


def read_stage(s: _Stream) -> None:
    """Reader thread: claim tile indexes in raster order, read and pad each, queue it."""
    scale = s.setup.scale
    with s.source.open_handle() as handle:
        while True:
            with s.index_lock:
                index = next(s.next_index, None)
            if index is None:
                break
            tile = s.plan.tile(index)
            started = time.perf_counter()
            with s.stats.stage("read"):
                window = Window(tile.x0, tile.y0, tile.width, tile.height)
                shape = None if scale == 1.0 else resample.model_shape(tile.height, tile.width, scale)
                data, valid = s.source.read(handle, window, shape)
                if s.setup.on_read is not None:
                    s.setup.on_read(s.plan, tile, data, valid)
                if valid.any():
                    item = ReadTile(tile, pad_tile(data, s.model_tile), valid, started)
                else:
                    item = ReadTile(tile, None, None, started)
            s.ch.put(s.read_q, item)
    s.ch.put(s.read_q, _Done())


def replay_stage(s: _Stream) -> None:
    """Replay thread (a resumed scene only): read the tiles before its first tile row again, for
    ``setup.on_read`` alone (the quicklook's imagery; no inference), so what it accumulates covers the
    whole scene; beside the stream, as the readers' own calls are."""
    setup = s.setup
    if setup.on_read is None:
        return
    plan, scale = setup.plan, setup.scale
    with s.source.open_handle() as handle:
        for index in range(resume_tile_row(plan, setup.start_row) * plan.cols):
            if s.ch.stop.is_set():
                raise Stop
            tile = plan.tile(index)
            window = Window(tile.x0, tile.y0, tile.width, tile.height)
            shape = None if scale == 1.0 else resample.model_shape(tile.height, tile.width, scale)
            with s.stats.stage("read"):
                data, valid = s.source.read(handle, window, shape)
                setup.on_read(plan, tile, data, valid)


def batch_stage(s: _Stream) -> None:
    """This thread: gather batches (block for the first tile, then take what is already waiting)."""
    readers_left = s.setup.readers
    pending: list[ReadTile] = []
    while readers_left or pending:
        if s.ch.stop.is_set():
            raise Stop
        while readers_left and len(pending) < s.setup.batch_size:
            try:
                item = s.read_q.get_nowait() if pending else s.read_q.get(timeout=_POLL_S)
            except queue.Empty:
                if pending:
                    break
                if s.ch.stop.is_set():
                    raise Stop from None
                continue
            if isinstance(item, _Done):
                readers_left -= 1
            elif item.data is None:
                blend_stage(s, [item], s.runner.skip_tiles([item.tile]))
            else:
                pending.append(item)
        if pending:
            s.ch.put(s.infer_q, pending)
            pending = []


def infer_stage(s: _Stream) -> None:
    """Inference thread: run each batch through the runner, blend whatever it hands back."""
    while True:
        pending = s.ch.get(s.infer_q)
        if pending is None:
            return
        batch = np.stack([t.data for t in pending]).astype(np.float32, copy=False)
        with s.blend_lock:
            s.in_runner.update((t.tile.index, t) for t in pending)
        t0 = time.perf_counter()
        with s.stats.stage("infer"):
            try:
                done = s.runner.infer_tiles(batch, [t.tile for t in pending])
            except ModelError as exc:  # the runner names the model; the stream adds where it failed
                raise ModelError(f"{exc} (batch starting at {_where(pending[0].tile)})") from exc
        elapsed = time.perf_counter() - t0
        with s.blend_lock:
            s.stats.infer_s += elapsed
        blend_stage(s, [], done)


def blend_stage(s: _Stream, skipped: Sequence[ReadTile], done: Sequence[TileOutput]) -> None:
    """Blend finished tiles (and skip all-nodata ones), hand finished row bands to the writer in order."""
    with s.blend_lock, s.stats.stage("blend"):
        for item in skipped:
            _emit(s, s.blender.skip(item.tile), {n: b.skip(item.tile) for n, b in s.extra_blenders.items()})
            s.stats.skipped += 1
        for tile, out, extra in done:
            item = s.in_runner.pop(tile.index)
            _check_output(s, tile, out)
            prob = out if s.runner.returns_probability else _to_probability(out[None], s.setup.spec)[0]
            valid = item.valid
            assert valid is not None
            layers = {name: (extra or {})[name] for name in s.extra_blenders}
            if s.setup.scale != 1.0:  # read at another GSD: back onto the scene's pixels
                h, w = tile.height, tile.width
                layers = {n: resample.to_scene(v, valid, h, w)[0] for n, v in layers.items()}
                prob, valid = resample.to_scene(prob, valid, h, w)
            bands = s.blender.add(tile, prob, valid)
            extra_bands = {n: s.extra_blenders[n].add(tile, v, valid) for n, v in layers.items()}
            s.stats.latencies_ms.append((time.perf_counter() - item.started) * 1000.0)
            s.stats.inferred += 1
            _emit(s, bands, extra_bands)
        s.progress.update(len(skipped) + len(done))


def _emit(s: _Stream, bands: list[FinishedBand], extra: dict[str, list[FinishedBand]]) -> None:
    """Queue finished bands in the writer's own chunks (the write side then holds ~2 chunks, not ~3
    full-width bands: what made peak memory grow with the scene's width)."""
    for i, band in enumerate(bands):
        extra_chunks = {n: list(b[i].chunks(CHUNK_ROWS)) for n, b in extra.items()}
        for j, chunk in enumerate(band.chunks(CHUNK_ROWS)):
            s.ch.put(s.write_q, (chunk, {n: c[j] for n, c in extra_chunks.items()}))


def write_stage(s: _Stream) -> None:
    """Writer thread: every finished band to every output (nodata is NaN in the band)."""
    every = s.setup.checkpoint_s
    last = time.monotonic()
    while True:
        item = s.ch.get(s.write_q)
        if item is None:
            return
        band, extra = item
        with s.stats.stage("write"):
            s.outputs.write_rows(band.row_off, band.prob, **{n: b.prob for n, b in extra.items()})
            end = band.row_off + band.prob.shape[0]
            band_rows = s.blender.band_rows
            if every is not None and end % band_rows == 0 and time.monotonic() - last >= every:
                s.outputs.checkpoint(end, band_rows)
                last = time.monotonic()


def run_stream(source: RasterSource, runner: Runner, outputs: OutputSet, setup: StreamSetup) -> RunStats:
    """Drive the stages; return the run's statistics. Any stage's failure stops all and re-raises."""
    s = _Stream(source, runner, outputs, setup)
    runner.bind(s.plan, setup.gsd_m)

    def guarded(stage: Callable[[_Stream], None]) -> Callable[[], None]:
        def body() -> None:
            try:
                stage(s)
            except BaseException as exc:
                s.ch.fail(exc)

        return body

    workers = [
        threading.Thread(target=guarded(infer_stage), name=f"infer-{i}", daemon=True)
        for i in range(s.streams)
    ]
    readers = [
        threading.Thread(target=guarded(read_stage), name=f"reader-{i}", daemon=True)
        for i in range(setup.readers)
    ]
    writer = threading.Thread(target=guarded(write_stage), name="writer", daemon=True)
    threads = [*readers, *workers]
    if setup.start_row:
        threads.append(threading.Thread(target=guarded(replay_stage), name="replay", daemon=True))
    for thread in [*threads, writer]:
        thread.start()
    try:
        batch_stage(s)
        for _ in workers:
            s.ch.put(s.infer_q, None)
        for thread in threads:
            thread.join()
        if s.ch.stop.is_set():
            raise Stop
        blend_stage(s, [], runner.flush())  # what the runner held back to the end
        s.ch.put(s.write_q, None)  # after every inference thread is done: bands come before the end
        writer.join()
    except BaseException as exc:
        s.ch.fail(exc)
        for thread in [*threads, writer]:
            thread.join(timeout=5)
    finally:
        s.progress.close()
    if s.ch.errors:
        raise s.ch.errors[0]
    if s.ch.stop.is_set():
        raise Stop  # pragma: no cover - a stage stopped without recording why
    if not s.blender.complete or s.in_runner:
        raise EdgeLSError("internal error: not every row band was written")  # never leave a silent hole
    if s.stats.inferred == 0 and (not setup.start_row or outputs.stats["valid_pixels"] == 0):
        raise InputError(f"{source.path.name} has no valid pixels (all nodata)")
    s.stats.peak_bands = s.blender.peak_bands
    return s.stats


def _to_probability(raw: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """N x 1 x H x W model output -> N x H x W probabilities, per the spec's activation."""
    if raw.ndim != 4 or raw.shape[1] != 1:
        raise ModelError(f"model '{spec.name}' output has shape {raw.shape}; edge-ls expects N x 1 x H x W")
    return spec.probabilities(raw[:, 0])


def _where(tile: Tile) -> str:
    """Where a tile sits, in words an error line can carry."""
    return f"tile {tile.index} at col {tile.x0}, row {tile.y0}"


def _check_output(s: _Stream, tile: Tile, out: np.ndarray) -> None:
    """Refuse output that would be blended into a wrong map: a shape other than the input tile's
    (cropped or broadcast silently otherwise) or NaN/inf (NaN became probability 0: "no landslides").
    Cheap next to the model: one pass over one tile's output."""
    side = s.model_tile
    want = (side, side) if s.runner.returns_probability else (1, side, side)
    name = s.setup.spec.name
    if tuple(out.shape) != want:
        layout = "H x W" if s.runner.returns_probability else "1 x H x W"
        raise ModelError(
            f"model '{name}' output has shape {tuple(out.shape)} for {_where(tile)}; edge-ls expects "
            f"{layout} = {want} for a {side}-px input tile (N x 1 x H x W per batch)"
        )
    if not np.isfinite(out).all():
        bad = "NaN" if np.isnan(out).any() else "inf"
        raise ModelError(
            f"model '{name}' output {bad} for {_where(tile)}: the model is broken for this input "
            "(nothing was written)"
        )


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, unit="tile", desc="detect", leave=False, dynamic_ncols=True)


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass
