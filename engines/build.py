"""Build a TensorRT engine from an :class:`EnginePlan` (TensorRT 10/11 Python API, imported lazily).

The network is strongly typed: precision comes from the ONNX (Q/DQ nodes for INT8, casts for FP16),
as TensorRT 10.1 deprecated and TensorRT 11 removed implicit INT8 calibration and the builder's
FP16/INT8 flags. On TensorRT 10 the STRONGLY_TYPED creation flag is set; TensorRT 11 is always
strongly typed (the flag is deprecated and ignored there, so it is not set). One optimization
profile covers the plan's min/opt/max batch and tile; a timing cache per TensorRT version and GPU
makes rebuilds fast; version compatibility and the hardware-compatibility level are set when the
profile asks for them. None of this code has run here (no GPU, TensorRT not installable): it follows
the documented API, and everything around it is tested.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edge_ls.engines.cache import CacheResult, EngineCache, Target
from edge_ls.engines.optional import import_cuda_driver, import_tensorrt, tensorrt_major
from edge_ls.engines.plan import EnginePlan
from edge_ls.engines.support import ensure_supported
from edge_ls.errors import MissingExtraError, ModelError

log = logging.getLogger(__name__)

MB = 1 << 20
BUILD_PURPOSE = "Building TensorRT engines"
#: Profile value -> name of the ``tensorrt.HardwareCompatibilityLevel`` member.
_HW_LEVELS = {"ampere+": "AMPERE_PLUS", "same-compute-capability": "SAME_COMPUTE_CAPABILITY"}


def build_engine(plan: EnginePlan, target: Target | None = None) -> bytes:
    """Parse the plan's ONNX, configure the builder as planned and return the serialized engine."""
    trt = import_tensorrt(BUILD_PURPOSE)
    ensure_supported(plan.onnx_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if plan.strongly_typed and tensorrt_major(trt) < 11:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(plan.onnx_path)):
        raise ModelError(_parser_errors(parser, plan.onnx_path.name))

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_mb * MB)
    profile = builder.create_optimization_profile()
    profile.set_shape(plan.input_name, plan.shape("min"), plan.shape("opt"), plan.shape("max"))
    config.add_optimization_profile(profile)
    if plan.version_compatible:
        # The plan embeds the lean runtime; the runner allows host code when deserializing it.
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if plan.hardware_compatibility != "none":
        config.hardware_compatibility_level = _hardware_level(trt, plan.hardware_compatibility)

    cache_file = timing_cache_file(plan, trt.__version__, target)
    if cache_file is not None:
        timing = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
        config.set_timing_cache(timing, ignore_mismatch=False)

    log.info("building %s for %s (takes minutes)", plan.onnx_path.name, target.describe() if target else "")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError(f"TensorRT could not build an engine from {plan.onnx_path.name} (see its log)")
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def build_cached(plan: EnginePlan, cache_dir: str | Path, target: Target | None = None) -> CacheResult:
    """The engine for ``plan`` on this machine: from the cache when a valid one exists, else built."""
    target = target or current_target()
    cache = EngineCache(cache_dir)
    return cache.get_or_build(plan.cache_key(target), lambda: build_engine(plan, target), plan.to_dict())


def current_target(device: int = 0) -> Target:
    """This machine's TensorRT version and GPU compute capability (nvidia-smi first, then pycuda)."""
    trt = import_tensorrt(BUILD_PURPOSE)
    from edge_ls.hardware import detect_hardware

    gpus = detect_hardware().gpus
    if len(gpus) > device and gpus[device].compute_capability:
        gpu = gpus[device]
        return Target(str(trt.__version__), gpu.compute_capability, gpu.name)  # type: ignore[arg-type]
    try:
        cuda = import_cuda_driver("Telling this GPU's compute capability")
    except MissingExtraError:
        raise MissingExtraError("pycuda", "gpu", "Telling this GPU's compute capability") from None
    dev = cuda.Device(device)
    return Target(str(trt.__version__), tuple(dev.compute_capability()), dev.name())  # type: ignore[arg-type]


def timing_cache_file(plan: EnginePlan, trt_version: str, target: Target | None) -> Path | None:
    """One timing cache per TensorRT version and GPU architecture inside the plan's folder."""
    if plan.timing_cache_dir is None:
        return None
    sm = f"-{target.sm}" if target else ""
    return plan.timing_cache_dir / f"timing-trt{trt_version}{sm}.cache"


def _hardware_level(trt: Any, level: str) -> Any:
    member = _HW_LEVELS[level]
    if not hasattr(trt.HardwareCompatibilityLevel, member):
        raise ModelError(
            f"this TensorRT ({trt.__version__}) has no hardware compatibility level {member}: "
            "upgrade TensorRT or set tensorrt.hardware_compatibility = 'none'"
        )
    return getattr(trt.HardwareCompatibilityLevel, member)


def _parser_errors(parser: Any, name: str) -> str:
    """TensorRT's ONNX parser errors, naming node and operator when this TensorRT reports them."""
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node = getattr(err, "node_name", lambda: "")()
        op = getattr(err, "node_operator", lambda: "")()
        where = f"node '{node}' ({op}): " if node or op else ""
        lines.append(f"{where}{err.desc()}")
    more = f" (and {len(lines) - 3} more)" if len(lines) > 3 else ""
    return f"TensorRT could not parse {name}: {'; '.join(lines[:3]) or 'unknown error'}{more}"
