"""The run report: throughput, latency, memory and per-km² cost, as a dict, a table and report.json.

Definitions (the same on every backend):
- ``tiles_per_s``: tiles planned / end-to-end wall clock (reading, tiling, inference, blending,
  writing, COG conversion and vectorization all included), skipped all-nodata tiles included.
- ``tile_latency_ms_*``: per inferred tile, from the start of its read to the end of its blending.
- ``tiles_per_km2 = (1000 / (gsd_m * stride))**2`` with ``stride = tile * (1 - overlap)``;
  ``latency_min_per_km2 = tiles_per_km2 / tiles_per_s / 60``. The ``_at_0p1m`` variant applies the
  same throughput at the seed paper's reference GSD of 0.10 m, to compare with its figures.
"""

from __future__ import annotations

import contextlib
import platform
import resource
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from edge_ls import __version__
from edge_ls.artifact import ModelSpec
from edge_ls.backends.base import Runner
from edge_ls.tiling import TilePlan

REFERENCE_GSD_M = 0.10


@dataclass
class StageTimer:
    """Wall and thread-CPU seconds one named stage took, summed over the threads that ran it."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    calls: int = 0

    def as_dict(self) -> dict[str, float | int]:
        return {"wall_s": round(self.wall_s, 3), "cpu_s": round(self.cpu_s, 3), "calls": self.calls}


@dataclass
class RunStats:
    """Counters the stream fills while it runs, and the per-stage timers every run carries (so a
    benchmark reads them from the report instead of patching the stream's functions)."""

    inferred: int = 0
    skipped: int = 0
    infer_s: float = 0.0
    wall_s: float = 0.0
    peak_bands: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    stages: dict[str, StageTimer] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the body as stage ``name`` (wall and this thread's CPU); thread-safe."""
        w0, c0 = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            wall, cpu = time.perf_counter() - w0, time.thread_time() - c0
            with self._lock:
                timer = self.stages.setdefault(name, StageTimer())
                timer.wall_s += wall
                timer.cpu_s += cpu
                timer.calls += 1


def significant(value: float | None, digits: int = 4) -> float | None:
    """Round to significant digits, so 0.0646 tiles/km² at 10 m GSD does not print as 0.06."""
    if value is None or not np.isfinite(value) or value == 0:
        return value
    return float(f"{value:.{digits}g}")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Linux: ``VmHWM`` of /proc/self/status, because ``ru_maxrss`` survives fork + exec and would report
    the peak of a large parent process (a benchmark harness) instead of ours.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def tiles_per_km2(gsd_m: float, tile_size: int, overlap: float) -> float:
    stride_m = gsd_m * tile_size * (1.0 - overlap)
    return (1000.0 / stride_m) ** 2


@dataclass(frozen=True)
class Report(Mapping[str, Any]):
    """The run report, built once (:func:`build_report`) after the outputs are final; ``report.json``
    is :meth:`as_dict`. Read-only mapping access (``report["tiles_per_s"]``) gives the same keys."""

    input: str
    model: str
    model_path: str
    model_metadata_name: str
    tier: str
    precision: str
    backend: str
    device: str
    profile: str | None
    tiles: int
    tiles_inferred: int
    tiles_skipped_nodata: int
    tile_size: int
    overlap: float
    overlap_requested: float
    overlap_used: float
    stride: int
    threshold: float
    wall_s: float
    inference_s: float
    tiles_per_s: float | None
    tile_latency_ms_p50: float
    tile_latency_ms_p95: float
    peak_rss_mb: float
    peak_vram_mb: float | None
    georeferenced: bool
    crs: str | None
    width: int
    height: int
    gsd_m: float | None
    gsd_method: str | None
    area_km2: float | None
    tiles_per_km2: float | None
    latency_min_per_km2: float | None
    latency_min_per_km2_at_0p1m: float | None
    tiles_per_km2_at_0p1m: float | None
    bands: list[str]
    band_indexes: list[int]
    scaling: str
    nodata: str | None
    read_gsd_m: float | None
    resampled: bool
    warnings: list[str]
    backend_skipped: list[str]
    min_area_m2: float
    simplify_tolerance: float
    #: Per named stage of the stream (read, infer, blend, write, finalize): wall and CPU seconds.
    stages: dict[str, dict[str, float | int]]
    #: What the runner adds: a cascade's triage/refine split, the uncertainty layer's transforms.
    runner: dict[str, Any]
    outputs: list[str]
    edge_ls_version: str = __version__
    host: dict[str, str] = field(
        default_factory=lambda: {"machine": platform.machine(), "python": platform.python_version()}
    )

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __getitem__(self, key: str) -> Any:
        if key not in _REPORT_KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_REPORT_KEYS)

    def __len__(self) -> int:
        return len(_REPORT_KEYS)


_REPORT_KEYS = tuple(f.name for f in fields(Report))


def build_report(
    *,
    stats: RunStats,
    plan: TilePlan,
    source: Any,
    spec: ModelSpec,
    model_path: Path,
    model_name: str | None,
    runner: Runner,
    threshold: float,
    profile: str | None,
    overlap_requested: float,
    read_gsd_m: float | None,
    warnings: list[str],
    min_area_m2: float,
    simplify_tolerance: float,
    outputs: list[str],
) -> Report:
    """The report of a finished run (see the module docstring for the definitions)."""
    tiles = plan.count
    tps = tiles / stats.wall_s if stats.wall_s > 0 else float("nan")
    lat = np.asarray(stats.latencies_ms) if stats.latencies_ms else np.asarray([np.nan])
    gsd = source.gsd_m
    area_km2 = source.width * source.height * source.pixel_area_m2 / 1e6 if source.pixel_area_m2 else None
    per_km2 = tiles_per_km2(gsd, plan.tile_size, plan.overlap) if gsd else None
    per_km2_ref = tiles_per_km2(REFERENCE_GSD_M, plan.tile_size, plan.overlap)
    return Report(
        input=str(source.path),
        model=model_name or spec.name,
        model_path=str(model_path),
        model_metadata_name=spec.name,
        tier=spec.tier,
        precision=spec.precision,
        backend=runner.backend,
        device=runner.device,
        profile=profile,
        tiles=tiles,
        tiles_inferred=stats.inferred,
        tiles_skipped_nodata=stats.skipped,
        tile_size=plan.tile_size,
        overlap=round(plan.overlap, 4),
        overlap_requested=overlap_requested,
        overlap_used=round(plan.overlap, 4),
        stride=plan.stride,
        threshold=threshold,
        wall_s=round(stats.wall_s, 3),
        inference_s=round(stats.infer_s, 3),
        tiles_per_s=significant(tps),
        tile_latency_ms_p50=round(float(np.percentile(lat, 50)), 2),
        tile_latency_ms_p95=round(float(np.percentile(lat, 95)), 2),
        peak_rss_mb=round(peak_rss_mb(), 1),
        peak_vram_mb=runner.peak_vram_mb(),
        georeferenced=source.georeferenced,
        crs=source.crs.to_string() if source.crs else None,
        width=source.width,
        height=source.height,
        gsd_m=significant(gsd),
        gsd_method=getattr(source, "gsd_description", None),
        area_km2=significant(area_km2),
        tiles_per_km2=significant(per_km2),
        latency_min_per_km2=significant(per_km2 / tps / 60.0) if per_km2 else None,
        latency_min_per_km2_at_0p1m=significant(per_km2_ref / tps / 60.0),
        tiles_per_km2_at_0p1m=significant(per_km2_ref),
        bands=list(spec.bands),
        band_indexes=list(source.band_indexes),
        scaling=source.scaling.method,
        nodata=source.nodata_description,
        read_gsd_m=read_gsd_m if read_gsd_m is not None else source.gsd_m,
        resampled=read_gsd_m is not None,
        warnings=list(warnings),
        backend_skipped=list(runner.selection_notes),
        min_area_m2=min_area_m2,
        simplify_tolerance=simplify_tolerance,
        stages={name: timer.as_dict() for name, timer in stats.stages.items()},
        runner=runner.report(),
        outputs=sorted(outputs),
    )


#: Rows of the printed table: (label, key, unit).
TABLE_ROWS = (
    ("model", "model", ""),
    ("tier", "tier", ""),
    ("precision", "precision", ""),
    ("backend", "backend", ""),
    ("tiles", "tiles", ""),
    ("tiles/s (end to end)", "tiles_per_s", ""),
    ("tile latency p50", "tile_latency_ms_p50", "ms"),
    ("tile latency p95", "tile_latency_ms_p95", "ms"),
    ("peak RSS", "peak_rss_mb", "MiB"),
    ("peak VRAM", "peak_vram_mb", "MiB"),
    ("GSD", "gsd_m", "m"),
    ("area", "area_km2", "km²"),
    ("tiles per km²", "tiles_per_km2", ""),
    ("latency per km²", "latency_min_per_km2", "min"),
    ("latency per km² at 0.10 m GSD", "latency_min_per_km2_at_0p1m", "min"),
)


def format_table(report: Mapping[str, Any]) -> str:
    """A two-column text table of the report's headline figures."""
    lines = []
    width = max(len(label) for label, _, _ in TABLE_ROWS)
    for label, key, unit in TABLE_ROWS:
        value = report.get(key)
        shown = (
            "n/a (no GPU)"
            if key == "peak_vram_mb" and value is None
            else ("n/a" if value is None else f"{value}{' ' + unit if unit else ''}")
        )
        lines.append(f"  {label:<{width}}  {shown}")
    return "\n".join(lines)
