"""The files of a batch job's journal: CSV rows and JSONL side journals, read, written, repaired.

Plain file operations with no notion of an item, a chunk or a run; :mod:`fracdet.jobs.journal`
builds the commit rule on them. Whole-file writes are atomic (a reader never sees half a
file); appends may leave half a line after a kill, which :func:`cut_partial_line` and
:func:`rewrite_jsonl` remove.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from fracdet.errors import DataError
from fracdet.fsutil import atomic_write, atomic_write_text

__all__ = [
    "read_rows",
    "iter_rows",
    "start_rows",
    "write_rows",
    "append_rows",
    "append_jsonl",
    "cut_partial_line",
    "sort_rows",
    "read_jsonl",
    "iter_jsonl",
    "rewrite_jsonl",
]

_CHUNK = 1 << 16


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows (as dicts) of a journal CSV; blank lines are skipped."""
    with open(path, newline="", encoding="utf-8") as fh:
        header, rows = _csv_rows(fh)
        return header, list(rows)


def iter_rows(path: Path) -> Iterator[dict[str, str]]:
    """The rows of a journal CSV one at a time, as :func:`read_rows` reads them.

    For a pass over a file of one row per input (100,000s) that need not hold them all.
    """
    with open(path, newline="", encoding="utf-8") as fh:
        yield from _csv_rows(fh)[1]


def _csv_rows(fh: Iterable[str]) -> tuple[list[str], Iterator[dict[str, str]]]:
    """The header, and the non-blank rows as dicts, of an open CSV (read once, lazily)."""
    reader = csv.reader(fh)
    header = next(reader, [])
    return header, (dict(zip(header, row, strict=False)) for row in reader if row)


def write_rows(path: Path, header: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """Replace ``path`` by ``header`` and ``rows``, atomically (a reader never sees half a file)."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(header))
            writer.writeheader()
            writer.writerows(rows)

    return atomic_write(path, write)


def start_rows(path: Path, header: Sequence[str]) -> Path:
    """A new, empty journal: the header line only."""
    return write_rows(path, header, [])


def append_rows(path: Path, header: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Append rows (dicts; a missing cell is blank) in ``header``'s order, flushed on return."""
    with open(path, "a", newline="", encoding="utf-8") as fh:
        csv.DictWriter(fh, fieldnames=list(header), restval="").writerows(rows)
        fh.flush()


def append_jsonl(path: Path, docs: Iterable[Any], *, sync: bool = False) -> None:
    """Append one JSON document per line, flushed (with ``sync``: on the disk) on return."""
    lines = [json.dumps(doc) + "\n" for doc in docs]
    if not lines:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.writelines(lines)
        fh.flush()
        if sync:
            os.fsync(fh.fileno())


def cut_partial_line(path: Path) -> int:
    """Drop the half line an interrupted write can leave at the end; returns the bytes dropped.

    The item of that line has no complete row, so a resumed run redoes it. The file is read
    backwards in chunks: journals can be large and only their end is in doubt.
    """
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return 0
        pos = size
        while pos > 0:
            start = max(0, pos - _CHUNK)
            fh.seek(start)
            cut = fh.read(pos - start).rfind(b"\n")
            if cut >= 0:
                fh.truncate(start + cut + 1)
                return size - (start + cut + 1)
            pos = start
        fh.truncate(0)
        return size


def sort_rows(path: Path, *, id_column: str = "image_id") -> list[dict[str, str]]:
    """The rows in id order; rewritten (atomically) only if a resume left them out of order."""
    header, rows = read_rows(path)
    ids = [int(r[id_column]) for r in rows]
    if ids == sorted(ids):
        return rows
    rows = [rows[i] for i in sorted(range(len(rows)), key=ids.__getitem__)]
    write_rows(path, header, rows)
    return rows


def read_jsonl(path: Path) -> list[Any]:
    """Every document of a JSONL journal; a line that is not JSON is a :class:`DataError` naming it.

    Call :func:`rewrite_jsonl` first on a journal an interrupted run may have left.
    """
    return list(iter_jsonl(path))


def iter_jsonl(path: Path) -> Iterator[Any]:
    """The documents of a JSONL journal one at a time, as :func:`read_jsonl` reads them."""
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"line {number} is not JSON ({exc.msg})", path) from exc
            yield doc


def rewrite_jsonl(path: Path, transform: Callable[[Any], Any | None]) -> int:
    """Keep ``transform(doc)`` of each document, dropping those it maps to ``None`` and half lines.

    A missing journal becomes an empty one. The file is rewritten (atomically) only when
    something changed; returns how many lines were dropped.
    """
    if not path.exists():
        atomic_write_text(path, "")
        return 0
    kept: list[str] = []
    dropped, changed = 0, False
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:  # half a line from an interrupted write
                dropped += 1
                continue
            new = transform(doc)
            if new is None:
                dropped += 1
                continue
            changed = changed or new != doc
            kept.append(json.dumps(new) + "\n")
    if dropped or changed:
        atomic_write_text(path, "".join(kept))
    return dropped
