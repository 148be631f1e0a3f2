"""Adversarial attacks and robust-training losses on pixel-space inputs in [0, 1]."""

from fracdet.robust.pgd import (
    PGDConfig,
    classification_loss,
    eval_mode,
    mean_classification_loss,
    pgd_attack,
    trades_loss,
)

__all__ = ["PGDConfig", "pgd_attack", "trades_loss", "classification_loss", "mean_classification_loss", "eval_mode"]
