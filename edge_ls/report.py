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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_ls import __version__
from edge_ls.artifact import ModelSpec
from edge_ls.backends.base import Runner
from edge_ls.tiling import TilePlan

REFERENCE_GSD_M = 0.10


@dataclass
class RunStats:
    """Counters the pipeline fills while it runs."""

    inferred: int = 0
    skipped: int = 0
    infer_s: float = 0.0
    wall_s: float = 0.0
    peak_bands: int = 0
    latencies_ms: list[float] = field(default_factory=list)


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


def build_report(
    *,
    stats: RunStats,
    plan: TilePlan,
    source: Any,
    spec: ModelSpec,
    model_path: Path,
    runner: Runner,
    threshold: float,
) -> dict[str, Any]:
    """Assemble the report dict written to report.json and printed as a table."""
    tiles = plan.count
    tps = tiles / stats.wall_s if stats.wall_s > 0 else float("nan")
    lat = np.asarray(stats.latencies_ms) if stats.latencies_ms else np.asarray([np.nan])
    gsd = source.gsd_m
    area_km2 = source.width * source.height * source.pixel_area_m2 / 1e6 if source.pixel_area_m2 else None
    per_km2 = tiles_per_km2(gsd, plan.tile_size, plan.overlap) if gsd else None
    per_km2_ref = tiles_per_km2(REFERENCE_GSD_M, plan.tile_size, plan.overlap)
    return {
        "input": str(source.path),
        "model": spec.name,
        "model_path": str(model_path),
        "tier": spec.tier,
        "precision": spec.precision,
        "backend": runner.backend,
        "device": runner.device,
        "tiles": tiles,
        "tiles_inferred": stats.inferred,
        "tiles_skipped_nodata": stats.skipped,
        "tile_size": plan.tile_size,
        "overlap": round(plan.overlap, 4),
        "stride": plan.stride,
        "threshold": threshold,
        "wall_s": round(stats.wall_s, 3),
        "inference_s": round(stats.infer_s, 3),
        "tiles_per_s": significant(tps),
        "tile_latency_ms_p50": round(float(np.percentile(lat, 50)), 2),
        "tile_latency_ms_p95": round(float(np.percentile(lat, 95)), 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_vram_mb": runner.peak_vram_mb(),
        "georeferenced": source.georeferenced,
        "crs": source.crs.to_string() if source.crs else None,
        "width": source.width,
        "height": source.height,
        "gsd_m": significant(gsd),
        "gsd_method": getattr(source, "gsd_description", None),
        "area_km2": significant(area_km2),
        "tiles_per_km2": significant(per_km2),
        "latency_min_per_km2": significant(per_km2 / tps / 60.0) if per_km2 else None,
        "latency_min_per_km2_at_0p1m": significant(per_km2_ref / tps / 60.0),
        "tiles_per_km2_at_0p1m": significant(per_km2_ref),
        "bands": list(spec.bands),
        "band_indexes": list(source.band_indexes),
        "scaling": source.scaling.method,
        "nodata": source.nodata_description,
        "edge_ls_version": __version__,
        "host": {"machine": platform.machine(), "python": platform.python_version()},
    }


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


def format_table(report: dict[str, Any]) -> str:
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
