"""Engine cache keyed by (ONNX sha256, build plan, TensorRT version, GPU compute capability).

TensorRT engines are not portable across TensorRT versions or GPU architectures (NVIDIA/TensorRT
#564, #2177, #3829): a stale engine either fails to deserialize or, worse, is refused deep inside a
run. Each cached engine has a JSON sidecar saying what it was built from and for; an engine is used
only when the sidecar matches the ONNX, the plan and this machine (or the engine was built with the
version-compatible / hardware-compatibility options that allow the difference). Anything else is
refused with a message naming both sides ("built for TensorRT 10.3.0 / sm_87, this machine has
TensorRT 10.8.0 / sm_86") and rebuilt. Several targets share one cache folder side by side (a cache
on a network share serves every GPU model). Pure Python: no TensorRT needed to reason about engines.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edge_ls.errors import ModelError, OutputError

log = logging.getLogger(__name__)

SIDECAR_SCHEMA = 1
ENGINE_SUFFIX = ".engine"


@dataclass(frozen=True)
class Target:
    """The TensorRT version and GPU an engine is built for or run on."""

    trt_version: str
    compute_capability: tuple[int, int]
    gpu_name: str = ""

    @property
    def sm(self) -> str:
        return f"sm_{self.compute_capability[0]}{self.compute_capability[1]}"

    def describe(self) -> str:
        return f"TensorRT {self.trt_version} / {self.sm}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "trt_version": self.trt_version,
            "compute_capability": list(self.compute_capability),
            "gpu_name": self.gpu_name,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Target:
        major, minor = (int(v) for v in data["compute_capability"])
        return cls(str(data["trt_version"]), (major, minor), str(data.get("gpu_name", "")))


@dataclass(frozen=True)
class EngineKey:
    """What an engine is: built from this ONNX with this plan, for this target."""

    onnx_sha256: str
    plan_hash: str
    target: Target
    #: Build options that relax the target match (from the plan).
    version_compatible: bool = False
    hardware_compatibility: str = "none"

    @property
    def slot(self) -> str:
        """Prefix shared by every target's engine for the same ONNX + plan."""
        return f"{self.onnx_sha256[:16]}-{self.plan_hash[:12]}"

    @property
    def filename(self) -> str:
        version = re.sub(r"[^0-9A-Za-z.]+", "_", self.target.trt_version)
        return f"{self.slot}-trt{version}-{self.target.sm}{ENGINE_SUFFIX}"


@dataclass
class CacheResult:
    """What :meth:`EngineCache.get_or_build` did: ``hit``, ``built`` or ``rebuilt`` (after refusals)."""

    path: Path
    engine: bytes
    status: str
    messages: list[str] = field(default_factory=list)


class EngineMismatchError(ModelError):
    """An engine file that must not be used here (other TensorRT/GPU, other ONNX, corrupt)."""


def incompatibility(
    built: Target, runtime: Target, version_compatible: bool = False, hardware_compatibility: str = "none"
) -> str | None:
    """Why an engine built for ``built`` cannot run on ``runtime``, or None when it can.

    Version-compatible engines run on the same or a later TensorRT; ``ampere+`` engines run on any GPU of
    compute capability 8.0 or newer; otherwise both must match exactly.
    """
    reasons = []
    if version_compatible:
        if _version_tuple(runtime.trt_version) < _version_tuple(built.trt_version):
            reasons.append("a version-compatible engine needs the same or a later TensorRT")
    elif runtime.trt_version != built.trt_version:
        reasons.append("engines are tied to the TensorRT version that built them")
    if hardware_compatibility == "ampere+":
        if runtime.compute_capability < (8, 0):
            reasons.append("an Ampere+ engine needs compute capability 8.0 or newer")
    elif runtime.compute_capability != built.compute_capability:
        reasons.append("engines are tied to the GPU architecture that built them")
    if not reasons:
        return None
    return f"built for {built.describe()}, this machine has {runtime.describe()} ({'; '.join(reasons)})"


class EngineCache:
    """A folder of ``<onnx>-<plan>-trt<version>-sm<cc>.engine`` files, each with a ``.json`` sidecar."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: EngineKey) -> Path:
        return self.root / key.filename

    @staticmethod
    def sidecar(engine_path: Path) -> Path:
        return engine_path.with_suffix(".json")

    def store(self, key: EngineKey, engine: bytes, plan: Mapping[str, Any] | None = None) -> Path:
        """Write the engine, then its sidecar, each atomically (a crash never leaves a half engine)."""
        if not engine:
            raise ModelError("refusing to cache an empty engine")
        path = self.path(key)
        meta = {
            "schema": SIDECAR_SCHEMA,
            "onnx_sha256": key.onnx_sha256,
            "plan_hash": key.plan_hash,
            "target": key.target.to_dict(),
            "version_compatible": key.version_compatible,
            "hardware_compatibility": key.hardware_compatibility,
            "engine_sha256": hashlib.sha256(engine).hexdigest(),
            "engine_bytes": len(engine),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "plan": dict(plan or {}),
        }
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, engine)
            _atomic_write(self.sidecar(path), json.dumps(meta, indent=2, sort_keys=True).encode())
        except OSError as exc:
            raise OutputError(f"cannot write engine cache {self.root}: {exc.strerror or exc}") from None
        return path

    def verify(self, engine_path: Path, key: EngineKey) -> bytes:
        """The engine's bytes if it may run for ``key`` here; EngineMismatchError saying why not."""
        meta = read_sidecar(engine_path)
        name = engine_path.name
        if meta["onnx_sha256"] != key.onnx_sha256:
            raise EngineMismatchError(
                f"refusing engine {name}: it was built from another ONNX "
                f"(sha256 {meta['onnx_sha256'][:12]}, expected {key.onnx_sha256[:12]})"
            )
        if meta["plan_hash"] != key.plan_hash:
            raise EngineMismatchError(
                f"refusing engine {name}: it was built with other shapes or options "
                f"(plan {meta['plan_hash'][:12]}, expected {key.plan_hash[:12]})"
            )
        why = incompatibility(
            Target.from_dict(meta["target"]),
            key.target,
            bool(meta.get("version_compatible")),
            str(meta.get("hardware_compatibility")),
        )
        if why:
            raise EngineMismatchError(f"refusing engine {name}: {why}")
        engine = engine_path.read_bytes()
        if hashlib.sha256(engine).hexdigest() != meta["engine_sha256"]:
            raise EngineMismatchError(
                f"refusing engine {name}: its bytes do not match its sidecar (truncated or overwritten)"
            )
        return engine

    def get_or_build(
        self, key: EngineKey, build: Callable[[], bytes], plan: Mapping[str, Any] | None = None
    ) -> CacheResult:
        """A usable cached engine for ``key``, or a new one from ``build()`` (stored before returning)."""
        messages: list[str] = []
        for candidate in self._candidates(key):
            try:
                engine = self.verify(candidate, key)
            except EngineMismatchError as exc:
                messages.append(str(exc))
                continue
            return CacheResult(candidate, engine, "hit", messages)
        for message in messages:
            log.warning("%s: rebuilding", message)
        engine = build()
        path = self.store(key, engine, plan)
        return CacheResult(path, engine, "rebuilt" if messages else "built", messages)

    def _candidates(self, key: EngineKey) -> list[Path]:
        """This target's own file first, then other targets' engines for the same ONNX + plan."""
        own = self.path(key)
        others = sorted(p for p in self.root.glob(f"{key.slot}-*{ENGINE_SUFFIX}") if p != own)
        return ([own] if own.is_file() else []) + others

    def entries(self) -> list[dict[str, Any]]:
        """Every sidecar in the cache (for listing and cleaning up)."""
        out = []
        for engine_path in sorted(self.root.glob(f"*{ENGINE_SUFFIX}")):
            try:
                out.append({"path": str(engine_path), **read_sidecar(engine_path)})
            except EngineMismatchError:
                continue
        return out


def read_sidecar(engine_path: Path) -> dict[str, Any]:
    """The sidecar of an engine file; a missing or unreadable one makes the engine unusable."""
    sidecar = EngineCache.sidecar(engine_path)
    try:
        meta = json.loads(sidecar.read_text())
    except FileNotFoundError:
        raise EngineMismatchError(
            f"refusing engine {engine_path.name}: no sidecar {sidecar.name} says what "
            "it was built from and for"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise EngineMismatchError(f"refusing engine {engine_path.name}: unreadable sidecar ({exc})") from None
    needed = ("schema", "onnx_sha256", "plan_hash", "target", "engine_sha256")
    if not isinstance(meta, dict) or any(k not in meta for k in needed) or meta["schema"] != SIDECAR_SCHEMA:
        raise EngineMismatchError(f"refusing engine {engine_path.name}: sidecar has an unknown layout")
    return meta


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:4])
