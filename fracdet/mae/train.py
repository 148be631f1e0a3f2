"""``fracdet pretrain-mae``: domain-adaptive masked-autoencoder pretraining on radiographs.

The classification track's conventions, not a second set: its run folder (refuse, resume or
overwrite), its exact ``--resume`` state file, its loaders (unreadable images skipped and
recorded), warm-up + cosine schedule, precision, and torchrun DDP (rank 0 validates and
writes). Validation is the masked-patch error on fixed masks, so epochs compare fairly.

The run folder holds ``initial.*`` (the starting weights, for mae-show's comparison),
``best.*`` (lowest validation loss) and ``last.*`` MAE checkpoints, ``encoder.safetensors``
(the best encoder with timm keys, for ``train-cls --weights``), ``metrics.csv/json`` and
``train_report.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fracdet.cls.data import make_loader
from fracdet.cls.distributed import barrier, merge_from_all, train_sampler
from fracdet.cls.loop import (
    jsonable,
    log_epoch,
    skipped_rows,
    start_epoch,
    step_schedule,
    train_epoch,
    wrap_for_ddp,
    write_train_report,
)
from fracdet.cls.train_config import AugmentOptions
from fracdet.cls.train_state import (
    TrainState,
    check_run_folder,
    load_state,
    prepare_run_folder,
    save_state,
    write_history,
)
from fracdet.errors import ConfigError, DataError
from fracdet.fsutil import output_lock
from fracdet.mae.checkpoint import MAEMeta, read_mae_state, save_mae
from fracdet.mae.data import UnlabelledImages, as_split, load_unlabelled
from fracdet.mae.encoder_to_timm import export_encoder
from fracdet.mae.model import ARCHS
from fracdet.mae.reconstruction import MaskedError, masked_error
from fracdet.mae.weights import build_mae
from fracdet.provenance import records_hash, versions
from fracdet.runtime import (
    distributed_runtime,
    resolve_precision,
    seed_everything,
)

__all__ = ["MAETrainConfig", "MAETrainResult", "pretrain_mae"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MAETrainConfig(AugmentOptions):
    """Everything ``pretrain-mae`` needs; defaults follow the MAE recipe (``configs/mae.yaml``)."""

    data: Path
    output: Path = Path("runs/mae")
    arch: str = "base"  # base | large | huge (the published MAE sizes)
    pretrained: bool = False  # start from facebook/vit-mae-<arch> (online)
    weights: Path | None = None  # or a local Hugging Face folder / fracdet MAE checkpoint
    # other ViTMAEConfig fields (e.g. a tiny model)
    model_args: dict[str, Any] = field(default_factory=dict)
    image_size: int = 224
    patch_size: int | None = None  # None: the weights' own, 16 from scratch
    mask_ratio: float = 0.75
    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 0.05
    scheduler: str = "cosine"  # cosine | none, after warmup_epochs of linear warm-up
    warmup_epochs: float = 1.0
    grad_clip: float | None = None
    val_fraction: float = 0.1  # held out when the data has no val split
    rotate: float = 10.0
    scale_jitter: float = 0.1
    translate: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1
    augment_p: float = 0.5
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    workers: int = 2
    device: str | None = None
    seed: int = 0
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.scheduler not in ("cosine", "none"):
            raise ConfigError(f"scheduler must be one of cosine, none, got {self.scheduler!r}")
        for key, low in (("epochs", 1), ("batch_size", 1), ("image_size", 16)):
            if getattr(self, key) < low:
                raise ConfigError(f"{key} must be >= {low}, got {getattr(self, key)}")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ConfigError(f"mask_ratio must be in [0, 1), got {self.mask_ratio}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.pretrained and self.weights is not None:
            raise ConfigError(
                "pretrained and weights exclude each other: --weights already names the "
                "starting weights"
            )


@dataclass
class MAETrainResult:
    """Where the run went and what adaptation did to the validation error."""

    run_dir: Path
    best: Path
    last: Path
    encoder: Path
    best_epoch: int
    initial: dict[str, float]
    best_val: dict[str, float]
    history: list[dict[str, Any]]
    skipped: list[dict[str, str]] = field(default_factory=list)

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        return (
            f"best epoch {self.best_epoch}: val masked-patch MSE {self.initial['mse']:.4f} -> "
            f"{self.best_val['mse']:.4f} "
            f"(loss {self.initial['loss']:.4f} -> {self.best_val['loss']:.4f}); encoder for "
            f"train-cls -> {self.encoder}"
        )


def pretrain_mae(
    cfg: MAETrainConfig, *, on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None
) -> MAETrainResult | None:
    """Train and return the run's result; ``on_epoch_end(epoch, row)`` runs after each epoch's
    checkpoint.

    Under torchrun only rank 0 validates and writes, so the other processes return ``None``.
    """
    with output_lock(cfg.output):
        return _pretrain_mae(cfg, on_epoch_end=on_epoch_end)


def _pretrain_mae(
    cfg: MAETrainConfig, *, on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None
) -> MAETrainResult | None:
    """Train and return the run's result; ``on_epoch_end(epoch, row)`` runs after each epoch's
    checkpoint.

    Under torchrun only rank 0 validates and writes, so the other processes return ``None``.
    """
    runtime = distributed_runtime(cfg.device)
    images = load_unlabelled(cfg.data, val_fraction=cfg.val_fraction, seed=cfg.seed)
    precision = resolve_precision(cfg.precision, runtime.device)
    seed_everything(cfg.seed)
    model, init = build_mae(
        arch=cfg.arch,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        mask_ratio=cfg.mask_ratio,
        pretrained=cfg.pretrained,
        weights=cfg.weights,
        model_args=cfg.model_args,
    )
    model.to(runtime.device)
    # The MAE recipe's AdamW (beta2 0.95); the fixed position embeddings have requires_grad False.
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=cfg.lr,
        betas=(0.9, 0.95),
        weight_decay=cfg.weight_decay,
    )
    sampler = train_sampler(
        np.zeros(len(images.train), dtype=np.int64),
        imbalance="none",
        runtime=runtime,
        num_classes=1,
        seed=cfg.seed,
    )
    generator = torch.Generator()
    pin = runtime.device.type == "cuda"
    train_loader = make_loader(
        as_split(images.train),
        cfg.image_size,
        batch_size=cfg.batch_size,
        augment=cfg.augment,
        seed=cfg.seed,
        shuffle=True,
        sampler=sampler,
        workers=cfg.workers,
        pin_memory=pin,
        generator=generator,
        drop_last=len(images.train) > cfg.batch_size,
    )
    val_loader = make_loader(
        as_split(images.val),
        cfg.image_size,
        batch_size=cfg.batch_size,
        workers=cfg.workers,
        pin_memory=pin,
    )
    scheduler = step_schedule(cfg, optimizer, len(train_loader))
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=precision == "fp16")
    # As in train-cls: the run folder is made (or replaced) only once data and model are known
    # good; here that includes validation images that read, or no epoch could name a best.
    initial = None
    if runtime.is_main and not cfg.resume:
        check_run_folder(cfg.output, resume=cfg.resume, overwrite=cfg.overwrite)
        initial = masked_error(
            model,
            val_loader,
            device=runtime.device,
            precision=precision,
            seed=cfg.seed,
            description="validate start",
        )
        if initial.images == 0:
            example = f" (e.g. {initial.failures[0][1]})" if initial.failures else ""
            raise DataError(
                f"none of the {len(images.val)} validation images could be read{example}: "
                "nothing to validate on",
                cfg.data,
            )
    out = prepare_run_folder(
        cfg.output, resume=cfg.resume, overwrite=cfg.overwrite, runtime=runtime
    )
    data_hash = records_hash([(str(r.path), r.split) for r in images.train + images.val])
    meta = MAEMeta.of(
        model,
        init,
        train_config=jsonable(asdict(cfg)),
        data_hash=data_hash,
        versions={**versions(), **versions(["transformers"])},
    )
    state = TrainState()
    if cfg.resume:
        state = load_state(out, model, optimizer, scheduler, None, scaler, runtime=runtime)
    elif initial is not None:
        save_mae(
            model,
            replace(meta, epoch=0, metrics=_val_metrics(initial)),
            out / "initial.safetensors",
        )
    net = wrap_for_ddp(model, runtime)
    if runtime.is_main:
        logger.info(
            "pretrain-mae: %d train / %d val images, %s, precision %s%s",
            len(images.train),
            len(images.val),
            runtime.device,
            precision,
            f", {runtime.world_size} processes" if runtime.distributed else "",
        )
    for epoch in range(state.epoch, cfg.epochs):
        start_epoch(train_loader, generator, sampler, seed=cfg.seed, epoch=epoch)
        row = train_epoch(
            net,
            model,
            train_loader,
            optimizer,
            scheduler,
            scaler,
            lambda batch: net(batch.images.to(runtime.device, non_blocking=True)).loss,
            precision=precision,
            runtime=runtime,
            epoch=epoch,
            epochs=cfg.epochs,
            grad_clip=cfg.grad_clip,
            state=state,
            data=Path(cfg.data),
            out=out,
        )
        if runtime.is_main:
            val = masked_error(
                model, val_loader, device=runtime.device, precision=precision, seed=cfg.seed
            )
            state.record_failures(val.failures, images.val)
            row.update(val_loss=val.loss, val_mse=val.mse)
            epoch_meta = replace(meta, epoch=epoch + 1, metrics=_val_metrics(val))
            # TrainState keeps "higher is better": the score is the negated loss
            if not np.isnan(val.loss) and -val.loss > state.best_score:
                state.best_score, state.best_epoch = -val.loss, epoch
                save_mae(model, epoch_meta, out / "best.safetensors")
            state.epoch = epoch + 1
            state.history.append(row)
            save_mae(model, epoch_meta, out / "last.safetensors")
            save_state(out, state, model, optimizer, scheduler, None, scaler)
            write_history(out, state.history)
            log_epoch(logger, epoch, cfg.epochs, row)
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
    state.skipped = merge_from_all(state.skipped, runtime)
    result = _finish(cfg, out, state, images) if runtime.is_main else None
    barrier(runtime)
    return result


def _val_metrics(error: MaskedError) -> dict[str, float]:
    return {"val_loss": error.loss, "val_mse": error.mse, "val_images": error.images}


def _finish(
    cfg: MAETrainConfig, out: Path, state: TrainState, images: UnlabelledImages
) -> MAETrainResult:
    """Export the best encoder for timm and write the run report."""
    skipped = skipped_rows(state) + images.skipped
    # every validation loss was NaN: nothing to call best
    if not (out / "best.safetensors").is_file():
        example = f" (e.g. {skipped[0]['reason']})" if skipped else ""
        raise DataError(
            f"none of the {len(images.val)} validation images could be read{example}: no best "
            "weights",
            out,
        )
    best_meta, best_state, best_path = read_mae_state(out / "best.safetensors")
    initial_meta, _, _ = read_mae_state(out / "initial.safetensors")
    info = {
        "from": str(best_path),
        "epoch": best_meta.epoch,
        "metrics": best_meta.metrics,
        "init": best_meta.init,
    }
    encoder = export_encoder(
        best_state, best_meta.hf_config, out / "encoder.safetensors", info=info
    )
    initial = {"loss": initial_meta.metrics["val_loss"], "mse": initial_meta.metrics["val_mse"]}
    best = {"loss": best_meta.metrics["val_loss"], "mse": best_meta.metrics["val_mse"]}
    write_train_report(
        logger,
        out,
        cfg,
        state,
        skipped=skipped,
        versions=best_meta.versions,
        data_hash=best_meta.data_hash,
        what="file(s)",
        initial_val=initial,
        best_val=best,
        init=best_meta.init,
        train_images=len(images.train),
        val_images=len(images.val),
        encoder=str(encoder),
    )
    return MAETrainResult(
        out,
        best_path,
        out / "last.safetensors",
        encoder,
        state.best_epoch + 1,
        initial,
        best,
        state.history,
        skipped,
    )
