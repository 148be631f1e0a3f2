"""From a convert manifest to labelled splits and DataLoaders for the classifier."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from fracdet.data.datasets import AugmentConfig, ClassificationDataset, collate_skipping_failures
from fracdet.data.formats import ImageRecord
from fracdet.data.manifest import LABEL_NAMES, read_manifest
from fracdet.errors import DataError

__all__ = ["LabelledSplit", "load_split", "class_names_for", "make_loader"]

logger = logging.getLogger(__name__)


@dataclass
class LabelledSplit:
    """The records of one split with ``label`` set to the class index of the chosen target."""

    records: list[ImageRecord]
    class_names: tuple[str, ...]
    skipped: list[dict[str, str]]

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.records], dtype=np.int64)


def _target_value(record: ImageRecord, target: str) -> str:
    if target == "body_part":
        return record.body_part
    return str(record.attributes.get(target, ""))


def class_names_for(records: Sequence[ImageRecord], target: str) -> tuple[str, ...]:
    """``label``: (not_fractured, fractured); any other column: its sorted distinct values."""
    if target == "label":
        return LABEL_NAMES
    values = sorted({_target_value(r, target) for r in records} - {""})
    if len(values) < 2:
        raise DataError(
            f"target column {target!r} has {len(values)} distinct value(s); a classifier "
            "needs at least 2"
        )
    return tuple(values)


def load_split(
    manifest: Path, split: str, *, target: str = "label", class_names: tuple[str, ...] | None = None
) -> LabelledSplit:
    """Records of ``split`` (``all`` for every record), relabelled for ``target``.

    Records whose target value is not among ``class_names`` are skipped and listed.
    """
    records = read_manifest(manifest)
    if not records:
        raise DataError("the manifest lists no images", manifest)
    if target not in ("label", "body_part") and records and target not in records[0].attributes:
        raise DataError(
            f"no column {target!r} in the manifest (use label, body_part or an attribute column)",
            manifest,
        )
    chosen = records if split == "all" else [r for r in records if r.split == split]
    if not chosen:
        found = sorted({r.split or "(none)" for r in records})
        raise DataError(
            f"no images in split {split!r} (splits present: {', '.join(found)})", manifest
        )
    names = class_names or class_names_for(records, target)
    if target == "label":
        return LabelledSplit(chosen, names, [])
    index = {name: i for i, name in enumerate(names)}
    kept, skipped = [], []
    for record in chosen:
        value = _target_value(record, target)
        if value in index:
            kept.append(dataclasses.replace(record, label=index[value]))
        else:
            skipped.append(
                {
                    "file": str(record.path),
                    "reason": f"{target}={value!r} is not one of the classes {list(names)}",
                }
            )
    return LabelledSplit(kept, names, skipped)


def make_loader(
    split: LabelledSplit,
    image_size: int,
    *,
    batch_size: int,
    augment: AugmentConfig | None = None,
    seed: int = 0,
    shuffle: bool = False,
    sampler: Sampler | None = None,
    workers: int = 2,
    pin_memory: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    keep_aspect: bool = True,
) -> DataLoader:
    """A DataLoader that skips unreadable images (their reasons come with each batch)."""
    dataset = ClassificationDataset(
        split.records, image_size, augment=augment, seed=seed, keep_aspect=keep_aspect
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_skipping_failures,
        pin_memory=pin_memory,
        persistent_workers=False,
        generator=generator,
        prefetch_factor=4 if workers > 0 else None,
        drop_last=drop_last,
    )
