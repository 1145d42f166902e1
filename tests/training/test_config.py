"""Training config values that would crash deep inside torch (``lr = -1``: Adam raises ValueError,
an exit 1 "internal error") are refused at load time with the key and exit 2."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from edge_ls.errors import ConfigError
from edge_ls.training.config import config_from_dict

pytest.importorskip("torch")  # config.validate() asks training.networks for the model names


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("train", "lr", -1.0),
        ("train", "lr", 0.0),
        ("train", "lr", math.inf),
        ("train", "weight_decay", -1e-4),
        ("train", "step_size", 0),
        ("train", "gamma", 0.0),
        ("train", "patience", -1),
        ("train", "d_lr_mult", -2.0),
        ("train", "clip_grad", -1.0),
        ("train", "freeze_epochs", -1),
        ("train", "bce_weight", math.nan),
        ("model", "dropout", 1.0),
        ("distill", "temperature", 0.0),
        ("distill", "alpha", 1.5),
        ("run", "threads", 0),
        ("run", "max_minutes", -5.0),
        ("export", "threshold", 1.0),
        ("export", "overlap", 0.95),
        ("export", "tile_size", 0),
        ("data", "samples_per_epoch", -1),
    ],
)
def test_out_of_range_values_are_config_errors(section: str, key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"{section}\.{key}"):
        data: dict = {"data": {"roots": ["somewhere"]}}
        data.setdefault(section, {})[key] = value
        config_from_dict(data)


def test_defaults_are_valid() -> None:
    cfg = config_from_dict({"data": {"roots": ["somewhere"]}})
    assert cfg.train.lr > 0


def test_train_cli_with_a_negative_learning_rate_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[data]\nroots = ["x"]\n[train]\nlr = -1\n')
    cmd = [sys.executable, "-m", "edge_ls", "train", "--config", str(config)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "train.lr" in proc.stderr and "Traceback" not in proc.stderr
