"""Bundled models by name: ``--model`` takes a path or one of these names.

A bundled model is ``<name>.onnx`` in this folder (a single-file tier), or a tier folder
``<name>/`` holding ONNX files and a ``manifest.json`` (see :mod:`edge_ls.manifest`), addressed as
``<name>:<precision>`` when it carries several precisions. ``default`` points at the embedded default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_ls.artifact import ModelSpec, read_spec
from edge_ls.errors import ModelError
from edge_ls.manifest import MANIFEST_FILE, load_manifest, resolve_tier_model, tier_folders

BUNDLED_DIR = Path(__file__).resolve().parent
#: The embedded default: the trained Edge-Lite (training/README.md); edge-nano stays as reference row.
DEFAULT_MODEL = "edge-lite"


@dataclass(frozen=True)
class BundledModel:
    name: str
    path: Path
    spec: ModelSpec


def bundled_names() -> list[str]:
    """Names ``--model`` accepts for bundled models: single files, then ``<tier>:<precision>``."""
    names = sorted(p.stem for p in BUNDLED_DIR.glob("*.onnx"))
    for folder in tier_folders(BUNDLED_DIR):
        names += load_manifest(folder, check_metadata=False).names()
    return names


def resolve(name_or_path: str | Path) -> Path:
    """Turn ``--model`` into an ONNX path: an existing path wins, then a bundled name."""
    candidate = Path(name_or_path)
    if candidate.is_file():
        return candidate
    if (candidate / MANIFEST_FILE).is_file():  # a tier folder given by path: verified, default precision
        return load_manifest(candidate).model().path
    name = str(name_or_path)
    if name == "default":
        name = DEFAULT_MODEL
    bundled = BUNDLED_DIR / f"{name}.onnx"
    if bundled.is_file():
        return bundled
    entry = resolve_tier_model(BUNDLED_DIR, name)  # a bundled tier folder; every file verified first
    if entry is not None:
        return entry.path
    if ":" in name:  # tier:precision of a single-file model, e.g. edge-nano:fp32
        tier, precision = name.split(":", 1)
        bundled = BUNDLED_DIR / f"{tier}.onnx"
        if bundled.is_file() and precision == read_spec(bundled).precision:
            return bundled
    if candidate.suffix or "/" in name:
        raise ModelError(f"model file not found: {name_or_path}")
    raise ModelError(
        f"unknown model '{name_or_path}': give a path to an .onnx file or one of: "
        f"default, {', '.join(bundled_names())}"
    )


def list_bundled() -> list[BundledModel]:
    """Every bundled model with its validated spec (what ``edge-ls models`` shows)."""
    models = [BundledModel(p.stem, p, read_spec(p)) for p in sorted(BUNDLED_DIR.glob("*.onnx"))]
    for folder in tier_folders(BUNDLED_DIR):
        manifest = load_manifest(folder)
        models += [BundledModel(f"{manifest.tier}:{e.precision}", e.path, e.spec) for e in manifest.models
                   if e.role in ("primary", "triage")]
    return models
