"""The ``fracdet`` command line: thin commands that build a config and call the library.

Every command is an example of the library, not the only door to it: each one builds a
typed config and calls one function a Python user can call too.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from fracdet import __version__
from fracdet.cli_options import (
    ConfigOpt,
    DeviceOpt,
    ExactResumeOpt,
    FreshOpt,
    OverwriteOpt,
    PrecisionOpt,
    SeedOpt,
    TrustPickleOpt,
    WorkersOpt,
)
from fracdet.cli_options.data import Convert, Demo, FetchFracatlas, Phantoms, Run
from fracdet.cli_options.evaluate import Audit, EvalCls, EvalDet, Merge, Predict
from fracdet.cli_options.train import MaeShow, PretrainMae, TrainCls, TrainDet
from fracdet.errors import ConfigError, FracdetError
from fracdet.log import setup_logging

__all__ = ["app"]

logger = logging.getLogger("fracdet")
F = TypeVar("F", bound=Callable[..., object])

app = typer.Typer(
    name="fracdet",
    help="Bone-fracture radiographs: convert data, train and audit detectors and classifiers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def clean_errors(func: F) -> F:
    """Turn a :class:`FracdetError` into one line on stderr and a non-zero exit code."""

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return func(*args, **kwargs)
        except FracdetError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo(
                (
                    "interrupted: finished outputs are kept, unfinished ones were not written "
                    "(training and predict: rerun with --resume)"
                ),
                err=True,
            )
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fracdet {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug messages.")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only warnings and errors; no progress bars.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Bone-fracture radiographs: convert data, train and audit detectors and classifiers."""
    setup_logging(verbose=verbose, quiet=quiet)


@app.command()
@clean_errors
def phantoms(
    output: Phantoms.output,
    count: Phantoms.count = None,
    size: Phantoms.size = None,
    seed: SeedOpt = None,
    prevalence: Phantoms.prevalence = None,
    max_fractures: Phantoms.max_fractures = None,
    image_format: Phantoms.image_format = None,
    shortcut_rate: Phantoms.shortcut_rate = None,
    crack_scale: Phantoms.crack_scale = None,
    workers: Phantoms.workers = None,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Generate synthetic radiograph phantoms with known fracture boxes, in FracAtlas layout."""
    from data_tools.phantoms import PhantomConfig, generate_phantoms
    from fracdet.config import build_config

    cfg = build_config(
        PhantomConfig,
        config,
        output=output,
        count=count,
        size=size,
        seed=seed,
        prevalence=prevalence,
        max_fractures=max_fractures,
        image_format=image_format,
        shortcut_rate=shortcut_rate,
        crack_scale=crack_scale,
        workers=workers,
        overwrite=overwrite or None,
    )
    generate_phantoms(cfg)
    typer.echo(f"phantoms written to {cfg.output}")


@app.command()
@clean_errors
def convert(
    source: Convert.source,
    output: Convert.output,
    source_format: Convert.source_format = None,
    targets: Convert.targets = None,
    copy: Convert.copy = False,
    symlink: Convert.symlink = False,
    split: Convert.split = None,
    fractions: Convert.fractions = None,
    seed: SeedOpt = None,
    group_regex: Convert.group_regex = None,
    images_root: Convert.images_root = None,
    full_check: Convert.full_check = False,
    official_only: Convert.official_only = False,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Convert between FracAtlas, YOLO and COCO; write splits, a manifest and a report."""
    from fracdet.config import build_config
    from fracdet.data.convert import ConvertConfig
    from fracdet.data.convert import convert as run_convert

    if copy and symlink:
        raise ConfigError("--copy and --symlink exclude each other; pass one (default: hard links)")
    link = "copy" if copy else "symlink" if symlink else None
    cfg = build_config(
        ConvertConfig,
        config,
        source=source,
        output=output,
        source_format=source_format,
        targets=targets,
        link=link,
        split=split,
        fractions=fractions,
        seed=seed,
        group_regex=group_regex,
        images_root=images_root,
        full_check=full_check or None,
        official_only=official_only or None,
        overwrite=overwrite or None,
    )
    typer.echo(run_convert(cfg).line())


@app.command()
@clean_errors
def demo(
    output: Demo.output = Path("reports/demo"),
    quick: Demo.quick = False,
    fresh: FreshOpt = False,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    config: Demo.config = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Show what fracdet is for on built-in phantoms:
    three classifiers audited against a detector."""
    from fracdet.config import build_config, config_file
    from fracdet.demo import DEFAULT_CONFIG_FILE, DemoConfig, run_demo

    cfg = build_config(
        DemoConfig,
        config_file(config, DEFAULT_CONFIG_FILE),
        output=output,
        profile="quick" if quick else None,  # the quick profile of the config
        fresh=fresh or None,
        device=device,
        seed=seed,
        overwrite=overwrite or None,
    )
    typer.echo(run_demo(cfg).line())


@app.command("run")
@clean_errors
def run_study_command(
    config: Run.config,
    profile: Run.profile = None,
    source: Run.source = None,
    output: Run.output = None,
    fresh: FreshOpt = False,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Run a study from its config: convert, train both classifiers and the detector, audit, one
    results page.
    """
    from fracdet.config import build_config
    from fracdet.study import StudyConfig, run_study

    cfg = build_config(
        StudyConfig,
        config,
        profile=profile,
        source=source,
        output=output,
        fresh=fresh or None,
        device=device,
        seed=seed,
        overwrite=overwrite or None,
    )
    typer.echo(run_study(cfg).line())


@app.command()
@clean_errors
def fetch_fracatlas(
    output: FetchFracatlas.output,
    from_zip: FetchFracatlas.from_zip = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Download the real FracAtlas from figshare (or extract a zip), check MD5 and layout."""
    from data_tools.fracatlas_download import get_fracatlas

    report = get_fracatlas(output, from_zip=from_zip, overwrite=overwrite)
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(report.line())


@app.command("train-cls")
@clean_errors
def train_cls(
    manifest: TrainCls.manifest,
    output: TrainCls.output = None,
    backbone: TrainCls.backbone = None,
    rb_dataset: TrainCls.rb_dataset = None,
    rb_threat: TrainCls.rb_threat = None,
    target: TrainCls.target = None,
    pretrained: TrainCls.pretrained = False,
    weights: TrainCls.weights = None,
    freeze_backbone: TrainCls.freeze_backbone = False,
    mode: TrainCls.mode = None,
    unfreeze_blocks: TrainCls.unfreeze_blocks = None,
    image_size: TrainCls.image_size = None,
    resize: TrainCls.resize = None,
    global_pool: TrainCls.global_pool = None,
    epochs: TrainCls.epochs = None,
    batch_size: TrainCls.batch_size = None,
    lr: TrainCls.lr = None,
    optimizer: TrainCls.optimizer = None,
    scheduler: TrainCls.scheduler = None,
    patience: TrainCls.patience = None,
    imbalance: TrainCls.imbalance = None,
    loss: TrainCls.loss = None,
    adv: TrainCls.adv = None,
    adv_eps: TrainCls.adv_eps = None,
    adv_steps: TrainCls.adv_steps = None,
    adv_step_size: TrainCls.adv_step_size = None,
    threshold_method: TrainCls.threshold_method = None,
    threshold_target: TrainCls.threshold_target = None,
    precision: PrecisionOpt = None,
    device: DeviceOpt = None,
    workers: WorkersOpt = None,
    seed: SeedOpt = None,
    resume: ExactResumeOpt = False,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Train a timm or RobustBench classifier (fractured / not) from a convert manifest;
    torchrun-ready."""
    from fracdet.cls.train import ClsTrainConfig, train_classifier
    from fracdet.config import build_config

    cfg = build_config(
        ClsTrainConfig,
        config,
        manifest=manifest,
        output=output,
        backbone=backbone,
        rb_dataset=rb_dataset,
        rb_threat=rb_threat,
        target=target,
        pretrained=pretrained or None,
        weights=weights,
        mode="linear" if freeze_backbone else mode,
        unfreeze_blocks=unfreeze_blocks,
        image_size=image_size,
        resize=resize,
        global_pool=global_pool,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        scheduler=scheduler,
        patience=patience,
        imbalance=imbalance,
        loss=loss,
        adv=adv,
        adv_eps=adv_eps,
        adv_steps=adv_steps,
        adv_step_size=adv_step_size,
        threshold_method=threshold_method,
        threshold_target=threshold_target,
        precision=precision,
        device=device,
        workers=workers,
        seed=seed,
        resume=resume or None,
        overwrite=overwrite or None,
    )
    result = train_classifier(cfg)
    if result is not None:  # None in torchrun's other processes: rank 0 alone reports
        typer.echo(result.line())


@app.command("pretrain-mae")
@clean_errors
def pretrain_mae(
    data: PretrainMae.data,
    output: PretrainMae.output = None,
    arch: PretrainMae.arch = None,
    pretrained: PretrainMae.pretrained = False,
    weights: PretrainMae.weights = None,
    image_size: PretrainMae.image_size = None,
    patch_size: PretrainMae.patch_size = None,
    mask_ratio: PretrainMae.mask_ratio = None,
    epochs: PretrainMae.epochs = None,
    batch_size: PretrainMae.batch_size = None,
    lr: PretrainMae.lr = None,
    weight_decay: PretrainMae.weight_decay = None,
    warmup_epochs: PretrainMae.warmup_epochs = None,
    val_fraction: PretrainMae.val_fraction = None,
    precision: PrecisionOpt = None,
    device: DeviceOpt = None,
    workers: WorkersOpt = None,
    seed: SeedOpt = None,
    resume: ExactResumeOpt = False,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Masked-autoencoder pretraining (Hugging Face ViT-MAE) on unlabelled radiographs;
    torchrun-ready."""
    from fracdet.config import build_config
    from fracdet.mae.train import MAETrainConfig
    from fracdet.mae.train import pretrain_mae as run_pretraining

    cfg = build_config(
        MAETrainConfig,
        config,
        data=data,
        output=output,
        arch=arch,
        pretrained=pretrained or None,
        weights=weights,
        image_size=image_size,
        patch_size=patch_size,
        mask_ratio=mask_ratio,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        warmup_epochs=warmup_epochs,
        val_fraction=val_fraction,
        precision=precision,
        device=device,
        workers=workers,
        seed=seed,
        resume=resume or None,
        overwrite=overwrite or None,
    )
    result = run_pretraining(cfg)
    if result is not None:  # None in torchrun's other processes: rank 0 alone reports
        typer.echo(result.line())


@app.command("mae-show")
@clean_errors
def mae_show(
    checkpoint: MaeShow.checkpoint,
    images: MaeShow.images,
    output: MaeShow.output = None,
    split: MaeShow.split = None,
    count: MaeShow.count = None,
    max_images: MaeShow.max_images = None,
    batch_size: MaeShow.batch_size = None,
    precision: PrecisionOpt = None,
    device: DeviceOpt = None,
    workers: WorkersOpt = None,
    seed: SeedOpt = None,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """MAE reconstructions, starting vs adapted weights, and their masked-patch MSE."""
    from fracdet.config import build_config
    from fracdet.mae.show import MAEShowConfig, show_mae

    cfg = build_config(
        MAEShowConfig,
        config,
        checkpoint=checkpoint,
        images=images,
        output=output,
        split=split,
        count=count,
        max_images=max_images,
        batch_size=batch_size,
        precision=precision,
        device=device,
        workers=workers,
        seed=seed,
        overwrite=overwrite or None,
    )
    typer.echo(show_mae(cfg).line())


@app.command("train-det")
@clean_errors
def train_det(
    data: TrainDet.data,
    model: TrainDet.model = None,
    output: TrainDet.output = None,
    name: TrainDet.name = None,
    epochs: TrainDet.epochs = None,
    imgsz: TrainDet.imgsz = None,
    batch: TrainDet.batch = None,
    optimizer: TrainDet.optimizer = None,
    lr0: TrainDet.lr0 = None,
    patience: TrainDet.patience = None,
    fliplr: TrainDet.fliplr = None,
    extra: TrainDet.extra = None,
    device: TrainDet.device = None,
    workers: WorkersOpt = None,
    seed: SeedOpt = None,
    resume: TrainDet.resume = False,
    trust_pickle: TrustPickleOpt = False,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Train an Ultralytics YOLO fracture detector on a converted dataset (offline)."""
    import dataclasses

    from fracdet.config import build_config
    from fracdet.det.train import DetTrainConfig, parse_extra, train_detector

    cfg = build_config(
        DetTrainConfig,
        config,
        data=data,
        model=model,
        output=output,
        name=name,
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        optimizer=optimizer,
        lr0=lr0,
        patience=patience,
        fliplr=fliplr,
        device=device,
        workers=workers,
        seed=seed,
        resume=resume or None,
        overwrite=overwrite or None,
        trust_pickle=trust_pickle or None,
    )
    if extra:
        cfg = dataclasses.replace(cfg, extra={**cfg.extra, **parse_extra(extra)})
    typer.echo(train_detector(cfg).line())


@app.command("eval-det")
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
    typer.echo(evaluate_detector(cfg).line())


@app.command("eval-cls")
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
    summary = evaluate_classifier(cfg)
    typer.echo(summary.line())


@app.command()
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
    try:
        summary = predict_folder(cfg)
    except KeyboardInterrupt:
        typer.echo(
            (
                f"interrupted: the rows written so far are kept in {cfg.output}; rerun with "
                "--resume to continue"
            ),
            err=True,
        )
        raise typer.Exit(130) from None
    typer.echo(summary.line())


@app.command()
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
    typer.echo(join(shard_dirs, output, overwrite=overwrite).line())


@app.command()
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
    typer.echo(run_audit(cfg).line())


def run() -> None:  # pragma: no cover - console entry for `python -m fracdet`
    app(prog_name="fracdet")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
