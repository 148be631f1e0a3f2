"""An audit's files on disk: the per-image table, the detections journal, the maps, the state.

The audit is a :class:`fracdet.jobs.Journal` whose chunk is one batch of images for one
classifier and whose item is ``(model, index)``. :meth:`AuditStore.commit` writes the chunk's
maps, then its detections, then its rows, so a row means its image is done; ``--resume``
keeps the chunks committed whole and redoes the rest, and nothing written for an unfinished
chunk survives it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fracdet.fsutil import atomic_write
from fracdet.jobs import STATE_FILES, Journal, read_jsonl, write_rows, write_state

__all__ = ["AuditStore", "PER_IMAGE", "DETECTIONS", "STATE", "MAPS", "CHECKS_DIR", "item_key"]

logger = logging.getLogger(__name__)

PER_IMAGE = "per_image.csv"
DETECTIONS = "detections.jsonl"
STATE = STATE_FILES["audit"]
MAPS = "maps"
#: the checks' results and figures (fracdet.audit.checks)
CHECKS_DIR = "checks"


def item_key(row: Mapping[str, Any]) -> tuple[str, int]:
    """The item of a per-image row or a detections line: ``(model, index)``."""
    return row["model"], int(row["index"])


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as fh:  # a file object: savez would append ".npz" to a name
        np.savez_compressed(fh, **arrays)


class AuditStore:
    """The output folder of one audit process (a whole audit, or one shard of it)."""

    def __init__(self, folder: Path, header: Sequence[str]) -> None:
        self.folder = Path(folder)
        self.header = list(header)
        self.journal = Journal(self.folder, header, item_key, rows=PER_IMAGE, side=DETECTIONS)

    @property
    def per_image(self) -> Path:
        return self.journal.rows_path

    @property
    def detections(self) -> Path:
        return self.journal.side_path

    def start(self) -> None:
        """A fresh output: the table's header and an empty journal."""
        self.journal.start()

    def reopen(self, chunks: Iterable[Sequence[tuple[str, int]]]) -> set[tuple[str, int]]:
        """Keep what belongs to complete chunks; returns the ``(model, index)`` pairs done.

        ``chunks`` lists the pairs of every chunk this process audits; a chunk with a
        missing row (a kill between the writes of its rows) is dropped whole, with its
        journal lines, so that it is redone once, not appended twice.
        """
        return self.journal.reopen(chunks).done

    def write_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        """Replace the table's rows (atomically)."""
        write_rows(self.per_image, self.header, rows)

    def commit(
        self,
        model: str,
        chunk: int,
        rows: Sequence[dict[str, Any]],
        detections: Sequence[dict[str, Any]],
        maps: dict[str, np.ndarray],
    ) -> None:
        """Maps, then detections, then rows: the rows are the commit."""
        if maps:
            path = self.map_path(model, chunk)
            atomic_write(path, lambda tmp: _save_npz(tmp, maps))
        self.journal.commit(rows, detections)

    def map_path(self, model: str, chunk: int) -> Path:
        return self.folder / MAPS / model / f"chunk_{chunk:05d}.npz"

    def write_state(self, state: dict[str, Any]) -> None:
        write_state(self.folder, "audit", state)

    def detection_entries(self) -> list[dict[str, Any]]:
        return read_jsonl(self.detections) if self.detections.exists() else []
