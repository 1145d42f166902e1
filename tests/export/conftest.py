"""Fixtures for the export tests: a small real-architecture segmentation net and real tiles.

The net is a torchvision MobileNetV3-small encoder with a light U-Net-style decoder (random weights):
the same operator mix (depthwise convs, hard-swish, squeeze-excitation, bilinear upsampling) as the
trained Edge-Lite model, small enough to export and quantize in seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_ls.artifact import ModelSpec

SPEC = ModelSpec(
    name="test-lite",
    tier="edge-lite",
    bands=("red", "green", "blue"),
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    input_range="8bit",
    gsd_m=3.0,
    tile_size=128,
    overlap=0.2,
    activation="logits",
    threshold=0.5,
    provenance={"kind": "test"},
)


def make_unet(seed: int = 0):
    """MobileNetV3-small encoder + lateral 1x1 convs + upsampling decoder; logits N x 1 x H x W."""
    import torch
    import torch.nn.functional as F
    import torchvision
    from torch import nn

    class SmallUNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            f = torchvision.models.mobilenet_v3_small().features
            self.stages = nn.ModuleList([f[:1], f[1:2], f[2:4], f[4:9], f[9:]])
            self.lateral = nn.ModuleList([nn.Conv2d(c, 32, 1) for c in (16, 16, 24, 48, 576)])
            self.fuse = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU())
            self.head = nn.Conv2d(32, 1, 1)

        def forward(self, x):
            size = x.shape[-2:]
            feats = []
            for stage in self.stages:
                x = stage(x)
                feats.append(x)
            y = self.lateral[-1](feats[-1])
            for feat, lateral in zip(feats[-2::-1], self.lateral[-2::-1], strict=True):
                up = F.interpolate(y, size=feat.shape[-2:], mode="bilinear", align_corners=False)
                y = up + lateral(feat)
            y = F.interpolate(self.fuse(y), size=size, mode="bilinear", align_corners=False)
            return self.head(y)

    torch.manual_seed(seed)
    return SmallUNet().eval()


@pytest.fixture(autouse=True, scope="package")
def _one_torch_thread():
    """PyTorch on 1 thread here: the models are tiny, and 2 OpenMP threads on 2 cores shared with other
    test processes spin-wait each other into 100x slowdowns (measured: 0.04 s -> 2.8 s per forward)."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="package")
def spec() -> ModelSpec:
    return SPEC


@pytest.fixture(scope="package")
def hokkaido(real_data: Path) -> Path:
    return real_data / "cas_hokkaido"


@pytest.fixture(scope="package")
def real_tiles(hokkaido: Path) -> np.ndarray:
    """Four real CAS Hokkaido tiles, 128 px centre crops, normalized as SPEC says."""
    from edge_ls.io.labelled import load_tiles

    return load_tiles(hokkaido, SPEC, size=128, limit=4)


@pytest.fixture(scope="package")
def unet():
    pytest.importorskip("torch")
    return make_unet()


@pytest.fixture(scope="package")
def fp32_onnx(tmp_path_factory, unet, real_tiles) -> Path:
    from edge_ls.export.onnx_export import export_onnx

    return export_onnx(unet, SPEC, tmp_path_factory.mktemp("fp32") / "lite.onnx", sample=real_tiles[:2])


def untrained_run(run: Path, roots: list[Path], spec: ModelSpec = SPEC) -> Path:
    """A training run folder (``config.json``, ``best.pt``, ``spec.json``) of an untrained Edge-Lite
    (seed 0): what ``--checkpoint`` and ``ExportRequest.checkpoint`` read."""
    import json

    import torch

    from edge_ls.training import trainer
    from edge_ls.training.config import Config
    from edge_ls.training.networks import build_model

    run.mkdir(parents=True)
    cfg = Config()
    cfg.model.name = "edge_lite"
    cfg.data.roots = [str(r) for r in roots]
    (run / trainer.CONFIG_FILE).write_text(json.dumps(cfg.to_dict()))
    torch.manual_seed(0)
    torch.save(build_model("edge_lite").state_dict(), run / trainer.BEST)
    (run / trainer.SPEC_FILE).write_text(spec.to_json())
    return run
