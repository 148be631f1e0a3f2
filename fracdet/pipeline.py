"""The stages ``fracdet demo`` and ``fracdet run`` share: train a classifier or a detector,
score it on its test split, audit classifiers against a detector.

Each builder returns :class:`~fracdet.stages.Stage` objects whose calls hold the very config
each library function gets, so a stage's key is what it computes. Training and scoring are
separate stages (``cls-standard``, then ``cls-standard-eval`` in ``cls-standard/eval``): a new
``n_boot`` reruns the scoring and whatever reads it, never the training.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fracdet.stages import Call, Stage

if TYPE_CHECKING:
    from fracdet.audit import AuditConfig

__all__ = [
    "Settings",
    "audit_config",
    "audit_stage",
    "classifier_stages",
    "detector_stages",
    "detector_weights",
]


@dataclass(frozen=True)
class Settings:
    """What every stage of one run shares. ``device`` is resolved (``cpu``, ``cuda``) so that
    ``--device cpu`` and the default on a machine without CUDA give the same keys."""

    seed: int
    workers: int
    device: str

    @classmethod
    def of(cls, *, seed: int, workers: int, device: str | None) -> Settings:
        from fracdet.runtime import resolve_device

        return cls(seed, workers, str(resolve_device(device)))

    @property
    def ultralytics_device(self) -> str:
        """The device as Ultralytics spells it (``cpu``, ``0``, ``1``)."""
        import torch

        from fracdet.runtime import ultralytics_device

        return ultralytics_device(torch.device(self.device))


def _train_and_score(
    name: str, folder: Path, train: Call, score: Call, upstream: tuple[str, ...]
) -> tuple[Stage, Stage]:
    """``NAME`` trains into ``folder``; ``NAME-eval`` scores into ``folder/eval`` (the scoring's
    config gives that output), after it and whatever it reads."""
    return (
        Stage(name, folder, (train,), upstream),
        Stage(f"{name}-eval", folder / "eval", (score,), (name, *upstream)),
    )


def classifier_stages(
    name: str,
    out: Path,
    manifest: Path,
    settings: Settings,
    *,
    upstream: tuple[str, ...],
    n_boot: int,
    **train: Any,
) -> tuple[Stage, Stage]:
    """``NAME``: train a classifier (``train``: fields of ``ClsTrainConfig``; patience defaults
    to the epochs); ``NAME-eval``: score it on the manifest's test split (bootstrap CIs)."""
    from fracdet.cls.evaluate import EvalClsConfig, evaluate_classifier
    from fracdet.cls.train import ClsTrainConfig, train_classifier

    folder = out / name
    trained = ClsTrainConfig(
        manifest=manifest,
        output=folder,
        workers=settings.workers,
        device=settings.device,
        seed=settings.seed,
        **{"patience": train["epochs"], **train},
    )
    scored = EvalClsConfig(
        folder,
        manifest,
        split="test",
        output=folder / "eval",
        workers=settings.workers,
        device=settings.device,
        n_boot=n_boot,
        seed=settings.seed,
    )
    return _train_and_score(
        name,
        folder,
        Call.of(train_classifier, trained),
        Call.of(evaluate_classifier, scored),
        upstream,
    )


def detector_weights(folder: Path) -> Path:
    """The best weights a detector stage in ``folder`` writes (Ultralytics' layout)."""
    return folder / "train" / "weights" / "best.pt"


def detector_stages(
    name: str,
    out: Path,
    dataset: Path,
    settings: Settings,
    *,
    upstream: tuple[str, ...],
    n_boot: int,
    **train: Any,
) -> tuple[Stage, Stage]:
    """``NAME``: train a YOLO detector on a ``fracdet convert`` folder (``train``: fields of
    ``DetTrainConfig``); ``NAME-eval``: score it on the test split (pycocotools, ``n_boot``
    bootstrap replicates for the mAP CIs, 0 for none)."""
    from fracdet.det.evaluate import DetEvalConfig, evaluate_detector
    from fracdet.det.train import DetTrainConfig, train_detector

    folder, device = out / name, settings.ultralytics_device
    trained = DetTrainConfig(
        data=dataset / "data.yaml",
        output=folder,
        name="train",
        workers=settings.workers,
        seed=settings.seed,
        device=device,
        **train,
    )
    scored = DetEvalConfig(
        detector_weights(folder),
        dataset,
        split="test",
        imgsz=trained.imgsz,
        output=folder / "eval",
        device=device,
        n_boot=n_boot,
        seed=settings.seed,
    )
    return _train_and_score(
        name, folder, Call.of(train_detector, trained), Call.of(evaluate_detector, scored), upstream
    )


def audit_config(
    folder: Path,
    dataset: Path,
    classifiers: Mapping[str, Path],
    settings: Settings,
    **options: Any,
) -> AuditConfig:
    """The audit of ``classifiers`` (name: run folder) on ``dataset``, written to ``folder``;
    ``options``: other fields of ``AuditConfig`` (detector, methods, ig_steps, n_boot, ...)."""
    from fracdet.audit import AuditConfig

    return AuditConfig(
        dataset=dataset,
        classifiers=tuple(classifiers.values()),
        names=tuple(classifiers),
        output=folder,
        workers=settings.workers,
        device=settings.device,
        seed=settings.seed,
        **options,
    )


def audit_stage(
    name: str,
    out: Path,
    dataset: Path,
    classifiers: Mapping[str, Path],
    settings: Settings,
    *,
    upstream: tuple[str, ...],
    **options: Any,
) -> Stage:
    """``NAME``: the audit (see :func:`audit_config`); an interrupted one resumes."""
    from fracdet.audit import run_audit

    config = audit_config(out / name, dataset, classifiers, settings, **options)
    return Stage(name, out / name, (Call.of(run_audit, config),), upstream, resumable=True)
