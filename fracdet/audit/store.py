"""An audit's files on disk: the per-image table, the detections journal, the maps, the state.

Work is committed chunk by chunk: maps and detections are written first, the chunk's rows
last, so a row means its image is done. ``--resume`` keeps the rows of complete chunks and
redoes the rest; nothing written for an unfinished chunk survives it.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fracdet.errors import ConfigError
from fracdet.fsutil import atomic_write, atomic_write_json, atomic_write_text
from fracdet.journal import (
    cut_partial_line,
    read_jsonl,
    read_rows,
    rewrite_jsonl,
    start_rows,
    write_rows,
)

__all__ = ["AuditStore", "PER_IMAGE", "DETECTIONS", "STATE", "MAPS"]

logger = logging.getLogger(__name__)

PER_IMAGE = "per_image.csv"
DETECTIONS = "detections.jsonl"
STATE = "audit_state.json"
MAPS = "maps"


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as fh:  # a file object: savez would append ".npz" to a name
        np.savez_compressed(fh, **arrays)


class AuditStore:
    """The output folder of one audit process (a whole audit, or one shard of it)."""

    def __init__(self, folder: Path, header: Sequence[str]) -> None:
        self.folder = Path(folder)
        self.header = list(header)

    @property
    def per_image(self) -> Path:
        return self.folder / PER_IMAGE

    @property
    def detections(self) -> Path:
        return self.folder / DETECTIONS

    def start(self) -> None:
        """A fresh output: the table's header and an empty journal."""
        start_rows(self.per_image, self.header)
        atomic_write_text(self.detections, "")

    def reopen(self, chunks: Iterable[Sequence[tuple[str, int]]]) -> set[tuple[str, int]]:
        """Keep what belongs to complete chunks; returns the ``(model, index)`` pairs done.

        ``chunks`` lists the pairs of every chunk that may count as done; a chunk with a
        missing row (a kill between the writes of its rows) is dropped whole, with its
        journal lines, so that it is redone once, not appended twice.
        """
        cut_partial_line(self.per_image)
        header, rows = read_rows(self.per_image)
        if header != self.header:
            raise ConfigError(
                f"cannot resume: {PER_IMAGE} has other columns than this audit writes; pass --overwrite",
                self.per_image,
            )
        present = {(r["model"], int(r["index"])) for r in rows}
        allowed = {
            pair for chunk in chunks if all(pair in present for pair in chunk) for pair in chunk
        }
        kept = [r for r in rows if (r["model"], int(r["index"])) in allowed]
        if len(kept) != len(rows):
            self.write_rows(kept)
        done = {(r["model"], int(r["index"])) for r in kept}
        rewrite_jsonl(
            self.detections,
            lambda entry: entry if (entry["model"], int(entry["index"])) in done else None,
        )
        return done

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
        if detections:
            with open(self.detections, "a", encoding="utf-8") as fh:
                fh.writelines(json.dumps(d) + "\n" for d in detections)
                fh.flush()
                os.fsync(fh.fileno())
        with open(self.per_image, "a", newline="", encoding="utf-8") as fh:
            csv.DictWriter(fh, fieldnames=self.header, restval="").writerows(rows)
            fh.flush()

    def map_path(self, model: str, chunk: int) -> Path:
        return self.folder / MAPS / model / f"chunk_{chunk:05d}.npz"

    def write_state(self, state: dict[str, Any]) -> None:
        atomic_write_json(self.folder / STATE, state)

    def read_state(self) -> dict[str, Any] | None:
        path = self.folder / STATE
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return None

    def detection_entries(self) -> list[dict[str, Any]]:
        return read_jsonl(self.detections) if self.detections.exists() else []
