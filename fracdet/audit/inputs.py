"""What an audit looks at: the images of one split (or folder), their labels and ground-truth boxes.

Read once through the data layer (the convert manifest), never by re-parsing label files.
Each image gets a global 1-based index, its position in the sorted list, so shards and
resumed runs name images the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fracdet.data.formats import Box, ImageRecord
from fracdet.data.manifest import read_manifest
from fracdet.data.scan import safe_name
from fracdet.errors import DataError
from fracdet.provenance import records_hash

__all__ = ["AuditItem", "AuditInputs", "load_inputs"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditItem:
    """One image: ``label`` is ``None`` without ground truth; ``boxes`` are in the original frame;
    ``attributes`` holds the manifest values of the audit's ``group_by`` columns."""

    index: int
    key: str
    path: Path
    label: int | None
    boxes: tuple[Box, ...]
    width: int
    height: int
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def path_text(self) -> str:
        """``path`` as written in reports: non-UTF-8 name bytes as ``\\xNN`` (see ``safe_name``)."""
        return safe_name(str(self.path))

    def record(self) -> ImageRecord:
        """The data layer's record, for its datasets and loaders (label 0 stands in for unknown)."""
        return ImageRecord(
            self.key, self.path, self.width, self.height, self.label or 0, self.boxes
        )


@dataclass(frozen=True)
class AuditInputs:
    """The audited images, what ground truth they have, and a hash that identifies them."""

    items: tuple[AuditItem, ...]
    source: Path
    has_labels: bool
    box_class_names: tuple[str, ...]
    data_hash: str
    not_images: tuple[dict[str, str], ...] = ()

    @property
    def has_boxes(self) -> bool:
        return any(item.boxes for item in self.items)


def _manifest_path(dataset: Path) -> Path | None:
    if dataset.is_file() and dataset.suffix == ".csv":
        return dataset
    if dataset.is_dir() and (dataset / "manifest.csv").is_file():
        return dataset / "manifest.csv"
    return None


def _box_class_names(root: Path) -> tuple[str, ...]:
    """The detector classes named by the converter's data.yaml; FracAtlas' single class
    otherwise."""
    data_yaml = root / "data.yaml"
    if data_yaml.is_file():
        from fracdet.data.yolo import read_class_names

        return read_class_names(data_yaml)
    return ("fractured",)


#: Manifest columns every record carries as a field rather than in ``attributes``.
_RECORD_COLUMNS = ("body_part", "group", "label")


def _group_values(record: ImageRecord, group_by: Sequence[str]) -> dict[str, str]:
    return {
        c: str(getattr(record, c)) if c in _RECORD_COLUMNS else str(record.attributes.get(c, ""))
        for c in group_by
    }


def _check_group_by(
    records: Sequence[ImageRecord], group_by: Sequence[str], manifest: Path
) -> None:
    known = set(_RECORD_COLUMNS) | {k for r in records[:1] for k in r.attributes}
    missing = [c for c in group_by if c not in known]
    if missing:
        raise DataError(
            f"group_by: no column {', '.join(map(repr, missing))} in the manifest; "
            f"it has {', '.join(sorted(known))}",
            manifest,
        )


def load_inputs(
    dataset: Path, *, split: str, max_images: int | None = None, group_by: Sequence[str] = ()
) -> AuditInputs:
    """The images to audit, sorted by key; ``max_images`` keeps the first N (quick looks);
    ``group_by`` names manifest columns whose values each item carries (hardware, body_part...)."""
    dataset = Path(dataset)
    if not dataset.exists():
        raise DataError(
            "dataset not found (a folder written by `fracdet convert`, its manifest.csv, "
            "or a folder of images)",
            dataset,
        )
    manifest = _manifest_path(dataset)
    if manifest is not None:
        records = [r for r in read_manifest(manifest) if split == "all" or r.split == split]
        if not records:
            raise DataError(f"no images in split {split!r}", manifest)
        _check_group_by(records, group_by, manifest)
        records.sort(key=lambda r: r.image_id)
        items = [
            AuditItem(
                i + 1,
                r.image_id,
                r.path,
                r.label,
                r.boxes,
                r.width,
                r.height,
                _group_values(r, group_by),
            )
            for i, r in enumerate(records[:max_images])
        ]
        rows = [(it.key, it.label, [b.as_list() for b in it.boxes]) for it in items]
        return AuditInputs(
            tuple(items), manifest, True, _box_class_names(manifest.parent), records_hash(rows)
        )
    if not dataset.is_dir():
        raise DataError("not a manifest (.csv) nor a folder", dataset)
    if group_by:
        raise DataError(
            "group_by needs a manifest (a folder written by `fracdet convert`): "
            "a plain folder of images has no columns",
            dataset,
        )
    from fracdet.data.scan import scan_folder

    found = scan_folder(dataset, recursive=True)
    paths = sorted(found.images + found.dicoms)
    if not paths:
        raise DataError(
            "no images found (and no manifest.csv: give a folder written by `fracdet convert` "
            "for labels and boxes)",
            dataset,
        )
    items = [
        AuditItem(i + 1, rel, dataset / found.real(rel), None, (), 0, 0)
        for i, rel in enumerate(paths[:max_images])
    ]
    logger.info(
        "no manifest in %s: auditing %d images without labels or boxes", dataset, len(items)
    )
    skipped = tuple({"path": o.path, "reason": o.detail} for o in found.others)
    return AuditInputs(
        tuple(items),
        dataset,
        False,
        ("fractured",),
        records_hash([it.key for it in items]),
        skipped,
    )
