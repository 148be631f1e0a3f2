"""Commands that make models: ``train-cls``, ``import-cls``, ``pretrain-mae``, ``mae-show``,
``train-det``."""

from __future__ import annotations

from fracdet.cli.edge import clean_errors, echo_line
from fracdet.cli_options import (
    ConfigOpt,
    DeviceOpt,
    ExactResumeOpt,
    OverwriteOpt,
    PrecisionOpt,
    SeedOpt,
    TrustPickleOpt,
    WorkersOpt,
)
from fracdet.cli_options.train import ImportCls, MaeShow, PretrainMae, TrainCls, TrainDet

__all__ = ["train_cls", "import_cls", "pretrain_mae", "mae_show", "train_det"]


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
    echo_line(result)


@clean_errors
def import_cls(
    source: ImportCls.source,
    arch: ImportCls.arch,
    output: ImportCls.output = None,
    input_size: ImportCls.input_size = None,
    resize: ImportCls.resize = None,
    mean: ImportCls.mean = None,
    std: ImportCls.std = None,
    normalize: ImportCls.normalize = None,
    channels: ImportCls.channels = None,
    head: ImportCls.head = None,
    class_names: ImportCls.class_names = None,
    fracture_index: ImportCls.fracture_index = None,
    threshold: ImportCls.threshold = None,
    strip_prefix: ImportCls.strip_prefix = None,
    rename_map: ImportCls.rename_map = None,
    allow_missing: ImportCls.allow_missing = False,
    allow_unexpected: ImportCls.allow_unexpected = False,
    cam_layer: ImportCls.cam_layer = None,
    samples: ImportCls.samples = None,
    seed: SeedOpt = None,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Import a PyTorch classifier (timm / torchvision state dict, or TorchScript) as a fracdet
    classifier that eval-cls, audit and predict take; verified against the original."""
    from fracdet.cls.importer import ImportClsConfig, import_classifier
    from fracdet.config import build_config

    cfg = build_config(
        ImportClsConfig,
        config,
        source=source,
        arch=arch,
        output=output,
        input_size=input_size,
        resize=resize,
        mean=mean,
        std=std,
        normalize=normalize,
        channels=channels,
        head=head,
        class_names=class_names,
        fracture_index=fracture_index,
        threshold=threshold,
        strip_prefixes=strip_prefix,
        rename_map=rename_map,
        allow_missing=allow_missing or None,
        allow_unexpected=allow_unexpected or None,
        cam_layer=cam_layer,
        samples=samples,
        seed=seed,
        overwrite=overwrite or None,
    )
    echo_line(import_classifier(cfg))


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
    echo_line(result)


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
    echo_line(show_mae(cfg))


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
    echo_line(train_detector(cfg))
