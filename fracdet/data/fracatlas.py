"""The FracAtlas layout: read it as published (with its quirks) and write it back.

Layout::

    images/Fractured/*.jpg, images/Non_fractured/*.jpg
    Annotations/COCO JSON/COCO_fracture_masks.json   (fractured images only, category id 0)
    Annotations/PASCAL VOC/*.xml, Annotations/YOLO/*.txt (+ labels.txt)
    dataset.csv                                       (body part, view and hardware flags)
    Utilities/Fracture Split/{train,valid,test}.csv   (official split, fractured images only)

Quirks handled (see the dataset's SOURCE.md): folder names with spaces; COCO image ids that
are not file names; annotation files listing images that are not on disk; EXIF-rotated
images whose boxes refer to the rotated image; a CSV flag that contradicts the folder and
the box (folder and box win, the conflict is reported); truncated JPEGs (skipped).
Its tables (``dataset.csv``, the official split) are read by :mod:`fracdet.data.fracatlas_csv`.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from fracdet.data.coco import CocoContent, coco_document, parse_coco
from fracdet.data.formats import (
    BODY_PARTS,
    AnnotatedDataset,
    Box,
    ImageRecord,
    Problem,
    format_voc_xml,
    format_yolo_label,
    parse_voc_xml,
    parse_yolo_label,
)
from fracdet.data.fracatlas_csv import (
    CSV_COLUMNS,
    SPLIT_DIR,
    SPLIT_FILES,
    body_part,
    read_csv_rows,
    read_official_split,
    series_groups,
)
from fracdet.data.scan import list_images, probe_images, sanitize_boxes
from fracdet.errors import DataError, ImageError

__all__ = [
    "FRACATLAS_CLASSES",
    "CSV_COLUMNS",
    "is_fracatlas",
    "read_fracatlas",
    "write_fracatlas_annotations",
    "fracatlas_folder",
]

FRACATLAS_CLASSES: tuple[str, ...] = ("fractured",)
FOLDERS: dict[str, int] = {"Fractured": 1, "Non_fractured": 0}
COCO_FILE = Path("Annotations", "COCO JSON", "COCO_fracture_masks.json")
VOC_DIR = Path("Annotations", "PASCAL VOC")
YOLO_DIR = Path("Annotations", "YOLO")


def is_fracatlas(root: Path) -> bool:
    return any((Path(root) / "images" / folder).is_dir() for folder in FOLDERS)


def fracatlas_folder(record: ImageRecord) -> str:
    return "Fractured" if record.label else "Non_fractured"


def _fallback_boxes(
    root: Path, image_id: str, width: int, height: int
) -> tuple[list[Box], list[Problem], str]:
    """Boxes from the YOLO txt (finer than VOC's integers), else the VOC XML.

    A label file that cannot be read is reported and the next source is tried; with none
    left the image has no boxes (a fractured one is then kept for classification only).
    """
    stem = Path(image_id).stem
    problems: list[Problem] = []
    yolo = root / YOLO_DIR / f"{stem}.txt"
    if yolo.is_file():
        try:
            text = yolo.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            problems.append(
                Problem(
                    str(yolo),
                    "label_unreadable",
                    "not UTF-8 text (binary data?)",
                    "boxes taken from PASCAL VOC if present",
                )
            )
        else:
            boxes, yolo_problems = parse_yolo_label(text, width, height, 1, str(yolo))
            return boxes, problems + yolo_problems, "YOLO"
    voc = root / VOC_DIR / f"{stem}.xml"
    if voc.is_file():
        try:
            boxes, voc_problems = parse_voc_xml(voc, FRACATLAS_CLASSES)
        except DataError as exc:
            problems.append(
                Problem(str(voc), "label_unreadable", exc.message, "no boxes from this file")
            )
            return [], problems, ""
        return boxes, problems + voc_problems, "PASCAL VOC"
    return [], problems, ""


def read_fracatlas(root: Path, *, full_check: bool = False) -> AnnotatedDataset:
    """Read a FracAtlas-layout tree into records (never modifies it)."""
    root = Path(root)
    problems: list[Problem] = []
    on_disk: dict[str, tuple[Path, int]] = {}
    for folder, folder_label in FOLDERS.items():
        if not (root / "images" / folder).is_dir():
            problems.append(
                Problem(
                    str(root / "images" / folder),
                    "missing_file",
                    "folder missing",
                    "no images of this class",
                )
            )
            continue
        paths, listing_problems = list_images(root / "images" / folder)
        problems += listing_problems
        for path in paths:
            if path.name in on_disk:
                problems.append(
                    Problem(
                        str(path),
                        "duplicate_id",
                        f"{path.name} is in both image folders",
                        "second copy skipped",
                    )
                )
                continue
            on_disk[path.name] = (path, folder_label)
    if not on_disk:
        raise DataError("no images under images/Fractured or images/Non_fractured", root)

    rows = read_csv_rows(root / "dataset.csv", problems)
    row_of = {row["image_id"]: row for row in rows}
    groups = series_groups(rows)
    official = read_official_split(root, problems)
    coco = parse_coco(root / COCO_FILE) if (root / COCO_FILE).is_file() else None
    if coco is None:
        problems.append(
            Problem(
                str(root / COCO_FILE),
                "missing_file",
                "no COCO file",
                "boxes read from YOLO txt / PASCAL VOC",
            )
        )
    else:
        problems += coco.problems
    _report_listed_but_missing(root, on_disk, row_of, official, coco, problems)

    names = list(on_disk)
    records: list[ImageRecord] = []
    for name, info in zip(
        names, probe_images([on_disk[n][0] for n in names], full=full_check), strict=True
    ):
        path, folder_label = on_disk[name]
        if isinstance(info, ImageError):
            problems.append(Problem(str(path), "image_corrupt", info.message, "image skipped"))
            continue
        if info.note:
            problems.append(Problem(str(path), "image_note", info.note, "image kept"))
        if coco is not None and (name in coco.boxes or not folder_label):
            raw_boxes, source = coco.boxes.get(name, []), "COCO"
        else:
            raw_boxes, box_problems, source = _fallback_boxes(root, name, info.width, info.height)
            problems += box_problems
        boxes, box_problems = sanitize_boxes(raw_boxes, info.width, info.height, str(path))
        problems += box_problems
        row = row_of.get(name, {})
        label = _resolve_label(path, folder_label, boxes, row, source, problems)
        records.append(
            ImageRecord(
                image_id=name,
                path=path,
                width=info.width,
                height=info.height,
                label=label,
                boxes=boxes,
                group=groups.get(name, Path(name).stem),
                split=official.get(name),
                body_part=body_part(row) if row else "unknown",
                attributes={k: v for k, v in row.items() if k != "image_id"},
            )
        )
    return AnnotatedDataset(records, FRACATLAS_CLASSES, "fracatlas", root, problems)


def _resolve_label(
    path: Path,
    folder_label: int,
    boxes: tuple[Box, ...],
    row: dict[str, str],
    source: str,
    problems: list[Problem],
) -> int:
    """Folder and boxes decide; the CSV flag is only checked against them."""
    label = 1 if (folder_label or boxes) else 0
    folder = "Fractured" if folder_label else "Non_fractured"
    if boxes and not folder_label:
        problems.append(
            Problem(
                str(path),
                "label_conflict",
                f"in images/{folder} but has {len(boxes)} box(es) in {source}",
                "labelled fractured (boxes win)",
            )
        )
    if row.get("fractured") in ("0", "1") and int(row["fractured"]) != label:
        problems.append(
            Problem(
                str(path),
                "label_conflict",
                f"dataset.csv says fractured={row['fractured']} but the image is in "
                f"images/{folder} with {len(boxes)} box(es)",
                f"trusted folder and boxes: fractured={label}",
            )
        )
    if label and not boxes:
        problems.append(
            Problem(
                str(path),
                "fractured_without_box",
                "fractured image without any box",
                "kept for classification, left out of detection outputs",
            )
        )
    return label


def _report_listed_but_missing(
    root: Path,
    on_disk: dict[str, tuple[Path, int]],
    row_of: dict,
    official: dict,
    coco: CocoContent | None,
    problems: list[Problem],
) -> None:
    """One problem per image named by an annotation source but absent from images/."""
    present = {Path(name).stem for name in on_disk}
    listed: dict[str, Iterable[str]] = {"dataset.csv": row_of, "split CSV": official}
    if coco is not None:
        listed["COCO"] = coco.sizes
    for folder, suffix in ((YOLO_DIR, ".txt"), (VOC_DIR, ".xml")):
        if (root / folder).is_dir():
            listed[folder.name] = [
                n for n in os.listdir(root / folder) if n.endswith(suffix) and n != "labels.txt"
            ]
    sources: dict[str, list[str]] = {}
    for source, names in listed.items():
        for name in names:
            if Path(name).stem not in present:
                sources.setdefault(Path(name).stem, []).append(source)
    for stem, where in sorted(sources.items()):
        problems.append(
            Problem(
                stem,
                "annotation_without_image",
                f"listed in {', '.join(where)} but not in images/",
                "ignored",
            )
        )


# --- writing --------------------------------------------------------------------------------


def _csv_row(record: ImageRecord) -> dict[str, object]:
    attributes = dict(record.attributes)
    row: dict[str, object] = {column: attributes.get(column, 0) for column in CSV_COLUMNS}
    row["image_id"] = record.image_id
    if not any(column in attributes for column in BODY_PARTS):
        for part in BODY_PARTS:
            row[part] = int(record.body_part == part)
    row["fractured"] = record.label
    row["fracture_count"] = len(record.boxes)
    return row


def write_fracatlas_annotations(
    records: Sequence[ImageRecord],
    out: Path,
    class_names: Sequence[str] = FRACATLAS_CLASSES,
    *,
    name_of: Callable[[ImageRecord], str] = lambda r: r.image_id,
) -> None:
    """Write FracAtlas' annotation files for images already placed under ``out/images``."""
    out = Path(out)
    for folder in (COCO_FILE.parent, VOC_DIR, YOLO_DIR, SPLIT_DIR):
        (out / folder).mkdir(parents=True, exist_ok=True)
    fractured = [r for r in records if r.label and r.boxes]
    doc = coco_document(fractured, class_names, name_of, first_category_id=0)
    (out / COCO_FILE).write_text(json.dumps(doc), encoding="utf-8")
    for record in records:
        name = name_of(record)
        stem = Path(name).stem
        (out / VOC_DIR / f"{stem}.xml").write_text(
            format_voc_xml(name, record.width, record.height, record.boxes, class_names),
            encoding="utf-8",
        )
        (out / YOLO_DIR / f"{stem}.txt").write_text(
            format_yolo_label(record.boxes, record.width, record.height), encoding="utf-8"
        )
    (out / YOLO_DIR / "labels.txt").write_text("\n".join(class_names) + "\n", encoding="utf-8")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({**_csv_row(record), "image_id": name_of(record)})
    (out / "dataset.csv").write_text(buffer.getvalue(), encoding="utf-8")
    inverse = {v: k for k, v in SPLIT_FILES.items()}
    for split, file_stem in inverse.items():
        names = [name_of(r) for r in fractured if r.split == split]
        (out / SPLIT_DIR / f"{file_stem}.csv").write_text(
            "image_id\n" + "".join(f"{n}\n" for n in names), encoding="utf-8"
        )
