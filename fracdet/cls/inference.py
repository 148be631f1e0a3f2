"""Batched classifier inference shared by training (validation), eval-cls and the audit."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader

from fracdet.log import progress
from fracdet.runtime import autocast

__all__ = ["Predictions", "predict_logits"]


@dataclass
class Predictions:
    """Logits (``(N,)`` binary or ``(N, C)``), labels and dataset indices of the images that
    loaded.
    """

    logits: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    failures: list[tuple[int, str]] = field(default_factory=list)


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    loader: DataLoader,
    *,
    device: torch.device,
    precision: str = "fp32",
    description: str = "predict",
    channels_last: bool = False,
) -> Predictions:
    """Run ``model`` in eval mode over ``loader`` (batches from
    :func:`collate_skipping_failures`).
    """
    was_training = model.training
    model.eval()
    logits, labels, indices, failures = [], [], [], []
    try:
        for batch in progress(loader, description, total=len(loader)):
            failures.extend(batch.failures)
            if len(batch) == 0:
                continue
            images = batch.images.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast(device, precision):
                out = model(images)
            logits.append(out.float().cpu())
            labels.append(batch.labels)
            indices.append(batch.indices)
    finally:
        model.train(was_training)
    if not logits:
        return Predictions(
            np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64), failures
        )
    return Predictions(
        torch.cat(logits).numpy(), torch.cat(labels).numpy(), torch.cat(indices).numpy(), failures
    )
