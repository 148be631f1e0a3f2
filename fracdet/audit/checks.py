"""Checks of the audit's own instruments, run once per classifier on a fixed subset of images.

The per-image audit measures every image; a check asks whether those measurements can be
trusted (do the attribution maps depend on the model's weights? does a stronger attack find
what PGD missed?) or measures the model without any explainer (the causal box test). Checks
need whole-model work (randomised copies, attack ensembles, imputed images), so they run on a
subset chosen the same way every time: the first ``check_images`` fractured images with a box
in the classifier's frame, and the first ``check_images`` images without a fracture, by index.

A check is a module of this package's registry (:data:`CHECKS`) exposing ``CHECK``, an object
with the :class:`Check` protocol. Its result (JSON) lands in ``checks/{key}/{model}.json``
beside the settings it ran with; a resumed audit keeps a result whose settings are unchanged.
:func:`load_check_results` gives ``metrics.json`` its ``checks[key][model]``, and the report
adds each check's sections. A check that studies the detector sets ``needs_detector = True``:
without ``--det`` it is skipped (no result, no section).
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from fracdet.audit.config import AuditConfig
from fracdet.audit.engine import ClassifierUnderAudit
from fracdet.audit.inputs import AuditItem
from fracdet.audit.store import CHECKS_DIR
from fracdet.data.formats import Box
from fracdet.data.geometry import box_to_model_frame, boxes_mask
from fracdet.errors import ConfigError
from fracdet.fsutil import atomic_write_json
from fracdet.log import progress

__all__ = [
    "CHECKS",
    "CHECKS_DIR",
    "Check",
    "CheckSubject",
    "check_module",
    "check_sections",
    "load_check_results",
    "run_checks",
    "select_check_items",
]

logger = logging.getLogger(__name__)

#: Every check the audit knows, in report order: key -> module holding its ``CHECK``.
CHECKS: dict[str, str] = {
    "sanity": "fracdet.audit.check_sanity",
    "faithfulness": "fracdet.audit.check_faithfulness",
    "causal": "fracdet.audit.check_causal",
    "attacks": "fracdet.audit.check_attacks",
    "detector_attack": "fracdet.audit.check_detector_attack",
}


class Check(Protocol):
    """One check: its key, the settings its result depends on, how to run and show it."""

    key: str

    def validate(self, cfg: AuditConfig) -> None:
        """Optional: refuse bad options or inputs of this check before any model loads."""

    def settings(self, cfg: AuditConfig) -> dict[str, Any]:
        """The options the result depends on (a resumed audit reruns the check when they change)."""

    def run(self, subject: CheckSubject, cfg: AuditConfig) -> dict[str, Any]:
        """The check on one classifier: a JSON-able result (figures as paths relative to the
        audit folder, under ``subject.figures_dir``)."""

    def sections(
        self,
        results: Mapping[str, Mapping[str, Any]],
        metrics: Mapping[str, Any],
        audit_dir: Path,
    ) -> list[Any]:
        """The report's sections (``fracdet.report.Section``) from every model's result
        (``results[model]``, models in ``metrics["models"]`` order; figure paths are relative
        to ``audit_dir``)."""


def check_module(key: str) -> Check:
    """The ``CHECK`` of a registered check."""
    if key not in CHECKS:
        raise ConfigError(f"unknown audit check {key!r}: choose from {', '.join(CHECKS)}")
    return importlib.import_module(CHECKS[key]).CHECK


@dataclass
class CheckSubject:
    """One classifier and the subset of images every check of it runs on.

    Everything is in the classifier's input frame: ``images`` ``(N, 1, S, S)`` in [0, 1] on
    the classifier's device, ground-truth boxes and masks mapped into it, and the detector's
    confident boxes found on the same clean inputs (``None`` without a detector), and the
    loaded detector itself (``None`` without one). ``make_explainers(model)`` builds the
    audit's explainers, with the audit's options, for another model (a randomised copy).
    """

    clf: ClassifierUnderAudit
    items: list[AuditItem]
    images: torch.Tensor
    labels: np.ndarray
    gt_boxes: list[list[Box]]
    gt_masks: list[np.ndarray | None]
    det_boxes: list[list[Box]] | None
    make_explainers: Callable[[torch.nn.Module], dict[str, Any]]
    audit_dir: Path
    seed: int
    detector: Any = None  # the Ultralytics YOLO the audit loaded, or None

    @property
    def name(self) -> str:
        return self.clf.name

    @property
    def figures_dir(self) -> Path:
        """Where a check saves its figures (inside ``checks/``: a shard merge links them)."""
        return self.audit_dir / CHECKS_DIR / "figures"

    def figure_path(self, key: str) -> Path:
        """Where check ``key`` saves this classifier's figure (the name made file-safe)."""
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in self.name)
        return self.figures_dir / f"{key}_{safe}.png"

    def relative(self, path: Path) -> str:
        """``path`` as a check's result stores it: relative to the audit folder."""
        return Path(path).relative_to(self.audit_dir).as_posix()

    def with_boxes(self) -> list[int]:
        """Positions of the fractured images with at least one box pixel in the frame."""
        return [k for k, m in enumerate(self.gt_masks) if m is not None and self.labels[k] == 1]

    def fracture_probability(self, images: torch.Tensor) -> np.ndarray:
        """The classifier's calibrated fracture probability, as the audit computes it."""
        from fracdet.runtime import autocast

        with torch.no_grad(), autocast(self.clf.device, self.clf.precision):
            logits = self.clf.model(images.to(self.clf.device))
        z = logits.float().reshape(len(images), -1)[:, -1]
        return torch.sigmoid(z / self.clf.meta.temperature).cpu().numpy().astype(np.float64)


def select_check_items(items: Sequence[AuditItem], n: int) -> list[AuditItem]:
    """The first ``n`` fractured images with boxes and the first ``n`` without, by index."""
    ordered = sorted((it for it in items if it.label is not None), key=lambda it: it.index)
    fractured = [it for it in ordered if it.label == 1 and it.boxes][:n]
    intact = [it for it in ordered if it.label == 0][:n]
    return sorted(fractured + intact, key=lambda it: it.index)


def _model_frame(boxes: Sequence[Box], item: AuditItem, size: int, keep_aspect: bool) -> list[Box]:
    if not item.width:
        return []
    return [
        box_to_model_frame(b, item.height, item.width, size, keep_aspect=keep_aspect) for b in boxes
    ]


def _detector_boxes(
    detections: Sequence[Mapping[str, Any]], model: str, indices: Sequence[int], conf: float
) -> list[list[Box]]:
    """The detector's confident boxes on each clean input, from the audit's journal."""
    found: dict[int, list[Box]] = {i: [] for i in indices}
    for entry in detections:
        if entry["model"] == model and entry["cond"] == "clean" and entry["index"] in found:
            found[entry["index"]] = [
                Box(*b[:4], label=int(b[4])) for b in entry["boxes"] if b[5] >= conf
            ]
    return [found[i] for i in indices]


def _subject(
    clf: ClassifierUnderAudit,
    items: list[AuditItem],
    cfg: AuditConfig,
    detections: Sequence[Mapping[str, Any]] | None,
    audit_dir: Path,
    detector: Any = None,
) -> CheckSubject | None:
    from fracdet.audit.models import explainers_for
    from fracdet.data.datasets import ClassificationDataset

    size, keep = clf.meta.image_size, clf.meta.keep_aspect
    dataset = ClassificationDataset([it.record() for it in items], size, keep_aspect=keep)
    decoded = [(it, dataset[k][0]) for k, it in enumerate(items)]
    kept = [(it, pixels) for it, pixels in decoded if pixels is not None]
    if not kept:
        return None
    items = [it for it, _ in kept]
    gt = [_model_frame(it.boxes, it, size, keep) for it in items]
    masks = []
    for boxes in gt:
        mask = boxes_mask(boxes, size, size) if boxes else None
        masks.append(mask if mask is not None and mask.any() else None)
    return CheckSubject(
        clf=clf,
        items=items,
        images=torch.stack([pixels for _, pixels in kept]).to(clf.device),
        labels=np.array([it.label for it in items], dtype=np.int64),
        gt_boxes=gt,
        gt_masks=masks,
        det_boxes=None
        if detections is None
        else _detector_boxes(detections, clf.name, [it.index for it in items], cfg.det_conf),
        make_explainers=lambda model: explainers_for(model, clf.meta, cfg),
        audit_dir=audit_dir,
        seed=cfg.seed,
        detector=detector,
    )


def run_checks(
    classifiers: Sequence[ClassifierUnderAudit],
    items: Sequence[AuditItem],
    cfg: AuditConfig,
    audit_dir: Path,
    detections: Sequence[Mapping[str, Any]] | None,
    detector: Any = None,
) -> dict[str, float]:
    """Run ``cfg.checks`` on every classifier; returns the seconds each check took.

    A check with ``needs_detector`` is skipped when the audit has no detector."""
    import time

    chosen = select_check_items(items, cfg.check_images)
    seconds: dict[str, float] = {}
    if not cfg.checks or not chosen:
        return seconds
    for clf in classifiers:
        subject = None
        for key in progress(cfg.checks, f"Checking {clf.name}", total=len(cfg.checks)):
            check = check_module(key)
            if getattr(check, "needs_detector", False) and detector is None:
                continue  # e.g. detector_attack in an audit without --det
            path = audit_dir / CHECKS_DIR / key / f"{clf.name}.json"
            settings = json.loads(json.dumps(check.settings(cfg), default=str))
            settings["items"] = [it.key for it in chosen]
            if path.is_file():
                saved = json.loads(path.read_text(encoding="utf-8"))
                if saved.get("settings") == settings:
                    continue  # a resumed audit: this result was made with the same settings
            if subject is None:
                subject = _subject(clf, chosen, cfg, detections, audit_dir, detector)
                if subject is None:
                    logger.warning("no image of the check subset could be read: checks skipped")
                    return seconds
            started = time.perf_counter()
            result = check.run(subject, cfg)
            seconds[f"check:{key}"] = seconds.get(f"check:{key}", 0.0) + (
                time.perf_counter() - started
            )
            atomic_write_json(path, {"settings": settings, "result": result})
    return {k: round(v, 3) for k, v in seconds.items()}


def load_check_results(audit_dir: Path, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{check: {model: result}}`` for the checks saved in an audit folder, in ``keys`` order."""
    results: dict[str, dict[str, Any]] = {}
    for key in keys:
        folder = Path(audit_dir) / CHECKS_DIR / key
        if folder.is_dir():
            results[key] = {
                path.stem: json.loads(path.read_text(encoding="utf-8"))["result"]
                for path in sorted(folder.glob("*.json"))
            }
    return results


def check_sections(metrics: Mapping[str, Any], audit_dir: Path) -> list[Any]:
    """Every saved check's report sections, in registry order."""
    sections: list[Any] = []
    for key, results in (metrics.get("checks") or {}).items():
        ordered = {m: results[m] for m in metrics["models"] if m in results}
        sections += check_module(key).sections(ordered, metrics, Path(audit_dir))
    return sections
