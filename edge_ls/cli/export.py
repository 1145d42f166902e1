"""``edge-ls export``: a trained model (or an FP32 ONNX) -> a verified tier folder, per precision.

This module only parses the options into an :class:`edge_ls.export.driver.ExportRequest` and prints
the tier folder's summary; the sequence itself (load -> prune -> FP32 ONNX -> INT8/FP16 -> accuracy
budget -> manifest) is :func:`edge_ls.export.driver.export_tier`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from edge_ls.artifact import ROLES
from edge_ls.export.driver import PRECISION_CHOICES, ExportRequest, export_tier

log = logging.getLogger(__name__)


def _precisions(text: str) -> list[str]:
    values = [v.strip().lower() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in PRECISION_CHOICES]
    if not values or bad:
        raise argparse.ArgumentTypeError(f"--precision takes a comma list of {', '.join(PRECISION_CHOICES)}")
    return list(dict.fromkeys(values))


def _role_source(text: str) -> tuple[str, str]:
    """``PATH`` or ``ROLE=PATH`` (a cascade: ``triage=... refiner=...``)."""
    role, sep, path = text.partition("=")
    if sep and role in ROLES:
        return role, path
    return "primary", text


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="package a trained model as a tier: pruning, INT8/FP16 ONNX, manifest",
        description=(
            "Export a trained model to a tier folder OUT/TIER/ holding one ONNX file per precision and a "
            "manifest.json (sha256, params, FLOPs, accuracy). INT8 is calibrated on --calib tiles; every "
            "quantized file's F1 loss against FP32 is measured on --eval tiles and must stay within the "
            "budget (default: the profile's, else 1 point). A cascade takes ROLE=SOURCE twice."
        ),
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--checkpoint",
        action="append",
        type=_role_source,
        metavar="[ROLE=]RUN",
        help="training run folder (config.json, best.pt, spec.json); needs edge-ls[export]",
    )
    src.add_argument(
        "--onnx",
        action="append",
        type=_role_source,
        metavar="[ROLE=]FILE",
        help="FP32 ONNX file with edge-ls metadata",
    )
    p.add_argument("--tier", required=True, help="tier name (the folder name and the bundled name prefix)")
    p.add_argument(
        "--precision",
        type=_precisions,
        default=["fp32", "int8"],
        help="comma list of fp32,int8,fp16 (default fp32,int8)",
    )
    p.add_argument("--out", required=True, type=Path, help="folder the tier folder is written into")
    p.add_argument("--prune", type=float, metavar="RATIO", help="prune this fraction of channels (0-1)")
    p.add_argument("--round-to", type=int, default=8, choices=(8, 16), help="channel multiple (default 8)")
    p.add_argument(
        "--fine-tune-steps",
        type=int,
        default=0,
        metavar="N",
        help="distillation steps from the unpruned model on --calib tiles after pruning",
    )
    p.add_argument("--calib", type=Path, metavar="DATASET", help="folder of real tiles for INT8 calibration")
    p.add_argument(
        "--eval",
        type=Path,
        metavar="DATASET",
        help="labelled dataset (images/, masks/) for the accuracy delta; disjoint from --calib",
    )
    p.add_argument("--calib-tiles", type=int, default=32, metavar="N", help="calibration tiles (default 32)")
    p.add_argument("--eval-tiles", type=int, default=0, metavar="N", help="evaluation tiles (default all)")
    p.add_argument("--tile-size", type=int, help="tile size for calibration/eval (default: the model's)")
    p.add_argument(
        "--model-tile",
        type=int,
        metavar="N",
        help="tile size written into the artifacts' metadata (a large-tile tier of the same "
        "model; default: the source's)",
    )
    p.add_argument(
        "--budget",
        type=float,
        metavar="F1_POINTS",
        help="max F1 points a quantized model may lose (default: the tier profile's, else 1)",
    )
    p.add_argument(
        "--default-precision",
        choices=PRECISION_CHOICES,
        help="precision '<tier>' alone resolves to (default: int8 if built, else the lowest)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    request = ExportRequest(
        tier=args.tier,
        out=args.out,
        checkpoint=args.checkpoint or (),
        onnx=args.onnx or (),
        precision=args.precision,
        prune=args.prune,
        round_to=args.round_to,
        fine_tune_steps=args.fine_tune_steps,
        calib=args.calib,
        eval=args.eval,
        calib_tiles=args.calib_tiles,
        eval_tiles=args.eval_tiles,
        tile_size=args.tile_size,
        model_tile=args.model_tile,
        budget=args.budget,
        default_precision=args.default_precision,
        quiet=args.quiet,
        command=" ".join(sys.argv[1:]) if sys.argv else "",
    )
    _print_summary(export_tier(request))
    return 0


def _print_summary(folder: Path) -> None:
    from edge_ls.manifest import load_manifest

    m = load_manifest(folder, check_metadata=False)
    print(f"wrote {folder}")
    for e in m.models:
        acc = e.accuracy.get(e.precision, {}).get("f1") if e.accuracy else None
        f1 = f"F1 {acc:.2f}" if acc is not None else ""
        gflops = f"{e.gflops:.2f} GFLOPs@{e.flops_tile}" if e.gflops is not None else ""
        name = f"{m.tier}:{e.precision}"
        print(f"  {name:<24} {e.role:<8} {e.file:<22} {e.params or 0:>11,} params  {gflops}  {f1}")
