"""Adversarial attacks and robust-training losses on pixel-space inputs in [0, 1]."""

from fracdet.robust.attacks import (
    ATTACK_KINDS,
    EPS_SPACES,
    AttackConfig,
    ascent_objective,
    attack,
    parse_eps,
    per_image_loss,
    pixel_budget,
)
from fracdet.robust.budget import check_budget
from fracdet.robust.ensemble import (
    ATTACK_BUDGETS,
    ENSEMBLE_ATTACKS,
    EnsembleResult,
    ensemble_attack,
)
from fracdet.robust.masking import QuantizedInput
from fracdet.robust.pgd import (
    PGDConfig,
    classification_loss,
    eval_mode,
    mean_classification_loss,
    pgd_attack,
    trades_loss,
)

__all__ = [
    "PGDConfig",
    "pgd_attack",
    "trades_loss",
    "classification_loss",
    "mean_classification_loss",
    "eval_mode",
    "AttackConfig",
    "attack",
    "parse_eps",
    "pixel_budget",
    "per_image_loss",
    "ascent_objective",
    "ATTACK_KINDS",
    "EPS_SPACES",
    "check_budget",
    "ensemble_attack",
    "EnsembleResult",
    "ENSEMBLE_ATTACKS",
    "ATTACK_BUDGETS",
    "QuantizedInput",
]
