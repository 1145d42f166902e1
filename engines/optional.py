"""Lazy imports of the optional GPU packages, each failing with the extra to install.

TensorRT and pycuda cannot be installed without an NVIDIA driver, so nothing imports them at module
level: the functions here are called at the moment they are needed, and a missing package becomes a
:class:`MissingExtraError` (exit code 5) naming ``edge-ls[gpu]``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edge_ls.errors import MissingExtraError

GPU_EXTRA = "gpu"


def _import(module: str, package: str, purpose: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        # Only a missing top-level package is "not installed"; a broken install must stay visible.
        if exc.name is not None and exc.name.split(".")[0] != module.split(".")[0]:
            raise
        raise MissingExtraError(package, GPU_EXTRA, purpose) from None


def import_tensorrt(purpose: str) -> ModuleType:
    """``import tensorrt`` or MissingExtraError('tensorrt', 'gpu', purpose)."""
    return _import("tensorrt", "tensorrt", purpose)


def import_cuda_driver(purpose: str) -> ModuleType:
    """``import pycuda.driver`` (initialised) or MissingExtraError('pycuda', 'gpu', purpose)."""
    cuda = _import("pycuda.driver", "pycuda", purpose)
    cuda.init()
    return cuda


def import_onnx(purpose: str) -> ModuleType:
    """``import onnx`` (graph inspection before a build) or MissingExtraError('onnx', 'gpu', purpose)."""
    return _import("onnx", "onnx", purpose)


def tensorrt_major(trt: ModuleType) -> int:
    """Major version of an imported TensorRT module (10, 11...)."""
    return int(str(trt.__version__).split(".")[0])
