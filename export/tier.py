"""Package ONNX files into a tier folder with its ``manifest.json`` (format: :mod:`edge_ls.manifest`).

The folder is assembled beside its destination and renamed into place only once the manifest
verifies, so a half-written tier never exists under the tier's name.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edge_ls import __version__
from edge_ls.artifact import PRECISIONS, ModelSpec, read_spec
from edge_ls.errors import ConfigError, ModelError, OutputError
from edge_ls.manifest import MANIFEST_FILE, MANIFEST_SCHEMA, ROLES, load_manifest, model_filename, sha256_file

#: When no default precision is given, the tier's ``<tier>`` name picks the first present of these.
PRECISION_PREFERENCE = ("int8", "mixed", "fp16", "fp32")


def build_tier(
    name: str,
    models: Mapping[str, str | Path | Sequence[str | Path]],
    out_dir: str | Path,
    info: Mapping[str, Any] | None = None,
    *,
    default_precision: str | None = None,
    flops_tile: int | None = None,
    accuracy: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Write ``out_dir/<name>/`` holding every model and its manifest; returns the folder.

    ``models`` maps a role (``primary``, or ``triage`` and ``refiner``) to one ONNX path or several
    (one per precision; each file's precision is read from its edge-ls metadata). Params and FLOPs
    are counted on each graph at ``flops_tile`` (default: the model's tile size); accuracy is the
    ``provenance.accuracy`` record :func:`edge_ls.export.quantize.accuracy_delta` left in the file,
    or ``accuracy["<role>:<precision>"]`` when given (e.g. the FP32 scores measured beside it).
    """
    import onnx

    from edge_ls.export.flops import graph_cost

    if not name or "/" in name or ":" in name:
        raise ConfigError(f"tier name {name!r} must be a plain name (no '/' or ':')")
    unknown = sorted(set(models) - set(ROLES))
    if unknown:
        raise ConfigError(f"unknown model role(s) {unknown}: use {', '.join(ROLES)}")
    if not models:
        raise ConfigError("a tier needs at least one model")
    if "refiner" in models and "triage" not in models:
        raise ConfigError("a cascade tier needs a 'triage' model beside its 'refiner'")
    out = Path(out_dir)
    final = out / name
    staging = out / f".{name}.staging"
    try:
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
    except OSError as exc:
        raise OutputError(f"cannot write the tier under {out}: {exc.strerror or exc}") from None

    entries: list[dict[str, Any]] = []
    for role, paths in models.items():
        for src in [paths] if isinstance(paths, str | Path) else list(paths):
            src = Path(src)
            spec = read_spec(src)
            if any(e["role"] == role and e["precision"] == spec.precision for e in entries):
                raise ConfigError(f"two {role} models in {spec.precision} for tier {name}")
            file = model_filename(role, spec.precision)
            shutil.copyfile(src, staging / file)
            cost = graph_cost(onnx.load(str(src), load_external_data=False), flops_tile or spec.tile_size)
            entry = _entry(role, spec, staging / file, cost)
            entry["accuracy"] = dict((accuracy or {}).get(f"{role}:{spec.precision}", entry["accuracy"]))
            entries.append(entry)

    precisions = [e["precision"] for e in entries]
    chosen = default_precision or next(p for p in PRECISION_PREFERENCE if p in precisions)
    if chosen not in PRECISIONS or chosen not in precisions:
        raise ConfigError(
            f"default precision {chosen!r} is not among the built ones ({', '.join(precisions)})"
        )
    manifest = {
        "schema_version": MANIFEST_SCHEMA,
        "tier": name,
        "default_precision": chosen,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "edge_ls_version": __version__,
        "models": entries,
        "files": {p.name: sha256_file(p) for p in sorted(staging.iterdir()) if p.is_file()},
        "info": dict(info or {}),
    }
    (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=_jsonable))
    load_manifest(staging)  # the runtime's own check, before the tier takes its name
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    return final


def _entry(role: str, spec: ModelSpec, path: Path, cost: Any) -> dict[str, Any]:
    return {
        "role": role,
        "precision": spec.precision,
        "file": path.name,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "params": cost.params,
        "macs": cost.macs,
        "flops": cost.flops,
        "flops_tile": cost.tile,
        "accuracy": dict(spec.provenance.get("accuracy", {})),
        "metadata": json.loads(spec.to_json()),
    }


def _jsonable(value: Any) -> Any:
    """numpy scalars and paths in ``info`` become plain JSON values."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise ModelError(f"tier info holds a value JSON cannot store: {type(value).__name__}")
