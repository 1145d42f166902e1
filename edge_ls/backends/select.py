"""Pick the runner a tier profile asks for: its ``backends`` list, best first, down to what this machine has.

A profile lists backends in preference order (``tensorrt > onnxruntime-cuda > onnxruntime-cpu``). Each
is tried in turn; one that cannot run here is skipped with a one-line reason, and the reasons go into
the report, so a user on a CPU-only ground station sees that TensorRT was wanted, why it was not used,
and what to install. A backend that is present but fails (an engine that does not build) is skipped
the same way, loudly: the run goes on with the next backend rather than not at all. Only when no
listed backend can run does selection fail; for a TensorRT-only profile that error names the extra.

TensorRT is imported only inside :func:`_tensorrt_runner`, and only once ``tensorrt`` and ``pycuda``
are known to be importable: the CPU runtime never loads them.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_ls.backends.base import Runner
from edge_ls.backends.onnxrt import OnnxRuntimeRunner
from edge_ls.errors import EdgeLSError, MissingExtraError

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"


@dataclass
class Selection:
    """The runner chosen and, for every backend tried before it, why it was not used."""

    runner: Runner
    backend: str
    skipped: list[str] = field(default_factory=list)


def select_runner(
    model_path: str | Path,
    backends: Sequence[str],
    *,
    profile: Any = None,
    streams: int = 1,
    intra_op_threads: int | None = None,
    engine_cache: str | Path | None = None,
) -> Selection:
    """The first backend of ``backends`` that can run ``model_path`` here (see the module docstring).

    ``profile`` (a :class:`edge_ls.profiles.Profile`) is needed for TensorRT: its batch and tile
    ranges become the engine's optimization profile.
    """
    skipped: list[str] = []
    last_error: EdgeLSError | None = None
    for backend in backends:
        try:
            runner = _make(backend, Path(model_path), profile, streams, intra_op_threads, engine_cache)
        except EdgeLSError as exc:
            skipped.append(f"{backend}: {exc}")
            last_error = exc
            continue
        runner.selection_notes = tuple(skipped)
        return Selection(runner, backend, skipped)
    if len(backends) == 1 and last_error is not None:
        raise last_error  # e.g. MissingExtraError naming edge-ls[gpu] (exit 5)
    raise EdgeLSError("no backend of " + " > ".join(backends) + " can run here: " + "; ".join(skipped))


def _make(
    backend: str,
    path: Path,
    profile: Any,
    streams: int,
    intra_op_threads: int | None,
    engine_cache: str | Path | None,
) -> Runner:
    if backend == "onnxruntime-cpu":
        return OnnxRuntimeRunner(path, providers=[CPU_PROVIDER], intra_op_threads=intra_op_threads,
                                 streams=streams)  # fmt: skip
    if backend == "onnxruntime-cuda":
        import onnxruntime as ort

        if CUDA_PROVIDER not in ort.get_available_providers():
            raise EdgeLSError("this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)")
        return OnnxRuntimeRunner(path, providers=[CUDA_PROVIDER, CPU_PROVIDER])
    if backend == "tensorrt":
        return _tensorrt_runner(path, profile, engine_cache)
    raise EdgeLSError(f"unknown backend '{backend}'")


def _tensorrt_runner(path: Path, profile: Any, engine_cache: str | Path | None) -> Runner:
    """Plan, check and build (or reuse) the engine for ``path``, then a TensorRT runner on it."""
    for module, package in (("tensorrt", "tensorrt"), ("pycuda", "pycuda")):
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(package, "gpu", "the TensorRT backend")
    if profile is None:
        raise EdgeLSError("the TensorRT backend needs a tier profile (its batch and tile ranges)")
    from edge_ls.engines.build import build_cached
    from edge_ls.engines.plan import make_plan
    from edge_ls.engines.support import ensure_supported
    from edge_ls.engines.trt_runner import TensorRTRunner

    cache_dir = Path(engine_cache) if engine_cache else default_engine_cache()
    plan = make_plan(profile, path, cache_dir / "timing")
    ensure_supported(path)
    return TensorRTRunner(build_cached(plan, cache_dir).path)


def default_engine_cache() -> Path:
    """``$EDGE_LS_ENGINE_CACHE``, else ``$XDG_CACHE_HOME/edge-ls/engines`` (``~/.cache/...``)."""
    env = os.environ.get("EDGE_LS_ENGINE_CACHE")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edge-ls" / "engines"
