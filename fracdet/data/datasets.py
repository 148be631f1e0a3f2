"""torch Datasets over :class:`ImageRecord` lists, with albumentations pipelines for radiographs.

A corrupt image must never crash an epoch (invariant 5): the dataset returns a failure
marker instead of raising, :func:`collate_skipping_failures` drops it from the batch and
hands the reason to the training loop, which records it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from fracdet.data.formats import ImageRecord
from fracdet.data.images import load_image
from fracdet.errors import ImageError

__all__ = [
    "AugmentConfig",
    "build_transform",
    "ClassificationDataset",
    "Batch",
    "collate_skipping_failures",
    "item_seed",
]


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentations suited to radiographs: mild geometry and exposure, no hue, no flips by default.

    Horizontal flips are off by default because laterality markers and anatomy are
    asymmetric; CLAHE is optional (it works on 8-bit data, so it quantises 16-bit images).
    """

    rotate: float = 10.0
    scale: float = 0.1
    translate: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1
    clahe: bool = False
    hflip: bool = False
    p: float = 0.5


def build_transform(
    image_size: int, augment: AugmentConfig | None = None, *, keep_aspect: bool = True
):  # -> A.Compose
    """Resize the long side to ``image_size`` and pad to a square (aspect kept); augment if asked.

    ``keep_aspect=False`` stretches the image to the square instead (the robust-transfer
    study's 224x224 resize); :mod:`fracdet.data.geometry` maps boxes the same way.
    """
    import albumentations as A
    import cv2

    if keep_aspect:
        steps: list = [A.LongestMaxSize(max_size=image_size, interpolation=cv2.INTER_AREA)]
    else:
        steps = [A.Resize(height=image_size, width=image_size, interpolation=cv2.INTER_AREA)]
    if augment is not None:
        if augment.clahe:
            steps += [
                A.FromFloat(max_value=255, dtype="uint8"),
                A.CLAHE(clip_limit=2.0, p=augment.p),
                A.ToFloat(max_value=255),
            ]
        steps += [
            A.Affine(
                rotate=(-augment.rotate, augment.rotate),
                scale=(1 - augment.scale, 1 + augment.scale),
                translate_percent=(-augment.translate, augment.translate),
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                p=augment.p,
            ),
            A.RandomBrightnessContrast(
                brightness_limit=augment.brightness, contrast_limit=augment.contrast, p=augment.p
            ),
        ]
        if augment.hflip:
            steps.append(A.HorizontalFlip(p=0.5))
    steps.append(
        A.PadIfNeeded(
            min_height=image_size, min_width=image_size, border_mode=cv2.BORDER_CONSTANT, fill=0
        )
    )
    return A.Compose(steps, seed=0)


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A seed per (run, epoch, item): augmentation is the same whatever the worker count or
    resume point.
    """
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


class ClassificationDataset(Dataset):
    """``(pixels (1, S, S) float32 in [0, 1], label, index)``, or a failure ``(None, label, index,
    reason)``.

    ``epoch`` is set by the training loop so that augmentations differ per epoch yet repeat
    exactly on resume.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        image_size: int,
        *,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        keep_aspect: bool = True,
    ) -> None:
        self.records = list(records)
        self.image_size = image_size
        self.transform = build_transform(image_size, augment, keep_aspect=keep_aspect)
        self.augment = augment is not None
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.records], dtype=np.int64)

    def __getitem__(self, index: int) -> tuple:
        record = self.records[index]
        try:
            pixels = load_image(record.path, channels=1)
        except ImageError as exc:
            return None, record.label, index, str(exc)
        except OSError as exc:  # vanished file, permission...
            return None, record.label, index, f"{record.path}: {exc.strerror or exc}"
        if self.augment:
            self.transform.set_random_seed(item_seed(self.seed, self.epoch, index))
        pixels = self.transform(image=pixels)["image"]
        return torch.from_numpy(np.clip(pixels, 0.0, 1.0)[None]), record.label, index


@dataclass
class Batch:
    """Images, labels and dataset indices of a batch, plus the items skipped and why."""

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    failures: list[tuple[int, str]]

    def __len__(self) -> int:
        return len(self.labels)

    def pin_memory(self) -> Batch:
        return Batch(
            self.images.pin_memory(), self.labels.pin_memory(), self.indices, self.failures
        )


def collate_skipping_failures(items: list[tuple]) -> Batch:
    """Stack the good items; failures travel with the batch so the main process records them."""
    good = [item for item in items if item[0] is not None]
    failures = [(int(item[2]), str(item[3])) for item in items if item[0] is None]
    if not good:
        return Batch(
            torch.empty(0),
            torch.empty(0, dtype=torch.long),
            torch.empty(0, dtype=torch.long),
            failures,
        )
    return Batch(
        torch.stack([item[0] for item in good]),
        torch.tensor([item[1] for item in good], dtype=torch.long),
        torch.tensor([item[2] for item in good], dtype=torch.long),
        failures,
    )
