"""Training losses: BCE + soft-IoU for segmentation, WGAN-GP for the refining GAN, and distillation.

``loss = a·BCE + b·soft-IoU + c·adversarial`` (the seed's weighting). Soft-IoU optimizes the overlap
metric directly, which BCE alone does not on a 10%-positive class; the adversarial term pushes the
refined masks toward the shape statistics of real masks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def bce_loss(logits: torch.Tensor, target: torch.Tensor, pos_weight: float | None = None) -> torch.Tensor:
    """Pixel-mean binary cross-entropy on logits (numerically safe)."""
    weight = (
        None if pos_weight is None else torch.tensor(pos_weight, device=logits.device, dtype=logits.dtype)
    )
    return F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight)


def soft_iou_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft IoU over the whole batch (pixels pooled, as the metrics are): differentiable Jaccard."""
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum()
    union = prob.sum() + target.sum() - inter
    return 1.0 - (inter + eps) / (union + eps)


def segmentation_loss(
    logits: torch.Tensor, target: torch.Tensor, bce_weight: float = 1.0, iou_weight: float = 1.0
) -> torch.Tensor:
    """``a·BCE + b·soft-IoU``: the supervised part of every model's loss."""
    return bce_weight * bce_loss(logits, target) + iou_weight * soft_iou_loss(logits, target)


def gradient_penalty(
    critic: nn.Module, image: torch.Tensor, real: torch.Tensor, fake: torch.Tensor
) -> torch.Tensor:
    """WGAN-GP penalty ``E[(||∇D(x̂)||₂ - 1)²]`` on random interpolates of real and fake masks."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = (alpha * real + (1.0 - alpha) * fake).requires_grad_(True)
    score = critic(image, mixed)
    (grad,) = torch.autograd.grad(score.sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()


def critic_loss(
    critic: nn.Module,
    image: torch.Tensor,
    real_mask: torch.Tensor,
    fake_prob: torch.Tensor,
    gp_weight: float = 10.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """WGAN-GP critic loss ``D(fake) - D(real) + λ·GP``; returns (loss, gradient penalty).

    ``fake_prob`` is detached here: this step updates the critic only.
    """
    fake = fake_prob.detach()
    gp = gradient_penalty(critic, image, real_mask, fake)
    loss = critic(image, fake).mean() - critic(image, real_mask).mean() + gp_weight * gp
    return loss, gp


def generator_adversarial_loss(
    critic: nn.Module, image: torch.Tensor, fake_prob: torch.Tensor
) -> torch.Tensor:
    """``-D(G(x))``: the generator wants the critic to score its masks as real."""
    return -critic(image, fake_prob).mean()


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target: torch.Tensor,
    temperature: float = 2.0,
    alpha: float = 0.5,
) -> torch.Tensor:
    """Hinton-style distillation for per-pixel binary outputs.

    ``alpha·T²·BCE(σ(s/T), σ(t/T)) + (1-alpha)·BCE(s, y)``: the soft term carries the teacher's
    uncertainty at borders; T² keeps its gradient scale independent of T.
    """
    soft_target = torch.sigmoid(teacher_logits.detach() / temperature)
    soft = F.binary_cross_entropy_with_logits(student_logits / temperature, soft_target)
    hard = F.binary_cross_entropy_with_logits(student_logits, target)
    return alpha * temperature**2 * soft + (1.0 - alpha) * hard
