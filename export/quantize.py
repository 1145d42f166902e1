"""Explicit precision in the ONNX graph: INT8 as Q/DQ nodes, FP16 by casts, and the accuracy it costs.

TensorRT 10.1 deprecated implicit INT8 calibration and TensorRT 11 removed it with the builder's
FP16/INT8 flags, so the precision must be in the graph itself. INT8: ONNX Runtime ``quantize_static``
in QDQ format, symmetric INT8 activations and weights (zero points 0, the placement TensorRT builds
strongly typed), per-channel weights, calibrated on real tiles fed in small batches (static
calibration of the full fusion held 9 GB when fed at once). FP16: every float tensor and initializer
becomes float16 except the graph's input/output (kept float32, so callers never change) and the
sensitive layers. Sensitive layers -- the first and last convolutions and the sigmoids -- stay float32
in both (INT8 accuracy drops concentrate there: TensorRT #1179, onnxruntime #11415); INT8 also keeps
the depthwise convolutions float (:func:`depthwise_convs`: on Edge-Lite they cost F1 and were slower).

The same files run under ONNX Runtime on the CPU, so :func:`accuracy_delta` measures what a quantized
artifact loses on real labelled tiles disjoint from the calibration tiles, records it in the artifact's
metadata, and fails past the profile's budget (default 1 point of F1).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_ls.artifact import ModelSpec, read_spec, spec_from_metadata, write_spec
from edge_ls.backends.onnxrt import open_session
from edge_ls.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

#: F1 points a quantized artifact may lose against FP32 unless the profile says otherwise.
DEFAULT_BUDGET_F1 = 1.0
CONV_OPS = ("Conv", "ConvTranspose")
#: Ops that get Q/DQ on their inputs: the compute-heavy ones, as NVIDIA ModelOpt places them for
#: TensorRT. Quantizing every op (ONNX Runtime's default) adds Q/DQ pairs around elementwise ops
#: (HardSwish decomposes into HardSigmoid x Mul) that cost more than they save: measured on the
#: ResNet18 U-Net, 2.07 -> 2.28 tiles/s, and on the MobileNetV3 U-Net 2.87 -> 3.14 (FP32 1.07 / 2.81).
QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
SIGMOID_OPS = ("Sigmoid",)
#: Activation-range calibration: ``minmax`` (the full observed range), ``percentile`` (the 99.999th
#: percentile of |x|: one outlier pixel no longer widens the step for every other), ``entropy``
#: (KL-optimal clipping, TensorRT's classic calibrator).
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
_CALIBRATION_LABELS = {"minmax": "MinMax", "percentile": "Percentile 99.999", "entropy": "Entropy"}
#: (op, input index) slots ONNX types as float32 only, whatever the data's precision (Resize scales).
FLOAT32_ONLY_INPUTS = {("Resize", 2), ("Upsample", 1)}
#: Ops with subgraphs: the cast pass leaves them float32 rather than rewrite their bodies.
SUBGRAPH_OPS = ("If", "Loop", "Scan")
FP16_MAX = float(np.finfo(np.float16).max)


# ---------------------------------------------------------------------------------------- helpers
def load_model(path: str | Path) -> Any:
    """``onnx.load`` with a one-line ModelError for a missing or corrupt file."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"model file not found: {p}")
    try:
        return onnx.load(str(p))
    except Exception as exc:  # protobuf DecodeError and friends
        raise ModelError(f"{p.name} is not an ONNX model ({type(exc).__name__}: {str(exc)[:120]})") from None


def model_spec(proto: Any, source: str) -> ModelSpec:
    """The edge-ls spec of an in-memory ONNX model."""
    return spec_from_metadata({p.key: p.value for p in proto.metadata_props}, source)


def name_nodes(proto: Any) -> None:
    """Give every node a unique name: exclusion lists and error messages address nodes by name."""
    seen: set[str] = set()
    for i, node in enumerate(proto.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)


def sensitive_nodes(proto: Any) -> list[str]:
    """Names of the first and last convolutions and of every sigmoid (kept in higher precision)."""
    convs = [n.name for n in proto.graph.node if n.op_type in CONV_OPS]
    sigmoids = [n.name for n in proto.graph.node if n.op_type in SIGMOID_OPS]
    ends = [convs[0], convs[-1]] if convs else []
    return list(dict.fromkeys(ends + sigmoids))


def depthwise_convs(proto: Any) -> list[str]:
    """Names of the depthwise convolutions (``group`` > 1, one input channel per group).

    Kept float32 in INT8 models: on Edge-Lite (MobileNetV3) they were both the F1 loss (test delta
    1.14 -> 0.09 points, val -0.12 -> -0.44) and *slower* in INT8 under ONNX Runtime's CPU kernels
    (1.46x -> 1.78x FP32 tiles/s, one thread); figures and commands in bench/README.md ("tiers").
    """
    weights = {init.name: list(init.dims) for init in proto.graph.initializer}
    out = []
    for node in proto.graph.node:
        if node.op_type != "Conv":
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        dims = weights.get(node.input[1]) if len(node.input) > 1 else None
        if group > 1 and dims is not None and len(dims) > 1 and dims[1] == 1:
            out.append(node.name)
    return out


def _tile_digest(tile: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(tile, dtype=np.float32).tobytes()).hexdigest()[:12]


def _batches(tiles: Iterable[np.ndarray], channels: int) -> Iterator[np.ndarray]:
    """Accept tiles (C x H x W) or batches (N x C x H x W); yield float32 NCHW batches."""
    for item in tiles:
        arr = np.ascontiguousarray(item, dtype=np.float32)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[1] != channels:
            raise ConfigError(
                f"calibration tiles must be C x H x W or N x C x H x W with C={channels}, got {arr.shape}"
            )
        yield arr


class _OneBatch:
    """A CalibrationDataReader holding a single batch: one ``collect_data`` call per batch."""

    def __init__(self, input_name: str, batch: np.ndarray) -> None:
        self._item: dict[str, np.ndarray] | None = {input_name: batch}

    def get_next(self) -> dict[str, np.ndarray] | None:
        item, self._item = self._item, None
        return item


def _calibration(method: str) -> tuple[Any, dict[str, Any]]:
    """ONNX Runtime's CalibrationMethod and extra options for one of :data:`CALIBRATION_METHODS`."""
    from onnxruntime.quantization import CalibrationMethod

    if method == "minmax":
        return CalibrationMethod.MinMax, {"symmetric": True}
    if method == "percentile":
        return CalibrationMethod.Percentile, {"symmetric": True, "percentile": 99.999, "num_bins": 2048}
    if method == "entropy":
        return CalibrationMethod.Entropy, {"symmetric": True, "num_bins": 512, "num_quantized_bins": 128}
    raise ConfigError(f"unknown calibration method '{method}' (known: {', '.join(CALIBRATION_METHODS)})")


def calibrate(
    model_path: Path, tiles: Iterable[np.ndarray], channels: int, work_dir: Path, method: str = "minmax"
) -> tuple[Any, list[str]]:
    """Activation ranges over ``tiles`` (``method``: :data:`CALIBRATION_METHODS`), one small batch in
    memory at a time.

    Why not ``quantize_static``'s own loop: it keeps every batch's activations until the end, and its
    ``CalibMaxIntermediateOutputs`` bound (onnxruntime 1.32) discards the chunks it flushes instead of
    folding them into the ranges. ``collect_data`` called once per batch folds each batch (min of
    mins, max of maxes) and frees it; the histogram methods merge each batch into their histograms.
    Returns the ranges and a digest of every tile fed.
    """
    from onnxruntime.quantization.calibrate import create_calibrator

    calibrate_method, options_ = _calibration(method)
    calibrator = create_calibrator(
        model_path,
        None,
        augmented_model_path=str(work_dir / "augmented.onnx"),
        calibrate_method=calibrate_method,
        extra_options=options_,
    )
    input_name = calibrator.model.graph.input[0].name
    calibrator.model = None  # the augmented copy on disk is all the session needs
    # The calibration session runs unoptimized with every activation observed; without the arena
    # and memory patterns, freed activations go back to the system instead of being kept pooled.
    calibrator.infer_session = open_session(
        calibrator.augmented_model_path, optimize=False, memory_arena=False
    )
    gc.collect()
    digests: list[str] = []
    for batch in _batches(tiles, channels):
        try:
            calibrator.collect_data(_OneBatch(input_name, batch))
        except ValueError as exc:  # numpy's histogram on a constant activation
            raise ModelError(f"{method} calibration failed ({str(exc)[:100]}); try minmax") from None
        digests.extend(_tile_digest(t) for t in batch)
    if not digests:
        raise ConfigError("no calibration tiles: INT8 calibration needs real tiles")
    return calibrator.compute_data(), digests


def _save_with_spec(proto: Any, spec: ModelSpec, out: Path) -> Path:
    import onnx

    write_spec(proto, spec)
    proto.producer_name = "edge-ls"
    onnx.checker.check_model(proto, full_check=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out))
    return out


# ------------------------------------------------------------------------------------------- INT8
def quantize_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    calib_tiles: Iterable[np.ndarray],
    exclude: Sequence[str] | None = None,
    *,
    per_channel: bool = True,
    reduce_range: bool = False,
    calib_source: str = "",
    op_types: Sequence[str] | None = QUANTIZED_OPS,
    calibration: str = "minmax",
) -> Path:
    """Static INT8 quantization in QDQ format, calibrated on ``calib_tiles`` (normalized like the spec).

    ``exclude``: node names left in float32; None means :func:`sensitive_nodes` (first and last conv,
    sigmoids) and :func:`depthwise_convs`. ``op_types``: the op types quantized (None: every op ONNX
    Runtime can quantize).
    ``calibration``: how activation ranges are set (:data:`CALIBRATION_METHODS`).
    The result keeps the FP32 model's metadata with ``precision`` "int8" and a
    ``provenance.quantization`` entry (calibration tiles, excluded nodes, settings).
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src = Path(fp32_path).resolve()  # absolute: pre-processing runs in another working directory
    out = Path(out_path).resolve()
    # Only the metadata of the original is kept in memory: a fusion model is 340 MB per copy.
    original = load_model(src)
    metadata = [(p.key, p.value) for p in original.metadata_props]
    spec = model_spec(original, src.name)
    del original
    if spec.precision != "fp32":
        raise ModelError(f"{src.name} is already {spec.precision}: quantize the FP32 export")
    _calibration(calibration)  # an unknown method fails before any work
    with tempfile.TemporaryDirectory(prefix="edge-ls-q-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        # ONNX Runtime's pre-processing writes its large-model temporaries (sym_shape_infer_temp.onnx,
        # <uuid>.data) into the working directory: run it inside the temporary folder.
        with _working_directory(Path(tmp)):
            try:
                quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
            except Exception as exc:  # symbolic shape inference fails on some graphs: plain ONNX shapes
                log.info("pre-processing with symbolic shapes failed (%s); retrying without", exc)
                quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        prepared = load_model(pre)
        name_nodes(prepared)
        onnx.save(prepared, str(pre))
        excluded = (
            list(exclude)
            if exclude is not None
            else list(dict.fromkeys(sensitive_nodes(prepared) + depthwise_convs(prepared)))
        )
        unknown = sorted(set(excluded) - {n.name for n in prepared.graph.node})
        del prepared
        gc.collect()
        if unknown:
            raise ConfigError(f"cannot keep unknown node(s) in float: {', '.join(unknown[:5])}")
        ranges, digests = calibrate(pre, calib_tiles, len(spec.bands), Path(tmp), calibration)
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(ranges, cache)
        try:
            quantize_static(
                str(pre),
                str(out),
                None,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded,
                calibrate_method=_calibration(calibration)[0],
                op_types_to_quantize=list(op_types) if op_types else None,
                # QuantizeBias=False: TensorRT dequantizes INT8/FP8/INT4 only, never an INT32 bias.
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
                calibration_cache_path=str(cache),
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"INT8 quantization of {src.name} failed: {exc}") from None
    gc.collect()
    quantized = load_model(out)
    have = {p.key for p in quantized.metadata_props}
    for key, value in metadata:  # quantize_static drops the metadata
        if key not in have:
            entry = quantized.metadata_props.add()
            entry.key, entry.value = key, value
    provenance = dict(spec.provenance)
    provenance["quantization"] = {
        "method": f"onnxruntime quantize_static QDQ, {_CALIBRATION_LABELS[calibration]} calibration",
        "activations": "int8 symmetric",
        "weights": "int8 symmetric " + ("per-channel" if per_channel else "per-tensor"),
        "reduce_range": reduce_range,
        "op_types": list(op_types) if op_types else "all",
        "float_nodes": excluded,
        "calibration": {"tiles": len(digests), "source": calib_source, "tile_digests": digests},
    }
    spec = dataclasses.replace(spec, precision="int8", provenance=provenance)
    log.info("INT8 %s: %d calibration tiles, %d nodes kept float", out.name, len(digests), len(excluded))
    return _save_with_spec(quantized, spec, out)


# ------------------------------------------------------------------------------------------- FP16
def convert_fp16(fp32_path: str | Path, out_path: str | Path, keep_fp32: Sequence[str] | None = None) -> Path:
    """FP16 by casts: float tensors become float16, except graph I/O and the ``keep_fp32`` nodes.

    ``keep_fp32`` None means :func:`sensitive_nodes`. Given an INT8 (QDQ) model, its float parts
    become FP16 and the result is recorded as "mixed".
    """
    import onnx

    src = Path(fp32_path)
    proto = load_model(src)
    spec = model_spec(proto, src.name)
    if spec.precision in ("fp16", "mixed"):
        raise ModelError(f"{src.name} is already {spec.precision}")
    name_nodes(proto)
    keep = set(keep_fp32) if keep_fp32 is not None else set(sensitive_nodes(proto))
    unknown = sorted(keep - {n.name for n in proto.graph.node})
    if unknown:
        raise ConfigError(f"cannot keep unknown node(s) in float32: {', '.join(unknown[:5])}")
    was_int8 = spec.precision == "int8"
    if was_int8:  # Q/DQ scales must stay float32: ONNX types them with the float side of the pair
        keep |= {n.name for n in proto.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")}
    _cast_to_fp16(proto, keep)
    onnx.checker.check_model(proto, full_check=False)
    provenance = dict(spec.provenance)
    provenance["fp16"] = {
        "method": "edge-ls cast pass (float16 tensors, float32 graph I/O)",
        "float_nodes": sorted(keep)[:200],
    }
    spec = dataclasses.replace(spec, precision="mixed" if was_int8 else "fp16", provenance=provenance)
    return _save_with_spec(proto, spec, Path(out_path))


def _cast_to_fp16(proto: Any, keep: set[str]) -> None:
    """Rewrite ``proto`` in place: float16 everywhere except graph I/O and the ``keep`` nodes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
    inferred = onnx.shape_inference.infer_shapes(proto)
    dtype: dict[str, int] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dtype[vi.name] = vi.type.tensor_type.elem_type
    inits = {t.name: t for t in graph.initializer}
    for t in graph.initializer:
        dtype[t.name] = t.data_type
    keep |= {n.name for n in graph.node if n.op_type in SUBGRAPH_OPS}

    def half_mode(node: Any) -> bool:
        return node.name not in keep

    # 1. Decide each tensor's new type: float outputs of float16 nodes become float16.
    new_type = dict(dtype)
    for node in graph.node:
        if not half_mode(node):
            continue
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == FLOAT:
                    arr = numpy_helper.to_array(attr.t)
                    attr.t.CopyFrom(
                        numpy_helper.from_array(
                            np.clip(arr, -FP16_MAX, FP16_MAX).astype(np.float16), attr.t.name
                        )
                    )
                    new_type[node.output[0]] = HALF
            continue
        if node.op_type in ("Cast", "ConstantOfShape"):
            for attr in node.attribute:
                if node.op_type == "Cast" and attr.name == "to" and attr.i == FLOAT:
                    attr.i = HALF
                    new_type[node.output[0]] = HALF
                if node.op_type == "ConstantOfShape" and attr.name == "value" and attr.t.data_type == FLOAT:
                    attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16)))
                    new_type[node.output[0]] = HALF
            continue
        for out in node.output:
            if dtype.get(out) == FLOAT:
                new_type[out] = HALF

    # 2. Initializers used only where float16 is wanted are converted; others stay float32.
    wants: dict[str, set[int]] = {}
    for node in graph.node:
        for idx, name in enumerate(node.input):
            if name in inits and inits[name].data_type == FLOAT:
                want = HALF if half_mode(node) and (node.op_type, idx) not in FLOAT32_ONLY_INPUTS else FLOAT
                wants.setdefault(name, set()).add(want)
    for name, want in wants.items():
        if want == {HALF}:
            tensor = inits[name]
            arr = np.clip(numpy_helper.to_array(tensor), -FP16_MAX, FP16_MAX).astype(np.float16)
            tensor.CopyFrom(numpy_helper.from_array(arr, name))
            new_type[name] = HALF
    graph_inputs = {i.name for i in graph.input}
    for name in graph_inputs:
        new_type[name] = dtype.get(name, FLOAT)  # I/O stays float32

    # 3. Insert casts where a consumer wants another float type than the producer gives.
    casts: dict[tuple[str, int], str] = {}
    new_nodes: list[Any] = []

    def cast_of(name: str, to: int) -> str:
        key = (name, to)
        if key not in casts:
            casts[key] = f"{name}__to_{'fp16' if to == HALF else 'fp32'}"
            new_nodes.append(
                helper.make_node(
                    "Cast",
                    [name],
                    [casts[key]],
                    to=to,
                    name=f"Cast_{len(casts)}_{'fp16' if to == HALF else 'fp32'}",
                )
            )
        return casts[key]

    rebuilt: list[Any] = []
    for node in graph.node:
        new_nodes = []
        for idx, name in enumerate(node.input):
            have = new_type.get(name)
            if not name or have not in (FLOAT, HALF):
                continue
            if node.op_type in ("Cast", "Shape", "Size"):
                continue  # they accept any type
            want = HALF if half_mode(node) and (node.op_type, idx) not in FLOAT32_ONLY_INPUTS else FLOAT
            if have != want:
                node.input[idx] = cast_of(name, want)
        rebuilt.extend(new_nodes)
        rebuilt.append(node)
    # 4. Graph outputs stay float32: rename the float16 producer output and cast back.
    tail: list[Any] = []
    for out in graph.output:
        if new_type.get(out.name) != HALF:
            continue
        inner = f"{out.name}__fp16"
        for node in rebuilt:
            node.output[:] = [inner if o == out.name else o for o in node.output]
            node.input[:] = [inner if i == out.name else i for i in node.input]
        tail.append(helper.make_node("Cast", [inner], [out.name], to=FLOAT, name=f"Cast_out_{out.name}"))
    del graph.node[:]
    graph.node.extend(rebuilt + tail)
    del graph.value_info[:]  # stale types; ORT and checkers re-infer them


# --------------------------------------------------------------------------------------- accuracy
def describe_loss(delta_f1: float) -> str:
    """``delta_f1`` (FP32 minus quantized, in points) as words with one sign convention: "lost 0.02 F1
    points" or "gained 1.30 F1 points"; a delta that rounds to zero is "lost 0.00", never "-0.00"."""
    shown = round(delta_f1, 2)
    if shown < 0:
        return f"gained {-shown:.2f} F1 points"
    return f"lost {abs(shown):.2f} F1 points"


def accuracy_delta(
    fp32_path: str | Path,
    q_path: str | Path,
    eval_data: Any,
    *,
    budget_f1: float | None = DEFAULT_BUDGET_F1,
    record: bool = True,
    eval_source: str = "",
    scorer: Callable[[Path, Any], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """F1/IoU of the FP32 and quantized models on ``eval_data`` (labelled tiles) and the difference.

    ``delta_f1`` is FP32 F1 minus quantized F1 in points (positive = lost). Refuses evaluation tiles
    that were calibration tiles (by content digest). With ``record`` the result is written into the
    quantized model's metadata (``provenance.accuracy``); past ``budget_f1`` it raises ModelError
    after recording, so the failing artifact can be inspected but never ships.
    """
    from edge_ls.export.accuracy import budget_scores
    from edge_ls.io.labelled import LabelledTiles

    score = scorer or budget_scores
    q = Path(q_path)
    q_spec = read_spec(q)
    calib = set(q_spec.provenance.get("quantization", {}).get("calibration", {}).get("tile_digests", []))
    if isinstance(eval_data, LabelledTiles) and calib:
        pairs = zip(eval_data.names, eval_data.images, strict=True)
        shared = [name for name, tile in pairs if _tile_digest(tile) in calib]
        if shared:
            raise ConfigError(
                f"{len(shared)} evaluation tile(s) were calibration tiles (e.g. {shared[0]}): "
                "the accuracy delta must be measured on tiles disjoint from calibration"
            )
    base = score(Path(fp32_path), eval_data)
    quant = score(q, eval_data)
    result = {
        "fp32": {k: base[k] for k in ("f1", "iou", "precision", "recall")},
        q_spec.precision: {k: quant[k] for k in ("f1", "iou", "precision", "recall")},
        "delta_f1": base["f1"] - quant["f1"],
        "delta_iou": base["iou"] - quant["iou"],
        "tiles": quant.get("tiles"),
        "eval_source": eval_source,
        "budget_f1": budget_f1,
        "disjoint_from_calibration": bool(calib) or q_spec.precision != "int8",
    }
    if record:
        _record_accuracy(q, q_spec, result)
    if budget_f1 is not None and result["delta_f1"] > budget_f1:
        raise ModelError(
            f"{q.name} {describe_loss(result['delta_f1'])} against FP32 on "
            f"{eval_source or 'the eval set'} "
            f"(budget {budget_f1:g}): keep more layers in float or calibrate on more tiles"
        )
    return result


def _record_accuracy(path: Path, spec: ModelSpec, result: dict[str, Any]) -> None:
    import onnx

    proto = load_model(path)
    provenance = dict(spec.provenance)
    provenance["accuracy"] = result
    write_spec(proto, dataclasses.replace(spec, provenance=provenance))
    onnx.save(proto, str(path))


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    """chdir for the duration of a block (contextlib.chdir is Python >= 3.11 only)."""
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)
