"""Tier artifacts: a folder of ONNX files and the ``manifest.json`` the runtime verifies before loading.

A tier folder (``edge-lite/``, ``edge-cascade/`` ...) holds one ONNX file per (role, precision) --
roles ``primary``, or ``triage`` + ``refiner`` for a cascade -- and ``manifest.json``::

    {"schema_version": 1, "tier": "edge-lite", "default_precision": "int8", "created": "...",
     "edge_ls_version": "0.1.0",
     "models": [{"role": "primary", "precision": "int8", "file": "primary.int8.onnx",
                 "sha256": "...", "bytes": 123, "params": 1700000, "macs": 0, "flops": 0, "flops_tile": 512,
                 "accuracy": {...}, "metadata": {<the file's edge-ls spec>}}, ...],
     "files": {"primary.int8.onnx": "<sha256>", ...},   # every file but the manifest itself
     "info": {...}}

Loading checks every listed file's sha256 and size, refuses ONNX files the manifest does not vouch
for, and checks that each model's stored edge-ls metadata is valid and matches the entry, so a
swapped, truncated or hand-edited file fails with a ModelError naming it. Bundled names carry the
precision: ``edge-lite:int8`` is the ``primary`` (or cascade ``triage``) file of precision ``int8``.
Runtime module: numpy/onnxruntime only, never torch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_ls.artifact import PRECISIONS, ROLES, ModelSpec
from edge_ls.errors import ModelError

MANIFEST_FILE = "manifest.json"
MANIFEST_SCHEMA = 1
#: Roles of the models in a tier; a cascade's entry model is its ``triage``.
_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (models can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def model_filename(role: str, precision: str) -> str:
    """File name of a (role, precision) model inside a tier folder."""
    return f"{role}.{precision}.onnx"


@dataclass(frozen=True)
class ModelEntry:
    """One ONNX file of a tier, as the manifest describes it."""

    role: str
    precision: str
    file: str
    sha256: str
    bytes: int
    spec: ModelSpec
    path: Path
    params: int | None = None
    macs: int | None = None
    flops_tile: int | None = None
    accuracy: Mapping[str, Any] = field(default_factory=dict)

    @property
    def gflops(self) -> float | None:
        return 2 * self.macs / 1e9 if self.macs is not None else None


@dataclass(frozen=True)
class Manifest:
    """A verified tier folder."""

    tier: str
    folder: Path
    models: tuple[ModelEntry, ...]
    default_precision: str
    files: Mapping[str, str]
    info: Mapping[str, Any]
    created: str = ""
    edge_ls_version: str = ""

    @property
    def precisions(self) -> list[str]:
        return list(dict.fromkeys(m.precision for m in self.models))

    @property
    def roles(self) -> list[str]:
        return list(dict.fromkeys(m.role for m in self.models))

    @property
    def is_cascade(self) -> bool:
        return "triage" in self.roles

    def names(self) -> list[str]:
        """The names ``--model`` accepts for this tier, one per file: ``<tier>:<precision>``, and
        ``<tier>:<role>:<precision>`` for a cascade (its triage and refiner are different models)."""
        return [self.entry_name(m) for m in self.models]

    def entry_name(self, entry: ModelEntry) -> str:
        """The unambiguous name of one file of this tier (see :meth:`names`)."""
        if entry.role == "primary":
            return f"{self.tier}:{entry.precision}"
        return f"{self.tier}:{entry.role}:{entry.precision}"

    def model(self, role: str | None = None, precision: str | None = None) -> ModelEntry:
        """The entry for ``role`` (default: primary, or triage for a cascade) at ``precision``.

        A single-model tier serves any cascade role with its primary model, so a cascade profile can
        name two ordinary tiers (``triage = "edge-lite:int8"``, ``refiner = "edge-lite"``)."""
        role = role or ("triage" if self.is_cascade else "primary")
        if not self.is_cascade and role in ("triage", "refiner"):
            role = "primary"
        precision = precision or self.default_precision
        for m in self.models:
            if m.role == role and m.precision == precision:
                return m
        have = ", ".join(f"{m.role}:{m.precision}" for m in self.models)
        raise ModelError(f"tier '{self.tier}' has no {role} model in {precision} (it has {have})")


def split_name(name: str) -> tuple[str, str | None]:
    """``edge-lite:int8`` -> ("edge-lite", "int8"); ``edge-lite`` -> ("edge-lite", None)."""
    tier, _, precision = parse_name(name)
    return tier, precision


def parse_name(name: str) -> tuple[str, str | None, str | None]:
    """``<tier>[:<role>][:<precision>]`` -> (tier, role, precision), e.g. ``edge-cascade:triage:int8``."""
    tier, *rest = name.split(":")
    role = rest.pop(0) if rest and rest[0] in ROLES else None
    precision = rest.pop(0) if rest else None
    if rest or precision == "":
        return name, None, None  # not a tier name: looked up (and not found) as it is
    return tier, role, precision


def tier_folders(root: str | Path) -> list[Path]:
    """Sub-folders of ``root`` holding a manifest (the bundled tiers, for ``edge-ls models``)."""
    base = Path(root)
    return sorted(p.parent for p in base.glob(f"*/{MANIFEST_FILE}")) if base.is_dir() else []


def resolve_tier_model(root: str | Path, name: str, role: str | None = None) -> ModelEntry | None:
    """The verified entry ``<tier>[:<precision>]`` names under ``root``; None when no such tier folder.

    What the bundled-model registry calls: ``--model edge-lite:int8`` -> the primary (cascade: triage)
    INT8 file of ``root/edge-lite/``, after the manifest verified every file of the tier.
    """
    tier, named_role, precision = parse_name(name)
    folder = Path(root) / tier
    if not tier or "/" in tier or ":" in tier or not (folder / MANIFEST_FILE).is_file():
        return None
    if named_role and role and named_role != role:
        raise ModelError(f"'{name}' names the {named_role} model, but the {role} model was asked for")
    return load_manifest(folder).model(named_role or role, precision)


def load_manifest(folder: str | Path, check_metadata: bool = True) -> Manifest:
    """Read ``folder/manifest.json`` and verify every file; raise ModelError naming what does not match.

    ``check_metadata`` also opens each ONNX file's metadata (with ONNX Runtime, optimizations off)
    and compares it with the manifest's copy: slower for large models, on by default.
    """
    root = Path(folder)
    path = root / MANIFEST_FILE
    if not path.is_file():
        raise ModelError(f"{root} is not a tier folder: {MANIFEST_FILE} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: the manifest must be a JSON object")
    if data.get("schema_version") != MANIFEST_SCHEMA:
        raise ModelError(
            f"{path}: manifest schema_version {data.get('schema_version')!r} unsupported "
            f"(this edge-ls reads {MANIFEST_SCHEMA})"
        )
    for key in ("tier", "models", "files", "default_precision"):
        if key not in data:
            raise ModelError(f"{path}: manifest lacks '{key}'")
    files = data["files"]
    if not isinstance(files, dict) or not files:
        raise ModelError(f"{path}: 'files' must map every file of the tier to its sha256")
    _verify_files(root, files)
    models = tuple(_entry(root, raw, files, check_metadata) for raw in _as_list(data["models"], path))
    if not models:
        raise ModelError(f"{path}: the manifest lists no models")
    seen = [(m.role, m.precision) for m in models]
    if len(set(seen)) != len(seen):
        raise ModelError(f"{path}: a (role, precision) pair is listed twice")
    manifest = Manifest(
        tier=str(data["tier"]),
        folder=root,
        models=models,
        default_precision=str(data["default_precision"]),
        files=dict(files),
        info=dict(data.get("info") or {}),
        created=str(data.get("created", "")),
        edge_ls_version=str(data.get("edge_ls_version", "")),
    )
    manifest.model()  # the default entry must exist
    return manifest


def _verify_files(root: Path, files: Mapping[str, Any]) -> None:
    for name, digest in files.items():
        if Path(name).name != name or name == MANIFEST_FILE:
            raise ModelError(f"{root / MANIFEST_FILE}: bad file name {name!r} (plain names in the folder)")
        file = root / name
        if not file.is_file():
            raise ModelError(f"{file}: listed in the manifest but missing")
        if sha256_file(file) != digest:
            raise ModelError(
                f"{file}: sha256 does not match the manifest: the file was modified or corrupted; "
                "re-export the tier or restore the file"
            )
    strays = sorted(p.name for p in root.glob("*.onnx") if p.name not in files)
    if strays:
        raise ModelError(f"{root / strays[0]}: ONNX file not listed in the manifest (unverified model)")


def _as_list(value: Any, path: Path) -> list[Mapping[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ModelError(f"{path}: 'models' must be a list of objects")
    return value


def _entry(root: Path, raw: Mapping[str, Any], files: Mapping[str, str], check_metadata: bool) -> ModelEntry:
    where = root / MANIFEST_FILE
    missing = [k for k in ("role", "precision", "file", "sha256", "metadata") if k not in raw]
    if missing:
        raise ModelError(f"{where}: a model entry lacks {', '.join(missing)}")
    name = str(raw["file"])
    if raw["role"] not in ROLES:
        raise ModelError(f"{where}: {name} has unknown role {raw['role']!r} (known: {', '.join(ROLES)})")
    if raw["precision"] not in PRECISIONS:
        raise ModelError(f"{where}: {name} has unknown precision {raw['precision']!r}")
    if files.get(name) != raw["sha256"]:
        raise ModelError(f"{root / name}: the model entry's sha256 differs from the manifest's file list")
    spec = ModelSpec.from_dict(raw["metadata"], f"{name} (manifest)")
    if spec.precision != raw["precision"]:
        raise ModelError(f"{root / name}: metadata says {spec.precision}, manifest says {raw['precision']}")
    path = root / name
    if check_metadata:
        from edge_ls.artifact import read_spec

        if read_spec(path) != spec:
            raise ModelError(f"{path}: the file's edge-ls metadata differs from the manifest's copy")
    return ModelEntry(
        role=str(raw["role"]),
        precision=str(raw["precision"]),
        file=name,
        sha256=str(raw["sha256"]),
        bytes=int(raw.get("bytes", path.stat().st_size)),
        spec=spec,
        path=path,
        params=_opt_int(raw.get("params")),
        macs=_opt_int(raw.get("macs")),
        flops_tile=_opt_int(raw.get("flops_tile")),
        accuracy=dict(raw.get("accuracy") or {}),
    )


def _opt_int(value: Any) -> int | None:
    return int(value) if value is not None else None
