"""YOLO datasets as Ultralytics reads them: ``data.yaml`` + ``images/`` + ``labels/``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import yaml

from fracdet.config import load_yaml
from fracdet.data.formats import (
    SPLITS,
    AnnotatedDataset,
    ImageRecord,
    Problem,
    flat_name,
    format_yolo_label,
    parse_yolo_label,
)
from fracdet.data.scan import list_images, probe_images, sanitize_boxes
from fracdet.errors import DataError, ImageError

__all__ = [
    "read_yolo_dataset",
    "read_class_names",
    "write_yolo_labels",
    "yolo_data_yaml",
    "label_path_for",
]

_SPLIT_KEYS = {"train": "train", "val": "val", "valid": "val", "test": "test"}


def label_path_for(image: Path) -> Path:
    """Ultralytics' rule: the last ``/images/`` in the path becomes ``/labels/``, suffix
    ``.txt``.
    """
    text = image.as_posix()
    head, sep, tail = text.rpartition("/images/")
    if not sep:
        return image.with_suffix(".txt")
    return Path(f"{head}/labels/{tail}").with_suffix(".txt")


def read_class_names(data_yaml: Path) -> tuple[str, ...]:
    """Class names of a ``data.yaml`` (or its folder) in class-id order, without reading any image.

    The one reader of ``names``: the detector track checks a model's classes against it.
    """
    path = Path(data_yaml)
    if path.is_dir():
        path = path / "data.yaml"
    return _class_names(load_yaml(path, error=DataError, what="data.yaml"), path)


def _class_names(doc: dict, path: Path) -> tuple[str, ...]:
    """``names`` as a list or an id mapping, checked against ``nc`` when present."""
    names = doc.get("names")
    if isinstance(names, dict):
        try:
            ordered = [names[i] for i in range(len(names))]
        except KeyError as exc:
            raise DataError(
                f"names must be numbered 0..{len(names) - 1} (missing {exc})", path
            ) from exc
    elif isinstance(names, list):
        ordered = names
    else:
        raise DataError("data.yaml has no 'names' list", path)
    if "nc" in doc and (isinstance(doc["nc"], bool) or not isinstance(doc["nc"], int)):
        raise DataError(f"nc must be a whole number, got {doc['nc']!r}", path)
    if "nc" in doc and doc["nc"] != len(ordered):
        raise DataError(f"nc={doc['nc']} but {len(ordered)} names", path)
    if not ordered:
        raise DataError("data.yaml has an empty 'names' list", path)
    return tuple(str(n) for n in ordered)


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path`` stays inside ``root`` once ``..`` is resolved (lexically: links inside
    the dataset may point anywhere).
    """
    return Path(os.path.normpath(os.path.abspath(path))).is_relative_to(
        os.path.normpath(os.path.abspath(root))
    )


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (
        OSError,
        ValueError,
    ):  # a name too long or with a NUL byte, no permission: not a usable file either way
        return False


def _read_text(path: Path) -> str | None:
    """UTF-8 text of a label or list file, ``None`` when it is not text or cannot be read."""
    try:
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _split_images(
    entry: object, root: Path, path: Path, problems: list[Problem]
) -> dict[Path, str]:
    """Image path -> image id (relative to the split folder, as users name their files).

    Folders and list files are what the user's data.yaml names; the image paths inside a
    list file come from the dataset, so those must stay inside the dataset root.
    """
    items = entry if isinstance(entry, list) else [entry]
    if not all(isinstance(item, str) and item for item in items):
        raise DataError(
            f"a split must be a folder or list file (or a list of them), got {entry!r}", path
        )
    images: dict[Path, str] = {}
    for item in items:
        where = (root / item) if not Path(item).is_absolute() else Path(item)
        if where.is_dir():
            found, listing_problems = list_images(where, recursive=True)
            images.update((p, p.relative_to(where).as_posix()) for p in found)
            problems += listing_problems
        elif where.suffix == ".txt" and _is_file(where):
            images.update(_listed_images(where, root, problems))
        else:
            raise DataError(f"split folder or list {item!r} not found under {root}", path)
    return images


def _listed_images(listing: Path, root: Path, problems: list[Problem]) -> dict[Path, str]:
    """Images named one a line in a list file (relative to the file's folder, or absolute)."""
    text = _read_text(listing)
    if text is None:
        raise DataError("split list is not UTF-8 text", listing)
    images: dict[Path, str] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        p = Path(name) if Path(name).is_absolute() else listing.parent / name
        p = Path(os.path.normpath(p))
        if not _inside(p, root):
            problems.append(
                Problem(
                    str(listing),
                    "path_outside_dataset",
                    f"line {lineno}: {name!r} is outside the dataset folder {root} (refused, "
                    "never opened)",
                    "image skipped",
                )
            )
        elif not _is_file(p):
            problems.append(
                Problem(
                    str(listing),
                    "annotation_without_image",
                    f"line {lineno}: {name!r} not found",
                    "image skipped",
                )
            )
        else:
            images[p] = p.name
    return images


def read_yolo_dataset(data_yaml: Path, *, full_check: bool = False) -> AnnotatedDataset:
    """Read every split a ``data.yaml`` names; an image without a label file is a negative."""
    path = Path(data_yaml)
    if path.is_dir():
        path = path / "data.yaml"
    doc = load_yaml(path, error=DataError, what="data.yaml")
    class_names = _class_names(doc, path)
    if doc.get("path") is not None and not isinstance(doc["path"], str):
        raise DataError(f"path must be a folder name, got {doc['path']!r}", path)
    # a relative `path:` is read from the data.yaml's folder; without one, that folder is the root
    given = Path(doc["path"]) if doc.get("path") else None
    root = path.parent if given is None else given if given.is_absolute() else path.parent / given
    problems: list[Problem] = []
    split_of: dict[Path, str] = {}
    id_of: dict[Path, str] = {}
    for key, split in _SPLIT_KEYS.items():
        if not doc.get(key):
            continue
        for image, image_id in _split_images(doc[key], root, path, problems).items():
            if image in split_of:
                problems.append(
                    Problem(
                        str(image),
                        "duplicate_id",
                        f"listed in both {split_of[image]} and {split}",
                        f"kept in {split_of[image]}",
                    )
                )
            else:
                split_of[image], id_of[image] = split, image_id
    if not split_of:
        raise DataError("no images in any split (train/val/test)", path)
    problems += _labels_without_images(split_of)
    images = list(split_of)
    records: list[ImageRecord] = []
    for image, info in zip(images, probe_images(images, full=full_check), strict=True):
        if isinstance(info, ImageError):
            problems.append(Problem(str(image), "image_corrupt", info.message, "image skipped"))
            continue
        if info.note:
            problems.append(Problem(str(image), "image_note", info.note, "image kept"))
        label_file = label_path_for(image)
        if _is_file(label_file):
            text = _read_text(label_file)
            if text is None:
                problems.append(
                    Problem(
                        str(label_file),
                        "label_unreadable",
                        "not UTF-8 text (binary data?)",
                        "image skipped",
                    )
                )
                continue
            raw, label_problems = parse_yolo_label(
                text, info.width, info.height, len(class_names), str(label_file)
            )
            problems += label_problems
        else:
            raw = []
            problems.append(
                Problem(
                    str(image),
                    "image_without_label",
                    f"no {label_file.name}",
                    "treated as negative",
                )
            )
        boxes, box_problems = sanitize_boxes(raw, info.width, info.height, str(label_file))
        problems += box_problems
        records.append(
            ImageRecord(
                id_of[image],
                image,
                info.width,
                info.height,
                int(bool(boxes)),
                boxes,
                group=image.stem,
                split=split_of[image],
            )
        )
    return AnnotatedDataset(records, class_names, "yolo", root, problems)


def _labels_without_images(split_of: dict[Path, str]) -> list[Problem]:
    expected = {label_path_for(image) for image in split_of}
    folders = {p.parent for p in expected}
    problems = []
    for folder in sorted(folders):
        if folder.is_dir():
            for name in sorted(os.listdir(folder)):
                candidate = folder / name
                if name.endswith(".txt") and candidate not in expected and name != "classes.txt":
                    problems.append(
                        Problem(
                            str(candidate),
                            "label_without_image",
                            "no image with this name",
                            "ignored",
                        )
                    )
    return problems


def yolo_data_yaml(class_names: Sequence[str], splits: Sequence[str]) -> str:
    """``data.yaml`` without a ``path`` key: Ultralytics then resolves splits next to the file."""
    doc: dict = {split: f"images/{split}" for split in SPLITS if split in splits}
    doc["nc"] = len(class_names)
    doc["names"] = dict(enumerate(class_names))
    return yaml.safe_dump(doc, sort_keys=False)


def write_yolo_labels(records: Sequence[ImageRecord], out: Path) -> None:
    """``labels/{split}/{stem}.txt`` for records already placed under ``images/{split}``."""
    for split in {r.split for r in records}:
        (out / "labels" / str(split)).mkdir(parents=True, exist_ok=True)
    for record in records:
        stem = Path(flat_name(record.image_id)).stem
        (out / "labels" / str(record.split) / f"{stem}.txt").write_text(
            format_yolo_label(record.boxes, record.width, record.height), encoding="utf-8"
        )
