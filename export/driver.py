"""The export sequence, written once: a typed :class:`ExportRequest` in, a verified tier folder out.

Steps: load (training run folder, or ONNX with edge-ls metadata) -> optional channel pruning and
distillation fine-tuning -> FP32 ONNX (parity-checked on real tiles) -> INT8 (Q/DQ, calibrated on
``calib``) and/or FP16 (casts) -> accuracy delta of each against FP32 on ``eval`` (disjoint from
calibration; fails past the budget) -> ``<out>/<tier>/`` with ``manifest.json``. torch is needed
only for checkpoints and pruning (the ``export`` extra); an ONNX input needs onnx.

``edge-ls export`` only parses its arguments into a request (the request's fields are its option
names, so the messages here name the options); anything else that packages a tier builds one.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_ls.errors import ConfigError, InputError, MissingExtraError

PRECISION_CHOICES = ("fp32", "int8", "fp16")
#: Tile ranges ({"start": i, "limit": n}) of the calibration and the evaluation dataset.
Ranges = tuple[dict[str, Any], dict[str, Any]]


@dataclass(frozen=True)
class ExportRequest:
    """What to package: one source per role (training run folders *or* FP32 ONNX files), the
    precisions, the datasets to calibrate and evaluate on, and the tier folder to write."""

    tier: str
    out: Path
    #: (role, training run folder or its best.pt); a cascade gives triage and refiner.
    checkpoint: Sequence[tuple[str, str | Path]] = ()
    #: (role, FP32 ONNX file with edge-ls metadata); exclusive with ``checkpoint``.
    onnx: Sequence[tuple[str, str | Path]] = ()
    precision: Sequence[str] = ("fp32", "int8")
    prune: float | None = None
    round_to: int = 8
    fine_tune_steps: int = 0
    #: Labelled tiles the pruned model is distilled on (default ``calib``), at ``fine_tune_size`` px
    #: (default: the tile size).
    fine_tune_data: Path | None = None
    fine_tune_size: int | None = None
    #: Labelled tiles the pruned student's temperature is fitted on (default: its fine-tuning tiles).
    temperature_data: Path | None = None
    calib: Path | None = None
    eval: Path | None = None
    calib_tiles: int = 32
    eval_tiles: int = 0
    tile_size: int | None = None
    model_tile: int | None = None
    #: Max F1 points a quantized model may lose; None: the tier profile's, else 1.
    budget: float | None = None
    default_precision: str | None = None
    quiet: bool = False
    #: How the export was asked for, recorded in the manifest.
    command: str = ""


def export_tier(req: ExportRequest) -> Path:
    """Run the whole sequence for ``req``; returns the tier folder written (nothing on failure)."""
    sources = req.checkpoint or req.onnx
    roles = [r for r, _ in sources]
    if len(set(roles)) != len(roles):
        raise ConfigError("each role may be given once (a cascade: triage=... and refiner=...)")
    _check_args(req)
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise MissingExtraError("onnx", "export", "edge-ls export") from None
    if req.checkpoint or req.prune:
        try:
            import torch  # noqa: F401
        except ImportError:
            raise MissingExtraError("torch", "export", "exporting a checkpoint or pruning") from None

    from tqdm import tqdm

    from edge_ls.export.tier import build_tier

    budget = req.budget if req.budget is not None else _profile_budget(req.tier)
    ranges = _split(req)
    info: dict[str, Any] = {
        "budget_f1": budget,
        "calib": str(req.calib or ""),
        "eval": str(req.eval or ""),
        "command": req.command,
    }
    files: dict[str, list[Path]] = {}
    accuracy: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="edge-ls-export-") as tmp:
        work = Path(tmp)
        quantized = [p for p in req.precision if p != "fp32"]
        stages = tqdm(
            total=len(sources) * (1 + len(quantized)) + 1,
            desc=f"export {req.tier}",
            unit="step",
            disable=req.quiet,
            file=sys.stderr,
        )
        for role, source in sources:
            stages.set_postfix_str(f"{role}: fp32")
            fp32, role_info = _fp32_model(req, role, Path(source), work, ranges)
            info[role] = role_info
            stages.update()
            files[role] = [fp32] if "fp32" in req.precision else []
            for precision in quantized:
                stages.set_postfix_str(f"{role}: {precision}")
                target = work / f"{role}.{precision}.onnx"
                path, fp32_scores = _quantized(req, fp32, precision, target, budget, ranges)
                files[role].append(path)
                accuracy[f"{role}:fp32"] = fp32_scores
                stages.update()
            if not files[role]:
                raise ConfigError("--precision must include at least one precision")
        stages.set_postfix_str("manifest")
        folder = build_tier(
            req.tier, files, req.out, info, default_precision=req.default_precision, accuracy=accuracy
        )
        stages.update()
        stages.close()
    return folder


def _check_args(req: ExportRequest) -> None:
    if req.prune is not None and not 0.0 < req.prune < 1.0:
        raise ConfigError(f"--prune takes a fraction of channels in (0, 1), got {req.prune}")
    if req.budget is not None and req.budget < 0:
        raise ConfigError(f"--budget is the F1 points a quantized model may lose: >= 0, got {req.budget}")
    if req.prune and req.onnx:
        raise ConfigError("--prune needs --checkpoint (pruning works on the PyTorch model, not on ONNX)")
    if req.fine_tune_steps and not req.prune:
        raise ConfigError("--fine-tune-steps recovers a pruned model: use it with --prune")
    quantized = [p for p in req.precision if p != "fp32"]
    if "int8" in quantized and req.calib is None:
        raise ConfigError("int8 needs --calib DATASET: real tiles to calibrate the activation ranges on")
    if quantized and req.eval is None:
        raise ConfigError(
            f"{'/'.join(quantized)} needs --eval DATASET (labelled tiles, disjoint from --calib) to "
            "measure the accuracy it loses against FP32"
        )
    if req.fine_tune_steps and (req.fine_tune_data or req.calib) is None:
        raise ConfigError("--fine-tune-steps trains on --calib DATASET (labelled): give it")
    for flag in ("calib", "eval", "fine_tune_data", "temperature_data"):
        path = getattr(req, flag)
        if path is not None and not path.is_dir():
            raise InputError(f"--{flag.replace('_', '-')} dataset folder not found: {path}")


def _profile_budget(tier: str) -> float:
    """The tier profile's accuracy budget when a profile of that name exists, else 1 point."""
    try:
        from edge_ls.profiles import load_profile

        return float(load_profile(tier).accuracy_budget_f1)
    except Exception:  # no profile for this tier name: the default
        return 1.0


def _split(req: ExportRequest) -> tuple[dict[str, int], dict[str, int]]:
    """Tile ranges of --calib and --eval; the same folder is split in halves (first: calibration)."""
    from edge_ls.io.labelled import image_paths

    if req.calib is not None and req.eval is not None and req.calib.resolve() == req.eval.resolve():
        n = len(image_paths(req.calib))
        half = n // 2
        print(
            f"edge-ls: --calib = --eval: calibration on tiles 0-{half - 1}, evaluation on {half}-{n - 1} "
            "(disjoint files; neighbouring tiles of one scene may still overlap in space)",
            file=sys.stderr,
        )
        calib = {"start": 0, "limit": min(half, req.calib_tiles)}
        return calib, {"start": half, "limit": req.eval_tiles or n - half}
    return {"start": 0, "limit": req.calib_tiles}, {"start": 0, "limit": req.eval_tiles or None}


def _fp32_model(
    req: ExportRequest, role: str, source: Path, work: Path, ranges: Ranges
) -> tuple[Path, dict[str, Any]]:
    """The FP32 ONNX of one role: the given file (validated), or an export of the checkpoint."""
    from edge_ls.artifact import read_spec

    if req.onnx:
        spec = read_spec(source)  # ModelError for a missing/corrupt file or missing metadata
        if spec.precision != "fp32":
            raise ConfigError(f"{source.name} is {spec.precision}: --onnx takes the FP32 export")
        path, info = source, {"source": str(source)}
    else:
        path, info = _export_checkpoint(req, role, source, work, ranges)
    return _retagged(req, role, path, work), info


def _retagged(req: ExportRequest, role: str, path: Path, work: Path) -> Path:
    """``path``, or a copy whose metadata names this tier (and ``--model-tile``), so every artifact of a
    tier folder says which tier it belongs to and the tile it is meant for."""
    import dataclasses

    import onnx

    from edge_ls.artifact import read_spec, write_spec

    spec = read_spec(path)
    tile = req.model_tile or spec.tile_size
    if spec.tier == req.tier and spec.tile_size == tile:
        return path
    if tile % 32 or tile < 32:
        raise ConfigError(f"--model-tile must be a multiple of 32, got {tile}")
    target = work / f"{role}.fp32.tagged.onnx"
    model = onnx.load(str(path))
    write_spec(model, dataclasses.replace(spec, tier=req.tier, tile_size=tile))
    onnx.save(model, str(target))
    return target


def _export_checkpoint(
    req: ExportRequest, role: str, run_dir: Path, work: Path, ranges: Ranges
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
    size = req.tile_size or spec.tile_size
    calib_range, eval_range = ranges
    parity_source = req.eval or req.calib
    sample = None
    if parity_source is not None:
        rng = eval_range if parity_source == req.eval else calib_range
        sample = load_tiles(parity_source, spec, size=min(size, 256), limit=2, start=rng["start"])
    if req.prune:
        example = torch.zeros(1, len(spec.bands), 64, 64)
        evaluate = None
        if req.eval is not None:
            held_out = load_labelled(req.eval, spec, size=size, **eval_range)

            def evaluate(m: Any) -> dict[str, float]:
                return torch_scores(m, held_out.images, held_out.masks, spec.threshold)

        fine_tune = None
        if req.fine_tune_steps:
            if req.fine_tune_data is not None:
                train = load_labelled(req.fine_tune_data, spec, size=req.fine_tune_size or size)
            else:
                train = load_labelled(req.calib, spec, size=req.fine_tune_size or size, **calib_range)

            def fine_tune(student: Any, teacher: Any) -> None:
                distill_fine_tune(student, teacher, train.images, train.masks, steps=req.fine_tune_steps)

        model, report = prune_channels(
            model,
            example,
            req.prune,
            round_to=req.round_to,
            fine_tune=fine_tune,
            evaluate=evaluate,
            latency_input=torch.zeros(1, len(spec.bands), size, size),
        )
        info["prune"] = report.as_dict()
        provenance = {**spec.provenance, "prune": report.as_dict()}
        if req.fine_tune_steps:  # the student's own temperature, on labelled tiles (its fine-tuning ones)
            fit = (
                train
                if req.temperature_data is None
                else load_labelled(req.temperature_data, spec, size=size)
            )
            temperature = fit_student_temperature(model, fit.images, fit.masks)
            provenance["temperature"] = {
                "teacher": spec.temperature,
                "student": temperature,
                "fit_on": "the --calib fine-tuning tiles"
                if req.temperature_data is None and req.fine_tune_data is None
                else str(req.temperature_data or req.fine_tune_data),
            }
            info["prune"]["temperature"] = provenance["temperature"]
            spec = dataclasses.replace(spec, temperature=temperature)
        spec = dataclasses.replace(spec, provenance=provenance)
    path = export_onnx(model, spec, work / f"{role}.fp32.onnx", sample=sample)
    return path, info


def _quantized(
    req: ExportRequest, fp32: Path, precision: str, out: Path, budget: float, ranges: Ranges
) -> tuple[Path, dict[str, Any]]:
    """Quantize or cast, then measure and enforce the accuracy delta; returns (path, FP32 scores)."""
    from tqdm import tqdm

    from edge_ls.artifact import read_spec
    from edge_ls.export.quantize import accuracy_delta, convert_fp16, describe_loss, quantize_int8
    from edge_ls.io.labelled import iter_batches, load_labelled

    spec = read_spec(fp32)
    size = req.tile_size or spec.tile_size
    calib_range, eval_range = ranges
    if precision == "int8":
        batches = iter_batches(req.calib, spec, batch=2, size=size, **calib_range)
        total = -(-calib_range["limit"] // 2) if calib_range["limit"] else None
        batches = tqdm(
            batches,
            total=total,
            desc="calibrating",
            unit="batch",
            leave=False,
            disable=req.quiet,
            file=sys.stderr,
        )
        source = f"{req.calib}[{calib_range['start']}:{calib_range['start'] + calib_range['limit']}]"
        quantize_int8(fp32, out, batches, calib_source=source)
    else:
        convert_fp16(fp32, out)
    data = load_labelled(req.eval, spec, size=size, **eval_range)
    result = accuracy_delta(fp32, out, data, budget_f1=budget, eval_source=f"{req.eval} ({len(data)} tiles)")
    print(
        f"edge-ls: {precision}: F1 {result[precision]['f1']:.2f} vs FP32 {result['fp32']['f1']:.2f} "
        f"({describe_loss(result['delta_f1'])}, budget: lose at most {budget:g})",
        file=sys.stderr,
    )
    fp32_scores = {**result["fp32"], "tiles": result["tiles"], "eval_source": result["eval_source"]}
    return out, fp32_scores
