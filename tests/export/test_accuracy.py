from __future__ import annotations

import numpy as np
import pytest

from edge_ls.export.accuracy import confusion, evaluate_onnx, scores
from edge_ls.export.tiles import load_labelled

pytest.importorskip("torch")


def test_scores_from_counts():
    s = scores(np.array([30, 10, 20, 940]))
    assert s["iou"] == pytest.approx(50.0) and s["f1"] == pytest.approx(100 * 2 * 30 / 90)
    assert s["f1"] == pytest.approx(200 * (s["iou"] / 100) / (1 + s["iou"] / 100))  # F1 = 2 IoU / (1 + IoU)
    assert scores(np.array([0, 0, 0, 100]))["f1"] == 0.0
    mask = np.array([[[1, 0], [0, 0]]])
    assert list(confusion(np.array([[[0.5, 0.49], [0.9, 0.0]]]), mask, 0.5)) == [1, 1, 0, 2]


def test_matches_the_runtime_scorer(tmp_path, fp32_onnx, real_tiles, hokkaido, spec):
    """The export-side F1/IoU equals edge_ls.evaluate's on the same real tiles (same pixel math)."""
    import dataclasses

    import onnx

    from edge_ls.artifact import read_spec, write_spec
    from edge_ls.export.onnx_export import run_onnx
    from edge_ls.pixel_math import sigmoid

    runtime = pytest.importorskip("edge_ls.evaluate")
    # Random weights: put the threshold at the median probability so both classes are predicted.
    median = float(np.median(sigmoid(run_onnx(fp32_onnx, real_tiles))))
    proto = onnx.load(str(fp32_onnx))
    write_spec(proto, dataclasses.replace(read_spec(fp32_onnx), threshold=median))
    model = tmp_path / "median.onnx"
    onnx.save(proto, str(model))
    try:
        theirs = runtime.evaluate_onnx(model, [hokkaido])
    except ImportError as exc:  # the runtime scorer needs the training tile reader
        pytest.skip(f"edge_ls.evaluate unavailable: {exc}")
    ours = evaluate_onnx(model, load_labelled(hokkaido, spec, size=512), batch=4)
    assert ours["counts"]["tp"] > 1000 and ours["counts"]["fp"] > 1000
    assert ours["tiles"] == theirs["tiles"] == 36
    assert ours["f1"] == pytest.approx(100 * theirs["f1"], abs=1e-6)
    assert ours["iou"] == pytest.approx(100 * theirs["iou"], abs=1e-6)
