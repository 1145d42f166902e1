"""A finished training run folder, as the export reads it: its best weights and the spec it wrote.

``edge-ls export --checkpoint`` and ``edge-ls evaluate --model RUN`` both start here, so the run-folder
rules (a ``.pt`` path means its folder; no ``spec.json`` means the run has not finished) live once.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from edge_ls.artifact import ModelSpec
from edge_ls.errors import ModelError
from edge_ls.export.onnx_export import export_onnx
from edge_ls.training.networks import pretrained_provenance
from edge_ls.training.trainer import SPEC_FILE, load_checkpoint_model


def load_run(
    run: str | Path, hint: str = "give a finished training run folder"
) -> tuple[Any, ModelSpec, Path]:
    """(torch model with the best weights, its spec, the run folder) of a run folder or its ``.pt``."""
    run_dir = Path(run)
    run_dir = run_dir.parent if run_dir.suffix == ".pt" else run_dir
    spec_path = run_dir / SPEC_FILE
    if not spec_path.is_file():
        raise ModelError(f"{run_dir} has no {SPEC_FILE}: {hint}")
    spec = ModelSpec.from_json(spec_path.read_text(), str(spec_path))
    model, cfg = load_checkpoint_model(run_dir)
    if "pretrained_weights" not in spec.provenance:  # runs made before trainers recorded it
        weights = pretrained_provenance(cfg.model.name, cfg.model.pretrained)
        spec = replace(spec, provenance={**spec.provenance, "pretrained_weights": weights})
    return model, spec, run_dir


def export_run(run: str | Path, out: str | Path) -> Path:
    """Export a training run folder (or its ``best.pt``) to ONNX with the spec the run wrote."""
    model, spec, _ = load_run(run, "the run has not finished (edge-ls train writes it)")
    return export_onnx(model.eval(), spec, Path(out), None)
