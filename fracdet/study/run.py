"""``fracdet run CONFIG``: the FracAtlas study from raw data to one results page.

Stages (each reused while its inputs and options are unchanged, see :mod:`fracdet.stages`):

``data``          convert every image for the classifiers (manifest; official split for the
                  fractured images, the others assigned by label and body part)
``data-det``      convert the official localization split alone (YOLO + COCO) for the detector
``cls-standard``  train a timm classifier, score it on the test split
``cls-pgd``       fine-tune it with PGD adversarial training, score it
``det``           train the YOLO detector, score it on the official test split (pycocotools, CIs)
``audit``         both classifiers against the detector on the test split, split by hardware
                  and body part
``audit-heldout`` both classifiers on every fractured val + test image, split the same way: the
                  test split alone holds too few hardware images (FracAtlas: 4) for the shortcut
                  question
then ``index.html`` / ``index.md`` and ``comparison.md`` (:mod:`fracdet.study.results`).
"""

from __future__ import annotations

import csv
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fracdet.data.fracatlas import is_fracatlas
from fracdet.errors import DataError, OutputExistsError
from fracdet.fsutil import check_folder_path
from fracdet.stages import STAGES_DIR, StageRunner
from fracdet.study.config import StudyConfig
from fracdet.study.results import StudySummary, write_study_page
from fracdet.study.weights import Init, classifier_init, detector_init

__all__ = ["run_study", "STAGE_NAMES"]

logger = logging.getLogger(__name__)

STAGE_NAMES = ("data", "data-det", "cls-standard", "cls-pgd", "det", "audit", "audit-heldout")
_CLS_NAMES = {"cls-standard": "standard", "cls-pgd": "pgd"}


def _convert(folder: Path, cfg: StudyConfig, *, detection: bool) -> None:
    from fracdet.data.convert import ConvertConfig, convert

    targets = ("yolo", "coco", "manifest") if detection else ("manifest",)
    convert(
        ConvertConfig(
            source=Path(cfg.source),
            output=folder / "dataset",
            targets=targets,
            split="auto",
            seed=cfg.seed,
            official_only=detection,
        )
    )


def _train_classifier(
    folder: Path, cfg: StudyConfig, manifest: Path, init: Init, *, start_from: Path | None = None
) -> None:
    """Train, then score on the test split; ``start_from`` (a run folder) makes this the PGD fine-tuning."""
    from fracdet.cls.evaluate import EvalClsConfig, evaluate_classifier
    from fracdet.cls.train import ClsTrainConfig, train_classifier

    options: dict[str, Any] = {**init.options, "epochs": cfg.cls_epochs, "lr": cfg.cls_lr}
    if start_from is not None:
        options = {
            "weights": start_from / "best.safetensors",
            "epochs": cfg.adv_epochs,
            "lr": cfg.adv_lr,
            "adv": cfg.adv,
            "adv_eps": cfg.adv_eps,
            "adv_steps": cfg.adv_steps,
            "adv_step_size": cfg.adv_step_size,
        }
    train_classifier(
        ClsTrainConfig(
            manifest=manifest,
            output=folder,
            backbone=cfg.cls_backbone,
            image_size=cfg.cls_image_size,
            batch_size=cfg.cls_batch_size,
            global_pool=cfg.cls_global_pool,
            patience=options["epochs"],
            precision=cfg.cls_precision,
            workers=cfg.workers,
            device=cfg.device,
            seed=cfg.seed,
            **options,
        )
    )
    evaluate_classifier(
        EvalClsConfig(
            folder,
            manifest,
            split="test",
            output=folder / "eval",
            workers=cfg.workers,
            device=cfg.device,
            n_boot=cfg.n_boot,
            seed=cfg.seed,
        )
    )


def _train_detector(folder: Path, cfg: StudyConfig, dataset: Path, init: Init) -> None:
    from fracdet.det.evaluate import DetEvalConfig, evaluate_detector
    from fracdet.det.train import DetTrainConfig, train_detector

    device = _ultralytics_device(cfg.device)
    trained = train_detector(
        DetTrainConfig(
            data=dataset / "data.yaml",
            model=init.options["model"],
            output=folder,
            name="train",
            epochs=cfg.det_epochs,
            imgsz=cfg.det_imgsz,
            batch=cfg.det_batch,
            workers=cfg.workers,
            seed=cfg.seed,
            device=device,
        )
    )
    evaluate_detector(
        DetEvalConfig(
            trained.best_weights,
            dataset,
            split="test",
            imgsz=cfg.det_imgsz,
            output=folder / "eval",
            device=device,
            n_boot=min(cfg.n_boot, 300),
            seed=cfg.seed,
        )
    )


def _ultralytics_device(device: str | None) -> str:
    """fracdet's ``cuda`` / ``cuda:1`` / ``cpu`` (default: CUDA when present) as Ultralytics names them (``0``, ``1``, ``cpu``)."""
    if device is None:
        import torch

        return "0" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        return device.partition(":")[2] or "0"
    return device


def _audit(
    folder: Path,
    cfg: StudyConfig,
    dataset: Path,
    classifiers: dict[str, Path],
    detector: Path,
    *,
    resume: bool = False,
) -> None:
    from fracdet.audit import AuditConfig, run_audit

    run_audit(
        AuditConfig(
            dataset=dataset,
            classifiers=tuple(classifiers.values()),
            names=tuple(classifiers),
            detector=detector,
            split="test",
            output=folder,
            methods=cfg.audit_methods,
            ig_steps=cfg.audit_ig_steps,
            steps=cfg.audit_steps,
            eps=cfg.audit_eps,
            step_size=cfg.audit_step_size,
            det_imgsz=cfg.det_imgsz,
            group_by=cfg.group_by,
            n_boot=cfg.n_boot,
            max_images=cfg.audit_max_images,
            batch_size=cfg.audit_batch_size,
            workers=cfg.workers,
            device=cfg.device,
            seed=cfg.seed,
            resume=resume,
        )
    )


def _fractured_heldout(manifest: Path, out: Path) -> int:
    """Write ``out``: the manifest's fractured val and test rows, image paths made absolute; returns their count."""
    with open(manifest, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = [row for row in reader if row["label"] == "1" and row["split"] in ("val", "test")]
        columns = list(reader.fieldnames or [])
    for row in rows:
        row["path"] = str((manifest.parent / row["path"]).resolve())
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def _audit_heldout(
    folder: Path, cfg: StudyConfig, manifest: Path, classifiers: dict[str, Path]
) -> None:
    """Both classifiers on every fractured val + test image (val chose their epoch and threshold; the page says so)."""
    from fracdet.audit import AuditConfig, run_audit

    heldout = folder / "fractured_val_test.csv"
    if not _fractured_heldout(
        manifest, heldout
    ):  # a dataset without boxed val/test images: the page leaves the section out
        logger.info("study: no fractured val or test image, so no held-out audit")
        return
    run_audit(
        AuditConfig(
            dataset=heldout,
            classifiers=tuple(classifiers.values()),
            names=tuple(classifiers),
            split="all",
            output=folder / "audit",
            methods=cfg.audit_methods,
            ig_steps=cfg.audit_ig_steps,
            steps=cfg.audit_steps,
            eps=cfg.audit_eps,
            step_size=cfg.audit_step_size,
            group_by=cfg.group_by,
            n_boot=cfg.n_boot,
            batch_size=cfg.audit_batch_size,
            workers=cfg.workers,
            device=cfg.device,
            seed=cfg.seed,
        )
    )


def _check_output(out: Path, cfg: StudyConfig) -> None:
    if out.exists() and not out.is_dir():
        raise OutputExistsError("exists and is not a folder", out)
    check_folder_path(out)  # a folder above it that is a file: one line here, not mkdir's traceback
    is_study = (out / STAGES_DIR).is_dir()
    if out.exists() and any(out.iterdir()) and not is_study and not cfg.overwrite:
        raise OutputExistsError(
            "exists and is not a study folder; pass --overwrite to replace it", out
        )


def run_study(config: StudyConfig) -> StudySummary:
    """Run (or reuse) every stage of the study, then write its results page."""
    cfg = config.effective()
    source = Path(cfg.source)
    # the layout convert recognises: a bare images/ would pass here and fail in the first stage, leaving a study folder
    if not is_fracatlas(source):
        raise DataError(
            "no FracAtlas here (expected images/Fractured and images/Non_fractured): get it with `fracdet fetch-fracatlas DIR` and set source: DIR/FracAtlas",
            source,
        )
    out = Path(cfg.output)
    _check_output(out, cfg)
    out.mkdir(parents=True, exist_ok=True)
    cls_init, det_init = classifier_init(cfg), detector_init(cfg)
    logger.info(
        "study (%s profile): classifier starts from %s; detector from %s",
        cfg.profile,
        cls_init.description,
        det_init.description,
    )
    stages = StageRunner(out, fresh=cfg.fresh or cfg.overwrite, label="study")
    options = asdict(cfg)
    data_options = {"source": str(source.resolve()), "seed": cfg.seed}
    data = stages.run("data", data_options, (), lambda f: _convert(f, cfg, detection=False))
    data_det = stages.run("data-det", data_options, (), lambda f: _convert(f, cfg, detection=True))
    manifest = data / "dataset" / "manifest.csv"
    cls_options = {k: v for k, v in options.items() if k.startswith("cls_")} | {
        "seed": cfg.seed,
        "init": cls_init.options,
    }
    standard = stages.run(
        "cls-standard",
        cls_options,
        ("data",),
        lambda f: _train_classifier(f, cfg, manifest, cls_init),
    )
    adv_options = {k: v for k, v in options.items() if k.startswith("adv")} | {"n_boot": cfg.n_boot}
    robust = stages.run(
        "cls-pgd",
        adv_options,
        ("data", "cls-standard"),
        lambda f: _train_classifier(f, cfg, manifest, cls_init, start_from=standard),
    )
    det_options = {k: v for k, v in options.items() if k.startswith("det_")} | {
        "seed": cfg.seed,
        "init": det_init.options,
    }
    det = stages.run(
        "det",
        det_options,
        ("data-det",),
        lambda f: _train_detector(f, cfg, data_det / "dataset", det_init),
    )
    detector = det / "train" / "weights" / "best.pt"
    classifiers = {_CLS_NAMES["cls-standard"]: standard, _CLS_NAMES["cls-pgd"]: robust}
    audit_options = {k: v for k, v in options.items() if k.startswith("audit_")} | {
        "group_by": cfg.group_by,
        "n_boot": cfg.n_boot,
        "det_imgsz": cfg.det_imgsz,
    }
    audit = stages.run(
        "audit",
        audit_options,
        ("data", "cls-standard", "cls-pgd", "det"),
        lambda f, **kw: _audit(f, cfg, data / "dataset", classifiers, detector, **kw),
        resumable=True,
    )
    heldout = stages.run(
        "audit-heldout",
        audit_options,
        ("data", "cls-standard", "cls-pgd"),
        lambda f: _audit_heldout(f, cfg, manifest, classifiers),
    )
    folders = {
        "audit-heldout": heldout / "audit",
        "data": data,
        "data-det": data_det,
        "standard": standard,
        "pgd": robust,
        "det": det,
        "audit": audit,
    }
    inits = {
        "classifier": cls_init.description,
        "detector": det_init.description,
        "classifier_pretrained": cls_init.pretrained,
        "detector_pretrained": det_init.pretrained,
    }
    return write_study_page(out, cfg, folders, stages.seconds, inits)
