"""The memory and stage probes run end to end on the bundled sample scene and report every part."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCENE = REPO / "examples" / "chattogram_s2.tif"


def _run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_rss_probe_splits_the_peak_and_times_every_stage(tmp_path: Path) -> None:
    out = _run("rss_probe.py", str(SCENE), str(tmp_path / "out"), "--stages")
    assert re.search(r"while streaming \d+ MiB, while finalizing \d+ MiB", out)
    for stage in ("read", "infer", "blend", "write", "finalize"):  # the report's own stage timers
        line = rf"^  {re.escape(stage)} +wall +[\d.]+ s +thread CPU +[\d.]+ s +calls [1-9]"
        assert re.search(line, out, re.M)
    assert (tmp_path / "out" / "report.json").exists()


def test_memory_profile_names_each_component(tmp_path: Path) -> None:
    out = _run("memory_profile.py", str(SCENE), str(tmp_path / "out"), "--tracemalloc")
    peak = re.search(r"at the sampled RSS peak \(MiB\): (.*)", out)
    assert peak is not None
    parts = dict(p.rsplit(" ", 1) for p in peak.group(1).split(", "))
    assert set(parts) == {
        "VmRSS",
        "RssAnon",
        "RssFile",
        "heap_in_use",
        "heap_free_kept",
        "gdal_cache",
        "blender_rows",
    }
    assert float(parts["VmRSS"]) > float(parts["heap_in_use"]) > 0
    assert re.search(r"^ +[\d.]+ MiB in +\d+ blocks +\S+\.py:\d+", out, re.M)  # allocation sites


def test_tail_parts_times_the_copy_both_ways_and_the_sample_both_ways() -> None:
    out = _run("tail_parts.py", str(SCENE), "--repeats", "1")
    for layer in ("probability", "mask"):
        assert re.search(
            rf"^{layer} \d+x\d+: COG copy, GDAL builds the overviews [\d.]+ s; streamed levels: reduction "
            r"[\d.]+ s \(writer thread\), copy [\d.]+ s \(1 thread\) / [\d.]+ s \(2 threads\)$",
            out,
            re.M,
        )
    assert re.search(r"^RasterSource open: sample in two parts [\d.]+ s, in one read [\d.]+ s$", out, re.M)
