"""Commands that run trained models over images: ``predict``, ``merge``, ``audit``."""

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
from fracdet.cli_options.evaluate import Audit, Merge, Predict

__all__ = ["predict", "merge", "audit"]


@clean_errors
def predict(
    folder: Predict.folder,
    cls: Predict.cls = None,
    det: Predict.det = None,
    output: Predict.output = None,
    batch_size: Predict.batch_size = None,
    det_imgsz: Predict.det_imgsz = None,
    det_conf: Predict.det_conf = None,
    det_iou: Predict.det_iou = None,
    no_recursive: Predict.no_recursive = False,
    overlays: Predict.overlays = False,
    gradcam: Predict.gradcam = False,
    shard: Predict.shard = None,
    resume: Predict.resume = False,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    workers: WorkersOpt = None,
    seed: SeedOpt = None,
    trust_pickle: TrustPickleOpt = False,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Classify and/or detect fractures in every image of a folder (streaming, resumable,
    shardable).
    """
    from fracdet.config import build_config
    from fracdet.predict import PredictConfig, predict_folder

    cfg = build_config(
        PredictConfig,
        config,
        folder=folder,
        cls=cls,
        det=det,
        output=output,
        batch_size=batch_size,
        det_imgsz=det_imgsz,
        det_conf=det_conf,
        det_iou=det_iou,
        recursive=False if no_recursive else None,
        overlays=overlays or None,
        gradcam=gradcam or None,
        shard=shard,
        resume=resume or None,
        device=device,
        precision=precision,
        workers=workers,
        seed=seed,
        overwrite=overwrite or None,
        trust_pickle=trust_pickle or None,
    )
    echo_line(predict_folder(cfg))


@clean_errors
def merge(
    output: Merge.output,
    shard_dirs: Merge.shard_dirs,
    overwrite: OverwriteOpt = False,
) -> None:
    """Join sharded `fracdet predict` or `fracdet audit` runs into one (checks they match)."""
    import fracdet.audit
    import fracdet.predict
    from fracdet.jobs import run_kind

    kind = run_kind(shard_dirs[0]) if shard_dirs else None  # from the run's saved state
    join = fracdet.audit.merge_audits if kind == "audit" else fracdet.predict.merge_outputs
    echo_line(join(shard_dirs, output, overwrite=overwrite))


@clean_errors
def audit(
    dataset: Audit.dataset,
    classifiers: Audit.classifiers = None,
    names: Audit.names = None,
    detector: Audit.detector = None,
    det_imgsz: Audit.det_imgsz = None,
    det_conf: Audit.det_conf = None,
    split: Audit.split = None,
    output: Audit.output = None,
    attack: Audit.attack = None,
    attack_budget: Audit.attack_budget = None,
    eps: Audit.eps = None,
    steps: Audit.steps = None,
    step_size: Audit.step_size = None,
    restarts: Audit.restarts = None,
    eps_space: Audit.eps_space = None,
    methods: Audit.methods = None,
    target: Audit.target = None,
    channels: Audit.channels = None,
    ig_steps: Audit.ig_steps = None,
    group_by: Audit.group_by = None,
    checks: Audit.checks = None,
    check_images: Audit.check_images = None,
    causal_regions: Audit.causal_regions = None,
    max_images: Audit.max_images = None,
    batch_size: Audit.batch_size = None,
    trust_pickle: TrustPickleOpt = False,
    shard: Audit.shard = None,
    resume: Audit.resume = False,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    workers: WorkersOpt = None,
    seed: SeedOpt = None,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Audit classifiers (and a detector): clean vs PGD accuracy, attributions inside fracture
    boxes, report.
    """
    from fracdet.audit import AuditConfig, run_audit
    from fracdet.config import build_config

    cfg = build_config(
        AuditConfig,
        config,
        dataset=dataset,
        classifiers=tuple(classifiers) if classifiers else None,
        names=tuple(names) if names else None,
        detector=detector,
        det_imgsz=det_imgsz,
        det_conf=det_conf,
        split=split,
        output=output,
        attack=attack,
        attack_budget=attack_budget,
        eps=eps,
        steps=steps,
        step_size=step_size,
        restarts=restarts,
        eps_space=eps_space,
        methods=methods,
        target=target,
        channels=channels,
        ig_steps=ig_steps,
        group_by=group_by,
        checks=() if checks == "none" else checks,
        check_images=check_images,
        causal_regions=causal_regions,
        max_images=max_images,
        batch_size=batch_size,
        trust_pickle=trust_pickle or None,
        shard=shard,
        resume=resume or None,
        device=device,
        precision=precision,
        workers=workers,
        seed=seed,
        overwrite=overwrite or None,
    )
    echo_line(run_audit(cfg))
