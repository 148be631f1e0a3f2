"""``fracdet run CONFIG``: the FracAtlas study from raw data to one results page.

Stages (:mod:`fracdet.pipeline`'s, as in ``fracdet demo``; each reused while the configs its
library calls get, its upstream stages and the code are unchanged, see :mod:`fracdet.stages`):

``data``          convert every image for the classifiers (manifest; official split for the
                  fractured images, the others assigned by label and body part)
``data-det``      convert the official localization split alone (YOLO + COCO) for the detector
``cls-standard``  train a timm classifier; ``cls-standard-eval`` scores it on the test split
``cls-pgd``       fine-tune it with PGD adversarial training; ``cls-pgd-eval`` scores it
``det``           train the YOLO detector; ``det-eval`` scores it on the official test split
                  (pycocotools, CIs)
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
from pathlib import Path
from typing import TYPE_CHECKING

from fracdet.data.fracatlas import is_fracatlas
from fracdet.errors import DataError
from fracdet.fsutil import output_lock
from fracdet.pipeline import (
    Settings,
    audit_config,
    audit_stage,
    classifier_stages,
    detector_stages,
    detector_weights,
)
from fracdet.stages import Call, Stage, StageRunner
from fracdet.study.config import StudyConfig
from fracdet.study.results import StudySummary, write_study_page
from fracdet.study.weights import Init, classifier_init, detector_init

if TYPE_CHECKING:
    from fracdet.audit import AuditConfig

__all__ = ["STAGE_NAMES", "audit_heldout", "run_study", "study_stages"]

logger = logging.getLogger(__name__)

STAGE_NAMES = (
    "data",
    "data-det",
    "cls-standard",
    "cls-standard-eval",
    "cls-pgd",
    "cls-pgd-eval",
    "det",
    "det-eval",
    "audit",
    "audit-heldout",
)
#: The detector's mAP CIs: each bootstrap replicate reruns COCOeval, so fewer than the rest.
_DET_MAX_BOOT = 300


def _data_stage(name: str, out: Path, cfg: StudyConfig, *, detection: bool) -> Stage:
    from fracdet.data.convert import ConvertConfig, convert

    targets = ("yolo", "coco", "manifest") if detection else ("manifest",)
    config = ConvertConfig(
        source=Path(cfg.source),
        output=out / name / "dataset",
        targets=targets,
        split="auto",
        seed=cfg.seed,
        official_only=detection,
    )
    return Stage(name, out / name, (Call.of(convert, config),))


def _fractured_heldout(manifest: Path, out: Path) -> int:
    """Write ``out``: the manifest's fractured val and test rows, image paths made absolute;
    returns their count."""
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


def audit_heldout(manifest: Path, config: AuditConfig) -> None:
    """Both classifiers on every fractured val + test image of ``manifest``, written to
    ``config.dataset`` first (val chose their epoch and threshold; the page says so)."""
    from fracdet.audit import run_audit

    if not _fractured_heldout(manifest, Path(config.dataset)):
        # a dataset without boxed val/test images: the page leaves the section out
        logger.info("study: no fractured val or test image, so no held-out audit")
        return
    run_audit(config)


def study_stages(cfg: StudyConfig, out: Path, cls_init: Init, det_init: Init) -> list[Stage]:
    """Every stage of the study, in the order they run (an effective config)."""
    settings = Settings.of(seed=cfg.seed, workers=cfg.workers, device=cfg.device)
    data = _data_stage("data", out, cfg, detection=False)
    data_det = _data_stage("data-det", out, cfg, detection=True)
    manifest = data.folder / "dataset" / "manifest.csv"
    common = {
        "backbone": cfg.cls_backbone,
        "image_size": cfg.cls_image_size,
        "batch_size": cfg.cls_batch_size,
        "global_pool": cfg.cls_global_pool,
        "precision": cfg.cls_precision,
    }
    standard = classifier_stages(
        "cls-standard",
        out,
        manifest,
        settings,
        upstream=("data",),
        n_boot=cfg.n_boot,
        **common,
        **cls_init.options,
        epochs=cfg.cls_epochs,
        lr=cfg.cls_lr,
    )
    robust = classifier_stages(  # PGD fine-tuning of the standard classifier
        "cls-pgd",
        out,
        manifest,
        settings,
        upstream=("data", "cls-standard"),
        n_boot=cfg.n_boot,
        **common,
        weights=standard[0].folder / "best.safetensors",
        epochs=cfg.adv_epochs,
        lr=cfg.adv_lr,
        adv=cfg.adv,
        adv_eps=cfg.adv_eps,
        adv_steps=cfg.adv_steps,
        adv_step_size=cfg.adv_step_size,
    )
    det = detector_stages(
        "det",
        out,
        data_det.folder / "dataset",
        settings,
        upstream=("data-det",),
        n_boot=min(cfg.n_boot, _DET_MAX_BOOT),
        model=det_init.options["model"],
        epochs=cfg.det_epochs,
        imgsz=cfg.det_imgsz,
        batch=cfg.det_batch,
    )
    classifiers = {"standard": standard[0].folder, "pgd": robust[0].folder}
    options = {
        "methods": cfg.audit_methods,
        "ig_steps": cfg.audit_ig_steps,
        "steps": cfg.audit_steps,
        "eps": cfg.audit_eps,
        "step_size": cfg.audit_step_size,
        "group_by": cfg.group_by,
        "n_boot": cfg.n_boot,
        "batch_size": cfg.audit_batch_size,
    }
    audit = audit_stage(
        "audit",
        out,
        data.folder / "dataset",
        classifiers,
        settings,
        upstream=("data", "cls-standard", "cls-pgd", "det"),
        detector=detector_weights(det[0].folder),
        split="test",
        det_imgsz=cfg.det_imgsz,
        max_images=cfg.audit_max_images,
        checks=cfg.audit_checks,
        **options,
    )
    folder = out / "audit-heldout"
    heldout = audit_config(
        folder / "audit",
        folder / "fractured_val_test.csv",
        classifiers,
        settings,
        split="all",
        checks=(),
        **options,
    )
    return [
        data,
        data_det,
        *standard,
        *robust,
        *det,
        audit,
        Stage(
            "audit-heldout",
            folder,
            (Call.of(audit_heldout, manifest, heldout),),
            ("data", "cls-standard", "cls-pgd"),
        ),
    ]


def run_study(config: StudyConfig) -> StudySummary:
    """Run (or reuse) every stage of the study, then write its results page."""
    with output_lock(Path(config.effective().output)):
        return _run_study(config)


def _run_study(config: StudyConfig) -> StudySummary:
    """Run (or reuse) every stage of the study, then write its results page."""
    cfg = config.effective()
    source = Path(cfg.source)
    # the layout convert recognises: a bare images/ would pass here and fail in the first
    # stage, leaving a study folder
    if not is_fracatlas(source):
        raise DataError(
            "no FracAtlas here (expected images/Fractured and images/Non_fractured): get it "
            "with `fracdet fetch-fracatlas DIR` and set source: DIR/FracAtlas",
            source,
        )
    out = Path(cfg.output)
    runner = StageRunner.open(out, label="study", fresh=cfg.fresh, overwrite=cfg.overwrite)
    cls_init, det_init = classifier_init(cfg), detector_init(cfg)
    logger.info(
        "study (%s profile): classifier starts from %s; detector from %s",
        cfg.profile,
        cls_init.description,
        det_init.description,
    )
    ran = {stage.name: runner.run(stage) for stage in study_stages(cfg, out, cls_init, det_init)}
    folders = {
        "audit-heldout": ran["audit-heldout"] / "audit",
        "data": ran["data"],
        "data-det": ran["data-det"],
        "standard": ran["cls-standard"],
        "pgd": ran["cls-pgd"],
        "det": ran["det"],
        "audit": ran["audit"],
    }
    inits = {
        "classifier": cls_init.description,
        "detector": det_init.description,
        "classifier_pretrained": cls_init.pretrained,
        "detector_pretrained": det_init.pretrained,
    }
    return write_study_page(out, cfg, folders, runner.seconds, inits)
