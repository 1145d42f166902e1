"""How bench/tiers.py's pruning ratio and INT8 settings for Edge-Lite were chosen: on the val split.

``python bench/tiers_choices.py --json OUT.json [--checkpoint runs/edge_lite] [--part prune,int8]``

- ``prune``: ratios x {head inputs kept, not kept}: params, GFLOPs at 512 px, and PyTorch pixel F1
  (threshold 0.5, the spec's) on val and test right after pruning and after the distillation
  bench/tiers.py runs (train split, 256 px).
- ``int8``: calibration method x {depthwise convs float or INT8}: ONNX Runtime F1 on val and test and
  a one-thread tiles/s ratio against FP32 (indicative only: the real timing is bench/tiers.py's).

Choices are made on val; test is reported, never used to choose. One thread throughout.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.tiers import (
    CALIB_SET,
    CALIB_TILES,
    FINE_TUNE_IOU_WEIGHT,
    FINE_TUNE_LR,
    FINE_TUNE_STEPS,
    REAL,
    ROUND_TO,
    split_data,
)


def prune_part(model: Any, spec: Any, ratios: list[float], sets: dict[str, Any]) -> list[dict[str, Any]]:
    import torch

    from edge_ls.export.prune import distill_fine_tune, prune_channels, torch_scores

    train = split_data(spec, "train", 256)

    def f1(m: Any) -> dict[str, float]:
        return {k: round(torch_scores(m, x, y, spec.threshold)["f1"], 2) for k, (x, y) in sets.items()}

    rows = [{"ratio": 0.0, "f1": f1(model)}]
    print(rows[0], flush=True)
    for ratio in ratios:
        for keep in (True, False) if ratio == max(ratios) else (True,):
            pruned, report = prune_channels(
                model, torch.zeros(1, 3, 512, 512), ratio, round_to=ROUND_TO, keep_head_inputs=keep
            )
            row: dict[str, Any] = {
                "ratio": ratio,
                "keep_head_inputs": keep,
                "params": report.params_after,
                "gflops_512": round(2 * report.macs_after / 1e9, 2),
                "f1_after_prune": f1(pruned),
            }
            t0 = time.perf_counter()
            distill_fine_tune(
                pruned, model, *train, steps=FINE_TUNE_STEPS, lr=FINE_TUNE_LR, iou_weight=FINE_TUNE_IOU_WEIGHT
            )
            row["fine_tune_s"] = round(time.perf_counter() - t0, 1)
            row["f1"] = f1(pruned)
            x = torch.from_numpy(np.ascontiguousarray(sets["val"][0][:2]))
            with torch.inference_mode():
                row["max_val_logit"] = round(float(pruned(x).max()), 3)
            row["head_bias"] = round(float(pruned.decoder.final[-1].bias), 3)
            rows.append(row)
            print(row, flush=True)
    return rows


def int8_part(model: Any, spec: Any, sets: dict[str, Any], work: Path) -> list[dict[str, Any]]:
    from edge_ls.artifact import read_spec
    from edge_ls.backends.onnxrt import open_session
    from edge_ls.export.onnx_export import export_onnx
    from edge_ls.export.quantize import CALIBRATION_METHODS, quantize_int8, sensitive_nodes
    from edge_ls.io.labelled import iter_batches, load_tiles
    from edge_ls.metrics import PixelMetrics, percent_scores

    fp32 = export_onnx(
        model, spec, work / "fp32.onnx", sample=load_tiles(REAL / "cas_hokkaido", spec, size=256, limit=2)
    )

    def session(path: Path) -> Any:
        return open_session(path, threads=1, inter_op_threads=1)

    def f1(path: Path) -> dict[str, float]:
        s, sp = session(path), read_spec(path)
        name, out = s.get_inputs()[0].name, {}
        for k, (x, y) in sets.items():
            counts = PixelMetrics(threshold=sp.threshold)
            for i in range(0, len(x), 4):
                raw = s.run(None, {name: np.ascontiguousarray(x[i : i + 4])})[0]
                counts.update(sp.probabilities(raw).reshape(y[i : i + 4].shape), y[i : i + 4])
            out[k] = round(percent_scores(counts.compute())["f1"], 2)
        return out

    def tiles_per_s(path: Path, repeats: int = 16) -> float:
        s = session(path)
        name, x = s.get_inputs()[0].name, np.ascontiguousarray(sets["val"][0][:2])
        s.run(None, {name: x})
        t0 = time.perf_counter()
        for _ in range(repeats):
            s.run(None, {name: x})
        return 2 * repeats / (time.perf_counter() - t0)

    base = {"variant": "fp32", "f1": f1(fp32), "tiles_per_s_1thread": round(tiles_per_s(fp32), 2)}
    print(base, flush=True)
    rows = [base]
    for method in CALIBRATION_METHODS:
        for depthwise_float in (True, False):
            out = work / f"int8-{method}-{int(depthwise_float)}.onnx"
            # depthwise_float=False: the first/last conv and sigmoids only (the earlier default)
            exclude = None if depthwise_float else _pre_processed_sensitive(fp32, sensitive_nodes)
            t0 = time.perf_counter()
            calib = iter_batches(REAL / CALIB_SET, spec, batch=2, size=512, limit=CALIB_TILES)
            quantize_int8(fp32, out, calib, exclude=exclude, calibration=method)
            row = {
                "variant": "int8",
                "calibration": method,
                "depthwise_float": depthwise_float,
                "quantize_s": round(time.perf_counter() - t0, 1),
                "f1": f1(out),
            }
            tps = tiles_per_s(out)
            row["tiles_per_s_1thread"] = round(tps, 2)
            row["speedup_1thread"] = round(tps / base["tiles_per_s_1thread"], 2)
            row["delta_f1"] = {k: round(base["f1"][k] - row["f1"][k], 2) for k in sets}
            rows.append(row)
            print(row, flush=True)
    return rows


def _pre_processed_sensitive(fp32: Path, pick: Any) -> list[str]:
    """``pick(graph)`` on the graph quantize_int8 sees (after ONNX Runtime's pre-processing)."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edge_ls.export.quantize import name_nodes

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=False)
        proto = onnx.load(str(pre))
    name_nodes(proto)
    return list(pick(proto))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--checkpoint", default="runs/edge_lite")
    p.add_argument("--part", default="prune,int8")
    p.add_argument("--ratios", default="0.25,0.3,0.4,0.5")
    args = p.parse_args(argv)
    import torch

    from edge_ls.artifact import ModelSpec
    from edge_ls.training.trainer import SPEC_FILE, load_checkpoint_model

    torch.set_num_threads(1)
    model, _ = load_checkpoint_model(args.checkpoint)
    model.eval()
    spec = ModelSpec.from_json((Path(args.checkpoint) / SPEC_FILE).read_text())
    sets = {k: split_data(spec, k, 512) for k in ("val", "test")}
    parts = set(args.part.split(","))
    out: dict[str, Any] = {
        "checkpoint": args.checkpoint,
        "threshold": spec.threshold,
        "command": "python bench/tiers_choices.py " + " ".join(argv or sys.argv[1:]),
        "tiles": {k: len(v[0]) for k, v in sets.items()},
    }
    if "prune" in parts:
        out["prune"] = prune_part(model, spec, [float(r) for r in args.ratios.split(",")], sets)
        args.json.write_text(json.dumps(out, indent=2))
    if "int8" in parts:
        with tempfile.TemporaryDirectory(prefix="edge-ls-choices-") as tmp:
            out["int8"] = int8_part(model, spec, sets, Path(tmp))
    args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
