"""The audit's answer: at most three sentences, each worded from numbers the audit checked.

One sentence per question, every classifier in it: does the attack hold (and can its number be
trusted: the attacks check), where do the attributions look (only methods that pass the
randomisation sanity check, each named, never an average over methods), and does removing the
fracture remove the call (the causal box test, no attribution at all). The tables below the
answer hold the numbers behind it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fracdet.audit.check_causal import DETECTOR, GT
from fracdet.audit.schema import AuditSchema
from fracdet.report import ci_cell, number_cell

__all__ = ["answer", "attack_name", "headline", "clean_coverage", "sane_methods"]


def _mean(entry: Mapping[str, Any] | None) -> float | None:
    return None if not entry else entry.get("mean")


def clean_coverage(metrics: Mapping[str, Any], model: str) -> list[tuple[str, float | None]]:
    """Per method: mean coverage at the focus percentile on clean inputs (``None``: not scored)."""
    schema = AuditSchema.from_metrics(metrics)
    loc = metrics["localization"].get(model, {})
    key = schema.coverage().key
    return [
        (code, _mean(loc.get(schema.localization_key(code, "clean"), {}).get(key)))
        for code in schema.methods
    ]


def _check(metrics: Mapping[str, Any], key: str, model: str) -> Mapping[str, Any] | None:
    result = (metrics.get("checks") or {}).get(key, {}).get(model)
    return None if not result or result.get("skipped") else result


def sane_methods(metrics: Mapping[str, Any], model: str) -> tuple[list[str], list[str]] | None:
    """``(passed, failed)`` method codes of the randomisation check; ``None``: it did not run."""
    result = _check(metrics, "sanity", model)
    if result is None:
        return None
    return list(result.get("passed", [])), list(result.get("failed", []))


def headline(metrics: Mapping[str, Any]) -> list[str]:
    """One short phrase per classifier: accuracy clean -> attacked, coverage per method."""
    focus = metrics["focus_percentile"]
    parts = []
    for model in metrics["models"]:
        rob = metrics["robustness"].get(model, {})
        text = f"{model}: "
        if rob.get("clean_accuracy") is not None:
            text += f"acc {rob['clean_accuracy']:.3f} -> attacked {rob['pgd_accuracy']:.3f}"
        else:
            text += f"the attack flips {number_cell(rob.get('flip_rate'))} of predictions"
        sane = sane_methods(metrics, model)
        covs = [
            (c, v)
            for c, v in clean_coverage(metrics, model)
            if v is not None and (sane is None or c in sane[0])
        ]
        if covs:
            text += f", coverage@{focus:g} " + " ".join(f"{c} {v:.2f}" for c, v in covs)
        if sane is not None and sane[1]:
            text += f" (failing the sanity check: {', '.join(sane[1])})"
        parts.append(text)
    return parts


def attack_name(config: Mapping[str, Any]) -> str:
    """The attack behind the audit's attacked ("pgd") columns, as the report names it."""
    names = {"pgd": "ℓ∞ PGD", "fgsm": "FGSM", "pgd_l2": "ℓ2 PGD", "autoattack": "AutoAttack"}
    return names.get(config["attack"], config["attack"])


def _robustness_sentence(metrics: Mapping[str, Any]) -> str | None:
    parts, untrusted = [], []
    for model in metrics["models"]:
        rob = metrics["robustness"].get(model, {})
        if rob.get("clean_accuracy") is not None:
            parts.append(f"{model} {rob['clean_accuracy']:.2f} → {rob['pgd_accuracy']:.2f}")
        elif rob.get("flip_rate") is not None:
            parts.append(f"{model} flips {rob['flip_rate']:.0%} of its answers")
        checked = _check(metrics, "attacks", model)
        if checked is not None and not checked.get("trusted", True):
            untrusted.append(f"{model} ({', '.join(checked.get('failed', []))})")
    if not parts:
        return None
    config = metrics["provenance"]["config"]
    attack = f"{attack_name(config)} at ε = {config['eps']}"
    labelled = all(
        metrics["robustness"].get(m, {}).get("clean_accuracy") is not None
        for m in metrics["models"]
    )
    text = (f"Accuracy clean → under {attack}: " if labelled else f"Under {attack}: ") + "; ".join(
        parts
    )
    if untrusted:
        text += (
            "; the attack checks fail for " + ", ".join(untrusted) + ", so those numbers are not "
            "evidence of robustness"
        )
    return text + "."


def _coverage_sentence(metrics: Mapping[str, Any]) -> str | None:
    focus = metrics["focus_percentile"]
    per_model, failing, unchecked = [], set(), False
    for model in metrics["models"]:
        covs = [(c, v) for c, v in clean_coverage(metrics, model) if v is not None]
        if not covs:
            continue
        sane = sane_methods(metrics, model)
        if sane is None:
            unchecked = True
            kept = covs
        else:
            kept = [(c, v) for c, v in covs if c in sane[0]]
            failing |= set(sane[1])
        per_model.append(
            f"{model} " + (" ".join(f"{c} {v:.2f}" for c, v in kept) if kept else "none passes")
        )
    if not per_model:
        return None
    head = (
        f"Share of the fracture boxes in the top {focus:g}% attributed pixels "
        f"(random map: {focus / 100:.2f})"
    )
    if unchecked:
        head += ", per method, not sanity-checked"
    elif failing:
        head += (
            ", only methods that pass the randomisation check (failing it: "
            + ", ".join(sorted(failing))
            + ")"
        )
    else:
        head += ", every method passing the randomisation check"
    return f"{head}: " + "; ".join(per_model) + "."


def _causal_sentence(metrics: Mapping[str, Any]) -> str | None:
    parts: list[str] = []
    regions: dict[str, list[str]] = {}  # region name -> "model share" per classifier
    for model in metrics["models"]:
        result = _check(metrics, "causal", model)
        if result is None:
            continue
        entries = result.get("regions", {})
        diff = entries.get(GT, {}).get("difference") or {}
        if diff.get("mean_diff") is None:
            continue
        lo, hi = diff.get("ci_low"), diff.get("ci_high")
        p = diff.get("wilcoxon_p")
        parts.append(
            f"{model} {ci_cell(diff['mean_diff'], None if lo is None else (lo, hi))}"
            + ("" if p is None else f" (p {p:.2g})")
        )
        for name, entry in entries.items():
            if name not in (GT, DETECTOR) and entry.get("n"):
                regions.setdefault(name, []).append(f"{model} {entry['flipped']:.0%}")
    if not parts:
        return None
    text = (
        "Removing the fracture boxes lowers the fracture probability more than removing matched "
        "boxes elsewhere by " + "; ".join(parts)
    )
    if regions:
        text += ", while removing " + "; ".join(
            f"the {name} flips the calls of {', '.join(shares)}" for name, shares in regions.items()
        )
    return text + "."


def answer(metrics: Mapping[str, Any]) -> str:
    """The report's first lines: at most three sentences (robustness, where the attributions
    look, the causal test), each with every classifier."""
    sentences: Sequence[str | None] = (
        _robustness_sentence(metrics),
        _coverage_sentence(metrics),
        _causal_sentence(metrics),
    )
    return " ".join(s for s in sentences if s)
