"""``fracdet train-cls``: train a timm classifier on a convert manifest.

Full fine-tuning, a linear probe (frozen backbone) or partial unfreezing; clean, PGD-AT or
TRADES training; mixed precision and channels-last; early stopping on validation AUROC;
``best``/``last`` checkpoints and an exact ``--resume``; torchrun DDP. At the end the
temperature and the decision threshold are fitted on the validation split and stored in the
``best`` checkpoint, so eval-cls, predict and the audit use the same operating point.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fracdet.cls.calibration import apply_temperature
from fracdet.cls.checkpoint import ClassifierMeta, save_classifier
from fracdet.cls.data import load_split, make_loader
from fracdet.cls.distributed import (
    barrier,
    broadcast_flag,
    merge_from_all,
    train_sampler,
)
from fracdet.cls.inference import Predictions, predict_logits
from fracdet.cls.loop import (
    jsonable,
    log_epoch,
    start_epoch,
    step_schedule,
    train_epoch,
    wrap_for_ddp,
)
from fracdet.cls.losses import class_weights, make_criterion
from fracdet.cls.model import create_classifier, set_trainable
from fracdet.cls.robustbench import is_robustbench
from fracdet.cls.train_config import ClsTrainConfig
from fracdet.cls.train_report import TrainResult, finish_run
from fracdet.cls.train_state import (
    TrainState,
    load_state,
    prepare_run_folder,
    save_state,
    write_history,
)
from fracdet.data.geometry import keeps_aspect
from fracdet.errors import DataError
from fracdet.fsutil import output_lock
from fracdet.provenance import records_hash, versions
from fracdet.robust.pgd import classification_loss, pgd_attack, trades_loss
from fracdet.runtime import (
    Runtime,
    distributed_runtime,
    resolve_precision,
    seed_everything,
)

__all__ = ["ClsTrainConfig", "TrainResult", "train_classifier", "validation_score"]

logger = logging.getLogger(__name__)


def validation_score(preds: Predictions, num_outputs: int) -> tuple[float, str]:
    """Validation AUROC (macro one-vs-rest for multi-class); accuracy when AUROC is undefined."""
    from sklearn.metrics import roc_auc_score

    if len(preds.labels) == 0:
        return float("nan"), "none"
    probs = apply_temperature(preds.logits)
    present = np.unique(preds.labels)
    if num_outputs == 1 and len(present) == 2:
        return float(roc_auc_score(preds.labels, probs)), "auroc"
    if num_outputs > 1 and len(present) == probs.shape[1]:
        return float(
            roc_auc_score(preds.labels, probs, multi_class="ovr", average="macro")
        ), "auroc"
    predicted = (probs >= 0.5).astype(int) if num_outputs == 1 else probs.argmax(1)
    return float((predicted == preds.labels).mean()), "accuracy"


def _optimizer(cfg: ClsTrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=True
    )


def train_classifier(
    cfg: ClsTrainConfig, *, on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None
) -> TrainResult | None:
    """Train and return the run's result; ``on_epoch_end(epoch, row)`` runs after each epoch's
    checkpoint.

    Under torchrun only rank 0 validates, calibrates and writes the run, so the other
    processes return ``None``: they have no result of their own to report.
    """
    with output_lock(cfg.output):
        return _train_classifier(cfg, on_epoch_end=on_epoch_end)


def _train_classifier(
    cfg: ClsTrainConfig, *, on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None
) -> TrainResult | None:
    """Train and return the run's result; ``on_epoch_end(epoch, row)`` runs after each epoch's
    checkpoint.

    Under torchrun only rank 0 validates, calibrates and writes the run, so the other
    processes return ``None``: they have no result of their own to report.
    """
    runtime = distributed_runtime(cfg.device)
    train = load_split(cfg.manifest, "train", target=cfg.target)
    val = load_split(cfg.manifest, "val", target=cfg.target, class_names=train.class_names)
    if not train.records or not val.records:
        raise DataError(
            f"the {'train' if not train.records else 'val'} split has no usable images for "
            f"target {cfg.target!r}",
            cfg.manifest,
        )
    names = train.class_names
    num_outputs = 1 if len(names) == 2 else len(names)
    present = set(train.labels.tolist())
    if len(present) < 2:
        raise DataError(
            f"the train split holds one class only ({names[next(iter(present))]}): nothing to "
            "learn",
            cfg.manifest,
        )
    precision = resolve_precision(cfg.precision, runtime.device)
    seed_everything(cfg.seed)
    model = create_classifier(
        cfg.model_name,
        num_outputs=num_outputs,
        pretrained=cfg.pretrained,
        weights=cfg.weights,
        image_size=cfg.image_size,
        global_pool=cfg.global_pool,
    )
    if is_robustbench(cfg.backbone) and not (cfg.pretrained or cfg.weights):
        logger.warning(
            "%s starts from random weights: the robust-transfer study needs the zoo's "
            "(--pretrained, or --weights FILE|DIR offline)",
            cfg.model_name,
        )
    n_trainable = set_trainable(model, cfg.mode, unfreeze_blocks=cfg.unfreeze_blocks)
    model.to(runtime.device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _optimizer(cfg, params)
    weights = class_weights(train.labels, len(names)) if cfg.imbalance == "loss" else None
    criterion = make_criterion(
        cfg.loss, num_outputs=num_outputs, weights=weights, gamma=cfg.focal_gamma
    )
    sampler = train_sampler(
        train.labels,
        imbalance=cfg.imbalance,
        runtime=runtime,
        num_classes=len(names),
        seed=cfg.seed,
    )
    generator = torch.Generator()
    pin = runtime.device.type == "cuda"
    keep_aspect = keeps_aspect(cfg.resize)
    train_loader = make_loader(
        train,
        cfg.image_size,
        batch_size=cfg.batch_size,
        augment=cfg.augment,
        seed=cfg.seed,
        shuffle=True,
        sampler=sampler,
        workers=cfg.workers,
        pin_memory=pin,
        generator=generator,
        drop_last=len(train.records) > cfg.batch_size,  # a one-image batch breaks BatchNorm
        keep_aspect=keep_aspect,
    )
    val_loader = make_loader(
        val,
        cfg.image_size,
        batch_size=cfg.batch_size,
        workers=cfg.workers,
        pin_memory=pin,
        keep_aspect=keep_aspect,
    )
    # the validation pass: each epoch's score, then the calibration of the best weights
    predict_val = functools.partial(
        predict_logits,
        model,
        val_loader,
        device=runtime.device,
        precision=precision,
        channels_last=cfg.channels_last,
    )
    scheduler = step_schedule(cfg, optimizer, len(train_loader))
    plateau = (
        torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=0.5, patience=max(cfg.patience // 2, 1)
        )
        if cfg.scheduler == "plateau"
        else None
    )
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=precision == "fp16")
    # The run folder is made (or an old run replaced) only once data and model are known good:
    # a bad manifest or --weights file leaves nothing behind and deletes nothing.
    out = prepare_run_folder(
        cfg.output, resume=cfg.resume, overwrite=cfg.overwrite, runtime=runtime
    )
    state = TrainState()
    if cfg.resume:
        state = load_state(out, model, optimizer, scheduler, plateau, scaler, runtime=runtime)
    net = wrap_for_ddp(model, runtime)
    data_hash = records_hash([(str(r.path), r.label, r.split) for r in train.records + val.records])
    meta = ClassifierMeta(
        backbone=cfg.model_name,
        class_names=names,
        image_size=cfg.image_size,
        global_pool=cfg.global_pool,
        backbone_args=model.backbone_args,
        resize=cfg.resize,
        mean=tuple(model.mean.flatten().tolist()),
        std=tuple(model.std.flatten().tolist()),
        backbone_info=dict(getattr(model.backbone, "backbone_info", {})),
        train_config=jsonable(asdict(cfg)),
        data_hash=data_hash,
        versions=versions(),
    )
    writer = _tensorboard(out) if runtime.is_main else None
    if runtime.is_main:
        logger.info(
            "train-cls: %s (%s, %d trainable params), %d train / %d val images, %s, precision "
            "%s, adv %s%s",
            cfg.model_name,
            cfg.mode,
            n_trainable,
            len(train.records),
            len(val.records),
            runtime.device,
            precision,
            cfg.adv,
            f", {runtime.world_size} processes" if runtime.distributed else "",
        )
    loss_of = _batch_loss(cfg, net, model, criterion, runtime)
    for epoch in range(state.epoch, cfg.epochs):
        start_epoch(train_loader, generator, sampler, seed=cfg.seed, epoch=epoch)
        row = train_epoch(
            net,
            model,
            train_loader,
            optimizer,
            scheduler,
            scaler,
            loss_of,
            precision=precision,
            runtime=runtime,
            epoch=epoch,
            epochs=cfg.epochs,
            grad_clip=cfg.grad_clip,
            state=state,
            data=Path(cfg.manifest),
            out=out,
        )
        stop = False
        if runtime.is_main:
            preds = predict_val(description="validate")
            state.record_failures(preds.failures, val.records)
            score, score_name = validation_score(preds, num_outputs)
            val_loss = (
                float(
                    classification_loss(
                        torch.from_numpy(preds.logits), torch.from_numpy(preds.labels)
                    )
                    / max(len(preds.labels), 1)
                )
                if len(preds.labels)
                else float("nan")
            )
            row.update(val_loss=val_loss, **{f"val_{score_name}": score})
            if plateau is not None and not math.isnan(score):
                plateau.step(score)
            improved = not math.isnan(score) and score > state.best_score + 1e-6
            if improved:
                state.best_score, state.best_epoch, state.bad_epochs = score, epoch, 0
                save_classifier(
                    model,
                    replace(meta, epoch=epoch, metrics={"val_" + score_name: score}),
                    out / "best.safetensors",
                )
            else:
                state.bad_epochs += 1
            state.epoch = epoch + 1
            state.history.append(row)
            save_classifier(
                model,
                replace(meta, epoch=epoch, metrics={"val_" + score_name: score}),
                out / "last.safetensors",
            )
            save_state(out, state, model, optimizer, scheduler, plateau, scaler)
            write_history(out, state.history)
            if writer is not None:
                for key, value in row.items():
                    if key != "epoch" and isinstance(value, float):
                        writer.add_scalar(key, value, epoch)
            log_epoch(logger, epoch, cfg.epochs, row)
            stop = state.bad_epochs >= cfg.patience
            if stop:
                logger.info(
                    "early stop: no val %s gain for %d epochs (best %.4f at epoch %d)",
                    score_name,
                    cfg.patience,
                    state.best_score,
                    state.best_epoch + 1,
                )
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
        if broadcast_flag(stop, runtime):
            break
    if writer is not None:
        writer.close()
    state.skipped = merge_from_all(state.skipped, runtime)
    result = (
        finish_run(cfg, model, val, predict_val, out, state, train) if runtime.is_main else None
    )
    barrier(runtime)
    return result


def _batch_loss(cfg: ClsTrainConfig, net, model, criterion, runtime: Runtime):
    """``loss_of`` for :func:`~fracdet.cls.loop.train_epoch`: clean, PGD-AT or TRADES."""

    def loss_of(batch) -> torch.Tensor:
        images = batch.images.to(runtime.device, non_blocking=True)
        labels = batch.labels.to(runtime.device, non_blocking=True)
        if cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if cfg.adv == "trades":
            return trades_loss(
                net,
                images,
                labels,
                cfg.pgd,
                beta=cfg.trades_beta,
                natural_loss=criterion,
                attack_model=model,
            )
        if cfg.adv == "pgd":
            images = pgd_attack(model, images, labels, cfg.pgd)
        return criterion(net(images), labels)

    return loss_of


def _tensorboard(out: Path):
    """A SummaryWriter when tensorboard is installed (optional), else ``None``."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tensorboard"))
