"""File-system helpers that keep the "nothing lost" invariant.

Outputs are built in a temporary sibling directory and renamed into place, so an interrupted
run never leaves a half-written output; an existing output is replaced only on request.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any, TextIO

from fracdet.errors import ConfigError, OutputBusyError, OutputExistsError

__all__ = [
    "LinkMode",
    "place_file",
    "atomic_output_dir",
    "check_folder_path",
    "atomic_write",
    "atomic_writer",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "sha256_file",
    "lock_path",
    "output_lock",
    "outputs_of",
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
    with _temporary_sibling(path) as tmp:
        write(tmp)
    return Path(path)


@contextmanager
def atomic_writer(path: Path) -> Iterator[TextIO]:
    """A UTF-8 text handle on a temporary sibling of ``path``, renamed onto it when the block ends.

    For files written piece by piece (a JSON document of one item per row of a large CSV)
    that should never be whole in memory; an exception in the block leaves ``path`` as it
    was (see :func:`atomic_write`).
    """
    with _temporary_sibling(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        yield fh


@contextmanager
def _temporary_sibling(path: Path) -> Iterator[Path]:
    """A new empty file beside ``path`` that replaces it if the block succeeds, else goes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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


# --- one run per output folder ---------------------------------------------------------------

_OUTPUTS_ATTR = "fracdet_outputs"


def lock_path(out: Path) -> Path:
    """The lock of output folder ``out``: a hidden sibling, ``.NAME.lock``.

    Beside the folder, not in it: it exists before the folder does (``convert`` renames its
    output into place at the end), survives ``--overwrite`` removing the folder, and never
    makes an empty output look used. Symbolic links are resolved, so two spellings of one
    folder share one lock.
    """
    real = Path(os.path.realpath(out))
    return real.parent / f".{real.name}.lock"


@contextmanager
def output_lock(out: Path) -> Iterator[Path]:
    """Hold ``out``'s lock for the block: a second run into the same folder refuses at once.

    The lock file holds the pid, host, start time and command of its run. A lock whose run
    is gone (a killed run on this host: its pid no longer runs) is taken over with a note. The
    folder's writability is tried here too, so a read-only or unwritable output fails before
    any work. An exception leaving the block carries ``out`` (:func:`outputs_of`), so the
    CLI's one line can name the folder a full disk or an interrupt hit. Under torchrun only
    rank 0 locks: the other ranks are the same run.
    """
    out = Path(out)
    under_a_file = any(p.exists() and not p.is_dir() for p in (out.parent, *out.parent.parents))
    if os.environ.get("RANK", "0") != "0" or under_a_file:
        yield out  # under a file nothing can be written: the command's own check says so
        return
    lock = lock_path(out)
    made = _make_folder(lock.parent)
    try:
        try:
            _acquire(lock, out)
            if out.is_dir():
                _try_writing(out)
        except BaseException:
            _remove_empty(made)
            raise
        try:
            yield out
        finally:
            _release(lock)
    except BaseException as exc:
        _mark(exc, out)
        _remove_empty(made)
        raise


def outputs_of(exc: BaseException) -> list[Path]:
    """The output folders whose :func:`output_lock` blocks ``exc`` left, innermost first."""
    return list(getattr(exc, _OUTPUTS_ATTR, []))


def _mark(exc: BaseException, out: Path) -> None:
    with contextlib.suppress(AttributeError):  # a type that takes no attributes: it says less
        setattr(exc, _OUTPUTS_ATTR, [*outputs_of(exc), out])


def _make_folder(folder: Path) -> list[Path]:
    """Create ``folder`` and missing parents; returns those created (deepest first)."""
    made = []
    for part in (folder, *folder.parents):
        if part.exists():
            break
        made.append(part)
    folder.mkdir(parents=True, exist_ok=True)
    return made


def _remove_empty(made: list[Path]) -> None:
    """Remove the folders :func:`_make_folder` created if they stayed empty (a failed start)."""
    for folder in made:
        try:
            folder.rmdir()
        except OSError:
            return


def _try_writing(folder: Path) -> None:
    """Create and delete a file in ``folder``: raises the OSError a real write would raise."""
    fd, name = tempfile.mkstemp(prefix=".fracdet-write-test-", dir=folder)
    os.close(fd)
    os.unlink(name)


def _holder() -> dict[str, object]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "start_ticks": _start_ticks(os.getpid()),
        "command": " ".join(["fracdet", *sys.argv[1:]]),
    }


def _start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (Linux clock ticks): tells a reused pid from the locker."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _alive(holder: dict) -> bool:
    """Whether the run that wrote a lock may still run (another host's run counts as alive)."""
    if holder.get("host") != socket.gethostname():
        return True
    pid = int(holder.get("pid", 0))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): the pid exists, take it as the locker
    if stat.rsplit(")", 1)[1].split()[0] == "Z":  # a zombie: dead, not yet reaped
        return False
    ticks = holder.get("start_ticks")
    return ticks is None or ticks == _start_ticks(pid)


def _read_lock(lock: Path) -> dict | None:
    try:
        holder = json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _acquire(lock: Path, out: Path) -> None:
    """Create ``lock`` for this process, taking over a stale one; refuse a live one."""
    me = _holder()
    for _ in range(50):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(lock)
            if holder is None:
                try:  # being written this instant, or left empty by a kill at that instant
                    age = time.time() - lock.stat().st_mtime
                except FileNotFoundError:
                    continue
                if age < 2:
                    time.sleep(0.05)
                    continue
                holder = {}
            elif _alive(holder):
                raise OutputBusyError(
                    f"another fracdet run is writing here (pid {holder.get('pid')} on "
                    f"{holder.get('host')}, since {holder.get('started')}): wait for it to "
                    f"finish or pass another output folder (its lock: {lock})",
                    out,
                ) from None
            _take_over(lock, holder)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(me, fh)
        return
    raise OutputBusyError(f"cannot take the lock {lock}: other runs keep taking it", out)


def _take_over(lock: Path, holder: dict) -> None:
    """Move a stale lock aside, unless another run took it over first (then it is theirs)."""
    aside = lock.with_name(f"{lock.name}.stale-{os.getpid()}")
    try:
        os.replace(lock, aside)
    except FileNotFoundError:
        return
    if holder and _read_lock(aside) != holder:  # we moved a newer run's lock: give it back
        os.replace(aside, lock)
        return
    aside.unlink(missing_ok=True)
    logger.warning(
        "%s: taking over the lock of a run that no longer runs (pid %s on %s, since %s)",
        lock,
        holder.get("pid", "?"),
        holder.get("host", "?"),
        holder.get("started", "?"),
    )


def _release(lock: Path) -> None:
    """Remove ``lock`` if it is still this process's (never another run's)."""
    holder = _read_lock(lock)
    if holder is not None and holder.get("pid") == os.getpid():
        lock.unlink(missing_ok=True)
