"""``edge-ls build-engine``: plan, check and build (or fetch from the cache) a tier's TensorRT engines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_ls.engines.backend import default_engine_cache as default_cache_dir
from edge_ls.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build-engine",
        help="build the TensorRT engine(s) of a tier profile (needs the gpu extra)",
        description=(
            "Plan the engine from the profile (min/opt/max batch and tile, precision, portability options), "
            "check the ONNX operators against TensorRT's support matrix, then build a strongly typed engine, "
            "or reuse the cached one built for this TensorRT version and GPU."
        ),
    )
    p.add_argument("--profile", required=True, help="tier profile name or TOML file (see 'edge-ls profiles')")
    p.add_argument("--onnx", type=Path, help="ONNX file to build (default: the profile's model(s))")
    p.add_argument(
        "--cache",
        type=Path,
        default=None,
        help=f"engine cache folder (default: {default_cache_dir()}; env EDGE_LS_ENGINE_CACHE)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # "No GPU" comes first: the plan and operator check below still run (they need no GPU and catch
    # a bad model early), but nothing suggests installing packages that cannot help here.
    no_gpu = no_gpu_reason()
    if no_gpu:
        print(f"edge-ls: {no_gpu}", file=sys.stderr)
    from edge_ls.engines.build import build_cached
    from edge_ls.engines.plan import make_plan
    from edge_ls.engines.support import MATRIX_VERSION, ensure_supported
    from edge_ls.profiles import load_profile

    profile = load_profile(args.profile)
    cache_dir = args.cache or default_cache_dir()
    jobs = (
        [("--onnx", args.onnx)]
        if args.onnx
        else [(role, _model_file(profile, role, ref)) for role, ref in profile.models.items()]
    )
    plans = []
    for role, path in jobs:
        plan = make_plan(profile, path, cache_dir / "timing")
        print(f"engine plan ({role}):")
        for line in plan.describe():
            print(f"  {line}")
        ensure_supported(path)  # raises, naming node and operator, before any (long) build
        print(f"  operators      all supported ({MATRIX_VERSION} ONNX support matrix)")
        plans.append(plan)
    if no_gpu:
        raise ConfigError(
            "no NVIDIA GPU here: the engine cannot be built on this machine (plan and operators checked "
            "above); run build-engine on the GPU that will use it"
        )
    for plan in plans:
        result = build_cached(plan, cache_dir)
        for message in result.messages:
            print(f"  {message}: rebuilt")
        print(f"engine {result.status}: {result.path}")
    return 0


def no_gpu_reason() -> str | None:
    """One line when this machine has no NVIDIA GPU (TensorRT builds an engine on the GPU that runs
    it, so no extra can help), else None."""
    from edge_ls.hardware import detect_hardware

    if detect_hardware().has_gpu:
        return None
    return (
        "no NVIDIA GPU on this machine (nvidia-smi, /proc/driver/nvidia and Jetson checked): TensorRT "
        f"engines cannot be built here; on this CPU, 'edge-ls detect --profile auto' runs '{_cpu_tier()}' "
        "on ONNX Runtime"
    )


def _cpu_tier() -> str:
    from edge_ls.hardware import Hardware, pick_profile

    return pick_profile(Hardware())[0]


def _model_file(profile, role: str, ref: str) -> Path:
    from edge_ls.errors import ModelError
    from edge_ls.models.registry import resolve

    try:
        return resolve(ref)
    except ModelError:
        from edge_ls.cli.profiles import install_hint

        hint = install_hint(profile) or "export it with 'edge-ls export'"
        raise ModelError(
            f"profile '{profile.tier}' needs model {role} = '{ref}', which is not installed: {hint}; "
            "or pass --onnx FILE"
        ) from None
