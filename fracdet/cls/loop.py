"""The training loop's parts that ``train-cls`` and ``pretrain-mae`` share.

Both run the same loop: per-step warm-up + cosine schedule, epochs seeded the same way,
batches without a readable image skipped on every process together, mixed precision with a
gradient scaler and clipping, the same row per epoch in the metrics log. Only what a batch's
loss is differs, so that is the one thing each trainer passes in (``loss_of``). ``mae``
builds on ``cls`` (never the reverse), so the shared loop lives here.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from fracdet.cls.distributed import any_rank
from fracdet.cls.model import freeze_batchnorm
from fracdet.cls.train_state import TrainState, refuse_if_nothing_trained
from fracdet.fsutil import atomic_write_json
from fracdet.log import progress
from fracdet.runtime import Runtime, autocast

__all__ = [
    "jsonable",
    "step_schedule",
    "wrap_for_ddp",
    "start_epoch",
    "train_epoch",
    "log_epoch",
    "skipped_rows",
    "write_train_report",
]


class ScheduleConfig(Protocol):
    """What :func:`step_schedule` reads of a trainer's config."""

    epochs: int
    warmup_epochs: float
    scheduler: str


def jsonable(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` as JSON will hold them (paths and other objects as strings)."""
    return json.loads(json.dumps(values, default=str))


def step_schedule(
    cfg: ScheduleConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step linear warm-up, then cosine decay (or constant for ``plateau``/``none``)."""
    total = cfg.epochs * steps_per_epoch
    warmup = int(cfg.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.scheduler != "cosine":
            return 1.0
        progress_ = (step - warmup) / max(total - warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress_, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def wrap_for_ddp(model: nn.Module, runtime: Runtime) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel under torchrun, else ``model`` itself."""
    if not runtime.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None
    )


def start_epoch(loader, generator: torch.Generator, sampler, *, seed: int, epoch: int) -> None:
    """Seed an epoch's augmentation, shuffling and sampling from ``(seed, epoch)`` alone, so a
    resumed run draws what the uninterrupted one would have."""
    loader.dataset.epoch = epoch
    generator.manual_seed(seed + epoch)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


def train_epoch(
    net: nn.Module,
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    scaler: torch.amp.GradScaler,
    loss_of: Callable[[Any], torch.Tensor],
    *,
    precision: str,
    runtime: Runtime,
    epoch: int,
    epochs: int,
    grad_clip: float | None,
    state: TrainState,
    data: Path,
    out: Path,
) -> dict[str, Any]:
    """One pass over the training data; returns the epoch's row for the metrics log.

    ``net`` is what trains (``model`` itself or its DDP wrapper); ``loss_of(batch)`` runs
    under autocast and moves the batch to the device itself. Frozen BatchNorm layers stay in
    eval mode (a linear probe must not drift). An epoch that read no image on any process
    stops the run (:func:`~fracdet.cls.train_state.refuse_if_nothing_trained`; ``data`` and
    ``out`` name the input and the run folder in its error).
    """
    net.train()
    freeze_batchnorm(model)
    loss_sum = torch.zeros((), dtype=torch.float64)
    seen, wait, start = 0, 0.0, time.perf_counter()
    batches = (
        progress(loader, f"epoch {epoch + 1}/{epochs}", total=len(loader))
        if runtime.is_main
        else loader
    )
    tick = time.perf_counter()
    for batch in batches:
        wait += time.perf_counter() - tick
        state.record_failures(batch.failures, loader.dataset.records)
        if any_rank(len(batch) == 0, runtime):  # no readable image here (or on another process)
            tick = time.perf_counter()
            continue
        with autocast(runtime.device, precision):
            loss = loss_of(batch)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(
                [p for p in model.parameters() if p.requires_grad], grad_clip
            )
        scaler.step(optimizer)
        scaler.update()
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.detach().double().cpu() * len(batch)
        seen += len(batch)
        tick = time.perf_counter()
    elapsed = time.perf_counter() - start
    refuse_if_nothing_trained(
        seen, len(loader.dataset.records), state, data=data, out=out, runtime=runtime
    )
    return {
        "epoch": epoch + 1,
        "train_loss": float(loss_sum / max(seen, 1)),
        "lr": float(optimizer.param_groups[0]["lr"]),
        "images_per_s": seen * runtime.world_size / elapsed if elapsed > 0 else float("nan"),
        "data_wait_fraction": wait / elapsed if elapsed > 0 else float("nan"),
    }


def log_epoch(log: logging.Logger, epoch: int, epochs: int, row: dict[str, Any]) -> None:
    """The epoch's line in the trainer's log: every float of its row."""
    log.info(
        "epoch %d/%d  %s",
        epoch + 1,
        epochs,
        "  ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch" and isinstance(v, float)),
    )


def skipped_rows(state: TrainState) -> list[dict[str, str]]:
    """The images skipped during training as the run report lists them, sorted by file."""
    return [{"file": f, "reason": r} for f, r in sorted(state.skipped.items())]


def write_train_report(
    log: logging.Logger,
    out: Path,
    cfg: Any,
    state: TrainState,
    *,
    skipped: list[dict[str, str]],
    versions: dict[str, str],
    data_hash: str,
    what: str = "image(s)",
    **numbers: Any,
) -> None:
    """``train_report.json``, the run's last word: its best epoch, the trainer's own ``numbers``,
    the epochs run, what it skipped (a warning says how many ``what``), its config, the
    versions and the data hash."""
    report = {
        "best_epoch": state.best_epoch + 1,
        **numbers,
        "epochs_run": state.epoch,
        "skipped": skipped,
        "config": jsonable(asdict(cfg)),
        "versions": versions,
        "data_hash": data_hash,
    }
    path = out / "train_report.json"
    atomic_write_json(path, report)
    if skipped:
        log.warning("%d %s skipped, see %s", len(skipped), what, path)
