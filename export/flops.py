"""Parameter and FLOP counts read off an ONNX graph (FP32 or Q/DQ), for manifests and benchmarks.

Counted from the graph rather than the PyTorch module so that an artifact given only as ONNX (``edge-ls
export --onnx``) gets the same figures as one exported here. Convention: ``macs`` are multiply-
accumulates of Conv/ConvTranspose/Gemm/MatMul at the given input size; ``flops`` = 2 x ``macs``;
elementwise ops are not counted (they are a few percent of a CNN's work).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class GraphCost:
    params: int
    macs: int
    tile: int

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def gflops(self) -> float:
        return self.flops / 1e9


def count_params(proto: Any) -> int:
    """Learned values: initializers, minus Q/DQ scales and zero points and integer shape constants."""
    from onnx import TensorProto

    aux = {n.input[i] for n in proto.graph.node if n.op_type in QDQ_OPS for i in (1, 2) if i < len(n.input)}
    skip_types = (TensorProto.INT64, TensorProto.BOOL)
    total = 0
    for t in proto.graph.initializer:
        if t.name in aux or t.data_type in skip_types or len(t.dims) == 0:
            continue
        total += int(np.prod(t.dims))
    return total


def graph_cost(proto: Any, tile: int, batch: int = 1) -> GraphCost:
    """Params and MACs of ``proto`` for a batch x C x tile x tile input (a copy is shape-inferred)."""
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    inp = model.graph.input[0]
    dims = inp.type.tensor_type.shape.dim
    concrete = [batch, dims[1].dim_value or 3, tile, tile]
    for dim, value in zip(dims, concrete, strict=False):
        dim.ClearField("dim_param")
        dim.dim_value = value
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, list[int]] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    inits = {t.name: list(t.dims) for t in model.graph.initializer}
    # A Q/DQ weight reaches the conv through DequantizeLinear: map its output to the stored weight.
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            inits[node.output[0]] = inits[node.input[0]]
    macs = 0
    for node in model.graph.node:
        out = shapes.get(node.output[0], [])
        if not out or not all(out):
            continue
        if node.op_type in ("Conv", "ConvTranspose") and node.input[1] in inits:
            weight = inits[node.input[1]]
            kernel = int(np.prod(weight[2:]))
            if node.op_type == "Conv":  # weight: Cout x Cin/g x k...
                macs += int(np.prod(out)) * weight[1] * kernel
            else:  # ConvTranspose weight: Cin x Cout/g x k...; every input pixel scatters a kernel
                src = shapes.get(node.input[0], [])
                if src and all(src):
                    macs += int(np.prod(src)) * weight[1] * kernel
        elif node.op_type in ("Gemm", "MatMul"):
            other = inits.get(node.input[1]) or shapes.get(node.input[1], [])
            if other and all(other):
                k = other[-2] if node.op_type == "MatMul" or not _attr(node, "transB") else other[-1]
                macs += int(np.prod(out)) * k
    return GraphCost(params=count_params(proto), macs=macs, tile=tile)


def _attr(node: Any, name: str) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return 0
