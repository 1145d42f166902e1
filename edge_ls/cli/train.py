"""``edge-ls train --config FILE [--resume] [--out DIR]``: one training run from a TOML config.

torch is imported inside :func:`run` only, so the runtime CLI never loads it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from edge_ls.errors import MissingExtraError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model from a TOML config (needs the 'train' extra)",
        description="Train a model from a TOML config: progress on stderr, checkpoints (best.pt, last.pt), "
        "a JSON-lines run log and metrics.json in the run folder; the ONNX artifact when [export] says so.",
    )
    parser.add_argument(
        "--config", required=True, help="training config (TOML), e.g. training/configs/edge_lite.toml"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in the output folder from last.pt"
    )
    parser.add_argument("--out", help="run folder (default: run.out_dir of the config)")
    parser.add_argument(
        "--max-minutes", type=float, help="wall-clock budget of this invocation (overrides run.max_minutes)"
    )
    parser.add_argument(
        "--finish",
        action="store_true",
        help="only the finish step (calibration, metrics, spec, ONNX) on a run folder whose epochs ran "
        "elsewhere, e.g. unpacked by training/gpu_train.py",
    )
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    parser.add_argument(
        "--json", action="store_true", help="print the final metrics summary as JSON on stdout"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise MissingExtraError("torch", "train", "edge-ls train") from None
    from edge_ls.export.onnx_export import export_onnx
    from edge_ls.training.trainer import train_from_file

    summary = train_from_file(
        args.config,
        args.out,
        resume=args.resume,
        progress=not args.quiet,
        max_minutes=args.max_minutes,
        exporter=export_onnx,
        finish_only=args.finish,
    )
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    return 0
