"""The compute-bound benchmark model: a MobileNetV3-small U-Net with random weights, as an edge-ls ONNX.

Why this model: its cost (3.6 M parameters with segmentation_models_pytorch's default decoder widths,
~18 tiles/s at 512 px on ONNX Runtime on this 2-core machine, as FIELD_NOTES measured for a
MobileNetV3-small U-Net) is that of a realistic light deployment tier, heavy enough that inference,
not I/O, bounds the pipeline. The weights are random (no weights can be
downloaded here), but the graph, the tensor shapes and so the cost are those of a real model.

Random weights make the raw output pixel-scale speckle with logits of +-0.01 (thousands of one-pixel
"detections" per tile, nothing like a trained model). To give the post-processing (mask, confidence,
polygons) a realistic load, the logits are smoothed over ``SMOOTH_PX`` (average pool, then bilinear
upsampling back: negligible cost) and the head is rescaled so logits spread over about +-3 with
about ``POSITIVE_SHARE`` of the pixels of real tiles above the 0.5 threshold (real landslide shares
0.3-37%, mean ~10%): blob-shaped detections, tens per tile at most.

torch is used here only (bench/ is not the runtime); the file is exported once and cached.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MODEL_VERSION = 2
TILE = 512
POSITIVE_SHARE = 0.10
SMOOTH_PX = 16
LOGIT_SPREAD = 3.0
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Decoder widths, deepest first (segmentation_models_pytorch's U-Net default).
DECODER_CHANNELS = (256, 128, 64, 32, 16)


def model_path(cache_dir: Path) -> Path:
    return cache_dir / f"light_unet_mnv3s_v{MODEL_VERSION}.onnx"


def _build_torch_model(seed: int = 0):
    """MobileNetV3-small encoder (features at strides 2..32) + a U-Net decoder; random weights."""
    import torch
    from torch import nn
    from torchvision.models import mobilenet_v3_small

    torch.manual_seed(seed)

    def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
        conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(True))

    class DecoderBlock(nn.Module):
        def __init__(self, cin: int, cskip: int, cout: int) -> None:
            super().__init__()
            self.body = nn.Sequential(conv_bn_relu(cin + cskip, cout), conv_bn_relu(cout, cout))

        def forward(self, x, skip=None):
            x = nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
            if skip is not None:
                x = torch.cat([x, skip], dim=1)
            return self.body(x)

    class LightUNet(nn.Module):
        # Feature indices of torchvision's mobilenet_v3_small ending each stride (2, 4, 8, 16, 32).
        stages = (0, 1, 3, 8, 12)

        def __init__(self) -> None:
            super().__init__()
            self.encoder = mobilenet_v3_small(weights=None).features
            skips = (16, 16, 24, 48)  # channels at strides 2, 4, 8, 16
            c = 576  # stride 32
            blocks = []
            for skip, cout in zip((*reversed(skips), 0), DECODER_CHANNELS, strict=True):
                blocks.append(DecoderBlock(c, skip, cout))
                c = cout
            self.decoder = nn.ModuleList(blocks)
            self.head = nn.Conv2d(c, 1, 3, padding=1)

        def forward(self, x):
            feats = []
            for i, layer in enumerate(self.encoder):
                x = layer(x)
                if i in self.stages:
                    feats.append(x)
            x = feats.pop()
            for block in self.decoder:
                x = block(x, feats.pop() if feats else None)
            y = nn.functional.avg_pool2d(self.head(x), SMOOTH_PX)
            return nn.functional.interpolate(y, scale_factor=float(SMOOTH_PX), mode="bilinear")

    return LightUNet().eval()


def _calibrate_head(model, sample: np.ndarray) -> tuple[float, float]:
    """Rescale the head so the sample's logits spread over ~LOGIT_SPREAD with POSITIVE_SHARE above 0.

    Pooling and upsampling are linear, so an affine change of the head is the same change of the output.
    """
    import torch

    with torch.no_grad():
        logits = model(torch.from_numpy(sample)).numpy()
        shift = float(np.quantile(logits, 1.0 - POSITIVE_SHARE))
        gain = LOGIT_SPREAD / max(float(logits.std()), 1e-12)
        model.head.weight *= gain
        model.head.bias.copy_((model.head.bias - shift) * gain)
    return shift, gain


def export_light_unet(path: Path, sample_tiles: np.ndarray, gsd_m: float) -> Path:
    """Build, calibrate and export the model with a valid edge-ls ModelSpec; atomic write."""
    import onnx
    import torch

    from edge_ls.artifact import ModelSpec, write_spec

    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)[:, None, None]
    std = np.asarray(IMAGENET_STD, dtype=np.float32)[:, None, None]
    sample = ((sample_tiles.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)
    model = _build_torch_model()
    shift, gain = _calibrate_head(model, sample)
    params = sum(p.numel() for p in model.parameters())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    dummy = torch.from_numpy(sample[:1])
    torch.onnx.export(
        model,
        (dummy,),
        str(tmp),
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    proto = onnx.load(str(tmp))
    spec = ModelSpec(
        name="bench-light-unet",
        tier="bench",
        bands=("red", "green", "blue"),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        input_range="8bit",
        gsd_m=gsd_m,
        tile_size=TILE,
        overlap=0.2,
        activation="logits",
        threshold=0.5,
        provenance={
            "source": "bench/light_unet.py",
            "architecture": "MobileNetV3-small encoder + U-Net decoder " + str(DECODER_CHANNELS),
            "weights": "random (torch.manual_seed(0)); for cost measurement only, not a detector",
            "parameters": int(params),
            "head_calibration": {"shift": round(shift, 6), "gain": round(gain, 3)},
            "output_smoothing_px": SMOOTH_PX,
            "positive_share_target": POSITIVE_SHARE,
        },
    )
    write_spec(proto, spec)
    onnx.save(proto, str(tmp))
    tmp.replace(path)
    return path
