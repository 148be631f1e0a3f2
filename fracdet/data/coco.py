"""COCO detection JSON: parse any COCO file, write one per split for pycocotools."""

from __future__ import annotations

import json
import posixpath
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath

from fracdet.data.formats import (
    SPLITS,
    AnnotatedDataset,
    Box,
    ImageRecord,
    Problem,
    box_from_coco,
    box_to_coco,
)
from fracdet.data.images import is_dicom
from fracdet.data.scan import dicom_in_dataset, probe_images, sanitize_boxes
from fracdet.errors import DataError, ImageError

__all__ = ["CocoContent", "parse_coco", "coco_document", "read_coco", "is_safe_relative"]


@dataclass
class CocoContent:
    """A COCO file reduced to what fracdet uses, keyed by ``file_name``."""

    class_names: tuple[str, ...]
    sizes: dict[str, tuple[int, int]]
    boxes: dict[str, list[Box]]
    problems: list[Problem]
    ids: dict[str, int | str] = field(default_factory=dict)  # file_name -> the file's own image id


_AMBIGUOUS = object()  # marks an image id that several images share


def parse_coco(path: Path) -> CocoContent:
    """Read a COCO JSON; categories become labels in the order of their ids (0 or 1 based).

    A file that is not a COCO detection document is a :class:`DataError`; a bad image or
    annotation entry is dropped and reported, so one broken entry does not sink the dataset.
    A ``file_name`` that is absolute or climbs out of the dataset (``../``) is refused: the
    file it names is never opened.
    """
    path = Path(path)
    file = str(path)
    doc = _load_json(path)
    images, annotations, categories = (
        doc.get("images"),
        doc.get("annotations", []),
        doc.get("categories"),
    )
    for key, value in (
        ("images", images),
        ("annotations", annotations),
        ("categories", categories),
    ):
        if value is None:
            raise DataError(f"not a COCO detection file (no {key!r} list)", path)
        if not isinstance(value, list):
            raise DataError(
                f"not a COCO detection file ({key!r} must be a list, got {type(value).__name__})",
                path,
            )
    class_names, label_of = _categories(categories, path)
    problems: list[Problem] = []
    name_of, sizes = _images(images, file, problems)
    boxes: dict[str, list[Box]] = defaultdict(list)
    for index, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            problems.append(
                Problem(
                    file,
                    "label_unparsable",
                    f"annotations[{index}] is not an object",
                    "annotation dropped",
                )
            )
            continue
        ann_id = ann.get("id", f"#{index}")
        image_id, category_id = _id(ann.get("image_id")), _id(ann.get("category_id"))
        name = name_of.get(image_id) if image_id is not None else None
        if name is None:
            problems.append(
                Problem(
                    file,
                    "annotation_without_image",
                    f"annotation {ann_id} refers to unknown image id {ann.get('image_id')!r}",
                    "annotation dropped",
                )
            )
        elif name is _AMBIGUOUS:
            continue  # its image id is listed twice: reported with the images, all of them skipped
        elif category_id not in label_of:
            problems.append(
                Problem(
                    file,
                    "class_id_out_of_range",
                    f"annotation {ann_id} has unknown category {ann.get('category_id')!r}",
                    "box dropped",
                )
            )
        elif ann.get("iscrowd"):
            problems.append(
                Problem(
                    file,
                    "crowd_annotation",
                    f"annotation {ann_id} is a crowd region",
                    "box dropped",
                )
            )
        elif not _is_bbox(ann.get("bbox")):
            problems.append(
                Problem(
                    file,
                    "label_unparsable",
                    f"annotation {ann_id}: bbox must be 4 numbers [x, y, w, h], got "
                    f"{ann.get('bbox')!r:.80}",
                    "box dropped",
                )
            )
        else:
            boxes[name].append(box_from_coco(ann["bbox"], label_of[category_id]))
    ids = {str(name): image_id for image_id, name in name_of.items() if name is not _AMBIGUOUS}
    return CocoContent(class_names, sizes, dict(boxes), problems, ids)


def _load_json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError as exc:
        raise DataError("COCO file not found", path) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"not valid JSON ({exc})", path) from exc
    except RecursionError as exc:
        raise DataError("not valid JSON (nested too deeply)", path) from exc
    except OSError as exc:
        raise DataError(f"cannot read ({exc.strerror or exc})", path) from exc
    if not isinstance(doc, dict):
        raise DataError(
            "not a COCO detection file (expected a JSON object with images, annotations and "
            f"categories, got a {type(doc).__name__})",
            path,
        )
    return doc


def _id(value: object) -> int | str | None:
    """An id usable as a key: COCO ids are integers (some tools write strings); anything else is
    none.
    """
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


def _is_bbox(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )


def _categories(categories: list, path: Path) -> tuple[tuple[str, ...], dict[int | str, int]]:
    """Class names in id order and label of each category id; a broken category list is fatal (it
    defines the classes).
    """
    entries: dict[int | str, str] = {}
    for index, category in enumerate(categories):
        cat_id = _id(category.get("id")) if isinstance(category, dict) else None
        name = category.get("name") if isinstance(category, dict) else None
        if cat_id is None or not isinstance(name, str):
            raise DataError(
                f"not a COCO detection file (categories[{index}] needs an id and a name, got "
                f"{category!r:.80})",
                path,
            )
        if cat_id in entries:
            raise DataError(f"category id {cat_id!r} is listed twice", path)
        entries[cat_id] = name
    try:
        ordered = sorted(entries)
    except TypeError as exc:
        raise DataError("category ids mix numbers and strings", path) from exc
    return tuple(entries[i] for i in ordered), {
        cat_id: label for label, cat_id in enumerate(ordered)
    }


def _images(
    images: list, file: str, problems: list[Problem]
) -> tuple[dict[int | str, object], dict[str, tuple[int, int]]]:
    """Image id -> file name (or :data:`_AMBIGUOUS`), and file name -> declared size."""
    name_of: dict[int | str, object] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for index, image in enumerate(images):
        image_id = _id(image.get("id")) if isinstance(image, dict) else None
        name = image.get("file_name") if isinstance(image, dict) else None
        if image_id is None or not isinstance(name, str) or not name:
            problems.append(
                Problem(
                    file,
                    "label_unparsable",
                    f"images[{index}] needs an id and a file_name, got {image!r:.80}",
                    "entry ignored",
                )
            )
            continue
        if not is_safe_relative(name):
            problems.append(
                Problem(
                    file,
                    "path_outside_dataset",
                    f"image {image_id!r}: file_name {name!r} is absolute or leaves the "
                    "dataset folder (refused, never opened)",
                    "image skipped",
                )
            )
            continue
        if (
            image_id in name_of
        ):  # whose are its annotations? Neither image can be trusted: both skipped
            first = name_of[image_id]
            if first is not _AMBIGUOUS:
                sizes.pop(str(first), None)
                problems.append(
                    Problem(
                        file,
                        "duplicate_id",
                        f"image id {image_id!r} of {first!r} is also used by {name!r}: its "
                        "annotations cannot be attributed",
                        "image skipped",
                    )
                )
            problems.append(
                Problem(
                    file,
                    "duplicate_id",
                    f"image id {image_id!r} of {name!r} is also used by another image: its "
                    "annotations cannot be attributed",
                    "image skipped",
                )
            )
            name_of[image_id] = _AMBIGUOUS
            continue
        if name in sizes:
            problems.append(
                Problem(
                    file, "duplicate_id", f"image {name!r} listed twice", "second entry ignored"
                )
            )
            continue
        name_of[image_id] = name
        sizes[name] = (_size(image.get("width")), _size(image.get("height")))
    return name_of, sizes


def _size(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def is_safe_relative(name: str) -> bool:
    """Whether a file name from an annotation file stays inside the folder it is joined to.

    Absolute names (POSIX or Windows), drive letters and names whose ``..`` climb above the
    folder are not; neither are names with a NUL byte.
    """
    if "\0" in name:
        return False
    posix = name.replace("\\", "/")
    if posixpath.isabs(posix) or PureWindowsPath(name).drive:
        return False
    normal = posixpath.normpath(posix)
    return normal not in (".", "..") and not normal.startswith("../")


def coco_document(
    records: Sequence[ImageRecord],
    class_names: Sequence[str],
    file_name_of: Callable[[ImageRecord], str],
    *,
    first_category_id: int = 1,
    image_ids: Sequence[int | str] | None = None,
) -> dict:
    """A COCO ground-truth dict with every record (negatives too: they hold false positives).

    Images are numbered 1..n in order unless ``image_ids`` gives each record its id.
    """
    images, annotations = [], []
    for image_id, record in zip(image_ids or range(1, len(records) + 1), records, strict=True):
        images.append(
            {
                "id": image_id,
                "file_name": file_name_of(record),
                "width": record.width,
                "height": record.height,
            }
        )
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
    categories = [
        {"id": i + first_category_id, "name": n, "supercategory": "fracture"}
        for i, n in enumerate(class_names)
    ]
    return {
        "info": {"description": "written by fracdet"},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long or with a NUL byte: no such image either way
        return False


def _split_from_stem(stem: str) -> str | None:
    for token in reversed(stem.replace("-", "_").split("_")):
        token = {"valid": "val", "validation": "val"}.get(token, token)
        if token in SPLITS:
            return token
    return None


def read_coco(
    path: Path, images_root: Path | None = None, *, full_check: bool = False
) -> AnnotatedDataset:
    """Read a COCO JSON and its images; an image with no box is a negative.

    ``file_name`` is looked up under ``images_root`` when given, else next to the JSON,
    its parent, and their ``images/`` folders. A split is taken from the file name
    (``instances_train.json`` -> train).
    """
    path = Path(path)
    content = parse_coco(path)
    problems = list(content.problems)
    split = _split_from_stem(path.stem)
    roots = (
        [images_root]
        if images_root
        else [
            path.parent,
            path.parent.parent,
            path.parent / "images",
            path.parent.parent / "images",
        ]
    )
    if split and not images_root:
        roots.append(path.parent.parent / "images" / split)  # fracdet's own layout
    found: list[tuple[str, Path]] = []
    for name in content.sizes:
        hit = next((r / name for r in roots if _is_file(r / name)), None)
        if hit is None:
            problems.append(
                Problem(
                    name,
                    "annotation_without_image",
                    f"listed in {path.name} but not found under {', '.join(map(str, roots))}",
                    "image skipped",
                )
            )
        elif is_dicom(hit):
            problems.append(dicom_in_dataset(name))
        else:
            found.append((name, hit))
    records: list[ImageRecord] = []
    for (name, image_path), info in zip(
        found, probe_images([p for _, p in found], full=full_check), strict=True
    ):
        if isinstance(info, ImageError):
            problems.append(Problem(name, "image_corrupt", info.message, "image skipped"))
            continue
        if info.note:
            problems.append(Problem(name, "image_note", info.note, "image kept"))
        boxes, box_problems = sanitize_boxes(
            content.boxes.get(name, []), info.width, info.height, name
        )
        problems += box_problems
        records.append(
            ImageRecord(
                name,
                image_path,
                info.width,
                info.height,
                int(bool(boxes)),
                boxes,
                group=Path(name).stem,
                split=split,
            )
        )
    return AnnotatedDataset(records, content.class_names, "coco", path.parent, problems)
