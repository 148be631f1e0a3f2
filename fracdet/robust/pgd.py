"""ℓ∞ PGD (Madry et al. 2018) and the TRADES loss (Zhang et al. 2019) on pixel-space inputs.

Models take images in [0, 1] (invariant 1), so ``eps = 4/255`` is four grey levels of an
8-bit image. The same attack serves adversarial training and the audit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "PGDConfig",
    "pgd_attack",
    "classification_loss",
    "mean_classification_loss",
    "trades_loss",
    "eval_mode",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class PGDConfig:
    """ℓ∞ budget ``eps``, ``steps`` iterations of ``step_size``; defaults: ε=4/255, 10 × 1/255."""

    eps: float = 4 / 255
    steps: int = 10
    step_size: float = 1 / 255
    random_start: bool = True

    def __post_init__(self) -> None:
        if self.eps < 0 or self.steps < 0 or self.step_size <= 0:
            raise ValueError(f"PGD needs eps >= 0, steps >= 0 and step_size > 0, got {self}")


def classification_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary (one logit per image) or multi-class cross-entropy, summed over the batch.

    Summed rather than averaged so each image's gradient does not shrink with batch size.
    """
    if logits.ndim == 1:
        return F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="sum")
    return F.cross_entropy(logits.float(), target.long(), reduction="sum")


def mean_classification_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """:func:`classification_loss` averaged over the batch (the usual training criterion)."""
    return classification_loss(logits, target) / max(len(target), 1)


class eval_mode:  # noqa: N801 - used like torch.no_grad
    """Run a block with the model in eval mode (BatchNorm statistics frozen), then restore."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.was_training = model, model.training

    def __enter__(self) -> nn.Module:
        self.model.eval()
        return self.model

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def pgd_attack(
    model: nn.Module,
    images: torch.Tensor,
    target: torch.Tensor,
    config: PGDConfig = PGDConfig(),
    *,
    loss_fn: LossFn = classification_loss,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Adversarial images within ``eps`` of ``images`` (ℓ∞) that increase ``loss_fn``.

    The model runs in eval mode during the attack so BatchNorm statistics are not updated
    by adversarial batches; parameters' gradients are left untouched.
    """
    images = images.detach()
    if config.eps == 0 or config.steps == 0:
        return images.clone()
    delta = torch.zeros_like(images)
    if config.random_start:
        noise = torch.rand(
            images.shape,
            generator=generator,
            device="cpu" if generator is None else generator.device,
            dtype=images.dtype,
        )
        delta = (noise.to(images.device) * 2 - 1) * config.eps
    adv = (images + delta).clamp_(0, 1)
    with eval_mode(model):
        for _ in range(config.steps):
            adv.requires_grad_(True)
            loss = loss_fn(model(adv), target)
            (grad,) = torch.autograd.grad(loss, adv)
            adv = adv.detach() + config.step_size * grad.sign()
            adv = torch.min(torch.max(adv, images - config.eps), images + config.eps).clamp_(0, 1)
    return adv.detach()


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    """Log-probabilities over classes; a single fracture logit becomes two Bernoulli classes."""
    if logits.ndim == 1:
        logits = torch.stack([torch.zeros_like(logits), logits], dim=1)
    return F.log_softmax(logits.float(), dim=1)


def trades_loss(
    model: nn.Module,
    images: torch.Tensor,
    target: torch.Tensor,
    config: PGDConfig = PGDConfig(),
    *,
    beta: float = 6.0,
    natural_loss: LossFn = mean_classification_loss,
    generator: torch.Generator | None = None,
    attack_model: nn.Module | None = None,
) -> torch.Tensor:
    """TRADES: natural loss + β·KL(p(x) ‖ p(x')), x' the PGD maximiser of that KL (mean over batch).

    The inner maximisation starts from a small random perturbation (0.001 · N(0, 1)) as in
    the reference implementation. ``attack_model`` (default ``model``) generates x'; pass
    the plain module when ``model`` is wrapped in DDP.
    """
    attack_model = attack_model or model
    with eval_mode(attack_model), torch.no_grad():
        clean_log_p = _log_probs(attack_model(images)).detach()

    def kl_to_clean(logits: torch.Tensor, _target: torch.Tensor) -> torch.Tensor:
        return F.kl_div(_log_probs(logits), clean_log_p, reduction="sum", log_target=True)

    start = images + 0.001 * torch.randn(images.shape, generator=generator).to(images)
    adv = pgd_attack(
        attack_model,
        start.clamp(0, 1),
        target,
        PGDConfig(config.eps, config.steps, config.step_size, random_start=False),
        loss_fn=kl_to_clean,
    )
    # project back around the clean images: the start point was jittered
    adv = torch.min(torch.max(adv, images - config.eps), images + config.eps).clamp_(0, 1)
    # one forward over both halves: DDP allows a single forward per backward
    logits_clean, logits_adv = model(torch.cat([images, adv])).split(len(images))
    robust = F.kl_div(
        _log_probs(logits_adv), _log_probs(logits_clean), reduction="batchmean", log_target=True
    )
    return natural_loss(logits_clean, target) + beta * robust
