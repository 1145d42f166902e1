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

BUNDLED_DIR = Path(__file__).resolve().parent
#: The embedded default. ``edge-nano`` stays bundled as the reference row when trained tiers take over.
DEFAULT_MODEL = "edge-nano"


@dataclass(frozen=True)
class BundledModel:
    name: str
    path: Path
    spec: ModelSpec


def bundled_names() -> list[str]:
    """Names of the single-file bundled models (``*.onnx`` beside this module)."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.onnx"))


def resolve(name_or_path: str | Path) -> Path:
    """Turn ``--model`` into an ONNX path: an existing path wins, then a bundled name."""
    candidate = Path(name_or_path)
    if candidate.is_file():
        return candidate
    name = str(name_or_path)
    if name == "default":
        name = DEFAULT_MODEL
    bundled = BUNDLED_DIR / f"{name}.onnx"
    if bundled.is_file():
        return bundled
    if ":" in name:  # tier:precision, e.g. edge-lite:int8
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
    paths = [BUNDLED_DIR / f"{n}.onnx" for n in bundled_names()]
    return [BundledModel(p.stem, p, read_spec(p)) for p in paths]
