"""Model cards of classifiers: built from a checkpoint folder, updated by eval-cls.

Everything comes from files fracdet wrote (``best.json``, ``train_report.json``, the manifest
and ``convert_report.json`` of the data), never from the model in memory, so a card can be
built for any checkpoint folder, also an old one written before cards existed (the audit
does that). The schema and the writer are :mod:`fracdet.report.model_card`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fracdet.cls.checkpoint import ClassifierMeta, resolve_checkpoint
from fracdet.errors import FracdetError
from fracdet.report.model_card import (
    DataSection,
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
    "FRACTURED",
    "card_from_classifier_checkpoint",
    "weights_origin_of",
    "evaluation_from_cls_metrics",
    "record_classifier_evaluation",
]

logger = logging.getLogger(__name__)

FRACTURED = "fractured"
TRAIN_REPORT = "train_report.json"
# eval-cls' headline numbers, in the order of its report (each with its CI when it has one);
# eval-cls' own HEADLINE adds the threshold
EVAL_KEYS = (
    "auroc",
    "average_precision",
    "accuracy",
    "balanced_accuracy",
    "f1",
    "sensitivity",
    "specificity",
    "sens_at_spec_80",
    "sens_at_spec_90",
    "ece",
)
_MULTICLASS_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "auroc_macro", "auroc_micro")


def weights_origin_of(info: Mapping[str, Any]) -> WeightsOrigin:
    """The card's weights origin from a checkpoint's ``backbone_info`` (see
    :func:`fracdet.cls.model.create_classifier`)."""
    nested = info.get("weights")  # timm backbones nest it; RobustBench's info is flat
    start = dict(nested if isinstance(nested, Mapping) else info)
    source = str(start.pop("source", "unknown"))
    common = {k: start.pop(k, None) for k in ("name", "package", "version", "file", "sha256")}
    licence = start.pop("licence", None)
    if source == "timm hub":
        return WeightsOrigin(
            "hub",
            licence=licence or "see the timm / Hugging Face model card of these weights",
            details=start,
            **common,
        )
    if source == "robustbench":
        parts = (start.pop(k, "?") for k in ("dataset", "threat", "model"))
        name = "/".join(map(str, parts))
        return WeightsOrigin(
            "robustbench",
            licence=licence or "see the RobustBench model zoo entry",
            details={k: str(v) for k, v in start.items() if not isinstance(v, dict)},
            **{**common, "name": common["name"] or name},
        )
    if source == "imported file":  # fracdet import-cls: a state dict or TorchScript file
        return WeightsOrigin(
            "file",
            licence=licence or "unknown: the licence of the imported weights (state it yourself)",
            details=start,
            **common,
        )
    if source in ("random", "package", "file"):
        default = {"random": "none upstream (random initialisation)", "file": "unknown"}.get(source)
        return WeightsOrigin(source, licence=licence or default, details=start, **common)  # type: ignore[arg-type]
    return WeightsOrigin("unknown", licence=licence or "unknown", details=start, **common)


def _data_section(meta: ClassifierMeta) -> DataSection | None:
    from fracdet.cls.data import load_split
    from fracdet.data.origin import dataset_origin, split_counts

    manifest = meta.train_config.get("manifest")
    if not manifest:
        return None
    manifest = Path(manifest).resolve()  # the card may be read from anywhere
    origin = dataset_origin(manifest.parent)
    section = DataSection(
        origin.name,
        origin.licence,
        origin.note,
        folder=str(manifest.parent),
        manifest=str(manifest),
        data_hash=meta.data_hash or None,
    )
    try:
        split = load_split(
            manifest,
            "all",
            target=str(meta.train_config.get("target", "label")),
            class_names=meta.class_names,
        )
    except FracdetError as exc:  # the manifest moved since training: the hash still names it
        logger.warning("split sizes not on the model card: %s", exc)
        return section
    sizes, balance = split_counts(split.records, meta.class_names)
    return DataSection(**{**section.__dict__, "split_sizes": sizes, "class_balance": balance})


def _training_section(meta: ClassifierMeta, folder: Path) -> TrainingSection | None:
    if not meta.train_config:
        return None
    report: dict[str, Any] = {}
    path = folder / TRAIN_REPORT
    if path.is_file():
        report = json.loads(path.read_text(encoding="utf-8"))
    validation = {k: v for k, v in meta.metrics.items() if isinstance(v, (int, float)) or v is None}
    return TrainingSection(
        "train-cls",
        meta.train_config,
        seed=meta.train_config.get("seed"),
        epochs_run=report.get("epochs_run"),
        best_epoch=report.get("best_epoch"),
        validation=validation,
        report=str(path) if report else None,
        versions=meta.versions,
    )


def _licences(origin: WeightsOrigin, data: DataSection | None) -> Licences:
    notes = []
    if data is not None and data.licence.startswith("CC BY"):
        notes.append(
            f"The trained weights derive from {data.dataset} ({data.licence}): credit the "
            "dataset's authors when you share them or results made with them."
        )
    if origin.source == "package":
        notes.append(f"Starting weights: {origin.name} from {origin.package} ({origin.licence}).")
    return Licences(
        weights=origin.licence or "unknown",
        data=data.licence if data is not None else "unknown (no training data recorded)",
        notes=tuple(notes),
    )


def card_from_classifier_checkpoint(path: str | Path, *, name: str | None = None) -> ModelCard:
    """A card for the classifier at ``path`` (run folder, ``.safetensors`` or ``.json``).

    Reads the checkpoint's JSON, hashes its files and, when fracdet trained it, reads its
    ``train_report.json`` and its manifest. ``name`` defaults to the folder's name.
    """
    weights, meta_path = resolve_checkpoint(path)
    meta = ClassifierMeta.from_json(meta_path.read_text(encoding="utf-8"), meta_path)
    folder = weights.parent
    origin = weights_origin_of(meta.backbone_info)
    if meta.imported:  # what import-cls checked: the contract and the parity with the original
        keep = ("arch", "head", "source_class_names", "fracture_index", "channels", "normalised_by")
        verification = meta.imported.get("verification") or {}
        origin = dataclasses.replace(
            origin,
            details={
                **origin.details,
                **{f"imported {k}": meta.imported.get(k) for k in keep},
                **{
                    f"verification {k}": v
                    for k, v in verification.items()
                    if k
                    in ("samples", "max_abs_diff_probability", "max_abs_diff_logit", "tolerance")
                },
            },
        )
    binary = meta.binary
    classes = tuple(meta.class_names)
    normalised_inside = (meta.backbone_info.get("normalization") or {}).get("where")
    model = ModelSection(
        kind="classifier",
        name=name or folder.resolve().name,
        architecture=meta.backbone
        + (
            " (" + ", ".join(f"{k}={v}" for k, v in meta.backbone_args.items()) + ")"
            if meta.backbone_args
            else ""
        ),
        framework=meta.source
        if meta.source != "fracdet"  # imported: timm, torchvision or torchscript
        else "robustbench"
        if meta.backbone.startswith("robustbench:")
        else "timm",
        files=(model_file(weights), model_file(meta_path, "metadata")),
        input=InputContract(
            image_size=meta.image_size,
            resize=meta.resize,
            channels=len(meta.mean),
            mean=tuple(meta.mean),
            std=tuple(meta.std),
            normalisation="inside the model: it takes pixels in [0, 1]"
            + (f"; the backbone also normalises ({normalised_inside})" if normalised_inside else "")
            + (f"; inputs rounded to {meta.input_levels} grey levels" if meta.input_levels else ""),
        ),
        classes=classes,
        fractured_index=classes.index(FRACTURED) if FRACTURED in classes else None,
        output=(
            f"one logit: sigmoid(logit / temperature) = P({classes[1]})"
            if binary
            else f"{len(classes)} logits: softmax(logits / temperature)"
        ),
        threshold=meta.threshold if binary else None,
        temperature=meta.temperature,
    )
    data = _data_section(meta)
    return ModelCard(
        model=model,
        weights_origin=origin,
        licences=_licences(origin, data),
        data=data,
        training=_training_section(meta, folder),
    )


def evaluation_from_cls_metrics(
    metrics: Mapping[str, Any], report: str | Path | None = None
) -> Evaluation:
    """An :class:`Evaluation` from ``cls_metrics.json`` (what eval-cls writes)."""
    ci = metrics.get("ci95") or {}
    keys = EVAL_KEYS if "auroc" in metrics else _MULTICLASS_KEYS
    values = {k: estimate(metrics.get(k), ci.get(k)) for k in keys if k in metrics}
    n = metrics.get("n")
    note = ""
    if "threshold" in metrics:
        note = f"Decision threshold {metrics['threshold']:.3f} (fitted on validation)."
    return Evaluation(
        split=str(metrics.get("split", "test")),
        command="eval-cls",
        date=now(),
        n_images=None if n is None else int(n),
        metrics=values,
        report=None if report is None else str(Path(report).resolve()),
        data_hash=metrics.get("data_hash"),
        ci_method=metrics.get("ci_method"),
        note=note,
    )


def record_classifier_evaluation(
    checkpoint: str | Path, metrics: Mapping[str, Any], report: str | Path
) -> ModelCard | None:
    """Add eval-cls' numbers to the card beside ``checkpoint`` (created when missing).

    eval-cls writes its report in its own output folder; the card keeps the latest
    evaluation per split and points to that report. A folder that cannot be written only
    warns: the evaluation itself is done.
    """
    from fracdet.cls.onnx import find_onnx_file

    onnx_file = find_onnx_file(checkpoint)
    if onnx_file is not None:  # an export folder: its card came with the export
        weights = onnx_file
    else:
        weights, _ = resolve_checkpoint(checkpoint)
    return try_update_model_card(
        weights.parent,
        create=lambda: card_from_classifier_checkpoint(weights),
        weights=model_file(weights),
        evaluations={
            str(metrics.get("split", "test")): evaluation_from_cls_metrics(metrics, report)
        },
    )
