"""Evaluation attacks: budgets parsed and kept, loss raised, hand-checked steps, restarts,
torchattacks agrees."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fracdet.errors import ConfigError
from fracdet.robust import (
    AttackConfig,
    PGDConfig,
    ascent_objective,
    attack,
    classification_loss,
    parse_eps,
    per_image_loss,
    pgd_attack,
    pixel_budget,
)


class Linear(nn.Module):
    """logit = scale * (sum(w * x) - offset): its input gradient is scale * w, so each step is known
    by hand."""

    def __init__(
        self,
        weight: torch.Tensor,
        *,
        scale: float = 1.0,
        offset: float = 0.0,
        two_class: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.scale, self.offset, self.two_class = scale, offset, two_class

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.scale * ((x * self.weight).flatten(1).sum(1) - self.offset)
        return torch.stack([torch.zeros_like(z), z], dim=1) if self.two_class else z


def _small_cnn(outputs: int) -> nn.Module:
    torch.manual_seed(0)
    layers = [
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, outputs),
    ]
    if outputs == 1:
        layers.append(nn.Flatten(0))
    return nn.Sequential(*layers).eval()


def _pattern_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes told apart by ±0.02 along a fixed ±1 pattern: separable, but not by 8/255 in
    ℓ∞."""
    pattern = (
        torch.randint(0, 2, (1, 1, 16, 16), generator=torch.Generator().manual_seed(123)).float()
        * 2
        - 1
    )
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    noise = torch.randn(n, 1, 16, 16, generator=g) * 0.03
    images = (0.5 + 0.02 * (labels.float() * 2 - 1).view(-1, 1, 1, 1) * pattern + noise).clamp(0, 1)
    return images, labels


@pytest.fixture(scope="module")
def standard_model() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small two-class CNN fitted (no adversarial training) to the pattern data, and 64 held-out
    images."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(256, 2),
    )
    images, labels = _pattern_data(256, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(20):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    model.eval()
    test_images, test_labels = _pattern_data(64, seed=1)
    return model, test_images, test_labels


def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        logits = model(images)
    predicted = (logits > 0).long() if logits.ndim == 1 else logits.argmax(1)
    return float((predicted == labels).float().mean())


# --- parse_eps and the config ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("4/255", 4 / 255),
        (" 8 / 255 ", 8 / 255),
        ("0.0157", 0.0157),
        (0.0157, 0.0157),
        (4 / 255, 4 / 255),
        (0, 0.0),
        ("1", 1.0),
        (1, 1.0),
    ],
)
def test_parse_eps_accepts_numbers_and_fractions(value, expected):
    assert parse_eps(value) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-0.01, r"\[0, 1\]"),
        ("-4/255", r"\[0, 1\]"),
        (1.5, r"\[0, 1\]"),
        ("300/255", r"\[0, 1\]"),
        ("abc", "number or a fraction"),
        ("4/255/2", "number or a fraction"),
        ("", "number or a fraction"),
        ("4/0", "divides by zero"),
        ("nan", "finite"),
        (math.inf, "finite"),
        (None, "number or a fraction"),
        (True, "number or a fraction"),
    ],
)
def test_parse_eps_refuses_bad_budgets_in_one_line(value, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_eps(value)
    assert "\n" not in str(info.value)


def test_attack_config_defaults_and_string_budgets():
    cfg = AttackConfig()
    assert (
        cfg.kind,
        cfg.eps,
        cfg.steps,
        cfg.step_size,
        cfg.restarts,
        cfg.random_start,
        cfg.eps_space,
    ) == ("pgd", 4 / 255, 10, 1 / 255, 1, True, "pixel")
    cfg = AttackConfig(eps="8/255", step_size="2/255")
    assert cfg.eps == pytest.approx(8 / 255) and cfg.step_size == pytest.approx(2 / 255)
    assert (
        AttackConfig(kind="pgd_l2", eps=3.0, step_size=0.5).eps == 3.0
    )  # an ℓ2 radius may exceed 1
    assert (
        AttackConfig(kind="fgsm", steps=0).kind == "fgsm"
    )  # FGSM takes one step whatever steps says


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kind": "pgdd"}, "unknown attack 'pgdd' \\(did you mean 'pgd'\\?\\)"),
        ({"eps": 2.0}, r"eps must lie in \[0, 1\]"),
        ({"eps": -0.1}, r"eps must lie in \[0, 1\]"),
        ({"eps": "4/0"}, "divides by zero"),
        ({"kind": "pgd_l2", "eps": -1.0}, "eps must be >= 0"),
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"steps": 2.5}, "steps must be an integer >= 1"),
        ({"kind": "pgd_l2", "steps": 0}, "steps must be an integer >= 1"),
        ({"step_size": 0.0}, "step_size must be > 0"),
        ({"restarts": 0}, "restarts must be an integer >= 1"),
        ({"kind": "fgsm", "restarts": 0}, "restarts must be an integer >= 1"),
        ({"random_start": "yes"}, "random_start must be true or false"),
        ({"eps_space": "logits"}, "unknown eps space"),
    ],
)
def test_attack_config_refuses_bad_values(options, message):
    with pytest.raises(ConfigError, match=message):
        AttackConfig(**options)


def test_from_options_parses_strings_fills_defaults_and_refuses_unknown_keys():
    cfg = AttackConfig.from_options(kind="fgsm", eps="2/255", steps=None, restarts=2)
    assert (cfg.kind, cfg.eps, cfg.steps, cfg.restarts) == ("fgsm", pytest.approx(2 / 255), 10, 2)
    with pytest.raises(
        ConfigError, match="unknown attack option 'step' \\(did you mean 'steps'\\?\\)"
    ):
        AttackConfig.from_options(step=5)


def test_pixel_budget_converts_normalized_eps_with_the_smallest_std():
    imagenet_std = (0.229, 0.224, 0.225)
    cfg = AttackConfig(eps="4/255", step_size="1/255", eps_space="normalized")
    pixel = pixel_budget(cfg, imagenet_std)
    assert pixel.eps_space == "pixel"
    assert pixel.eps * 255 == pytest.approx(
        4 * 0.224
    )  # about 0.9/255, the study's effective budget
    assert pixel.step_size * 255 == pytest.approx(0.224)
    assert (pixel.kind, pixel.steps, pixel.restarts) == (cfg.kind, cfg.steps, cfg.restarts)
    assert (
        pixel_budget(AttackConfig(), imagenet_std) == AttackConfig()
    )  # pixel budgets are left alone
    for bad in ((), (0.2, 0.0, 0.2), (float("nan"),)):
        with pytest.raises(ConfigError, match="std must be positive"):
            pixel_budget(cfg, bad)


def test_attack_refuses_an_unconverted_normalized_budget():
    with pytest.raises(ConfigError, match="pixel_budget"):
        attack(
            _small_cnn(2),
            torch.rand(2, 1, 8, 8),
            torch.tensor([0, 1]),
            AttackConfig(eps_space="normalized"),
        )


def test_attack_refuses_mismatched_labels():
    with pytest.raises(ValueError, match="B labels"):
        attack(_small_cnn(2), torch.rand(2, 1, 8, 8), torch.tensor([0, 1, 1]))


# --- the budget holds and the loss goes up --------------------------------------------------


@pytest.mark.parametrize("outputs", [1, 3])
@pytest.mark.parametrize(
    "cfg",
    [
        AttackConfig(eps=8 / 255, steps=5, step_size=2 / 255),
        AttackConfig(eps=8 / 255, steps=5, step_size=2 / 255, restarts=3),
        AttackConfig(kind="fgsm", eps=8 / 255),
        AttackConfig(kind="fgsm", eps=8 / 255, random_start=False),
        AttackConfig(kind="pgd_l2", eps=0.5, steps=5, step_size=0.2),
        AttackConfig(
            kind="pgd_l2", eps=0.5, steps=5, step_size=0.2, random_start=False, restarts=2
        ),
    ],
    ids=["pgd", "pgd-restarts", "fgsm-random", "fgsm", "l2", "l2-restarts"],
)
def test_attack_stays_in_budget_and_unit_range_and_raises_the_loss(cfg, outputs):
    model = _small_cnn(outputs)
    x = torch.rand(8, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    x[0], x[1] = 0.0, 1.0  # the corners of the unit box must clamp
    y = torch.randint(0, max(outputs, 2), (8,), generator=torch.Generator().manual_seed(2))
    adv = attack(model, x, y, cfg, generator=torch.Generator().manual_seed(0))
    assert adv.shape == x.shape and not adv.requires_grad
    assert adv.min() >= 0 and adv.max() <= 1
    if cfg.kind == "pgd_l2":
        assert (adv - x).flatten(1).norm(dim=1).max() <= cfg.eps + 1e-5
    else:
        assert (adv - x).abs().max() <= cfg.eps + 1e-6
    with torch.no_grad():
        assert classification_loss(model(adv), y) > classification_loss(model(x), y)


def test_zero_budget_returns_the_clean_images():
    x = torch.rand(3, 1, 8, 8)
    adv = attack(_small_cnn(2), x, torch.tensor([0, 1, 0]), AttackConfig(eps=0.0))
    assert torch.equal(adv, x) and adv is not x


def test_attack_freezes_batchnorm_restores_train_mode_and_leaves_parameter_gradients_alone():
    model = _small_cnn(1).train()
    stats = model[1].running_mean.clone()
    with torch.no_grad():  # an audit may call it under no_grad: the attack needs gradients anyway
        adv = attack(
            model,
            torch.rand(4, 1, 8, 8),
            torch.tensor([0, 1, 0, 1]),
            AttackConfig(steps=3, restarts=2),
        )
    assert model.training
    assert torch.equal(model[1].running_mean, stats)
    assert all(p.grad is None for p in model.parameters())
    assert adv.shape == (4, 1, 8, 8)


# --- hand-computed steps on a linear model --------------------------------------------------

WEIGHT = torch.tensor([[[[1.0, -1.0], [2.0, -0.5]]]])


def test_fgsm_is_one_signed_step_of_eps():
    x = torch.full((1, 1, 2, 2), 0.5)
    # label 0: BCE grows with the logit, so every pixel moves by +eps * sign(w); steps and step_size
    # play no part
    cfg = AttackConfig(kind="fgsm", eps=0.1, steps=7, step_size=0.01, random_start=False)
    assert torch.allclose(
        attack(Linear(WEIGHT), x, torch.tensor([0]), cfg), x + 0.1 * WEIGHT.sign()
    )
    assert torch.allclose(
        attack(Linear(WEIGHT), x, torch.tensor([1]), cfg), x - 0.1 * WEIGHT.sign()
    )
    # clamped to [0, 1] at the edges of the unit box
    edge = torch.tensor([[[[0.95, 0.05], [1.0, 0.0]]]])
    assert torch.allclose(
        attack(Linear(WEIGHT), edge, torch.tensor([0]), cfg),
        torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]]),
    )


def test_fgsm_with_random_start_is_one_step_of_eps_from_a_uniform_point_in_the_ball():
    x = torch.full((16, 1, 2, 2), 0.5)
    cfg = AttackConfig(kind="fgsm", eps=0.1)
    adv = attack(
        Linear(WEIGHT),
        x,
        torch.zeros(16, dtype=torch.long),
        cfg,
        generator=torch.Generator().manual_seed(0),
    )
    start = (
        x + (torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 0.1
    )  # the same draw
    expected = torch.min(torch.max(start + 0.1 * WEIGHT.sign(), x - 0.1), x + 0.1)
    assert torch.allclose(adv, expected, atol=1e-6)
    assert (adv - x).abs().max() <= 0.1 + 1e-6


def test_l2_pgd_steps_along_the_normalised_gradient_and_saturates_at_the_radius():
    x = torch.full((1, 1, 2, 2), 0.5)
    unit = WEIGHT / WEIGHT.norm()
    one_step = AttackConfig(kind="pgd_l2", eps=0.3, steps=1, step_size=0.1, random_start=False)
    assert torch.allclose(
        attack(Linear(WEIGHT), x, torch.tensor([0]), one_step), x + 0.1 * unit, atol=1e-6
    )
    many = AttackConfig(kind="pgd_l2", eps=0.3, steps=10, step_size=0.1, random_start=False)
    assert torch.allclose(
        attack(Linear(WEIGHT), x, torch.tensor([0]), many), x + 0.3 * unit, atol=1e-6
    )
    assert torch.allclose(
        attack(Linear(WEIGHT), x, torch.tensor([1]), many), x - 0.3 * unit, atol=1e-6
    )


def test_linf_pgd_saturates_at_the_budget():
    x = torch.full((1, 1, 2, 2), 0.5)
    cfg = AttackConfig(eps=0.1, steps=10, step_size=0.03, random_start=False)
    assert torch.allclose(
        attack(Linear(WEIGHT), x, torch.tensor([0]), cfg), x + 0.1 * WEIGHT.sign()
    )


@pytest.mark.parametrize("two_class", [False, True])
def test_attack_does_not_stall_where_cross_entropy_saturates(two_class):
    """A confident model (logit margin 50): float32 cross-entropy has exactly zero gradient
    there."""
    model = Linear(
        WEIGHT, scale=1000.0, offset=0.7, two_class=two_class
    )  # sum(w * x) = 0.75 at x = 0.5
    x, y = torch.full((1, 1, 2, 2), 0.5), torch.tensor([1])
    cfg = AttackConfig(kind="fgsm", eps=0.05, random_start=False)
    stalled = pgd_attack(
        model, x, y, PGDConfig(eps=0.05, steps=1, step_size=0.05, random_start=False)
    )
    assert torch.equal(stalled, x)  # cross-entropy PGD (the training attack) does not move
    adv = attack(model, x, y, cfg)
    assert torch.allclose(adv, x - 0.05 * WEIGHT.sign())  # sum(w * x) drops by 0.05 * |w|_1 = 0.225
    with torch.no_grad():
        assert _accuracy(model, adv, y) == 0.0


def test_ascent_objective_is_the_margin_whose_softplus_is_cross_entropy():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, 1.0]])
    labels = torch.tensor([0, 2])
    expected = torch.tensor(
        [
            math.log(math.exp(-1.0) + math.exp(0.5)) - 2.0,
            math.log(math.exp(0.0) + math.exp(3.0)) - 1.0,
        ]
    )
    assert torch.allclose(ascent_objective(logits, labels), expected)
    assert torch.allclose(
        nn.functional.softplus(ascent_objective(logits, labels)), per_image_loss(logits, labels)
    )
    z, binary = torch.tensor([1.5, -2.0, 0.3]), torch.tensor([0, 0, 1])
    assert torch.allclose(ascent_objective(z, binary), torch.tensor([1.5, -2.0, -0.3]))
    assert torch.allclose(
        nn.functional.softplus(ascent_objective(z, binary)), per_image_loss(z, binary)
    )


# --- against a fitted standard model -------------------------------------------------------


def test_pgd_drives_a_standard_model_towards_zero_accuracy(standard_model):
    model, x, y = standard_model
    assert _accuracy(model, x, y) >= 0.95  # it fits
    adv = attack(
        model,
        x,
        y,
        AttackConfig(eps=8 / 255, steps=10, step_size=2 / 255),
        generator=torch.Generator().manual_seed(0),
    )
    assert _accuracy(model, adv, y) <= 0.05
    # a budget well inside the class margin barely moves it: the drop is the attack, not noise
    weak = attack(
        model,
        x,
        y,
        AttackConfig(eps=1 / 255, steps=10, step_size=0.5 / 255),
        generator=torch.Generator().manual_seed(0),
    )
    assert _accuracy(model, weak, y) >= 0.8


def test_restarts_stop_once_every_image_is_misclassified(standard_model):
    model, x, y = standard_model
    cfg = AttackConfig(eps=8 / 255, steps=10, step_size=2 / 255)
    single = attack(model, x, y, cfg, generator=torch.Generator().manual_seed(3))
    assert _accuracy(model, single, y) == 0.0
    generator = torch.Generator().manual_seed(3)
    multi = attack(
        model,
        x,
        y,
        AttackConfig(eps=8 / 255, steps=10, step_size=2 / 255, restarts=4),
        generator=generator,
    )
    assert torch.equal(multi, single)
    # no further restart ran: the generator is where one run left it
    after_one = torch.Generator().manual_seed(3)
    torch.rand(x.shape, generator=after_one)
    assert torch.equal(torch.rand(3, generator=generator), torch.rand(3, generator=after_one))


class FractureLogit(nn.Module):
    """A two-class model as one ``(B,)`` logit, the difference of its class logits."""

    def __init__(self, two_class: nn.Module) -> None:
        super().__init__()
        self.two_class = two_class

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.two_class(x)
        return logits[:, 1] - logits[:, 0]


def _fooled(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    predicted = (logits > 0).long() if logits.ndim == 1 else logits.argmax(1)
    return predicted != labels


@pytest.mark.parametrize("binary", [False, True])
def test_restarts_never_do_worse_than_one(standard_model, binary):
    model, x, y = standard_model
    if binary:
        model = FractureLogit(model)
    cfg = AttackConfig(eps=2.5 / 255, steps=3, step_size=1 / 255)
    single = attack(model, x, y, cfg, generator=torch.Generator().manual_seed(7))
    multi = attack(
        model,
        x,
        y,
        AttackConfig(eps=2.5 / 255, steps=3, step_size=1 / 255, restarts=5),
        generator=torch.Generator().manual_seed(7),
    )
    assert (multi - x).abs().max() <= cfg.eps + 1e-6
    with torch.no_grad():
        logits_single, logits_multi = model(single), model(multi)
    fooled_single, fooled_multi = _fooled(logits_single, y), _fooled(logits_multi, y)
    assert 0 < int(fooled_single.sum()) < len(y)  # the budget leaves room for restarts to matter
    assert bool((fooled_multi >= fooled_single).all())  # an image fooled once stays fooled
    same = fooled_multi == fooled_single
    margin_single, margin_multi = (
        ascent_objective(logits_single, y)[same],
        ascent_objective(logits_multi, y)[same],
    )
    assert bool((margin_multi >= margin_single - 1e-6).all())  # otherwise the loss never goes down
    assert bool((margin_multi > margin_single + 1e-4).any())  # and the restarts found higher ones


# --- cross-check with torchattacks ----------------------------------------------------------


def test_pgd_matches_torchattacks(standard_model):
    """torchattacks 3.5.1 is installed with --no-deps (its requests pin would downgrade ours; see
    Makefile)."""
    torchattacks = pytest.importorskip(
        "torchattacks", reason="torchattacks not installed (make install adds it with --no-deps)"
    )
    model, x, y = standard_model
    eps, alpha, steps = 8 / 255, 2 / 255, 10
    theirs = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=False)(x, y)
    assert _accuracy(model, theirs, y) <= 0.05
    # no random start: both start at the clean images. fracdet's cross-entropy PGD (the one
    # training uses) is theirs bit for bit: 64 images keep the batch-mean's gradients exact
    # power-of-two multiples of fracdet's batch-sum, so every sign agrees
    assert torch.equal(
        pgd_attack(model, x, y, PGDConfig(eps, steps, alpha, random_start=False)), theirs
    )
    # the audit's attack climbs the margin (same direction, other rounding): same accuracy, pixels
    # agree
    ours = attack(
        model, x, y, AttackConfig(eps=eps, steps=steps, step_size=alpha, random_start=False)
    )
    assert _accuracy(model, ours, y) == _accuracy(model, theirs, y)
    assert float((ours == theirs).float().mean()) >= 0.999
    # random starts draw different numbers in the two libraries; accuracy under attack still agrees
    ours_random = attack(
        model,
        x,
        y,
        AttackConfig(eps=eps, steps=steps, step_size=alpha),
        generator=torch.Generator().manual_seed(0),
    )
    torch.manual_seed(0)
    theirs_random = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)(
        x, y
    )
    assert abs(_accuracy(model, ours_random, y) - _accuracy(model, theirs_random, y)) <= 2 / len(y)
