"""``edge-ls detect`` over many scenes (issue 13): names that never collide, one JSON document, resume
after SIGKILL, clean stops on signals, inputs and folders inside --out never overwritten."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rasterio
from rasterio.windows import Window

from tests.cli.test_detect_cli import SAMPLE, assert_one_line_error, run_cli

#: Written by a run but not byte-identical between two runs of the same scene (timings, creation time).
VOLATILE = {"report.json", "item.json"}


def crop(path: Path, x: int, y: int, w: int = 384, h: int = 320) -> Path:
    """A small georeferenced piece of the sample scene (band names kept, so the model finds its bands)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(SAMPLE) as src:
        window = Window(x, y, w, h)
        profile = src.profile | {"width": w, "height": h, "transform": src.window_transform(window)}
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(src.read(window=window))
            dst.descriptions = src.descriptions
    return path


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every output a reader sees in a scene folder, timing-bearing files aside."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.name not in VOLATILE
    }


def detect(*args: str) -> subprocess.CompletedProcess:
    return run_cli("detect", *args, "--model", "edge-nano", "--quiet")


def test_same_stems_in_two_folders_and_case_only_differences_keep_every_output(tmp_path: Path) -> None:
    a = crop(tmp_path / "a" / "scene.tif", 0, 0)
    b = crop(tmp_path / "b" / "scene.tif", 600, 900)
    c = crop(tmp_path / "b" / "Scene.TIF", 300, 300)  # a case-only difference
    out = tmp_path / "out"
    proc = detect(str(a), str(b), str(c), "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout)  # one JSON document for the whole run (defect 11)
    assert run["counts"] == {"scenes": 3, "done": 3, "skipped": 0, "failed": 0} and run["exit_code"] == 0
    names = [s["name"] for s in run["scenes"]]
    assert len({n.casefold() for n in names}) == 3 and all(n.startswith(("scene-", "Scene-")) for n in names)
    for scene, path in zip(run["scenes"], (a, b, c), strict=True):
        report = json.loads((out / scene["name"] / "report.json").read_text())
        assert scene["input"] == report["input"] == str(path)
        assert Path(scene["out_dir"]).resolve().parent == out.resolve()
    # Three different scenes, three different probability rasters: none overwrote another (defect 1).
    probs = {hashlib.sha256((out / n / "probability.tif").read_bytes()).hexdigest() for n in names}
    assert len(probs) == 3


def test_an_input_inside_out_named_like_an_output_is_refused_untouched(tmp_path: Path) -> None:
    out = tmp_path / "d"
    scene = crop(out / "probability.tif", 0, 0)
    before = scene.read_bytes()
    proc = detect(str(scene), "--out", str(out))
    assert_one_line_error(proc, 4, "probability.tif there is an input of this run")
    assert scene.read_bytes() == before and not scene.is_symlink()


def test_a_folder_named_like_an_output_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    scene = crop(tmp_path / "s.tif", 0, 0)
    out = tmp_path / "out"
    (out / "mask.tif").mkdir(parents=True)
    proc = detect(str(scene), "--out", str(out))
    assert_one_line_error(proc, 4, "mask.tif is a folder there")
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".edge-ls-journal")) == ["mask.tif"]


def test_jsonl_summary_and_stac_items(tmp_path: Path) -> None:
    pystac = pytest.importorskip("pystac")
    crop(tmp_path / "a.tif", 0, 0), crop(tmp_path / "b.tif", 400, 800)
    (tmp_path / "list.txt").write_text("# two scenes\na.tif\n\nb.tif  # the second\n")
    out = tmp_path / "out"
    proc = detect(f"@{tmp_path / 'list.txt'}", "--out", str(out), "--jsonl")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line.get("name") for line in lines[:2]] == ["a", "b"] and lines[0]["origin"] == "list.txt:2"
    assert lines[-1]["counts"] == {"scenes": 2, "done": 2, "skipped": 0, "failed": 0}
    summary = json.loads((out / "summary.json").read_text())
    collection = pystac.ItemCollection.from_dict(summary)
    assert [item.id for item in collection] == ["a", "b"]
    item = pystac.Item.from_file(str(out / "a" / "item.json"))
    assert item.geometry["type"] == "Polygon" and len(item.bbox) == 4
    assert {"probability", "mask", "confidence", "detections", "detections_gpkg", "quicklook"} <= set(
        item.assets
    )
    assert (
        item.properties["edge_ls:model"] == "edge-nano" and len(item.properties["edge_ls:model_sha256"]) == 64
    )
    assert summary["features"][1]["assets"]["mask"]["href"] == "./b/mask.tif"
    # A STAC ItemCollection is an input too: its GeoTIFF assets, named by item id.
    stac_out = tmp_path / "again"
    proc = detect(str(out / "summary.json"), "--stac-asset", "probability", "--out", str(stac_out), "--json")
    assert proc.returncode == 2 and "needs 3 band" in proc.stderr  # the probability is one band: refused
    # A second run of the first command keeps both scenes (journal + checksums), loading no model.
    proc = detect(f"@{tmp_path / 'list.txt'}", "--out", str(out), "--jsonl")
    assert [json.loads(x)["status"] for x in proc.stdout.splitlines()[:2]] == ["skipped", "skipped"]


def test_a_failing_scene_is_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    a, c = crop(tmp_path / "a.tif", 0, 0), crop(tmp_path / "c.tif", 300, 300)
    bad = tmp_path / "b.tif"
    bad.write_bytes(b"not a raster\n" * 40)
    out = tmp_path / "out"
    proc = detect(str(a), str(bad), str(c), "--out", str(out), "--json")
    assert proc.returncode == 2, proc.stderr
    run = json.loads(proc.stdout)
    assert [s["status"] for s in run["scenes"]] == ["done", "failed", "done"] and run["exit_code"] == 2
    assert run["scenes"][1]["error"] and "Traceback" not in proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("edge-ls: error")] == [
        f"edge-ls: error: b.tif: {run['scenes'][1]['error']}"
    ]
    assert [f["id"] for f in json.loads((out / "summary.json").read_text())["features"]] == ["a", "c"]


def _start(args: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "edge_ls", "detect", *args, "--model", "edge-nano", "--quiet"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def _partials(out: Path) -> list[Path]:
    return [p for p in out.rglob(".edge_ls.*.partial-*")]


def _scenes(tmp_path: Path) -> list[str]:
    """Three copies of the sample scene (1152 x 2048 px, 15 tiles): long enough to be caught mid-way."""
    paths = []
    for name in ("s1", "s2", "s3"):
        path = tmp_path / "in" / f"{name}.tif"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(SAMPLE.read_bytes())
        paths.append(str(path))
    return paths


def test_sigkill_after_the_first_scene_then_rerun_gives_the_uninterrupted_outputs(tmp_path: Path) -> None:
    scenes = [str(crop(tmp_path / "in" / f"c{i}.tif", 300 * i, 500 * i)) for i in range(3)]
    reference = tmp_path / "reference"
    assert detect(*scenes, "--out", str(reference)).returncode == 0
    out = tmp_path / "out"
    proc = _start([*scenes, "--out", str(out)])
    journal = out / ".edge-ls-journal.jsonl"
    _wait_for(lambda: journal.exists() and '"done"' in journal.read_text(), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rerun = detect(*scenes, "--out", str(out), "--jsonl")
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout.splitlines()[0])["status"] == "skipped"
    for i in range(3):
        assert digests(out / f"c{i}") == digests(reference / f"c{i}") and len(digests(out / f"c{i}")) >= 7


@pytest.mark.slow
def test_sigkill_mid_scene_then_rerun_gives_the_uninterrupted_outputs(tmp_path: Path) -> None:
    scenes = _scenes(tmp_path)
    reference = tmp_path / "reference"
    assert detect(*scenes, "--out", str(reference)).returncode == 0
    out = tmp_path / "out"
    proc = _start([*scenes, "--out", str(out)])
    journal = out / ".edge-ls-journal.jsonl"
    # Killed while the second scene is being written: the first is done, the second half-way.
    _wait_for(lambda: journal.exists() and journal.read_text().count('"done"') >= 1 and _partials(out), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _partials(out)  # a kill cleans nothing up
    rerun = detect(*scenes, "--out", str(out), "--jsonl")
    assert rerun.returncode == 0, rerun.stderr
    statuses = [json.loads(line)["status"] for line in rerun.stdout.splitlines()[:3]]
    assert statuses[0] == "skipped" and "done" in statuses[1:]
    for name in ("s1", "s2", "s3"):
        assert digests(out / name) == digests(reference / name) and len(digests(out / name)) >= 7
    assert not _partials(out)  # the killed run's temporary folder is gone


@pytest.mark.parametrize(
    ("sig", "code"),
    [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)],
    ids=["TERM", "HUP", "INT"],
)
def test_a_stop_signal_mid_scene_cleans_up_and_says_so(tmp_path: Path, sig: int, code: int) -> None:
    scenes = [_scenes(tmp_path)[0], str(crop(tmp_path / "in" / "small.tif", 0, 0))]
    out = tmp_path / "out"
    proc = _start([*scenes, "--out", str(out)])
    _wait_for(lambda: bool(_partials(out)), proc)
    proc.send_signal(sig)
    if sig == signal.SIGINT:  # a second Ctrl-C during the cleanup must not abort the interpreter
        time.sleep(0.05)
        proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    lines = [ln for ln in stderr.splitlines() if "stopped by" in ln]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert not _partials(out)
    entries = [json.loads(x) for x in (out / ".edge-ls-journal.jsonl").read_text().splitlines()]
    assert entries[-1]["event"] == "interrupted" and entries[-1]["signal"] == signal.Signals(sig).name
    if sig == signal.SIGTERM:  # the journal and folders it left let the same command finish the run
        rerun = detect(*scenes, "--out", str(out), "--jsonl")
        assert rerun.returncode == 0, rerun.stderr
        assert [json.loads(x)["status"] for x in rerun.stdout.splitlines()[:2]] == ["done", "done"]


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("edge_ls.cluster") is not None, reason="the Ray backend is there"
)
def test_ray_without_the_backend_is_one_line(tmp_path: Path) -> None:
    proc = detect(str(crop(tmp_path / "a.tif", 0, 0)), "--out", str(tmp_path / "o"), "--ray")
    assert_one_line_error(proc, 2, "--ray is not available")
