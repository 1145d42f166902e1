"""The training loop: staged schedule, safe checkpoints, resume after a kill, distillation, export.

Stages (per epoch): ``[0, freeze_epochs)`` backbones frozen (decoder, fusion and heads learn on top of
whatever the encoders know); then end-to-end fine-tuning; from ``gan_start_epoch`` on (Fusion+GAN
only) WGAN-GP adversarial training with a spectral-normalized critic whose learning rate is
``d_lr_mult`` x the generator's (TTUR). Adam with L2 weight decay, StepLR, early stopping on
validation IoU or F1.

Reproducible and resumable: every epoch reseeds torch and numpy from ``(seed, epoch)``, so a run
killed after epoch k and resumed from ``last.pt`` produces the same weights as an uninterrupted one.
``last.pt`` (model, optimizers, schedulers, epoch, early-stopping state, RNG states) and ``best.pt``
(state_dict only) are written to a temporary file and moved into place with ``os.replace``, so a
kill never leaves a half-written checkpoint. Everything loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_ls.errors import ConfigError, InputError, ModelError
from edge_ls.metrics import PixelMetrics, fit_temperature
from edge_ls.training import losses
from edge_ls.training.config import Config, config_from_dict, load_config
from edge_ls.training.models import (
    build_discriminator,
    build_model,
    count_parameters,
    pretrained_provenance,
)
from edge_ls.training.tileset import TileSet, load_tiles

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
BEST = "best.pt"
LAST = "last.pt"
LOG_FILE = "log.jsonl"
METRICS_FILE = "metrics.json"
SPEC_FILE = "spec.json"
#: (model, spec, ONNX path, sample batch or None) -> the ONNX file written; the export layer's
#: :func:`edge_ls.export.onnx_export.export_onnx`, handed in by the caller.
Exporter = Callable[[nn.Module, Any, Path, np.ndarray | None], Path]


# ----------------------------------------------------------------------------------------- helpers
def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``: never half-written."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(text: str, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """One seed per (run seed, epoch): resumed runs replay the same batches and dropout masks."""
    return (seed * 1_000_003 + epoch * 7919) % 2**31


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_checkpoint_model(run_dir: str | Path, which: str = BEST) -> tuple[nn.Module, Config]:
    """Rebuild a trained model from its run folder (``config.json`` + ``best.pt``), weights_only."""
    run_dir = Path(run_dir)
    cfg_path, weights = run_dir / CONFIG_FILE, run_dir / which
    if not cfg_path.is_file() or not weights.is_file():
        raise ModelError(f"{run_dir} is not a training run folder (needs {CONFIG_FILE} and {which})")
    cfg = config_from_dict(json.loads(cfg_path.read_text()), str(cfg_path))
    model = build_model(cfg.model.name, len(cfg.data.bands), None, cfg.model.dropout)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    if which == LAST:
        state = state["model"]
    model.load_state_dict(state)
    return model.eval(), cfg


def predict_logits(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """Full-tile logits for a 1 x C x H x W tensor of any size: reflect-pad to a multiple of 32."""
    h, w = image.shape[-2:]
    ph, pw = (-h) % 32, (-w) % 32
    x = torch.nn.functional.pad(image, (0, pw, 0, ph), mode="reflect") if ph or pw else image
    return model(x)[..., :h, :w]


def evaluate_tiles(
    model: nn.Module,
    tiles: TileSet,
    split: str = "val",
    device: torch.device | None = None,
    whole: bool = True,
    threshold: float = 0.5,
    temperature: float = 1.0,
    per_source: dict[str, Any] | None = None,
) -> tuple[dict, np.ndarray]:
    """Pixel metrics over every pixel of a split (PyTorch forward); also the logits for calibration.

    ``per_source``, when given, receives each dataset's own metrics and sampled (logits, masks),
    so the stored threshold and the ECE can be judged per dataset (per GSD).
    """
    device = device or torch.device("cpu")
    model.eval()
    acc = PixelMetrics(threshold)
    sources = getattr(tiles, f"{split}_source", []) or []
    names = tiles.source_names
    by_source: dict[int, Any] = {}
    sampled: dict[int, list[np.ndarray]] = {}
    logits_all, masks_all = [], []
    for k, (img, mask) in enumerate(tiles.eval_tiles(split, whole)):
        with torch.no_grad():
            logits = predict_logits(model, torch.from_numpy(img[None]).to(device))[0, 0].float().cpu().numpy()
        prob = 1.0 / (1.0 + np.exp(-np.clip(logits / temperature, -60, 60)))
        acc.update(prob, mask)
        pair = np.stack([logits.ravel()[::7], mask.ravel()[::7].astype(np.float32)])
        logits_all.append(pair[0])
        masks_all.append(pair[1])
        if per_source is not None and k < len(sources):
            src = sources[k]
            by_source.setdefault(src, PixelMetrics(threshold)).update(prob, mask)
            sampled.setdefault(src, []).append(pair)
    if per_source is not None:
        for src, m in by_source.items():
            per_source[names[src]] = {
                "metrics": m.compute(),
                "sampled": np.concatenate(sampled[src], axis=1),
            }
    return acc.compute(), np.stack([np.concatenate(logits_all), np.concatenate(masks_all)])


@dataclasses.dataclass(frozen=True)
class Calibration:
    """What a finished model stores and reports: T, threshold, metrics per split and per dataset."""

    temperature: float
    threshold: float
    splits: dict[str, dict]
    per_dataset: dict[str, Any]


def calibrate(
    model: nn.Module,
    tiles: TileSet,
    device: torch.device | None = None,
    fit: bool = True,
    threshold: float = 0.5,
    splits: tuple[str, ...] = ("test",),
) -> Calibration:
    """Temperature (and, with ``fit``, threshold) fitted on val, then metrics on ``splits``.

    One home for what a trainer's finish step and a fused tier (``export/ensemble.py``) both need.
    Multi-dataset runs get per-dataset metrics and the stored threshold's gap to each dataset's best.
    """
    val_sources: dict[str, Any] = {}
    _, calib = evaluate_tiles(model, tiles, "val", device, per_source=val_sources)
    temperature = float(fit_temperature(calib[0], calib[1]))
    per_dataset: dict[str, Any] = {}
    multi = len(tiles.source_names) > 1 or fit
    if multi:
        sampled = {k: v["sampled"] for k, v in val_sources.items()}
        if fit:
            threshold = fit_threshold(sampled, temperature)
        per_dataset["threshold_gap"] = threshold_gaps(sampled, temperature, threshold)
        val_metrics, _ = evaluate_tiles(
            model, tiles, "val", device, threshold=threshold, temperature=temperature
        )
    else:
        val_metrics, _ = evaluate_tiles(model, tiles, "val", device)
    out = {"val": val_metrics}
    for split in splits:
        if not getattr(tiles, split):
            continue
        if split == "train" or not multi:
            out[split] = evaluate_tiles(model, tiles, split, device)[0]
            continue
        sources: dict[str, Any] = {}
        out[split] = evaluate_tiles(
            model, tiles, split, device, threshold=threshold, temperature=temperature, per_source=sources
        )[0]
        per_dataset[split] = {k: _jsonable(v["metrics"]) for k, v in sources.items()}
    return Calibration(temperature, threshold, out, per_dataset)


# ----------------------------------------------------------------------------------------- trainer
class Trainer:
    """One run: ``Trainer(cfg, out_dir).fit()`` trains, checkpoints, logs and (optionally) exports."""

    def __init__(
        self,
        cfg: Config,
        out_dir: str | Path | None = None,
        resume: bool = False,
        progress: Callable[[str], None] | None = None,
        stop_after_epochs: int | None = None,
        config_source: str = "",
        exporter: Exporter | None = None,
    ) -> None:
        self.cfg = cfg
        self.exporter = exporter
        if cfg.export.onnx and exporter is None:  # say so now, not after hours of training
            raise ConfigError(
                f"[export] onnx = '{cfg.export.onnx}' but this trainer was given no exporter: "
                "train with 'edge-ls train' (or pass exporter=edge_ls.export.onnx_export.export_onnx)"
            )
        self.out = Path(out_dir or cfg.run.out_dir)
        self.resume = resume
        self.say = progress or (lambda msg: None)
        self.stop_after_epochs = stop_after_epochs
        self.config_source = config_source
        torch.set_num_threads(max(1, cfg.run.threads))
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.amp = self.device.type == "cuda"

    # -- setup ---------------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.cfg
        self.onnx_out = export_path(cfg.export.onnx, self.out)  # refused before any training, not after
        self.out.mkdir(parents=True, exist_ok=True)
        if not self.resume and (self.out / LAST).exists():
            raise ConfigError(f"{self.out} already holds a run: pass --resume to continue it or choose --out")
        seed_everything(cfg.run.seed)
        self.tiles: TileSet = load_tiles(cfg.data)
        if not self.tiles.train or not self.tiles.val:
            raise InputError(
                f"need training and validation tiles, got {len(self.tiles.train)} / {len(self.tiles.val)}"
            )
        bands = len(cfg.data.bands)
        self.model = build_model(cfg.model.name, bands, cfg.model.pretrained or None, cfg.model.dropout)
        if cfg.model.init_from and not (self.resume and (self.out / LAST).exists()):
            self._init_from(Path(cfg.model.init_from))
        self.model.to(self.device)
        self.parallel = (
            nn.DataParallel(self.model)
            if self.device.type == "cuda" and torch.cuda.device_count() > 1
            else self.model
        )
        tc = cfg.train
        self.opt = torch.optim.Adam(self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=tc.step_size, gamma=tc.gamma)
        self.critic: nn.Module | None = None
        if tc.gan_start_epoch >= 0:
            self.critic = build_discriminator(bands).to(self.device)
            self.d_opt = torch.optim.Adam(self.critic.parameters(), lr=tc.lr * tc.d_lr_mult, betas=(0.5, 0.9))
            self.d_sched = torch.optim.lr_scheduler.StepLR(self.d_opt, step_size=tc.step_size, gamma=tc.gamma)
        self.teacher: nn.Module | None = None
        if cfg.distill.teacher:
            self.teacher, tcfg = load_checkpoint_model(cfg.distill.teacher)
            if tcfg.data.bands != cfg.data.bands:
                raise ConfigError(f"teacher bands {tcfg.data.bands} differ from data.bands {cfg.data.bands}")
            self.teacher.to(self.device)
            for p in self.teacher.parameters():
                p.requires_grad_(False)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp else None
        self.start_epoch, self.best, self.best_epoch, self.history = 0, -1.0, -1, []
        if self.resume and (self.out / LAST).exists():
            self._load_last()
        atomic_write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True), self.out / CONFIG_FILE)

    def _init_from(self, run_dir: Path) -> None:
        source, scfg = load_checkpoint_model(run_dir)
        target = self.model
        if scfg.model.name == "fusion" and self.cfg.model.name == "fusion_gan":
            target = self.model.fusion
        elif scfg.model.name != self.cfg.model.name:
            raise ConfigError(
                f"model.init_from: {run_dir} holds '{scfg.model.name}', not '{self.cfg.model.name}'"
            )
        target.load_state_dict(source.state_dict())
        self.say(f"initialized from {run_dir / BEST}")

    def _load_last(self) -> None:
        state = torch.load(self.out / LAST, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        if self.critic is not None and "critic" in state:
            self.critic.load_state_dict(state["critic"])
            self.d_opt.load_state_dict(state["critic_optimizer"])
            self.d_sched.load_state_dict(state["critic_scheduler"])
        self.start_epoch = int(state["epoch"]) + 1
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
        self.history = list(state["history"])
        torch.set_rng_state(state["torch_rng"])
        _set_numpy_state(state["numpy_rng"])
        random.setstate(_to_tuple(state["python_rng"]))
        self.say(f"resumed {self.out} after epoch {self.start_epoch - 1} (best {self.best:.4f})")

    def _save_last(self, epoch: int) -> None:
        state: dict[str, Any] = {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "epoch": epoch,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": _numpy_state(),
            "python_rng": random.getstate(),
        }
        if self.critic is not None:
            state.update(
                critic=self.critic.state_dict(),
                critic_optimizer=self.d_opt.state_dict(),
                critic_scheduler=self.d_sched.state_dict(),
            )
        atomic_save(state, self.out / LAST)

    # -- one epoch -----------------------------------------------------------------------------
    def _set_stage(self, epoch: int) -> str:
        tc = self.cfg.train
        frozen = epoch < tc.freeze_epochs
        backbones = self.model.backbones() if hasattr(self.model, "backbones") else []
        for bb in backbones:
            for p in bb.parameters():
                p.requires_grad_(not frozen)
        self.model.train()
        if frozen:  # frozen encoders keep their BN statistics too
            for bb in backbones:
                bb.eval()
        if self.critic is not None and epoch >= tc.gan_start_epoch:
            return "gan"
        return "frozen" if frozen and backbones else "finetune"

    def _batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng(epoch_seed(self.cfg.data.seed + self.cfg.run.seed, epoch))
        for img, mask in self.tiles.train_batches(rng):
            yield (torch.from_numpy(img).to(self.device), torch.from_numpy(mask).to(self.device))

    def _supervised(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, output logits) of the supervised part, including distillation when configured."""
        tc, dc = self.cfg.train, self.cfg.distill
        if hasattr(self.model, "forward_both"):
            fused, out = (
                self.parallel.module.forward_both(x)
                if self.parallel is not self.model
                else self.model.forward_both(x)
            )
            loss = losses.segmentation_loss(fused, y, tc.bce_weight, tc.iou_weight)
            loss = loss + losses.segmentation_loss(out, y, tc.bce_weight, tc.iou_weight)
            return loss, out
        out = self.parallel(x)
        if self.teacher is not None:
            with torch.no_grad():
                teacher_logits = self.teacher(x)
            loss = tc.bce_weight * losses.distillation_loss(out, teacher_logits, y, dc.temperature, dc.alpha)
            loss = loss + tc.iou_weight * losses.soft_iou_loss(out, y)
            return loss, out
        return losses.segmentation_loss(out, y, tc.bce_weight, tc.iou_weight), out

    def _train_epoch(self, epoch: int, stage: str) -> dict[str, float]:
        tc = self.cfg.train
        sums: dict[str, float] = {"loss": 0.0}
        n = 0
        for x, y in self._batches(epoch):
            if stage == "gan":
                assert self.critic is not None
                with torch.no_grad():
                    fake = torch.sigmoid(self.model(x))
                d_loss, gp = losses.critic_loss(self.critic, x, y, fake, tc.gp_weight)
                self.d_opt.zero_grad(set_to_none=True)
                d_loss.backward()
                self.d_opt.step()
                sums["critic"] = sums.get("critic", 0.0) + float(d_loss.detach())
                sums["gp"] = sums.get("gp", 0.0) + float(gp.detach())
            self.opt.zero_grad(set_to_none=True)
            with torch.autocast(self.device.type, enabled=self.amp):
                loss, out = self._supervised(x, y)
                if stage == "gan":
                    adv = losses.generator_adversarial_loss(self.critic, x, torch.sigmoid(out))
                    loss = loss + tc.adv_weight * adv
                    sums["adv"] = sums.get("adv", 0.0) + float(adv.detach())
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.opt)
                self.scaler.update()
            else:
                loss.backward()
                if tc.clip_grad > 0:
                    nn.utils.clip_grad_norm_(self.model.parameters(), tc.clip_grad)
                self.opt.step()
            sums["loss"] += float(loss.detach())
            n += 1
        return {k: v / max(n, 1) for k, v in sums.items()}

    @torch.no_grad()
    def evaluate_split(
        self,
        split: str = "val",
        model: nn.Module | None = None,
        whole: bool = True,
        threshold: float = 0.5,
        temperature: float = 1.0,
        per_source: dict[str, Any] | None = None,
    ) -> tuple[dict, np.ndarray]:
        """:func:`evaluate_tiles` on this run's tiles (default: the model being trained)."""
        return evaluate_tiles(
            model or self.model, self.tiles, split, self.device, whole, threshold, temperature, per_source
        )

    # -- the run -------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        self._setup()
        cfg, tc = self.cfg, self.cfg.train
        started = time.monotonic()
        params = count_parameters(self.model)
        self._log(
            {
                "event": "start",
                "model": cfg.model.name,
                "params": params,
                "resume_epoch": self.start_epoch,
                "train_tiles": len(self.tiles.train),
                "val_tiles": len(self.tiles.val),
                "test_tiles": len(self.tiles.test),
                "skipped_pairs": self.tiles.skipped,
                "device": str(self.device),
            }
        )
        self.say(
            f"{cfg.model.name}: {params / 1e6:.2f} M params, {len(self.tiles.train)} train / "
            f"{len(self.tiles.val)} val tiles, epochs {self.start_epoch}..{tc.epochs - 1}"
        )
        stopped = "epochs"
        epochs_run = 0
        for epoch in range(self.start_epoch, tc.epochs):
            if self.best_epoch >= 0 and epoch - self.best_epoch > tc.patience:
                stopped = "early stopping"
                break
            seed = epoch_seed(cfg.run.seed, epoch)
            torch.manual_seed(seed)
            random.seed(seed)
            stage = self._set_stage(epoch)
            t0 = time.monotonic()
            train_stats = self._train_epoch(epoch, stage)
            seconds = time.monotonic() - t0
            metrics, _ = self.evaluate_split("val", whole=False)
            score = float(metrics[tc.monitor])
            improved = score > self.best
            if improved:
                self.best, self.best_epoch = score, epoch
                atomic_save(self.model.state_dict(), self.out / BEST)
            lr = self.opt.param_groups[0]["lr"]
            self.sched.step()
            if self.critic is not None and stage == "gan":
                self.d_sched.step()
            samples = self.tiles.samples_per_epoch
            row = {
                "event": "epoch",
                "epoch": epoch,
                "stage": stage,
                "lr": lr,
                **train_stats,
                "train_seconds": round(seconds, 2),
                "samples_per_s": round(samples / max(seconds, 1e-9), 3),
                "val": {k: metrics[k] for k in ("f1", "iou", "precision", "recall", "accuracy", "mcc")},
                "best": self.best,
                "improved": improved,
            }
            self.history.append({"epoch": epoch, "loss": train_stats["loss"], tc.monitor: score})
            self._log(row)
            self._save_last(epoch)
            self.say(
                f"epoch {epoch:3d} [{stage}] loss {train_stats['loss']:.4f} val {tc.monitor} {score:.4f} "
                f"f1 {metrics['f1']:.4f} best {self.best:.4f}@{self.best_epoch} ({seconds:.0f}s)"
            )
            epochs_run += 1
            if self.stop_after_epochs is not None and epochs_run >= self.stop_after_epochs:
                stopped = "stop_after_epochs"
                break
            if cfg.run.max_minutes and (time.monotonic() - started) / 60 > cfg.run.max_minutes:
                stopped = "time budget"
                break
        self._log({"event": "stopped", "reason": stopped, "best_epoch": self.best_epoch, "best": self.best})
        if stopped == "stop_after_epochs":
            return {"stopped": stopped, "epoch": self.start_epoch + epochs_run - 1}
        return self.finish(stopped)

    def finish(self, stopped: str = "epochs") -> dict[str, Any]:
        """Best weights -> temperature fit on val -> per-split metrics -> metrics.json (+ ONNX export)."""
        best = build_model(self.cfg.model.name, len(self.cfg.data.bands), None, self.cfg.model.dropout)
        best.load_state_dict(torch.load(self.out / BEST, map_location="cpu", weights_only=True))
        best.to(self.device).eval()
        cal = calibrate(
            best,
            self.tiles,
            self.device,
            fit=self.cfg.export.fit_threshold,
            threshold=self.cfg.export.threshold,
            splits=("train", "test") if self.cfg.run.eval_train else ("test",),
        )
        temperature, threshold = cal.temperature, cal.threshold
        splits, per_dataset = cal.splits, cal.per_dataset
        self.threshold = threshold
        summary: dict[str, Any] = {
            "run": self.cfg.run.name,
            "model": self.cfg.model.name,
            "params": count_parameters(best),
            "best_epoch": self.best_epoch,
            "monitor": self.cfg.train.monitor,
            "best": self.best,
            "stopped": stopped,
            "temperature": temperature,
            "threshold": threshold,
            "metrics": {s: _jsonable(m) for s, m in splits.items()},
            "per_dataset": per_dataset,
            "note": (
                "pixel metrics aggregated over every pixel of each split, PyTorch forward; threshold 0.5 "
                "at T = 1, except val/test of a multi-dataset run: the stored threshold at the fitted T"
            ),
            "provenance": self.provenance(),
        }
        spec = self.spec(best, temperature)
        atomic_write_text(spec.to_json(), self.out / SPEC_FILE)
        if self.cfg.export.onnx:
            summary["onnx"] = str(self.export(best, spec))
        atomic_write_text(json.dumps(summary, indent=2, sort_keys=True), self.out / METRICS_FILE)
        self._log(
            {
                "event": "done",
                **{k: summary[k] for k in ("best_epoch", "best", "temperature")},
                "metrics": summary["metrics"],
            }
        )
        self.say(
            f"done: best {self.cfg.train.monitor} {self.best:.4f} at epoch {self.best_epoch}; "
            f"T = {temperature:.3f}; test f1 {splits.get('test', {}).get('f1', float('nan')):.4f}"
        )
        return summary

    def provenance(self) -> dict[str, Any]:
        split_file = Path(self.tiles.split_file)
        return {
            "config": self.cfg.to_dict(),
            "config_file": self.config_source,
            "data": list(self.cfg.data.roots),
            "split_file": str(split_file),
            "split_sha256": file_sha256(split_file) if split_file.is_file() else "",
            "git_commit": git_commit(),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__,
            "best_epoch": self.best_epoch,
            "pretrained_weights": pretrained_provenance(self.cfg.model.name, self.cfg.model.pretrained),
        }

    def spec(self, model: nn.Module, temperature: float) -> Any:
        """The ModelSpec: band stats of the training split, fitted temperature, provenance."""
        from edge_ls.artifact import ModelSpec

        ec = self.cfg.export
        return ModelSpec(
            name=ec.name or self.cfg.run.name,
            tier=ec.tier or self.cfg.model.name.replace("_", "-"),
            bands=tuple(self.cfg.data.bands),
            mean=tuple(self.tiles.mean),
            std=tuple(self.tiles.std),
            input_range=ec.input_range,
            gsd_m=ec.gsd_m,
            tile_size=ec.tile_size,
            overlap=ec.overlap,
            activation="logits",
            threshold=getattr(self, "threshold", ec.threshold),
            temperature=temperature,
            gsd_range_m=tuple(self.cfg.data.scale_gsd) if self.cfg.data.scale_gsd else None,
            provenance={**self.provenance(), "model": self.cfg.model.name, "params": count_parameters(model)},
        )

    def export(self, model: nn.Module, spec: Any) -> Path:
        """The ONNX artifact in the run folder (:func:`export_path`), parity-checked on a real
        validation tile, by the exporter the caller gave (``edge-ls train`` passes
        :func:`edge_ls.export.onnx_export.export_onnx`: training sits below export, so it cannot
        import it)."""
        assert self.exporter is not None  # checked in __init__
        out = export_path(self.cfg.export.onnx, self.out)
        assert out is not None  # called only when [export] onnx is set
        sample = np.stack([img for img, _ in list(self.tiles.eval_tiles("val"))[:1]])[..., :256, :256]
        return self.exporter(model.cpu().eval(), spec, out, np.ascontiguousarray(sample, dtype=np.float32))

    def _log(self, row: dict[str, Any]) -> None:
        row = {"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **row}
        with open(self.out / LOG_FILE, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(_jsonable(row), sort_keys=True) + "\n")


def export_path(onnx: str, run_dir: Path) -> Path | None:
    """Where a run writes its ONNX: ``[export] onnx`` relative to the run folder (None: no export).

    Training never touches the models edge-ls runs by name: a path into the bundled models or the
    user's model folder is refused. Promoting a run's model into a tier is ``edge-ls export``'s job
    (verified manifest, accuracy budget), a step the user takes on purpose.
    """
    if not onnx:
        return None
    from edge_ls.models.registry import BUNDLED_DIR, user_models_dir

    path = Path(onnx).expanduser()
    path = path if path.is_absolute() else run_dir / path
    target = path.resolve()
    for root, what in ((BUNDLED_DIR, "the bundled models"), (user_models_dir(), "the user's model folder")):
        if target.is_relative_to(root.resolve()):
            raise ConfigError(
                f"[export] onnx = '{onnx}' points into {what} ({root}): a training run writes its ONNX "
                "in its run folder (e.g. onnx = 'model.onnx'); promote it with 'edge-ls export "
                "--checkpoint RUN --tier NAME --out FOLDER'"
            )
    return path


def _f1_curve(sampled: np.ndarray, temperature: float, thresholds: np.ndarray) -> np.ndarray:
    """F1 of the landslide class at each threshold, from sampled (logits, masks)."""
    prob = 1.0 / (1.0 + np.exp(-np.clip(sampled[0] / temperature, -60, 60)))
    truth = sampled[1] > 0.5
    out = np.zeros(len(thresholds))
    for k, t in enumerate(thresholds):
        pred = prob >= t
        tp = float(np.sum(pred & truth))
        denom = float(pred.sum() + truth.sum())
        out[k] = 2 * tp / denom if denom else 0.0
    return out


THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.01), 2)


def fit_threshold(sampled: dict[str, np.ndarray], temperature: float) -> float:
    """The threshold with the best mean F1 over datasets, each dataset weighted alike.

    Why per dataset: pooled pixels would let the largest set (or GSD) choose the threshold alone,
    and the threshold must travel to sensors that are in none of them.
    """
    curves = np.stack([_f1_curve(v, temperature, THRESHOLDS) for v in sampled.values()])
    return float(THRESHOLDS[int(np.argmax(curves.mean(axis=0)))])


def threshold_gaps(sampled: dict[str, np.ndarray], temperature: float, stored: float) -> dict[str, Any]:
    """Per dataset: its best threshold, F1 there and at ``stored``, and the gap in F1 points."""
    out = {}
    k = int(np.argmin(np.abs(THRESHOLDS - stored)))
    for name, v in sampled.items():
        curve = _f1_curve(v, temperature, THRESHOLDS)
        best = int(np.argmax(curve))
        out[name] = {
            "best_threshold": float(THRESHOLDS[best]),
            "f1_at_best": round(float(curve[best]), 4),
            "f1_at_stored": round(float(curve[k]), 4),
            "gap_points": round(100 * float(curve[best] - curve[k]), 2),
        }
    return out


def _numpy_state() -> dict[str, Any]:
    """numpy's global RNG state in types ``torch.load(weights_only=True)`` accepts (no ndarray)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def _set_numpy_state(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["cached"]))


def _to_tuple(value: Any) -> Any:
    return tuple(_to_tuple(v) for v in value) if isinstance(value, list | tuple) else value


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    return value


def train_from_file(
    path: str | Path,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    max_minutes: float | None = None,
    exporter: Exporter | None = None,
) -> dict[str, Any]:
    """What ``edge-ls train --config FILE`` runs (``max_minutes`` overrides ``run.max_minutes``)."""
    cfg = load_config(path)
    if max_minutes is not None:
        cfg.run.max_minutes = max_minutes
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else None
    trainer = Trainer(cfg, out_dir, resume=resume, progress=say, config_source=str(path), exporter=exporter)
    return trainer.fit()
