"""Unlabelled radiographs for MAE: a convert manifest (labels ignored) or any folder of images.

A manifest keeps its splits: ``train`` images are learned from, ``val`` ones measure the
masked-patch error, and ``test`` images are never seen, so a later classifier's test numbers
stay honest. A plain folder (JPEG/PNG 8/16-bit/TIFF/DICOM, searched recursively, read by the
same reader as predict) is split by a seeded draw.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fracdet.cls.data import LabelledSplit
from fracdet.data.formats import ImageRecord
from fracdet.data.manifest import read_manifest
from fracdet.data.scan import scan_folder
from fracdet.errors import ConfigError, DataError

__all__ = ["UnlabelledImages", "load_unlabelled", "list_unlabelled", "as_split"]

logger = logging.getLogger(__name__)


@dataclass
class UnlabelledImages:
    """Training and validation images, and the files that are not images (with reasons)."""

    train: list[ImageRecord]
    val: list[ImageRecord]
    skipped: list[dict[str, str]]
    source: str  # manifest | folder


def as_split(records: list[ImageRecord]) -> LabelledSplit:
    """Records as the classification track's split type, so its loaders serve MAE too (label
    unused).
    """
    return LabelledSplit(records, ("image",), [])


def _manifest_of(data: Path) -> Path | None:
    """The manifest ``data`` names: the file itself, or ``manifest.csv`` in a convert output
    folder.
    """
    if data.is_file():
        return data
    return data / "manifest.csv" if (data / "manifest.csv").is_file() else None


def _folder_records(folder: Path) -> tuple[list[ImageRecord], list[dict[str, str]]]:
    scan = scan_folder(folder, recursive=True)
    records = [
        ImageRecord(rel, folder / scan.real(rel), 0, 0, 0)
        for rel in sorted(scan.images + scan.dicoms)
    ]
    skipped = [{"file": str(folder / o.path), "reason": o.detail} for o in scan.others]
    return records, skipped


def _read(data: Path) -> tuple[list[ImageRecord], list[dict[str, str]], str]:
    data = Path(data)
    if not data.exists():
        raise DataError(
            "not found (give a manifest.csv from `fracdet convert` or a folder of images)", data
        )
    manifest = _manifest_of(data)
    if manifest is not None:
        return read_manifest(manifest), [], "manifest"
    records, skipped = _folder_records(data)
    return records, skipped, "folder"


def load_unlabelled(data: Path, *, val_fraction: float = 0.1, seed: int = 0) -> UnlabelledImages:
    """Train and validation images of ``data`` (see the module docstring).

    A manifest without a ``val`` split, and a plain folder, hold out ``val_fraction`` of
    the training images (at least one) by a seeded draw.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    records, skipped, source = _read(Path(data))
    if source == "manifest":
        train = [r for r in records if r.split in ("train", None)]
        val = [r for r in records if r.split == "val"]
    else:
        train, val = records, []
    if not val:
        if len(train) < 2:
            raise DataError(
                f"{len(train)} usable image(s): MAE needs at least 2 (one to validate on)", data
            )
        order = np.random.default_rng(seed).permutation(len(train))
        n_val = max(1, round(len(train) * val_fraction))
        held = set(order[:n_val].tolist())
        train, val = (
            [r for i, r in enumerate(train) if i not in held],
            [r for i, r in enumerate(train) if i in held],
        )
    if not train:
        raise DataError("no training images (a manifest's train split, or a folder's images)", data)
    logger.info(
        "MAE data (%s): %d train / %d val images%s",
        source,
        len(train),
        len(val),
        f", {len(skipped)} other files skipped" if skipped else "",
    )
    return UnlabelledImages(train, val, skipped, source)


def list_unlabelled(
    data: Path, *, split: str = "val"
) -> tuple[list[ImageRecord], list[dict[str, str]]]:
    """The images to look at: a manifest's ``split`` (``all`` for every one), or a folder's
    images.
    """
    records, skipped, source = _read(Path(data))
    if source == "manifest" and split != "all":
        chosen = [r for r in records if r.split == split]
        if not chosen:
            found = sorted({r.split or "(none)" for r in records})
            raise DataError(
                f"no images in split {split!r} (splits present: {', '.join(found)})", data
            )
        records = chosen
    if not records:
        raise DataError("no images found", data)
    return records, skipped
