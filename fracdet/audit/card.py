"""The audit's verdict on each audited model's card.

After ``metrics.json`` is written, every audited classifier's card (and the detector's) gets
an ``audit`` section: the attack and clean vs attacked accuracy (with the attack checks'
verdict), coverage of the fracture boxes per attribution method against a random map, and
which methods pass the randomisation sanity check. Read-modify-write: what the card held
(training, evaluations, exports) is kept; a folder without a card (a checkpoint from before
cards) gets one built from its files. A model folder that cannot be written (read-only) only
logs a warning: the audit's own outputs are complete either way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fracdet.audit.answer import answer, attack_name, clean_coverage, headline, sane_methods
from fracdet.audit.schema import AuditSchema
from fracdet.errors import FracdetError
from fracdet.report.model_card import (
    AuditSection,
    MethodLocalisation,
    estimate,
    model_file,
    now,
    try_update_model_card,
)
from fracdet.report.tables import ci_cell

__all__ = ["classifier_audit_section", "detector_audit_section", "update_audited_cards"]

logger = logging.getLogger(__name__)

# what a model folder that moved, or an old checkpoint, can raise while its card is built
_CARD_PROBLEMS = (FracdetError, OSError, KeyError, TypeError, ValueError)


def _attack_text(config: Mapping[str, Any]) -> str:
    space = config.get("eps_space", "pixel")
    return f"{attack_name(config)}, ε = {config['eps']} ({space}), {config.get('steps')} steps"


def _check(metrics: Mapping[str, Any], key: str, model: str) -> Mapping[str, Any] | None:
    result = (metrics.get("checks") or {}).get(key, {}).get(model)
    return None if not result or result.get("skipped") else result


def classifier_audit_section(
    metrics: Mapping[str, Any], model: str, out: Path, *, date: str | None = None
) -> AuditSection:
    """The card's ``audit`` section for classifier ``model`` of an audit's ``metrics``."""
    config = metrics["provenance"]["config"]
    rob = metrics["robustness"].get(model, {})
    loc = metrics["localization"].get(model, {})
    schema = AuditSchema.from_metrics(metrics)
    coverage_key = schema.coverage().key
    baseline = (metrics.get("baselines") or {}).get(model, {}).get(coverage_key)
    sane = sane_methods(metrics, model)
    attacks = _check(metrics, "attacks", model)
    methods = []
    for code, _ in clean_coverage(metrics, model):
        clean = loc.get(schema.localization_key(code, "clean"), {}).get(coverage_key) or {}
        attacked = loc.get(schema.localization_key(code, "pgd"), {}).get(coverage_key) or {}
        methods.append(
            MethodLocalisation(
                method=code,
                coverage_clean=estimate(clean.get("mean"), clean.get("ci95"), clean.get("n")),
                coverage_attacked=estimate(
                    attacked.get("mean"), attacked.get("ci95"), attacked.get("n")
                ),
                random_baseline=baseline,
                sanity="not run" if sane is None else "pass" if code in sane[0] else "fail",
            )
        )
    verdict = next(
        (h.removeprefix(f"{model}: ") for h in headline(metrics) if h.startswith(f"{model}: ")),
        "",
    )
    return AuditSection(
        date=date or now(),
        report=str(Path(out).resolve() / "report.html"),
        verdict=verdict,
        answer=answer(metrics),
        n_images=int(metrics.get("n_images", 0)),
        data_hash=metrics["provenance"].get("data_hash"),
        role="classifier",
        attack=_attack_text(config),
        clean_accuracy=estimate(
            rob.get("clean_accuracy"), rob.get("clean_accuracy_ci95"), rob.get("n")
        )
        if rob.get("clean_accuracy") is not None
        else None,
        attacked_accuracy=estimate(
            rob.get("pgd_accuracy"), rob.get("pgd_accuracy_ci95"), rob.get("n")
        )
        if rob.get("pgd_accuracy") is not None
        else None,
        flip_rate=estimate(rob.get("flip_rate"), rob.get("flip_rate_ci95"), rob.get("n")),
        attack_trusted=None if attacks is None else bool(attacks.get("trusted", True)),
        attack_checks_failed=tuple(attacks.get("failed", [])) if attacks else (),
        coverage_percentile=float(metrics["focus_percentile"]),
        localisation=tuple(methods),
        sanity_passed=None if sane is None else tuple(sane[0]),
        sanity_failed=None if sane is None else tuple(sane[1]),
    )


def detector_audit_section(
    metrics: Mapping[str, Any], out: Path, *, date: str | None = None
) -> AuditSection:
    """The detector's ``audit`` section: its own ℓ∞ attack check when it ran, else where the
    audit used it (the classifiers' comparison boxes)."""
    config = metrics["provenance"]["config"]
    results = {
        m: r
        for m, r in ((metrics.get("checks") or {}).get("detector_attack") or {}).items()
        if "skipped" not in r
    }
    details: dict[str, Any] = {}
    verdict = (
        "used as the audit's detector (boxes compared with the attributions of "
        + ", ".join(metrics["models"])
        + "); its own attack check did not run"
    )
    if results:
        first = next(iter(results.values()))
        clean, own = first["clean"], first["own"]
        verdict = (
            f"mAP@0.5 {ci_cell(clean['map_50'], clean.get('map_50_ci95'))} clean → "
            f"{ci_cell(own['map_50'], own.get('map_50_ci95'))} under its own ℓ∞ PGD at "
            f"ε = {first['eps'] * 255:.3g}/255 ({first['n_images']} images)"
        )
        for model, r in results.items():
            for cond in ("clean", "own", "transfer"):
                n = r.get(cond) or {}
                label = f"transfer from {model}" if cond == "transfer" else cond
                details[f"mAP@0.5, {label}"] = ci_cell(n.get("map_50"), n.get("map_50_ci95"))
    return AuditSection(
        date=date or now(),
        report=str(Path(out).resolve() / "report.html"),
        verdict=verdict,
        answer=answer(metrics),
        n_images=int(metrics.get("n_images", 0)),
        data_hash=metrics["provenance"].get("data_hash"),
        role="detector",
        attack=_attack_text(config),
        details=details,
    )


def update_audited_cards(out: Path, metrics: Mapping[str, Any]) -> None:
    """Put the audit's verdict on the card of every model it audited (warn and go on)."""
    from fracdet.cls.card import card_from_classifier_checkpoint
    from fracdet.cls.checkpoint import resolve_checkpoint

    date = now()
    provenance = metrics["provenance"]
    for model in metrics["models"]:
        identity = provenance["classifiers"].get(model) or {}
        try:
            weights, _ = resolve_checkpoint(identity["path"])
            try_update_model_card(
                weights.parent,
                create=lambda w=weights: card_from_classifier_checkpoint(w),
                weights=model_file(weights),
                audit=classifier_audit_section(metrics, model, out, date=date),
            )
        except _CARD_PROBLEMS as exc:  # a card must never cost the audit its result
            logger.warning("model card of %s not updated: %s", model, exc)
    detector = provenance.get("detector")
    if detector:
        from fracdet.det.card import card_from_detector_weights

        path = Path(detector["path"])
        try:
            section = detector_audit_section(metrics, out, date=date)
            try_update_model_card(
                path.parent,
                create=lambda: card_from_detector_weights(
                    path,
                    class_names=detector.get("class_names"),
                    image_size=provenance["config"].get("det_imgsz"),
                ),
                weights=model_file(path),
                audit=section,
            )
        except _CARD_PROBLEMS as exc:
            logger.warning("model card of the detector %s not updated: %s", path, exc)
