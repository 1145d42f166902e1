"""``edge-ls train`` and ``edge-ls evaluate`` end to end on the real labelled pairs (tiny settings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_ls.cli import main

KEYS = ("f1", "iou", "precision", "recall", "accuracy", "mcc", "auc", "ece", "pixels")


def _write_config(path: Path, real_data: Path, out: Path, extra: str = "") -> Path:
    path.write_text(f"""
[run]
name = "cli"
out_dir = "{out}"
eval_train = false
[data]
roots = ["{real_data / "cas_hokkaido"}", "{real_data / "bijie"}"]
split_file = "{path.parent / "split.json"}"
crop = 64
val_crop = 64
batch_size = 2
samples_per_epoch = 4
[model]
name = "cascade_triage"
[train]
epochs = 1
{extra}
""")
    return path


def test_runtime_modules_do_not_import_torch() -> None:
    code = (
        "import sys, edge_ls.cli.train, edge_ls.cli.evaluate, edge_ls.evaluate; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_key_exits_2_naming_it(tmp_path: Path, real_data: Path, capsys) -> None:
    cfg = _write_config(tmp_path / "bad.toml", real_data, tmp_path / "run", "warmup_epochs = 3")
    assert main(["train", "--config", str(cfg)]) == 2
    assert "train.warmup_epochs" in capsys.readouterr().err


def test_missing_dataset_is_an_input_error(tmp_path: Path, capsys) -> None:
    assert main(["evaluate", "--model", "edge-nano", str(tmp_path / "nowhere")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.slow
def test_train_then_evaluate_checkpoint_and_onnx_alike(tmp_path: Path, real_data: Path, capsys) -> None:
    pytest.importorskip("torch")
    run = tmp_path / "run"
    onnx_path = tmp_path / "m.onnx"
    cfg = _write_config(tmp_path / "ok.toml", real_data, run, f'[export]\nonnx = "{onnx_path}"\nname = "cli"')
    assert main(["train", "--config", str(cfg), "--quiet"]) == 0
    for name in ("best.pt", "last.pt", "config.json", "log.jsonl", "metrics.json", "spec.json"):
        assert (run / name).is_file(), name
    capsys.readouterr()
    datasets = [str(real_data / "cas_hokkaido"), str(real_data / "bijie")]
    split = ["--split", "test", "--split-file", str(tmp_path / "split.json"), "--json"]
    assert main(["evaluate", "--model", str(run), *datasets, *split]) == 0
    from_checkpoint = json.loads(capsys.readouterr().out)
    assert main(["evaluate", "--model", str(onnx_path), *datasets, *split]) == 0
    from_onnx = json.loads(capsys.readouterr().out)
    for key in KEYS:
        assert key in from_onnx
    # the checkpoint is exported and scored through the same ONNX path: same numbers
    assert from_checkpoint["pixels"] == from_onnx["pixels"] > 0
    assert from_checkpoint["f1"] == pytest.approx(from_onnx["f1"], abs=1e-3)
    # PyTorch-side test metrics written by the trainer agree with the runtime path too
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["metrics"]["test"]["pixels"] == from_onnx["pixels"]
    assert summary["metrics"]["test"]["f1"] == pytest.approx(from_onnx["f1"], abs=2e-3)


def test_evaluate_bundled_name(real_data: Path, capsys) -> None:
    assert main(["evaluate", "--model", "edge-nano", str(real_data / "bijie"), "--split", "all"]) == 0
    out = capsys.readouterr().out
    assert "edge-nano" in out and "f1" in out and "pixels" in out
