"""Classifier training under torchrun: the barrier, rank 0's decisions shared, the data sampler.

Each helper is a no-op (or the single-process choice) when the run has one process, so the
training loop reads the same with and without torchrun.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch.utils.data import Sampler

from fracdet.cls.losses import class_weights
from fracdet.errors import ConfigError
from fracdet.runtime import Runtime

__all__ = ["barrier", "broadcast_flag", "train_sampler"]

logger = logging.getLogger(__name__)


def barrier(runtime: Runtime) -> None:
    """Wait until every process gets here (e.g. rank 0 has created the run folder)."""
    if runtime.distributed:
        import torch.distributed as dist

        dist.barrier()


def broadcast_flag(flag: bool, runtime: Runtime) -> bool:
    """Rank 0's ``flag`` in every process: only rank 0 validates, so it alone decides to stop."""
    if not runtime.distributed:
        return flag
    import torch.distributed as dist

    tensor = torch.tensor(
        [int(flag)], device=runtime.device if runtime.device.type == "cuda" else "cpu"
    )
    dist.broadcast(tensor, src=0)
    return bool(tensor.item())


def all_sum(value: int, runtime: Runtime) -> int:
    """``value`` summed over every process (itself when not distributed)."""
    if not runtime.distributed:
        return value
    import torch.distributed as dist

    tensor = torch.tensor(
        [value], device=runtime.device if runtime.device.type == "cuda" else "cpu"
    )
    dist.all_reduce(tensor)
    return int(tensor.item())


def any_rank(flag: bool, runtime: Runtime) -> bool:
    """Whether ``flag`` holds in any process (itself when not distributed).

    DDP all-reduces gradients at every backward, so a step must be taken by every process or
    by none: a process whose batch holds no readable image makes all of them skip it.
    """
    return all_sum(int(flag), runtime) > 0


def merge_from_all(mapping: dict[str, str], runtime: Runtime) -> dict[str, str]:
    """``mapping`` merged over every process (each reads its own share of the images, so each
    knows only its own skipped files; the report rank 0 writes must list them all)."""
    if not runtime.distributed:
        return mapping
    import torch.distributed as dist

    parts: list[dict[str, str] | None] = [None] * runtime.world_size
    dist.all_gather_object(parts, mapping)
    return {key: value for part in parts for key, value in (part or {}).items()}


def train_sampler(
    labels: np.ndarray, *, imbalance: str, runtime: Runtime, num_classes: int, seed: int
) -> Sampler | None:
    """How training images are drawn: sharded across torchrun's processes, class-weighted
    (``imbalance="sampler"``), or ``None`` for the loader's own shuffling.

    Weighted sampling is refused under torchrun: DistributedSampler shards a fixed order and
    cannot also draw with replacement by weight; class weights in the loss do the same job.
    """
    if runtime.distributed:
        if imbalance == "sampler":
            raise ConfigError(
                "imbalance 'sampler' cannot be combined with torchrun; use imbalance 'loss'"
            )
        from torch.utils.data.distributed import DistributedSampler

        return DistributedSampler(
            range(len(labels)),
            num_replicas=runtime.world_size,
            rank=runtime.rank,
            shuffle=True,
            seed=seed,
        )
    if imbalance == "sampler":
        from torch.utils.data import WeightedRandomSampler

        weights = class_weights(labels, num_classes).numpy()[labels]
        return WeightedRandomSampler(
            torch.as_tensor(weights, dtype=torch.double), num_samples=len(weights), replacement=True
        )
    return None
