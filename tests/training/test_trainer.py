"""Trainer: resume after a stop really resumes, safe checkpoints, config errors, GAN and distillation.

Uses the real labelled pairs of bijie (36 tiles) with tiny crops and epochs so it stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge_ls.errors import ConfigError  # noqa: E402
from edge_ls.training import losses  # noqa: E402
from edge_ls.training.config import config_from_dict, load_config  # noqa: E402
from edge_ls.training.networks import build_model  # noqa: E402
from edge_ls.training.trainer import BEST, LAST, LOG_FILE, Trainer, load_checkpoint_model  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _cfg(real_data: Path, tmp_path: Path, **over: dict) -> dict:
    data = {
        "run": {"name": "t", "seed": 3, "out_dir": str(tmp_path / "run"), "threads": 2, "eval_train": False},
        "data": {
            "roots": [str(real_data / "bijie")],
            "split_file": str(tmp_path / "split.json"),
            "crop": 64,
            "val_crop": 64,
            "val_size": 128,
            "batch_size": 2,
            "samples_per_epoch": 4,
        },
        "model": {"name": "cascade_triage", "dropout": 0.1},
        "train": {"epochs": 4, "lr": 0.01, "step_size": 2},
    }
    for section, values in over.items():
        data.setdefault(section, {}).update(values)
    return data


def _weights(run: Path) -> dict:
    return torch.load(run / BEST if (run / BEST).exists() else run / LAST, weights_only=True)


def test_resume_after_stop_matches_an_uninterrupted_run(real_data: Path, tmp_path: Path) -> None:
    cfg_a = config_from_dict(_cfg(real_data, tmp_path / "a"))
    Trainer(cfg_a).fit()
    full = torch.load(tmp_path / "a" / "run" / LAST, weights_only=True)

    cfg_b = config_from_dict(_cfg(real_data, tmp_path / "b"))
    stopped = Trainer(cfg_b, stop_after_epochs=2).fit()  # as if killed after epoch 1's checkpoint
    assert stopped == {"stopped": "stop_after_epochs", "epoch": 1}
    partial = torch.load(tmp_path / "b" / "run" / LAST, weights_only=True)
    assert partial["epoch"] == 1
    with pytest.raises(ConfigError, match="--resume"):
        Trainer(cfg_b).fit()
    Trainer(cfg_b, resume=True).fit()
    resumed = torch.load(tmp_path / "b" / "run" / LAST, weights_only=True)
    assert resumed["epoch"] == full["epoch"] == 3
    for key, value in full["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    epochs = [
        json.loads(line)["epoch"]
        for line in (tmp_path / "b" / "run" / LOG_FILE).read_text().splitlines()
        if json.loads(line)["event"] == "epoch"
    ]
    assert epochs == [0, 1, 2, 3]  # the resumed run did not redo epochs 0-1


def test_checkpoints_load_weights_only_and_rebuild(real_data: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(_cfg(real_data, tmp_path, train={"epochs": 1}))
    summary = Trainer(cfg).fit()
    run = tmp_path / "run"
    assert set(summary["metrics"]) == {"val", "test"}
    assert 0.0 <= summary["metrics"]["test"]["f1"] <= 1.0 and summary["temperature"] > 0
    state = torch.load(run / BEST, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    _model, loaded_cfg = load_checkpoint_model(run)
    assert loaded_cfg.model.name == "cascade_triage"
    assert not list(run.glob("*.tmp"))  # atomic writes leave nothing behind
    spec = json.loads((run / "spec.json").read_text())
    assert len(spec["mean"]) == 3 and spec["provenance"]["split_sha256"]


def test_unknown_config_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[data]\nroots = ["x"]\n[train]\nepochs = 2\nlearning_rate = 0.1\n')
    with pytest.raises(ConfigError, match=r"train\.learning_rate"):
        load_config(path)
    path.write_text("[trainer]\nepochs = 2\n")
    with pytest.raises(ConfigError, match=r"\[trainer\]"):
        load_config(path)
    path.write_text('[data]\nroots = ["x"]\n[train]\nepochs = "ten"\n')
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        load_config(path)


def test_committed_configs_are_valid() -> None:
    configs = sorted((REPO / "training" / "configs").glob("*.toml"))
    assert configs
    for path in configs:
        load_config(path)


def test_distillation_loss_decreases_on_real_tiles(real_data: Path, tmp_path: Path) -> None:
    """A student trained with soft targets from a (briefly trained) teacher gets closer to it."""
    from edge_ls.training.tileset import load_tiles

    tiles = load_tiles(config_from_dict(_cfg(real_data, tmp_path)).data)
    rng = np.random.default_rng(0)
    batches = [tuple(torch.from_numpy(a) for a in next(tiles.train_batches(rng))) for _ in range(3)]
    torch.manual_seed(0)
    teacher = build_model("cascade_triage")
    opt = torch.optim.Adam(teacher.parameters(), lr=0.01)
    for step in range(10):
        x, y = batches[step % 3]
        loss = losses.segmentation_loss(teacher(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    teacher.eval()
    student = build_model("cascade_triage")
    opt = torch.optim.Adam(student.parameters(), lr=0.01)
    history = []
    for step in range(24):
        x, y = batches[step % 3]
        with torch.no_grad():
            t = teacher(x)
        loss = losses.distillation_loss(student(x), t, y, temperature=2.0, alpha=0.7)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    assert np.mean(history[-6:]) < np.mean(history[:6])


@pytest.mark.slow
def test_gan_stage_runs_end_to_end(real_data: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(
        _cfg(
            real_data,
            tmp_path,
            model={"name": "fusion_gan"},
            train={"epochs": 2, "gan_start_epoch": 1},
            data={"val_size": 64, "crop": 64},
        )
    )
    Trainer(cfg).fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / LOG_FILE).read_text().splitlines()]
    epochs = [r for r in rows if r["event"] == "epoch"]
    assert [r["stage"] for r in epochs] == ["finetune", "gan"]
    assert np.isfinite(epochs[1]["gp"]) and np.isfinite(epochs[1]["critic"])
    assert "critic" in torch.load(tmp_path / "run" / LAST, weights_only=True)


def test_a_run_writes_its_onnx_in_its_run_folder_never_into_named_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training never replaces a model edge-ls runs by name: relative paths land in the run folder,
    paths into the bundled or the user's models are refused, and no shipped config points there."""
    import tomllib

    from edge_ls.models.registry import BUNDLED_DIR
    from edge_ls.training.trainer import export_path

    user = tmp_path / "user-models"
    monkeypatch.setenv("EDGE_LS_MODELS", str(user))
    run = tmp_path / "runs" / "x"
    assert export_path("", run) is None
    assert export_path("m.onnx", run) == run / "m.onnx"
    assert export_path(str(tmp_path / "elsewhere.onnx"), run) == tmp_path / "elsewhere.onnx"
    for bad in (str(BUNDLED_DIR / "edge-lite.onnx"), str(user / "x.onnx"), "edge_ls/models/edge-lite.onnx"):
        target = bad if Path(bad).is_absolute() else str(Path.cwd() / bad)
        with pytest.raises(ConfigError, match="promote it with 'edge-ls export"):
            export_path(target, run)
    repo = Path(__file__).resolve().parents[2]
    for config in sorted((repo / "training" / "configs").glob("*.toml")):
        onnx = tomllib.loads(config.read_text()).get("export", {}).get("onnx", "")
        if onnx:
            assert export_path(onnx, run).parent == run, config.name  # its run folder, nothing else


def test_onnx_export_without_an_exporter_fails_before_training(real_data: Path, tmp_path: Path) -> None:
    """Training sits below export: the ONNX step is handed in (edge-ls train does), and a config that
    asks for it without one is refused at construction, not after the epochs."""
    cfg = config_from_dict(_cfg(real_data, tmp_path, export={"onnx": str(tmp_path / "m.onnx")}))
    with pytest.raises(ConfigError, match="no exporter"):
        Trainer(cfg)
    assert not (tmp_path / "run").exists()


def test_bf16_channels_last_epochs_here_finish_step_later(real_data: Path, tmp_path: Path) -> None:
    """The GPU script's mode on the trainer's own loop: bf16 autocast (no grad scaling), NHWC weights,
    no finish step; then the finish step alone from the run folder (what --finish does here)."""
    over = {"run": {"autocast": "bf16", "channels_last": True, "device": "cpu"}, "train": {"epochs": 2}}
    cfg = config_from_dict(_cfg(real_data, tmp_path, **over))
    trainer = Trainer(cfg, finish_step=False)
    result = trainer.fit()
    assert trainer.amp and trainer.amp_dtype == torch.bfloat16 and trainer.scaler is None
    conv = next(
        m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)
    )
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert result["stopped"] == "epochs" and result["best_epoch"] >= 0
    run = tmp_path / "run"
    assert (run / BEST).is_file() and not (run / "metrics.json").exists()
    summary = Trainer(config_from_dict(_cfg(real_data, tmp_path))).finish_from_log()
    assert summary["best_epoch"] == result["best_epoch"] and summary["stopped"] == "epochs"
    assert json.loads((run / "metrics.json").read_text())["metrics"]["val"]["pixels"] > 0


def test_run_device_and_autocast_values_are_checked(tmp_path: Path) -> None:
    for key, value in (("autocast", "fp8"), ("device", "tpu")):
        with pytest.raises(ConfigError, match=rf"run\.{key}"):
            config_from_dict({"data": {"roots": ["a"]}, "run": {key: value}})
    with pytest.raises(ConfigError, match=r"needs data\.mean"):
        config_from_dict({"data": {"roots": ["a"]}, "model": {"name": "fusion", "pretrained": True}})


def test_finish_without_a_finished_log_is_one_error(real_data: Path, tmp_path: Path) -> None:
    from edge_ls.errors import ModelError

    cfg = config_from_dict(_cfg(real_data, tmp_path))
    with pytest.raises(ModelError, match="nothing to finish"):
        Trainer(cfg).finish_from_log()
