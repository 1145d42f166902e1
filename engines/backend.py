"""The TensorRT backend as the runtime's backend selection finds it: a registered factory.

The runtime (``edge_ls.backends.select``) must not import this layer, so ``pyproject.toml`` registers
:func:`tensorrt_runner` under the ``edge_ls.backends`` entry-point group and the selection loads it by
name, only after it has checked that ``tensorrt`` and ``pycuda`` are installed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edge_ls.backends.base import Runner
from edge_ls.errors import EdgeLSError


def tensorrt_runner(path: Path, profile: Any, engine_cache: str | Path | None) -> Runner:
    """Plan, check and build (or reuse) the engine for ``path``, then a TensorRT runner on it."""
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
