from __future__ import annotations

import numpy as np
import pytest

from edge_ls.export.accuracy import budget_scores
from edge_ls.io.labelled import load_labelled

pytest.importorskip("torch")


def test_matches_the_runtime_scorer(tmp_path, fp32_onnx, real_tiles, hokkaido, spec):
    """The export's percent F1/IoU of normalized tiles in batches equals the runtime's per-pair scores."""
    import dataclasses

    import onnx

    import edge_ls.evaluate as runtime
    from edge_ls.artifact import read_spec, write_spec
    from edge_ls.export.onnx_export import run_onnx
    from edge_ls.pixel_math import sigmoid

    # Random weights: put the threshold at the median probability so both classes are predicted.
    median = float(np.median(sigmoid(run_onnx(fp32_onnx, real_tiles))))
    proto = onnx.load(str(fp32_onnx))
    write_spec(proto, dataclasses.replace(read_spec(fp32_onnx), threshold=median))
    model = tmp_path / "median.onnx"
    onnx.save(proto, str(model))
    from edge_ls.training.tileset import read_split_pairs

    theirs = runtime.evaluate_onnx(model, lambda bands: read_split_pairs([str(hokkaido)], list(bands)))
    ours = budget_scores(model, load_labelled(hokkaido, spec, size=512), batch=4)
    assert ours["counts"]["tp"] > 1000 and ours["counts"]["fp"] > 1000
    assert ours["tiles"] == theirs["tiles"] == 36
    assert ours["f1"] == pytest.approx(100 * theirs["f1"], abs=1e-6)
    assert ours["iou"] == pytest.approx(100 * theirs["iou"], abs=1e-6)
