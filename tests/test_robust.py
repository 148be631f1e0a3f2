"""PGD and TRADES on pixel-space inputs: the budget holds, the loss goes up, hand-checked steps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fracdet.robust import PGDConfig, classification_loss, pgd_attack, trades_loss


class Linear(nn.Module):
    """logit = sum(w * x): its gradient sign is sign(w), so one PGD step is known by hand."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weight).flatten(1).sum(1)


def test_pgd_step_matches_hand_computation():
    weight = torch.tensor([[[[1.0, -1.0], [2.0, -0.5]]]])
    x = torch.full((1, 1, 2, 2), 0.5)
    # label 0: BCE grows with the logit, so each pixel moves by +step * sign(w)
    adv = pgd_attack(
        Linear(weight),
        x,
        torch.tensor([0]),
        PGDConfig(eps=0.1, steps=1, step_size=0.03, random_start=False),
    )
    assert torch.allclose(adv, x + 0.03 * weight.sign())
    # many steps saturate at the budget
    adv = pgd_attack(
        Linear(weight),
        x,
        torch.tensor([0]),
        PGDConfig(eps=0.1, steps=10, step_size=0.03, random_start=False),
    )
    assert torch.allclose(adv, x + 0.1 * weight.sign())
    # label 1: the attack lowers the logit instead
    adv = pgd_attack(
        Linear(weight),
        x,
        torch.tensor([1]),
        PGDConfig(eps=0.1, steps=10, step_size=0.03, random_start=False),
    )
    assert torch.allclose(adv, x - 0.1 * weight.sign())


def test_pgd_stays_in_budget_and_unit_range_and_raises_the_loss():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    x = torch.rand(8, 1, 16, 16)
    x[0] = 0.0  # corners of the unit box must clamp
    x[1] = 1.0
    y = torch.randint(0, 3, (8,))
    cfg = PGDConfig(eps=8 / 255, steps=10, step_size=2 / 255)
    adv = pgd_attack(model, x, y, cfg, generator=torch.Generator().manual_seed(0))
    assert (adv - x).abs().max() <= cfg.eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        assert classification_loss(model(adv), y) > classification_loss(model(x), y)


def test_pgd_keeps_train_mode_and_leaves_parameter_gradients_alone():
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(72, 1), nn.Flatten(0)
    )
    model.train()
    stats = model[1].running_mean.clone()
    pgd_attack(model, torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 0, 1]), PGDConfig(steps=3))
    assert model.training
    assert torch.equal(model[1].running_mean, stats)  # BatchNorm frozen during the attack
    assert all(p.grad is None for p in model.parameters())


def test_zero_budget_is_identity_and_bad_config_is_refused():
    x = torch.rand(2, 1, 4, 4)
    assert torch.equal(
        pgd_attack(Linear(torch.ones(1, 1, 4, 4)), x, torch.tensor([0, 1]), PGDConfig(eps=0.0)), x
    )
    with pytest.raises(ValueError):
        PGDConfig(eps=-1)


def test_trades_is_natural_loss_when_beta_is_zero_and_grows_with_beta():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 1), nn.Flatten(0))
    x, y = torch.rand(6, 1, 4, 4), torch.tensor([0, 1, 0, 1, 1, 0])
    natural = classification_loss(model(x), y) / 6
    assert torch.allclose(trades_loss(model, x, y, beta=0.0), natural, atol=1e-6)
    torch.manual_seed(1)
    robust = trades_loss(model, x, y, PGDConfig(eps=0.2, steps=5, step_size=0.05), beta=6.0)
    assert robust > natural
    robust.backward()
    assert model[1].weight.grad is not None
