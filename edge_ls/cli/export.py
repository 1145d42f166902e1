"""``edge-ls export``: a trained model (or an FP32 ONNX) -> a verified tier folder, per precision.

Steps: load (training run folder, or ONNX with edge-ls metadata) -> optional channel pruning and
distillation fine-tuning -> FP32 ONNX (parity-checked on real tiles) -> INT8 (Q/DQ, calibrated on
``--calib``) and/or FP16 (casts) -> accuracy delta of each against FP32 on ``--eval`` (disjoint from
calibration; fails past the budget) -> ``<out>/<tier>/`` with ``manifest.json``. torch is needed
only for ``--checkpoint`` and ``--prune`` (the ``export`` extra); an ONNX input needs onnx.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from edge_ls.errors import ConfigError, InputError, MissingExtraError

log = logging.getLogger(__name__)

PRECISION_CHOICES = ("fp32", "int8", "fp16")
ROLES = ("primary", "triage", "refiner")


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
    sources = args.checkpoint or args.onnx
    roles = [r for r, _ in sources]
    if len(set(roles)) != len(roles):
        raise ConfigError("each role may be given once (a cascade: triage=... and refiner=...)")
    _check_args(args)
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise MissingExtraError("onnx", "export", "edge-ls export") from None
    if args.checkpoint or args.prune:
        try:
            import torch  # noqa: F401
        except ImportError:
            raise MissingExtraError("torch", "export", "exporting a checkpoint or pruning") from None

    from tqdm import tqdm

    from edge_ls.export.tier import build_tier

    budget = args.budget if args.budget is not None else _profile_budget(args.tier)
    args.calib_range, args.eval_range = _split(args)
    info: dict[str, Any] = {
        "budget_f1": budget,
        "calib": str(args.calib or ""),
        "eval": str(args.eval or ""),
        "command": " ".join(sys.argv[1:]) if sys.argv else "",
    }
    files: dict[str, list[Path]] = {}
    accuracy: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="edge-ls-export-") as tmp:
        work = Path(tmp)
        quantized = [p for p in args.precision if p != "fp32"]
        stages = tqdm(
            total=len(sources) * (1 + len(quantized)) + 1,
            desc=f"export {args.tier}",
            unit="step",
            disable=args.quiet,
            file=sys.stderr,
        )
        for role, source in sources:
            stages.set_postfix_str(f"{role}: fp32")
            fp32, role_info = _fp32_model(args, role, Path(source), work)
            info[role] = role_info
            stages.update()
            files[role] = [fp32] if "fp32" in args.precision else []
            for precision in quantized:
                stages.set_postfix_str(f"{role}: {precision}")
                target = work / f"{role}.{precision}.onnx"
                path, fp32_scores = _quantized(args, fp32, precision, target, budget)
                files[role].append(path)
                accuracy[f"{role}:fp32"] = fp32_scores
                stages.update()
            if not files[role]:
                raise ConfigError("--precision must include at least one precision")
        stages.set_postfix_str("manifest")
        folder = build_tier(
            args.tier, files, args.out, info, default_precision=args.default_precision, accuracy=accuracy
        )
        stages.update()
        stages.close()
    _print_summary(folder)
    return 0


def _check_args(args: argparse.Namespace) -> None:
    if args.prune is not None and not 0.0 < args.prune < 1.0:
        raise ConfigError(f"--prune takes a fraction of channels in (0, 1), got {args.prune}")
    if args.budget is not None and args.budget < 0:
        raise ConfigError(f"--budget is the F1 points a quantized model may lose: >= 0, got {args.budget}")
    if args.prune and args.onnx:
        raise ConfigError("--prune needs --checkpoint (pruning works on the PyTorch model, not on ONNX)")
    if args.fine_tune_steps and not args.prune:
        raise ConfigError("--fine-tune-steps recovers a pruned model: use it with --prune")
    quantized = [p for p in args.precision if p != "fp32"]
    if "int8" in quantized and args.calib is None:
        raise ConfigError("int8 needs --calib DATASET: real tiles to calibrate the activation ranges on")
    if quantized and args.eval is None:
        raise ConfigError(
            f"{'/'.join(quantized)} needs --eval DATASET (labelled tiles, disjoint from --calib) to "
            "measure the accuracy it loses against FP32"
        )
    if args.fine_tune_steps and args.calib is None:
        raise ConfigError("--fine-tune-steps trains on --calib DATASET (labelled): give it")
    for flag in ("calib", "eval"):
        path = getattr(args, flag)
        if path is not None and not path.is_dir():
            raise InputError(f"--{flag} dataset folder not found: {path}")


def _profile_budget(tier: str) -> float:
    """The tier profile's accuracy budget when a profile of that name exists, else 1 point."""
    try:
        from edge_ls.profiles import load_profile

        return float(load_profile(tier).accuracy_budget_f1)
    except Exception:  # no profile for this tier name: the default
        return 1.0


def _split(args: argparse.Namespace) -> tuple[dict[str, int], dict[str, int]]:
    """Tile ranges of --calib and --eval; the same folder is split in halves (first: calibration)."""
    from edge_ls.io.labelled import image_paths

    if args.calib is not None and args.eval is not None and args.calib.resolve() == args.eval.resolve():
        n = len(image_paths(args.calib))
        half = n // 2
        print(
            f"edge-ls: --calib = --eval: calibration on tiles 0-{half - 1}, evaluation on {half}-{n - 1} "
            "(disjoint files; neighbouring tiles of one scene may still overlap in space)",
            file=sys.stderr,
        )
        calib = {"start": 0, "limit": min(half, args.calib_tiles)}
        return calib, {"start": half, "limit": args.eval_tiles or n - half}
    return {"start": 0, "limit": args.calib_tiles}, {"start": 0, "limit": args.eval_tiles or None}


def _fp32_model(args: argparse.Namespace, role: str, source: Path, work: Path) -> tuple[Path, dict[str, Any]]:
    """The FP32 ONNX of one role: the given file (validated), or an export of the checkpoint."""
    from edge_ls.artifact import read_spec

    if args.onnx:
        spec = read_spec(source)  # ModelError for a missing/corrupt file or missing metadata
        if spec.precision != "fp32":
            raise ConfigError(f"{source.name} is {spec.precision}: --onnx takes the FP32 export")
        path, info = source, {"source": str(source)}
    else:
        path, info = _export_checkpoint(args, role, source, work)
    return _retagged(args, role, path, work), info


def _retagged(args: argparse.Namespace, role: str, path: Path, work: Path) -> Path:
    """``path``, or a copy whose metadata names this tier (and ``--model-tile``), so every artifact of a
    tier folder says which tier it belongs to and the tile it is meant for."""
    import dataclasses

    import onnx

    from edge_ls.artifact import read_spec, write_spec

    spec = read_spec(path)
    tile = args.model_tile or spec.tile_size
    if spec.tier == args.tier and spec.tile_size == tile:
        return path
    if tile % 32 or tile < 32:
        raise ConfigError(f"--model-tile must be a multiple of 32, got {tile}")
    target = work / f"{role}.fp32.tagged.onnx"
    model = onnx.load(str(path))
    write_spec(model, dataclasses.replace(spec, tier=args.tier, tile_size=tile))
    onnx.save(model, str(target))
    return target


def _export_checkpoint(
    args: argparse.Namespace, role: str, run_dir: Path, work: Path
) -> tuple[Path, dict[str, Any]]:
    import dataclasses

    import torch

    from edge_ls.export.onnx_export import export_onnx
    from edge_ls.export.prune import distill_fine_tune, fit_student_temperature, prune_channels, torch_scores
    from edge_ls.io.labelled import load_labelled, load_tiles

    try:
        from edge_ls.export.run import load_run
    except ImportError as exc:
        raise MissingExtraError(exc.name or "torch", "export", "exporting a checkpoint") from None
    model, spec, run_dir = load_run(run_dir)
    info: dict[str, Any] = {"source": str(run_dir)}
    size = args.tile_size or spec.tile_size
    calib_range, eval_range = args.calib_range, args.eval_range
    parity_source = args.eval or args.calib
    sample = None
    if parity_source is not None:
        rng = eval_range if parity_source == args.eval else calib_range
        sample = load_tiles(parity_source, spec, size=min(size, 256), limit=2, start=rng["start"])
    if args.prune:
        example = torch.zeros(1, len(spec.bands), 64, 64)
        evaluate = None
        if args.eval is not None:
            held_out = load_labelled(args.eval, spec, size=size, **eval_range)

            def evaluate(m: Any) -> dict[str, float]:
                return torch_scores(m, held_out.images, held_out.masks, spec.threshold)

        fine_tune = None
        if args.fine_tune_steps:
            train = load_labelled(args.calib, spec, size=size, **calib_range)

            def fine_tune(student: Any, teacher: Any) -> None:
                distill_fine_tune(student, teacher, train.images, train.masks, steps=args.fine_tune_steps)

        model, report = prune_channels(
            model,
            example,
            args.prune,
            round_to=args.round_to,
            fine_tune=fine_tune,
            evaluate=evaluate,
            latency_input=torch.zeros(1, len(spec.bands), size, size),
        )
        info["prune"] = report.as_dict()
        provenance = {**spec.provenance, "prune": report.as_dict()}
        if args.fine_tune_steps:  # the student's own temperature, on its (labelled) fine-tuning tiles
            temperature = fit_student_temperature(model, train.images, train.masks)
            provenance["temperature"] = {
                "teacher": spec.temperature,
                "student": temperature,
                "fit_on": "the --calib fine-tuning tiles",
            }
            info["prune"]["temperature"] = provenance["temperature"]
            spec = dataclasses.replace(spec, temperature=temperature)
        spec = dataclasses.replace(spec, provenance=provenance)
    path = export_onnx(model, spec, work / f"{role}.fp32.onnx", sample=sample)
    return path, info


def _quantized(
    args: argparse.Namespace, fp32: Path, precision: str, out: Path, budget: float
) -> tuple[Path, dict[str, Any]]:
    """Quantize or cast, then measure and enforce the accuracy delta; returns (path, FP32 scores)."""
    from tqdm import tqdm

    from edge_ls.artifact import read_spec
    from edge_ls.export.quantize import accuracy_delta, convert_fp16, quantize_int8
    from edge_ls.io.labelled import iter_batches, load_labelled

    spec = read_spec(fp32)
    size = args.tile_size or spec.tile_size
    calib_range, eval_range = args.calib_range, args.eval_range
    if precision == "int8":
        batches = iter_batches(args.calib, spec, batch=2, size=size, **calib_range)
        total = -(-calib_range["limit"] // 2) if calib_range["limit"] else None
        batches = tqdm(
            batches,
            total=total,
            desc="calibrating",
            unit="batch",
            leave=False,
            disable=args.quiet,
            file=sys.stderr,
        )
        source = f"{args.calib}[{calib_range['start']}:{calib_range['start'] + calib_range['limit']}]"
        quantize_int8(fp32, out, batches, calib_source=source)
    else:
        convert_fp16(fp32, out)
    data = load_labelled(args.eval, spec, size=size, **eval_range)
    result = accuracy_delta(fp32, out, data, budget_f1=budget, eval_source=f"{args.eval} ({len(data)} tiles)")
    print(
        f"edge-ls: {precision}: F1 {result[precision]['f1']:.2f} vs FP32 {result['fp32']['f1']:.2f} "
        f"(delta {result['delta_f1']:+.2f} points, budget {budget:g})",
        file=sys.stderr,
    )
    fp32_scores = {**result["fp32"], "tiles": result["tiles"], "eval_source": result["eval_source"]}
    return out, fp32_scores


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
