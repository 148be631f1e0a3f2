"""``ClsTrainConfig``: every option of ``fracdet train-cls``, checked when it is built.

Apart from the training loop so a preset, the CLI and the study can build and check a
config without importing the trainer's machinery.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from fracdet.cls.robustbench import is_robustbench, robustbench_spec
from fracdet.data.datasets import AugmentConfig
from fracdet.data.geometry import RESIZE_MODES
from fracdet.errors import ConfigError
from fracdet.robust.pgd import PGDConfig

__all__ = ["AugmentOptions", "ClsTrainConfig"]


class AugmentOptions:
    """The augmentation options of a trainer's config as the datasets' :class:`AugmentConfig`.

    ``train-cls`` and ``pretrain-mae`` declare them as fields of the same names (``rotate``,
    ``scale_jitter``, ``translate``, ``brightness``, ``contrast``, ``augment_p``; ``clahe`` and
    ``hflip`` only ``train-cls``: off where a config has none) and share this property.
    """

    @property
    def augment(self) -> AugmentConfig:
        return AugmentConfig(
            self.rotate,
            self.scale_jitter,
            self.translate,
            self.brightness,
            self.contrast,
            getattr(self, "clahe", False),
            getattr(self, "hflip", False),
            self.augment_p,
        )


@dataclass(frozen=True)
class ClsTrainConfig(AugmentOptions):
    """Everything ``train-cls`` needs; defaults suit real radiographs (``configs/cls.yaml``)."""

    config_section: ClassVar[str] = "train_cls"  # its section in a preset (configs/r2i.yaml)

    manifest: Path
    output: Path = Path("runs/cls")
    backbone: str = "resnet18"  # a timm name, or robustbench:NAME (with rb_dataset / rb_threat)
    rb_dataset: str | None = None  # RobustBench zoo: cifar10 (default) | cifar100 | imagenet
    rb_threat: str | None = None  # RobustBench zoo: Linf (default) | L2 | corruptions
    target: str = "label"  # label (fractured or not), body_part, or another manifest column
    pretrained: bool = False
    weights: Path | None = None
    image_size: int = 384
    # letterbox (aspect kept, padded) | stretch (to the square, as the robust-transfer study)
    resize: str = "letterbox"
    global_pool: str | None = None  # timm's default (avg); max keeps small findings visible
    mode: str = "full"  # full | linear (frozen backbone) | partial
    unfreeze_blocks: int = 1
    epochs: int = 25
    batch_size: int = 16
    optimizer: str = "adamw"  # adamw | adam | sgd
    lr: float = 3e-4
    weight_decay: float = 1e-4
    scheduler: str = "cosine"  # cosine | plateau | none
    warmup_epochs: float = 1.0
    grad_clip: float | None = 1.0
    imbalance: str = "loss"  # loss (class weights) | sampler (weighted sampling) | none
    loss: str = "ce"  # ce | focal
    focal_gamma: float = 2.0
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    channels_last: bool = True
    patience: int = 5
    adv: str = "none"  # none | pgd (Madry PGD-AT) | trades
    adv_eps: float = 4 / 255
    adv_steps: int = 10
    adv_step_size: float = 1 / 255
    trades_beta: float = 6.0
    rotate: float = 10.0
    scale_jitter: float = 0.1
    translate: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1
    clahe: bool = False
    hflip: bool = False
    augment_p: float = 0.5
    # f1 | youden | sensitivity | specificity | none (0.5: the two-class argmax)
    threshold_method: str = "f1"
    threshold_target: float | None = None
    workers: int = 2
    device: str | None = None
    seed: int = 0
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        choices = {
            "mode": ("full", "linear", "partial"),
            "optimizer": ("adamw", "adam", "sgd"),
            "scheduler": ("cosine", "plateau", "none"),
            "imbalance": ("loss", "sampler", "none"),
            "loss": ("ce", "focal"),
            "adv": ("none", "pgd", "trades"),
            "threshold_method": ("f1", "youden", "sensitivity", "specificity", "none"),
            "resize": RESIZE_MODES,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(
                    f"{key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}"
                )
        for key, low in (("epochs", 1), ("batch_size", 1), ("image_size", 16)):
            if getattr(self, key) < low:
                raise ConfigError(f"{key} must be >= {low}, got {getattr(self, key)}")
        if (
            self.threshold_method in ("sensitivity", "specificity")
            and self.threshold_target is None
        ):
            raise ConfigError(
                f"threshold_method {self.threshold_method!r} needs threshold_target (e.g. 0.9)"
            )
        if is_robustbench(self.backbone):
            # its name, dataset and threat checked now
            robustbench_spec(self.backbone, self.rb_dataset, self.rb_threat)
        elif self.rb_dataset is not None or self.rb_threat is not None:
            raise ConfigError(
                "rb_dataset / rb_threat choose a RobustBench zoo: they need backbone "
                f"robustbench:NAME, not {self.backbone!r}"
            )

    @property
    def model_name(self) -> str:
        """The backbone as checkpoints record it: timm's name, or
        ``robustbench:DATASET/THREAT/NAME``.
        """
        return (
            robustbench_spec(self.backbone, self.rb_dataset, self.rb_threat)
            if is_robustbench(self.backbone)
            else self.backbone
        )

    @property
    def pgd(self) -> PGDConfig:
        return PGDConfig(self.adv_eps, self.adv_steps, self.adv_step_size)
