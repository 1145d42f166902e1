"""The export sequence from a typed request, without the CLI (what a benchmark or a script builds)."""

from __future__ import annotations

import dataclasses

import pytest

from edge_ls.errors import ConfigError, InputError
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


def test_pruned_student_distilled_and_calibrated_on_the_given_sets(tmp_path, real_data, spec):
    """``fine_tune_data`` and ``temperature_data`` replace --calib for a pruned student (what
    bench/tiers.py uses for the train and val splits); no --calib needed for an FP32-only tier."""
    pytest.importorskip("torch")
    from tests.export.conftest import untrained_run
    from tests.training import fakes

    train = fakes.folder_pairs(tmp_path / "train", real_data, n=2)
    val = fakes.folder_pairs(tmp_path / "val", real_data, source="bijie", n=2)
    run = untrained_run(tmp_path / "run", [train], spec)
    request = ExportRequest(
        tier="pruned",
        out=tmp_path / "out",
        checkpoint=[("primary", run)],
        precision=["fp32"],
        prune=0.5,
        fine_tune_steps=2,
        fine_tune_data=train,
        fine_tune_size=64,
        temperature_data=val,
        tile_size=64,
        quiet=True,
    )
    manifest = load_manifest(export_tier(request))
    prune = manifest.info["primary"]["prune"]
    assert prune["fine_tuned"] and prune["temperature"]["fit_on"] == str(val)
    assert manifest.model(precision="fp32").spec.temperature == pytest.approx(prune["temperature"]["student"])
    with pytest.raises(InputError, match="--temperature-data dataset folder not found"):
        export_tier(dataclasses.replace(request, temperature_data=tmp_path / "missing"))
