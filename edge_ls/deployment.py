"""From a tier name to a run: :func:`deploy` turns a profile (or ``auto``, or a bare model) into one typed
:class:`Deployment`: the models by role, the :class:`DetectOptions`, the backend order, the thresholds
and the outputs. ``edge-ls detect``, ``edge-ls bench``, ``bench/`` and library callers all build their
runs here, so a profile's tile, batch, overlap, thresholds and uncertainty switch reach every caller
the same way (before, the CLI copied some of them into the options and a library caller got none).

Precedence, one rule for every setting: an explicit override, then the profile, then the model's
metadata (``None`` in :class:`DetectOptions` means "what the model recommends").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from edge_ls.artifact import ROLES, ModelSpec, read_spec
from edge_ls.errors import ConfigError, ModelError
from edge_ls.models.registry import display_name, resolve
from edge_ls.profiles import Profile, load_profile, missing_tier_hint

__all__ = ["ROLES", "Deployment", "DetectOptions", "LoadedModel", "deploy"]

#: Backends that need a GPU (their skip on a GPU-less machine is expected under ``auto``).
GPU_BACKENDS = ("tensorrt", "onnxruntime-cuda")


@dataclass(frozen=True)
class DetectOptions:
    """How to run one detection; ``None`` means "what the model's metadata recommends"."""

    tile_size: int | None = None
    overlap: float | None = None
    threshold: float | None = None
    batch_size: int = 1
    readers: int = 2
    queue_depth: int = 8
    bands: tuple[int, ...] | None = None
    #: Declare a nodata value the file does not carry (e.g. 0 for the zero collar of an export).
    nodata: float | None = None
    #: None: the area of 9 pixels (a 3 x 3 blob), so single-pixel speckle does not flood the GeoJSON.
    min_area_m2: float | None = None
    #: None: half a pixel in CRS units, which removes the pixel staircase without moving edges.
    simplify_tolerance: float | None = None
    #: Probability/confidence rasters: "percent" (uint8 0..100, scale 0.01) or "float32" (0..1).
    layers: str = "percent"
    intra_op_threads: int | None = None
    #: Threads calling the runner at once; None: one per core (at most 2) on the CPU, one on a GPU.
    streams: int | None = None
    #: The tier profile the run comes from: its backend order picks the runner (see :func:`deploy`
    #: for how its tile, batch and thresholds get here).
    profile: Profile | None = None
    progress: bool = False
    #: Read a scene far outside the model's trained GSD range at the nearest trained GSD
    #: (``edge_ls.io.resample``); outputs stay on the scene's grid.
    resample: bool = True
    #: Test-time augmentations for ``uncertainty.tif`` (D4 transforms, 2..8); 0: no uncertainty layer.
    uncertainty_tta: int = 0
    #: D4 views the deciding model's calibrated probability is averaged over (a cascade: its refiner
    #: only); 1: the model as it is. Costs ``views`` times that model's inference.
    views: int = 1
    #: Scales the same model (and views) is also run at, averaged with equal weight (a cascade: its
    #: refiner only); (1.0,): the scene's own pixels. Scale s costs s² of one run.
    scales: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        """Refuse values a run would otherwise replace or trip over later (``--tile-size 0`` became
        the model's tile; ``--nodata 1e400`` is inf): every caller, CLI or library, gets one line."""
        problems = _option_problems(self)
        if problems:
            raise ConfigError("invalid detect option: " + "; ".join(problems))


def _option_problems(o: DetectOptions) -> list[str]:
    """What is wrong with ``o``, each naming the field and its ``edge-ls detect`` flag."""
    out: list[str] = []

    def positive(name: str, flag: str, value: object, optional: bool = False) -> None:
        if optional and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            out.append(f"{name} ({flag}) must be a whole number of at least 1, got {value!r}")

    positive("tile_size", "--tile-size", o.tile_size, optional=True)
    positive("batch_size", "--batch", o.batch_size)
    positive("readers", "--readers", o.readers)
    positive("queue_depth", "queue depth", o.queue_depth)
    positive("streams", "--streams", o.streams, optional=True)
    positive("intra_op_threads", "threads", o.intra_op_threads, optional=True)
    if o.nodata is not None and math.isinf(o.nodata):
        out.append(
            f"nodata (--nodata) must be a finite number or nan, got {o.nodata} (too large for a float?)"
        )
    if o.overlap is not None and not 0.0 <= o.overlap < 0.9:
        out.append(f"overlap (--overlap) must be in [0, 0.9), got {o.overlap}")
    if o.threshold is not None and not 0.0 < o.threshold < 1.0:
        out.append(f"threshold (--threshold) must be between 0 and 1, got {o.threshold}")
    for name, flag, value in (
        ("min_area_m2", "--min-area", o.min_area_m2),
        ("simplify_tolerance", "--simplify", o.simplify_tolerance),
    ):
        if value is not None and not (math.isfinite(value) and value >= 0):
            out.append(f"{name} ({flag}) must be a finite number >= 0, got {value}")
    if o.layers not in ("percent", "float32"):
        out.append(f"layers (--layers) must be 'percent' or 'float32', got {o.layers!r}")
    if isinstance(o.views, bool) or not isinstance(o.views, int) or not 1 <= o.views <= 8:
        out.append(f"views must be 1..8 (D4 transforms averaged), got {o.views!r}")
    if (
        not isinstance(o.scales, tuple)
        or not o.scales
        or len(set(o.scales)) != len(o.scales)
        or not all(isinstance(s, float) and 0.25 <= s <= 2.0 for s in o.scales)
    ):
        out.append(f"scales must be a tuple of distinct floats in [0.25, 2], at least one, got {o.scales!r}")
    if o.uncertainty_tta != 0 and not 2 <= o.uncertainty_tta <= 8:
        out.append(f"uncertainty_tta must be 0 or 2..8, got {o.uncertainty_tta}")
    return out


@dataclass(frozen=True)
class LoadedModel:
    """A model resolved to a file, with its validated spec."""

    path: Path
    spec: ModelSpec
    #: The registry name it was loaded by (``edge-lite:int8``); None when loaded from a path.
    name: str | None = None

    @classmethod
    def load(cls, name_or_path: str | Path, role: str | None = None) -> LoadedModel:
        """Resolve a name or path; a tier that is not installed says how to build it."""
        try:
            path = resolve(name_or_path, None if role in (None, "primary") else role)
        except ModelError as exc:
            hint = missing_tier_hint(str(name_or_path)) if str(exc).startswith("unknown model") else None
            if hint is None:
                raise
            raise ModelError(f"model '{name_or_path}' is not installed: {hint}") from None
        return cls(path, read_spec(path), display_name(name_or_path, path))

    @property
    def label(self) -> str:
        return self.name or self.path.name


@dataclass(frozen=True)
class Deployment:
    """Everything a run needs, typed: what :func:`edge_ls.pipeline.detect` and the bench consume."""

    #: The profile's tier name, or the model's name when run without a profile.
    name: str
    #: Role (:data:`ROLES`) -> model: ``primary``, or ``triage`` + ``refiner`` for a cascade.
    models: Mapping[str, LoadedModel]
    options: DetectOptions
    #: Backends to try, best first (a bare model: ONNX Runtime with the best provider it has).
    backends: tuple[str, ...]
    profile: Profile | None = None
    #: Triage probability that sends a tile (and its neighbours) to the refiner; cascades only.
    roi_threshold: float | None = None
    #: Share of a tile's pixels that must reach ``roi_threshold`` (0: any pixel); cascades only.
    roi_area: float = 0.0
    #: Whether a refined tile's eight grid neighbours are refined too; cascades only.
    roi_neighbours: bool = True
    #: Side (px) of the windows the ROI rule and the refiner work on (0: whole tiles); cascades only.
    roi_window: int = 0
    #: User-facing lines about how the deployment was chosen (``auto``'s reason, the settings).
    notes: tuple[str, ...] = ()
    #: Backend skips that are expected and not worth a line on stderr (``auto`` without a GPU).
    expected_skips: tuple[str, ...] = field(default=())

    @property
    def is_cascade(self) -> bool:
        return "triage" in self.models

    @property
    def model(self) -> LoadedModel:
        """The model whose spec reads the scene and whose threshold decides: a cascade's refiner."""
        return self.models["refiner"] if self.is_cascade else self.models["primary"]

    @property
    def outputs(self) -> tuple[str, ...]:
        """The optional layers this deployment adds to the standard outputs."""
        return ("uncertainty.tif",) if self.options.uncertainty_tta else ()

    @property
    def threshold(self) -> float:
        return self.model.spec.threshold if self.options.threshold is None else self.options.threshold

    def describe(self) -> str:
        """One line: the models, tile, batch and overlap this run uses."""
        models = ", ".join(f"{role} {m.label}" for role, m in self.models.items())
        o = self.options
        tile = o.tile_size or self.model.spec.tile_size
        overlap = self.model.spec.overlap if o.overlap is None else o.overlap
        extra = ""
        if self.roi_threshold is not None:
            area = f" on {self.roi_area:.1%} of a tile" if self.roi_area else " anywhere"
            near = " + neighbours" if self.roi_neighbours else ""
            win = f", refined in {self.roi_window}-px windows" if self.roi_window else ""
            extra = f", ROI {self.roi_threshold:g}{area}{near}{win}"
        unc = f", uncertainty from {o.uncertainty_tta} D4 transforms" if o.uncertainty_tta else ""
        who = "refiner" if self.is_cascade else "model"
        parts = [f"over {o.views} D4 views"] if o.views > 1 else []
        if o.scales != (1.0,):
            parts.append(f"at scales {', '.join(f'{s:g}' for s in o.scales)}")
        views = f", {who} averaged {' '.join(parts)}" if parts else ""
        run = f"tile {tile}, batch {o.batch_size}, overlap {overlap:g}"
        return f"{self.name}: {models}; {run}{extra}{unc}{views}"


_OPTION_NAMES = frozenset(f.name for f in fields(DetectOptions))


def deploy(
    profile: str | Path | Profile | None = None,
    *,
    model: str | Path | LoadedModel | None = None,
    options: DetectOptions | None = None,
    **overrides: Any,
) -> Deployment:
    """The deployment for ``profile`` (a name, TOML path, :class:`Profile`, or ``"auto"``), else for
    ``model`` alone (default: the embedded default model). Both: ``model`` runs alone with the
    profile's settings and backends (what a library caller passing ``DetectOptions(profile=...)`` gets).

    ``options`` is the base (defaults otherwise); ``overrides`` are :class:`DetectOptions` fields set
    explicitly (a CLI flag), which win over the profile; a ``None`` override means "not given".
    """
    unknown = sorted(set(overrides) - _OPTION_NAMES)
    if unknown:
        raise TypeError(f"unknown DetectOptions field(s): {', '.join(unknown)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    base = options or DetectOptions()
    if profile is None:
        loaded = model if isinstance(model, LoadedModel) else LoadedModel.load(model or "default")
        opts = replace(base, **given)
        name = loaded.label
        return Deployment(name, MappingProxyType({"primary": loaded}), opts, ("onnxruntime",))

    notes: list[str] = []
    expected: tuple[str, ...] = ()
    if isinstance(profile, Profile):
        chosen = profile
    else:
        ref = profile
        if str(profile) == "auto":
            from edge_ls import hardware

            hw = hardware.detect_hardware()
            ref, reason = hardware.pick_profile(hw)
            notes.append(f"--profile auto picked '{ref}': {reason}")
            expected = () if hw.has_gpu else GPU_BACKENDS
        chosen = load_profile(ref)
    if model is not None:
        loaded = model if isinstance(model, LoadedModel) else LoadedModel.load(model)
        models = MappingProxyType({"primary": loaded})
    else:
        models = MappingProxyType(
            {role: LoadedModel.load(ref, role) for role, ref in chosen.models.items() if role in ROLES}
        )
    from_profile: dict[str, Any] = {
        "tile_size": chosen.tile,
        "overlap": chosen.overlap,
        "threshold": chosen.decision_threshold,
        "batch_size": chosen.batch,
        "uncertainty_tta": chosen.tta if chosen.uncertainty else 0,
        "views": chosen.views if chosen.views > 1 else None,
        "scales": chosen.scales if chosen.scales != (1.0,) else None,
    }
    from_profile = {k: v for k, v in from_profile.items() if v is not None}
    opts = replace(base, **{**from_profile, **given, "profile": chosen})
    deployment = Deployment(
        name=chosen.name,
        models=models,
        options=opts,
        backends=chosen.backends,
        profile=chosen,
        roi_threshold=chosen.roi_threshold if "triage" in models else None,
        roi_area=chosen.roi_area if "triage" in models else 0.0,
        roi_neighbours=chosen.roi_neighbours if "triage" in models else True,
        roi_window=chosen.roi_window if "triage" in models else 0,
        notes=tuple(notes),
        expected_skips=expected,
    )
    _check(deployment)
    return replace(deployment, notes=(*deployment.notes, f"profile {deployment.describe()}"))


def _check(d: Deployment) -> None:
    """A cascade's two models must read the same input, and the ROI must not exceed the decision
    threshold (a tile left to triage must not be able to decide a detection the refiner never saw)."""
    if (d.options.views > 1 or d.options.scales != (1.0,)) and d.options.uncertainty_tta:
        raise ConfigError(
            f"'{d.name}': views or scales (averaged) and the uncertainty layer cannot be combined yet "
            "(set views = 1 and scales = [1.0], or [outputs] uncertainty = false)"
        )
    if not d.is_cascade:
        return
    if d.options.uncertainty_tta:
        raise ConfigError(
            f"profile '{d.name}': the uncertainty layer is not available for a cascade yet "
            "(set [outputs] uncertainty = false, or use a single-model profile)"
        )
    triage, refiner = d.models["triage"].spec, d.models["refiner"].spec
    if tuple(triage.bands) != tuple(refiner.bands) or triage.input_range != refiner.input_range:
        raise ConfigError(
            f"profile '{d.name}': triage {d.models['triage'].label} reads {list(triage.bands)} "
            f"({triage.input_range}), refiner {d.models['refiner'].label} reads {list(refiner.bands)} "
            f"({refiner.input_range}); a cascade's models must read the same bands the same way"
        )
    roi = d.roi_threshold
    if roi is not None and roi > d.threshold:
        raise ConfigError(
            f"profile '{d.name}': thresholds.roi {roi:g} is above the decision threshold {d.threshold:g}: "
            "tiles the refiner skips could still be decided on the triage output"
        )
