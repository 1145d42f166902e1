"""Issue #2's benchmark: does the streaming pipeline hide I/O, blending and writing, and bound memory?

Run ``python bench/pipeline.py --json OUT.json [--quick]`` (see bench/README.md). Figures, all on
mosaics of the project's real tiles (``bench/scenes.py``):

* compute-bound (a MobileNetV3-small U-Net, ``bench/light_unet.py``), on the same tiles:
  ``e2e_over_bare`` = ``detect`` tiles/s / ``runner.infer`` tiles/s on pre-read tiles (target >= 0.9);
  ``e2e_over_naive`` = ``detect`` tiles/s / a synchronous read -> infer -> write loop (target >= 1.1).
* I/O-bound (``edge-nano``): ``e2e_over_read`` = ``detect`` tiles/s / raw windowed-read tiles/s of the
  same windows with 2 threads, one dataset handle each (target >= 0.5).
* memory: ``rss_ratio_20k_over_10k`` = peak RSS of ``edge-nano`` detect on the 20k scene / on the 10k
  scene (target: within 10%).

Every measurement runs in a fresh subprocess (``ru_maxrss`` only grows within a process, and a
measurement must not inherit another's caches). Each detect run's report carries its per-stage timers
(wall and thread-CPU seconds of read, infer, blend, write, finalize: ``edge_ls.stream``), so a missed
target comes with where the time went without patching the pipeline.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import importlib
import importlib.metadata
import json
import os
import platform
import queue
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make ``bench.*`` importable
    sys.path.insert(0, str(REPO))

from bench.light_unet import export_light_unet, model_path  # noqa: E402
from bench.scenes import (  # noqa: E402
    DEFAULT_SEED,
    GSD_M,
    default_cache_dir,
    default_real_root,
    ensure_mosaic,
    load_tile_pool,
)
from edge_ls.report import peak_rss_mb  # noqa: E402  (one VmHWM reader for the runtime and the bench)

#: Same GDAL block cache as the pipeline, so the read-rate baseline is read under the same conditions.
READ_GDAL_CACHE_MB = 128
TARGETS = {
    "e2e_over_bare": (">=", 0.9),
    "e2e_over_naive": (">=", 1.1),
    "e2e_over_read": (">=", 0.5),
    "rss_ratio_20k_over_10k": ("within", 0.10),
}
FULL_SIZES = {"scene": 10_000, "large": 20_000}
QUICK_SIZES = {"scene": 2048, "large": 4096, "compute": 2048}
#: Stages timed inside a detect run: (label, "module:Qualified.name"). Missing names are skipped.
# --------------------------------------------------------------------------------------------------
# Measurements: each runs in its own process (see run_isolated) and returns a JSON-able dict.
# --------------------------------------------------------------------------------------------------


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine have used since boot (/proc/stat), 0 if unknown."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class Clock:
    """Wall time, this process's CPU time and OTHER processes' CPU time over a section.

    The development machine is shared: other work running at the same time takes cores from the
    measurement. Each figure says how much, so a noisy one can be recognized (and best-of-N picks
    the least disturbed run).
    """

    def __enter__(self) -> Clock:
        self._w0, self._c0, self._m0 = time.perf_counter(), cpu_seconds(), machine_busy_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._w0
        self.cpu = cpu_seconds() - self._c0
        self.others = max(0.0, machine_busy_seconds() - self._m0 - self.cpu)

    def figures(self, tiles: int) -> dict[str, Any]:
        return {
            "tiles": tiles,
            "seconds": round(self.wall, 3),
            "tiles_per_s": round(tiles / self.wall, 3),
            "process_cpu_s": round(self.cpu, 3),
            "cores_busy": round(self.cpu / self.wall, 2),
            "other_processes_cores": round(self.others / self.wall, 2),
        }


def measure_detect(
    scene: str, model: str, out_dir: str, batch_size: int, readers: int, queue_depth: int
) -> dict[str, Any]:
    """End-to-end ``detect`` (all outputs), with the report's per-stage timers and process CPU time."""
    from edge_ls.pipeline import DetectOptions, detect

    options = DetectOptions(batch_size=batch_size, readers=readers, queue_depth=queue_depth)
    rss_before = peak_rss_mb()
    with Clock() as clock:
        report = detect(scene, model, Path(out_dir), options=options)
    keep = (
        "model",
        "tier",
        "precision",
        "backend",
        "tiles",
        "tiles_inferred",
        "tiles_skipped_nodata",
        "tile_size",
        "overlap",
        "stride",
        "wall_s",
        "inference_s",
        "tiles_per_s",
        "tile_latency_ms_p50",
        "tile_latency_ms_p95",
        "peak_rss_mb",
        "peak_vram_mb",
        "gsd_m",
        "area_km2",
        "tiles_per_km2",
        "latency_min_per_km2",
        "latency_min_per_km2_at_0p1m",
        "outputs",
    )
    sizes = {p.name: p.stat().st_size for p in Path(out_dir).iterdir() if p.is_file()}
    stats_path = Path(out_dir) / "report.json"
    output_stats = json.loads(stats_path.read_text()).get("output_stats") if stats_path.is_file() else None
    return {
        **clock.figures(report["tiles"]),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_before_detect_mb": round(rss_before, 1),
        "report": {k: report.get(k) for k in keep},
        "output_stats": output_stats,
        "output_bytes": sizes,
        "stages": report["stages"],
    }


def _plan_for(scene: str, model: str):
    """The model as ``detect`` loads it, and the raster source it would read."""
    from edge_ls.io.source import RasterSource
    from edge_ls.pipeline import LoadedModel

    loaded = LoadedModel.load(model)
    source = RasterSource(scene, loaded.spec)
    return loaded, source


def measure_bare(
    scene: str, model: str, batch_size: int, max_tiles: int = 0, intra_op_threads: int = 0, streams: int = 1
) -> dict[str, Any]:
    """``runner.infer`` alone on the same tiles, pre-read and preprocessed into memory (warm-up excluded).

    ``streams`` threads call the runner at once, as ``detect``'s inference streams do, so the pipeline
    is compared with the best the bare model does in either arrangement.
    """
    import numpy as np
    from rasterio.windows import Window

    from edge_ls.backends.onnxrt import OnnxRuntimeRunner
    from edge_ls.tiling import pad_tile, plan_tiles

    loaded, source = _plan_for(scene, model)
    with source:
        plan = plan_tiles(source.width, source.height, loaded.spec.tile_size, loaded.spec.overlap)
        count = min(plan.count, max_tiles) if max_tiles else plan.count
        batches: list[np.ndarray] = []
        t0 = time.perf_counter()
        with source.open_handle() as handle:
            for start in range(0, count, batch_size):
                tiles = []
                for index in range(start, min(count, start + batch_size)):
                    tile = plan.tile(index)
                    data, _ = source.read(handle, Window(tile.x0, tile.y0, tile.width, tile.height))
                    tiles.append(pad_tile(data, plan.tile_size))
                batches.append(np.stack(tiles).astype(np.float32, copy=False))
        read_s = time.perf_counter() - t0
    runner = OnnxRuntimeRunner(loaded.path, intra_op_threads=intra_op_threads or None, streams=streams)
    with runner:
        todo: queue.SimpleQueue = queue.SimpleQueue()
        for batch in batches:
            todo.put(batch)
        for _ in range(streams):
            todo.put(None)

        def worker() -> None:
            while (batch := todo.get()) is not None:
                runner.infer(batch)

        for _ in range(streams):  # warm-up: session allocation per stream, not steady-state cost
            runner.infer(batches[0])
        pool = [threading.Thread(target=worker) for _ in range(streams)]
        with Clock() as clock:
            for thread in pool:
                thread.start()
            for thread in pool:
                thread.join()
    return {
        **clock.figures(count),
        "batch_size": batch_size,
        "streams": streams,
        "intra_op_threads": runner.intra_op_threads,
        "preread_seconds_single_thread": round(read_s, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def measure_naive(scene: str, model: str, out_path: str) -> dict[str, Any]:
    """One thread, tile by tile: windowed read -> infer -> sigmoid -> write the window into a GeoTIFF.

    No blending (later tiles overwrite the overlap), one output: the probability encoded as the
    pipeline's default layer (uint8 percent, ZSTD level 1 + predictor, 512-px tiles; no overviews), so
    the comparison credits the pipeline's overlap and not its cheaper encoding. What a straightforward
    script does.
    """
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    from edge_ls.backends.onnxrt import OnnxRuntimeRunner
    from edge_ls.io.outputs import PERCENT_NODATA
    from edge_ls.pixel_math import sigmoid
    from edge_ls.tiling import pad_tile, plan_tiles

    loaded, source = _plan_for(scene, model)
    spec = loaded.spec
    with Clock() as clock, source, OnnxRuntimeRunner(loaded.path) as runner:
        plan = plan_tiles(source.width, source.height, spec.tile_size, spec.overlap)
        profile = {
            "driver": "GTiff",
            "width": source.width,
            "height": source.height,
            "count": 1,
            "dtype": "uint8",
            "nodata": PERCENT_NODATA,
            "crs": source.crs,
            "transform": source.transform,
            "tiled": True,
            "blockxsize": 512,
            "blockysize": 512,
            "compress": "zstd",
            "zstd_level": 1,
            "predictor": 2,
            "bigtiff": "IF_SAFER",
        }
        with source.open_handle() as handle, rasterio.open(out_path, "w", **profile) as dst:
            for tile in plan:
                window = Window(tile.x0, tile.y0, tile.width, tile.height)
                data, valid = source.read(handle, window)
                batch = pad_tile(data, plan.tile_size)[None].astype(np.float32, copy=False)
                logits = runner.infer(batch)[0, 0, : tile.height, : tile.width]
                percent = (sigmoid(logits, spec.temperature) * 100 + 0.5).astype(np.uint8)
                dst.write(np.where(valid, percent, np.uint8(PERCENT_NODATA)), 1, window=window)
    return {
        **clock.figures(plan.count),
        "output_bytes": Path(out_path).stat().st_size,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def measure_read(scene: str, model: str, threads: int) -> dict[str, Any]:
    """Raw windowed-read rate of ``detect``'s tile windows: ``threads`` threads, one handle each.

    Also the rate of the pipeline's own reader call (``RasterSource.read``: band selection, scaling
    to float, nodata), so the gap between raw reading and ``detect`` can be split.
    """
    import rasterio
    from rasterio.windows import Window

    from edge_ls.tiling import plan_tiles

    loaded, source = _plan_for(scene, model)
    with source:
        plan = plan_tiles(source.width, source.height, loaded.spec.tile_size, loaded.spec.overlap)

        def raw_reader(indexes: queue.SimpleQueue) -> None:
            with rasterio.open(scene) as ds:
                while (index := indexes.get()) is not None:
                    tile = plan.tile(index)
                    ds.read(window=Window(tile.x0, tile.y0, tile.width, tile.height))

        def source_reader(indexes: queue.SimpleQueue) -> None:
            with source.open_handle() as handle:
                while (index := indexes.get()) is not None:
                    tile = plan.tile(index)
                    source.read(handle, Window(tile.x0, tile.y0, tile.width, tile.height))

        def timed(worker: Callable[[queue.SimpleQueue], None]) -> dict[str, Any]:
            indexes: queue.SimpleQueue = queue.SimpleQueue()
            for index in range(plan.count):
                indexes.put(index)
            for _ in range(threads):
                indexes.put(None)
            pool = [threading.Thread(target=worker, args=(indexes,)) for _ in range(threads)]
            with Clock() as clock, rasterio.Env(GDAL_CACHEMAX=READ_GDAL_CACHE_MB * 1024 * 1024):
                for t in pool:
                    t.start()
                for t in pool:
                    t.join()
            return {**clock.figures(plan.count), "threads": threads}

        raw = timed(raw_reader)
        scaled = timed(source_reader)
    return {**raw, "raster_source_read": scaled, "peak_rss_mb": round(peak_rss_mb(), 1)}


def measure_idle(model: str) -> dict[str, Any]:
    """Peak RSS of a process that imported the runtime and loaded the model: the fixed part of any RSS."""
    from edge_ls.backends.onnxrt import OnnxRuntimeRunner
    from edge_ls.pipeline import LoadedModel

    with OnnxRuntimeRunner(LoadedModel.load(model).path):
        pass
    return {"peak_rss_mb": round(peak_rss_mb(), 1)}


def measure_export(cache_dir: str, real_root: str) -> dict[str, Any]:
    """Export the light U-Net once (torch stays out of the orchestrating process)."""
    path = model_path(Path(cache_dir))
    if not path.is_file():
        import numpy as np

        pool = load_tile_pool(Path(real_root))
        sample = np.stack(pool.tiles[:: max(1, len(pool) // 8)])
        export_light_unet(path, sample, gsd_m=GSD_M)
    from edge_ls.artifact import read_spec

    spec = read_spec(path)
    return {"path": str(path), "spec": json.loads(spec.to_json())}


MEASUREMENTS: dict[str, Callable[..., dict[str, Any]]] = {
    "export": measure_export,
    "detect": measure_detect,
    "bare": measure_bare,
    "naive": measure_naive,
    "read": measure_read,
    "idle": measure_idle,
}


def run_isolated(kind: str, **kwargs: Any) -> dict[str, Any]:
    """Run one measurement in a fresh Python process and return its result."""
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as tmp:
        result_path = Path(tmp.name)
    try:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--measure",
            kind,
            "--measure-args",
            json.dumps(kwargs),
            "--measure-result",
            str(result_path),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(
                f"measurement '{kind}' failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
            )
        return json.loads(result_path.read_text())
    finally:
        result_path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu_model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = ",".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if f in have)
                break
    except OSError:
        pass
    import rasterio

    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model,
        "cpu_flags": flags,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "onnxruntime": version("onnxruntime"),
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
        "numpy": version("numpy"),
        "torch_for_export": version("torch"),
        "platform": platform.platform(),
    }


def _scene_info(path: Path) -> dict[str, Any]:
    import rasterio

    with rasterio.open(path) as ds:
        return {
            "path": str(path),
            "width": ds.width,
            "height": ds.height,
            "bands": ds.count,
            "dtype": ds.dtypes[0],
            "crs": ds.crs.to_string(),
            "gsd_m": ds.transform.a,
            "block": list(ds.block_shapes[0]),
            "compression": ds.compression.name.lower() if ds.compression else None,
            "file_mib": round(path.stat().st_size / 2**20, 1),
        }


def _ratio(name: str, value: float) -> dict[str, Any]:
    op, target = TARGETS[name]
    met = abs(value - 1.0) <= target if op == "within" else value >= target
    shown = f"within {target:.0%} of 1" if op == "within" else f">= {target}"
    return {"ratio": round(value, 3), "target": shown, "met": bool(met)}


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest of repeated runs (the least disturbed by other work), with every run's rate."""
    best = dict(max(runs, key=lambda r: r["tiles_per_s"]))
    best["repeats_tiles_per_s"] = [r["tiles_per_s"] for r in runs]
    best["repeats_other_processes_cores"] = [r.get("other_processes_cores") for r in runs]
    return best


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    cache_dir: Path = args.cache_dir or default_cache_dir()
    real_root: Path = args.real_root or default_real_root()
    sizes = dict(QUICK_SIZES) if args.quick else dict(FULL_SIZES)
    if args.scene_size:
        sizes["scene"] = args.scene_size
    if args.large_size:
        sizes["large"] = args.large_size
    compute_size = args.compute_size or sizes.get("compute") or sizes["scene"]
    repeats = args.repeats or (1 if args.quick else 2)
    log = functools.partial(print, file=sys.stderr, flush=True)

    log(f"scenes and model under {cache_dir}")
    scene = ensure_mosaic(sizes["scene"], cache_dir, real_root, args.seed)
    large = ensure_mosaic(sizes["large"], cache_dir, real_root, args.seed)
    compute_scene = (
        scene
        if compute_size == sizes["scene"]
        else ensure_mosaic(compute_size, cache_dir, real_root, args.seed)
    )
    if args.compute_model:  # another model for the compute-bound regime (a path or a named model)
        from edge_ls.models.registry import resolve

        unet = str(resolve(args.compute_model))
        exported = {"path": unet, "what": f"--compute-model {args.compute_model}"}
    else:
        exported = run_isolated("export", cache_dir=str(cache_dir), real_root=str(real_root))
        exported["what"] = "MobileNetV3-small U-Net, random weights (bench/light_unet.py)"
        unet = exported["path"]
    runs_dir = cache_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    common = {"batch_size": args.batch_size, "readers": args.readers, "queue_depth": args.queue_depth}

    def in_scratch(label: str, kind: str, **kwargs: Any) -> dict[str, Any]:
        """Run a measurement that writes outputs into a scratch folder, removed afterwards (disk)."""
        out = Path(tempfile.mkdtemp(prefix=f"{label}.", dir=runs_dir))
        try:
            if kind == "naive":
                kwargs["out_path"] = str(out / "probability.tif")
            elif kind == "detect":
                kwargs["out_dir"] = str(out)
            return run_isolated(kind, **kwargs)
        finally:
            shutil.rmtree(out, ignore_errors=True)

    progress_log = args.json.with_suffix(".runs.jsonl") if args.json else None

    def steady(
        runs: list[dict[str, Any]], label: str, kind: str, retries: int | None = None, **kwargs: Any
    ) -> None:
        """Measure; retry (up to --retries) while other processes took more than --max-other-cores."""
        retries = args.retries if retries is None else retries
        for attempt in range(retries + 1):
            run = in_scratch(label, kind, **kwargs)
            runs.append(run)
            if progress_log:  # every run kept as it completes: a long run stopped midway is not lost
                with progress_log.open("a") as f:
                    f.write(json.dumps({"label": label, "kind": kind, "args": kwargs, "result": run}) + "\n")
            other = run.get("other_processes_cores", 0.0)
            log(f"    {run['tiles_per_s']:.2f} tiles/s (other processes: {other:.2f} cores)")
            if other <= args.max_other_cores:
                return
            if attempt < retries:
                log("    disturbed by other processes: measuring again")

    e2e_runs, bare_runs, naive_runs, nano_runs, read_runs = [], [], [], [], []
    for round_no in range(1, repeats + 1):
        log(f"round {round_no}/{repeats}: compute-bound (light U-Net, {compute_scene.name})")
        log("  detect ...")
        steady(e2e_runs, "compute", "detect", scene=str(compute_scene), model=unet, **common)
        log("  bare inference (one stream, intra-op threads on every core) ...")
        steady(bare_runs, "bare", "bare", scene=str(compute_scene), model=unet, batch_size=args.batch_size)
        log("  bare inference (two single-threaded streams, as detect runs by default) ...")
        steady(
            bare_runs,
            "bare-2s",
            "bare",
            scene=str(compute_scene),
            model=unet,
            batch_size=args.batch_size,
            intra_op_threads=1,
            streams=2,
        )
        log("  naive loop ...")
        steady(naive_runs, "naive", "naive", scene=str(compute_scene), model=unet)
        log(f"round {round_no}/{repeats}: I/O-bound (edge-nano, {scene.name})")
        log("  raw reads ...")
        steady(read_runs, "read", "read", scene=str(scene), model="edge-nano", threads=args.readers)
        log("  detect ...")
        steady(nano_runs, "io", "detect", scene=str(scene), model="edge-nano", **common)
        log(f"    peak RSS {nano_runs[-1]['peak_rss_mb']:.0f} MiB")
    log("diagnostic: bare inference with 1 intra-op thread (what one core gives)")
    bare_1t_runs: list[dict[str, Any]] = []
    steady(
        bare_1t_runs,
        "bare-1t",
        "bare",
        scene=str(compute_scene),
        model=unet,
        batch_size=args.batch_size,
        max_tiles=min(100, e2e_runs[0]["tiles"]),
        intra_op_threads=1,
    )
    bare_1t = _best(bare_1t_runs)
    log(f"memory: edge-nano detect on {large.name}")
    large_runs: list[dict[str, Any]] = []
    # Memory only: other processes slow this run down but do not change its peak RSS, so no retry.
    steady(large_runs, "io-large", "detect", retries=0, scene=str(large), model="edge-nano", **common)
    large_run = max(large_runs, key=lambda r: r["peak_rss_mb"])
    log(f"    peak RSS {large_run['peak_rss_mb']:.0f} MiB")
    idle = run_isolated("idle", model="edge-nano")

    e2e_c, bare, naive, e2e_io, read = (
        _best(r) for r in (e2e_runs, bare_runs, naive_runs, nano_runs, read_runs)
    )
    rss_scene = max(r["peak_rss_mb"] for r in nano_runs)
    compute_note = (
        f"the {compute_size}x{compute_size} top-left window of the {sizes['scene']}x{sizes['scene']} scene "
        "(pixel-identical: bench/scenes.py cells depend only on seed, row, col)"
        if compute_scene != scene
        else f"the full {sizes['scene']}x{sizes['scene']} scene"
    )
    return {
        "benchmark": "edge-ls streaming pipeline (issue #2)",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python bench/pipeline.py", *args.argv]),
        "quick": bool(args.quick),
        "machine": machine_info(),
        "method": (
            f"every measurement in a fresh process; {repeats} interleaved round(s), each measurement "
            f"retried up to {args.retries}x while other processes used > {args.max_other_cores} cores; "
            "the fastest run of each kind kept (the machine is shared: see other_processes_cores); "
            "peak RSS is VmHWM, the max over runs"
        ),
        "settings": {
            **common,
            "detect_streams": "default (2 single-threaded ONNX Runtime streams on this 2-core CPU)",
            "repeats": repeats,
            "seed": args.seed,
        },
        "scenes": {
            "scene": _scene_info(scene),
            "large": _scene_info(large),
            "compute": {**_scene_info(compute_scene), "is": compute_note},
        },
        "models": {
            "compute": exported,
            "io": "edge-nano (bundled spectral-index model)",
        },
        "e2e_over_bare": {
            **_ratio("e2e_over_bare", e2e_c["tiles_per_s"] / bare["tiles_per_s"]),
            "tiles": e2e_c["tiles"],
            "tiles_are": compute_note,
            "e2e": e2e_c,
            "bare": bare,
            "bare_is": "the faster of one stream x all cores and two streams x one thread (every run kept "
            "in bare_runs)",
            "bare_runs": bare_runs,
            "bare_one_intra_op_thread": bare_1t,
            **cpu_ceiling(e2e_c, bare),
        },
        "e2e_over_naive": {
            **_ratio("e2e_over_naive", e2e_c["tiles_per_s"] / naive["tiles_per_s"]),
            "tiles": e2e_c["tiles"],
            "tiles_are": compute_note,
            "e2e_tiles_per_s": e2e_c["tiles_per_s"],
            "naive": naive,
            "outputs": {
                "e2e": e2e_c["report"].get("outputs"),
                "naive": ["probability.tif (uint8 percent tiled GeoTIFF, no blending, no overviews)"],
            },
        },
        "e2e_over_read": {
            **_ratio("e2e_over_read", e2e_io["tiles_per_s"] / read["tiles_per_s"]),
            "tiles": e2e_io["tiles"],
            "e2e": e2e_io,
            "read": read,
        },
        "rss_ratio_20k_over_10k": {
            **_ratio("rss_ratio_20k_over_10k", large_run["peak_rss_mb"] / rss_scene),
            "scene_size": sizes["scene"],
            "large_size": sizes["large"],
            "peak_rss_mb_scene": rss_scene,
            "peak_rss_mb_large": large_run["peak_rss_mb"],
            "peak_rss_mb_idle_runtime": idle["peak_rss_mb"],
            "large_run": large_run,
        },
    }


def cpu_ceiling(e2e: dict[str, Any], bare: dict[str, Any]) -> dict[str, Any]:
    """The best ``e2e_over_bare`` that perfect overlap could give on this machine: bare CPU seconds over
    detect's CPU seconds. When bare inference already keeps every core busy, detect's extra CPU work
    (reading, blending, outputs) cannot be hidden, only made smaller; the gap between this ceiling and
    the ratio is what overlap (serial tails, idle cores) still loses."""
    return {
        "cpu_ceiling": round(bare["process_cpu_s"] / e2e["process_cpu_s"], 3),
        "cpu_ceiling_is": "bare process CPU-s / detect process CPU-s (valid when bare keeps all cores busy: "
        f"bare cores_busy {bare['cores_busy']:.2f})",
    }


def format_table(result: dict[str, Any]) -> str:
    """The four ratios with the figures behind them, then where the detect runs spent their time."""
    rows = [("figure", "value", "target", "met", "behind it")]

    def add(name: str, detail: str) -> None:
        r = result[name]
        rows.append((name, f"{r['ratio']:.3f}", r["target"], "yes" if r["met"] else "NO", detail))

    b, n = result["e2e_over_bare"], result["e2e_over_naive"]
    io, m = result["e2e_over_read"], result["rss_ratio_20k_over_10k"]
    add(
        "e2e_over_bare",
        f"{b['tiles']} tiles: detect {b['e2e']['tiles_per_s']:.2f}/s ({b['e2e']['seconds']:.1f} s) "
        f"vs infer {b['bare']['tiles_per_s']:.2f}/s ({b['bare']['seconds']:.1f} s); CPU ceiling "
        f"{b['cpu_ceiling']:.3f} ({b['e2e']['process_cpu_s']:.1f} vs {b['bare']['process_cpu_s']:.1f} CPU-s)",
    )
    add(
        "e2e_over_naive",
        f"{n['tiles']} tiles: detect {n['e2e_tiles_per_s']:.2f}/s vs naive loop "
        f"{n['naive']['tiles_per_s']:.2f}/s ({n['naive']['seconds']:.1f} s)",
    )
    add(
        "e2e_over_read",
        f"{io['tiles']} tiles: edge-nano detect {io['e2e']['tiles_per_s']:.1f}/s "
        f"({io['e2e']['seconds']:.1f} s) vs raw read {io['read']['tiles_per_s']:.1f}/s "
        f"({io['read']['seconds']:.1f} s)",
    )
    add(
        "rss_ratio_20k_over_10k",
        f"peak RSS {m['peak_rss_mb_large']:.0f} MiB ({m['large_size']}²) vs {m['peak_rss_mb_scene']:.0f} MiB "
        f"({m['scene_size']}²); runtime alone {m['peak_rss_mb_idle_runtime']:.0f} MiB",
    )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    machine = result["machine"]
    lines.append(
        f"machine: {machine['cores']} cores, {machine['cpu_model']}, onnxruntime {machine['onnxruntime']}; "
        f"{result['method']}"
    )
    for label, run in (("compute-bound detect", b["e2e"]), ("I/O-bound detect", io["e2e"])):
        shown = ", ".join(f"{k} {v['wall_s']:.1f}" for k, v in run["stages"].items())
        lines.append(
            f"{label}: {run['seconds']:.1f} s wall, {run['cores_busy']:.2f} cores busy, other processes "
            f"{run['other_processes_cores']:.2f} cores; stage wall s (summed over threads): {shown}"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the streaming pipeline (issue #2): e2e vs bare inference, naive loop, raw "
        "reads, and peak RSS across scene sizes.",
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--quick", action="store_true", help="small scenes (2048², 4096²): a smoke run")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="scenes, model and scratch outputs (default: $EDGE_LS_BENCH_CACHE or ~/.cache/edge-ls/bench)",
    )
    parser.add_argument(
        "--real-root", type=Path, default=None, help="real tiles (default ../shared/data/real)"
    )
    parser.add_argument("--scene-size", type=int, default=0, help="main scene size in px (default 10000)")
    parser.add_argument("--large-size", type=int, default=0, help="memory-check scene size (default 20000)")
    parser.add_argument(
        "--compute-size",
        type=int,
        default=0,
        help="run the compute-bound regime on this top-left window of the scene (default: the whole scene)",
    )
    parser.add_argument("--repeats", type=int, default=0, help="rounds, best kept (default 2; --quick 1)")
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        help="measure again (at most this many times) when other processes took cores meanwhile",
    )
    parser.add_argument(
        "--max-other-cores",
        type=float,
        default=0.25,
        help="a run during which other processes used more cores than this counts as disturbed",
    )
    parser.add_argument(
        "--compute-model",
        help="model of the compute-bound regime: a path or named model (default: the light U-Net)",
    )
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--queue-depth", type=int, default=8)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--measure", choices=sorted(MEASUREMENTS), help=argparse.SUPPRESS)
    parser.add_argument("--measure-args", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--measure-result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.measure:
        result = MEASUREMENTS[args.measure](**json.loads(args.measure_args))
        args.measure_result.write_text(json.dumps(result))
        return 0
    result = run_benchmark(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(format_table(result))
    return 0  # a missed target is a finding reported in the table and the JSON, not a failed run


if __name__ == "__main__":
    sys.exit(main())
