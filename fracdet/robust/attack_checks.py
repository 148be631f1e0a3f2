"""Can this robustness number be trusted? The attacks checked against themselves.

One white-box attack can report robustness a model does not have: shattered, stochastic or
vanishing gradients stop it while the decision stays easy to flip (Athalye et al. 2018,
"Obfuscated gradients give a false sense of security"). Carlini et al. 2019 ("On evaluating
adversarial robustness") list the symptoms; :func:`run_attack_checks` measures them on one
classifier and its labelled images, each line pass or warn with its numbers:

- ``monotone``: accuracy falls, within noise, as ε grows (PGD and the ensemble);
- ``large-eps``: both reach about 0 at the largest ε (an unbounded attack must win);
- ``black-box``: Square fools no more images that every white-box attack missed than noise;
- ``convergence``: more iterations and restarts (PGD, APGD) lower accuracy by less than noise;
- ``pgd-vs-ensemble``: the ensemble finds no more than noise that PGD missed;
- ``fgsm``: one step is not stronger than PGD;
- ``zero-gradient``: no image has an exactly zero input gradient;
- ``deterministic``: two forward passes give the same logits (no randomised defence).

"Noise" is ``tolerance`` (a share of the images), at least one image.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from fracdet.errors import ConfigError
from fracdet.robust.attacks import AttackConfig, ascent_objective, attack, parse_eps
from fracdet.robust.ensemble import (
    ATTACK_BUDGETS,
    BUDGETS,
    ENSEMBLE_ATTACKS,
    EnsembleBudget,
    EnsembleResult,
    ensemble_attack,
)
from fracdet.robust.masking import straight_through
from fracdet.robust.pgd import eval_mode

__all__ = [
    "ATTACK_CHECK_NAMES",
    "DEFAULT_CHECK_EPS",
    "AttackCheckConfig",
    "parse_check_eps",
    "run_attack_checks",
]

#: Every line of the table, in order.
ATTACK_CHECK_NAMES = (
    "monotone",
    "large-eps",
    "black-box",
    "convergence",
    "pgd-vs-ensemble",
    "bpda",
    "fgsm",
    "zero-gradient",
    "deterministic",
)
#: The ε curve: the usual budgets, then one no defence survives (64 grey levels).
DEFAULT_CHECK_EPS = ("0", "1/255", "2/255", "4/255", "8/255", "16/255", "64/255")


def parse_check_eps(values: Sequence[str | float]) -> tuple[float, ...]:
    """The ε curve from numbers or strings such as ``"4/255"`` (:func:`parse_eps`)."""
    return tuple(parse_eps(v) for v in values)


# two forward passes may differ by float reassociation only
_DETERMINISM_RTOL = 1e-5


@dataclass(frozen=True)
class AttackCheckConfig:
    """The ε curve, the audit's PGD (its ε is where the single-ε checks run), the ensemble's
    budget, the noise ``tolerance`` (share of images) and the seed."""

    eps: tuple[float, ...] = parse_check_eps(DEFAULT_CHECK_EPS)
    pgd: AttackConfig = field(default_factory=AttackConfig)
    budget: str = "quick"
    tolerance: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        eps = tuple(sorted(float(e) for e in self.eps))
        if len(eps) < 2 or len(set(eps)) < len(eps) or not all(0 <= e <= 1 for e in eps):
            raise ConfigError(
                f"attack check eps: two or more distinct budgets in [0, 1], got {eps}"
            )
        object.__setattr__(self, "eps", eps)
        if self.budget not in ATTACK_BUDGETS:
            raise ConfigError(f"attack check budget must be one of {', '.join(ATTACK_BUDGETS)}")
        if not 0 < self.tolerance < 1:
            raise ConfigError(f"attack check tolerance must be in (0, 1), got {self.tolerance}")
        if self.pgd.kind != "pgd" or self.pgd.eps_space != "pixel" or self.pgd.eps <= 0:
            raise ConfigError("attack checks need an l-inf PGD config with eps > 0 in pixel space")


def _pgd_at(cfg: AttackConfig, eps: float) -> AttackConfig:
    """The audit's PGD at another ε: same steps and restarts, step size scaled with ε."""
    return replace(cfg, eps=eps, step_size=cfg.step_size * eps / cfg.eps)


def _wrong(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    with torch.no_grad(), eval_mode(model):
        logits = model(images).float()
    predicted = (logits > 0).long() if logits.ndim == 1 else logits.argmax(dim=1)
    return (predicted != labels).cpu().numpy()


def _line(name: str, ok: bool, value: float, limit: float, detail: str) -> dict[str, Any]:
    return {
        "check": name,
        "status": "pass" if ok else "warn",
        "value": round(float(value), 6),
        "limit": round(float(limit), 6),
        "detail": detail,
    }


def _zero_gradient_share(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of images whose margin has an exactly zero input gradient."""
    x = images.detach().clone().requires_grad_(True)
    with torch.enable_grad(), eval_mode(model):
        (grad,) = torch.autograd.grad(ascent_objective(model(x), labels).sum(), x)
    return float((grad.flatten(1).abs().amax(dim=1) == 0).float().mean())


def _determinism(model: nn.Module, images: torch.Tensor) -> float:
    """Largest logit difference between two passes, relative to the logits' scale."""
    with torch.no_grad(), eval_mode(model):
        first, second = model(images).float(), model(images).float()
    return float((first - second).abs().max() / (1 + first.abs().max()))


def run_attack_checks(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: AttackCheckConfig = AttackCheckConfig(),
) -> dict[str, Any]:
    """Every check on ``images`` ``(N, C, H, W)`` in [0, 1] with class ``labels``: the ε curve
    (correct counts: PGD's, the ensemble's after each of its attacks in turn, its worst case),
    the table's lines, ``trusted`` and the ``failed`` names.

    The curve runs ℓ∞ PGD (the audit's steps, step size scaled with ε) and the ensemble in
    AutoAttack's sequential protocol (each attack on the images the ones before it left: the
    same worst case, ``autoattack``, for a fraction of the work); at the audit's ε
    (``cfg.pgd.eps``), where the single-ε checks compare attacks one by one, every attack runs
    on every image.
    """
    images, labels = images.detach(), labels.detach().long().to(images.device)
    n = len(images)
    if n == 0:
        raise ConfigError("the attack checks need at least one image")
    generator = torch.Generator().manual_seed(cfg.seed)
    limit = max(cfg.tolerance, 1 / n)
    seconds: dict[str, float] = {}
    wrong_clean = _wrong(model, images, labels)
    curve_names = ["pgd", "pgd-bpda", *ENSEMBLE_ATTACKS, "autoattack", "worst"]
    correct: dict[str, list[int]] = {name: [] for name in curve_names}
    # per ε: images Square fools that PGD and every white-box ensemble attack missed
    square_only: list[int] = []
    ran: dict[float, tuple[np.ndarray, EnsembleResult]] = {}  # PGD's and the ensemble's, per ε
    bpda: dict[float, np.ndarray] = {}  # the images PGD with straight-through gradients fooled
    started = time.perf_counter()
    for eps in cfg.eps:
        if eps == 0:
            for name in curve_names:
                correct[name].append(int((~wrong_clean).sum()))
            square_only.append(0)
            continue
        adv = attack(model, images, labels, _pgd_at(cfg.pgd, eps), generator=generator)
        pgd_fooled = wrong_clean | _wrong(model, adv, labels)
        with straight_through():  # BPDA through fracdet's input quantisation, if the model has it
            adv = attack(model, images, labels, _pgd_at(cfg.pgd, eps), generator=generator)
        bpda_fooled = wrong_clean | _wrong(model, adv, labels)
        bpda[eps] = bpda_fooled
        # AutoAttack's sequential protocol along the curve (each attack on what the ones before
        # it left: the same worst case for much less work); every attack on every image at the
        # audit's ε only, where the single-ε checks compare attacks one by one
        result = ensemble_attack(
            model,
            images,
            labels,
            eps,
            budget=cfg.budget,
            independent=eps == cfg.pgd.eps,
            seed=cfg.seed,
        )
        correct["pgd"].append(int((~pgd_fooled).sum()))
        fooled_so_far = wrong_clean.copy()
        for name in ENSEMBLE_ATTACKS:  # the ensemble's accuracy after each attack in turn
            fooled_so_far |= result.fooled[name]
            correct[name].append(int((~fooled_so_far).sum()))
        correct["autoattack"].append(int(result.robust.sum()))
        correct["pgd-bpda"].append(int((~bpda_fooled).sum()))
        correct["worst"].append(int((result.robust & ~pgd_fooled & ~bpda_fooled).sum()))
        white = pgd_fooled.copy()
        for name in ENSEMBLE_ATTACKS[:-1]:
            white |= result.fooled[name]
        square_only.append(int((result.fooled["square"] & ~white & ~wrong_clean).sum()))
        ran[eps] = (pgd_fooled, result)
    seconds["curve"] = time.perf_counter() - started

    accuracy = {name: [c / n for c in counts] for name, counts in correct.items()}
    lines = []
    rises = {
        name: float(np.diff(accuracy[name]).max(initial=0.0)) for name in ("pgd", "autoattack")
    }
    lines.append(
        _line(
            "monotone",
            max(rises.values()) <= limit,
            max(rises.values()),
            limit,
            f"largest rise of accuracy between consecutive ε: PGD {rises['pgd']:.3f}, "
            f"ensemble {rises['autoattack']:.3f}",
        )
    )
    top = {name: accuracy[name][-1] for name in ("pgd", "autoattack")}
    lines.append(
        _line(
            "large-eps",
            max(top.values()) <= limit,
            max(top.values()),
            limit,
            f"accuracy at ε={cfg.eps[-1] * 255:.0f}/255: PGD {top['pgd']:.3f}, "
            f"ensemble {top['autoattack']:.3f}",
        )
    )
    worst = int(np.argmax(square_only))
    lines.append(
        _line(
            "black-box",
            square_only[worst] / n <= limit,
            square_only[worst] / n,
            limit,
            f"share of images only Square fools: {square_only[worst] / n:.3f} at "
            f"ε={cfg.eps[worst] * 255:.0f}/255"
            if square_only[worst]
            else "Square fools no image that PGD and every white-box attack missed, at any ε",
        )
    )

    # the single-ε checks, at the audit's budget
    eps = cfg.pgd.eps
    started = time.perf_counter()
    if eps not in ran:  # the curve ran the audit's PGD and the ensemble at its ε already
        base_adv = attack(model, images, labels, cfg.pgd, generator=generator)
        ran[eps] = (
            wrong_clean | _wrong(model, base_adv, labels),
            ensemble_attack(
                model, images, labels, eps, budget=cfg.budget, independent=True, seed=cfg.seed
            ),
        )
    pgd_fooled, full = ran[eps]
    pgd_acc = 1 - float(pgd_fooled.mean())
    strong = replace(cfg.pgd, steps=cfg.pgd.steps * 4, restarts=cfg.pgd.restarts + 1)
    strong_adv = attack(model, images, labels, strong, generator=generator)
    strong_acc = 1 - float((wrong_clean | _wrong(model, strong_adv, labels)).mean())
    plan = BUDGETS[cfg.budget]
    longer = EnsembleBudget(plan.iterations * 2, plan.restarts + 1, plan.queries)
    apgd = [
        full.accuracy("apgd-margin"),
        ensemble_attack(
            model, images, labels, eps, budget=longer, components=("apgd-margin",), seed=cfg.seed
        ).accuracy(),
    ]
    drop = max(pgd_acc - strong_acc, apgd[0] - apgd[1])
    lines.append(
        _line(
            "convergence",
            drop <= limit,
            drop,
            limit,
            f"PGD {cfg.pgd.steps}→{strong.steps} steps, {cfg.pgd.restarts}→{strong.restarts} "
            f"restarts: {pgd_acc:.3f}→{strong_acc:.3f}; APGD-margin {plan.iterations}→"
            f"{plan.iterations * 2} iterations, {plan.restarts}→{plan.restarts + 1} restarts: "
            f"{apgd[0]:.3f}→{apgd[1]:.3f}",
        )
    )
    gap = pgd_acc - full.accuracy()
    lines.append(
        _line(
            "pgd-vs-ensemble",
            gap <= limit,
            gap,
            limit,
            f"at ε={eps * 255:.0f}/255: PGD {pgd_acc:.3f}, ensemble {full.accuracy():.3f}",
        )
    )
    if eps not in bpda:
        with straight_through():
            adv = attack(model, images, labels, cfg.pgd, generator=generator)
        bpda[eps] = wrong_clean | _wrong(model, adv, labels)
    bpda_acc = 1 - float(bpda[eps].mean())
    lines.append(
        _line(
            "bpda",
            pgd_acc - bpda_acc <= limit,
            pgd_acc - bpda_acc,
            limit,
            f"at ε={eps * 255:.0f}/255: PGD {pgd_acc:.3f}, PGD through the input quantisation's "
            f"straight-through gradient (BPDA) {bpda_acc:.3f}",
        )
    )
    worst_acc = float((full.robust & ~pgd_fooled & ~bpda[eps]).mean())
    fgsm_adv = attack(model, images, labels, replace(cfg.pgd, kind="fgsm"), generator=generator)
    fgsm_acc = 1 - float((wrong_clean | _wrong(model, fgsm_adv, labels)).mean())
    lines.append(
        _line(
            "fgsm",
            pgd_acc - fgsm_acc <= limit,
            pgd_acc - fgsm_acc,
            limit,
            f"at ε={eps * 255:.0f}/255: FGSM {fgsm_acc:.3f}, PGD {pgd_acc:.3f}",
        )
    )
    seconds["single_eps"] = time.perf_counter() - started
    zero = _zero_gradient_share(model, images, labels)
    lines.append(_line("zero-gradient", zero == 0, zero, 0.0, f"{zero:.3f} of images have ∇x = 0"))
    spread = _determinism(model, images)
    lines.append(
        _line(
            "deterministic",
            spread <= _DETERMINISM_RTOL,
            spread,
            _DETERMINISM_RTOL,
            f"two passes differ by {spread:.2e} of the logits' scale",
        )
    )
    failed = [line["check"] for line in lines if line["status"] != "pass"]
    return {
        "n": n,
        "eps": list(cfg.eps),
        "at_eps": eps,
        "budget": cfg.budget,
        "tolerance": limit,
        "correct": correct,
        "accuracy": accuracy,
        "square_only": square_only,
        "ensemble_at_eps": full.summary(),
        "worst_at_eps": worst_acc,
        "lines": lines,
        "trusted": not failed,
        "failed": failed,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
    }
