"""Structured channel pruning with torch-pruning, then distillation from the unpruned model.

Channels are removed whole (filters and everything coupled to them: BN, depthwise partners, the next
layer's inputs), so the result is a smaller dense network that any backend runs faster -- unlike
weight sparsity. Channel counts are rounded to multiples of 8 or 16 (``round_to``): GPU tensor-core
kernels pick their fast paths on such widths, and a pruned model with odd widths can be *slower* on
TensorRT than the unpruned one (TensorRT #3884, Torch-Pruning #382). The output head is never pruned
(it must keep its single channel), and neither are the channels that feed it (see
:func:`head_inputs`). Importance: group L2 magnitude (torch-pruning's ``GroupMagnitudeImportance``),
one ratio for every prunable layer group.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edge_ls.errors import ConfigError, MissingExtraError

log = logging.getLogger(__name__)

ROUND_TO = (8, 16)

#: ``fine_tune(student, teacher)`` trains the pruned student in place (e.g. :func:`distill_fine_tune`).
FineTune = Callable[[Any, Any], Any]
#: ``evaluate(model)`` -> {"f1": ..., "iou": ...} on real labelled tiles (e.g. :func:`torch_scores`).
Evaluate = Callable[[Any], dict[str, float]]


@dataclass
class PruneReport:
    """What pruning did: counts before/after, and latency/accuracy when measured."""

    ratio: float
    round_to: int
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    input_shape: tuple[int, ...]
    latency_ms_before: float | None = None
    latency_ms_after: float | None = None
    accuracy_before: dict[str, float] = field(default_factory=dict)
    accuracy_after_prune: dict[str, float] = field(default_factory=dict)
    accuracy_after: dict[str, float] = field(default_factory=dict)
    fine_tuned: bool = False

    @property
    def params_kept(self) -> float:
        return self.params_after / self.params_before

    @property
    def macs_kept(self) -> float:
        return self.macs_after / self.macs_before

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["input_shape"] = list(self.input_shape)
        out.update(
            params_kept=self.params_kept,
            macs_kept=self.macs_kept,
            gflops_before=2 * self.macs_before / 1e9,
            gflops_after=2 * self.macs_after / 1e9,
        )
        return out


def _torch_pruning() -> Any:
    try:
        import torch_pruning
    except ImportError:
        raise MissingExtraError("torch-pruning", "export", "channel pruning") from None
    return torch_pruning


def output_heads(model: Any) -> list[Any]:
    """Convolutions with a single output channel: the segmentation head(s), never pruned."""
    from torch import nn

    convs = (nn.Conv2d, nn.ConvTranspose2d)
    return [m for m in model.modules() if isinstance(m, convs) and m.out_channels == 1]


def head_inputs(model: Any, example_input: Any, heads: Sequence[Any] | None = None) -> list[Any]:
    """Convolutions whose output channels are the input channels of the single-logit head(s).

    Kept whole by :func:`prune_channels`: magnitude importance ignores the *sign* of the head's
    weights. Edge-Lite's trained head reads 16 channels, 5 of them with positive weights (the
    landslide evidence) and small norms; pruning 50% removed all 5, so every logit was at most the
    head's negative bias and nothing was ever predicted positive, whatever the fine-tuning did.
    These layers are tiny (16 channels at stride 2), so keeping them costs almost nothing.
    """
    from torch import nn

    tp = _torch_pruning()
    convs = (nn.Conv2d, nn.ConvTranspose2d)
    heads = list(heads) if heads is not None else output_heads(model)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_input)
    out: list[Any] = []
    for head in heads:
        for dep, _ in graph.get_pruning_group(head, tp.prune_conv_in_channels, idxs=[0]):
            layer = dep.target.module
            if isinstance(layer, convs) and layer is not head and all(layer is not m for m in out):
                out.append(layer)
    return out


def count_macs_params(model: Any, example_input: Any) -> tuple[int, int]:
    """(MACs, params) from torch-pruning's counter (thop is not a dependency)."""
    tp = _torch_pruning()
    macs, params = tp.utils.count_ops_and_params(model, example_input)
    return int(macs), int(params)


def measure_latency(model: Any, example_input: Any, repeats: int = 5) -> float:
    """Median PyTorch CPU latency in ms of one forward pass (after a warm-up)."""
    import torch

    model.eval()
    times = []
    with torch.inference_mode():
        model(example_input)
        for _ in range(repeats):
            start = time.perf_counter()
            model(example_input)
            times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def prune_channels(
    model: Any,
    example_input: Any,
    ratio: float,
    round_to: int = 8,
    ignored_layers: Sequence[Any] | None = None,
    *,
    fine_tune: FineTune | None = None,
    evaluate: Evaluate | None = None,
    latency_input: Any | None = None,
    iterative_steps: int = 1,
    keep_head_inputs: bool = True,
) -> tuple[Any, PruneReport]:
    """Prune ``ratio`` of the channels of every prunable group of a copy of ``model``.

    ``ignored_layers``: modules whose *output* channels are kept (default: :func:`output_heads`);
    ``keep_head_inputs`` also keeps the layers feeding the heads (:func:`head_inputs`).
    ``fine_tune(student, teacher)`` then recovers accuracy with the unpruned model as teacher;
    ``evaluate`` scores before, after pruning and after fine-tuning; ``latency_input`` (a tensor)
    adds PyTorch CPU latency before/after. Returns the pruned model (the original is untouched).
    """
    tp = _torch_pruning()
    if not 0.0 < ratio < 1.0:
        raise ConfigError(f"pruning ratio must be in (0, 1), got {ratio}")
    if round_to not in ROUND_TO:
        raise ConfigError(f"round_to must be one of {ROUND_TO} (tensor-core friendly widths), got {round_to}")
    teacher = model.eval()
    student = copy.deepcopy(teacher)
    ignored = list(ignored_layers) if ignored_layers is not None else output_heads(student)
    if ignored_layers is not None:  # map the caller's modules (of ``model``) onto the copy
        names = {id(m): n for n, m in teacher.named_modules()}
        copies = dict(student.named_modules())
        ignored = [copies[names[id(m)]] if id(m) in names else m for m in ignored]
    if keep_head_inputs:
        ignored += head_inputs(student, example_input, output_heads(student))
    macs0, params0 = count_macs_params(teacher, example_input)
    report = PruneReport(
        ratio=ratio,
        round_to=round_to,
        params_before=params0,
        params_after=params0,
        macs_before=macs0,
        macs_after=macs0,
        input_shape=tuple(example_input.shape),
    )
    if latency_input is not None:
        report.latency_ms_before = measure_latency(teacher, latency_input)
    if evaluate is not None:
        report.accuracy_before = dict(evaluate(teacher))

    pruner = tp.pruner.MetaPruner(
        student,
        example_input,
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=ratio,
        round_to=round_to,
        ignored_layers=ignored,
        iterative_steps=iterative_steps,
    )
    for _ in range(iterative_steps):
        pruner.step()
    student.eval()
    report.macs_after, report.params_after = count_macs_params(student, example_input)
    if evaluate is not None:
        report.accuracy_after_prune = dict(evaluate(student))
    if fine_tune is not None:
        fine_tune(student, teacher)
        student.eval()
        report.fine_tuned = True
    if evaluate is not None:
        report.accuracy_after = dict(evaluate(student)) if report.fine_tuned else report.accuracy_after_prune
    if latency_input is not None:
        report.latency_ms_after = measure_latency(student, latency_input)
    log.info(
        "pruned %.0f%% of channels: params %d -> %d, MACs %.2fG -> %.2fG",
        100 * ratio,
        params0,
        report.params_after,
        macs0 / 1e9,
        report.macs_after / 1e9,
    )
    return student, report


def channel_widths(model: Any) -> list[int]:
    """Output widths of every conv (to check the rounding)."""
    from torch import nn

    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]


def torch_scores(
    model: Any, images: np.ndarray, masks: np.ndarray, threshold: float = 0.5, batch: int = 4
) -> dict[str, float]:
    """F1/IoU (percent) of a PyTorch model on labelled tiles, pooled like :mod:`edge_ls.export.accuracy`."""
    import torch

    from edge_ls.metrics import PixelMetrics, percent_scores

    acc = PixelMetrics(threshold=threshold)
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            logits = model(torch.from_numpy(np.ascontiguousarray(images[i : i + batch]))).float()
            part = masks[i : i + batch]
            acc.update(torch.sigmoid(logits).numpy().reshape(part.shape), part)
    return percent_scores(acc.compute())


def fit_student_temperature(
    model: Any, images: np.ndarray, masks: np.ndarray, batch: int = 2, step: int = 4
) -> float:
    """The calibration temperature of a pruned (or otherwise changed) model, as the trainer fits it:
    the T minimizing the NLL of ``sigmoid(logits / T)`` on labelled tiles, every ``step``-th pixel.

    A student's logits are not its teacher's (pruned Fusion: T 0.65 -> 0.89), so copying the teacher's
    temperature would mis-state every probability and confidence the runtime writes.
    """
    import torch

    from edge_ls.metrics import fit_temperature

    if len(images) == 0:
        raise ConfigError("fitting a temperature needs labelled tiles")
    logits = []
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch]))
            logits.append(model(x).float().numpy()[:, 0, ::step, ::step])
    return float(fit_temperature(np.concatenate(logits), masks[:, ::step, ::step]))


def distill_fine_tune(
    student: Any,
    teacher: Any,
    images: np.ndarray,
    masks: np.ndarray,
    steps: int = 100,
    lr: float = 1e-4,
    batch: int = 4,
    temperature: float = 2.0,
    alpha: float = 0.5,
    iou_weight: float = 1.0,
    seed: int = 0,
    progress: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Recover a pruned student by distillation: ``alpha`` soft teacher targets + ``1-alpha`` labels,
    plus ``iou_weight`` x the supervised soft-IoU the trainer uses.

    Uses the trainer's ``distillation_loss`` (Hinton-style, per-pixel BCE) and ``soft_iou_loss``:
    pixel BCE alone on a ~10%-positive class rewards predicting background, soft-IoU is what keeps
    the positives. Random flips as augmentation. Returns the loss of every step. Train on tiles
    disjoint from any evaluation set.
    """
    import torch

    from edge_ls.training.losses import distillation_loss, soft_iou_loss

    if len(images) == 0:
        raise ConfigError("distillation fine-tuning needs labelled tiles")
    rng = np.random.default_rng(seed)
    teacher.eval()
    student.train()
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        idx = rng.choice(len(images), size=min(batch, len(images)), replace=False)
        x = torch.from_numpy(np.ascontiguousarray(images[idx]))
        y = torch.from_numpy(np.ascontiguousarray(masks[idx][:, None].astype(np.float32)))
        if rng.random() < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        if rng.random() < 0.5:
            x, y = x.flip(-2), y.flip(-2)
        with torch.no_grad():
            t_logits = teacher(x)
        s_logits = student(x)
        loss = distillation_loss(s_logits, t_logits, y, temperature=temperature, alpha=alpha)
        if iou_weight:
            loss = loss + iou_weight * soft_iou_loss(s_logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step, losses[-1])
    student.eval()
    return losses
