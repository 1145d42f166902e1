"""``edge-ls build-engine``: prints the plan, checks operators, then needs TensorRT (exit 5 here)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge_ls.cli import build_engine, main
from edge_ls.hardware import Hardware

HAS_TRT = subprocess.run([sys.executable, "-c", "import tensorrt"], capture_output=True).returncode == 0


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed")
def test_plan_then_ops_then_missing_extra_on_a_gpu_machine(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(build_engine, "no_gpu_reason", lambda: None)  # as on a GPU host without the extra
    assert main(["build-engine", "--profile", "edge-nano", "--cache", str(tmp_path)]) == 5
    captured = capsys.readouterr()
    assert "shapes (NCHW)  min 1x3x256x256  opt 1x3x512x512  max 8x3x1024x1024" in captured.out
    assert f"timing cache   {tmp_path / 'timing'}" in captured.out
    assert "operators      all supported (TensorRT 10.15 ONNX support matrix)" in captured.out
    assert captured.err.strip() == (
        "edge-ls: error: Building TensorRT engines needs 'tensorrt', which is not installed: "
        "pip install 'edge-ls[gpu]'"
    )


def test_without_a_gpu_it_says_no_gpu_first_and_suggests_no_install(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("edge_ls.hardware.detect_hardware", lambda: Hardware())
    assert main(["build-engine", "--profile", "edge-nano", "--cache", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert err[0].startswith("edge-ls: no NVIDIA GPU on this machine")  # said first
    assert err[-1].startswith("edge-ls: error: no NVIDIA GPU here")
    assert "pip install" not in captured.err  # an extra cannot help without a GPU
    assert "operators      all supported" in captured.out  # the checks that need no GPU still ran


def test_profile_model_not_installed_says_how_to_get_it(capsys, tmp_path):
    assert main(["build-engine", "--profile", "fusion-gan", "--cache", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert "profile 'fusion-gan' needs model primary = 'fusion-gan:fp16'" in err
    assert "edge-ls export" in err and "--onnx FILE" in err
    assert "not installed" in err


def test_precision_mismatch_is_caught_before_building(capsys, tmp_path):
    from edge_ls.models.registry import BUNDLED_DIR

    argv = ["build-engine", "--profile", "edge-lite", "--onnx", str(BUNDLED_DIR / "edge-nano.onnx")]
    assert main([*argv, "--cache", str(tmp_path)]) == 3
    assert "asks int8 but edge-nano.onnx has no Q/DQ nodes" in capsys.readouterr().err


def test_unsupported_quantization_is_named_before_building(capsys, tmp_path):
    """ONNX Runtime's default (asymmetric UINT8) Q/DQ: runs on the CPU, refused for TensorRT by name."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("prob", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("QuantizeLinear", ["image", "s", "zp"], ["q"], name="input_quant"),
        helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["dq"], name="input_dequant"),
        helper.make_node("Sigmoid", ["dq"], ["prob"], name="head"),
    ]
    inits = [
        numpy_helper.from_array(np.array(1 / 255, np.float32), "s"),
        numpy_helper.from_array(np.array(128, np.uint8), "zp"),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], [y], initializer=inits),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    path = tmp_path / "uint8.onnx"
    onnx.save(model, str(path))
    assert (
        main(["build-engine", "--profile", "edge-lite", "--onnx", str(path), "--cache", str(tmp_path)]) == 3
    )
    captured = capsys.readouterr()
    assert "engine plan (--onnx)" in captured.out
    assert (
        "TensorRT cannot build uint8.onnx: node 'input_quant' (QuantizeLinear): UINT8 zero point"
        in captured.err
    )


def test_unknown_profile_exits_2(capsys):
    assert main(["build-engine", "--profile", "nope"]) == 2
