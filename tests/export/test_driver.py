"""The export sequence from a typed request, without the CLI (what a benchmark or a script builds)."""

from __future__ import annotations

import pytest

from edge_ls.errors import ConfigError
from edge_ls.export.driver import ExportRequest, export_tier
from edge_ls.manifest import load_manifest

pytest.importorskip("torch")  # the fp32_onnx fixture exports a torch model


def test_request_to_fp32_tier_folder(tmp_path, fp32_onnx):
    folder = export_tier(
        ExportRequest(
            tier="t-drv", out=tmp_path, onnx=[("primary", fp32_onnx)], precision=["fp32"], quiet=True
        )
    )
    assert folder == tmp_path / "t-drv"
    manifest = load_manifest(folder)
    assert [(e.role, e.precision) for e in manifest.models] == [("primary", "fp32")]


def test_request_is_checked_before_any_work(tmp_path, fp32_onnx):
    with pytest.raises(ConfigError, match="int8 needs --calib"):
        export_tier(ExportRequest(tier="t", out=tmp_path, onnx=[("primary", fp32_onnx)], precision=["int8"]))
    with pytest.raises(ConfigError, match="each role may be given once"):
        export_tier(ExportRequest(tier="t", out=tmp_path, onnx=[("primary", fp32_onnx)] * 2))
    assert list(tmp_path.iterdir()) == []
