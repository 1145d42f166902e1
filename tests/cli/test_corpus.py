"""A malformed-input corpus, generated here, run through ``edge-ls detect`` as a user would run it.

Every case runs as a subprocess with a timeout and must end with no traceback, and either a non-zero
exit with one error line and no output folder that looks complete, or exit 0 with complete, correct
outputs. Rasters and models are tiny (96 px, 1x1 convolutions), so the whole file runs in seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio

from tests.hostile import conv_model, tiny_raster, tiny_spec
from tests.io.test_source_hostile import sparse_huge

TIMEOUT_S = 60
OUTPUTS = ("probability.tif", "mask.tif", "confidence.tif", "report.json")


@dataclass
class Run:
    proc: subprocess.CompletedProcess
    out: Path
    seconds: float

    @property
    def errors(self) -> list[str]:
        return [ln for ln in self.proc.stderr.splitlines() if ln.startswith("edge-ls: error")]


def detect(tmp_path: Path, scene: Path | str, *extra: str, model: Path | None = None) -> Run:
    out = tmp_path / "out"
    model = model or conv_model(tmp_path / "ok.onnx", bias=-1.0, weight=0.5)
    cmd = [sys.executable, "-m", "edge_ls", "detect", str(scene), "--out", str(out), "--model", str(model)]
    t0 = time.perf_counter()
    proc = subprocess.run([*cmd, "--quiet", *extra], capture_output=True, text=True, timeout=TIMEOUT_S)
    return Run(proc, out, time.perf_counter() - t0)


def assert_refused(run: Run, code: int, words: str) -> None:
    """Non-zero exit with its class's code, one error line naming the cause, nothing that looks done."""
    stderr = run.proc.stderr
    assert "Traceback" not in stderr, stderr
    assert run.proc.returncode == code, stderr
    assert len(run.errors) == 1, stderr
    assert words.lower() in run.errors[0].lower(), run.errors[0]
    assert not any((run.out / name).exists() for name in OUTPUTS), sorted(run.out.iterdir())


def assert_complete(run: Run) -> dict:
    """Exit 0, no traceback, every output and a report that matches them."""
    assert "Traceback" not in run.proc.stderr, run.proc.stderr
    assert run.proc.returncode == 0, run.proc.stderr
    assert all((run.out / name).is_file() for name in OUTPUTS), sorted(run.out.iterdir())
    return json.loads((run.out / "report.json").read_text())


# -- rasters ----------------------------------------------------------------------------------------


def _truncated(d: Path) -> Path:
    path = tiny_raster(d / "whole.tif", 256)
    cut = d / "truncated.tif"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    return cut


def _one_band(d: Path) -> Path:
    return tiny_raster(d / "one.tif", count=1)


def _two_bands(d: Path) -> Path:
    return tiny_raster(d / "two.tif", count=2)


def _directory(d: Path) -> Path:
    (d / "scene.tif").mkdir()
    return d / "scene.tif"


def _empty(d: Path) -> Path:
    (d / "empty.tif").write_bytes(b"")
    return d / "empty.tif"


def _text(d: Path) -> Path:
    (d / "notes.tif").write_text("not a raster at all\n" * 50)
    return d / "notes.tif"


def _all_nan(d: Path) -> Path:
    return tiny_raster(d / "nan.tif", dtype="float32", fill=np.full((3, 96, 96), np.nan, np.float32))


RASTER_REFUSALS: list[tuple[str, Callable[[Path], Path], str]] = [
    ("truncated GeoTIFF", _truncated, "truncated or corrupt"),
    ("one band", _one_band, "needs 3 band(s)"),
    ("two bands", _two_bands, "needs 3 band(s)"),
    ("directory", _directory, "is a directory"),
    ("empty file", _empty, "empty"),
    ("text named .tif", _text, "not a raster"),
    ("all NaN", _all_nan, "no valid pixels"),
]


@pytest.mark.parametrize(("case", "make", "words"), RASTER_REFUSALS, ids=[c[0] for c in RASTER_REFUSALS])
def test_bad_rasters_are_refused_in_one_line(tmp_path: Path, case: str, make, words: str) -> None:
    assert_refused(detect(tmp_path, make(tmp_path)), 2, words)


def test_sparse_huge_geotiff_is_refused_fast(tmp_path: Path) -> None:
    run = detect(tmp_path, sparse_huge(tmp_path / "huge.tif"))
    assert_refused(run, 2, "EDGE_LS_MAX_PIXELS")
    assert run.seconds < 20  # a subprocess start included; the read itself used to run > 5 min


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "scene.tif"
    os.mkfifo(fifo)
    assert_refused(detect(tmp_path, fifo), 2, "not a regular file")


@pytest.mark.parametrize("bad", [np.nan, np.inf, pytest.param(-np.inf, marks=pytest.mark.slow)])
def test_non_finite_pixels_are_nodata_and_the_rest_runs(tmp_path: Path, bad: float) -> None:
    rng = np.random.default_rng(1)
    data = rng.uniform(0.02, 0.3, size=(3, 96, 96)).astype(np.float32)
    data[:, :10, :] = bad  # the first ten rows
    scene = tiny_raster(tmp_path / "holes.tif", dtype="float32", fill=data)
    report = assert_complete(detect(tmp_path, scene))
    with rasterio.open(tmp_path / "out" / "probability.tif") as ds:
        valid = ds.read_masks(1) != 0
    assert not valid[:10].any() and valid[10:].all()  # holes stay holes, never "probability 0"
    assert report["tiles"] >= 1


def test_latitude_120_runs_in_pixel_space_with_one_warning(tmp_path: Path) -> None:
    scene = tiny_raster(tmp_path / "lat120.tif", crs="EPSG:4326", origin=(10.0, 120.0), res=0.001)
    run = detect(tmp_path, scene)
    report = assert_complete(run)
    assert report["georeferenced"] is False
    assert sum("impossible georeference" in ln for ln in run.proc.stderr.splitlines()) == 1


def test_a_crs_gdal_cannot_parse_runs_in_pixel_space(tmp_path: Path) -> None:
    """A VRT whose SRS is garbage: GDAL drops the CRS; the run is a pixel-space run, said so."""
    inner = tiny_raster(tmp_path / "inner.tif")
    vrt = tmp_path / "garbage_crs.vrt"
    with rasterio.open(inner) as ds:
        bands = "".join(
            f'<VRTRasterBand dataType="Byte" band="{i}"><SimpleSource><SourceFilename relativeToVRT="1">'
            f"inner.tif</SourceFilename><SourceBand>{i}</SourceBand></SimpleSource></VRTRasterBand>"
            for i in (1, 2, 3)
        )
        gt = ", ".join(f"{v:.6f}" for v in ds.transform.to_gdal())
        vrt.write_text(
            f'<VRTDataset rasterXSize="{ds.width}" rasterYSize="{ds.height}"><SRS>GARBAGE[not a crs]</SRS>'
            f"<GeoTransform>{gt}</GeoTransform>{bands}</VRTDataset>"
        )
    run = detect(tmp_path, vrt)
    report = assert_complete(run)
    assert report["georeferenced"] is False
    assert "inner.tif" not in run.proc.stderr  # GDAL's own warnings (with paths) stay out of stderr


# -- options ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--nodata", "1e400"), "nodata"),
        (("--tile-size", "0"), "tile_size"),
        (("--batch", "0"), "batch"),
        # the same check as the three above (tests/test_deployment.py covers each in-process)
        pytest.param(("--batch", "-2"), "batch", marks=pytest.mark.slow),
        pytest.param(("--readers", "0"), "readers", marks=pytest.mark.slow),
        pytest.param(("--streams", "0"), "streams", marks=pytest.mark.slow),
    ],
)
def test_options_that_cannot_work_are_refused(tmp_path: Path, args: tuple[str, ...], words: str) -> None:
    assert_refused(detect(tmp_path, tiny_raster(tmp_path / "s.tif"), *args), 2, words)


# -- models -----------------------------------------------------------------------------------------


def _bad_json(d: Path) -> Path:
    return conv_model(d / "badjson.onnx", metadata="{not json")


def _no_metadata(d: Path) -> Path:
    return conv_model(d / "nometa.onnx", metadata="")


def _invalid_fields(d: Path) -> Path:
    text = tiny_spec().to_json().replace('"tile_size": 64', '"tile_size": -5')
    return conv_model(d / "badfields.onnx", metadata=text)


def _nan_model(d: Path) -> Path:
    return conv_model(d / "nanmodel.onnx", bias=float("nan"))


def _wrong_output(d: Path) -> Path:
    return conv_model(d / "twochannels.onnx", out_channels=2)


def _wrong_input(d: Path) -> Path:
    return conv_model(d / "fourbands.onnx", in_channels=4)


def _not_onnx(d: Path) -> Path:
    (d / "garbage.onnx").write_bytes(os.urandom(256))
    return d / "garbage.onnx"


MODEL_REFUSALS = [
    ("metadata not JSON", _bad_json, "badjson"),
    ("no metadata", _no_metadata, "no edge-ls metadata"),
    ("invalid metadata fields", _invalid_fields, "invalid edge-ls metadata"),
    ("NaN-emitting model", _nan_model, "NaN"),
    ("output shape", _wrong_output, "output has shape"),
    ("input shape", _wrong_input, "fourbands"),
    ("not ONNX", _not_onnx, "garbage.onnx"),
]


@pytest.mark.parametrize(("case", "make", "words"), MODEL_REFUSALS, ids=[c[0] for c in MODEL_REFUSALS])
def test_bad_models_are_model_errors(tmp_path: Path, case: str, make, words: str) -> None:
    run = detect(tmp_path, tiny_raster(tmp_path / "s.tif"), model=make(tmp_path))
    assert_refused(run, 3, words)


def test_the_control_case_runs(tmp_path: Path) -> None:
    """The same tiny raster and model, unharmed: the refusals above are about the harm, not the size."""
    run = detect(tmp_path, tiny_raster(tmp_path / "s.tif"))
    report = assert_complete(run)
    assert report["georeferenced"] is True and report["tiles"] >= 1
