"""The streaming detection pipeline: read -> tile -> infer -> blend -> write, all overlapped.

Threads and queues::

    reader threads (one dataset handle each) --bounded queue--> batcher + runner + blender (this thread)
                                                                 --bounded queue--> writer thread

Memory is bounded by the queue depths, the batch and the rows the blender holds (about one tile
height of full-width rows), never by the scene. ONNX Runtime, GDAL and numpy release the GIL for
their heavy work, so reading, inference and writing proceed together on a 2-core machine.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.enums
from rasterio.windows import Window

from edge_ls import __version__
from edge_ls.artifact import ModelSpec, read_spec
from edge_ls.backends.base import Runner
from edge_ls.backends.onnxrt import OnnxRuntimeRunner, available_providers
from edge_ls.backends.select import CPU_PROVIDER, select_runner
from edge_ls.blend import FinishedBand, RowBandBlender
from edge_ls.errors import EdgeLSError, InputError
from edge_ls.io import resample
from edge_ls.io.outputs import CHUNK_ROWS, OutputOptions, OutputSet
from edge_ls.io.quicklook import CellMeans
from edge_ls.io.source import RasterSource
from edge_ls.models.registry import display_name, resolve
from edge_ls.report import RunStats, build_report
from edge_ls.tiling import Tile, TilePlan, pad_tile, plan_tiles

log = logging.getLogger(__name__)

#: GDAL block cache for one run: enough for the writer's partial blocks, small enough to bound RSS.
GDAL_CACHE_MB = 128
_POLL_S = 0.1


@dataclass(frozen=True)
class DetectOptions:
    """How to run one detection; ``None`` means "what the model's metadata recommends"."""

    tile_size: int | None = None
    overlap: float | None = None
    threshold: float | None = None
    batch_size: int = 1
    readers: int = 2
    queue_depth: int = 8
    bands: Sequence[int] | None = None
    #: Declare a nodata value the file does not carry (e.g. 0 for the zero collar of an export).
    nodata: float | None = None
    #: None: the area of 9 pixels (a 3 x 3 blob), so single-pixel speckle does not flood the GeoJSON.
    min_area_m2: float | None = None
    #: None: half a pixel in CRS units, which removes the pixel staircase without moving edges.
    simplify_tolerance: float | None = None
    #: Probability/confidence rasters: "percent" (uint8 0..100, scale 0.01) or "float32" (0..1).
    layers: str = "percent"
    intra_op_threads: int | None = None
    #: Threads calling the runner at once; None: one per core (at most 2) on the CPU, one on a GPU.
    streams: int | None = None
    #: A tier profile (edge_ls.profiles.Profile): its backend preference order picks the runner.
    profile: Any = None
    progress: bool = False
    #: Read a scene far outside the model's trained GSD range at the nearest trained GSD
    #: (``edge_ls.io.resample``); outputs stay on the scene's grid.
    resample: bool = True


@dataclass(frozen=True)
class LoadedModel:
    """A model resolved to a file, with its validated spec."""

    path: Path
    spec: ModelSpec
    #: The registry name it was loaded by (``edge-lite:int8``); None when loaded from a path.
    name: str | None = None

    @classmethod
    def load(cls, name_or_path: str | Path) -> LoadedModel:
        path = resolve(name_or_path)
        return cls(path, read_spec(path), display_name(name_or_path, path))


@dataclass
class _ReadTile:
    tile: Tile
    data: np.ndarray | None  # C x tile x tile, None when the tile is all nodata
    valid: np.ndarray | None
    started: float


class _Done:
    """End-of-stream marker from one reader thread."""


class _Stop(Exception):
    """Raised inside workers when another stage failed."""


def detect(
    input_path: str | Path,
    model: str | Path | LoadedModel,
    out_dir: str | Path,
    options: DetectOptions | None = None,
    runner_factory: Callable[[LoadedModel, DetectOptions], Runner] | None = None,
) -> dict:
    """Run the model over one raster and write every output into ``out_dir``; return the report."""
    options = options or DetectOptions()
    loaded = model if isinstance(model, LoadedModel) else LoadedModel.load(model)
    spec = loaded.spec
    if (
        options.batch_size < 1
        or options.readers < 1
        or options.queue_depth < 1
        or (options.streams is not None and options.streams < 1)
    ):
        raise InputError("batch size, readers, streams and queue depth must be at least 1")
    _pin_malloc_mmap_threshold()
    t0 = time.perf_counter()
    with (
        rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 1024 * 1024),
        RasterSource(input_path, spec, bands=options.bands, nodata=options.nodata) as source,
    ):
        tile_size = options.tile_size or spec.tile_size
        overlap = spec.overlap if options.overlap is None else options.overlap
        threshold = spec.threshold if options.threshold is None else options.threshold
        target_gsd = resample.read_gsd(source.gsd_m, spec, options.resample)
        scale = 1.0
        if target_gsd is not None:
            assert source.gsd_m is not None  # read_gsd returns None without it
            scene_tile = resample.scene_tile_size(tile_size, source.gsd_m, target_gsd)
            scale = scene_tile / tile_size
            tile_size = scene_tile
        plan = plan_tiles(source.width, source.height, tile_size, overlap)
        warnings = input_warnings(source, spec, tile_size, target_gsd)
        for warning in warnings:
            log.warning("%s", warning)
        outputs = OutputSet(
            Path(out_dir),
            width=source.width,
            height=source.height,
            crs=source.crs,
            transform=source.transform,
            georeferenced=source.georeferenced,
            pixel_area_m2=source.pixel_area_m2,
            options=_output_options(
                source, options, threshold, _describe(source, spec, threshold, loaded.name)
            ),
        )
        factory = runner_factory or _default_runner
        imagery = _ImageryCells(source, spec, outputs.quicklook_shape, scale)
        with outputs, factory(loaded, options) as runner:
            stats = _stream(source, plan, runner, spec, outputs, options, imagery, scale)
            flagged = flagged_warning(outputs.stats)
            if flagged:
                log.warning("%s", flagged)
                warnings.append(flagged)
            _release_freed_heap()
            outputs.finalize(background=imagery.render)
            stats.wall_s = time.perf_counter() - t0  # everything but writing report.json itself
            report = build_report(
                stats=stats,
                plan=plan,
                source=source,
                spec=spec,
                model_path=loaded.path,
                runner=runner,
                threshold=threshold,
            )
            report["model_metadata_name"] = spec.name  # the name its training run gave it
            if loaded.name:
                report["model"] = loaded.name  # the tier file that ran, as 'edge-ls models' lists it
            report["backend_skipped"] = list(runner.selection_notes)
            report["profile"] = getattr(options.profile, "name", None)
            report["overlap_requested"] = overlap
            report["overlap_used"] = round(plan.overlap, 4)
            report["read_gsd_m"] = target_gsd if target_gsd is not None else source.gsd_m
            report["resampled"] = target_gsd is not None
            report["warnings"] = warnings
            report["min_area_m2"] = outputs.options.min_area_m2
            report["simplify_tolerance"] = outputs.options.simplify_tolerance
            report["outputs"] = sorted(p.name for p in outputs.commit(report).values())
    return report


MIN_AREA_PIXELS = 9


class _ImageryCells:
    """The input imagery at quicklook size, averaged from the tiles as the readers read them (no second
    pass over the input), in the model's RGB bands (or its first band as grey)."""

    def __init__(
        self, source: RasterSource, spec: ModelSpec, shape: tuple[int, int], scale: float = 1.0
    ) -> None:
        names = list(spec.bands)
        rgb = {"red", "green", "blue"} <= set(names)
        self.picks = [names.index(b) for b in ("red", "green", "blue")] if rgb else [0, 0, 0]
        # Tiles read at another GSD arrive ``scale`` times smaller: the same cell grid over the
        # resampled extent (cells are proportional, so they cover the same ground).
        self.scale = scale
        h, w = resample.model_shape(source.height, source.width, scale)
        self.cells = CellMeans(h, w, *shape, channels=3)
        self._mean = np.asarray(spec.mean, np.float32)[self.picks].reshape(3, 1, 1)
        self._std = np.asarray(spec.std, np.float32)[self.picks].reshape(3, 1, 1)

    def add(self, plan: TilePlan, tile: Tile, x: np.ndarray, valid: np.ndarray) -> None:
        """Add a tile's core (the part no later tile reads) of model-ready bands ``x`` [C, h, w]."""
        rows, cols = plan.core(tile)
        if self.scale != 1.0:
            (rows, cols), (y0, x0) = resample.model_shape(rows, cols, self.scale), (tile.y0, tile.x0)
            y0, x0 = round(y0 / self.scale), round(x0 / self.scale)
            self.cells.add(y0, x0, x[self.picks, :rows, :cols], valid[:rows, :cols])
            return
        self.cells.add(tile.y0, tile.x0, x[self.picks, :rows, :cols], valid[:rows, :cols])

    def render(self, h: int, w: int) -> np.ndarray:
        """RGB uint8 [h, w, 3]: the means un-standardized back to [0, 1] (black where nothing valid)."""
        means = self.cells.means()
        if means.shape[1:] != (h, w):
            raise ValueError(f"imagery cells are {means.shape[1:]}, the quicklook wants {(h, w)}")
        unit = np.clip(np.nan_to_num(means * self._std + self._mean, nan=0.0), 0.0, 1.0)
        return (np.moveaxis(unit, 0, -1) * 255.0 + 0.5).astype(np.uint8)


#: A scene whose GSD differs from the model's by more than this factor gets a warning (no training range
#: in the metadata); with a trained range ``gsd_range_m``, a factor this/2 beyond either end of it.
GSD_WARN_FACTOR = 4.0
#: Below this input contrast (:func:`edge_ls.io.scaling.input_spread`) the scene counts as near-constant.
NEAR_CONSTANT_SPREAD = 0.01
#: Above this share of the valid area flagged, a detection map is more likely wrong than a disaster.
FLAGGED_SHARE_WARN = 0.5


def gsd_warning(scene_gsd_m: float | None, spec: ModelSpec) -> str | None:
    """One line when the scene's GSD is far outside what the model was trained on; None when fine.

    Judged on the trained range ``spec.gsd_range_m`` when the model has one, else on its nominal
    ``gsd_m``; "far" is a factor 2 beyond the range, or 4 either way of the nominal GSD. The pipeline
    asks only when the scene is read as it is: a scene read at a trained GSD (:mod:`edge_ls.io.resample`)
    gets that line instead, so with a trained range this fires only under ``--no-resample``.
    """
    if not scene_gsd_m:
        return None
    if spec.gsd_range_m is not None:
        lo_m, hi_m = spec.gsd_range_m
        lo, hi = lo_m / (GSD_WARN_FACTOR / 2), hi_m * (GSD_WARN_FACTOR / 2)
        what = f"{lo_m:g}-{hi_m:g} m"
        fix = "without --no-resample it is read at the nearest trained GSD"
    else:
        lo, hi = spec.gsd_m / GSD_WARN_FACTOR, spec.gsd_m * GSD_WARN_FACTOR
        what = f"~{spec.gsd_m:g} m"
        fix = f"resample the scene to ~{spec.gsd_m:g} m, or use a model trained at this GSD"
    if lo <= scene_gsd_m <= hi:
        return None
    return (
        f"scene GSD {scene_gsd_m:.3g} m is far from the {what} model '{spec.name}' was trained on: its "
        f"detections are unreliable here ({fix})"
    )


def input_warnings(
    source: RasterSource, spec: ModelSpec, tile_size: int, read_gsd_m: float | None = None
) -> list[str]:
    """What is wrong with the input for this model, or was done about it, before anything runs: each
    one line. ``read_gsd_m``: the trained GSD the scene is read at, None when read as it is."""
    name = source.path.name
    out = []
    if not source.georeferenced:
        out.append(f"{name} has no georeference: running in pixel space (vectors in pixels, areas in pixels)")
    if read_gsd_m is not None and source.gsd_m:
        out.append(f"{name}: {resample.describe(source.gsd_m, read_gsd_m, spec)}")
    else:
        gsd = gsd_warning(source.gsd_m, spec)
        if gsd:
            out.append(gsd)
    if source.input_spread < NEAR_CONSTANT_SPREAD:
        out.append(
            f"{name} is constant or nearly so (contrast {source.input_spread:.3g} of the model's input "
            "range): there is nothing to detect and any detection is noise"
        )
    if source.width < tile_size or source.height < tile_size:
        out.append(
            f"{name} is {source.width}x{source.height} px, smaller than one {tile_size}-px tile: padded by "
            "reflection, so the model sees mostly repeated content"
        )
    return out


def flagged_warning(stats: dict) -> str | None:
    """One line when more than half of the valid area was flagged as landslide."""
    valid = stats.get("valid_pixels") or 0
    share = stats.get("detected_pixels", 0) / valid if valid else 0.0
    if share <= FLAGGED_SHARE_WARN:
        return None
    return (
        f"{share:.0%} of the valid area is flagged as landslide: more likely imagery the model does not "
        "know (GSD, sensor, season, clouds) than a real event; check the quicklook before using the mask"
    )


def _describe(
    source: RasterSource, spec: ModelSpec, threshold: float, name: str | None = None
) -> dict[str, str]:
    """The GDAL metadata tags of every COG and the quicklook's title: what made these outputs."""
    today = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    return {
        "EDGE_LS_MODEL": name or spec.name,
        "EDGE_LS_TIER": spec.tier,
        "EDGE_LS_PRECISION": spec.precision,
        "EDGE_LS_THRESHOLD": f"{threshold:g}",
        "EDGE_LS_TEMPERATURE": f"{spec.temperature:g}",
        "EDGE_LS_VERSION": __version__,
        "EDGE_LS_INPUT": source.path.name,
        "EDGE_LS_DATE": today,
        "TIFFTAG_SOFTWARE": f"edge-ls {__version__}",
    }


def _output_options(
    source: RasterSource, options: DetectOptions, threshold: float, tags: dict[str, str] | None = None
) -> OutputOptions:
    """Fill the polygon defaults that depend on the raster's pixel size."""
    pixel_area = source.pixel_area_m2 or 1.0  # pixel units when not georeferenced
    pixel_size = abs(source.transform.a) if source.georeferenced else 1.0
    min_area, tolerance = options.min_area_m2, options.simplify_tolerance
    return OutputOptions(
        threshold=threshold,
        min_area_m2=MIN_AREA_PIXELS * pixel_area if min_area is None else min_area,
        simplify_tolerance=0.5 * pixel_size if tolerance is None else tolerance,
        layers=options.layers,
        tags=tags or {},
        title=_title(tags) if tags else "",
    )


def _title(tags: dict[str, str]) -> str:
    """Quicklook title: scene | model (tier, precision) | date."""
    model = f"{tags['EDGE_LS_MODEL']} ({tags['EDGE_LS_TIER']}, {tags['EDGE_LS_PRECISION']})"
    return f"{tags['EDGE_LS_INPUT']} | {model} | {tags['EDGE_LS_DATE']}"


def _glibc_call(name: str, *args: int) -> None:
    """Call a glibc allocator tuning function; a no-op off Linux or on a C library without it (musl)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            getattr(ctypes.CDLL("libc.so.6"), name)(*args)


def _pin_malloc_mmap_threshold(threshold: int = 1 << 20) -> None:
    """Keep glibc from retaining freed multi-MB tile arrays in per-thread arenas.

    glibc raises its mmap threshold each time a large mmapped block is freed, after which the next
    tile-sized arrays come from the arenas and their memory is kept: bench/rss_probe.py on a 10k² scene,
    peak RSS 825 MiB unpinned vs 591 MiB pinned. Setting the threshold explicitly disables that adjustment.
    """
    _glibc_call("mallopt", _M_MMAP_THRESHOLD, threshold)


_M_MMAP_THRESHOLD = -3


def _release_freed_heap() -> None:
    """Hand the heap the stream's threads freed back to the OS before finalizing.

    glibc keeps freed memory in each thread's arena, where the COG copies (on this thread) cannot reuse
    it, so without this the finalize phase's peak stacked on 100-250 MiB of dead stream memory and moved
    from run to run (bench/memory_profile.py, bench/rss_probe.py).
    """
    _glibc_call("malloc_trim", 0)


def _default_runner(model: LoadedModel, options: DetectOptions) -> Runner:
    if options.profile is not None:  # the profile's backends, best first, down to what is here
        return select_runner(
            model.path,
            options.profile.backends,
            profile=options.profile,
            streams=options.streams or default_streams([CPU_PROVIDER]),
            intra_op_threads=options.intra_op_threads,
        ).runner
    providers = available_providers()
    return OnnxRuntimeRunner(
        model.path,
        providers=providers,
        intra_op_threads=options.intra_op_threads,
        streams=options.streams or default_streams(providers),
    )


#: Most inference streams used by default: two single-threaded streams fill a 2-core ground station;
#: more streams on a big CPU would only multiply activation memory for little gain over intra-op threads.
MAX_DEFAULT_STREAMS = 2


def default_streams(providers: Sequence[str]) -> int:
    """One stream per core (at most MAX_DEFAULT_STREAMS) on the CPU; one when a GPU provider leads."""
    if providers and providers[0] != "CPUExecutionProvider":
        return 1
    return max(1, min(MAX_DEFAULT_STREAMS, os.cpu_count() or 1))


def _stream(
    source: RasterSource,
    plan,
    runner: Runner,
    spec: ModelSpec,
    outputs: OutputSet,
    options: DetectOptions,
    imagery: _ImageryCells | None = None,
    scale: float = 1.0,
) -> RunStats:
    """Drive the threads; return timing statistics. Any stage's failure stops all and re-raises.

    This thread gathers batches; ``runner.concurrency`` inference threads run them and blend the
    results (blending and handing bands to the writer happen under one lock, so bands leave in order).
    """
    stop = threading.Event()
    errors: list[BaseException] = []
    next_index = iter(range(plan.count))
    index_lock = threading.Lock()
    blend_lock = threading.Lock()
    streams = max(1, runner.concurrency)
    read_q: queue.Queue[_ReadTile | _Done] = queue.Queue(maxsize=options.queue_depth)
    infer_q: queue.Queue[list[_ReadTile] | None] = queue.Queue(maxsize=streams)
    write_q: queue.Queue[FinishedBand | None] = queue.Queue(maxsize=1)
    stats = RunStats()
    blender = RowBandBlender(plan)
    model_tile = plan.tile_size if scale == 1.0 else round(plan.tile_size / scale)
    progress = _progress_bar(plan.count, options.progress)

    def put(q: queue.Queue, item: object) -> None:
        while True:
            if stop.is_set():
                raise _Stop
            try:
                q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def get(q: queue.Queue) -> object:
        while True:
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                if stop.is_set():
                    raise _Stop from None

    def fail(exc: BaseException) -> None:
        if not isinstance(exc, _Stop):
            errors.append(exc)
        stop.set()

    def reader() -> None:
        try:
            with source.open_handle() as handle:
                while True:
                    with index_lock:
                        index = next(next_index, None)
                    if index is None:
                        break
                    tile = plan.tile(index)
                    started = time.perf_counter()
                    window = Window(tile.x0, tile.y0, tile.width, tile.height)
                    shape = None if scale == 1.0 else resample.model_shape(tile.height, tile.width, scale)
                    data, valid = source.read(handle, window, shape)
                    if imagery is not None:
                        imagery.add(plan, tile, data, valid)
                    if not valid.any():
                        put(read_q, _ReadTile(tile, None, None, started))
                    else:
                        put(read_q, _ReadTile(tile, pad_tile(data, model_tile), valid, started))
            put(read_q, _Done())
        except BaseException as exc:
            fail(exc)

    def blend(items: list[_ReadTile], probs: Sequence[np.ndarray | None]) -> None:
        with blend_lock:
            for item, prob in zip(items, probs, strict=True):
                if prob is None:
                    bands = blender.skip(item.tile)
                    stats.skipped += 1
                else:
                    valid = item.valid
                    if scale != 1.0:  # read at another GSD: back onto the scene's pixels
                        prob, valid = resample.to_scene(prob, valid, item.tile.height, item.tile.width)
                    bands = blender.add(item.tile, prob, valid)
                    stats.latencies_ms.append((time.perf_counter() - item.started) * 1000.0)
                    stats.inferred += 1
                # In the writer's own chunks: with a one-piece queue the write side holds ~2 chunks, not
                # ~3 full-width bands (what made peak memory grow with the scene's width).
                for band in bands:
                    for chunk in band.chunks(CHUNK_ROWS):
                        put(write_q, chunk)
            progress.update(len(items))

    def inference() -> None:
        try:
            while True:
                pending = get(infer_q)
                if pending is None:
                    return
                batch = np.stack([t.data for t in pending]).astype(np.float32, copy=False)
                t_infer = time.perf_counter()
                raw = runner.infer(batch)
                elapsed = time.perf_counter() - t_infer
                with blend_lock:
                    stats.infer_s += elapsed
                blend(pending, list(_to_probability(raw, spec)))
        except BaseException as exc:
            fail(exc)

    def writer() -> None:
        try:
            while True:
                band = get(write_q)
                if band is None:
                    return
                outputs.write_rows(band.row_off, band.prob)  # nodata is NaN in the band
        except BaseException as exc:
            fail(exc)

    workers = [threading.Thread(target=inference, name=f"infer-{i}", daemon=True) for i in range(streams)]
    threads = [
        *(threading.Thread(target=reader, name=f"reader-{i}", daemon=True) for i in range(options.readers)),
        *workers,
    ]
    writer_thread = threading.Thread(target=writer, name="writer", daemon=True)
    for thread in [*threads, writer_thread]:
        thread.start()
    try:
        readers_left = options.readers
        pending: list[_ReadTile] = []
        while readers_left or pending:
            if stop.is_set():
                raise _Stop
            # Gather a batch: block for the first tile, then take what is already waiting.
            while readers_left and len(pending) < options.batch_size:
                try:
                    item = read_q.get_nowait() if pending else read_q.get(timeout=_POLL_S)
                except queue.Empty:
                    if pending:
                        break
                    if stop.is_set():
                        raise _Stop from None
                    continue
                if isinstance(item, _Done):
                    readers_left -= 1
                elif item.data is None:
                    blend([item], [None])
                else:
                    pending.append(item)
            if pending:
                put(infer_q, pending)
                pending = []
        for _ in workers:
            put(infer_q, None)
        for thread in threads:
            thread.join()
        put(write_q, None)  # after every inference thread is done: bands come before the end marker
        writer_thread.join()
    except BaseException as exc:
        fail(exc)
        for thread in [*threads, writer_thread]:
            thread.join(timeout=5)
    finally:
        progress.close()
    if errors:
        raise errors[0]
    if stop.is_set():
        raise _Stop  # pragma: no cover - a stage stopped without recording why
    if not blender.complete:
        raise EdgeLSError("internal error: not every row band was written")  # never leave a silent hole
    if stats.inferred == 0:
        raise InputError(f"{source.path.name} has no valid pixels (all nodata)")
    stats.peak_bands = blender.peak_bands
    return stats


def _to_probability(raw: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """N x 1 x H x W model output -> N x H x W probabilities, per the spec's activation."""
    if raw.ndim != 4 or raw.shape[1] != 1:
        raise EdgeLSError(f"model output has shape {raw.shape}; edge-ls expects N x 1 x H x W")
    return spec.probabilities(raw[:, 0])


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, unit="tile", desc="detect", leave=False, dynamic_ncols=True)


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass
