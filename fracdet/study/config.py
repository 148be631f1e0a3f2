"""Options of ``fracdet run``: one frozen dataclass; ``configs/fracatlas.yaml`` holds the study.

A study config names the data, the models and their budgets, and carries named **profiles**
(``profiles: {cpu: {...}, gpu: {...}}``, :mod:`fracdet.profiles`, as the demo's): overrides
that :meth:`StudyConfig.effective` lays over the top-level values for the chosen ``profile``,
so one file describes the same study at CPU scale and at GPU scale, and the run records which
one produced its numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fracdet.errors import ConfigError
from fracdet.profiles import apply_profile, check_profiles

__all__ = ["StudyConfig", "WEIGHT_CHOICES"]

#: ``cls_weights`` besides a file path: ``auto`` uses a local file named after the backbone in
#: ``weights_dir`` when there is one; ``none`` never does.
WEIGHT_CHOICES = ("auto", "none")


@dataclass(frozen=True)
class StudyConfig:
    """The FracAtlas study: data, both classifiers, the detector, the audit and their budgets.

    ``source`` is a folder in FracAtlas layout (the published zip, the shared sample, or
    phantoms). Classifiers train on a split of **all** its images (the official split keeps
    its fractured images; the others are assigned by label and body part); the detector
    trains on the official localization split alone (fractured images only), so its test
    images are the classifiers' fractured test images.
    """

    source: Path = Path("data/fracatlas/FracAtlas")
    output: Path = Path("reports/fracatlas/run")
    profile: str = "cpu"
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    fresh: bool = False
    overwrite: bool = False
    device: str | None = None
    workers: int = 2
    seed: int = 0
    weights_dir: Path = Path("weights")  # where local pretrained weights are looked for
    # classifiers
    cls_backbone: str = "resnet18"
    cls_image_size: int = 256
    cls_epochs: int = 10
    cls_batch_size: int = 32
    cls_lr: float = 5e-4
    cls_global_pool: str = "avg"
    cls_pretrained: bool = False  # timm hub weights when no local file is found (needs the network)
    cls_weights: str = "auto"  # auto | none | a local state dict file
    cls_precision: str = "auto"
    # the PGD-trained classifier: Madry PGD-AT fine-tuning of the standard one
    adv: str = "pgd"
    adv_eps: float = 4 / 255
    adv_steps: int = 3
    adv_step_size: float = 2 / 255
    adv_epochs: int = 3
    adv_lr: float = 2e-4
    # detector
    # a hub name, a local .pt, an architecture .yaml, or package:NAME (fracdet.det.pretrained)
    det_model: str = "yolov8n.pt"
    det_scratch_fallback: bool = (
        True  # a hub .pt not on this machine: train its .yaml from scratch instead of downloading
    )
    det_imgsz: int = 416
    det_epochs: int = 30
    det_batch: int = 16
    # audit
    audit_methods: tuple[str, ...] = ("saliency", "integrated_gradients", "gradcam")
    audit_ig_steps: int = 16
    audit_steps: int = 10
    audit_eps: str = "4/255"
    audit_step_size: str = "1/255"
    audit_batch_size: int = 16
    audit_max_images: int | None = None
    # the audit's checks of its own instruments (fracdet.audit.checks) on the test audit; the
    # held-out hardware audit runs none (it splits the same classifiers' numbers by group)
    audit_checks: tuple[str, ...] = ("sanity", "causal")
    group_by: tuple[str, ...] = ("hardware", "body_part")
    n_boot: int = 1000

    def __post_init__(self) -> None:
        check_profiles(self)
        checks = [
            (
                self.cls_epochs >= 1 and self.adv_epochs >= 1 and self.det_epochs >= 1,
                "cls_epochs, adv_epochs and det_epochs must be >= 1",
            ),
            (
                self.cls_image_size >= 32 and self.det_imgsz >= 32,
                "cls_image_size and det_imgsz must be >= 32, "
                f"got {self.cls_image_size}, {self.det_imgsz}",
            ),
            (self.workers >= 0, f"workers must be >= 0, got {self.workers}"),
            (self.n_boot >= 100, f"n_boot must be >= 100, got {self.n_boot}"),
            (self.adv in ("pgd", "trades"), f"adv must be pgd or trades, got {self.adv!r}"),
            (
                Path(self.det_model).suffix.lower() in (".pt", ".yaml", ".yml")
                or self.det_model.startswith("package:"),
                "det_model must be a .pt (hub name or local file), an architecture .yaml or "
                f"package:NAME, got {self.det_model!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def effective(self) -> StudyConfig:
        """This config with its profile's overrides applied (each coerced like a YAML value)."""
        return apply_profile(self)
