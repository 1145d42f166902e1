"""The typed tier profile and its validating loader (``edge_ls.profiles`` re-exports these names).

A profile says how a tier runs (the seed's Table 7 columns): which models (role -> bundled name or
ONNX path), tile size, batch, overlap, precision, the backend preference order, thresholds, optional
outputs, the accuracy budget quantization must stay within, and the min/opt/max batch and tile sizes
TensorRT optimization profiles are built for. Profiles are validated on load: an unknown key, a value
of the wrong type or out of range fails with a :class:`ConfigError` naming the file, the key and the
value, so a typo can never silently fall back to a default.

Reading TOML: Python 3.11+ has ``tomllib``; on 3.10 the ``tomli`` package (same API) is used when
installed, otherwise loading a profile fails with a message saying to install it.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from edge_ls.artifact import PRECISIONS, ROLES
from edge_ls.errors import ConfigError

PROFILES_DIR = Path(__file__).resolve().parent

#: Backends a profile may list, best first in its ``backends`` order.
KNOWN_BACKENDS = ("tensorrt", "onnxruntime-cuda", "onnxruntime-cpu")
MODEL_ROLES = ROLES  # the name older callers import (the tuple lives in edge_ls.artifact)
#: TensorRT ``HardwareCompatibilityLevel``: none (this GPU model only), ampere+ (any Ampere or newer
#: GPU), same-compute-capability (any GPU with this GPU's compute capability; TensorRT >= 10.x).
HARDWARE_COMPATIBILITY = ("none", "ampere+", "same-compute-capability")
#: F1 points a quantized artifact may lose against FP32 (issue #4: 1 point).
DEFAULT_ACCURACY_BUDGET_F1 = 1.0
#: Tiles must be a multiple of the models' total downsampling (5 stride-2 stages = 32).
DEFAULT_TILE_MULTIPLE = 32
DEFAULT_WORKSPACE_MB = 1024
#: Test-time augmentations for the uncertainty layer: the D4 group (4 rotations x 2 flips) has 8.
D4_SIZE = 8
DEFAULT_TTA = D4_SIZE


@dataclass(frozen=True)
class ShapeRange:
    """Minimum, optimum and maximum of one dynamic dimension (a TensorRT optimization profile axis)."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise ConfigError(
                "shape range needs 1 <= min <= opt <= max, "
                f"got min {self.min}, opt {self.opt}, max {self.max}"
            )

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.min <= value <= self.max

    def as_tuple(self) -> tuple[int, int, int]:
        return (self.min, self.opt, self.max)


@dataclass(frozen=True)
class TensorRTOptions:
    """How a TensorRT engine is built for this tier (ignored by the ONNX Runtime backends)."""

    batch: ShapeRange
    tile: ShapeRange
    workspace_mb: int = DEFAULT_WORKSPACE_MB
    version_compatible: bool = False
    hardware_compatibility: str = "none"
    timing_cache: bool = True


@dataclass(frozen=True)
class Profile:
    """One deployment tier, validated; build it with :func:`load_profile`."""

    tier: str
    description: str
    models: Mapping[str, str]
    tile: int
    batch: int
    overlap: float
    precision: str
    backends: tuple[str, ...]
    tensorrt: TensorRTOptions
    decision_threshold: float | None = None
    roi_threshold: float | None = None
    #: Share of a tile's pixels that must reach the ROI for the tile to be refined; 0: any pixel.
    roi_area: float = 0.0
    #: Whether a refined tile's eight grid neighbours are refined too.
    roi_neighbours: bool = True
    #: Side (px) of the windows the ROI rule is applied to and the refiner runs on; 0: whole tiles.
    roi_window: int = 0
    #: D4 views (flips, quarter turns) the deciding model's probability is averaged over; a cascade
    #: averages its refiner only, so the extra cost falls on the ROI tiles. 1: none.
    views: int = 1
    #: Scales the deciding model (with its views) also runs at, averaged with equal weight; (1.0,): none.
    scales: tuple[float, ...] = (1.0,)
    uncertainty: bool = False
    #: How many D4 transforms (identity first) the uncertainty layer averages over, 2..8.
    tta: int = DEFAULT_TTA
    accuracy_budget_f1: float = DEFAULT_ACCURACY_BUDGET_F1
    tile_multiple: int = DEFAULT_TILE_MULTIPLE
    source: Path | None = None
    #: How to build this tier's models when they are not installed (``[install] command``), and how
    #: long that took where it was measured (``[install] took``, with its source); empty when bundled.
    install_command: str = ""
    install_took: str = ""

    @property
    def name(self) -> str:
        return self.tier

    @property
    def is_cascade(self) -> bool:
        return "triage" in self.models

    @property
    def primary_model(self) -> str:
        """The model a single-model pipeline runs: ``primary``, or a cascade's ``triage`` stage.

        A cascade's ``refiner`` needs the cascade runner; use :attr:`models` for every role.
        """
        return self.models["triage"] if self.is_cascade else self.models["primary"]

    @property
    def install_hint(self) -> str | None:
        """How to build this tier when it is not installed, and how long that took where measured;
        None when the profile says nothing (a bundled tier)."""
        if not self.install_command:
            return None
        took = f" ({self.install_took})" if self.install_took else ""
        return f"build it with: {self.install_command}{took}"

    @property
    def stride(self) -> int:
        """Tile stride in pixels for the profile's overlap (as :attr:`ModelSpec.stride`)."""
        return max(1, round(self.tile * (1.0 - self.overlap)))


# --------------------------------------------------------------------------------------------- loading


def list_profiles() -> list[str]:
    """Names of the bundled profiles (``profiles/*.toml``), sorted."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def profile_path(name_or_path: str | Path) -> Path:
    """Resolve a profile name (``edge-lite``) or a TOML path to a file; an unknown name lists the known."""
    candidate = Path(name_or_path)
    if candidate.is_file():
        return candidate
    text = str(name_or_path)
    if candidate.suffix == ".toml" or "/" in text:
        raise ConfigError(f"profile file not found: {text}")
    bundled = PROFILES_DIR / f"{text}.toml"
    if bundled.is_file():
        return bundled
    hint = difflib.get_close_matches(text, list_profiles(), n=1)
    did_you_mean = f" (did you mean '{hint[0]}'?)" if hint else ""
    raise ConfigError(
        f"unknown profile '{text}'{did_you_mean}: give a TOML file or one of: {', '.join(list_profiles())}"
    )


def load_profile(name_or_path: str | Path) -> Profile:
    """Load and validate a profile by bundled name or TOML path."""
    path = profile_path(name_or_path)
    return parse_profile(_read_toml(path), source=path)


def missing_tier_hint(name: str) -> str | None:
    """For a model name like ``edge-cascade:int8`` that did not resolve: the install hint of the tier
    profile of that name, if there is one."""
    tier = str(name).split(":", 1)[0]
    if tier not in list_profiles():
        return None
    try:
        return load_profile(tier).install_hint
    except ConfigError:
        return None


def load_all() -> list[Profile]:
    """Every bundled profile, validated (what ``edge-ls profiles`` shows)."""
    return [load_profile(name) for name in list_profiles()]


def _read_toml(path: Path) -> dict[str, Any]:
    toml = _toml_module()
    try:
        with path.open("rb") as fh:
            return toml.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read profile {path}: {exc.strerror or exc}") from None
    except toml.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name} is not valid TOML: {exc}") from None


def _toml_module() -> Any:
    """``tomllib`` (3.11+), else ``tomli`` (3.10), else a clear error."""
    try:
        import tomllib

        return tomllib
    except ModuleNotFoundError:
        try:
            import tomli

            return tomli
        except ModuleNotFoundError:
            raise ConfigError(
                "reading profiles on Python 3.10 needs 'tomli': pip install tomli (Python 3.11+ has tomllib)"
            ) from None


# ------------------------------------------------------------------------------------------ validation

_TOP_KEYS = (
    "tier",
    "description",
    "models",
    "tile",
    "batch",
    "overlap",
    "precision",
    "backends",
    "thresholds",
    "outputs",
    "accuracy_budget_f1",
    "tile_multiple",
    "views",
    "scales",
    "tensorrt",
    "install",
)
_REQUIRED = ("tier", "models", "tile", "batch", "overlap", "precision", "backends")
_THRESHOLD_KEYS = ("decision", "roi", "roi_area", "roi_neighbours", "roi_window")
_OUTPUT_KEYS = ("uncertainty", "tta")
_INSTALL_KEYS = ("command", "took")
_TRT_KEYS = ("batch", "tile", "workspace_mb", "version_compatible", "hardware_compatibility", "timing_cache")
_RANGE_KEYS = ("min", "opt", "max")


class _Checker:
    """Reads typed values out of the TOML tree, collecting every problem with its dotted key."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def fail(self, key: str, message: str) -> None:
        self.problems.append(f"{key}: {message}")

    def table(self, data: Any, key: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.fail(key, f"must be a table, got {_show(data)}")
            return {}
        for unknown in sorted(set(data) - set(allowed)):
            hint = difflib.get_close_matches(unknown, allowed, n=1)
            tip = f" (did you mean '{hint[0]}'?)" if hint else f" (known: {', '.join(allowed)})"
            self.fail(f"{key}.{unknown}" if key else unknown, f"unknown key{tip}")
        return data

    def value(
        self,
        data: dict[str, Any],
        key: str,
        path: str,
        kind: type,
        check: Callable[[Any], str] | None = None,
        default: Any = None,
    ) -> Any:
        if key not in data:
            return default
        got = data[key]
        ok = isinstance(got, kind) and not (kind in (int, float) and isinstance(got, bool))
        if kind is float and isinstance(got, int) and not isinstance(got, bool):
            got, ok = float(got), True
        if not ok:
            self.fail(path, f"must be {_KIND_NAMES[kind]}, got {_show(got)}")
            return default
        problem = check(got) if check else ""
        if problem:
            self.fail(path, f"{problem}, got {_show(got)}")
            return default
        return got

    def raise_if_any(self) -> None:
        if self.problems:
            raise ConfigError(f"{self.source}: {'; '.join(self.problems)}")


_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list"}


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    return lambda v: "" if v in choices else f"must be one of {', '.join(choices)}"


def _unit_open(v: float) -> str:
    return "" if 0.0 < v < 1.0 and math.isfinite(v) else "must be between 0 and 1 (exclusive)"


def parse_profile(data: Mapping[str, Any], source: str | Path = "profile") -> Profile:
    """Validate a parsed TOML tree into a :class:`Profile`; every problem is named in one ConfigError."""
    label = Path(source).name if isinstance(source, Path) else str(source)
    c = _Checker(label)
    top = c.table(dict(data), "", _TOP_KEYS)
    for key in _REQUIRED:
        if key not in top:
            c.fail(key, "is required")

    tier = c.value(top, "tier", "tier", str, lambda v: "" if v.strip() else "must not be empty", "")
    description = c.value(top, "description", "description", str, default="")
    tile_multiple = c.value(
        top,
        "tile_multiple",
        "tile_multiple",
        int,
        lambda v: "" if v >= 1 else "must be at least 1",
        DEFAULT_TILE_MULTIPLE,
    )

    def tile_check(v: int) -> str:
        if v < 32:
            return "must be at least 32 px"
        if v % tile_multiple:
            return f"must be a multiple of {tile_multiple} (the models' stride; see tile_multiple)"
        return ""

    tile = c.value(top, "tile", "tile", int, tile_check, 0)
    batch = c.value(top, "batch", "batch", int, lambda v: "" if v >= 1 else "must be at least 1", 0)
    overlap = c.value(
        top, "overlap", "overlap", float, lambda v: "" if 0.0 <= v < 0.9 else "must be in [0, 0.9)", 0.0
    )
    precision = c.value(top, "precision", "precision", str, _one_of(PRECISIONS), "fp32")
    budget = c.value(
        top,
        "accuracy_budget_f1",
        "accuracy_budget_f1",
        float,
        lambda v: "" if 0.0 < v <= 100.0 else "must be F1 points in (0, 100]",
        DEFAULT_ACCURACY_BUDGET_F1,
    )

    backends = _backends(c, top)
    models = _models(c, top)
    thresholds = c.table(top.get("thresholds", {}), "thresholds", _THRESHOLD_KEYS)
    decision = c.value(thresholds, "decision", "thresholds.decision", float, _unit_open)
    roi = c.value(thresholds, "roi", "thresholds.roi", float, _unit_open)
    roi_area = c.value(
        thresholds,
        "roi_area",
        "thresholds.roi_area",
        float,
        lambda v: "" if 0.0 <= v < 1.0 else "must be a share of the tile in [0, 1)",
        0.0,
    )
    roi_neighbours = c.value(thresholds, "roi_neighbours", "thresholds.roi_neighbours", bool, default=True)
    roi_window = c.value(
        thresholds,
        "roi_window",
        "thresholds.roi_window",
        int,
        lambda v: (
            ""
            if v == 0 or (0 < v < tile and v % tile_multiple == 0)
            else f"must be 0 (whole tiles) or a multiple of {tile_multiple} below the tile ({tile})"
        ),
        0,
    )
    if roi_window and roi_neighbours:
        c.fail("thresholds.roi_window", "refines windows of a tile; set thresholds.roi_neighbours = false")
    outputs = c.table(top.get("outputs", {}), "outputs", _OUTPUT_KEYS)
    uncertainty = c.value(outputs, "uncertainty", "outputs.uncertainty", bool, default=False)
    tta = c.value(
        outputs,
        "tta",
        "outputs.tta",
        int,
        lambda v: "" if 2 <= v <= D4_SIZE else f"must be 2..{D4_SIZE} (the D4 flips and rotations)",
        DEFAULT_TTA,
    )
    views = c.value(
        top,
        "views",
        "views",
        int,
        lambda v: "" if 1 <= v <= D4_SIZE else f"must be 1..{D4_SIZE} (the D4 flips and rotations)",
        1,
    )
    scales = c.value(
        top,
        "scales",
        "scales",
        list,
        lambda v: (
            ""
            if v
            and all(isinstance(s, (int, float)) and not isinstance(s, bool) and 0.25 <= s <= 2.0 for s in v)
            and len(set(v)) == len(v)
            else "must list distinct scales in [0.25, 2], e.g. [1.0, 0.5]"
        ),
        [1.0],
    )
    install = c.table(top.get("install", {}), "install", _INSTALL_KEYS)
    install_command = c.value(install, "command", "install.command", str, default="")
    install_took = c.value(install, "took", "install.took", str, default="")

    if models:
        cascade = "triage" in models or "refiner" in models
        if cascade and not {"triage", "refiner"} <= set(models):
            c.fail("models", "a cascade needs both 'triage' and 'refiner'")
        if cascade and "primary" in models:
            c.fail("models", "give either 'primary' or a cascade ('triage' + 'refiner'), not both")
        if cascade and roi is None and "roi" not in thresholds:
            c.fail(
                "thresholds.roi",
                "is required for a cascade (the triage probability that sends a tile to the refiner)",
            )
        for key in ("roi", "roi_area", "roi_neighbours", "roi_window"):
            if not cascade and key in thresholds:
                c.fail(f"thresholds.{key}", "only applies to a cascade (models.triage + models.refiner)")

    trt = _tensorrt(c, top.get("tensorrt"), tile, batch, tile_multiple)
    c.raise_if_any()
    return Profile(
        tier=tier,
        description=description,
        models=MappingProxyType(dict(models)),
        tile=tile,
        batch=batch,
        overlap=overlap,
        precision=precision,
        backends=tuple(backends),
        tensorrt=trt,
        decision_threshold=decision,
        roi_threshold=roi,
        roi_area=roi_area,
        roi_neighbours=roi_neighbours,
        roi_window=roi_window,
        views=views,
        scales=tuple(float(s) for s in scales),
        uncertainty=uncertainty,
        tta=tta,
        accuracy_budget_f1=budget,
        tile_multiple=tile_multiple,
        source=Path(source) if isinstance(source, Path) else None,
        install_command=install_command,
        install_took=install_took,
    )


def _backends(c: _Checker, top: dict[str, Any]) -> list[str]:
    raw = c.value(top, "backends", "backends", list, default=[])
    if "backends" in top and isinstance(top["backends"], list) and not raw:
        c.fail("backends", "must list at least one backend")
    out: list[str] = []
    for i, name in enumerate(raw):
        if not isinstance(name, str) or name not in KNOWN_BACKENDS:
            c.fail(f"backends[{i}]", f"must be one of {', '.join(KNOWN_BACKENDS)}, got {_show(name)}")
        elif name in out:
            c.fail(f"backends[{i}]", f"'{name}' is listed twice")
        else:
            out.append(name)
    return out


def _models(c: _Checker, top: dict[str, Any]) -> dict[str, str]:
    if "models" not in top:
        return {}
    table = c.table(top["models"], "models", ROLES)
    if isinstance(top["models"], dict) and not top["models"]:
        c.fail("models", "must name at least one model (primary, or triage + refiner)")
    models: dict[str, str] = {}
    for role in ROLES:
        ref = c.value(
            table,
            role,
            f"models.{role}",
            str,
            lambda v: "" if v.strip() else "must be a model name or ONNX path",
        )
        if ref is not None:
            models[role] = ref
    return models


def _range(c: _Checker, data: Any, path: str, default: ShapeRange) -> ShapeRange:
    if data is None:
        return default
    table = c.table(data, path, _RANGE_KEYS)
    values: dict[str, int] = {}
    for key in _RANGE_KEYS:
        if key not in table and isinstance(data, dict):
            c.fail(f"{path}.{key}", "is required")
        got = c.value(table, key, f"{path}.{key}", int, lambda v: "" if v >= 1 else "must be at least 1")
        if got is not None:
            values[key] = got
    if len(values) < 3:
        return default
    if not values["min"] <= values["opt"] <= values["max"]:
        lo, opt, hi = values["min"], values["opt"], values["max"]
        c.fail(path, f"needs min <= opt <= max, got min {lo}, opt {opt}, max {hi}")
        return default
    return ShapeRange(values["min"], values["opt"], values["max"])


def _tensorrt(c: _Checker, data: Any, tile: int, batch: int, tile_multiple: int) -> TensorRTOptions:
    """The [tensorrt] table; missing ranges default to the profile's own tile and batch (static shapes)."""
    fallback_tile = ShapeRange(tile, tile, tile) if tile >= 1 else ShapeRange(1, 1, 1)
    fallback_batch = ShapeRange(1, batch, batch) if batch >= 1 else ShapeRange(1, 1, 1)
    if data is None:
        return TensorRTOptions(batch=fallback_batch, tile=fallback_tile)
    table = c.table(data, "tensorrt", _TRT_KEYS)
    batch_range = _range(c, table.get("batch"), "tensorrt.batch", fallback_batch)
    tile_range = _range(c, table.get("tile"), "tensorrt.tile", fallback_tile)
    if "tile" in table:
        for key, v in zip(_RANGE_KEYS, tile_range.as_tuple(), strict=True):
            if v % tile_multiple:
                c.fail(f"tensorrt.tile.{key}", f"must be a multiple of {tile_multiple}, got {v}")
    if tile and "tile" in table and tile not in tile_range:
        c.fail(
            "tensorrt.tile",
            f"must include the profile's tile {tile} (min {tile_range.min}, max {tile_range.max})",
        )
    if batch and "batch" in table and batch not in batch_range:
        c.fail(
            "tensorrt.batch",
            f"must include the profile's batch {batch} (min {batch_range.min}, max {batch_range.max})",
        )
    workspace = c.value(
        table,
        "workspace_mb",
        "tensorrt.workspace_mb",
        int,
        lambda v: "" if v >= 16 else "must be at least 16 MB",
        DEFAULT_WORKSPACE_MB,
    )
    version_compatible = c.value(
        table, "version_compatible", "tensorrt.version_compatible", bool, default=False
    )
    hw = c.value(
        table,
        "hardware_compatibility",
        "tensorrt.hardware_compatibility",
        str,
        _one_of(HARDWARE_COMPATIBILITY),
        "none",
    )
    timing_cache = c.value(table, "timing_cache", "tensorrt.timing_cache", bool, default=True)
    return TensorRTOptions(
        batch=batch_range,
        tile=tile_range,
        workspace_mb=workspace,
        version_compatible=version_compatible,
        hardware_compatibility=hw,
        timing_cache=timing_cache,
    )
