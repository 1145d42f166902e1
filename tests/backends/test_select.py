"""Backend selection from a profile's preference order, on a machine without TensorRT or a GPU."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from edge_ls.backends.onnxrt import OnnxRuntimeRunner
from edge_ls.backends.select import select_runner
from edge_ls.errors import EdgeLSError, MissingExtraError
from edge_ls.models.registry import resolve
from edge_ls.pipeline import DetectOptions, detect
from edge_ls.profiles import load_profile

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None,
    reason="these checks describe a machine without TensorRT",
)
SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "chattogram_s2.tif"


def test_profile_order_falls_back_to_the_cpu_and_says_why() -> None:
    profile = load_profile("edge-lite")
    assert profile.backends[0] == "tensorrt"
    chosen = select_runner(resolve("edge-nano"), profile.backends, profile=profile, streams=2)
    assert chosen.backend == "onnxruntime-cpu"
    assert isinstance(chosen.runner, OnnxRuntimeRunner) and chosen.runner.concurrency == 2
    assert chosen.runner.providers == ["CPUExecutionProvider"]
    tensorrt, cuda = chosen.skipped
    assert tensorrt.startswith("tensorrt:") and "pip install 'edge-ls[gpu]'" in tensorrt
    assert cuda.startswith("onnxruntime-cuda:") and "no CUDA provider" in cuda
    assert chosen.runner.selection_notes == tuple(chosen.skipped)


def test_a_tensorrt_only_profile_fails_naming_the_extra() -> None:
    with pytest.raises(MissingExtraError, match=r"edge-ls\[gpu\]"):
        select_runner(resolve("edge-nano"), ["tensorrt"], profile=load_profile("edge-lite"))


def test_nothing_usable_is_one_error_listing_every_reason() -> None:
    with pytest.raises(
        EdgeLSError, match=r"no backend of tensorrt > onnxruntime-cuda.*tensorrt:.*onnxruntime-cuda:"
    ):
        select_runner(
            resolve("edge-nano"), ["tensorrt", "onnxruntime-cuda"], profile=load_profile("edge-lite")
        )


def test_selection_never_imports_tensorrt_or_torch() -> None:
    select_runner(resolve("edge-nano"), load_profile("edge-lite").backends, profile=load_profile("edge-lite"))
    assert "tensorrt" not in sys.modules and "pycuda" not in sys.modules


def test_detect_with_a_profile_reports_the_skipped_backends(tmp_path: Path) -> None:
    profile = load_profile("edge-nano")
    options = DetectOptions(profile=profile)
    report = detect(SAMPLE, "edge-nano", tmp_path / "out", options)
    assert report["backend"] == "onnxruntime" and report["device"] == "cpu"
    assert report["backend_skipped"] == []  # edge-nano's profile lists only the CPU

    lite = load_profile("edge-lite")
    report = detect(SAMPLE, "edge-nano", tmp_path / "lite", DetectOptions(profile=lite))
    assert [n.split(":")[0] for n in report["backend_skipped"]] == ["tensorrt", "onnxruntime-cuda"]


def test_the_tensorrt_runner_is_found_through_its_entry_point_not_an_import() -> None:
    """The runtime finds the engines layer's factory by registration (pyproject.toml), by name."""
    from edge_ls.backends.select import registered_backend
    from edge_ls.engines.backend import tensorrt_runner

    assert registered_backend("tensorrt") is tensorrt_runner
    with pytest.raises(EdgeLSError, match="'openvino' is not registered"):
        registered_backend("openvino")
