from __future__ import annotations

import numpy as np
import pytest

from edge_ls.errors import ConfigError

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from edge_ls.export.prune import (  # noqa: E402
    channel_widths,
    distill_fine_tune,
    head_inputs,
    output_heads,
    prune_channels,
    torch_scores,
)

from .conftest import make_unet  # noqa: E402


@pytest.mark.parametrize("round_to", [8, 16])
def test_pruning_rounds_widths_and_reduces_params(round_to):
    model = make_unet()
    example = torch.randn(1, 3, 64, 64)
    before = channel_widths(model)
    pruned, report = prune_channels(model, example, 0.5, round_to=round_to)
    widths = channel_widths(pruned)
    assert channel_widths(model) == before  # the original is untouched (it is the teacher)
    changed = [w for w, w0 in zip(widths, before, strict=True) if w != w0]
    assert len(changed) > 0.5 * len(widths)
    assert all(w % round_to == 0 for w in changed), widths  # every pruned layer lands on a multiple
    if round_to == 8:  # MobileNetV3 widths are all multiples of 8 to begin with
        assert all(w % 8 == 0 for w in widths if w != 1), widths
    assert widths[-1] == 1  # the head keeps its single output channel
    assert report.params_after < 0.5 * report.params_before
    assert report.macs_after < 0.6 * report.macs_before
    with torch.no_grad():
        assert pruned(torch.randn(2, 3, 96, 96)).shape == (2, 1, 96, 96)


def test_fine_tune_and_evaluate_hooks_run_in_order(real_tiles, hokkaido, spec):
    from edge_ls.io.labelled import load_labelled

    data = load_labelled(hokkaido, spec, size=64, limit=6)
    model = make_unet()
    calls = []

    def evaluate(m):
        calls.append("eval")
        return torch_scores(m, data.images, data.masks)

    def fine_tune(student, teacher):
        calls.append("tune")
        assert teacher is model and student is not model
        losses = distill_fine_tune(student, teacher, data.images, data.masks, steps=3, batch=2)
        assert len(losses) == 3 and all(np.isfinite(losses))

    _, report = prune_channels(
        model,
        torch.randn(1, 3, 64, 64),
        0.3,
        fine_tune=fine_tune,
        evaluate=evaluate,
        latency_input=torch.randn(1, 3, 64, 64),
    )
    assert calls == ["eval", "eval", "tune", "eval"]
    assert report.fine_tuned and set(report.accuracy_after) >= {"f1", "iou"}
    assert report.latency_ms_before > 0 and report.latency_ms_after > 0
    d = report.as_dict()
    assert d["params_kept"] < 1 and d["gflops_after"] < d["gflops_before"]


def test_pruned_model_exports_with_parity(tmp_path, real_tiles, spec):
    from edge_ls.export.onnx_export import export_onnx, parity_max_diff

    pruned, _ = prune_channels(make_unet(), torch.randn(1, 3, 64, 64), 0.5)
    path = export_onnx(pruned, spec, tmp_path / "p.onnx", sample=real_tiles[:2])
    assert parity_max_diff(path, pruned, real_tiles) < 1e-3


def test_bad_arguments():
    model = make_unet()
    with pytest.raises(ConfigError, match="ratio"):
        prune_channels(model, torch.randn(1, 3, 64, 64), 1.0)
    with pytest.raises(ConfigError, match="round_to"):
        prune_channels(model, torch.randn(1, 3, 64, 64), 0.5, round_to=7)
    assert output_heads(model) == [model.head]


def _head_with_weak_positive_evidence():
    """make_unet whose head reads 8 positive-weight channels with the smallest norms (the shape of the
    trained Edge-Lite head: its landslide evidence channels were the weakest by L2 magnitude) and a
    negative bias: magnitude pruning of those channels caps every logit at the bias."""
    model = make_unet()
    conv, bn, head = model.fuse[0], model.fuse[1], model.head
    with torch.no_grad():
        head.weight.fill_(-0.5)
        head.weight[0, :8] = 0.5
        head.bias.fill_(-1.0)
        conv.weight[:8] *= 0.05
        bn.weight[:8] = 0.05
        bn.bias[:8] = 0.6
    return model


def test_head_inputs_are_the_layer_feeding_the_head():
    model = make_unet()
    assert head_inputs(model, torch.randn(1, 3, 64, 64)) == [model.fuse[0]]


def test_pruning_keeps_the_head_evidence_so_logits_can_pass_the_bias(real_tiles):
    """The regression behind F1 = 0 of every pruned model: without head_inputs kept, the student's
    logits can never exceed the (negative) head bias, so nothing is predicted positive at 0.5."""
    model = _head_with_weak_positive_evidence()
    example, x = torch.randn(1, 3, 64, 64), torch.from_numpy(real_tiles[:2])
    capped, _ = prune_channels(model, example, 0.5, keep_head_inputs=False)
    pruned, report = prune_channels(model, example, 0.5)
    with torch.no_grad():
        assert model(x).max() > 0  # the teacher predicts landslide somewhere
        assert capped(x).max() <= model.head.bias.item() + 1e-6  # the failure mode
        assert pruned.fuse[0].out_channels == 32 and pruned.head.in_channels == 32
        assert report.params_after < 0.5 * report.params_before  # the rest is still pruned
        assert pruned(x).max() > 0
        p_teacher, p_student = (torch.sigmoid(m(x)) >= 0.5 for m in (model, pruned))
        assert p_student.sum() > 0.5 * p_teacher.sum()


def test_distillation_adds_the_supervised_soft_iou(hokkaido, spec):
    from edge_ls.io.labelled import load_labelled
    from edge_ls.training.losses import distillation_loss, soft_iou_loss

    data = load_labelled(hokkaido, spec, size=64, limit=2)
    teacher = make_unet()
    students = [make_unet(seed=1), make_unet(seed=1)]
    rng = np.random.default_rng(3)  # replay the first step's batch and flips
    idx = rng.choice(2, size=2, replace=False)
    x, y = torch.from_numpy(data.images[idx]), torch.from_numpy(data.masks[idx][:, None].astype(np.float32))
    if rng.random() < 0.5:
        x, y = x.flip(-1), y.flip(-1)
    if rng.random() < 0.5:
        x, y = x.flip(-2), y.flip(-2)
    with torch.no_grad():
        students[0].train()
        ref = students[0](x)
    plain = distill_fine_tune(
        students[0], teacher, data.images, data.masks, steps=1, batch=2, seed=3, iou_weight=0.0, lr=0.0
    )
    with_iou = distill_fine_tune(
        students[1], teacher, data.images, data.masks, steps=1, batch=2, seed=3, lr=0.0
    )
    with torch.no_grad():
        expected = distillation_loss(ref, teacher(x), y)
    assert plain[0] == pytest.approx(float(expected), rel=1e-3)
    assert with_iou[0] - plain[0] == pytest.approx(float(soft_iou_loss(ref, y)), rel=1e-3)


def test_student_temperature_follows_the_logit_scale(real_tiles):
    """Scaling a model's logits by 4 scales the fitted temperature by 4: the fit reads the student."""
    import torch
    from torch import nn

    from edge_ls.export.prune import fit_student_temperature

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1)).eval()
    images = real_tiles[:4]
    with torch.no_grad():
        logits = net(torch.from_numpy(np.ascontiguousarray(images))).numpy()[:, 0]
    # Labels drawn from sigmoid(logits / 2): the fitted temperature is ~2, far from the search bounds.
    rng = np.random.default_rng(0)
    masks = (rng.random(logits.shape) < 1 / (1 + np.exp(-logits / 2))).astype(np.uint8)
    t1 = fit_student_temperature(net, images, masks)
    assert 1.0 < t1 < 4.0
    with torch.no_grad():
        net[2].weight *= 4
        net[2].bias *= 4
    assert fit_student_temperature(net, images, masks) == pytest.approx(4 * t1, rel=0.02)
