"""File-system helpers that keep the "nothing lost" invariant.

Outputs are built in a temporary sibling directory and renamed into place, so an interrupted
run never leaves a half-written output; an existing output is replaced only on request.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path

from fracdet.errors import OutputExistsError

__all__ = ["LinkMode", "place_file", "atomic_output_dir"]

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


@contextmanager
def atomic_output_dir(out: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``out`` when the block succeeds.

    Refuses an existing ``out`` unless ``overwrite``; on error the temporary directory is
    removed and ``out`` is left as it was.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError("already exists; pass --overwrite to replace it", out)
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
