"""Append-only journals that make long batch jobs resumable: a CSV of rows, a JSONL of extras.

The rule every user of this module keeps: a CSV row on disk means its item is finished. Rows
are appended and flushed batch by batch, so an interrupted run keeps its work; a resumed run
cuts the half line an interrupted write may have left, matches the rows to today's item list
(:func:`reconcile_rows`) and does only what has no row. Side journals (JSONL) are written
before the row that commits them, and cleaned to the committed items on resume.

Nothing here knows what an item is: ``fracdet predict`` journals images; ``fracdet audit``
is meant to journal its rows the same way. Ids are the 1-based positions of
:func:`fracdet.shards.shard_items`; a key column (the item's path) says which item a row is.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from fracdet.errors import ConfigError, DataError
from fracdet.fsutil import atomic_write, atomic_write_text

__all__ = [
    "CsvAppender",
    "JsonlAppender",
    "Reconciled",
    "read_rows",
    "start_rows",
    "write_rows",
    "cut_partial_line",
    "sort_rows",
    "reconcile_rows",
    "merge_rows",
    "read_jsonl",
    "rewrite_jsonl",
]

_CHUNK = 1 << 16


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows (as dicts) of a journal CSV; blank lines are skipped."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        return header, [dict(zip(header, row, strict=False)) for row in reader if row]


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
    """The rows in id order; the file is rewritten (atomically) only if a resume left it out of order."""
    header, rows = read_rows(path)
    ids = [int(r[id_column]) for r in rows]
    if ids == sorted(ids):
        return rows
    rows = [rows[i] for i in sorted(range(len(rows)), key=ids.__getitem__)]
    write_rows(path, header, rows)
    return rows


@dataclass(frozen=True)
class Reconciled:
    """The outcome of :func:`reconcile_rows`: rows kept (renumbered), rows dropped, old id -> new id."""

    kept: list[dict[str, str]]
    dropped: list[dict[str, str]] = field(default_factory=list)
    remap: dict[int, int] = field(default_factory=dict)
    key_column: str = "path"

    @property
    def done(self) -> set[str]:
        """Keys (paths) that already have a row: the items a resumed run skips."""
        return {row[self.key_column] for row in self.kept}


def reconcile_rows(
    path: Path,
    header: Sequence[str],
    ids: Mapping[str, int],
    *,
    key_column: str = "path",
    id_column: str = "image_id",
) -> Reconciled:
    """Match the rows already written to today's item list (``key -> id``), by key.

    Items may have arrived or gone since the interrupted run and ids are positions in the
    list, so rows are renumbered, and rows of items no longer listed (or listed twice) are
    dropped; the result equals what a fresh run would have written so far. The file is
    rewritten, sorted by id, only when something changed. A journal with other columns
    than ``header`` is a :class:`ConfigError`: it was written by another kind of run.
    """
    cut_partial_line(path)
    old_header, rows = read_rows(path)
    if old_header != list(header):
        raise ConfigError(
            f"cannot resume: {path.name} has other columns than this run writes; pass --overwrite",
            path,
        )
    remap: dict[int, int] = {}
    used: set[int] = set()
    kept: list[dict[str, str]] = []
    dropped: list[dict[str, str]] = []
    for row in rows:
        new_id = ids.get(row[key_column])
        if new_id is None or new_id in used:
            dropped.append(row)
            continue
        used.add(new_id)
        remap[int(row[id_column])] = new_id
        kept.append({**row, id_column: str(new_id)})
    if dropped or any(old != new for old, new in remap.items()):
        kept.sort(key=lambda r: int(r[id_column]))
        write_rows(path, header, kept)
    return Reconciled(kept, dropped, remap, key_column)


def merge_rows(
    files: Sequence[Path], *, id_column: str = "image_id", key_column: str = "path"
) -> tuple[list[str], list[dict[str, str]]]:
    """The rows of several shards' journals, sorted by id, as one unsharded run writes them.

    Every file must have the first file's columns, and an id may appear in one file only
    (the same shard given twice is a mistake, not a merge): both are :class:`DataError`.
    """
    header: list[str] | None = None
    rows: list[dict[str, str]] = []
    owner: dict[int, Path] = {}
    what = id_column.replace("_", " ")
    for path in map(Path, files):
        file_header, file_rows = read_rows(path)
        if header is None:
            header = file_header
        elif file_header != header:
            raise DataError(f"{path.name} has other columns than {files[0]}", path)
        for row in file_rows:
            row_id = int(row[id_column])
            if row_id in owner:
                raise DataError(
                    f"{what} {row_id} ({row.get(key_column, '')}) is in {owner[row_id]} and in {path}: the same shard twice?",
                    path,
                )
            owner[row_id] = path
            rows.append(row)
    rows.sort(key=lambda r: int(r[id_column]))
    return header or [], rows


class CsvAppender:
    """Appends rows to a journal CSV, flushed on every call: a row on disk is a finished item.

    Use as a context manager; the header is written by :func:`start_rows`, not here.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fh: TextIO | None = None
        self._writer: Any = None

    def __enter__(self) -> CsvAppender:
        self._fh = open(self.path, "a", newline="", encoding="utf-8")  # noqa: SIM115 - closed in __exit__
        self._writer = csv.writer(self._fh)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def append(self, rows: Iterable[Sequence[Any]]) -> None:
        if self._fh is None:
            raise RuntimeError(f"{self.path}: append outside the `with` block")
        self._writer.writerows(rows)
        self._fh.flush()


class JsonlAppender:
    """Appends one JSON document per line, flushed on every call (a side journal; see the module doc)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fh: TextIO | None = None

    def __enter__(self) -> JsonlAppender:
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in __exit__
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def append(self, docs: Iterable[Any]) -> None:
        if self._fh is None:
            raise RuntimeError(f"{self.path}: append outside the `with` block")
        lines = [json.dumps(doc) + "\n" for doc in docs]
        if lines:
            self._fh.writelines(lines)
            self._fh.flush()


def read_jsonl(path: Path) -> list[Any]:
    """Every document of a JSONL journal; a line that is not JSON is a :class:`DataError` naming it.

    Call :func:`rewrite_jsonl` first on a journal an interrupted run may have left.
    """
    docs: list[Any] = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                docs.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"line {number} is not JSON ({exc.msg})", path) from exc
    return docs


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
