"""The engine build plan: everything a TensorRT build needs, decided and validated without TensorRT.

A plan joins a tier profile (batch and tile ranges, precision, portability options, workspace) with
the ONNX file the engine is built from (input name, channel count, which axes are dynamic, which
precisions the graph actually carries). Whatever would make the build fail or build the wrong engine
is refused here, on any machine: an opt shape outside [min, max], a tile that is not a multiple of
the models' stride, a fixed axis the profile wants to vary, or a profile asking for INT8/FP16 from a
graph without Q/DQ nodes or float16 casts (a strongly typed build follows the graph's types, so it
would silently produce an FP32 engine).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge_ls.engines.cache import EngineKey, Target
from edge_ls.engines.support import graph_precisions, load_graph
from edge_ls.errors import ConfigError, ModelError
from edge_ls.profiles import Profile, ShapeRange

#: ONNX TensorProto element types a model input may have, by name.
_ELEM_TYPES = {1: "float32", 10: "float16", 16: "bfloat16"}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class EnginePlan:
    """One engine to build: the ONNX, its input, the optimization profile and the builder options."""

    profile: str
    onnx_path: Path
    onnx_sha256: str
    input_name: str
    input_dtype: str
    output_name: str
    channels: int
    batch: ShapeRange
    tile: ShapeRange
    precision: str
    graph_precisions: tuple[str, ...]
    workspace_mb: int
    version_compatible: bool = False
    hardware_compatibility: str = "none"
    strongly_typed: bool = True
    timing_cache_dir: Path | None = None

    def shape(self, which: str) -> tuple[int, int, int, int]:
        """NCHW input shape for ``min``, ``opt`` or ``max``."""
        b, t = getattr(self.batch, which), getattr(self.tile, which)
        return (b, self.channels, t, t)

    @property
    def shapes(self) -> dict[str, tuple[int, int, int, int]]:
        return {k: self.shape(k) for k in ("min", "opt", "max")}

    def build_settings(self) -> dict[str, Any]:
        """What changes the engine's bytes (not where files live): hashed into the cache key."""
        return {
            "onnx_sha256": self.onnx_sha256,
            "input": self.input_name,
            "shapes": {k: list(v) for k, v in self.shapes.items()},
            "strongly_typed": self.strongly_typed,
            "workspace_mb": self.workspace_mb,
            "version_compatible": self.version_compatible,
            "hardware_compatibility": self.hardware_compatibility,
        }

    @property
    def plan_hash(self) -> str:
        text = json.dumps(self.build_settings(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def cache_key(self, target: Target) -> EngineKey:
        """The engine-cache key of this plan built for ``target``."""
        return EngineKey(
            self.onnx_sha256, self.plan_hash, target, self.version_compatible, self.hardware_compatibility
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["onnx_path"] = str(self.onnx_path)
        data["timing_cache_dir"] = str(self.timing_cache_dir) if self.timing_cache_dir else None
        data["plan_hash"] = self.plan_hash
        return data

    def describe(self) -> list[str]:
        """Human-readable lines (``edge-ls build-engine`` prints them before building)."""
        dims = lambda s: "x".join(str(d) for d in s)  # noqa: E731
        yes_no = "yes" if self.version_compatible else "no"
        return [
            f"profile        {self.profile}",
            f"onnx           {self.onnx_path} (sha256 {self.onnx_sha256[:16]}...)",
            f"input          {self.input_name}: {self.input_dtype} N x {self.channels} x H x W "
            f"-> {self.output_name}",
            f"shapes (NCHW)  min {dims(self.shape('min'))}  opt {dims(self.shape('opt'))}  "
            f"max {dims(self.shape('max'))}",
            f"precision      {self.precision} (graph carries: {', '.join(self.graph_precisions)}); "
            f"{'strongly typed' if self.strongly_typed else 'weakly typed'} network",
            f"workspace      {self.workspace_mb} MB",
            f"portability    version-compatible: {yes_no}; "
            f"hardware compatibility: {self.hardware_compatibility}",
            f"timing cache   {self.timing_cache_dir or 'off'}",
            f"plan hash      {self.plan_hash[:16]}",
        ]


def make_plan(
    profile: Profile, onnx_path: str | Path, timing_cache_dir: str | Path | None = None
) -> EnginePlan:
    """Validate ``onnx_path`` against ``profile`` and return the build plan (no TensorRT needed)."""
    path = Path(onnx_path)
    proto = load_graph(path)
    graph = proto.graph
    weights = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise ModelError(f"{path.name}: an engine is built for a model with exactly one input, found {names}")
    if not graph.output:
        raise ModelError(f"{path.name}: the graph has no output")
    tensor = inputs[0]
    elem = tensor.type.tensor_type.elem_type
    if elem not in _ELEM_TYPES:
        raise ModelError(f"{path.name}: input '{tensor.name}' must be a float tensor (got ONNX type {elem})")
    dims = [(d.dim_value if d.HasField("dim_value") else None) for d in tensor.type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise ModelError(f"{path.name}: input '{tensor.name}' must be NCHW (rank 4), got rank {len(dims)}")
    trt = profile.tensorrt
    channels = dims[1]
    if not channels:
        raise ModelError(f"{path.name}: input '{tensor.name}' needs a fixed channel count (axis 1)")
    _check_axis(path, tensor.name, "batch", dims[0], trt.batch)
    for axis, value in (("height", dims[2]), ("width", dims[3])):
        _check_axis(path, tensor.name, axis, value, trt.tile)
    for key, value in zip(("min", "opt", "max"), trt.tile.as_tuple(), strict=True):
        if value % profile.tile_multiple:
            raise ConfigError(
                f"profile '{profile.tier}': tensorrt.tile.{key} {value} is not a multiple of "
                f"{profile.tile_multiple} (the models' stride)"
            )
    _check_bands(proto, path, channels)
    carried = graph_precisions(proto)
    _check_precision(profile, path, carried)
    return EnginePlan(
        profile=profile.tier,
        onnx_path=path,
        onnx_sha256=onnx_sha256(path, _external_files(proto, path)),
        input_name=tensor.name,
        input_dtype=_ELEM_TYPES[elem],
        output_name=graph.output[0].name,
        channels=channels,
        batch=trt.batch,
        tile=trt.tile,
        precision=profile.precision,
        graph_precisions=tuple(sorted(carried)),
        workspace_mb=trt.workspace_mb,
        version_compatible=trt.version_compatible,
        hardware_compatibility=trt.hardware_compatibility,
        timing_cache_dir=Path(timing_cache_dir) if timing_cache_dir and trt.timing_cache else None,
    )


def onnx_sha256(path: Path, extra_files: Iterable[Path] = ()) -> str:
    """sha256 of the ONNX file and, in order, its external-data files: the weights are part of the key."""
    digest = hashlib.sha256()
    for file in (path, *extra_files):
        with file.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def _external_files(proto: Any, path: Path) -> list[Path]:
    locations: list[str] = []
    for t in proto.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location" and entry.value not in locations:
                locations.append(entry.value)
    files = [path.parent / loc for loc in locations]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise ModelError(f"{path.name}: external weight file(s) missing beside it: {', '.join(missing)}")
    return files


def _check_axis(path: Path, name: str, axis: str, fixed: int | None, wanted: ShapeRange) -> None:
    """A fixed ONNX axis must equal the whole profile range; a dynamic one takes any range."""
    if fixed is None or fixed <= 0:
        return
    if wanted.min != fixed or wanted.max != fixed:
        raise ModelError(
            f"{path.name}: input '{name}' has a fixed {axis} of {fixed} but the profile asks "
            f"{wanted.min}..{wanted.max}: export the model with a dynamic {axis} axis"
        )


def _check_bands(proto: Any, path: Path, channels: int) -> None:
    from edge_ls.artifact import METADATA_KEY, spec_from_metadata

    props = {p.key: p.value for p in proto.metadata_props}
    if METADATA_KEY not in props:
        return  # bare ONNX: allowed for engines; the runtime checks the contract when it loads the model
    spec = spec_from_metadata(props, path.name)
    if len(spec.bands) != channels:
        raise ModelError(
            f"{path.name}: metadata lists {len(spec.bands)} bands but the input has {channels} channels"
        )


def _check_precision(profile: Profile, path: Path, carried: set[str]) -> None:
    wanted = profile.precision
    explicit = carried - {"fp32"}
    if wanted == "int8" and "int8" not in carried:
        raise ModelError(
            f"profile '{profile.tier}' asks int8 but {path.name} has no Q/DQ nodes: a strongly "
            "typed build would give an FP32 engine; export it with INT8 quantization (QDQ)"
        )
    if wanted == "fp16" and "fp16" not in carried:
        raise ModelError(
            f"profile '{profile.tier}' asks fp16 but {path.name} has no float16 tensors: a "
            "strongly typed build would give an FP32 engine; export it with FP16 casts"
        )
    if wanted == "mixed" and not explicit:
        raise ModelError(f"profile '{profile.tier}' asks mixed precision but {path.name} is plain FP32")
    if wanted == "fp32" and explicit:
        raise ModelError(
            f"profile '{profile.tier}' asks fp32 but {path.name} carries "
            f"{', '.join(sorted(explicit))}: use the FP32 export or a matching profile"
        )
