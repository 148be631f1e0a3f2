"""``fracdet eval-cls``: a classifier checkpoint scored on one split of a manifest.

The operating point (threshold) and the temperature come from the checkpoint, where
training fitted them on validation, so test numbers are honest. Every headline metric gets
a stratified bootstrap 95% CI; figures and an HTML/Markdown report go to the output folder,
and the numbers go onto the model card beside the checkpoint (the latest evaluation per split).
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fracdet.cls.calibration import apply_temperature
from fracdet.cls.card import EVAL_KEYS, record_classifier_evaluation
from fracdet.cls.checkpoint import load_classifier
from fracdet.cls.data import LabelledSplit, load_split, make_loader
from fracdet.cls.inference import Predictions, predict_logits
from fracdet.errors import DataError
from fracdet.fsutil import atomic_output_dir
from fracdet.provenance import records_hash, versions
from fracdet.runtime import resolve_device, resolve_precision

__all__ = ["EvalClsConfig", "EvalClsSummary", "evaluate_classifier", "write_predictions_csv"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalClsConfig:
    checkpoint: Path
    manifest: Path
    split: str = "test"
    output: Path = Path("reports/eval-cls")
    batch_size: int = 32
    workers: int = 2
    device: str | None = None
    precision: str = "auto"
    n_boot: int = 1000
    seed: int = 0
    overwrite: bool = False


@dataclass(frozen=True)
class EvalClsSummary:
    """What :func:`evaluate_classifier` wrote, and the metrics (as in ``cls_metrics.json``)."""

    output: Path
    report: Path
    metrics: dict[str, Any]

    @property
    def binary(self) -> bool:
        """Binary metrics always hold ``auroc`` (``None`` when undefined); multi-class ones do
        not.
        """
        return "auroc" in self.metrics

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        m = self.metrics
        if self.binary:
            auroc = "undefined (one class)" if m["auroc"] is None else f"{m['auroc']:.3f}"
            return (
                f"{m['n']} images: AUROC {auroc}, sensitivity {_rate(m['sensitivity'])}, "
                f"specificity {_rate(m['specificity'])} at threshold {m['threshold']:.3f}; "
                f"report: {self.report}"
            )
        return (
            f"accuracy {m['accuracy']:.3f}, macro AUROC {_rate(m.get('auroc_macro'))}; "
            f"report: {self.report}"
        )


def _rate(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def evaluate_classifier(cfg: EvalClsConfig) -> EvalClsSummary:
    """Metrics (with CIs), figures, per-image predictions and a report, written to
    ``cfg.output``.
    """
    from fracdet.cls.bootstrap import metrics_with_ci
    from fracdet.cls.calibration import expected_calibration_error
    from fracdet.cls.metrics import multiclass_metrics

    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    model, meta = load_classifier(cfg.checkpoint, device=device)
    target = str(meta.train_config.get("target", "label"))
    split = load_split(cfg.manifest, cfg.split, target=target, class_names=meta.class_names)
    if not split.records:
        raise DataError(
            f"split {cfg.split!r} has no images of the classes {list(meta.class_names)}",
            cfg.manifest,
        )
    loader = make_loader(
        split,
        meta.image_size,
        batch_size=cfg.batch_size,
        workers=cfg.workers,
        pin_memory=device.type == "cuda",
        keep_aspect=meta.keep_aspect,
    )
    preds = predict_logits(
        model, loader, device=device, precision=precision, description=f"eval {cfg.split}"
    )
    if len(preds.labels) == 0:
        raise DataError(
            f"no image of split {cfg.split!r} could be read (see the reasons with --verbose)",
            cfg.manifest,
        )
    probs = apply_temperature(preds.logits, meta.temperature)
    skipped = [
        {"file": str(split.records[i].path), "reason": reason} for i, reason in preds.failures
    ] + split.skipped
    with atomic_output_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
        if meta.binary:
            metrics = metrics_with_ci(
                preds.labels, probs, threshold=meta.threshold, n_boot=cfg.n_boot, seed=cfg.seed
            )
            metrics["ece"] = expected_calibration_error(preds.labels, probs)
            metrics["ece_uncalibrated"] = expected_calibration_error(
                preds.labels, apply_temperature(preds.logits)
            )
            figures = _binary_figures(
                preds.labels, probs, metrics, meta.class_names, meta.threshold, tmp
            )
        else:
            metrics = multiclass_metrics(preds.labels, probs, class_names=meta.class_names)
            figures = _multiclass_figures(metrics, meta.class_names, tmp)
        metrics.update(
            split=cfg.split,
            checkpoint=str(cfg.checkpoint),
            backbone=meta.backbone,
            temperature=meta.temperature,
            n_skipped=len(skipped),
            skipped=skipped,
            seed=cfg.seed,
            n_boot=cfg.n_boot,
            versions=versions(),
            data_hash=records_hash([(str(r.path), r.label) for r in split.records]),
            config=json.loads(json.dumps(asdict(cfg), default=str)),
        )
        write_predictions_csv(
            tmp / "predictions.csv",
            split,
            preds,
            probs,
            meta.threshold if meta.binary else None,
            meta.class_names,
        )
        (tmp / "cls_metrics.json").write_text(
            json.dumps(metrics, indent=2, default=_json_default), encoding="utf-8"
        )
        _write_report(tmp, metrics, figures, meta.binary)
    if skipped:
        logger.warning(
            "%d image(s) skipped, listed in %s", len(skipped), Path(cfg.output) / "cls_metrics.json"
        )
    record_classifier_evaluation(cfg.checkpoint, metrics, Path(cfg.output) / "report.html")
    return EvalClsSummary(Path(cfg.output), Path(cfg.output) / "report.html", metrics)


def write_predictions_csv(
    path: Path,
    split: LabelledSplit,
    preds: Predictions,
    probs: np.ndarray,
    threshold: float | None,
    class_names: tuple[str, ...],
) -> None:
    """One row per scored image: id, path, true class, probability (or class probabilities),
    decision.
    """
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        binary = probs.ndim == 1
        writer.writerow(
            ["image_id", "path", "label", "probability", "prediction"]
            if binary
            else ["image_id", "path", "label", *[f"p_{n}" for n in class_names], "prediction"]
        )
        for row, index in enumerate(preds.indices):
            record = split.records[int(index)]
            if binary:
                writer.writerow(
                    [
                        record.image_id,
                        record.path,
                        class_names[record.label],
                        f"{probs[row]:.6f}",
                        class_names[int(probs[row] >= threshold)],
                    ]
                )
            else:
                writer.writerow(
                    [
                        record.image_id,
                        record.path,
                        class_names[record.label],
                        *(f"{p:.6f}" for p in probs[row]),
                        class_names[int(probs[row].argmax())],
                    ]
                )


def _binary_figures(labels, probs, metrics, class_names, threshold, out: Path) -> list[Path]:
    from fracdet.cls.calibration import reliability_curve
    from fracdet.report import plot_confusion, plot_pr, plot_reliability, plot_roc

    return [
        plot_roc(labels, probs, out / "roc.png", operating_point=threshold),
        plot_pr(labels, probs, out / "pr.png", operating_point=threshold),
        plot_confusion(np.asarray(metrics["confusion_matrix"]), class_names, out / "confusion.png"),
        plot_reliability(
            reliability_curve(labels, probs), out / "reliability.png", ece=metrics["ece"]
        ),
    ]


def _multiclass_figures(metrics, class_names, out: Path) -> list[Path]:
    from fracdet.report import plot_confusion

    return [
        plot_confusion(np.asarray(metrics["confusion_matrix"]), class_names, out / "confusion.png")
    ]


HEADLINE = (*EVAL_KEYS, "threshold")


def _write_report(out: Path, metrics: dict[str, Any], figures: list[Path], binary: bool) -> None:
    from fracdet.report import Section, write_report

    ci = metrics.get("ci95", {})
    if binary:
        table = [
            {"metric": k, "value": metrics.get(k), "95% CI": ci.get(k)}
            for k in HEADLINE
            if k in metrics
        ]
    else:
        table = [
            {"metric": k, "value": metrics.get(k)}
            for k in ("accuracy", "balanced_accuracy", "macro_f1", "auroc_macro", "auroc_micro")
        ]
    text = (
        f"{metrics['n']} images ({metrics.get('n_positive', '?')} positive) of split "
        f"'{metrics['split']}'; checkpoint {metrics['checkpoint']} ({metrics['backbone']}); "
        f"temperature {metrics['temperature']:.3g}."
        if binary
        else f"split '{metrics['split']}'; checkpoint {metrics['checkpoint']}"
    )
    notes = metrics.get("notes") or []
    sections = [
        Section("Headline metrics", text=" ".join([text, *notes]), table=table, figures=figures)
    ]
    if metrics["skipped"]:
        sections.append(Section("Skipped images", table=metrics["skipped"]))
    write_report(out / "report.html", title="fracdet eval-cls", sections=sections)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
