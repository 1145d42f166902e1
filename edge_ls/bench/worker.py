"""One measurement in a fresh process (``python -m edge_ls.bench.worker JOB_JSON``), so each peak RSS
is that run's own. Prints one JSON line. Kinds: ``detect`` (a deployment end to end, scored against
the truth), ``bare`` (the runner alone on tiles already in memory: the CPU ceiling's denominator),
``geodeep`` (the peer's own ``run()`` on the wrapped model)."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_ls.metrics import PixelMetrics
from edge_ls.report import peak_rss_mb


def _overrides(job: dict[str, Any]) -> dict[str, Any]:
    """The job's option overrides as DetectOptions takes them (JSON has lists, options tuples)."""
    out = dict(job.get("overrides", {}))
    if "scales" in out:
        out["scales"] = tuple(float(s) for s in out["scales"])
    return out


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def machine_busy_s() -> float:
    """CPU seconds every process on the machine has used (``/proc/stat``), to report contention."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def score_mask(pred: Any, truth_path: Path) -> dict[str, float]:
    """F1 / IoU (percent) of a 0/1 mask (a raster path or an array) against the truth, block by block."""
    import rasterio

    metrics = PixelMetrics(threshold=0.5)
    with rasterio.open(truth_path) as truth:
        src = rasterio.open(pred) if isinstance(pred, (str, Path)) else None
        try:
            for _, window in truth.block_windows(1):
                t = truth.read(1, window=window)
                if src is not None:
                    p = src.read(1, window=window)
                else:
                    r, c = window.toslices()
                    p = pred[r, c]
                valid = p != 255
                metrics.update(np.where(valid, p, 0).astype(np.float32), t, valid)
        finally:
            if src is not None:
                src.close()
    out = metrics.compute()
    return {"f1": round(100 * out["f1"], 2), "iou": round(100 * out["iou"], 2)}


def run_detect(job: dict[str, Any]) -> dict[str, Any]:
    from edge_ls.deployment import deploy
    from edge_ls.pipeline import detect

    d = deploy(job.get("profile"), model=job.get("model"), **_overrides(job))
    c0, m0, w0 = _cpu_s(), machine_busy_s(), time.perf_counter()
    report = detect(job["scene"], d, job["out"])
    wall, cpu = time.perf_counter() - w0, _cpu_s() - c0
    others = max(0.0, machine_busy_s() - m0 - cpu)
    keys = (
        "tiles",
        "tiles_per_s",
        "peak_rss_mb",
        "peak_vram_mb",
        "tile_size",
        "overlap",
        "precision",
        "backend",
        "gsd_m",
        "latency_min_per_km2",
        "latency_min_per_km2_at_0p1m",
        "stages",
        "runner",
        "model",
        "outputs",
    )
    out = {k: report[k] for k in keys}
    out.update(
        batch=d.options.batch_size,
        wall_s=round(wall, 3),
        process_cpu_s=round(cpu, 3),
        other_processes_cores=round(others / wall, 2),
        **score_mask(Path(job["out"]) / "mask.tif", Path(job["truth"])),
    )
    return out


def run_bare(job: dict[str, Any]) -> dict[str, Any]:
    """The runner alone on the scene's tiles, read and preprocessed beforehand, same streams and batch."""
    from rasterio.windows import Window

    from edge_ls.backends.select import make_runner
    from edge_ls.deployment import deploy
    from edge_ls.io.source import RasterSource
    from edge_ls.tiling import pad_tile, plan_tiles

    d = deploy(job.get("profile"), model=job.get("model"), **_overrides(job))
    spec, o = d.model.spec, d.options
    with RasterSource(job["scene"], spec) as source, source.open_handle() as handle:
        plan = plan_tiles(
            source.width,
            source.height,
            o.tile_size or spec.tile_size,
            spec.overlap if o.overlap is None else o.overlap,
        )
        tiles = [
            pad_tile(source.read(handle, Window(t.x0, t.y0, t.width, t.height))[0], plan.tile_size)
            for t in plan
        ]
    size = o.batch_size
    batches = [np.stack(tiles[i : i + size]).astype(np.float32) for i in range(0, len(tiles), size)]
    runner = make_runner(d)
    with runner:
        runner.infer(batches[0][:1])  # warm-up, not timed
        todo = iter(batches)
        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    batch = next(todo, None)
                if batch is None:
                    return
                runner.infer(batch)

        c0, m0, w0 = _cpu_s(), machine_busy_s(), time.perf_counter()
        threads = [threading.Thread(target=work) for _ in range(max(1, runner.concurrency))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall, cpu = time.perf_counter() - w0, _cpu_s() - c0
    others = max(0.0, machine_busy_s() - m0 - cpu)
    return {
        "tiles": len(tiles),
        "wall_s": round(wall, 3),
        "tiles_per_s": round(len(tiles) / wall, 3),
        "process_cpu_s": round(cpu, 3),
        "other_processes_cores": round(others / wall, 2),
    }


def run_geodeep(job: dict[str, Any]) -> dict[str, Any]:
    from edge_ls.bench.peers import run_geodeep as run

    c0, m0 = _cpu_s(), machine_busy_s()
    result = run(Path(job["scene"]), Path(job["wrapped"]), Path(job["out"]))
    cpu = _cpu_s() - c0
    others = max(0.0, machine_busy_s() - m0 - cpu)
    mask = result.pop("mask")
    wall = result["wall_s"]
    return {
        "tiles": result["tiles"],
        "wall_s": round(wall, 3),
        "tiles_per_s": round(result["tiles"] / wall, 4),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_vram_mb": None,
        "process_cpu_s": round(cpu, 3),
        "other_processes_cores": round(others / wall, 2),
        "version": result["version"],
        **score_mask(mask, Path(job["truth"])),
    }


KINDS = {"detect": run_detect, "bare": run_bare, "geodeep": run_geodeep}


def main(argv: list[str] | None = None) -> int:
    job = json.loads((argv or sys.argv[1:])[0])
    print(json.dumps(KINDS[job["kind"]](job)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
