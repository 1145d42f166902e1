"""Building needs TensorRT (the gpu extra): without it, a clear MissingExtraError, before any work."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge_ls.engines.build import build_cached, build_engine, timing_cache_file
from edge_ls.engines.cache import Target
from edge_ls.engines.plan import make_plan
from edge_ls.errors import MissingExtraError
from edge_ls.profiles import load_profile

pytestmark = pytest.mark.skipif(
    subprocess.run([sys.executable, "-c", "import tensorrt"], capture_output=True).returncode == 0,
    reason="TensorRT is installed: these tests are about its absence",
)


def test_build_without_tensorrt_names_the_extra(nano_onnx, tmp_path):
    plan = make_plan(load_profile("edge-nano"), nano_onnx, tmp_path)
    with pytest.raises(MissingExtraError) as err:
        build_engine(plan)
    assert err.value.extra == "gpu" and err.value.package == "tensorrt" and err.value.exit_code == 5
    assert str(err.value) == (
        "Building TensorRT engines needs 'tensorrt', which is not installed: pip install 'edge-ls[gpu]'"
    )
    with pytest.raises(MissingExtraError, match=r"edge-ls\[gpu\]"):
        build_cached(plan, tmp_path / "cache", Target("10.8.0", (8, 6)))
    assert not (tmp_path / "cache").exists()  # nothing half-written


def test_timing_cache_is_per_tensorrt_version_and_gpu(nano_onnx, tmp_path):
    plan = make_plan(load_profile("edge-nano"), nano_onnx, tmp_path / "tc")
    path = timing_cache_file(plan, "10.8.0", Target("10.8.0", (8, 9)))
    assert path == tmp_path / "tc" / "timing-trt10.8.0-sm_89.cache"
    assert timing_cache_file(make_plan(load_profile("edge-nano"), nano_onnx), "10.8.0", None) is None


def test_engine_modules_import_neither_torch_nor_tensorrt():
    code = (
        "import sys, edge_ls.engines.build, edge_ls.engines.trt_runner, edge_ls.engines.cache, "
        "edge_ls.engines.plan, edge_ls.engines.support, edge_ls.hardware, edge_ls.profiles\n"
        "bad = [m for m in ('torch', 'tensorrt', 'pycuda') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
