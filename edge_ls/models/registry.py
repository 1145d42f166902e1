"""Models by name: ``--model`` takes a path or one of these names.

A named model is ``<name>.onnx`` (a single-file tier), or a tier folder ``<name>/`` holding ONNX files
and a ``manifest.json`` (see :mod:`edge_ls.manifest`), addressed as ``<name>:<precision>`` when it
carries several precisions, and ``<name>:<role>:<precision>`` for the triage and refiner of a cascade
(``<name>:<precision>`` alone is its triage, the model a cascade starts with). ``default`` points at
the embedded default.

Two places are searched, in order: the models bundled in this package, then the user's model folder
(``$EDGE_LS_MODELS``, else ``~/.cache/edge-ls/models``), where tiers too large to ship in the
package live (the fusion family, ~80 M parameters): ``edge-ls export --out`` that folder and the tier
resolves by name like a bundled one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edge_ls.artifact import ModelSpec, read_spec
from edge_ls.errors import ModelError, first_line
from edge_ls.manifest import MANIFEST_FILE, load_manifest, resolve_tier_model, tier_folders

BUNDLED_DIR = Path(__file__).resolve().parent
#: Environment variable naming the user's model folder.
USER_MODELS_ENV = "EDGE_LS_MODELS"
#: The embedded default: the trained Edge-Lite (training/README.md); edge-nano stays as reference row.
DEFAULT_MODEL = "edge-lite"


@dataclass(frozen=True)
class BundledModel:
    name: str
    path: Path
    spec: ModelSpec


@dataclass(frozen=True)
class BrokenModel:
    """A file or tier folder in the user's model folder that cannot be used, and why (one line)."""

    path: Path
    reason: str


def user_models_dir() -> Path:
    """The user's model folder: ``$EDGE_LS_MODELS``, else ``~/.cache/edge-ls/models``."""
    configured = os.environ.get(USER_MODELS_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "edge-ls" / "models"


def search_dirs() -> list[Path]:
    """Where names are looked up, first match wins: the package's bundled models, then the user's."""
    user = user_models_dir()
    return [BUNDLED_DIR] if user.resolve() == BUNDLED_DIR else [BUNDLED_DIR, user]


def bundled_names() -> list[str]:
    """Names ``--model`` accepts: single files, then ``<tier>:<precision>``, bundled then user's."""
    names: list[str] = []
    for root in search_dirs():
        names += sorted(p.stem for p in root.glob("*.onnx")) if root.is_dir() else []
        for folder in tier_folders(root):
            try:
                names += load_manifest(folder, check_metadata=False).names()
            except ModelError:
                if root == BUNDLED_DIR:
                    raise
    return list(dict.fromkeys(names))


def resolve(name_or_path: str | Path, role: str | None = None) -> Path:
    """Turn ``--model`` into an ONNX path: an existing path wins, then a bundled name.

    ``role`` picks a model of a cascade tier (``triage`` or ``refiner``); by default a tier's primary
    model, or its triage model for a cascade.
    """
    candidate = Path(name_or_path)
    if candidate.is_file():
        return candidate
    if (candidate / MANIFEST_FILE).is_file():  # a tier folder given by path: verified, default precision
        return load_manifest(candidate).model(role).path
    name = str(name_or_path)
    if name == "default":
        name = DEFAULT_MODEL
    if "/" not in name and name not in (".", ".."):
        for root in search_dirs():
            found = _resolve_in(root, name, role)
            if found is not None:
                return found
    if candidate.suffix or "/" in name:
        raise ModelError(f"model file not found: {name_or_path}")
    raise ModelError(
        f"unknown model '{name_or_path}': give a path to an .onnx file or one of: "
        f"default, {', '.join(bundled_names())}"
    )


def display_name(name_or_path: str | Path, path: Path) -> str | None:
    """The unambiguous registry name of a model ``resolve`` found by name (``edge-cascade:triage:int8``,
    ``edge-lite``), so a report names the tier file that ran, not the training run it came from.
    None when ``name_or_path`` was a path."""
    if Path(name_or_path).is_file() or (Path(name_or_path) / MANIFEST_FILE).is_file():
        return None
    manifest_path = path.parent / MANIFEST_FILE
    if manifest_path.is_file():
        manifest = load_manifest(path.parent, check_metadata=False)
        for entry in manifest.models:
            if entry.path.resolve() == path.resolve():
                return manifest.entry_name(entry)
    return path.stem


def _resolve_in(root: Path, name: str, role: str | None = None) -> Path | None:
    """``name`` as a single file or a verified tier folder under ``root``; None when absent there."""
    single = root / f"{name}.onnx"
    if single.is_file():
        return single
    entry = resolve_tier_model(root, name, role)  # a tier folder; every file verified first
    if entry is not None:
        return entry.path
    if ":" in name:  # tier:precision of a single-file model, e.g. edge-nano:fp32
        tier, precision = name.split(":", 1)
        single = root / f"{tier}.onnx"
        if single.is_file() and precision == read_spec(single).precision:
            return single
    return None


def list_bundled() -> list[BundledModel]:
    """Every named model with its validated spec (what ``edge-ls models`` shows), bundled first.

    A damaged model in the user's folder is skipped here (``--model`` on it says what is wrong;
    :func:`list_models` also says which and why).
    """
    return list_models()[0]


def list_models() -> tuple[list[BundledModel], list[BrokenModel]]:
    """Every usable named model (bundled first), and each damaged one in the user's folder with its
    reason. One broken file used to hide every user model: each file and tier folder is judged alone.
    A damaged bundled model is an install problem and raises."""
    models: list[BundledModel] = []
    broken: list[BrokenModel] = []
    seen: set[str] = set()
    for root in search_dirs():
        found: list[BundledModel] = []
        for path in sorted(root.glob("*.onnx")) if root.is_dir() else []:
            try:
                found.append(BundledModel(path.stem, path, read_spec(path)))
            except ModelError as exc:
                if root == BUNDLED_DIR:
                    raise
                broken.append(BrokenModel(path, first_line(exc)))
        for folder in tier_folders(root):
            try:
                manifest = load_manifest(folder)
            except ModelError as exc:
                if root == BUNDLED_DIR:
                    raise
                broken.append(BrokenModel(folder, first_line(exc)))
                continue
            found += [BundledModel(manifest.entry_name(e), e.path, e.spec) for e in manifest.models]
        for m in found:
            if m.name not in seen:
                seen.add(m.name)
                models.append(m)
    return models, broken
