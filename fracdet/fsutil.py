"""File-system helpers that keep the "nothing lost" invariant.

Outputs are built in a temporary sibling directory and renamed into place, so an interrupted
run never leaves a half-written output; an existing output is replaced only on request.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any

from fracdet.errors import ConfigError, OutputExistsError

__all__ = [
    "LinkMode",
    "place_file",
    "atomic_output_dir",
    "check_folder_path",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "sha256_file",
]

logger = logging.getLogger(__name__)


class LinkMode(str, Enum):
    """How images get into an output: hard link (default), symbolic link or copy."""

    hardlink = "hardlink"
    symlink = "symlink"
    copy = "copy"


def place_file(src: Path, dst: Path, mode: LinkMode) -> LinkMode:
    """Put ``src`` at ``dst``; returns the mode actually used.

    A hard link across file systems is impossible; then the file is copied (and the caller
    learns it from the return value).
    """
    if mode is LinkMode.hardlink:
        try:
            os.link(src, dst)
            return LinkMode.hardlink
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
    if mode is LinkMode.symlink:
        os.symlink(os.path.abspath(src), dst)
        return LinkMode.symlink
    shutil.copy2(src, dst)
    return LinkMode.copy


def check_folder_path(path: Path) -> None:
    """Refuse a folder path blocked by a file (the path itself or a folder above it).

    Found before anything is written, this is one line naming the file; found by ``mkdir``
    deep inside a run, it would be a traceback.
    """
    for part in (Path(path), *Path(path).parents):
        if part.exists():
            if not part.is_dir():
                raise ConfigError("is a file, not a folder; pass another output folder", part)
            return


@contextmanager
def atomic_output_dir(out: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``out`` when the block succeeds.

    Refuses an existing ``out`` unless ``overwrite``; on error the temporary directory is
    removed and ``out`` is left as it was.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError("already exists; pass --overwrite to replace it", out)
    check_folder_path(out.parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it onto ``path``.

    The one temp-file-and-rename of the project: a reader (or a resumed run) sees the old
    file or the new one, never half of one. The parent folder is created when missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, doc: Any, *, indent: int | None = 2) -> Path:
    """Write ``doc`` as JSON (``str()`` for paths and other non-JSON values), atomically."""
    return atomic_write_text(path, json.dumps(doc, indent=indent, default=str) + "\n")


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (checkpoints can be hundreds of MB)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
