"""``edge-ls detect`` as a user meets it: one clear line and a non-zero exit on bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "chattogram_s2.tif"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "edge_ls", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, pattern: str) -> None:
    assert proc.returncode == code, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("edge-ls: error")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert pattern.lower() in lines[0].lower(), lines[0]


def test_main_job_prints_the_report_and_writes_outputs(tmp_path: Path) -> None:
    proc = run_cli("detect", str(SAMPLE), "--out", str(tmp_path / "out"), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["model"] == "edge-lite" and report["tiles"] == 15  # the embedded default
    assert (tmp_path / "out" / "report.json").is_file()


def test_several_inputs_get_one_subfolder_each(tmp_path: Path, real_data: Path) -> None:
    a, b = sorted((real_data / "cas_unlabeled").glob("Hokkaido*.tiff"))[:2]
    proc = run_cli("detect", str(a), str(b), "--out", str(tmp_path / "o"), "--quiet", "--model", "edge-nano")
    assert proc.returncode == 0, proc.stderr
    for p in (a, b):
        report = json.loads((tmp_path / "o" / p.stem / "report.json").read_text())
        assert report["georeferenced"] is False  # no CRS: pixel space, said in the outputs
    assert "no georeference" in proc.stderr


@pytest.mark.parametrize(
    ("layers", "dtype", "scale"), [("percent", "uint8", 0.01), ("float32", "float32", 1.0)]
)
def test_layers_option_sets_the_probability_encoding(tmp_path: Path, real_data: Path, layers, dtype, scale):
    path = sorted((real_data / "cas_unlabeled").glob("Hokkaido*.tiff"))[0]
    proc = run_cli(
        "detect",
        str(path),
        "--out",
        str(tmp_path / "o"),
        "--quiet",
        "--model",
        "edge-nano",
        "--layers",
        layers,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("probability.tif", "confidence.tif"):
        with rasterio.open(tmp_path / "o" / name) as ds:
            assert ds.dtypes[0] == dtype and ds.scales == (scale,)
            values = ds.read(1, masked=True).compressed() * scale
            assert values.min() >= 0.0 and values.max() <= 1.0


@pytest.mark.parametrize(
    ("make", "code", "pattern"),
    [
        (lambda d, r: d / "missing.tif", 2, "not found"),
        (lambda d, r: _write(d / "empty.tif", b""), 2, "empty.tif"),
        (lambda d, r: _write(d / "notes.tif", b"this is not a raster\n" * 50), 2, "notes.tif"),
        (lambda d, r: _corrupt_copy(d, r), 2, "corrupt.tif"),
        (lambda d, r: r / "geotiffs" / "rasterio" / "float_raster_with_nodata.tif", 2, "needs 3 band"),
        (lambda d, r: _two_band(d, r), 2, "band"),
        (lambda d, r: _all_nodata(d, r), 2, "nodata"),
        (lambda d, r: d, 2, "directory"),
    ],
    ids=[
        "missing",
        "empty",
        "not-a-raster",
        "corrupt",
        "single-band",
        "too-few-bands",
        "all-nodata",
        "directory",
    ],
)
def test_bad_inputs_fail_with_one_line(tmp_path: Path, real_data: Path, make, code: int, pattern: str):
    path = make(tmp_path, real_data)
    out = tmp_path / "out"
    proc = run_cli("detect", str(path), "--out", str(out))
    assert_one_line_error(proc, code, pattern)
    assert not (out / "report.json").exists()


def test_raster_smaller_than_a_tile_is_padded_run_and_warned(tmp_path: Path, real_data: Path) -> None:
    small = _small(tmp_path, real_data)
    proc = run_cli("detect", str(small), "--out", str(tmp_path / "o"), "--model", "edge-nano", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["width"], report["height"], report["tiles"]) == (200, 150, 1)
    with rasterio.open(tmp_path / "o" / "mask.tif") as ds:
        assert (ds.width, ds.height) == (200, 150)
    assert any("smaller than one 512-px tile" in w for w in report["warnings"])
    assert "smaller than one 512-px tile" in proc.stderr  # the same line on stderr


def test_unknown_model_and_bad_model_metadata(tmp_path: Path) -> None:
    proc = run_cli("detect", str(SAMPLE), "--out", str(tmp_path / "o"), "--model", "no-such-model")
    assert_one_line_error(proc, 3, "unknown model")
    bare = tmp_path / "bare.onnx"
    import onnx

    model = onnx.load(REPO / "edge_ls" / "models" / "edge-nano.onnx")
    del model.metadata_props[:]
    onnx.save(model, bare)
    proc = run_cli("detect", str(SAMPLE), "--out", str(tmp_path / "o"), "--model", str(bare))
    assert_one_line_error(proc, 3, "no edge-ls metadata")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_folder(tmp_path: Path) -> None:  # pragma: no cover - CI runs as root
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    proc = run_cli("detect", str(SAMPLE), "--out", str(locked / "out"))
    assert_one_line_error(proc, 4, "cannot write")


def test_output_path_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    proc = run_cli("detect", str(SAMPLE), "--out", str(blocker))
    assert_one_line_error(proc, 4, "blocker")
    assert blocker.read_text() == "x", "nothing the user had is lost"


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    proc = run_cli("--debug", "detect", str(tmp_path / "missing.tif"), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_models_lists_the_bundled_models() -> None:
    proc = run_cli("models")
    assert proc.returncode == 0 and "edge-nano" in proc.stdout and "edge-lite (default)" in proc.stdout


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _corrupt_copy(d: Path, r: Path) -> Path:
    src = (r / "geotiffs" / "rasterio" / "RGB.byte.tif").read_bytes()
    return _write(d / "corrupt.tif", src[: len(src) // 3])


def _two_band(d: Path, r: Path) -> Path:
    with rasterio.open(r / "geotiffs" / "rasterio" / "RGB.byte.tif") as src:
        profile = src.profile | {"count": 2}
        data = src.read([1, 2])
    with rasterio.open(d / "two.tif", "w", **profile) as dst:
        dst.write(data)
    return d / "two.tif"


def _small(d: Path, r: Path) -> Path:
    with rasterio.open(r / "geotiffs" / "rasterio" / "RGB.byte.tif") as src:
        window = rasterio.windows.Window(300, 300, 200, 150)
        profile = src.profile | {"width": 200, "height": 150, "transform": src.window_transform(window)}
        data = src.read(window=window)
    with rasterio.open(d / "small.tif", "w", **profile) as dst:
        dst.write(data)
    return d / "small.tif"


def _all_nodata(d: Path, r: Path) -> Path:
    with rasterio.open(r / "geotiffs" / "rasterio" / "RGB.byte.tif") as src:
        profile = src.profile
        data = np.zeros((3, src.height, src.width), dtype=np.uint8)
    with rasterio.open(d / "blank.tif", "w", **profile) as dst:
        dst.write(data)
    return d / "blank.tif"


def test_sample_scene_is_bundled() -> None:
    assert SAMPLE.is_file() and shutil.disk_usage(SAMPLE.parent).free > 0


def test_profile_auto_says_what_it_picked_and_runs_it(tmp_path: Path) -> None:
    proc = run_cli("detect", str(SAMPLE), "--profile", "auto", "--out", str(tmp_path / "o"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert "--profile auto picked 'edge-lite'" in proc.stderr and "no NVIDIA GPU" in proc.stderr
    report = json.loads(proc.stdout)
    assert report["precision"] == "int8" and report["tier"] == "edge-lite"


def test_global_options_are_accepted_after_the_verb(tmp_path: Path) -> None:
    """``--debug`` where the README synopsis shows it (after detect's arguments) works like before it."""
    proc = run_cli("detect", str(tmp_path / "missing.tif"), "--out", str(tmp_path / "o"), "--debug")
    assert proc.returncode == 2 and "Traceback" in proc.stderr
    proc = run_cli("detect", str(tmp_path / "missing.tif"), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_profile_auto_on_a_cpu_is_quiet_about_gpu_backends(
    tmp_path: Path, real_data: Path, monkeypatch, capsys
):
    """auto concluded there is no GPU: its skipped GPU backends are expected, so they stay in the report
    only; an explicitly chosen profile still says on stderr why each backend was skipped."""
    from edge_ls.cli import main
    from edge_ls.hardware import Hardware

    monkeypatch.setattr("edge_ls.hardware.detect_hardware", lambda: Hardware())
    small = _small(tmp_path, real_data)
    assert main(["detect", str(small), "--out", str(tmp_path / "auto"), "--profile", "auto", "--quiet"]) == 0
    err = capsys.readouterr().err
    report = json.loads((tmp_path / "auto" / "report.json").read_text())
    assert report["profile"] == "edge-lite" and report["model"] == "edge-lite:int8"
    skipped = report["backend_skipped"]
    if skipped:  # no TensorRT / CUDA provider here: the reasons are kept in the report
        assert "backend" not in err and "pip install" not in err
    assert (
        main(["detect", str(small), "--out", str(tmp_path / "lite"), "--profile", "edge-lite", "--quiet"])
        == 0
    )
    explicit = capsys.readouterr().err
    assert all(f"backend {note}" in explicit for note in skipped)


def test_a_tier_that_is_not_installed_says_how_to_build_it(tmp_path: Path) -> None:
    for args in (["--profile", "fusion"], ["--model", "fusion:fp16"]):
        proc = run_cli("detect", str(SAMPLE), "--out", str(tmp_path / "o"), *args)
        assert_one_line_error(proc, 3, "is not installed: build it with: ")
        line = proc.stderr.strip().splitlines()[-1]
        assert "edge-ls export" in line and "min" in line  # the command and how long it took


def test_a_cascade_profile_runs_triage_and_refiner(tmp_path: Path, labelled_scene: tuple[Path, Path]) -> None:
    """--profile edge-cascade-nano: both models in one pass, the refined share in the report."""
    scene, _ = labelled_scene
    proc = run_cli("detect", str(scene), "--profile", "edge-cascade-nano", "--out", str(tmp_path / "o"),
                   "--json", "--quiet")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    cascade = report["runner"]["cascade"]
    assert report["profile"] == "edge-cascade-nano" and report["model"] == "edge-lite"
    assert cascade["tiles_triaged"] == report["tiles"] and 0 <= cascade["refined_share"] <= 1
    assert "triage edge-nano, refiner edge-lite" in proc.stderr and "runs only its triage" not in proc.stderr
