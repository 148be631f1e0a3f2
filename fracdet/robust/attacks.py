"""Evaluation attacks on pixel-space classifiers: ℓ∞ PGD, FGSM, ℓ2 PGD and the AutoAttack ensemble.

The audit's entry point is :func:`attack`. Models take images in [0, 1] and normalise inside
(ARCHITECTURE invariant 1), so every budget here is in grey levels of the radiograph unless a
config says ``eps_space="normalized"``; :func:`pixel_budget` turns such a config into its
pixel-space equivalent. ℓ∞ PGD reuses :func:`fracdet.robust.pgd.pgd_attack`, the same code
adversarial training runs; ``autoattack`` runs :mod:`fracdet.robust.ensemble`. Every attack's
output is checked to lie within its budget and [0, 1] (:func:`check_budget`).
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fracdet.errors import ConfigError
from fracdet.robust.budget import check_budget
from fracdet.robust.ensemble import ATTACK_BUDGETS, ENSEMBLE_ATTACKS, MIN_CLASSES, ensemble_attack
from fracdet.robust.pgd import PGDConfig, eval_mode, pgd_attack

__all__ = [
    "ATTACK_KINDS",
    "EPS_SPACES",
    "AttackConfig",
    "attack",
    "parse_eps",
    "pixel_budget",
    "per_image_loss",
    "ascent_objective",
]

logger = logging.getLogger(__name__)

#: ``pgd``: ℓ∞ PGD (Madry et al. 2018); ``fgsm``: one signed-gradient step of size ε
#: (Goodfellow et al. 2015); ``pgd_l2``: PGD with normalised gradient steps in an ℓ2 ball;
#: ``autoattack``: the ℓ∞ ensemble of :mod:`fracdet.robust.ensemble`, worst case per image.
ATTACK_KINDS = ("pgd", "fgsm", "pgd_l2", "autoattack")

#: ``pixel``: ε in pixel units of [0, 1] images; ``normalized``: ε after mean/std normalisation.
EPS_SPACES = ("pixel", "normalized")

# guards the ℓ2 direction and projection against all-zero gradients or perturbations
_TINY = 1e-12


def _number(name: str, value: object) -> float:
    """A finite number from a number or a string such as ``"4/255"`` or ``"0.0157"``."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"{name} must be a number or a fraction such as 4/255, got {value!r}")
    if isinstance(value, str):
        numerator, slash, denominator = value.strip().partition("/")
        try:
            number, divisor = float(numerator), float(denominator) if slash else 1.0
        except ValueError:
            raise ConfigError(
                f"{name} must be a number or a fraction such as 4/255, got {value!r}"
            ) from None
        if divisor == 0:
            raise ConfigError(f"{name} {value!r} divides by zero")
        number = number / divisor
    else:
        number = float(value)
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return number


def parse_eps(value: str | float) -> float:
    """A budget from ``"4/255"``, ``"0.0157"``, ``0.0157`` or ``4/255``; must lie in [0, 1].

    Fractions are how papers state budgets, so they are accepted as written; anything
    negative, above 1, not finite or not a number is a :class:`ConfigError`.
    """
    number = _number("eps", value)
    if not 0 <= number <= 1:
        raise ConfigError(
            f"eps must lie in [0, 1] (pixel units; 4/255 is four grey levels), got {value!r}"
        )
    return number


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"attack {name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class AttackConfig:
    """One attack: ``kind`` in :data:`ATTACK_KINDS`, budget ``eps``, ``steps`` of ``step_size``.

    Defaults are the audit's: ℓ∞ PGD, ε=4/255, 10 steps of 1/255, a random start, one
    restart, ε in pixel space. ``eps`` and ``step_size`` may be given as strings such as
    ``"4/255"``. ``steps`` is ignored by FGSM (one step of size ε, from a random point in
    the ball when ``random_start``, as in "fast" adversarial training). For ``pgd_l2``,
    ``eps`` is the ℓ2 radius per image and may exceed 1. ``autoattack`` takes its iterations,
    restarts and queries from ``budget`` (:data:`ATTACK_BUDGETS`) and runs ``components``
    (:data:`ENSEMBLE_ATTACKS` by default); ``steps``, ``step_size``, ``restarts`` and
    ``random_start`` are PGD's and FGSM's only.
    """

    kind: str = "pgd"
    eps: float = 4 / 255
    steps: int = 10
    step_size: float = 1 / 255
    restarts: int = 1
    random_start: bool = True
    eps_space: str = "pixel"
    budget: str = "quick"
    components: tuple[str, ...] = ENSEMBLE_ATTACKS

    def __post_init__(self) -> None:
        if self.kind not in ATTACK_KINDS:
            close = difflib.get_close_matches(str(self.kind), ATTACK_KINDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"unknown attack {self.kind!r}{hint}; choose one of {', '.join(ATTACK_KINDS)}"
            )
        if self.eps_space not in EPS_SPACES:
            raise ConfigError(
                f"unknown eps space {self.eps_space!r}; choose one of {', '.join(EPS_SPACES)}"
            )
        # strings such as "4/255" from YAML or the command line become numbers here
        object.__setattr__(self, "eps", self._budget("eps", self.eps))
        object.__setattr__(self, "step_size", self._budget("step_size", self.step_size))
        if self.kind != "fgsm":
            _positive_int("steps", self.steps)
            if self.step_size <= 0:
                raise ConfigError(f"attack step_size must be > 0, got {self.step_size!r}")
        _positive_int("restarts", self.restarts)
        if not isinstance(self.random_start, bool):
            raise ConfigError(
                f"attack random_start must be true or false, got {self.random_start!r}"
            )
        if self.budget not in ATTACK_BUDGETS:
            raise ConfigError(
                f"unknown attack budget {self.budget!r}; choose one of {', '.join(ATTACK_BUDGETS)}"
            )
        components = (self.components,) if isinstance(self.components, str) else self.components
        object.__setattr__(self, "components", tuple(components))
        unknown = [c for c in self.components if c not in MIN_CLASSES]
        if unknown or not self.components or len(set(self.components)) < len(self.components):
            raise ConfigError(
                f"attack components must be distinct names from {', '.join(MIN_CLASSES)}, "
                f"got {list(self.components)}"
            )

    def _budget(self, name: str, value: object) -> float:
        number = _number(name, value)
        # an ℓ∞ budget is a per-pixel change, at most the whole [0, 1] range; an ℓ2 radius
        # sums over every pixel, so values above 1 are ordinary there
        if number < 0 or (self.kind != "pgd_l2" and number > 1):
            limit = (
                "must be >= 0"
                if self.kind == "pgd_l2"
                else "must lie in [0, 1] (pixel units; 4/255 is four grey levels)"
            )
            raise ConfigError(f"attack {name} {limit}, got {value!r}")
        return number

    @classmethod
    def from_options(cls, **options: Any) -> AttackConfig:
        """A config from loose options (YAML, CLI): ``None`` means the default; unknown keys are
        refused."""
        known = {f.name for f in fields(cls)}
        for key in options:
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(
                    f"unknown attack option {key!r}{hint}; known: {', '.join(sorted(known))}"
                )
        return cls(**{k: v for k, v in options.items() if v is not None})


def pixel_budget(cfg: AttackConfig, std: Sequence[float]) -> AttackConfig:
    """The pixel-space config equivalent to ``cfg`` (identity when ``cfg`` is already in pixels).

    Pixel space is the default because it is the invariant the whole toolkit keeps: the
    model normalises inside, so ε=4/255 means four grey levels of the radiograph whatever
    backbone reads it. The robust-transfer study applied ε after mean/std normalisation;
    ``eps_space="normalized"`` reproduces its budget. A pixel change δ moves channel c by
    δ/std_c, so staying within ε in every normalised channel needs δ ≤ ε·min(std): ε=4/255
    with ImageNet std (0.229, 0.224, 0.225) becomes about 0.9/255. The same scaling keeps an
    ℓ2 perturbation inside the normalised ℓ2 ball (a sufficient bound).
    """
    if cfg.eps_space == "pixel":
        return cfg
    values = [float(s) for s in std]
    if not values or not all(math.isfinite(s) and s > 0 for s in values):
        raise ConfigError(f"normalization std must be positive numbers, got {tuple(std)!r}")
    scale = min(values)
    return replace(cfg, eps=cfg.eps * scale, step_size=cfg.step_size * scale, eps_space="pixel")


def per_image_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for each image: BCE on a ``(B,)`` fracture logit, softmax CE on ``(B, C)``."""
    if logits.ndim == 1:
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="none")
    return F.cross_entropy(logits.float(), labels.long(), reduction="none")


def ascent_objective(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per image ``m = logsumexp_{j≠y} z_j − z_y`` (``(1 − 2y)·z`` for one logit); cross-entropy
    is ``softplus(m)``.

    The attacks climb ``m`` rather than the cross-entropy itself. Both have the same input
    gradient direction per image (CE's is ``m``'s times ``1 − p_y > 0``), so every step goes
    where cross-entropy PGD would go; but in float32 ``1 − p_y`` rounds to 0 once the
    margin passes about 17, and a confident standard model then stops cross-entropy PGD
    dead (gradient masking by underflow) and looks robust when it is not. ``m`` never
    saturates. It also ranks restarts, since cross-entropy is monotone in it.
    """
    logits = logits.float()
    if logits.ndim == 1:
        return (1 - 2 * labels.float()) * logits
    labels = labels.long().view(-1, 1)
    others = logits.scatter(1, labels, float("-inf")).logsumexp(dim=1)
    return others - logits.gather(1, labels).squeeze(1)


def _ascent_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return ascent_objective(logits, labels).sum()


def _fooled(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Misclassified at the model's own decision (logit 0, or the arg-max class)."""
    predicted = (logits > 0).long() if logits.ndim == 1 else logits.argmax(dim=1)
    return predicted != labels.long()


def _uniform(
    shape: torch.Size, generator: torch.Generator | None, like: torch.Tensor
) -> torch.Tensor:
    """U[0, 1) noise drawn where ``generator`` lives (CPU by default), like pgd_attack draws it."""
    device = "cpu" if generator is None else generator.device
    return torch.rand(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def _l2_norms(tensor: torch.Tensor) -> torch.Tensor:
    """Per-image ℓ2 norms, shaped to broadcast over ``(B, C, H, W)``."""
    return tensor.flatten(1).norm(p=2, dim=1).view(-1, *([1] * (tensor.ndim - 1)))


def _pgd_l2(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: AttackConfig,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """ℓ2 PGD: steps along the per-image unit gradient, projected onto the ℓ2 ball then [0, 1].

    Clipping to [0, 1] after the projection never leaves the ball: the clean image lies in
    [0, 1], so clipping only moves each pixel towards it.
    """
    adv = images.clone()
    if cfg.random_start:  # a uniform direction at a uniform radius, as torchattacks' PGDL2 starts
        device = "cpu" if generator is None else generator.device
        direction = torch.randn(
            images.shape, generator=generator, device=device, dtype=images.dtype
        ).to(images.device)
        radius = _uniform(torch.Size([len(images)]), generator, images).view(
            -1, *([1] * (images.ndim - 1))
        )
        adv = (images + direction / (_l2_norms(direction) + _TINY) * radius * cfg.eps).clamp_(0, 1)
    for _ in range(cfg.steps):
        adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(_ascent_loss(model(adv), labels), adv)
        adv = adv.detach() + cfg.step_size * grad / (_l2_norms(grad) + _TINY)
        delta = adv - images
        delta = delta * torch.clamp(cfg.eps / (_l2_norms(delta) + _TINY), max=1.0)
        adv = (images + delta).clamp_(0, 1)
    return adv.detach()


def _one_run(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: AttackConfig,
    generator: torch.Generator | None,
) -> torch.Tensor:
    if cfg.kind == "pgd":
        return pgd_attack(
            model,
            images,
            labels,
            PGDConfig(cfg.eps, cfg.steps, cfg.step_size, cfg.random_start),
            loss_fn=_ascent_loss,
            generator=generator,
        )
    if cfg.kind == "fgsm":
        return pgd_attack(
            model,
            images,
            labels,
            PGDConfig(cfg.eps, 1, cfg.eps, cfg.random_start),
            loss_fn=_ascent_loss,
            generator=generator,
        )
    return _pgd_l2(model, images, labels, cfg, generator)


def attack(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: AttackConfig = AttackConfig(),
    *,
    generator: torch.Generator | None = None,
    timings: MutableMapping[str, float] | None = None,
) -> torch.Tensor:
    """Adversarial versions of ``images`` (``(B, C, H, W)`` in [0, 1]) against ``labels``.

    Every result lies within the budget of its clean image (ℓ∞ or ℓ2) and inside [0, 1]. Steps
    climb :func:`ascent_objective`: cross-entropy's direction without its float32 saturation,
    so a confident model cannot look robust by underflow. The model runs in eval mode during the
    attack and is restored afterwards; parameters' gradients are left untouched. With
    ``restarts > 1`` each image keeps, across restarts, the example that misclassifies it, else
    the one with the highest loss; restarts stop early once a multi-class model misclassifies
    every image. The first restart draws the same random numbers as a single run, so restarts
    never do worse than one. ``labels`` are class indices (0/1 for a binary model's ``(B,)``
    logit). A ``normalized`` config must first go through :func:`pixel_budget`, which needs the
    model's std. ``autoattack`` returns the ensemble's worst case per image (seeded from
    ``generator``) and adds each attack's seconds to ``timings`` as ``attack:{name}``.
    """
    if cfg.eps_space != "pixel":
        raise ConfigError(
            "attack budget is in normalized space: "
            "convert it with pixel_budget(cfg, model std) first"
        )
    if images.ndim != 4 or len(labels) != len(images):
        raise ValueError(
            "expected images (B, C, H, W) and B labels, "
            f"got {tuple(images.shape)} and {tuple(labels.shape)}"
        )
    images, labels = images.detach(), labels.detach().to(images.device)
    if cfg.eps == 0 or len(images) == 0:
        return images.clone()
    if cfg.kind == "autoattack":
        device = "cpu" if generator is None else generator.device
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=device).item())
        return ensemble_attack(
            model,
            images,
            labels,
            cfg.eps,
            budget=cfg.budget,
            components=cfg.components,
            seed=seed,
            timings=timings,
        ).adv.to(images.dtype)
    best = _restarts(model, images, labels, cfg, generator)
    check_budget(
        best, images, cfg.eps, attack=cfg.kind, norm="l2" if cfg.kind == "pgd_l2" else "linf"
    )
    return best


def _restarts(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: AttackConfig,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """PGD, FGSM or ℓ2 PGD with ``cfg.restarts``: per image the fooling, else the worst, run."""
    with torch.enable_grad(), eval_mode(model):
        best = _one_run(model, images, labels, cfg, generator)
        if cfg.restarts == 1:
            return best
        with torch.no_grad():
            logits = model(best)
        best_loss, best_fooled = ascent_objective(logits, labels), _fooled(logits, labels)
        for _ in range(cfg.restarts - 1):
            if logits.ndim == 2 and bool(best_fooled.all()):
                break
            candidate = _one_run(model, images, labels, cfg, generator)
            with torch.no_grad():
                logits = model(candidate)
            loss, fooled = ascent_objective(logits, labels), _fooled(logits, labels)
            better = (fooled & ~best_fooled) | ((fooled == best_fooled) & (loss > best_loss))
            best = torch.where(better.view(-1, *([1] * (images.ndim - 1))), candidate, best)
            best_loss = torch.where(better, loss, best_loss)
            best_fooled = best_fooled | fooled
    return best
