"""The classification manifest: one CSV row an image, read by the classifier and the audit."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

from fracdet.data.formats import Box, ImageRecord
from fracdet.errors import DataError

__all__ = ["MANIFEST_COLUMNS", "LABEL_NAMES", "format_manifest", "read_manifest"]

LABEL_NAMES: tuple[str, str] = ("not_fractured", "fractured")
MANIFEST_COLUMNS: tuple[str, ...] = (
    "image_id",
    "path",
    "label",
    "label_name",
    "split",
    "group",
    "body_part",
    "width",
    "height",
    "n_boxes",
    "boxes",
    "source_path",
)


def format_manifest(records: Sequence[ImageRecord], paths: Sequence[str]) -> str:
    """CSV text; ``boxes`` is JSON ``[[x1, y1, x2, y2, class], ...]`` in pixels.

    Dataset attributes (FracAtlas view and hardware flags...) follow as extra columns.
    """
    extra = sorted(
        {k for r in records for k in r.attributes}
        - set(MANIFEST_COLUMNS)
        - {"fractured", "fracture_count"}
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*MANIFEST_COLUMNS, *extra])
    for record, path in zip(records, paths, strict=True):
        boxes = json.dumps([[round(v, 3) for v in b.as_list()] + [b.label] for b in record.boxes])
        writer.writerow(
            [
                record.image_id,
                path,
                record.label,
                LABEL_NAMES[record.label],
                record.split or "",
                record.group,
                record.body_part,
                record.width,
                record.height,
                len(record.boxes),
                boxes,
                os.path.abspath(record.path),
                *(record.attributes.get(k, "") for k in extra),
            ]
        )
    return buffer.getvalue()


def read_manifest(path: str | Path) -> list[ImageRecord]:
    """Records from a manifest; relative image paths are relative to the manifest's folder.

    Anything that is not a well-formed manifest is a :class:`DataError` naming the line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("manifest not found (make one with `fracdet convert`)", path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = set(MANIFEST_COLUMNS) - set(reader.fieldnames or [])
            if missing:
                raise DataError(
                    f"not a fracdet manifest (missing columns: {', '.join(sorted(missing))})", path
                )
            return [_record(row, lineno, path) for lineno, row in enumerate(reader, start=2)]
    except UnicodeDecodeError as exc:
        raise DataError("not UTF-8 CSV text (binary data?)", path) from exc
    except (OSError, csv.Error) as exc:
        raise DataError(f"cannot read as CSV ({' '.join(str(exc).split())})", path) from exc


def _record(row: dict, lineno: int, path: Path) -> ImageRecord:
    try:
        if any(row[column] is None for column in MANIFEST_COLUMNS):
            raise ValueError("the row has fewer fields than the header")
        boxes = tuple(
            Box(*map(float, b[:4]), label=int(b[4])) for b in json.loads(row["boxes"] or "[]")
        )
        label = int(row["label"])
        if label not in (0, 1):
            raise ValueError(f"label must be 0 or 1, got {label}")
        image = Path(row["path"])
        return ImageRecord(
            image_id=row["image_id"],
            path=image if image.is_absolute() else Path(os.path.normpath(path.parent / image)),
            width=int(row["width"]),
            height=int(row["height"]),
            label=label,
            boxes=boxes,
            group=row["group"],
            split=row["split"] or None,
            body_part=row["body_part"],
            attributes={
                k: v
                for k, v in row.items()
                if isinstance(k, str) and k not in MANIFEST_COLUMNS and k != "label_name"
            },
        )
    except (
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        OverflowError,
        RecursionError,
    ) as exc:  # JSONDecodeError is a ValueError
        raise DataError(
            f"line {lineno}: cannot parse ({' '.join(str(exc).split()) or type(exc).__name__})",
            path,
        ) from exc
