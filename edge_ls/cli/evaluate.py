"""``edge-ls evaluate --model MODEL DATASET... [--split test] [--json]``: score a model on labelled data.

ONNX artifacts (a path or a bundled name) are scored directly by :mod:`edge_ls.evaluate`; a PyTorch
run folder or checkpoint is first exported to a temporary ONNX file (needs the 'train' extra) and
then scored by the very same code, so every tier is measured the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from edge_ls.errors import ConfigError, InputError, MissingExtraError

SPLITS = ("train", "val", "test", "all")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a model (ONNX, bundled name or PyTorch run) on labelled datasets",
        description="Pixel metrics aggregated over every pixel of the chosen split: f1, iou, precision, "
        "recall, accuracy, mcc, auc, ece, pixels. PyTorch checkpoints are exported to ONNX first.",
    )
    parser.add_argument(
        "--model", required=True, help="ONNX file, bundled model name, or training run folder"
    )
    parser.add_argument("datasets", nargs="+", metavar="DATASET", help="labelled dataset folder(s)")
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default=None,
        help="which split to score (default: all of a single folder given without --split-file, else test)",
    )
    parser.add_argument(
        "--split-file",
        help="an existing split file (default: the grouped 70/15/15 split of the datasets, not saved); "
        "a path that does not exist is refused unless --new-split is given",
    )
    parser.add_argument(
        "--new-split",
        action="store_true",
        help="make the grouped 70/15/15 split and save it to --split-file (which must not exist yet)",
    )
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_ls.evaluate import REPORTED, evaluate_onnx, undefined_as_null
    from edge_ls.training.tileset import read_split_pairs

    for root in args.datasets:
        if not Path(root).exists():
            raise InputError(f"dataset folder not found: {root}")
    check_split_file(args.split_file, args.new_split)
    split, why = choose_split(args.split, args.datasets, args.split_file)
    skipped: list[dict[str, str]] = []

    def pairs(bands: tuple[str, ...]):
        roots = [str(r) for r in args.datasets]
        return read_split_pairs(roots, list(bands), split, args.split_file, skipped=skipped)

    with tempfile.TemporaryDirectory(prefix="edge-ls-eval-") as tmp:
        model_path = _as_onnx(args.model, Path(tmp))
        result = undefined_as_null(evaluate_onnx(model_path, pairs, threads=args.threads))
    result.update(split=split, split_reason=why, datasets=[str(r) for r in args.datasets], skipped=skipped)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
        return 0
    print(
        f"{result['model']} ({result['tier']}, {result['model_precision']}) on {result['split']} split of "
        f"{', '.join(args.datasets)}: {result['tiles']} tiles ({why})"
    )
    reasons = result.get("undefined_reasons", {})
    for key in REPORTED:
        value = result.get(key)
        if value is None and key in reasons:
            print(f"  {key:<10} {reasons[key]}")
        else:
            print(f"  {key:<10} {value:.4f}" if isinstance(value, float) else f"  {key:<10} {value}")
    if skipped:
        print(
            f"  skipped    {len(skipped)} tile(s): "
            + "; ".join(f"{s['tile']} ({s['reason']})" for s in skipped)
        )
    sys.stdout.flush()
    return 0


def check_split_file(split_file: str | None, new_split: bool) -> None:
    """A split file is read when it exists and written only on ``--new-split``: a mistyped path used to
    get a fresh split written there silently, and the score came from a different split than asked."""
    if new_split and not split_file:
        raise ConfigError("--new-split needs --split-file PATH: where to save the new split")
    if not split_file:
        return
    path = Path(split_file)
    if new_split and path.exists():
        raise ConfigError(f"--new-split: {split_file} already exists; drop --new-split to score with it")
    if not new_split and not path.is_file():
        what = "is not a file" if path.exists() else "not found"
        raise InputError(
            f"split file {what}: {split_file} (check the path, or add --new-split to make a new split there)"
        )


def choose_split(split: str | None, datasets: list[str], split_file: str | None) -> tuple[str, str]:
    """The split to score and why, in words the output repeats.

    One folder without a split file is most likely a test set already: scoring only the grouped 15 %
    "test" split the datasets would get for training silently dropped most of it, so it is scored whole.
    """
    if split is not None:
        return split, f"--split {split}"
    if split_file is None and len(datasets) == 1:
        return "all", "a single folder without --split-file is scored whole; --split test for its 15% split"
    where = "the split file" if split_file else "the grouped 70/15/15 split of the datasets"
    return "test", f"the test split of {where} (--split to choose another)"


def _as_onnx(model: str, tmp: Path) -> Path:
    """An ONNX path for ``--model``: a training run folder / .pt checkpoint is exported to ``tmp``."""
    path = Path(model)
    if path.is_dir() or path.suffix == ".pt":
        try:
            import torch  # noqa: F401
        except ImportError:
            raise MissingExtraError("torch", "train", "evaluating a PyTorch checkpoint") from None
        from edge_ls.export.run import export_run

        return export_run(path, tmp / "model.onnx")
    try:
        from edge_ls.models.registry import resolve
    except ImportError:  # registry not installed: paths only
        return path
    return resolve(model)
