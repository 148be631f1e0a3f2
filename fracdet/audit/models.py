"""Loading what an audit compares: classifiers (with their explainers and attack) and a detector."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from fracdet.audit.config import AuditConfig
from fracdet.audit.engine import ClassifierUnderAudit
from fracdet.data.manifest import LABEL_NAMES
from fracdet.errors import ConfigError
from fracdet.fsutil import sha256_file

__all__ = ["load_classifiers", "load_audit_detector", "classifier_names", "explainers_for"]

logger = logging.getLogger(__name__)


def classifier_names(paths: Sequence[Path], names: Sequence[str] = ()) -> list[str]:
    """Display names: given ones, else the run folder (or file stem); repeats get ``-2``,
    ``-3``..."""
    chosen = (
        list(names)
        if names
        else [
            (
                Path(p).name
                if Path(p).is_dir()
                else Path(p).stem
                if Path(p).stem not in ("best", "last")
                else Path(p).parent.name
            )
            for p in paths
        ]
    )
    seen: dict[str, int] = {}
    unique = []
    for name in chosen:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return unique


def explainers_for(model: torch.nn.Module, meta: Any, cfg: AuditConfig) -> dict[str, Any]:
    """The audit's explainers (code -> Explainer) bound to ``model``, with the audit's options.

    ``meta`` is the classifier's :class:`~fracdet.cls.checkpoint.ClassifierMeta`; the checks
    call this again on randomised copies of the model.
    """
    from fracdet.explain.registry import create_explainer

    explainers = {}
    for method in cfg.methods:
        # IG runs batch_size interpolated images per pass: n_steps x batch_size at once would
        # make peak memory grow with ig_steps (about 13 GB for resnet18 at 224 px and 32 steps)
        explainer = create_explainer(
            method,
            model,
            image_size=meta.image_size,
            backbone_name=meta.backbone,
            channels=cfg.channels,
            baseline=cfg.baseline,
            ig_steps=cfg.ig_steps,
            ig_internal_batch_size=cfg.batch_size,
        )
        explainers[explainer.name] = explainer
    return explainers


def load_classifiers(
    cfg: AuditConfig, device: torch.device, precision: str
) -> tuple[list[ClassifierUnderAudit], dict[str, Any]]:
    """Each classifier with its explainers and pixel-space attack; and what identifies them
    (sha256)."""
    from fracdet.cls.checkpoint import load_classifier, resolve_checkpoint
    from fracdet.robust.attacks import pixel_budget

    if not cfg.classifiers:
        raise ConfigError("give at least one classifier to audit (--cls CKPT, repeatable)")
    loaded: list[ClassifierUnderAudit] = []
    identity: dict[str, Any] = {}
    attack = cfg.attack_config()
    for name, path in zip(
        classifier_names(cfg.classifiers, cfg.names), cfg.classifiers, strict=True
    ):
        if Path(path).suffix == ".pt":
            raise ConfigError(
                "is a .pt file: --cls takes a fracdet classifier "
                "(run folder, best.safetensors or its .json); a YOLO detector goes to --det",
                path,
            )
        model, meta = load_classifier(path, device=device, gradients=True)
        if not meta.binary or tuple(meta.class_names) != LABEL_NAMES:
            raise ConfigError(
                f"classifies {list(meta.class_names)}, but the audit scores fracture classifiers "
                f"{list(LABEL_NAMES)} (target 'label')",
                path,
            )
        for param in model.parameters():
            param.requires_grad_(False)  # the audit differentiates inputs only
        if precision != "fp32":
            # channels-last is what makes bf16 convolutions fast (oneDNN on CPUs, tensor cores).
            # fp32 keeps the default layout: channels-last is faster there too, but its other
            # kernels move PGD's sign steps, so fp32 audits would no longer repeat earlier ones to
            # float noise
            model = model.to(memory_format=torch.channels_last)
        explainers = explainers_for(model, meta, cfg)
        # ε in normalized space is taken in the units of the model's first layer: fracdet's
        # wrapper normalisation composed with any the backbone applies itself (RobustBench)
        budget = pixel_budget(attack, meta.input_std)
        loaded.append(
            ClassifierUnderAudit(name, model, meta, explainers, budget, device, precision)
        )
        weights, meta_path = resolve_checkpoint(path)
        identity[name] = {
            "path": str(Path(path).resolve()),
            "backbone": meta.backbone,
            "image_size": meta.image_size,
            "resize": meta.resize,
            "pixel_eps": budget.eps,
            "pixel_step_size": budget.step_size,
            "threshold": meta.threshold,
            "temperature": meta.temperature,
            "adv": meta.train_config.get("adv", "none"),
            "sha256": {weights.name: sha256_file(weights), meta_path.name: sha256_file(meta_path)},
        }
    return loaded, identity


def load_audit_detector(cfg: AuditConfig) -> tuple[Any, dict[str, Any] | None]:
    """The YOLO detector (safe loading unless ``trust_pickle``) and its identity, or
    ``(None, None)``."""
    if cfg.detector is None:
        return None, None
    from fracdet.det.model import load_detector, model_class_names

    path = Path(cfg.detector)
    detector = load_detector(path, trust_pickle=cfg.trust_pickle)
    return detector, {
        "path": str(path.resolve()),
        "sha256": sha256_file(path),
        "class_names": list(model_class_names(detector)),
    }
