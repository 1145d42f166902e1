"""The TensorRT runner without TensorRT: a clear MissingExtraError at construction; the native-kernel hook.

The runner's GPU path (pinned buffers, streams, double buffering, VRAM) cannot run here: no GPU.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge_ls.backends.base import Runner
from edge_ls.engines.trt_runner import (
    NATIVE_FATBIN_ENV,
    NATIVE_FATBIN_NAME,
    TensorRTRunner,
    find_native_fatbin,
    load_native_kernels,
)
from edge_ls.errors import InputError, MissingExtraError

HAS_TRT = subprocess.run([sys.executable, "-c", "import tensorrt"], capture_output=True).returncode == 0


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed: this test is about its absence")
def test_constructing_the_runner_without_tensorrt_names_the_extra(tmp_path):
    with pytest.raises(MissingExtraError) as err:
        TensorRTRunner(tmp_path / "model.engine")
    assert err.value.extra == "gpu" and err.value.package == "tensorrt"
    assert "Running TensorRT engines needs 'tensorrt'" in str(err.value)
    assert "pip install 'edge-ls[gpu]'" in str(err.value)


def test_runner_implements_the_runtime_interface():
    assert issubclass(TensorRTRunner, Runner) and TensorRTRunner.backend == "tensorrt"
    for method in ("activate", "infer", "deactivate", "infer_async", "infer_pipelined", "peak_vram_mb"):
        assert callable(getattr(TensorRTRunner, method))


def test_bad_pipeline_depth_is_refused_before_any_import(tmp_path):
    with pytest.raises(InputError, match="pipeline_depth must be at least 1"):
        TensorRTRunner(tmp_path / "model.engine", pipeline_depth=0)


def test_native_fatbin_is_found_by_env_or_build_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(NATIVE_FATBIN_ENV, raising=False)
    monkeypatch.setenv("EDGE_LS_NATIVE_BUILD", str(tmp_path / "build"))
    assert find_native_fatbin() is None
    fatbin = tmp_path / "build" / "lib" / NATIVE_FATBIN_NAME
    fatbin.parent.mkdir(parents=True)
    fatbin.write_bytes(b"\x00")
    assert find_native_fatbin() == fatbin
    monkeypatch.setenv(NATIVE_FATBIN_ENV, str(tmp_path / "elsewhere.fatbin"))
    assert find_native_fatbin() == tmp_path / "elsewhere.fatbin"


def test_missing_native_kernels_are_optional():
    assert load_native_kernels(cuda=None, fatbin=None) is None
