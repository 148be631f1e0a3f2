"""The detector attacked directly: its numbers on clean, transferred and its own PGD inputs.

The per-image audit tests the detector by transfer only (the classifier's PGD images). A
reviewer asks what a white-box attack on the detector itself does within the same ε. This
check runs :func:`fracdet.det.attack.attack_detector` on the check subset's pixels (the
classifier's input frame, the pixels the audit feeds the detector) and scores the detector
the same way on three inputs: clean, the classifier's PGD images (transfer, attacked as the
audit's engine does) and its own attack. Numbers: COCO mAP@0.5 (pycocotools; boxes and ground
truth in the input frame, where IoU is the same as in the original frame), box recall at the
operating threshold ``det_conf`` (IoU 0.5) and the image-level AUROC (best box score as the
image score), with bootstrap / Wilson 95% CIs.

The detector's own attack depends on the input frame alone, not the classifier: a classifier
whose frame (size, aspect mode), ε, subset and settings match one already checked reuses that
result's clean and own-attack numbers, so the attack runs once per distinct frame.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fracdet.audit.checks import CheckSubject
from fracdet.audit.config import AuditConfig
from fracdet.audit.store import CHECKS_DIR
from fracdet.data.formats import Box

__all__ = ["CHECK", "KEY", "LOSS_SENTENCES", "detector_numbers"]

logger = logging.getLogger(__name__)

KEY = "detector_attack"
#: What the report says about each objective: which loss, and why.
LOSS_SENTENCES = {
    "scores": (
        "Own attack: ℓ∞ PGD on the detector's fracture confidences in its raw head output "
        "(before NMS), through the letterbox, in the pixels the audit feeds it: on fractured "
        "images it lowers the sum of the confidences above {floor} (a vanishing attack), on "
        "intact ones it raises the best one, pushing each image away from its label as the "
        "classifier's attack does. This loss, rather than Ultralytics' training loss, because "
        "it moves exactly what these numbers read (box scores and the best box score) and "
        "spends no step on box regression."
    ),
    "detection": (
        "Own attack: ℓ∞ PGD maximising Ultralytics' own detection loss (v8DetectionLoss: box "
        "IoU, class BCE and DFL) against the ground-truth boxes, through the letterbox, in the "
        "pixels the audit feeds the detector."
    ),
}
#: The inputs scored, in the table's order within a frame.
CONDITIONS = ("clean", "own", "transfer")
_LABELS = {"clean": "clean", "transfer": "transfer (classifier's PGD)", "own": "own attack"}


def _records(subject: CheckSubject) -> list[Any]:
    """The subset as ImageRecords in the input frame (ground truth for pycocotools)."""
    from fracdet.data.formats import ImageRecord

    size = int(subject.images.shape[-1])
    return [
        ImageRecord(it.key, Path(it.path), size, size, int(y), tuple(boxes))
        for it, y, boxes in zip(subject.items, subject.labels, subject.gt_boxes, strict=True)
    ]


def detector_numbers(
    found: Sequence[tuple[list[Box], list[float]]],
    gt_boxes: Sequence[Sequence[Box]],
    labels: np.ndarray,
    records: Sequence[Any],
    class_names: Sequence[str],
    *,
    conf: float,
    n_boot: int,
    seed: int,
    map_ci: bool = False,
) -> dict[str, Any]:
    """mAP@0.5, box recall at ``conf`` and image AUROC (best box score) of one input condition.

    ``found[k]`` are image ``k``'s boxes and scores (down to the mAP floor), ``gt_boxes[k]``
    its ground truth in the same frame, ``labels[k]`` 1 for fractured. CIs: Wilson for recall,
    ``n_boot`` bootstrap replicates for AUROC, and for mAP when ``map_ci`` (pycocotools reruns
    per replicate, a hundred times the cost of the rest).
    """
    from sklearn.metrics import roc_auc_score

    from fracdet.audit.stats import proportion_ci
    from fracdet.cls.bootstrap import bootstrap_ci
    from fracdet.det.coco_eval import bootstrap_map_ci, coco_map, predictions_to_coco_results

    gt = _coco_gt(records, class_names)
    results: list[dict[str, Any]] = []
    hits = n_gt = 0
    for k, (boxes, scores) in enumerate(found):
        results += predictions_to_coco_results(k + 1, boxes, scores)
        confident = [(b, s) for b, s in zip(boxes, scores, strict=True) if s >= conf]
        n_gt += len(gt_boxes[k])
        hits += _recalled(gt_boxes[k], confident)
    best = np.array([max(scores, default=0.0) for _, scores in found], dtype=np.float64)
    coco = coco_map(gt, results)
    both = len(set(labels.tolist())) == 2
    out: dict[str, Any] = {
        "map_50": coco["map_50"],
        "recall": hits / n_gt if n_gt else None,
        "recall_ci95": list(proportion_ci(hits, n_gt)) if n_gt else None,
        "n_gt_boxes": n_gt,
        "auroc": float(roc_auc_score(labels, best)) if both else None,
        "mean_best_score": {
            "fractured": float(best[labels == 1].mean()) if (labels == 1).any() else None,
            "intact": float(best[labels == 0].mean()) if (labels == 0).any() else None,
        },
        "n_boxes": len(results),
    }
    if n_boot and map_ci:
        out["map_50_ci95"] = bootstrap_map_ci(gt, results, n_boot=n_boot, seed=seed)["map_50_ci95"]
    if n_boot:
        out["auroc_ci95"] = (
            list(bootstrap_ci(labels, best, roc_auc_score, n_boot=n_boot, seed=seed) or []) or None
            if both
            else None
        )
    return out


def _coco_gt(records: Sequence[Any], class_names: Sequence[str]) -> dict[str, Any]:
    from fracdet.det.coco_eval import to_coco_gt

    top = max((b.label for r in records for b in r.boxes), default=-1)
    names = list(class_names) + [f"class {k}" for k in range(len(class_names), top + 1)]
    return to_coco_gt(records, names)


def _recalled(gt: Sequence[Box], confident: list[tuple[Box, float]]) -> int:
    """Ground-truth boxes found by a confident box (IoU >= 0.5, greedy by score, same class)."""
    from fracdet.data.geometry import match_boxes

    return sum(match_boxes(gt, confident, iou=0.5)) if gt and confident else 0


def _own_attack_key(subject: CheckSubject, cfg: AuditConfig) -> dict[str, Any]:
    """What the clean and own-attack numbers depend on (a classifier sharing it reuses them)."""
    return {
        "frame": [int(subject.images.shape[-1]), bool(subject.clf.meta.keep_aspect)],
        "eps": float(subject.clf.attack.eps),
        "step_size": float(subject.clf.attack.step_size),
        "subset": [it.key for it in subject.items],
        "settings": json.loads(json.dumps(CHECK.settings(cfg), default=str)),
    }


def _reused(subject: CheckSubject, key: dict[str, Any]) -> dict[str, Any] | None:
    """Clean and own-attack numbers of a classifier already checked with the same key."""
    folder = subject.audit_dir / CHECKS_DIR / KEY
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        result = json.loads(path.read_text(encoding="utf-8")).get("result", {})
        if path.stem != subject.name and result.get("own_attack_key") == key:
            return result
    return None


class DetectorAttackCheck:
    """mAP@0.5, recall and AUROC of the detector on clean, transferred and own-attack inputs."""

    key = KEY
    needs_detector = True

    def settings(self, cfg: AuditConfig) -> dict[str, Any]:
        return {
            "detector": str(cfg.detector),
            "attack": cfg.attack_config(),
            "steps": cfg.det_attack_steps,
            "loss": cfg.det_attack_loss,
            "floor": cfg.det_attack_floor,
            "boot": cfg.det_attack_boot,
            "map_ci": cfg.det_attack_map_ci,
            "det_imgsz": cfg.det_imgsz,
            "det_conf": cfg.det_conf,
            "det_iou": cfg.det_iou,
            "seed": cfg.seed,
        }

    def run(self, subject: CheckSubject, cfg: AuditConfig) -> dict[str, Any]:
        import time

        from fracdet.audit.engine import detect_in_frame
        from fracdet.det.attack import DetAttackConfig, attack_detector
        from fracdet.det.model import model_class_names
        from fracdet.robust.attacks import attack
        from fracdet.runtime import autocast

        clf, images = subject.clf, subject.images
        if clf.attack.kind not in ("pgd", "fgsm"):
            return {
                "skipped": f"the detector attack is ℓ∞; the audit's attack is {clf.attack.kind}"
            }
        key = _own_attack_key(subject, cfg)
        records = _records(subject)
        names = model_class_names(subject.detector)

        def numbers(adv: torch.Tensor) -> dict[str, Any]:
            found = detect_in_frame(subject.detector, adv, cfg, clf.device)
            return detector_numbers(
                found,
                subject.gt_boxes,
                subject.labels,
                records,
                names,
                conf=cfg.det_conf,
                n_boot=cfg.det_attack_boot,
                seed=cfg.seed,
                map_ci=cfg.det_attack_map_ci,
            )

        labels = torch.as_tensor(subject.labels, device=clf.device)
        generator = torch.Generator().manual_seed(cfg.seed)
        with autocast(clf.device, clf.precision):
            transferred = attack(clf.model, images, labels, clf.attack, generator=generator)
        out: dict[str, Any] = {
            "own_attack_key": key,
            "loss": cfg.det_attack_loss,
            "floor": cfg.det_attack_floor,
            "det_conf": cfg.det_conf,
        }
        earlier = _reused(subject, key)
        if earlier is not None:
            out.update({c: earlier[c] for c in ("clean", "own", "own_linf", "own_seconds")})
            out["reused_from"] = earlier.get("model")
        else:
            started = time.perf_counter()
            own = attack_detector(
                subject.detector,
                images,
                DetAttackConfig(
                    eps=clf.attack.eps,
                    steps=cfg.det_attack_steps,
                    step_size=clf.attack.step_size,
                    random_start=clf.attack.random_start,
                    imgsz=cfg.det_imgsz,
                    loss=cfg.det_attack_loss,
                    floor=cfg.det_attack_floor,
                ),
                labels=labels,
                boxes=subject.gt_boxes,
                generator=torch.Generator().manual_seed(cfg.seed),
            )
            out["own_seconds"] = round(time.perf_counter() - started, 3)
            out["own_linf"] = float((own - images).abs().amax())
            out["clean"], out["own"] = numbers(images), numbers(own)
        out["model"] = subject.name
        out["transfer"] = numbers(transferred)
        out["eps"] = float(clf.attack.eps)
        out["n_images"] = len(images)
        out["n_fractured"] = int((subject.labels == 1).sum())
        return out

    def sections(
        self,
        results: Mapping[str, Mapping[str, Any]],
        metrics: Mapping[str, Any],
        audit_dir: Path,
    ) -> list[Any]:
        from fracdet.report import Section
        from fracdet.report.tables import ci_cell

        skipped = [f"{m}: {r['skipped']}" for m, r in results.items() if "skipped" in r]
        first = next((r for r in results.values() if "skipped" not in r), None)
        recall_head = f"recall@{first['det_conf']:g}" if first is not None else "recall"
        # per frame: clean and own attack once (they do not depend on the classifier), then
        # each classifier's transfer
        keyed: dict[tuple[str, int, str], dict[str, str]] = {}
        for model, r in results.items():
            if "skipped" in r:
                continue
            size, keep_aspect = r["own_attack_key"]["frame"]
            frame = f"{size} px" + ("" if keep_aspect else ", stretched")
            for order, cond in enumerate(CONDITIONS):
                label = f"transfer from {model}" if cond == "transfer" else _LABELS[cond]
                n = r[cond]
                keyed.setdefault(
                    (frame, order, label),
                    {
                        "input": label,
                        "frame": frame,
                        "mAP@0.5": ci_cell(n["map_50"], n.get("map_50_ci95")),
                        recall_head: ci_cell(n["recall"], n.get("recall_ci95")),
                        "AUROC (best box)": ci_cell(n["auroc"], n.get("auroc_ci95")),
                        "mean best score, fractured / intact": " / ".join(
                            "–" if v is None else f"{v:.3f}" for v in n["mean_best_score"].values()
                        ),
                    },
                )
        frames = list(dict.fromkeys(k[0] for k in keyed))
        rows = [keyed[k] for k in sorted(keyed, key=lambda k: (frames.index(k[0]), k[1]))]
        if not rows and not skipped:
            return []
        text = ""
        if first is not None:
            text = (
                f"The detector on the check subset ({first['n_images']} images, "
                f"{first['n_fractured']} fractured), ε = {first['eps'] * 255:.3g}/255, "
                f"{first['own_seconds']:.1f} s for its own attack. "
                + LOSS_SENTENCES[first["loss"]].format(floor=f"{first['floor']:g}")
                + " 95% CIs: bootstrap over images (AUROC; mAP with det_attack_map_ci), "
                "Wilson over boxes (recall)."
            )
        if skipped:
            text += " Skipped: " + "; ".join(skipped) + "."
        return [Section("The detector attacked directly", text=text.strip(), table=rows or None)]


CHECK = DetectorAttackCheck()
