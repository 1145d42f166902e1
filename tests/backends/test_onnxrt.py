"""The one ONNX Runtime session factory: options as asked, one-line ModelError for a bad file."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from edge_ls.backends.onnxrt import open_session
from edge_ls.errors import ModelError
from edge_ls.models.registry import resolve


def test_options_are_the_ones_asked_for() -> None:
    fast = open_session(resolve("edge-nano"), threads=1, inter_op_threads=1).get_session_options()
    assert fast.intra_op_num_threads == 1 and fast.inter_op_num_threads == 1
    assert fast.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    raw = open_session(resolve("edge-nano"), optimize=False, memory_arena=False).get_session_options()
    assert raw.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert not raw.enable_cpu_mem_arena and not raw.enable_mem_pattern


def test_a_bad_file_is_one_model_error_line_in_the_callers_words(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"^cannot load bad\.onnx with ONNX Runtime: ") as info:
        open_session(bad)
    assert "\n" not in str(info.value)
    with pytest.raises(ModelError, match=r"^bad\.onnx is not a loadable ONNX model \("):
        open_session(bad, error="{name} is not a loadable ONNX model ({reason})")
