"""COCO detection JSON: parse any COCO file, write one per split for pycocotools."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fracdet.data.formats import (
    SPLITS,
    AnnotatedDataset,
    Box,
    ImageRecord,
    Problem,
    box_from_coco,
    box_to_coco,
)
from fracdet.data.scan import probe_images, sanitize_boxes
from fracdet.errors import DataError, ImageError

__all__ = ["CocoContent", "parse_coco", "coco_document", "read_coco"]


@dataclass
class CocoContent:
    """A COCO file reduced to what fracdet uses, keyed by ``file_name``."""

    class_names: tuple[str, ...]
    sizes: dict[str, tuple[int, int]]
    boxes: dict[str, list[Box]]
    problems: list[Problem]


def parse_coco(path: Path) -> CocoContent:
    """Read a COCO JSON; categories become labels in the order of their ids (0 or 1 based)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        images, annotations, categories = doc["images"], doc.get("annotations", []), doc["categories"]
    except FileNotFoundError as exc:
        raise DataError("COCO file not found", path) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"not valid JSON ({exc})", path) from exc
    except (KeyError, TypeError) as exc:
        raise DataError(f"not a COCO detection file (missing {exc})", path) from exc
    file = str(path)
    categories = sorted(categories, key=lambda c: c["id"])
    label_of = {c["id"]: i for i, c in enumerate(categories)}
    problems: list[Problem] = []
    name_of: dict[int, str] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for image in images:
        name = image["file_name"]
        if name in sizes:
            problems.append(Problem(file, "duplicate_id", f"image {name!r} listed twice", "second entry ignored"))
            continue
        name_of[image["id"]] = name
        sizes[name] = (int(image.get("width") or 0), int(image.get("height") or 0))
    boxes: dict[str, list[Box]] = defaultdict(list)
    for ann in annotations:
        name = name_of.get(ann.get("image_id"))
        if name is None:
            problems.append(Problem(file, "annotation_without_image", f"annotation {ann.get('id')} refers to unknown image id {ann.get('image_id')}", "annotation dropped"))
        elif ann.get("category_id") not in label_of:
            problems.append(Problem(file, "class_id_out_of_range", f"annotation {ann.get('id')} has unknown category {ann.get('category_id')}", "box dropped"))
        elif ann.get("iscrowd"):
            problems.append(Problem(file, "crowd_annotation", f"annotation {ann.get('id')} is a crowd region", "box dropped"))
        else:
            boxes[name].append(box_from_coco(ann["bbox"], label_of[ann["category_id"]]))
    return CocoContent(tuple(c["name"] for c in categories), sizes, dict(boxes), problems)


def coco_document(
    records: Sequence[ImageRecord],
    class_names: Sequence[str],
    file_name_of: Callable[[ImageRecord], str],
    *,
    first_category_id: int = 1,
) -> dict:
    """A COCO ground-truth dict with every record (negatives too: they hold false positives)."""
    images, annotations = [], []
    for image_id, record in enumerate(records, start=1):
        images.append({"id": image_id, "file_name": file_name_of(record), "width": record.width, "height": record.height})
        for box in record.boxes:
            x, y, w, h = box_to_coco(box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": box.label + first_category_id,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                    "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
                }
            )
    categories = [{"id": i + first_category_id, "name": n, "supercategory": "fracture"} for i, n in enumerate(class_names)]
    return {"info": {"description": "written by fracdet"}, "images": images, "annotations": annotations, "categories": categories}


def _split_from_stem(stem: str) -> str | None:
    for token in reversed(stem.replace("-", "_").split("_")):
        token = {"valid": "val", "validation": "val"}.get(token, token)
        if token in SPLITS:
            return token
    return None


def read_coco(path: Path, images_root: Path | None = None, *, full_check: bool = False) -> AnnotatedDataset:
    """Read a COCO JSON and its images; an image with no box is a negative.

    ``file_name`` is looked up under ``images_root`` when given, else next to the JSON,
    its parent, and their ``images/`` folders. A split is taken from the file name
    (``instances_train.json`` -> train).
    """
    path = Path(path)
    content = parse_coco(path)
    problems = list(content.problems)
    split = _split_from_stem(path.stem)
    roots = [images_root] if images_root else [path.parent, path.parent.parent, path.parent / "images", path.parent.parent / "images"]
    if split and not images_root:
        roots.append(path.parent.parent / "images" / split)  # fracdet's own layout
    found: list[tuple[str, Path]] = []
    for name in content.sizes:
        hit = next((r / name for r in roots if (r / name).is_file()), None)
        if hit is None:
            problems.append(Problem(name, "annotation_without_image", f"listed in {path.name} but not found under {', '.join(map(str, roots))}", "image skipped"))
        else:
            found.append((name, hit))
    records: list[ImageRecord] = []
    for (name, image_path), info in zip(found, probe_images([p for _, p in found], full=full_check), strict=True):
        if isinstance(info, ImageError):
            problems.append(Problem(name, "image_corrupt", info.message, "image skipped"))
            continue
        boxes, box_problems = sanitize_boxes(content.boxes.get(name, []), info.width, info.height, name)
        problems += box_problems
        records.append(
            ImageRecord(name, image_path, info.width, info.height, int(bool(boxes)), boxes, group=Path(name).stem, split=split)
        )
    return AnnotatedDataset(records, content.class_names, "coco", path.parent, problems)
