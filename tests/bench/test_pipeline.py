"""The benchmark's own arithmetic and measurements, on a small real-tile mosaic (fast)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from bench.pipeline import _ratio, cpu_ceiling, measure_read, peak_rss_mb
from bench.scenes import ensure_mosaic, load_tile_pool


def test_ratio_targets() -> None:
    assert _ratio("e2e_over_bare", 0.95)["met"] and not _ratio("e2e_over_bare", 0.85)["met"]
    assert _ratio("rss_ratio_20k_over_10k", 1.08)["met"] and _ratio("rss_ratio_20k_over_10k", 0.93)["met"]
    assert not _ratio("rss_ratio_20k_over_10k", 1.2)["met"]


def test_cpu_ceiling_is_bare_over_detect_cpu() -> None:
    ceiling = cpu_ceiling({"process_cpu_s": 25.0}, {"process_cpu_s": 20.0, "cores_busy": 1.98})
    assert ceiling["cpu_ceiling"] == 0.8 and "1.98" in ceiling["cpu_ceiling_is"]


def test_peak_rss_is_not_inherited_from_a_large_parent() -> None:
    """ru_maxrss survives fork + exec on Linux; the benchmark's VmHWM figure must not."""
    ballast = np.ones(400 * 2**20 // 8)  # ~400 MiB touched in this process
    code = "from bench.pipeline import peak_rss_mb; print(peak_rss_mb())"
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo, check=True)
    assert float(out.stdout.strip()) < 300 < peak_rss_mb()
    del ballast


def test_read_rate_covers_every_tile_window(tmp_path: Path, real_data: Path) -> None:
    scene = ensure_mosaic(1400, cache_dir=tmp_path, pool=load_tile_pool(real_data))
    result = measure_read(str(scene), "edge-nano", threads=2)
    # edge-nano's plan on 1400 px: 512-px tiles at its stride; every window read once per rate.
    assert result["tiles"] >= 9 and result["tiles_per_s"] > 0
    assert result["raster_source_read"]["tiles"] == result["tiles"]
    assert result["other_processes_cores"] >= 0
