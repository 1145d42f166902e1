"""Build plans from every profile on real ONNX files, their validation, and that the ONNX an engine
would be built from runs under ONNX Runtime at the profile's min/opt/max shapes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edge_ls.engines.plan import EnginePlan, make_plan, onnx_sha256
from edge_ls.errors import ConfigError, ModelError
from edge_ls.profiles import ShapeRange, list_profiles, load_profile


def _onnx_for(precision: str, request: pytest.FixtureRequest) -> Path:
    """The real ONNX carrying the precision a profile asks for."""
    if precision == "fp32":
        return request.getfixturevalue("nano_onnx")
    pytest.importorskip("torch")
    return request.getfixturevalue({"int8": "small_int8_onnx", "fp16": "small_fp16_onnx"}[precision])


@pytest.mark.parametrize("name", list_profiles())
def test_every_profile_plans_its_optimization_profile(name, request, tmp_path):
    profile = load_profile(name)
    plan = make_plan(profile, _onnx_for(profile.precision, request), tmp_path / "timing")
    trt = profile.tensorrt
    assert plan.shape("min") == (trt.batch.min, 3, trt.tile.min, trt.tile.min)
    assert plan.shape("opt") == (trt.batch.opt, 3, trt.tile.opt, trt.tile.opt)
    assert plan.shape("max") == (trt.batch.max, 3, trt.tile.max, trt.tile.max)
    assert plan.shape("opt")[0] == profile.batch and plan.shape("opt")[2] == profile.tile
    assert plan.strongly_typed and plan.precision in plan.graph_precisions
    assert plan.version_compatible == trt.version_compatible
    assert plan.hardware_compatibility == trt.hardware_compatibility
    assert plan.timing_cache_dir == tmp_path / "timing"
    text = "\n".join(plan.describe())
    assert f"profile        {name}" in text and "strongly typed" in text and plan.plan_hash[:16] in text


def test_plan_reads_the_input_and_hashes_the_file(nano_onnx):
    plan = make_plan(load_profile("edge-nano"), nano_onnx)
    assert (plan.input_name, plan.output_name, plan.channels, plan.input_dtype) == (
        "image",
        "prob",
        3,
        "float32",
    )
    assert len(plan.onnx_sha256) == 64 and plan.onnx_sha256 == onnx_sha256(nano_onnx)
    assert plan.timing_cache_dir is None


def test_plan_hash_changes_with_what_changes_the_engine(nano_onnx, tmp_path):
    base = make_plan(load_profile("edge-nano"), nano_onnx)
    assert (
        make_plan(load_profile("edge-nano"), nano_onnx, tmp_path).plan_hash == base.plan_hash
    )  # paths don't count
    for change in (
        {"batch": ShapeRange(1, 2, 8)},
        {"tile": ShapeRange(256, 256, 512)},
        {"workspace_mb": 64},
        {"version_compatible": True},
        {"hardware_compatibility": "ampere+"},
        {"onnx_sha256": "0" * 64},
    ):
        assert dataclasses.replace(base, **change).plan_hash != base.plan_hash, change


def test_precision_the_graph_does_not_carry_is_refused(nano_onnx):
    with pytest.raises(
        ModelError, match=r"profile 'edge-lite' asks int8 but edge-nano\.onnx has no Q/DQ nodes"
    ):
        make_plan(load_profile("edge-lite"), nano_onnx)
    with pytest.raises(ModelError, match=r"asks fp16 but edge-nano\.onnx has no float16 tensors"):
        make_plan(load_profile("fusion"), nano_onnx)


@pytest.mark.torch
def test_fp32_profile_refuses_a_quantized_graph(small_int8_onnx):
    with pytest.raises(ModelError, match=r"asks fp32 but small-int8\.onnx carries int8"):
        make_plan(load_profile("edge-nano"), small_int8_onnx)


def _static(tmp_path: Path, shape: list, channels_in_spec: int | None = None) -> Path:
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, None)
    model = helper.make_model(
        helper.make_graph([helper.make_node("Sigmoid", ["image"], ["out"])], "g", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    if channels_in_spec is not None:
        from edge_ls.artifact import ModelSpec, write_spec

        bands = ("red", "green", "blue", "nir")[:channels_in_spec]
        write_spec(
            model,
            ModelSpec(
                name="t",
                tier="t",
                bands=bands,
                mean=(0.0,) * len(bands),
                std=(1.0,) * len(bands),
                input_range="8bit",
                gsd_m=1.0,
                tile_size=512,
                overlap=0.2,
                activation="sigmoid",
                threshold=0.5,
            ),
        )
    path = tmp_path / "static.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        (
            [1, 3, "h", "w"],
            r"fixed batch of 1 but the profile asks 1\.\.8: export the model with a dynamic batch",
        ),
        (["n", 3, 512, 512], r"fixed height of 512 but the profile asks 256\.\.1024"),
        (["n", "c", "h", "w"], "needs a fixed channel count"),
        (["n", 3, "h"], "must be NCHW"),
    ],
)
def test_fixed_axes_that_the_profile_varies_are_refused(tmp_path, shape, message):
    with pytest.raises(ModelError, match=message):
        make_plan(load_profile("edge-nano"), _static(tmp_path, shape))


def test_fully_static_model_fits_a_static_profile(tmp_path, nano_onnx):
    profile = load_profile("edge-nano")
    trt = dataclasses.replace(profile.tensorrt, batch=ShapeRange(2, 2, 2), tile=ShapeRange(512, 512, 512))
    plan = make_plan(dataclasses.replace(profile, tensorrt=trt), _static(tmp_path, [2, 3, 512, 512]))
    assert plan.shapes == {k: (2, 3, 512, 512) for k in ("min", "opt", "max")}


def test_band_count_must_match_the_metadata(tmp_path):
    with pytest.raises(ModelError, match="metadata lists 4 bands but the input has 3 channels"):
        make_plan(load_profile("edge-nano"), _static(tmp_path, ["n", 3, "h", "w"], channels_in_spec=4))


def test_tile_not_a_multiple_of_the_stride_is_refused(nano_onnx):
    profile = load_profile("edge-nano")
    bad = dataclasses.replace(
        profile, tensorrt=dataclasses.replace(profile.tensorrt, tile=ShapeRange(200, 512, 1024))
    )
    with pytest.raises(ConfigError, match=r"tensorrt\.tile\.min 200 is not a multiple of 32"):
        make_plan(bad, nano_onnx)


def test_external_weights_are_part_of_the_hash(tmp_path):
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, None)
    weight = onnx.numpy_helper.from_array(np.full((1, 3, 1, 1), 0.5, np.float32), "w")
    model = helper.make_model(
        helper.make_graph(
            [helper.make_node("Mul", ["image", "w"], ["out"])], "g", [x], [y], initializer=[weight]
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    path = tmp_path / "ext.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="ext.onnx.data", size_threshold=0)
    before = make_plan(load_profile("edge-nano"), path).onnx_sha256
    data = tmp_path / "ext.onnx.data"
    data.write_bytes(data.read_bytes()[:-1] + b"\x40")  # 0.5 -> 2.0 in the last weight
    assert make_plan(load_profile("edge-nano"), path).onnx_sha256 != before
    data.unlink()
    with pytest.raises(ModelError, match="external weight file"):
        make_plan(load_profile("edge-nano"), path)


def _run_at_profile_shapes(path: Path, plan: EnginePlan) -> dict[str, tuple[int, ...]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    shapes = {}
    for which, shape in plan.shapes.items():
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
        (out,) = session.run(None, {plan.input_name: x})
        assert np.isfinite(out).all()
        shapes[which] = out.shape
    return shapes


def test_edge_nano_runs_under_onnxruntime_at_its_profile_shapes(nano_onnx):
    plan = make_plan(load_profile("edge-nano"), nano_onnx)
    shapes = _run_at_profile_shapes(nano_onnx, plan)
    assert shapes == {"min": (1, 1, 256, 256), "opt": (1, 1, 512, 512), "max": (8, 1, 1024, 1024)}


@pytest.mark.torch
def test_tensorrt_ready_int8_runs_under_onnxruntime_at_edge_lite_shapes(small_int8_onnx):
    plan = make_plan(load_profile("edge-lite"), small_int8_onnx)
    shapes = _run_at_profile_shapes(small_int8_onnx, plan)
    assert shapes == {"min": (1, 1, 256, 256), "opt": (1, 1, 512, 512), "max": (8, 1, 1024, 1024)}


@pytest.mark.torch
def test_fp16_graph_runs_under_onnxruntime_at_fusion_min_and_opt(small_fp16_onnx):
    plan = make_plan(load_profile("fusion"), small_fp16_onnx)
    import onnxruntime as ort

    session = ort.InferenceSession(str(small_fp16_onnx), providers=["CPUExecutionProvider"])
    for which in ("min", "opt"):
        x = np.random.default_rng(1).random(plan.shape(which), dtype=np.float32)
        (out,) = session.run(None, {plan.input_name: x})
        assert out.shape == (plan.shape(which)[0], 1, *plan.shape(which)[2:]) and np.isfinite(out).all()
