"""Which files of the input folder ``fracdet predict`` reads, and where it may write."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from fracdet.data.scan import scan_folder
from fracdet.errors import ConfigError, DataError

__all__ = ["list_inputs", "check_locations"]


def list_inputs(
    folder: Path, *, recursive: bool = True, exclude: Path | None = None
) -> tuple[list[str], list[dict[str, str]], Mapping[str, str]]:
    """Image paths relative to ``folder`` (posix, sorted), the files that are not images, and
    the on-disk name of each listed name that is not valid UTF-8 (listed escaped, see
    :func:`fracdet.data.scan.safe_name`).

    Predict reads DICOM, so DICOM files (by suffix or by magic) are images here; the walk
    itself, hidden files and ``exclude`` are :func:`fracdet.data.scan.scan_folder`'s. Each
    non-image comes with the reason recorded in the run report.
    """
    scan = scan_folder(folder, recursive=recursive, exclude=exclude)
    others = []
    for other in scan.others:
        if other.kind == "not_an_image":
            suffix = PurePosixPath(other.path).suffix.lower()
            reason = f"not an image (suffix {suffix or '(none)'}, no DICOM header)"
        else:
            reason = other.detail
        others.append({"path": other.path, "reason": reason})
    return sorted(scan.images + scan.dicoms), others, scan.escaped


def check_locations(folder: Path, out: Path) -> None:
    """The input must be a folder the output does not contain (a rerun would eat its overlays)."""
    if not folder.exists():
        raise DataError("input folder not found", folder)
    if not folder.is_dir():
        raise DataError("not a folder (predict takes a folder of images)", folder)
    f, o = os.path.realpath(folder), os.path.realpath(out)
    if f == o or f.startswith(o + os.sep):
        raise ConfigError(
            f"the output folder {out} contains the input folder: choose another --out", out
        )
