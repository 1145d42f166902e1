"""Check an ONNX graph against TensorRT's documented ONNX support BEFORE a (long) engine build.

Source: the ONNX-TensorRT operator support matrix (``onnx/onnx-tensorrt`` ``docs/operators.md``,
TensorRT 10.15: opsets 9 to 24). Besides the operator list, the restrictions that matter for this
project's models are checked: Q/DQ must be symmetric signed INT8 (zero point 0, TensorRT's only
INT8 form: UINT8 exists only as network I/O), Resize modes, pooling dilations and MaxPool indices,
and reduction axes that must be build-time constants. Every problem names the node and its operator,
so the fix can be made in the exporter instead of after a failed build on the target GPU.

TensorRT's own parser remains the final judge (:mod:`edge_ls.engines.build` reports its errors the
same way); this check catches what is documented, on a machine without TensorRT.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_ls.engines.optional import import_onnx
from edge_ls.errors import ModelError

#: Version of the support matrix transcribed below.
MATRIX_VERSION = "TensorRT 10.15"
MIN_OPSET, MAX_OPSET = 9, 24


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: ``Y`` rows of the matrix.
SUPPORTED_OPS = _words("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh Attention AveragePool BatchNormalization
BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh
CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike
Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool
Greater GreaterOrEqual GridSample GroupNormalization GRU HammingWindow HannWindow HardSigmoid HardSwish
Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less
LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean
ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RMSNormalization RNN
RoiAlign RotaryEmbedding Round STFT ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink
Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan
Tanh TensorScatter ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""")

#: ``N`` rows of the matrix (named explicitly so the message can say "documented as unsupported").
UNSUPPORTED_OPS = _words("""
AffineGrid Bernoulli BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor Col2Im CenterCropPad Compress
ConcatFromSequence ConvInteger DFT Det DynamicQuantizeLinear ImageDecoder MatMulInteger MaxRoiPool
MaxUnpool MelWeightMatrix Multinomial NegativeLogLikelihoodLoss Optional OptionalGetElement
OptionalHasElement QLinearConv QLinearMatMul RegexFullMatch SequenceAt SequenceConstruct SequenceEmpty
SequenceErase SequenceInsert SequenceLength SequenceMap SoftmaxCrossEntropyLoss SplitToSequence
StringConcat StringNormalizer StringSplit TfIdfVectorizer Unique
""")

_RESIZE_COORDS = ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners")
_RESIZE_MODES = ("nearest", "linear")
_NEAREST_MODES = ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil")
_REDUCE_OPS = frozenset(op for op in SUPPORTED_OPS if op.startswith("Reduce"))
_INT8 = 3  # onnx.TensorProto.INT8
_UINT8 = 2  # onnx.TensorProto.UINT8
_INT32 = 6  # onnx.TensorProto.INT32


@dataclass(frozen=True)
class OpProblem:
    """One node TensorRT will not take, and why."""

    node: str
    op: str
    reason: str

    def __str__(self) -> str:
        return f"node '{self.node}' ({self.op}): {self.reason}"


def load_graph(model: str | Path | Any) -> Any:
    """An ``onnx.ModelProto`` from a path (weights not loaded: only the graph is inspected)."""
    if not isinstance(model, str | Path):
        return model
    onnx = import_onnx("Checking ONNX operators before a TensorRT build")
    path = Path(model)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends for a corrupt file
        raise ModelError(f"{path.name} is not a valid ONNX file ({type(exc).__name__})") from None


def check_model(model: str | Path | Any) -> list[OpProblem]:
    """Every documented reason TensorRT would reject this graph (empty list: nothing found)."""
    proto = load_graph(model)
    problems: list[OpProblem] = []
    opset = _default_opset(proto)
    if opset is not None and not MIN_OPSET <= opset <= MAX_OPSET:
        problems.append(
            OpProblem(
                "<model>",
                f"opset {opset}",
                f"{MATRIX_VERSION} supports ONNX opsets {MIN_OPSET} to {MAX_OPSET}",
            )
        )
    constants = _constant_names(proto.graph)
    consts = _constants(proto.graph)
    for node in _walk(proto.graph):
        problems.extend(_node_problems(node, constants, consts))
    return problems


def ensure_supported(model: str | Path | Any, name: str | None = None) -> None:
    """Raise a ModelError naming the first unsupported nodes (and how many more there are)."""
    problems = check_model(model)
    if not problems:
        return
    label = name or (Path(model).name if isinstance(model, str | Path) else "the model")
    shown = "; ".join(str(p) for p in problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    raise ModelError(f"TensorRT cannot build {label}: {shown}{more} [checked against {MATRIX_VERSION}]")


def graph_precisions(model: str | Path | Any) -> set[str]:
    """Which explicit precisions the graph carries: 'int8' (Q/DQ nodes), 'fp16' (float16 tensors).

    A strongly typed TensorRT build follows the graph's types exactly, so a profile asking for INT8 or
    FP16 needs them here; an FP32 graph builds an FP32 engine whatever the profile says.
    """
    proto = load_graph(model)
    found = {"fp32"}
    nodes = list(_walk(proto.graph))
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in nodes):
        found.add("int8")
    fp16 = 10  # onnx.TensorProto.FLOAT16
    if (
        any(n.op_type == "Cast" and _attr(n, "to") == fp16 for n in nodes)
        or any(t.data_type == fp16 for t in proto.graph.initializer)
        or any(v.type.tensor_type.elem_type == fp16 for v in (*proto.graph.input, *proto.graph.output))
    ):
        found.add("fp16")
    return found


# ------------------------------------------------------------------------------------------ internals


def _default_opset(proto: Any) -> int | None:
    versions = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    return max(versions) if versions else None


def _walk(graph: Any) -> Iterator[Any]:
    """Every node, including those inside If/Loop/Scan bodies."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g.node:
                yield from _walk(attr.g)
            for sub in attr.graphs:
                yield from _walk(sub)


def _constant_names(graph: Any) -> set[str]:
    names = {t.name for t in graph.initializer}
    names.update(o for n in graph.node if n.op_type in ("Constant", "ConstantOfShape") for o in n.output)
    return names


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from_proto = {a.name: a for a in node.attribute}
    if name not in from_proto:
        return default
    a = from_proto[name]
    kind = a.type  # AttributeProto: 1 FLOAT, 2 INT, 3 STRING, 7 INTS
    if kind == 1:
        return a.f
    if kind == 2:
        return a.i
    if kind == 3:
        return a.s.decode()
    if kind == 7:
        return list(a.ints)
    return default


def _node_problems(
    node: Any, constants: set[str], consts: dict[str, tuple[int, list[int] | None]]
) -> Iterable[OpProblem]:
    name, op = node.name or (node.output[0] if node.output else "?"), node.op_type
    if node.domain not in ("", "ai.onnx"):
        yield OpProblem(
            name,
            f"{node.domain}.{op}",
            "custom-domain operator: TensorRT parses standard ONNX "
            "operators only (unless a plugin implements it); export without contrib ops",
        )
        return
    if op in UNSUPPORTED_OPS:
        yield OpProblem(name, op, f"documented as unsupported by TensorRT ({MATRIX_VERSION})")
        return
    if op not in SUPPORTED_OPS:
        yield OpProblem(name, op, f"not in TensorRT's ONNX support matrix ({MATRIX_VERSION})")
        return
    if op in ("QuantizeLinear", "DequantizeLinear"):
        yield from _qdq_problems(node, name, consts)
    elif op == "Resize":
        yield from _resize_problems(node, name)
    elif op in ("MaxPool", "AveragePool", "LpPool"):
        dil = _attr(node, "dilations", [])
        if any(d != 1 for d in dil):
            yield OpProblem(name, op, f"dilations {dil} unsupported (must be empty or all ones)")
        if op == "MaxPool" and len([o for o in node.output if o]) > 1:
            yield OpProblem(name, op, "the Indices output is unsupported")
    elif op in _REDUCE_OPS and len(node.input) > 1 and node.input[1] and node.input[1] not in constants:
        yield OpProblem(name, op, "`axes` must be an initializer (a build-time constant)")
    elif op == "CumSum" and node.input[1] not in constants:
        yield OpProblem(name, op, "`axis` must be a build-time constant")
    elif op == "TopK" and _attr(node, "sorted", 1) != 1:
        yield OpProblem(name, op, "`sorted` must be 1")


def _qdq_problems(
    node: Any, name: str, consts: dict[str, tuple[int, list[int] | None]]
) -> Iterable[OpProblem]:
    """TensorRT quantization is symmetric signed: zero point 0, INT8 (or FP8/INT4), never UINT8/INT32."""
    if node.op_type == "DequantizeLinear" and consts.get(node.input[0], (0, None))[0] == _INT32:
        yield OpProblem(
            name,
            node.op_type,
            "INT32 dequantization (a quantized bias) is unsupported: "
            "TensorRT dequantizes INT8/FP8/INT4 only; keep biases in float "
            "(ONNX Runtime: extra_options QuantizeBias=False)",
        )
        return
    if len(node.input) < 3 or not node.input[2]:
        if node.op_type == "QuantizeLinear" and _attr(node, "output_dtype", 0) == _UINT8:
            yield OpProblem(name, node.op_type, "UINT8 quantization unsupported: use symmetric INT8")
        return  # no zero point: 0, and the quantized type defaults to UINT8 only via output_dtype
    dtype, values = consts.get(node.input[2], (0, None))
    if values is None:
        yield OpProblem(name, node.op_type, "zero point must be a constant (0)")
    elif dtype == _UINT8:
        yield OpProblem(
            name,
            node.op_type,
            "UINT8 zero point: TensorRT takes only signed INT8 Q/DQ "
            "(quantize with activation_type=QInt8, weight_type=QInt8, symmetric)",
        )
    elif any(v != 0 for v in values):
        yield OpProblem(
            name,
            node.op_type,
            f"zero point must be 0 (symmetric quantization); found {sorted(set(values))[:4]}",
        )


def _constants(graph: Any) -> dict[str, tuple[int, list[int] | None]]:
    """Constant tensors: name -> (ONNX dtype, values when a small integer tensor, else None)."""
    from onnx import numpy_helper

    tensors = {t.name: t for t in graph.initializer}
    for n in _walk(graph):
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value" and n.output:
                    tensors[n.output[0]] = a.t
    out: dict[str, tuple[int, list[int] | None]] = {}
    for tname, t in tensors.items():
        small_int = t.data_type in (_INT8, _UINT8, _INT32) and _numel(t) <= 65536 and not t.external_data
        out[tname] = (t.data_type, [int(v) for v in numpy_helper.to_array(t).ravel()] if small_int else None)
    return out


def _numel(t: Any) -> int:
    n = 1
    for d in t.dims:
        n *= d
    return n


def _resize_problems(node: Any, name: str) -> Iterable[OpProblem]:
    mode = _attr(node, "mode", "nearest")
    coords = _attr(node, "coordinate_transformation_mode", "half_pixel")
    if mode not in _RESIZE_MODES:
        yield OpProblem(name, "Resize", f"mode '{mode}' unsupported (TensorRT: {', '.join(_RESIZE_MODES)})")
    if coords not in _RESIZE_COORDS:
        yield OpProblem(name, "Resize", f"coordinate_transformation_mode '{coords}' unsupported")
    if mode == "nearest" and _attr(node, "nearest_mode", "round_prefer_floor") not in _NEAREST_MODES:
        yield OpProblem(name, "Resize", f"nearest_mode '{_attr(node, 'nearest_mode')}' unsupported")
    if _attr(node, "antialias", 0):
        yield OpProblem(name, "Resize", "antialiasing is unsupported")
    if _attr(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
        yield OpProblem(name, "Resize", "only keep_aspect_ratio_policy 'stretch' is supported")
