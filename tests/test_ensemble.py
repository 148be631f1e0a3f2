"""The two-class AutoAttack ensemble: exact on a linear model (hand-computed robust accuracy),
inside its budget, one clear line for attacks two classes cannot run, the margin loss as DLR's
numerator, reproducible through ``attack()``, and the same robust accuracy as torchattacks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import test_attacks
import torch
from torch import nn

from fracdet.errors import ConfigError
from fracdet.robust import AttackConfig, attack
from fracdet.robust.budget import check_budget
from fracdet.robust.ensemble import BUDGETS, ENSEMBLE_ATTACKS, APGDMargin, ensemble_attack

standard_model = test_attacks.standard_model  # the fitted two-class CNN and its 64 test images


class Linear(nn.Module):
    """``z = w·x − b``: the smallest ℓ∞ change that flips it is ``|z| / ‖w‖₁`` (no clipping)."""

    def __init__(self, weight: torch.Tensor, bias: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weight).flatten(1).sum(1) - self.bias


@pytest.fixture(scope="module")
def linear() -> tuple[Linear, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(1, 1, 16, 16, generator=g)
    model = Linear(weight, bias=0.5 * float(weight.sum())).eval()
    # pixels in [0.3, 0.7]: an ε of a few grey levels never reaches the clip at 0 or 1
    images = 0.3 + 0.4 * torch.rand(48, 1, 16, 16, generator=g)
    with torch.no_grad():
        labels = (model(images) > 0).long()  # every image correct: accuracy is robustness
    return model, images, labels


def _small_cnn(outputs: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    layers = [
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(256, outputs),
    ]
    if outputs == 1:
        layers.append(nn.Flatten(0))
    return nn.Sequential(*layers).eval()


@pytest.mark.parametrize("eps", [1 / 255, 2 / 255, 4 / 255])
def test_white_box_attacks_find_the_exact_robust_accuracy_of_a_linear_model(linear, eps):
    model, x, y = linear
    with torch.no_grad():
        z = model(x)
    robust = (z.abs() > eps * model.weight.abs().sum()).numpy()
    exact = robust.mean()
    assert 0.05 < exact < 0.95  # the budget splits the images: the test can tell attacks apart
    result = ensemble_attack(model, x, y, eps, independent=True, seed=0)
    for name in ("apgd-ce", "apgd-margin", "fab"):
        assert result.accuracy(name) == pytest.approx(exact, abs=1 / len(x)), name
    assert np.array_equal(result.robust, robust)  # image by image
    # Square, black-box on 200 queries, never beats the exact minimum
    assert result.accuracy("square") >= exact
    assert (result.adv - x).abs().max() <= eps + 1e-6
    # the worst case keeps a fooling example for every image it calls fooled
    with torch.no_grad():
        wrong = (model(result.adv) > 0).long() != y
    assert np.array_equal(wrong.numpy(), ~result.robust)


def test_sequential_ensemble_has_the_same_worst_case_for_less_work(linear):
    model, x, y = linear
    both = [
        ensemble_attack(model, x, y, 2 / 255, independent=flag, seed=0) for flag in (False, True)
    ]
    assert both[0].accuracy() == both[1].accuracy()
    assert both[0].ran_on["apgd-ce"] == len(x)
    # later attacks only see the images the earlier ones left
    assert both[0].ran_on["square"] == int(both[0].robust.sum()) < len(x)
    assert both[1].ran_on["square"] == len(x)  # every image correct: each attack sees them all
    summary = both[0].summary()
    assert set(summary["per_attack"]) == set(ENSEMBLE_ATTACKS)
    assert set(summary["seconds"]) == set(ENSEMBLE_ATTACKS)


@pytest.mark.parametrize(
    ("outputs", "components"),
    [(1, ENSEMBLE_ATTACKS), (2, ENSEMBLE_ATTACKS), (4, ("apgd-dlr", "apgd-t", "fab-t"))],
)
def test_every_attack_stays_in_its_budget_and_the_unit_range(outputs, components):
    model = _small_cnn(outputs)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, 1, 16, 16, generator=g)
    x[:2] = x[:2].round()  # pixels at 0 and 1: the clip binds
    y = torch.randint(0, max(outputs, 2), (8,), generator=g)
    eps = 16 / 255
    result = ensemble_attack(model, x, y, eps, components=components, independent=True)
    assert set(result.fooled) == set(components)
    assert (result.adv - x).abs().max() <= eps + 1e-6
    assert result.adv.min() >= 0 and result.adv.max() <= 1
    # images no attack fooled still carry APGD's highest-margin point, not the clean image
    if "apgd-ce" in components and result.robust.any():
        moved = (result.adv - x).flatten(1).abs().amax(1)[torch.from_numpy(result.robust)]
        assert bool((moved > 0).all())


def test_the_budget_check_names_the_attack_and_what_it_broke():
    x = torch.full((2, 1, 4, 4), 0.5)
    check_budget(x + 4 / 255, x, 4 / 255, attack="pgd")  # exactly at the budget passes
    with pytest.raises(RuntimeError, match=r"attack fab left its linf budget: 0\.0196"):
        check_budget(x + 5 / 255, x, 4 / 255, attack="fab")
    with pytest.raises(RuntimeError, match=r"attack square left \[0, 1\]"):
        check_budget(x * 2.1, x, 1.0, attack="square")
    with pytest.raises(RuntimeError, match="non-finite"):
        check_budget(x * float("nan"), x, 1.0, attack="apgd-ce")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("apgd-dlr", r"'apgd-dlr' cannot run on a 2-class model: it needs at least 3 classes"),
        ("apgd-t", r"'apgd-t' cannot run on a 2-class model: it needs at least 4 classes"),
        ("fab-t", r"'fab-t' cannot run on a 2-class model: it needs at least 3 classes"),
    ],
)
def test_an_attack_two_classes_cannot_run_is_one_clear_line(name, message):
    model = _small_cnn(1)
    x, y = torch.rand(2, 1, 16, 16), torch.tensor([0, 1])
    with pytest.raises(ConfigError, match=message) as caught:
        ensemble_attack(model, x, y, 4 / 255, components=("apgd-ce", name))
    assert "\n" not in str(caught.value)
    # through attack() too, and the audit refuses it before loading anything
    with pytest.raises(ConfigError, match=message):
        attack(model, x, y, AttackConfig(kind="autoattack", components=(name,)))
    from fracdet.audit.config import AuditConfig

    with pytest.raises(ConfigError, match=message):
        AuditConfig(dataset="data", attack="autoattack", attack_components=(name,))


def test_unknown_attacks_and_budgets_are_refused():
    with pytest.raises(ConfigError, match="attack components must be distinct names"):
        AttackConfig(kind="autoattack", components=("apgd-ce", "nope"))
    with pytest.raises(ConfigError, match="unknown attack budget 'huge'"):
        AttackConfig(kind="autoattack", budget="huge")
    with pytest.raises(ConfigError, match="unknown attack 'autoatack' \\(did you mean"):
        AttackConfig(kind="autoatack")


def test_the_margin_loss_is_dlrs_numerator_on_two_logits():
    logits = torch.tensor([[-1.0, 2.0], [0.5, -3.0], [4.0, 4.5]])
    labels = torch.tensor([1, 0, 0])
    apgd = APGDMargin(lambda x: x, n_iter=1, eps=0.1)
    # max_{j≠y} z_j − z_y by hand: −1 − 2, −3 − 0.5, 4.5 − 4
    expected = torch.tensor([-3.0, -3.5, 0.5])
    assert torch.allclose(apgd.dlr_loss(logits, labels), expected)
    # with three classes it is the numerator of the library's DLR (its denominator > 0)
    three = torch.tensor([[1.0, 3.0, 0.0], [2.0, -1.0, 0.5]])
    targets = torch.tensor([0, 0])
    ratio = apgd.dlr_loss(three, targets) / APGDMargin.__mro__[1].dlr_loss(apgd, three, targets)
    sorted_logits = three.sort(dim=1).values
    assert torch.allclose(ratio, sorted_logits[:, -1] - sorted_logits[:, -3] + 1e-12)


def test_autoattack_through_attack_is_seeded_by_the_generator_and_leaves_the_rest_alone(linear):
    model, x, y = linear
    model.train()
    model.weight.grad = None
    cfg = AttackConfig(kind="autoattack", eps=2 / 255)
    state = torch.random.get_rng_state()
    timings: dict[str, float] = {}
    first = attack(model, x, y, cfg, generator=torch.Generator().manual_seed(5), timings=timings)
    assert not first.requires_grad
    again = attack(model, x, y, cfg, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, again)
    assert torch.equal(torch.random.get_rng_state(), state)  # the library's seeding stayed inside
    assert model.training and model.weight.requires_grad and model.weight.grad is None
    assert set(timings) == {f"attack:{name}" for name in ENSEMBLE_ATTACKS}
    assert (first - x).abs().max() <= 2 / 255 + 1e-6
    model.eval()


def test_standard_budget_is_autoattacks_iterations_with_fewer_square_queries():
    assert BUDGETS["standard"].iterations == 100 and BUDGETS["standard"].restarts == 1
    assert BUDGETS["quick"].iterations < BUDGETS["standard"].iterations
    assert BUDGETS["quick"].queries < BUDGETS["standard"].queries <= 5000


def test_same_robust_accuracy_as_torchattacks(standard_model):
    """The cross-check against the other library: torchattacks' APGD (CE), FAB and Square, on the
    same fitted model and 64 images at an ε that splits them, give the same robust accuracy as
    ours within sampling noise (ours on the model's one fracture logit, theirs on two logits)."""
    torchattacks = pytest.importorskip("torchattacks", reason="torchattacks not installed")
    model, x, y = standard_model
    eps, plan = 3 / 255, BUDGETS["quick"]
    ours = ensemble_attack(test_attacks.FractureLogit(model), x, y, eps, independent=True, seed=0)
    assert 0.2 < ours.accuracy() < 0.8  # neither floor nor ceiling: the comparison can fail
    theirs = {
        "apgd-ce": torchattacks.APGD(model, eps=eps, steps=plan.iterations, loss="ce", seed=0),
        "fab": torchattacks.FAB(model, eps=eps, steps=plan.iterations, n_classes=2, seed=0),
        "square": torchattacks.Square(model, eps=eps, n_queries=plan.queries, seed=0),
    }
    noise = 2 * math.sqrt(0.25 / len(x))  # two binomial standard errors at worst (0.125)
    robust = np.ones(len(x), dtype=bool)
    for name, their_attack in theirs.items():
        with torch.no_grad():
            wrong = (model(their_attack(x, y)).argmax(1) != y).numpy()
        robust &= ~wrong
        assert abs(ours.accuracy(name) - (1 - wrong.mean())) <= noise, name
    assert abs(ours.accuracy() - robust.mean()) <= noise
