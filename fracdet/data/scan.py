"""Finding, probing and checking images and boxes, shared by every reader and by predict."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fracdet.data.formats import Box, Problem, clip_box
from fracdet.data.images import IMAGE_SUFFIXES, ImageInfo, is_dicom, read_image_info
from fracdet.errors import DataError, ImageError
from fracdet.log import progress

__all__ = [
    "OtherFile",
    "FolderScan",
    "scan_folder",
    "list_images",
    "dicom_in_dataset",
    "probe_images",
    "sanitize_boxes",
]


@dataclass(frozen=True)
class OtherFile:
    """A directory entry that is not an image, or that cannot be read at all.

    ``kind`` is ``not_an_image``, ``unreadable_file`` (a symbolic link loop, a broken link,
    a FIFO...) or ``unreadable_folder`` (a subfolder that cannot be listed); ``detail`` says why.
    """

    path: str
    kind: str
    detail: str


@dataclass(frozen=True)
class FolderScan:
    """One walk over an image folder; paths are relative to it (posix) and each list is sorted."""

    images: tuple[str, ...]
    dicoms: tuple[str, ...]
    others: tuple[OtherFile, ...]


def _classify_entry(entry: os.DirEntry) -> tuple[bool, str | None]:
    """``(is_dir, why_unreadable)`` of an entry, without letting ``OSError`` out.

    ``DirEntry.is_dir``/``is_file`` follow links and raise on a link loop (ELOOP); such an
    entry, a broken link or a FIFO is no image, and opening a FIFO to sniff it would block.
    """
    try:
        if entry.is_dir():
            return True, None
        if entry.is_file():
            return False, None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return False, "symbolic link loop: it points (through links) back at itself"
        return False, f"cannot stat it ({exc.strerror or exc})"
    if entry.is_symlink():
        return False, "broken symbolic link: its target does not exist"
    return False, "not a regular file (FIFO, socket or device)"


def scan_folder(
    folder: Path, *, recursive: bool = False, exclude: Path | None = None
) -> FolderScan:
    """Sort the files of ``folder`` into raster images, DICOM files and the rest, with reasons.

    Raster images are the suffixes of :data:`IMAGE_SUFFIXES`; DICOM is found by suffix or by
    its magic (exports often have no suffix). Hidden files and folders (a leading dot:
    ``.DS_Store``, macOS ``._x.jpg`` shadows, ``.git``) are skipped, as is the folder
    ``exclude`` (an output inside the input: its overlays are not inputs). Linked folders
    are not followed, so a link to an ancestor cannot make the walk endless. A folder that
    cannot be listed is a :class:`DataError`; a subfolder that cannot be is reported.
    """
    folder = Path(folder)
    skip = os.path.realpath(exclude) if exclude is not None else None
    images: list[str] = []
    dicoms: list[str] = []
    others: list[OtherFile] = []
    pending: list[tuple[Path, str]] = [(folder, "")]
    while pending:
        where, prefix = pending.pop()
        try:
            with os.scandir(where) as it:
                entries = list(it)
        except OSError as exc:
            if where == folder:
                raise DataError(f"cannot list folder ({exc.strerror or exc})", folder) from exc
            others.append(
                OtherFile(
                    prefix.rstrip("/"),
                    "unreadable_folder",
                    f"cannot list folder ({exc.strerror or exc})",
                )
            )
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = prefix + entry.name
            is_dir, unreadable = _classify_entry(entry)
            if is_dir:
                if (
                    recursive
                    and not entry.is_symlink()
                    and (skip is None or os.path.realpath(entry.path) != skip)
                ):
                    pending.append((Path(entry.path), rel + "/"))
            elif unreadable is not None:
                others.append(OtherFile(rel, "unreadable_file", unreadable))
            elif PurePosixPath(rel).suffix.lower() in IMAGE_SUFFIXES:
                images.append(rel)
            elif is_dicom(Path(entry.path)):
                dicoms.append(rel)
            else:
                suffix = PurePosixPath(rel).suffix.lower()
                others.append(
                    OtherFile(
                        rel, "not_an_image", f"suffix {suffix or '(none)'} is not an image format"
                    )
                )
    return FolderScan(
        tuple(sorted(images)), tuple(sorted(dicoms)), tuple(sorted(others, key=lambda o: o.path))
    )


def dicom_in_dataset(name: str) -> Problem:
    """Why a DICOM file in a YOLO or COCO dataset is skipped: the tools that read ``convert``'s
    output (Ultralytics, COCO tools, the training loaders) take raster files; one rule for every
    dataset format."""
    detail = (
        "DICOM in a training dataset: YOLO and COCO tools read JPEG/PNG only; "
        "export it to PNG first"
    )
    return Problem(name, "unsupported_format", detail, "image skipped")


def list_images(folder: Path, *, recursive: bool = False) -> tuple[list[Path], list[Problem]]:
    """Raster images in ``folder`` for a training dataset (sorted, so every run sees the same
    order), and problems.

    DICOM files are reported rather than listed: Ultralytics and COCO tools cannot read them
    (``fracdet predict`` can). Other files are reported as not images, and entries that
    cannot be read (link loops, broken links) with their reason; see :func:`scan_folder`.
    """
    folder = Path(folder)
    scan = scan_folder(folder, recursive=recursive)
    found: list[tuple[Path, Problem]] = []
    for rel in scan.dicoms:
        found.append((folder / rel, dicom_in_dataset(str(folder / rel))))
    for other in scan.others:
        found.append(
            (
                folder / other.path,
                Problem(str(folder / other.path), other.kind, other.detail, "ignored"),
            )
        )
    found.sort(key=lambda pair: pair[0])
    return sorted(folder / rel for rel in scan.images), [problem for _, problem in found]


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


def sanitize_boxes(
    boxes: Iterable[Box], width: int, height: int, file: str
) -> tuple[tuple[Box, ...], list[Problem]]:
    """Clip boxes to the image and drop those with no area left, reporting both."""
    kept: list[Box] = []
    problems: list[Problem] = []
    for box in boxes:
        clipped, kind = clip_box(box, width, height)
        coords = ", ".join(f"{v:.1f}" for v in box.as_list())
        if clipped is None:
            problems.append(
                Problem(
                    file,
                    kind or "box_zero_area",
                    f"box [{coords}] in a {width}x{height} image",
                    "box dropped",
                )
            )
            continue
        if kind:
            problems.append(
                Problem(
                    file,
                    kind,
                    f"box [{coords}] outside the {width}x{height} image",
                    "box clipped to the image",
                )
            )
        kept.append(clipped)
    return tuple(kept), problems
