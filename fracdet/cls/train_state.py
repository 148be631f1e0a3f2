"""The run folder of classifier training between epochs: created safely, resumed exactly.

``last_state.pt`` holds what an exact ``--resume`` needs: the weights of the epoch it ends
(a copy of ``last.safetensors``), optimiser, schedules, gradient scaler, RNG, early-stopping
counters and history; it is plain tensors and values, loaded with ``weights_only=True``, so
resuming never runs pickled code. Every file here is written through :mod:`fracdet.fsutil`,
so an interrupted run leaves the previous epoch's files whole. The weights travel inside the
state because the two files cannot be renamed into place together: a run killed between
them would otherwise resume one epoch's weights with the previous epoch's optimiser.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fracdet.cls.checkpoint import unwrap_model
from fracdet.cls.distributed import all_sum, barrier
from fracdet.errors import ConfigError, DataError, OutputExistsError
from fracdet.fsutil import atomic_write, atomic_write_bytes, atomic_write_json
from fracdet.runtime import Runtime

__all__ = [
    "STATE_FILE",
    "TrainState",
    "check_run_folder",
    "prepare_run_folder",
    "refuse_if_nothing_trained",
    "save_state",
    "load_state",
    "write_history",
]

logger = logging.getLogger(__name__)

STATE_FILE = "last_state.pt"


@dataclass
class TrainState:
    """What an exact resume needs beyond model weights (saved as tensors and plain values)."""

    epoch: int = 0
    best_score: float = -math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def record_failures(self, failures: list[tuple[int, str]], records: list) -> None:
        """Remember unreadable images (dataset index, reason) once each, for the run report."""
        for index, reason in failures:
            self.skipped.setdefault(str(records[index].path), reason)


def check_run_folder(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse a run folder :func:`prepare_run_folder` would refuse, creating nothing.

    For a caller that reads data for a while before the folder is made (or replaced): a bad
    ``--out`` is one line before that work, and bad data still leaves an old run whole.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError("is a file, not a run folder; pass a folder as --out", out)
    if any(part.exists() and not part.is_dir() for part in out.parents):
        raise ConfigError("cannot create the run folder: a part of its path is a file", out)
    if resume:
        if not (out / STATE_FILE).is_file():
            raise ConfigError(f"nothing to resume: no {STATE_FILE} in the run folder", out)
    elif out.exists() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(
            "run folder already exists; pass --resume to continue it or --overwrite to replace it",
            out,
        )


def refuse_if_nothing_trained(
    trained: int, n_train: int, state: TrainState, *, data: Path, out: Path, runtime: Runtime
) -> None:
    """Stop after an epoch that trained on no image: every training image was unreadable.

    Such a run would go on to report a loss of 0 and save untrained weights as if trained. A
    fresh run's folder holds only what this run wrote, so rank 0 removes it; a resumed run keeps
    its earlier epochs.
    """
    if all_sum(trained, runtime):
        return
    example = next(iter(state.skipped.items()), None)
    if runtime.is_main and state.epoch == 0 and out.is_dir():
        shutil.rmtree(out, ignore_errors=True)
    barrier(runtime)
    detail = f" (first: {example[0]}: {example[1]})" if example else ""
    raise DataError(
        f"none of the {n_train} training images could be read{detail}: nothing was trained", data
    )


def prepare_run_folder(out: Path, *, resume: bool, overwrite: bool, runtime: Runtime) -> Path:
    """The run folder, checked and created by rank 0 while the other processes wait.

    A resumed run needs its state file; a new run refuses a non-empty folder unless
    ``overwrite``. A path that is a file (or lies under one) is refused whatever the flags:
    replacing a file with a run folder is never what was meant.
    """
    out = Path(out)
    if runtime.is_main:
        check_run_folder(out, resume=resume, overwrite=overwrite)
        if not resume and out.exists() and any(out.iterdir()):
            shutil.rmtree(out)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise ConfigError(
                "cannot create the run folder: a part of its path is a file", out
            ) from exc
    barrier(runtime)
    return out


def save_state(out: Path, state: TrainState, model, optimizer, scheduler, plateau, scaler) -> Path:
    """Write ``out/last_state.pt`` atomically, with the model's weights (the ``last`` ones of the
    same epoch).
    """
    payload = {
        "model": {
            k: v.detach().cpu() for k, v in unwrap_model(model).backbone.state_dict().items()
        },
        "epoch": state.epoch,
        "best_score": state.best_score,
        "best_epoch": state.best_epoch,
        "bad_epochs": state.bad_epochs,
        "history": json.dumps(state.history),
        "skipped": json.dumps(state.skipped),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler else {},
        "plateau": plateau.state_dict() if plateau else {},
        "scaler": scaler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return atomic_write(out / STATE_FILE, lambda tmp: torch.save(payload, tmp))


def load_state(
    out: Path, model, optimizer, scheduler, plateau, scaler, *, runtime: Runtime
) -> TrainState:
    """Model, optimiser, schedules and RNG as they were at the end of the last finished epoch."""
    from safetensors.torch import load_file

    path = out / STATE_FILE
    try:
        payload = torch.load(
            path, map_location="cpu", weights_only=True
        )  # plain data only, no code
        # States written before the weights moved inside pair with last.safetensors.
        model.backbone.load_state_dict(
            payload["model"] if "model" in payload else load_file(str(out / "last.safetensors"))
        )
        optimizer.load_state_dict(payload["optimizer"])
    except (RuntimeError, KeyError, ValueError, OSError) as exc:
        raise ConfigError(
            f"cannot resume from this run folder ({str(exc).splitlines()[0][:200]}); was it "
            "made with the same backbone and settings?",
            path,
        ) from exc
    if scheduler and payload["scheduler"]:
        scheduler.load_state_dict(payload["scheduler"])
    if plateau and payload["plateau"]:
        plateau.load_state_dict(payload["plateau"])
    scaler.load_state_dict(payload["scaler"])
    torch.set_rng_state(payload["torch_rng"])
    if payload["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
    state = TrainState(
        payload["epoch"],
        payload["best_score"],
        payload["best_epoch"],
        payload["bad_epochs"],
        json.loads(payload["history"]),
        json.loads(payload["skipped"]),
    )
    if runtime.is_main:
        logger.info(
            "resuming after epoch %d (best %.4f at epoch %d)",
            state.epoch,
            state.best_score,
            state.best_epoch + 1,
        )
    return state


def write_history(out: Path, history: list[dict[str, Any]]) -> None:
    """The per-epoch metrics log as ``metrics.csv`` (spreadsheets) and ``metrics.json``."""
    keys = list(dict.fromkeys(k for row in history for k in row))
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    atomic_write_bytes(out / "metrics.csv", buffer.getvalue().encode("utf-8"))  # csv keeps its \r\n
    atomic_write_json(out / "metrics.json", history)
