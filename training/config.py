"""Typed training configuration read from TOML; an unknown key fails naming the key.

One file says everything a run needs (data, model, schedule, distillation, export), so the command
committed beside a result reproduces it. Relative paths are taken from the working directory (the
README commands run from the repository root).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import tomllib

from edge_ls.errors import ConfigError


@dataclass
class RunConfig:
    name: str = "run"
    seed: int = 0
    out_dir: str = "runs/run"
    threads: int = 2
    #: Stop (gracefully, with a checkpoint) after this many minutes; 0 = no budget.
    max_minutes: float = 0.0
    #: Also score the training split at the end (costly for the fusion family on a CPU).
    eval_train: bool = True
    #: "auto" (cuda when present), "cpu" or "cuda".
    device: str = "auto"
    #: Mixed precision of the training forward: "auto" (fp16 + grad scaling on cuda, off on cpu),
    #: "bf16" (no scaling needed; what the GPU script uses), "fp16" or "off".
    autocast: str = "auto"
    #: NHWC activations and weights: the fast layout for convolutions on tensor cores.
    channels_last: bool = False


@dataclass
class DataConfig:
    #: Dataset roots (any layout ``edge_ls.training.datasets.open_dataset`` reads).
    roots: list[str] = field(default_factory=list)
    bands: list[str] = field(default_factory=lambda: ["red", "green", "blue"])
    #: Split file (grouped 70/15/15); created from ``roots`` when missing.
    split_file: str = ""
    #: Training crop size in pixels; validation uses the whole tile resized to ``val_size`` (0 = as is).
    crop: int = 256
    val_size: int = 0
    #: Per-epoch validation on a centre crop of this size (0 = whole tiles); the final metrics
    #: always use whole tiles. Keeps per-epoch validation of the big models affordable on a CPU.
    val_crop: int = 0
    batch_size: int = 8
    #: Crops drawn per epoch (0 = one per training tile).
    samples_per_epoch: int = 0
    augment: bool = True
    seed: int = 0
    #: Ground sampling distance (m) of each root, in ``roots`` order; empty = the known ones
    #: (``edge_ls.training.datasets.KNOWN_GSD_M``).
    gsd_m: list[float] = field(default_factory=list)
    #: Share of the training crops drawn from each root, in ``roots`` order; empty = by tile count.
    weights: list[float] = field(default_factory=list)
    #: Scale augmentation by ground distance: every crop is resampled to a GSD drawn log-uniformly
    #: from ``[lo, hi]`` metres (within what the tile allows); empty = off (``Augment``'s zoom only).
    scale_gsd: list[float] = field(default_factory=list)
    #: Sensor-change augmentation (per-band gain, hue, blur, noise, band order) on top of ``augment``.
    photometric: bool = False
    #: Share of crops shown percentile-stretched per band like the runtime stretches non-8-bit scenes.
    p_stretch: float = 0.0
    #: Fixed per-band input mean/std (e.g. a pretrained encoder's); empty = the training split's.
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)


@dataclass
class ModelConfig:
    name: str = "edge_lite"
    #: false, true (look in $TORCH_HOME) or a path to a weights file/folder.
    pretrained: bool | str = False
    dropout: float = 0.0
    #: Start from the best weights of another run folder (e.g. Fusion+GAN from the Fusion run);
    #: a Fusion checkpoint loads into Fusion+GAN's fusion part.
    init_from: str = ""


@dataclass
class TrainConfig:
    epochs: int = 50
    lr: float = 1e-3
    weight_decay: float = 1e-4
    #: StepLR: multiply the learning rate by ``gamma`` every ``step_size`` epochs.
    step_size: int = 20
    gamma: float = 0.1
    #: Stage 1: epochs with the backbones frozen (only decoder/fusion/heads learn).
    freeze_epochs: int = 0
    #: Stage 3: first epoch (0-based) of end-to-end GAN training; -1 = never (no critic).
    gan_start_epoch: int = -1
    patience: int = 15
    monitor: str = "iou"
    bce_weight: float = 1.0
    iou_weight: float = 1.0
    adv_weight: float = 0.05
    #: TTUR: the critic's learning rate is this multiple of the generator's.
    d_lr_mult: float = 4.0
    gp_weight: float = 10.0
    #: Gradient clipping (global L2 norm); 0 = off.
    clip_grad: float = 0.0


@dataclass
class DistillConfig:
    #: Teacher checkpoint folder (with ``best.pt`` + ``config.json``); empty = no distillation.
    teacher: str = ""
    temperature: float = 2.0
    alpha: float = 0.5


@dataclass
class ExportConfig:
    #: Where the ONNX artifact goes after training; empty = no export.
    onnx: str = ""
    name: str = ""
    tier: str = ""
    tile_size: int = 512
    overlap: float = 0.2
    gsd_m: float = 1.0
    input_range: str = "8bit"
    threshold: float = 0.5
    #: Choose the stored threshold on the validation split (best mean F1 over its datasets, each
    #: dataset weighted alike so no GSD dominates) instead of ``threshold``.
    fit_threshold: bool = False


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> Config:
        """Refuse values that would fail later, with the key that is wrong."""
        from edge_ls.training.networks import MODEL_NAMES

        if self.model.name not in MODEL_NAMES:
            raise ConfigError(f"model.name '{self.model.name}' is unknown (known: {', '.join(MODEL_NAMES)})")
        if not self.data.roots:
            raise ConfigError("data.roots is empty: give at least one dataset folder")
        if self.run.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"run.device must be 'auto', 'cpu' or 'cuda', got '{self.run.device}'")
        if self.run.autocast not in ("auto", "bf16", "fp16", "off"):
            raise ConfigError(
                f"run.autocast must be 'auto', 'bf16', 'fp16' or 'off', got '{self.run.autocast}'"
            )
        if self.train.monitor not in ("iou", "f1"):
            raise ConfigError(f"train.monitor must be 'iou' or 'f1', got '{self.train.monitor}'")
        if self.data.crop % 32 or self.data.crop < 32:
            raise ConfigError(f"data.crop must be a multiple of 32 (>= 32), got {self.data.crop}")
        if self.data.val_size % 32:
            raise ConfigError(f"data.val_size must be a multiple of 32 (or 0), got {self.data.val_size}")
        if self.train.gan_start_epoch >= 0 and self.model.name != "fusion_gan":
            raise ConfigError("train.gan_start_epoch needs model.name = 'fusion_gan'")
        d = self.data
        for key in ("gsd_m", "weights"):
            values = getattr(d, key)
            if values and len(values) != len(d.roots):
                raise ConfigError(f"data.{key} needs one value per data.roots entry ({len(d.roots)})")
            if any(v < 0 for v in values):
                raise ConfigError(f"data.{key} values must not be negative")
        if not 0.0 <= d.p_stretch <= 1.0:
            raise ConfigError(f"data.p_stretch must be in [0, 1], got {d.p_stretch}")
        if d.scale_gsd and (len(d.scale_gsd) != 2 or not 0 < d.scale_gsd[0] <= d.scale_gsd[1]):
            raise ConfigError(f"data.scale_gsd must be [lo, hi] metres with 0 < lo <= hi, got {d.scale_gsd}")
        n = len(d.bands)
        if (d.mean or d.std) and (len(d.mean) != n or len(d.std) != n or min(d.std) <= 0):
            raise ConfigError(f"data.mean and data.std need {n} values each (std > 0)")
        self._check_hed_normalization()
        for key in ("epochs", "batch_size"):
            section = self.train if key == "epochs" else self.data
            if getattr(section, key) < 1:
                raise ConfigError(f"{key} must be at least 1")
        self._check_ranges()
        return self

    def _check_ranges(self) -> None:
        """Numbers torch would reject deep in a run (``lr = -1``: Adam's ValueError, an exit 1 internal
        error) or take silently (NaN loss weights): refused here, naming the key, with exit 2."""
        rules: list[tuple[str, float | int, str]] = [
            ("train.lr", self.train.lr, "positive"),
            ("train.weight_decay", self.train.weight_decay, "non-negative"),
            ("train.step_size", self.train.step_size, "positive"),
            ("train.gamma", self.train.gamma, "positive"),
            ("train.patience", self.train.patience, "non-negative"),
            ("train.freeze_epochs", self.train.freeze_epochs, "non-negative"),
            ("train.bce_weight", self.train.bce_weight, "non-negative"),
            ("train.iou_weight", self.train.iou_weight, "non-negative"),
            ("train.adv_weight", self.train.adv_weight, "non-negative"),
            ("train.d_lr_mult", self.train.d_lr_mult, "positive"),
            ("train.gp_weight", self.train.gp_weight, "non-negative"),
            ("train.clip_grad", self.train.clip_grad, "non-negative"),
            ("distill.temperature", self.distill.temperature, "positive"),
            ("run.threads", self.run.threads, "positive"),
            ("run.max_minutes", self.run.max_minutes, "non-negative"),
            ("data.samples_per_epoch", self.data.samples_per_epoch, "non-negative"),
            ("data.val_crop", self.data.val_crop, "non-negative"),
            ("export.tile_size", self.export.tile_size, "positive"),
            ("export.gsd_m", self.export.gsd_m, "positive"),
        ]
        for key, value, rule in rules:
            ok = math.isfinite(value) and (value > 0 if rule == "positive" else value >= 0)
            if not ok:
                raise ConfigError(f"{key} must be a finite {rule} number, got {value}")
        for key, value, lo, hi in (
            ("model.dropout", self.model.dropout, 0.0, 1.0),
            ("export.overlap", self.export.overlap, 0.0, 0.9),
        ):
            if not (math.isfinite(value) and lo <= value < hi):
                raise ConfigError(f"{key} must be in [{lo:g}, {hi:g}), got {value}")
        if not 0.0 <= self.distill.alpha <= 1.0:
            raise ConfigError(f"distill.alpha must be in [0, 1], got {self.distill.alpha}")
        if not 0.0 < self.export.threshold < 1.0:
            raise ConfigError(f"export.threshold must be between 0 and 1, got {self.export.threshold}")

    def _check_hed_normalization(self) -> None:
        """A pretrained VGG16 branch sees HED's input only with HED's normalization (its conv1 is
        folded for it): any other data.mean / data.std would silently feed it shifted colours."""
        from edge_ls.training.networks import HED_MEAN, HED_MODELS, HED_STD

        if self.model.name not in HED_MODELS or not self.model.pretrained:
            return
        n = min(3, len(self.data.bands))
        mean, std = list(HED_MEAN[:n]), [HED_STD] * n
        given_mean, given_std = self.data.mean[:n], self.data.std[:n]
        if (
            len(given_mean) < n
            or any(abs(a - b) > 1e-4 for a, b in zip(given_mean, mean, strict=True))
            or any(abs(a - b) > 1e-4 for a, b in zip(given_std, std, strict=True))
        ):
            raise ConfigError(
                f"model '{self.model.name}' with pretrained VGG16 (HED) weights needs data.mean = {mean} "
                f"and data.std = {std} (HED's input normalization), got {self.data.mean} / {self.data.std}"
            )


SECTIONS = {f.name: f.type for f in fields(Config)}


def _coerce(section: str, key: str, value: Any, hint: Any) -> Any:
    """Check a TOML value against the dataclass field type (ints accepted for floats)."""
    text = str(hint)
    if hint is float or text == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{section}.{key} must be a number, got {value!r}")
        return float(value)
    if hint is int or text == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{section}.{key} must be an integer, got {value!r}")
        return value
    if hint is bool or text == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{section}.{key} must be true or false, got {value!r}")
        return value
    if hint is str or text == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{section}.{key} must be a string, got {value!r}")
        return value
    if "list[float]" in text:
        if not isinstance(value, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(f"{section}.{key} must be a list of numbers, got {value!r}")
        return [float(v) for v in value]
    if "list" in text:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{section}.{key} must be a list of strings, got {value!r}")
        return list(value)
    if not isinstance(value, bool | str):  # bool | str
        raise ConfigError(f"{section}.{key} must be true/false or a path, got {value!r}")
    return value


def config_from_dict(data: dict[str, Any], source: str = "config") -> Config:
    """Build a Config from nested dicts; every unknown section or key is an error naming it."""
    cfg = Config()
    for section, values in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"{source}: unknown section [{section}] (known: {', '.join(SECTIONS)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        target = getattr(cfg, section)
        hints = get_type_hints(type(target))
        for key, value in values.items():
            if key not in hints:
                raise ConfigError(
                    f"{source}: unknown key '{section}.{key}' (known in [{section}]: {', '.join(hints)})"
                )
            setattr(target, key, _coerce(section, key, value, hints[key]))
    return cfg.validate()


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML training config."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return config_from_dict(data, str(path))
