"""edge-ls bench (edge_ls.bench.run): GPU rows, bad input, outputs; the full run is a slow test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_ls.bench.run import (
    BenchConfig,
    _bare_medians,
    _gpu_rows,
    _model_row,
    _refiner_row,
    check_config,
    run_bench,
    runs_on,
    write_results,
)
from edge_ls.errors import ConfigError


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_ls", "bench", *args], capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_without_a_gpu_every_tier_reads_not_measured() -> None:
    gpu = _gpu_rows(BenchConfig(tiers=["edge-lite"]), {"edge-lite": {}, "edge-nano": {}})
    assert gpu["measured"] is False and set(gpu["rows"].values()) == {"not measured"}


def test_gpu_json_from_the_gpu_script_is_merged_and_marked(tmp_path: Path) -> None:
    # The shape bench/gpu_tiers.py writes; values are test data, not a measurement.
    data = {"device": "test-device", "rows": [{"tier": "edge-lite", "precision": "fp16", "tiles_per_s": 1.0}]}
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(data))
    gpu = _gpu_rows(BenchConfig(tiers=["edge-lite"], gpu_json=path), {})
    assert gpu["measured"] is True and gpu["device"] == "test-device" and gpu["rows"] == data["rows"]
    path.write_text("{}")
    with pytest.raises(ConfigError, match=r"is not a bench/gpu_tiers\.py result"):
        _gpu_rows(BenchConfig(tiers=["edge-lite"], gpu_json=path), {})


def test_the_gpu_script_refuses_to_write_without_a_gpu(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the script would measure")
    proc = subprocess.run([sys.executable, "bench/gpu_tiers.py", "--json", str(tmp_path / "g.json")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr and not (tmp_path / "g.json").exists()


def test_bad_input_is_one_line_each(real_data: Path) -> None:
    base = {"real_root": real_data, "peers": []}
    with pytest.raises(ConfigError, match="unknown tier 'edge-mega'"):
        check_config(BenchConfig(tiers=["edge-mega"], **base))
    with pytest.raises(ConfigError, match="unknown landslide cover 'extreme'"):
        check_config(BenchConfig(tiers=["edge-nano"], covers=["extreme"], **base))
    check_config(
        BenchConfig(tiers=["edge-nano", "edge-cascade"], **base)
    )  # not installed: a row, not an error


def test_cli_unknown_tier_and_peer_are_one_line(tmp_path: Path) -> None:
    for args, code, text in ((["--tiers", "edge-mega"], 2, "unknown tier 'edge-mega'"),
                             (["--peers", "deepness"], 2, "unknown peer 'deepness'")):  # fmt: skip
        proc = _cli(*args, "--out", str(tmp_path / "r"))
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("edge-ls: error")]
        assert proc.returncode == code and len(errors) == 1 and text in errors[0], proc.stderr
        assert "Traceback" not in proc.stderr


def test_model_rows_carry_views_and_scales_and_the_refiner_row_is_the_cascades() -> None:
    assert _model_row("model:edge-lite") == ("edge-lite", None, None)
    assert _model_row("model:edge-lite@views=8@scales=1,0.5") == ("edge-lite", 8, (1.0, 0.5))
    assert _refiner_row("edge-cascade") == "model:edge-lite@views=8"
    with pytest.raises(ConfigError, match="takes numbers"):
        _model_row("model:edge-lite@scales=half")


def test_the_cascade_rows_run_on_their_own_covers_only() -> None:
    refiner = "model:edge-lite@views=8"
    config = BenchConfig(
        tiers=["edge-lite"], covers=["medium"], cascade_covers=["low"], peer_model="model:edge-lite"
    )
    assert runs_on(config, "edge-lite", "medium", refiner) and runs_on(
        config, "model:edge-lite", "medium", refiner
    )
    assert not runs_on(config, "edge-lite", "low", refiner)
    assert runs_on(config, "edge-cascade", "low", refiner) and runs_on(config, refiner, "low", refiner)
    assert not runs_on(config, "edge-cascade", "medium", refiner) and not runs_on(
        config, refiner, "medium", refiner
    )
    listed = BenchConfig(tiers=["edge-lite", "edge-cascade"], covers=["medium"], cascade_covers=[])
    assert runs_on(listed, "edge-cascade", "medium", refiner) and not runs_on(
        listed, "edge-cascade", "low", refiner
    )


def test_bare_inference_is_summarized_by_medians_like_detect() -> None:
    runs = [
        {"tiles": 100, "wall_s": w, "tiles_per_s": 100 / w, "process_cpu_s": c, "other_processes_cores": 0.0}
        for w, c in ((8.0, 16.0), (9.0, 16.5), (8.2, 15.9))
    ]
    bare = _bare_medians(runs)
    assert (
        bare["wall_s"] == 8.2 and bare["process_cpu_s"] == 16.0 and bare["tiles_per_s"] == round(100 / 8.2, 4)
    )
    assert bare["tiles_per_s_spread"] == {"min": 100 / 9.0, "max": 100 / 8.0, "n": 3}
    assert bare["runs"] == runs and bare["tiles"] == 100


@pytest.mark.slow
def test_a_small_bench_run_writes_every_output(real_data: Path, tmp_path: Path) -> None:
    config = BenchConfig(tiers=["edge-nano", "model:edge-lite", "fusion"], covers=["low"],
                         cascade_covers=["low"], size=1024, repeats=1, peer_model="edge-nano",
                         real_root=real_data, cache_dir=tmp_path / "c", work_dir=tmp_path / "w")  # fmt: skip
    results = run_bench(config, lambda p, t: {"params": 1, "gflops": 0.1}, log=lambda m: None)
    paths = write_results(results, tmp_path / "out" / "bench")
    assert [p.suffix for p in paths] == [".json", ".md", ".csv", ".png"]
    assert results["rows"]["fusion"]["status"].startswith("not installed")
    assert {"overlap_efficiency", "cascade_speed_low", "cascade_f1_loss_low"} <= set(results["targets"])
    assert results["targets"]["geodeep_rss"]["met"] is None
    md = paths[1].read_text()
    assert "geodeep (edge-nano)" in md and "not measured" in md
