from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from edge_ls.artifact import read_spec
from edge_ls.errors import ConfigError, ModelError

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from edge_ls.export.accuracy import budget_scores  # noqa: E402
from edge_ls.export.onnx_export import run_onnx  # noqa: E402
from edge_ls.export.quantize import (  # noqa: E402
    accuracy_delta,
    convert_fp16,
    depthwise_convs,
    describe_loss,
    quantize_int8,
    sensitive_nodes,
)
from edge_ls.io.labelled import load_labelled  # noqa: E402


@pytest.fixture(scope="module")
def int8_onnx(tmp_path_factory, fp32_onnx, hokkaido, spec):
    from edge_ls.io.labelled import iter_batches

    calib = iter_batches(hokkaido, spec, batch=2, size=128, limit=6)  # tiles 0-5: calibration
    return quantize_int8(
        fp32_onnx, tmp_path_factory.mktemp("q") / "lite.int8.onnx", calib, calib_source="cas_hokkaido[0:6]"
    )


@pytest.fixture(scope="module")
def eval_tiles(hokkaido, spec):
    return load_labelled(hokkaido, spec, size=128, start=24, limit=6)  # disjoint from calibration


def _weight_is_quantized(proto, conv) -> bool:
    producers = {o: n for n in proto.graph.node for o in n.output}
    producer = producers.get(conv.input[1])
    return producer is not None and producer.op_type == "DequantizeLinear"


def _is_depthwise(proto, conv) -> bool:
    inits = {t.name: t for t in proto.graph.initializer}
    group = next((a.i for a in conv.attribute if a.name == "group"), 1)
    weight = inits.get(conv.input[1])
    if weight is None:  # quantized: the weight is the DequantizeLinear's int8 initializer
        producer = {o: n for n in proto.graph.node for o in n.output}[conv.input[1]]
        weight = inits[producer.input[0]]
    return group > 1 and weight.dims[1] == 1


def test_int8_is_qdq_symmetric_with_sensitive_layers_in_float(int8_onnx, fp32_onnx, real_tiles):
    proto = onnx.load(str(int8_onnx))
    ops = Counter(n.op_type for n in proto.graph.node)
    assert ops["QuantizeLinear"] > 10 and ops["DequantizeLinear"] > 10
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert not _weight_is_quantized(proto, convs[0]) and not _weight_is_quantized(proto, convs[-1])
    depthwise = [c for c in convs[1:-1] if _is_depthwise(proto, c)]
    assert len(depthwise) >= 5  # MobileNetV3-small: one per inverted-residual block
    assert not any(_weight_is_quantized(proto, c) for c in depthwise)  # kept float (depthwise_convs)
    assert all(_weight_is_quantized(proto, c) for c in convs[1:-1] if not _is_depthwise(proto, c))
    inits = {t.name: t for t in proto.graph.initializer}
    # symmetric: every zero point is int8 and zero
    for node in proto.graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) > 2:
            zp = onnx.numpy_helper.to_array(inits[node.input[2]])
            assert zp.dtype == np.int8 and not zp.any()

    # per-channel weights: a weight's scale has one value per output channel
    def is_weight(name):
        return name in inits and inits[name].data_type == onnx.TensorProto.INT8 and len(inits[name].dims) == 4

    weight_dqs = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and is_weight(n.input[0])]
    assert len(weight_dqs) == len(convs) - 2 - len(depthwise)
    for dq in weight_dqs:
        scale = onnx.numpy_helper.to_array(inits[dq.input[1]])
        assert scale.shape == (inits[dq.input[0]].dims[0],)
    # runs under onnxruntime and stays close to FP32
    ref, got = run_onnx(fp32_onnx, real_tiles), run_onnx(int8_onnx, real_tiles)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() < 0.1 * max(1.0, np.abs(ref).max())


def test_int8_metadata_kept_and_precision_recorded(int8_onnx, spec):
    got = read_spec(int8_onnx)
    assert got.precision == "int8"
    assert got.name == spec.name and got.mean == spec.mean and got.provenance["kind"] == "test"
    q = got.provenance["quantization"]
    assert q["calibration"]["tiles"] == 6 and len(q["calibration"]["tile_digests"]) == 6
    assert q["calibration"]["source"] == "cas_hokkaido[0:6]"
    assert "export" in got.provenance  # the FP32 parity record survives


def test_sensitive_nodes_are_first_last_conv_and_sigmoids(fp32_onnx):
    proto = onnx.load(str(fp32_onnx))
    convs = [n.name for n in proto.graph.node if n.op_type == "Conv"]
    assert sensitive_nodes(proto)[:2] == [convs[0], convs[-1]]


def test_depthwise_convs_found_in_fp32_graph(fp32_onnx):
    proto = onnx.load(str(fp32_onnx))
    names = depthwise_convs(proto)
    convs = {n.name: n for n in proto.graph.node if n.op_type == "Conv"}
    assert names and all(_is_depthwise(proto, convs[n]) for n in names)
    assert len(names) < len(convs) / 2  # the pointwise and plain convs are not in it


def test_unknown_calibration_method_fails_before_any_work(tmp_path, fp32_onnx):
    # (percentile/entropy run on the trained Edge-Lite; ONNX Runtime's histograms fail on this random
    # net's constant activations, so they are compared in bench/README.md, not here)
    with pytest.raises(ConfigError, match="calibration method"):
        quantize_int8(fp32_onnx, tmp_path / "x.onnx", [], calibration="kl")
    assert not (tmp_path / "x.onnx").exists()


def test_fp16_runs_and_keeps_io_float32(tmp_path, fp32_onnx, real_tiles):
    path = convert_fp16(fp32_onnx, tmp_path / "lite.fp16.onnx")
    proto = onnx.load(str(path))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    halves = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert len(halves) > 0.8 * len(proto.graph.initializer) - 8
    ref, got = run_onnx(fp32_onnx, real_tiles), run_onnx(path, real_tiles)
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert np.abs(got - ref).max() < 1e-2 * max(1.0, np.abs(ref).max())
    assert read_spec(path).precision == "fp16"
    assert path.stat().st_size < 0.6 * fp32_onnx.stat().st_size


def test_fp16_of_int8_is_mixed_and_runs(tmp_path, int8_onnx, real_tiles):
    path = convert_fp16(int8_onnx, tmp_path / "lite.mixed.onnx")
    assert read_spec(path).precision == "mixed"
    assert run_onnx(path, real_tiles[:1]).shape == (1, 1, 128, 128)


def test_accuracy_delta_recorded_on_disjoint_real_tiles(tmp_path, fp32_onnx, int8_onnx, eval_tiles):
    import shutil

    q = shutil.copy(int8_onnx, tmp_path / "q.onnx")
    result = accuracy_delta(fp32_onnx, q, eval_tiles, budget_f1=100.0, eval_source="cas_hokkaido[24:30]")
    direct = budget_scores(q, eval_tiles)
    assert result["int8"]["f1"] == pytest.approx(direct["f1"])
    assert result["delta_f1"] == pytest.approx(result["fp32"]["f1"] - result["int8"]["f1"])
    recorded = read_spec(q).provenance["accuracy"]
    assert recorded["eval_source"] == "cas_hokkaido[24:30]" and recorded["tiles"] == 6


def test_accuracy_delta_refuses_calibration_tiles(tmp_path, fp32_onnx, int8_onnx, hokkaido, spec):
    calib_again = load_labelled(hokkaido, spec, size=128, limit=2)
    with pytest.raises(ConfigError, match="disjoint"):
        accuracy_delta(fp32_onnx, int8_onnx, calib_again, record=False)


def test_budget_exceeded_fails_the_export(tmp_path, fp32_onnx, int8_onnx, eval_tiles):
    """A scorer that reports the INT8 model 2 points worse must trip the default 1-point budget."""
    import shutil

    q = shutil.copy(int8_onnx, tmp_path / "q.onnx")

    def scorer(path, data):
        f1 = 80.0 if path.name == "q.onnx" else 82.0
        return {"f1": f1, "iou": f1 / 2, "precision": f1, "recall": f1, "tiles": len(data)}

    with pytest.raises(ModelError, match=r"lost 2\.00 F1 points.*budget 1"):
        accuracy_delta(fp32_onnx, q, eval_tiles, scorer=scorer)
    assert read_spec(q).provenance["accuracy"]["delta_f1"] == pytest.approx(2.0)  # recorded anyway


def test_quantize_needs_calibration_tiles_and_an_fp32_model(tmp_path, fp32_onnx, int8_onnx):
    with pytest.raises(ConfigError, match="calibration"):
        quantize_int8(fp32_onnx, tmp_path / "q.onnx", [])
    with pytest.raises(ModelError, match="already int8"):
        quantize_int8(int8_onnx, tmp_path / "q2.onnx", [np.zeros((3, 64, 64), np.float32)])
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not an ONNX model"):
        convert_fp16(bad, tmp_path / "h.onnx")


def test_int8_keeps_dynamic_shapes(int8_onnx):
    x = np.random.default_rng(0).standard_normal((3, 3, 96, 160)).astype(np.float32)
    assert run_onnx(int8_onnx, x).shape == (3, 1, 96, 160)


def test_fp16_keeps_resize_scales_float32(tmp_path, real_tiles, spec):
    """Resize's ``scales`` input is float32-only in ONNX: the cast pass must leave it alone."""
    import dataclasses

    import torch

    from edge_ls.export.onnx_export import export_onnx

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.Upsample(scale_factor=2, mode="bilinear"),
        torch.nn.Conv2d(8, 1, 1),
        torch.nn.Sigmoid(),
    ).eval()
    sig_spec = dataclasses.replace(spec, activation="sigmoid")
    fp32 = export_onnx(net, sig_spec, tmp_path / "up.onnx", sample=real_tiles[:1])
    path = convert_fp16(fp32, tmp_path / "up16.onnx")
    proto = onnx.load(str(path))
    ops = Counter(n.op_type for n in proto.graph.node)
    assert ops["Resize"] == 1 and ops["Sigmoid"] == 1
    ref, got = run_onnx(fp32, real_tiles), run_onnx(path, real_tiles)
    assert np.abs(got - ref).max() < 1e-2


def test_quantization_writes_nothing_into_the_working_directory(tmp_path, monkeypatch, fp32_onnx, real_tiles):
    """ORT's pre-processing drops large-model temporaries into the cwd; quantize_int8 runs it elsewhere."""
    work = tmp_path / "cwd"
    (work / "models").mkdir(parents=True)
    (work / "models" / "m.onnx").write_bytes(Path(fp32_onnx).read_bytes())
    monkeypatch.chdir(work)
    quantize_int8("models/m.onnx", "models/q.onnx", real_tiles[:2])  # relative paths, as users type them
    assert sorted(p.name for p in work.rglob("*")) == ["m.onnx", "models", "q.onnx"]
    assert Path.cwd() == work


def test_int8_artifact_passes_the_tensorrt_operator_check(int8_onnx):
    """What export writes must be buildable: symmetric INT8 Q/DQ and no INT32 bias dequantization."""
    from edge_ls.engines.support import check_model

    assert check_model(int8_onnx) == []


def test_loss_is_worded_with_one_sign_convention() -> None:
    """FP32 minus quantized F1, as words: never "+0.02" for a loss next to "-0.00" for no change."""
    assert describe_loss(0.02) == "lost 0.02 F1 points"
    assert describe_loss(-1.28) == "gained 1.28 F1 points"
    assert describe_loss(-0.004) == describe_loss(0.0) == describe_loss(0.001) == "lost 0.00 F1 points"
