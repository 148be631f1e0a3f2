"""Where and how models run, shared by every track: device, precision, seeding, torchrun's process
group."""

from __future__ import annotations

import contextlib
import logging
import os
import random
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from fracdet.errors import ConfigError

__all__ = [
    "Runtime",
    "resolve_device",
    "resolve_precision",
    "autocast",
    "cpu_has_fast_bf16",
    "distributed_runtime",
    "seed_everything",
    "ultralytics_device",
]

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """AVX-512 BF16 or AMX: where bf16 autocast beats fp32 on the CPU (3x measured on resnet18)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next(
                (line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), []
            )
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_device(device: str | None) -> torch.device:
    """``None``/``auto``: CUDA when present, else CPU; an unavailable CUDA device is a clear
    error."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} asked for, but CUDA is not available here (use --device cpu)"
        )
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices): the same seed gives the same numbers."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def ultralytics_device(device: torch.device) -> str:
    """Ultralytics spells devices ``cpu`` or ``0``; ``cuda`` alone would reach
    CUDA_VISIBLE_DEVICES."""
    return "cpu" if device.type == "cpu" else str(device.index or 0)


def resolve_precision(precision: str, device: torch.device) -> str:
    """What ``auto`` means on this hardware: bf16 where it is fast, fp16 on older GPUs, else
    fp32."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r} ({', '.join(PRECISIONS)})")
    if device.type == "cuda":
        if precision == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return precision
    if precision == "fp16":
        raise ConfigError(
            "fp16 autocast is for CUDA; on the CPU use bf16 (fast with AVX-512 BF16/AMX) or fp32"
        )
    if precision == "auto":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for a resolved precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass(frozen=True)
class Runtime:
    """This process's place in a (possibly one-process) run."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def distributed_runtime(device: str | None) -> Runtime:
    """Join torchrun's process group when launched by it (gloo on CPU, NCCL on GPUs)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Runtime(resolve_device(device))
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Runtime(dev, rank=rank, world_size=world_size, local_rank=local_rank)
