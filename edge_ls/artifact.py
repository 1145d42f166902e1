"""The model-artifact contract: what an ONNX file must carry to be run right.

A model is an ONNX file whose metadata (``metadata_props``) holds one key, ``edge_ls``, a JSON object
described by :class:`ModelSpec`. The preprocessing contract travels with the weights, so a model can
never be fed imagery scaled, ordered or normalized differently from how it was trained (the
Landslide4Sense lesson). The runtime refuses a model whose metadata is missing or invalid.

Input tensor: float32 NCHW, channels in ``bands`` order, values ``(scaled - mean) / std`` where
``scaled`` is the raster brought to [0, 1] as ``input_range`` says. Output tensor: N x 1 x H x W,
logits or probabilities as ``activation`` says.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_ls.backends.onnxrt import open_session
from edge_ls.errors import ModelError
from edge_ls.pixel_math import sigmoid

METADATA_KEY = "edge_ls"
SCHEMA_VERSION = 1

#: Band names a model may ask for. RGB are matched to GDAL colour interpretation; the others to band
#: descriptions. Order in a spec is the channel order the model expects.
KNOWN_BANDS = (
    "red",
    "green",
    "blue",
    "nir",
    "rededge1",
    "rededge2",
    "rededge3",
    "nir08",
    "swir1",
    "swir2",
    "coastal",
    "watervapour",
    "cirrus",
    "gray",
    "slope",
    "dem",
)
#: ``8bit``: trained on 8-bit display imagery; uint8 is divided by 255, anything else is percentile
#: stretched to [0, 1]. ``reflectance``: trained on surface reflectance in [0, 1]; integer rasters are
#: divided by ``reflectance_scale`` (Sentinel-2 L2A: 10000), float rasters taken as they are.
INPUT_RANGES = ("8bit", "reflectance")
#: ``logits``: the runtime applies sigmoid(z / temperature). ``sigmoid``: the graph already outputs
#: probabilities (temperature must then be 1).
ACTIVATIONS = ("logits", "sigmoid")
PRECISIONS = ("fp32", "fp16", "int8", "mixed")
#: The one definition of model roles: ``primary`` runs alone; a cascade has a ``triage`` model that
#: scores every tile and a ``refiner`` run on its ROIs (``edge_ls.backends.cascade``). Manifests,
#: profiles, the export and the deployment all use this tuple.
ROLES = ("primary", "triage", "refiner")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to feed a model and read its output; stored as JSON in the ONNX metadata."""

    name: str
    tier: str
    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_range: str
    gsd_m: float
    tile_size: int
    overlap: float
    activation: str
    threshold: float
    temperature: float = 1.0
    precision: str = "fp32"
    reflectance_scale: float = 10000.0
    provenance: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    #: [lo, hi] ground sampling distances (m) the model was trained to see (scale augmentation);
    #: None for models trained at one GSD. A scene far outside it is read at ``gsd_m``.
    gsd_range_m: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ModelError(f"model '{self.name}' has invalid edge-ls metadata: {'; '.join(problems)}")

    @property
    def stride(self) -> int:
        """Tile stride in pixels for the recommended overlap."""
        return max(1, round(self.tile_size * (1.0 - self.overlap)))

    def probabilities(self, raw: np.ndarray) -> np.ndarray:
        """Model output -> float32 probabilities, as every consumer must read it: logits are
        temperature-scaled through a sigmoid, a ``sigmoid`` model's output is taken as it is."""
        if self.activation == "logits":
            return sigmoid(raw, self.temperature)
        return np.asarray(raw, dtype=np.float32)

    def to_json(self) -> str:
        data = asdict(self)
        data["bands"] = list(self.bands)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        data["provenance"] = dict(self.provenance)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> ModelSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"{source}: edge-ls metadata is not valid JSON ({exc.msg})") from None
        return cls.from_dict(data, source)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "model") -> ModelSpec:
        if not isinstance(data, Mapping):
            raise ModelError(f"{source}: edge-ls metadata must be a JSON object")
        names = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ModelError(f"{source}: unknown edge-ls metadata key(s): {', '.join(unknown)}")
        required = [
            "name",
            "tier",
            "bands",
            "mean",
            "std",
            "input_range",
            "gsd_m",
            "tile_size",
            "overlap",
            "activation",
            "threshold",
        ]
        missing = [k for k in required if k not in data]
        if missing:
            raise ModelError(f"{source}: edge-ls metadata lacks {', '.join(missing)}")
        values = dict(data)
        try:
            for key in ("bands", "mean", "std"):
                values[key] = tuple(values[key])
            for key in ("gsd_m", "overlap", "threshold", "temperature", "reflectance_scale"):
                if key in values:
                    values[key] = float(values[key])
            values["tile_size"] = int(values["tile_size"])
            if values.get("gsd_range_m") is not None:
                lo, hi = values["gsd_range_m"]
                values["gsd_range_m"] = (float(lo), float(hi))
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{source}: edge-ls metadata has a value of the wrong type ({exc})") from None
        return cls(**values)


def _problems(spec: ModelSpec) -> list[str]:
    """List what is wrong with a spec, so one message can name every problem at once."""
    out: list[str] = []
    if not spec.name or not spec.tier:
        out.append("name and tier must be non-empty")
    if not spec.bands:
        out.append("bands is empty")
    unknown = [b for b in spec.bands if b not in KNOWN_BANDS]
    if unknown:
        out.append(f"unknown band(s) {unknown} (known: {', '.join(KNOWN_BANDS)})")
    if len(set(spec.bands)) != len(spec.bands):
        out.append("bands repeat")
    if len(spec.mean) != len(spec.bands) or len(spec.std) != len(spec.bands):
        out.append(f"mean/std need one value per band ({len(spec.bands)})")
    if any(not math.isfinite(s) or s <= 0 for s in spec.std):
        out.append("std values must be positive")
    if spec.input_range not in INPUT_RANGES:
        out.append(f"input_range must be one of {INPUT_RANGES}")
    if spec.activation not in ACTIVATIONS:
        out.append(f"activation must be one of {ACTIVATIONS}")
    if spec.precision not in PRECISIONS:
        out.append(f"precision must be one of {PRECISIONS}")
    if not (spec.gsd_m > 0 and math.isfinite(spec.gsd_m)):
        out.append("gsd_m must be a positive number of metres")
    if spec.gsd_range_m is not None:
        lo, hi = spec.gsd_range_m
        if not (0 < lo <= hi and math.isfinite(hi)):
            out.append("gsd_range_m must be [lo, hi] metres with 0 < lo <= hi")
    if spec.tile_size < 16:
        out.append("tile_size must be at least 16")
    if not 0.0 <= spec.overlap < 0.9:
        out.append("overlap must be in [0, 0.9)")
    if not 0.0 < spec.threshold < 1.0:
        out.append("threshold must be in (0, 1)")
    if not (spec.temperature > 0 and math.isfinite(spec.temperature)):
        out.append("temperature must be positive")
    if spec.activation == "sigmoid" and spec.temperature != 1.0:
        out.append("a model that outputs probabilities (activation 'sigmoid') cannot carry a temperature")
    if spec.reflectance_scale <= 0:
        out.append("reflectance_scale must be positive")
    if spec.schema_version != SCHEMA_VERSION:
        out.append(f"schema_version {spec.schema_version} unsupported (this edge-ls reads {SCHEMA_VERSION})")
    return out


def read_spec(model_path: str | Path) -> ModelSpec:
    """Read and validate the spec stored in an ONNX file, without loading its weights into a session."""
    path = Path(model_path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    session = open_session(path, optimize=False, error="{name} is not a loadable ONNX model ({reason})")
    props = session.get_modelmeta().custom_metadata_map
    return spec_from_metadata(props, path.name)


def spec_from_metadata(props: Mapping[str, str], source: str) -> ModelSpec:
    """Build the spec from an ONNX metadata map; refuse a model without one."""
    if METADATA_KEY not in props:
        raise ModelError(
            f"{source} has no edge-ls metadata (key '{METADATA_KEY}'): export it with 'edge-ls export' "
            "or add the metadata with edge_ls.artifact.write_spec"
        )
    return ModelSpec.from_json(props[METADATA_KEY], source)


def write_spec(onnx_model: Any, spec: ModelSpec) -> None:
    """Store ``spec`` in an ``onnx.ModelProto`` in place (needs the ``onnx`` package)."""
    for prop in list(onnx_model.metadata_props):
        if prop.key == METADATA_KEY:
            onnx_model.metadata_props.remove(prop)
    entry = onnx_model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = spec.to_json()
