"""Evaluation commands: ``eval-det``, ``eval-cls``."""

from __future__ import annotations

from fracdet.cli.edge import clean_errors, echo_line
from fracdet.cli_options import (
    ConfigOpt,
    DeviceOpt,
    OverwriteOpt,
    PrecisionOpt,
    SeedOpt,
    TrustPickleOpt,
    WorkersOpt,
)
from fracdet.cli_options.evaluate import EvalCls, EvalDet

__all__ = ["eval_det", "eval_cls"]


@clean_errors
def eval_det(
    weights: EvalDet.weights,
    data: EvalDet.data,
    split: EvalDet.split = None,
    output: EvalDet.output = None,
    imgsz: EvalDet.imgsz = None,
    batch: EvalDet.batch = None,
    conf: EvalDet.conf = None,
    iou: EvalDet.iou = None,
    image_threshold: EvalDet.image_threshold = None,
    no_ultralytics_val: EvalDet.no_ultralytics_val = False,
    n_boot: EvalDet.n_boot = None,
    device: EvalDet.device = None,
    seed: SeedOpt = None,
    trust_pickle: TrustPickleOpt = False,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Score a detector with pycocotools COCOeval (mAP) and as an image-level fracture test."""
    from fracdet.config import build_config
    from fracdet.det.evaluate import DetEvalConfig, evaluate_detector

    cfg = build_config(
        DetEvalConfig,
        config,
        weights=weights,
        data=data,
        split=split,
        output=output,
        imgsz=imgsz,
        batch=batch,
        conf=conf,
        iou=iou,
        image_threshold=image_threshold,
        ultralytics_val=False if no_ultralytics_val else None,
        n_boot=n_boot,
        device=device,
        seed=seed,
        overwrite=overwrite or None,
        trust_pickle=trust_pickle or None,
    )
    echo_line(evaluate_detector(cfg))


@clean_errors
def eval_cls(
    checkpoint: EvalCls.checkpoint,
    manifest: EvalCls.manifest,
    split: EvalCls.split = None,
    output: EvalCls.output = None,
    batch_size: EvalCls.batch_size = None,
    n_boot: EvalCls.n_boot = None,
    precision: PrecisionOpt = None,
    device: DeviceOpt = None,
    workers: WorkersOpt = None,
    seed: SeedOpt = None,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Score a classifier on a split: AUROC, sensitivity/specificity, calibration, CIs, figures."""
    from fracdet.cls.evaluate import EvalClsConfig, evaluate_classifier
    from fracdet.config import build_config

    cfg = build_config(
        EvalClsConfig,
        config,
        checkpoint=checkpoint,
        manifest=manifest,
        split=split,
        output=output,
        batch_size=batch_size,
        n_boot=n_boot,
        precision=precision,
        device=device,
        workers=workers,
        seed=seed,
        overwrite=overwrite or None,
    )
    echo_line(evaluate_classifier(cfg))
