"""Segmentation, WGAN-GP and distillation losses behave as their formulas say."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from edge_ls.training import losses  # noqa: E402
from edge_ls.training.networks import build_discriminator  # noqa: E402


def _target() -> torch.Tensor:
    y = torch.zeros(2, 1, 16, 16)
    y[:, :, 4:10, 4:10] = 1
    return y


def test_soft_iou_is_zero_for_a_confident_perfect_prediction_and_one_for_the_opposite() -> None:
    y = _target()
    assert losses.soft_iou_loss((y * 2 - 1) * 30, y, eps=1e-6) < 1e-4
    assert losses.soft_iou_loss((1 - 2 * y) * 30, y, eps=1e-6) > 0.999


def test_segmentation_loss_weights_its_terms() -> None:
    y = _target()
    z = torch.randn_like(y)
    both = losses.segmentation_loss(z, y, 2.0, 3.0)
    assert torch.isclose(both, 2 * losses.bce_loss(z, y) + 3 * losses.soft_iou_loss(z, y))


def test_gradient_penalty_is_finite_and_critic_step_runs() -> None:
    torch.manual_seed(0)
    critic = build_discriminator(3)
    image, real = torch.randn(2, 3, 32, 32), _target().repeat(1, 1, 2, 2)
    fake = torch.rand_like(real, requires_grad=True)
    loss, gp = losses.critic_loss(critic, image, real, fake)
    assert torch.isfinite(loss) and torch.isfinite(gp) and gp >= 0
    loss.backward()
    grads = [p.grad for p in critic.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert fake.grad is None  # the critic step never reaches the generator
    adv = losses.generator_adversarial_loss(critic, image, fake)
    adv.backward()
    assert fake.grad is not None and torch.isfinite(fake.grad).all()


def test_distillation_pulls_student_to_teacher() -> None:
    y = _target()
    teacher = (y * 2 - 1) * 4
    close = losses.distillation_loss(teacher.clone(), teacher, y, temperature=2.0, alpha=0.9)
    far = losses.distillation_loss(-teacher, teacher, y, temperature=2.0, alpha=0.9)
    assert close < far
    # alpha = 0 is plain BCE on the hard labels
    z = torch.randn_like(y)
    assert torch.isclose(losses.distillation_loss(z, teacher, y, 3.0, 0.0), losses.bce_loss(z, y))
