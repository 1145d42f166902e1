"""The local multi-scene loop: one model load for every scene, failures recorded, finished scenes kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from edge_ls import runs
from edge_ls.backends.cascade import CascadeRunner
from edge_ls.backends.onnxrt import OnnxRuntimeRunner
from edge_ls.deployment import LoadedModel, deploy
from edge_ls.journal import Journal
from edge_ls.scenes import plan_scenes
from edge_ls.tiling import plan_tiles
from tests.cli.test_detect_many import crop


@pytest.fixture
def three(tmp_path: Path) -> list[Path]:
    bad = tmp_path / "in" / "b.tif"
    paths = [crop(tmp_path / "in" / "a.tif", 0, 0), bad, crop(tmp_path / "in" / "c.tif", 300, 300)]
    bad.write_bytes(b"not a raster" * 10)
    return paths


def test_three_scenes_one_model_load_a_failure_recorded_and_the_run_goes_on(
    tmp_path: Path, three: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = deploy(model="edge-nano")
    made = []
    real = runs.make_runner
    monkeypatch.setattr(runs, "make_runner", lambda d: made.append(d) or real(d))
    monkeypatch.setattr("edge_ls.pipeline.make_runner", lambda d: pytest.fail("a scene loaded its own model"))
    scenes = runs.keyed(plan_scenes(three), deployment)
    out = tmp_path / "out"
    seen = []
    results = runs.run_local(scenes, deployment, out, journal=Journal(out), on_result=seen.append)
    assert len(made) == 1 and seen == results
    assert [r.status for r in results] == ["done", "failed", "done"]
    assert results[1].exit_code == 2 and "b.tif" in results[1].error and results[1].report is None
    assert runs.exit_code(results) == 2 and runs.counts(results)["failed"] == 1
    assert json.loads((out / "a" / "report.json").read_text())["input"] == str(three[0])
    # The same scenes again: the finished ones are kept (no model load for them), the failed one retried.
    made.clear()
    again = runs.run_local(scenes, deployment, out, journal=Journal(out))
    assert [r.status for r in again] == ["skipped", "failed", "skipped"] and len(made) == 1
    assert again[0].report == results[0].report
    # Another threshold is other outputs: nothing is kept.
    other = runs.keyed(plan_scenes(three), deploy(model="edge-nano", threshold=0.7))
    assert other[0].key != scenes[0].key


def test_the_first_failing_scene_decides_the_exit_code() -> None:
    from edge_ls.scenes import Scene, SceneResult

    s = Scene(Path("x"), "x", "k")
    results = [SceneResult(s, "done", Path()), SceneResult(s, "failed", Path(), exit_code=4)]
    results.append(SceneResult(s, "failed", Path(), exit_code=2))
    assert runs.exit_code(results) == 4 and runs.exit_code(results[:1]) == 0


def test_a_shared_cascade_reports_each_scene_on_its_own(real_data: Path) -> None:
    t, r = LoadedModel.load("edge-nano"), LoadedModel.load("edge-lite")
    runner = CascadeRunner(OnnxRuntimeRunner(t.path), OnnxRuntimeRunner(r.path), triage_spec=t.spec,
                           refiner_spec=r.spec, roi_threshold=0.0, batch_size=2)  # fmt: skip
    plan = plan_tiles(2 * 128, 128, 128, 0.0)
    x = np.zeros((2, 3, 128, 128), np.float32)
    with runner:
        for _ in range(2):  # two scenes on one loaded runner
            runner.bind(plan)
            runner.infer_tiles(x, list(plan))
            runner.flush()
            assert runner.report()["cascade"]["tiles_triaged"] == 2


def test_scene_folders_hold_readable_rasters_through_the_links(tmp_path: Path, three: list[Path]) -> None:
    deployment = deploy(model="edge-nano")
    scenes = runs.keyed(plan_scenes([three[0], three[2]]), deployment)
    runs.run_local(scenes, deployment, tmp_path, journal=Journal(tmp_path))
    with rasterio.open(tmp_path / "c" / "mask.tif") as ds:
        assert ds.width == 384 and set(np.unique(ds.read(1))) <= {0, 1, 255}
