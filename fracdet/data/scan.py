"""Finding, probing and checking images and boxes, shared by every reader."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from fracdet.data.formats import Box, Problem, clip_box
from fracdet.data.images import DICOM_SUFFIXES, IMAGE_SUFFIXES, ImageInfo, is_dicom, read_image_info
from fracdet.errors import ImageError
from fracdet.log import progress

__all__ = ["list_images", "probe_images", "sanitize_boxes"]


def list_images(folder: Path, *, recursive: bool = False) -> tuple[list[Path], list[Problem]]:
    """Raster images in ``folder`` (sorted, so every run sees the same order), and problems.

    DICOM files are reported rather than listed: Ultralytics and COCO tools cannot read them
    (``fracdet predict`` can). Other files are reported as not images.
    """
    if recursive:
        found = [Path(d) / f for d, _, files in os.walk(folder) for f in files]
    else:
        with os.scandir(folder) as entries:
            found = [Path(e.path) for e in entries if e.is_file()]
    images, problems = [], []
    for path in sorted(found):
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            images.append(path)
        elif suffix in DICOM_SUFFIXES or is_dicom(path):
            problems.append(Problem(str(path), "unsupported_format", "DICOM in a training dataset: YOLO and COCO tools read JPEG/PNG only; export it to PNG first", "image skipped"))
        elif not path.name.startswith("."):
            problems.append(Problem(str(path), "not_an_image", f"suffix {suffix or '(none)'} is not an image format", "ignored"))
    return images, problems


def _probe(path: Path, full: bool) -> ImageInfo | ImageError:
    try:
        return read_image_info(path, full=full)
    except ImageError as exc:
        return exc


def probe_images(paths: Sequence[Path], *, full: bool = False) -> list[ImageInfo | ImageError]:
    """Header (or full) check of many images; each result is an info or the error it raised.

    A plain loop: header parsing is CPU-bound Python, and a thread pool measured slower on
    2 cores (benchmarks/convert.py).
    """
    return [_probe(path, full) for path in progress(paths, "Checking images", total=len(paths))]


def sanitize_boxes(boxes: Iterable[Box], width: int, height: int, file: str) -> tuple[tuple[Box, ...], list[Problem]]:
    """Clip boxes to the image and drop those with no area left, reporting both."""
    kept: list[Box] = []
    problems: list[Problem] = []
    for box in boxes:
        clipped, kind = clip_box(box, width, height)
        coords = ", ".join(f"{v:.1f}" for v in box.as_list())
        if clipped is None:
            problems.append(Problem(file, kind or "box_zero_area", f"box [{coords}] in a {width}x{height} image", "box dropped"))
            continue
        if kind:
            problems.append(Problem(file, kind, f"box [{coords}] outside the {width}x{height} image", "box clipped to the image"))
        kept.append(clipped)
    return tuple(kept), problems
