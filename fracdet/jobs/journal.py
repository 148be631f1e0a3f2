"""The chunked journal of a batch job: a row on disk means its item is done.

A job's work is cut into chunks (predict: one image; the audit: one batch of images for one
classifier). :meth:`Journal.commit` writes a chunk's side journal lines (fsync'ed) and then
its rows; any side file (an overlay, a map) is written by the caller before that, so the
rows are the commit. A kill can leave half a line, or part of a chunk's rows when the rows
reach the disk in several writes; :meth:`Journal.reopen` cuts the half line, keeps only
chunks whose rows are all there and cleans the side journal to them, so a resumed run redoes
exactly what has no committed row.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from fracdet.errors import ConfigError
from fracdet.fsutil import atomic_write_text
from fracdet.jobs.files import (
    append_jsonl,
    append_rows,
    cut_partial_line,
    read_rows,
    rewrite_jsonl,
    start_rows,
    write_rows,
)

__all__ = ["Journal", "Reopened"]

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Reopened(Generic[K]):
    """What :meth:`Journal.reopen` kept: rows (renumbered), rows dropped, old id -> new id."""

    kept: list[dict[str, str]]
    dropped: list[dict[str, str]] = field(default_factory=list)
    remap: dict[int, int] = field(default_factory=dict)
    done: set[K] = field(default_factory=set)


class Journal(Generic[K]):
    """``rows`` (a CSV, the commit) and ``side`` (a JSONL side journal) in ``folder``.

    ``key`` names a row's item (predict: its path; the audit: ``(model, index)``) and, by
    default, a side journal document's item too. ``id_column`` holds the item's position in
    today's list when that can change between a run and its resume (predict: files arrive).
    """

    def __init__(
        self,
        folder: Path,
        header: Sequence[str],
        key: Callable[[Mapping[str, Any]], K],
        *,
        rows: str,
        side: str,
        id_column: str | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.header = list(header)
        self.key = key
        self.rows_path = self.folder / rows
        self.side_path = self.folder / side
        self.id_column = id_column

    def start(self) -> None:
        """A fresh journal: the header line and an empty side journal."""
        start_rows(self.rows_path, self.header)
        atomic_write_text(self.side_path, "")

    def commit(self, rows: Iterable[Mapping[str, Any]], side: Sequence[Any] = ()) -> None:
        """The side journal lines (on the disk), then the rows: a row means its item is done."""
        append_jsonl(self.side_path, side, sync=True)
        append_rows(self.rows_path, self.header, rows)

    def reopen(
        self,
        chunks: Iterable[Sequence[K]],
        *,
        ids: Mapping[K, int] | None = None,
        side: Callable[[Any, Reopened[K]], Any | None] | None = None,
    ) -> Reopened[K]:
        """Keep the rows of today's chunks committed whole; clean the side journal to them.

        ``chunks`` lists the items of each chunk this run does. A row is dropped when its
        item is in no chunk (gone from the list, or another shard's), when it repeats an
        item, or when its chunk lacks a row (a kill inside the commit): that chunk is redone
        whole, never appended twice. With ``ids`` (item -> its id today) rows are
        renumbered and kept sorted by id. The rows file is rewritten (atomically) only when
        something changed. Side documents are kept when ``key(doc)`` is done, or as
        ``side(doc, reopened)`` says. A journal with other columns is a :class:`ConfigError`:
        another kind of run wrote it.
        """
        cut_partial_line(self.rows_path)
        header, rows = read_rows(self.rows_path)
        if header != self.header:
            raise ConfigError(
                f"cannot resume: {self.rows_path.name} has other columns than this run writes;"
                " pass --overwrite",
                self.rows_path,
            )
        chunk_of: dict[K, int] = {}
        members: list[Sequence[K]] = []
        for number, chunk in enumerate(chunks):
            members.append(chunk)
            chunk_of.update((item, number) for item in chunk)
        found: dict[K, dict[str, str]] = {}
        dropped: list[dict[str, str]] = []
        for row in rows:
            item = self.key(row)
            if item not in chunk_of or item in found:
                dropped.append(row)
            else:
                found[item] = row
        whole = {n for n, chunk in enumerate(members) if all(item in found for item in chunk)}
        kept: list[dict[str, str]] = []
        for item, row in found.items():
            (kept if chunk_of[item] in whole else dropped).append(row)
        remap: dict[int, int] = {}
        if ids is not None and self.id_column is not None:
            column = self.id_column
            for k, row in enumerate(kept):
                new_id = ids[self.key(row)]
                remap[int(row[column])] = new_id
                kept[k] = {**row, column: str(new_id)}
            kept.sort(key=lambda r: int(r[column]))
        if dropped or any(old != new for old, new in remap.items()):
            write_rows(self.rows_path, self.header, kept)
        reopened = Reopened(kept, dropped, remap, {self.key(row) for row in kept})
        if side is None:
            rewrite_jsonl(
                self.side_path, lambda doc: doc if self.key(doc) in reopened.done else None
            )
        else:
            rewrite_jsonl(self.side_path, lambda doc: side(doc, reopened))
        return reopened
