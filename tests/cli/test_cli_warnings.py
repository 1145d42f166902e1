"""Library warnings (rasterio's NotGeoreferencedWarning, GDAL messages rasterio logs) carry library
paths and internals: ``edge-ls`` routes them into logging, silent unless ``--debug``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.hostile import conv_model, tiny_raster


def _detect(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    scene = tiny_raster(tmp_path / "plain.tif", crs=None)  # no georeference: rasterio warns on open
    model = conv_model(tmp_path / "ok.onnx", bias=-1.0, weight=0.5)
    cmd = [sys.executable, "-m", "edge_ls", *extra[:1], "detect", str(scene), "--model", str(model)]
    cmd += ["--out", str(tmp_path / "out"), "--quiet"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_library_warnings_stay_off_stderr(tmp_path: Path) -> None:
    proc = _detect(tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines and all(ln.startswith("edge-ls: ") for ln in lines), proc.stderr
    assert "NotGeoreferencedWarning" not in proc.stderr and "site-packages" not in proc.stderr
    assert "no georeference" in proc.stderr  # edge-ls's own warning stays


def test_debug_shows_them_as_log_lines(tmp_path: Path) -> None:
    proc = _detect(tmp_path, "--debug")
    assert proc.returncode == 0, proc.stderr
    shown = [ln for ln in proc.stderr.splitlines() if "NotGeoreferencedWarning" in ln]
    assert shown and all(ln.startswith("edge-ls: ") for ln in shown), proc.stderr
