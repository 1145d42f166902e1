"""The pre-build operator check on real ONNX files and on graphs built to break one documented rule."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_ls.engines.support import (
    MAX_OPSET,
    SUPPORTED_OPS,
    UNSUPPORTED_OPS,
    check_model,
    ensure_supported,
    graph_precisions,
)
from edge_ls.errors import ModelError


def _model(nodes, inits=(), opset=17, inputs=None, outputs=None) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", inputs or [x], outputs or [y], initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _problems(model) -> list[str]:
    return [str(p) for p in check_model(model)]


def test_matrix_lists_are_disjoint_and_cover_our_ops():
    assert not SUPPORTED_OPS & UNSUPPORTED_OPS
    for op in ("Conv", "Relu", "HardSwish", "Resize", "Sigmoid", "QuantizeLinear", "DequantizeLinear"):
        assert op in SUPPORTED_OPS


def test_bundled_edge_nano_is_supported(nano_onnx):
    assert check_model(nano_onnx) == []
    ensure_supported(nano_onnx)
    assert graph_precisions(nano_onnx) == {"fp32"}


@pytest.mark.torch
def test_exported_torchvision_model_and_its_tensorrt_ready_forms(
    small_fp32_onnx, small_int8_onnx, small_fp16_onnx
):
    for path in (small_fp32_onnx, small_int8_onnx, small_fp16_onnx):
        assert check_model(path) == [], path.name
    assert graph_precisions(small_int8_onnx) == {"fp32", "int8"}
    assert graph_precisions(small_fp16_onnx) == {"fp32", "fp16"}


@pytest.mark.torch
def test_onnxruntime_default_quantization_is_refused_with_the_fix(small_uint8_onnx):
    problems = _problems(small_uint8_onnx)
    assert any("UINT8 zero point" in p and "QInt8" in p for p in problems)
    assert any("INT32 dequantization" in p and "QuantizeBias=False" in p for p in problems)
    with pytest.raises(ModelError, match=r"cannot build small-uint8\.onnx: node '.+' \((Qu|Dequ)"):
        ensure_supported(small_uint8_onnx)


def test_unsupported_and_unknown_ops_are_named_with_their_node():
    model = _model(
        [
            helper.make_node("Relu", ["x"], ["r"], name="ok_relu"),
            helper.make_node("Unique", ["r"], ["u"], name="dedupe"),
            helper.make_node("FancyOp", ["u"], ["f"], name="mystery"),
            helper.make_node("FusedConv", ["f"], ["y"], name="contrib", domain="com.microsoft"),
        ]
    )
    problems = _problems(model)
    assert problems[0] == "node 'dedupe' (Unique): documented as unsupported by TensorRT (TensorRT 10.15)"
    assert problems[1].startswith("node 'mystery' (FancyOp): not in TensorRT's ONNX support matrix")
    assert problems[2].startswith("node 'contrib' (com.microsoft.FusedConv): custom-domain operator")
    assert len(problems) == 3


def test_resize_modes_pooling_and_topk_restrictions():
    model = _model(
        [
            helper.make_node("Resize", ["x", "", "scales"], ["a"], name="up", mode="cubic"),
            helper.make_node(
                "Resize",
                ["a", "", "scales"],
                ["b"],
                name="crop",
                mode="linear",
                coordinate_transformation_mode="tf_crop_and_resize",
            ),
            helper.make_node("Resize", ["b", "", "scales"], ["c"], name="aa", mode="linear", antialias=1),
            helper.make_node("MaxPool", ["c"], ["d", "idx"], name="pool", kernel_shape=[2, 2]),
            helper.make_node("AveragePool", ["d"], ["e"], name="dil", kernel_shape=[3, 3], dilations=[2, 2]),
            helper.make_node("TopK", ["e", "k"], ["y", "i"], name="top", sorted=0),
        ],
        inits=[
            numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
            numpy_helper.from_array(np.array([3], np.int64), "k"),
        ],
    )
    text = "\n".join(_problems(model))
    assert "node 'up' (Resize): mode 'cubic' unsupported" in text
    assert "node 'crop' (Resize): coordinate_transformation_mode 'tf_crop_and_resize' unsupported" in text
    assert "node 'aa' (Resize): antialiasing is unsupported" in text
    assert "node 'pool' (MaxPool): the Indices output is unsupported" in text
    assert "node 'dil' (AveragePool): dilations [2, 2] unsupported" in text
    assert "node 'top' (TopK): `sorted` must be 1" in text


def test_reduce_axes_must_be_constant():
    ok = _model(
        [helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="m")],
        inits=[numpy_helper.from_array(np.array([1], np.int64), "axes")],
        opset=18,
    )
    assert check_model(ok) == []
    dynamic = _model(
        [
            helper.make_node("Shape", ["x"], ["s"]),
            helper.make_node("ReduceMean", ["x", "s"], ["y"], name="m"),
        ],
        opset=18,
    )
    assert _problems(dynamic) == [
        "node 'm' (ReduceMean): `axes` must be an initializer (a build-time constant)"
    ]


def test_asymmetric_int8_zero_point_is_refused():
    def qdq(zp: int) -> onnx.ModelProto:
        return _model(
            [
                helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="q"),
                helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"], name="dq"),
            ],
            inits=[
                numpy_helper.from_array(np.array(0.02, np.float32), "s"),
                numpy_helper.from_array(np.array(zp, np.int8), "zp"),
            ],
        )

    assert check_model(qdq(0)) == []
    assert _problems(qdq(-5))[0] == (
        "node 'q' (QuantizeLinear): zero point must be 0 (symmetric quantization); found [-5]"
    )


def test_ops_inside_subgraphs_are_checked():
    then_branch = helper.make_graph(
        [helper.make_node("Unique", ["x"], ["t"], name="inner")],
        "then",
        [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)],
    )
    else_branch = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["e"])],
        "else",
        [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)],
    )
    model = _model(
        [
            helper.make_node(
                "If", ["cond"], ["y"], name="branch", then_branch=then_branch, else_branch=else_branch
            )
        ],
        inits=[numpy_helper.from_array(np.array(True), "cond")],
    )
    assert _problems(model) == [
        "node 'inner' (Unique): documented as unsupported by TensorRT (TensorRT 10.15)"
    ]


def test_opset_outside_the_supported_range():
    model = _model([helper.make_node("Relu", ["x"], ["y"])], opset=MAX_OPSET + 1)
    assert _problems(model)[0].startswith(f"node '<model>' (opset {MAX_OPSET + 1}): TensorRT 10.15 supports")


def test_not_an_onnx_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not a protobuf at all" * 10)
    with pytest.raises(ModelError, match=r"bad\.onnx is not a valid ONNX file"):
        check_model(bad)
    with pytest.raises(ModelError, match="model file not found"):
        check_model(tmp_path / "missing.onnx")
