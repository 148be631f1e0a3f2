"""Model cards of detectors: built from a train-det run, updated by eval-det.

The card lies beside the weights (``RUN/weights/MODEL_CARD.md``) and describes ``best.pt``.
Everything comes from files: the run's ``metrics.json`` (train-det's report: config, class
names, data, validation numbers) and the data's ``convert_report.json``; the ``.pt`` itself is
only hashed, never unpickled. A detector fracdet did not train gets what its caller knows
(class names, input size) and an origin stated as unknown.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fracdet.errors import FracdetError
from fracdet.report.model_card import (
    DataSection,
    Estimate,
    Evaluation,
    InputContract,
    Licences,
    ModelCard,
    ModelSection,
    TrainingSection,
    WeightsOrigin,
    estimate,
    model_file,
    now,
    try_update_model_card,
)

__all__ = [
    "ULTRALYTICS_LICENCE",
    "card_from_detector_weights",
    "evaluation_from_det_metrics",
    "record_detector_evaluation",
]

logger = logging.getLogger(__name__)

ULTRALYTICS_LICENCE = (
    "AGPL-3.0 (Ultralytics YOLO: models built and trained with it fall under its AGPL-3.0 "
    "unless you hold an Ultralytics Enterprise licence)"
)
TRAIN_REPORT = "metrics.json"
FRACTURED = "fractured"


def _run_dir(weights: Path) -> Path:
    """Ultralytics keeps weights in ``RUN/weights/``; its reports are in ``RUN``."""
    return weights.parent.parent if weights.parent.name == "weights" else weights.parent


def _train_report(weights: Path) -> dict[str, Any]:
    path = _run_dir(weights) / TRAIN_REPORT
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return report if isinstance(report, dict) and "config" in report else {}


def _origin(report: Mapping[str, Any]) -> WeightsOrigin:
    """Where the run's weights started: train-det's ``start_weights`` (random, hub, file,
    package), else read from its ``model`` option (reports written before it was recorded)."""
    start = dict(report.get("start_weights") or {})
    spec = (report.get("config") or {}).get("model")
    source = start.pop("source", None)
    if source is None and spec:
        suffix = Path(spec).suffix.lower()
        source = "random" if suffix in (".yaml", ".yml") else "file"
        start = {"architecture": spec} if source == "random" else {"path": spec}
    if source == "random":
        return WeightsOrigin(
            "random",
            name=start.get("architecture"),
            licence="none upstream (random initialisation)",
        )
    if source == "package":
        common = {k: start.get(k) for k in ("name", "package", "version", "file", "sha256")}
        return WeightsOrigin("package", licence=start.get("licence"), **common)
    if source in ("hub", "file"):
        path = start.get("path")
        return WeightsOrigin(
            source,
            name=f"Ultralytics {Path(path).name}" if source == "hub" and path else None,
            file=path,
            sha256=start.get("sha256"),
            licence=ULTRALYTICS_LICENCE if source == "hub" else "unknown",
        )
    details = {"resumed from": str(start.get("path"))} if source == "resumed" else {}
    return WeightsOrigin("unknown", licence="unknown", details=details)


def _data_section(report: Mapping[str, Any]) -> DataSection | None:
    from fracdet.data.manifest import LABEL_NAMES, read_manifest
    from fracdet.data.origin import dataset_origin, split_counts

    data_yaml = report.get("data_yaml")
    if not data_yaml:
        return None
    folder = Path(data_yaml).parent
    origin = dataset_origin(folder)
    sizes: dict[str, int] = {}
    balance: dict[str, dict[str, int]] = {}
    manifest = folder / "manifest.csv"
    try:
        sizes, balance = split_counts(read_manifest(manifest), LABEL_NAMES)
    except FracdetError as exc:
        logger.warning("split sizes not on the detector's card: %s", exc)
    return DataSection(
        origin.name,
        origin.licence,
        origin.note,
        folder=str(folder),
        manifest=str(manifest) if sizes else None,
        data_hash=report.get("data_hash"),
        split_sizes=sizes,
        class_balance=balance,
    )


def card_from_detector_weights(
    weights: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    image_size: int | None = None,
    name: str | None = None,
) -> ModelCard:
    """A card for the Ultralytics detector ``weights`` (``.pt``), from its run's report.

    ``class_names`` and ``image_size`` are used when the run's ``metrics.json`` is missing (a
    detector fracdet did not train); ``name`` defaults to the run folder's name.
    """
    weights = Path(weights)
    report = _train_report(weights)
    config = report.get("config") or {}
    classes = tuple(report.get("class_names") or class_names or ())
    size = int(config.get("imgsz") or image_size or 640)
    origin = _origin(report)
    data = _data_section(report)
    model = ModelSection(
        kind="detector",
        name=name or _run_dir(weights).resolve().name,
        architecture=str(config.get("model") or "Ultralytics YOLO (architecture not recorded)"),
        framework="ultralytics",
        files=(model_file(weights),),
        input=InputContract(
            image_size=size,
            resize="letterbox",
            channels=3,
            normalisation="Ultralytics' preprocessing: pixels / 255, no mean/std",
        ),
        classes=classes,
        fractured_index=classes.index(FRACTURED) if FRACTURED in classes else None,
        output="boxes (xyxy, in the original image's pixels) with a score and a class each",
    )
    training = None
    if report:
        training = TrainingSection(
            "train-det",
            config,
            seed=report.get("seed"),
            epochs_run=report.get("epochs_completed"),
            validation=dict(report.get("metrics") or {}),
            report=str(_run_dir(weights) / TRAIN_REPORT),
            versions=report.get("versions") or {},
        )
    notes = (
        (f"Trained on {data.dataset} ({data.licence}): credit the dataset's authors.",)
        if data is not None and data.licence.startswith("CC BY")
        else ()
    )
    return ModelCard(
        model=model,
        weights_origin=origin,
        licences=Licences(
            weights=ULTRALYTICS_LICENCE,
            data=data.licence if data is not None else "unknown (no training data recorded)",
            notes=notes,
        ),
        data=data,
        training=training,
    )


def evaluation_from_det_metrics(
    metrics: Mapping[str, Any], report: str | Path | None = None
) -> Evaluation:
    """An :class:`Evaluation` from ``det_metrics.json`` (what eval-det writes)."""
    coco, image = metrics.get("coco") or {}, metrics.get("image_level") or {}
    values: dict[str, Estimate] = {
        "mAP@0.5 (COCO)": estimate(coco.get("map_50"), coco.get("map_50_ci95")),
        "mAP@0.5:0.95 (COCO)": estimate(coco.get("map_50_95"), coco.get("map_50_95_ci95")),
        "image-level AUROC": estimate(image.get("auroc")),
        "image-level sensitivity": estimate(image.get("sensitivity")),
        "image-level specificity": estimate(image.get("specificity")),
    }
    n = image.get("n_positive", 0) + image.get("n_negative", 0) if image else None
    n_boot = (metrics.get("config") or {}).get("n_boot")
    return Evaluation(
        split=str(metrics.get("split", "test")),
        command="eval-det",
        date=now(),
        n_images=n,
        metrics=values,
        report=None if report is None else str(Path(report).resolve()),
        data_hash=metrics.get("gt_hash"),
        ci_method=f"percentile bootstrap over images, {n_boot} replicates" if n_boot else None,
        note=(
            f"Images called fractured at box score >= {image['threshold']:.2f}."
            if image.get("threshold") is not None
            else ""
        ),
    )


def record_detector_evaluation(
    weights: str | Path, metrics: Mapping[str, Any], report: str | Path
) -> ModelCard | None:
    """Add eval-det's numbers to the card beside ``weights`` (created when missing).

    eval-det writes into its own output folder; the card keeps the latest evaluation per
    split and points there. A folder that cannot be written only warns.
    """
    weights = Path(weights)
    return try_update_model_card(
        weights.parent,
        create=lambda: card_from_detector_weights(
            weights,
            class_names=metrics.get("class_names"),
            image_size=(metrics.get("config") or {}).get("imgsz"),
        ),
        weights=model_file(weights),
        evaluations={
            str(metrics.get("split", "test")): evaluation_from_det_metrics(metrics, report)
        },
    )
