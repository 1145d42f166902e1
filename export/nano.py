"""Build ``edge-nano``: the spectral-index tier-0 detector, as a tiny ONNX graph.

Landslides on vegetated slopes expose bare soil and rock, so a vegetation index drops where they are.
``edge-nano`` computes the Visible-band Difference Vegetation Index of RGB imagery,

    VDVI = (2G - R - B) / (2G + R + B)        (Wang Xiaoqin et al., 2015, Trans. CSAE 31(5):152-159)

on [0, 1] reflectance-like values, and maps "less green than a threshold" to a probability:

    p = sigmoid(K * (T - VDVI)),   T = 0.03, K = 50

Fixed coefficients: T sits on the vegetated / non-vegetated boundary of VDVI; it was picked by looking
at the pixels of ../shared/data/real (cas_hokkaido, bijie), so its scores there are optimistic. It is a
real, explainable reference row, not a landslide model: bare fields, roads and rivers fire too.
Run: ``python -m edge_ls.export.nano`` (writes edge_ls/models/edge-nano.onnx).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge_ls.artifact import ModelSpec, write_spec

THRESHOLD_VDVI = 0.03
STEEPNESS = 50.0
EPS = 1e-6
OUT_DEFAULT = Path(__file__).resolve().parents[1] / "edge_ls" / "models" / "edge-nano.onnx"

SPEC = ModelSpec(
    name="edge-nano",
    tier="edge-nano",
    bands=("red", "green", "blue"),
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    input_range="8bit",
    gsd_m=1.0,
    tile_size=512,
    overlap=0.2,
    activation="sigmoid",
    threshold=0.5,
    temperature=1.0,
    precision="fp32",
    provenance={
        "kind": "spectral index (VDVI), fixed coefficients, no training",
        "formula": f"sigmoid({STEEPNESS} * ({THRESHOLD_VDVI} - (2G-R-B)/(2G+R+B)))",
        "reference": "Wang X. et al. 2015, Trans. Chinese Society of Agricultural Engineering 31(5):152-159",
        "script": "export/nano.py",
    },
)


def build_graph() -> onnx.ModelProto:
    """The VDVI graph: slice R, G, B; ratio; affine; sigmoid. Dynamic batch and tile size."""

    def const(name: str, value: float | list[int]) -> onnx.TensorProto:
        dtype = np.int64 if isinstance(value, list) else np.float32
        return numpy_helper.from_array(np.array(value, dtype=dtype), name)

    inits = [
        const("r_lo", [0]),
        const("g_lo", [1]),
        const("b_lo", [2]),
        const("b_hi", [3]),
        const("axis", [1]),
        const("two", 2.0),
        const("eps", EPS),
        const("t", THRESHOLD_VDVI),
        const("k", STEEPNESS),
    ]
    nodes = [
        helper.make_node("Slice", ["image", "r_lo", "g_lo", "axis"], ["r"]),
        helper.make_node("Slice", ["image", "g_lo", "b_lo", "axis"], ["g"]),
        helper.make_node("Slice", ["image", "b_lo", "b_hi", "axis"], ["b"]),
        helper.make_node("Mul", ["g", "two"], ["g2"]),
        helper.make_node("Add", ["r", "b"], ["rb"]),
        helper.make_node("Sub", ["g2", "rb"], ["num"]),
        helper.make_node("Add", ["g2", "rb"], ["den0"]),
        helper.make_node("Add", ["den0", "eps"], ["den"]),
        helper.make_node("Div", ["num", "den"], ["vdvi"]),
        helper.make_node("Sub", ["t", "vdvi"], ["margin"]),
        helper.make_node("Mul", ["margin", "k"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["prob"]),
    ]
    graph = helper.make_graph(
        nodes,
        "edge_nano_vdvi",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["batch", 1, "height", "width"])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edge-ls")
    model.ir_version = 8
    write_spec(model, SPEC)
    onnx.checker.check_model(model)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DEFAULT)
    args = parser.parse_args()
    onnx.save(build_graph(), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
