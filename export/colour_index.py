"""The tuned colour-index baseline every learned tier must beat: excess red, ``1.4 R - G > t``.

Bare soil and fresh scars are redder than the vegetation around them, so ``1.4 R - G`` rises on a
landslide. This is the one-line index the accuracy issue measured against Edge-Lite; it is kept as a
reference row of the accuracy ladder, scored by the same path as every model (an ONNX graph with a
``ModelSpec``, ``edge_ls.evaluate``).

Fitted, not hand-picked: ``t`` maximizes pooled F1 on the *training* split of cas_hokkaido + bijie
(the split file of ``training/configs/split_all.json``), and the steepness ``k`` of
``p = sigmoid(k (1.4 R - G - t))`` minimizes the log loss there, so its ECE is a fair one.
Run: ``python -m edge_ls.export.colour_index --out runs/baselines/excess-red.onnx``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge_ls.artifact import ModelSpec, write_spec

RED_WEIGHT = 1.4
DEFAULT_ROOTS = ("../shared/data/real/cas_hokkaido", "../shared/data/real/bijie")
DEFAULT_SPLIT = "training/configs/split_all.json"


def index_pixels(roots: list[str], split_file: str, split: str = "train", stride: int = 3) -> np.ndarray:
    """(index, label) of every ``stride``-th pixel of a split: the data the fit sees."""
    from edge_ls.training import datasets, splits

    ds = datasets.open_datasets(roots)
    wanted = set(splits.load_splits(split_file)[split])
    values, labels = [], []
    for i, sid in enumerate(ds.ids):
        if sid not in wanted:
            continue
        sample = ds.try_get(i)
        if sample is None:
            continue
        img = sample.image[::stride, ::stride]
        values.append((RED_WEIGHT * img[..., 0] - img[..., 1]).ravel())
        labels.append(sample.mask[::stride, ::stride].ravel())
    if not values:
        from edge_ls.errors import InputError

        raise InputError(f"no '{split}' tiles of {', '.join(roots)} in {split_file}")
    return np.stack([np.concatenate(values), np.concatenate(labels).astype(np.float32)])


def fit(pixels: np.ndarray) -> tuple[float, float, float]:
    """(t, k, F1 at t): t by the best pooled F1 on a grid, k by the log loss at that t."""
    x, y = pixels[0], pixels[1] > 0.5
    grid = np.quantile(x, np.linspace(0.5, 0.995, 200))
    best_t, best_f1 = float(grid[0]), -1.0
    for t in grid:
        pred = x > t
        tp = float(np.sum(pred & y))
        f1 = 2 * tp / max(1.0, float(pred.sum() + y.sum()))
        if f1 > best_f1:
            best_t, best_f1 = float(t), f1
    best_k, best_nll = 1.0, np.inf
    for k in np.geomspace(1, 500, 60):
        z = np.clip(k * (x - best_t), -60, 60)
        nll = float(np.mean(np.logaddexp(0, z) - y * z))
        if nll < best_nll:
            best_k, best_nll = float(k), nll
    return best_t, best_k, best_f1


def build_graph(t: float, k: float, provenance: dict) -> onnx.ModelProto:
    """``sigmoid(k (1.4 R - G - t))`` on N x 3 x H x W [0, 1] RGB; dynamic batch and size."""

    def const(name: str, value: float | list[int]) -> onnx.TensorProto:
        dtype = np.int64 if isinstance(value, list) else np.float32
        return numpy_helper.from_array(np.array(value, dtype=dtype), name)

    inits = [
        const("r_lo", [0]),
        const("g_lo", [1]),
        const("g_hi", [2]),
        const("axis", [1]),
        const("wr", RED_WEIGHT),
        const("t", t),
        const("k", k),
    ]
    nodes = [
        helper.make_node("Slice", ["image", "r_lo", "g_lo", "axis"], ["r"]),
        helper.make_node("Slice", ["image", "g_lo", "g_hi", "axis"], ["g"]),
        helper.make_node("Mul", ["r", "wr"], ["r14"]),
        helper.make_node("Sub", ["r14", "g"], ["exr"]),
        helper.make_node("Sub", ["exr", "t"], ["margin"]),
        helper.make_node("Mul", ["margin", "k"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["prob"]),
    ]
    graph = helper.make_graph(
        nodes,
        "excess_red",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["batch", 1, "height", "width"])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edge-ls")
    model.ir_version = 8
    spec = ModelSpec(
        name="excess-red",
        tier="baseline",
        bands=("red", "green", "blue"),
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        input_range="8bit",
        gsd_m=1.0,
        tile_size=512,
        overlap=0.2,
        activation="sigmoid",
        threshold=0.5,
        provenance=provenance,
    )
    write_spec(model, spec)
    onnx.checker.check_model(model)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--roots", nargs="+", default=list(DEFAULT_ROOTS))
    parser.add_argument("--split-file", default=DEFAULT_SPLIT)
    args = parser.parse_args(argv)
    t, k, f1 = fit(index_pixels(args.roots, args.split_file))
    provenance = {
        "kind": "colour index 1.4R - G, fitted (no learning beyond t and k)",
        "fitted_on": [str(r) for r in args.roots],
        "split": f"train of {args.split_file}",
        "t": round(t, 5),
        "k": round(k, 3),
        "train_f1": round(f1, 4),
        "script": "export/colour_index.py",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(build_graph(t, k, provenance), args.out)
    print(json.dumps({"out": str(args.out), **provenance}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
