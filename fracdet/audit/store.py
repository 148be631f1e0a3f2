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

from fracdet.fsutil import atomic_write, atomic_write_json

__all__ = ["AuditStore", "PER_IMAGE", "DETECTIONS", "STATE", "read_rows"]

logger = logging.getLogger(__name__)

PER_IMAGE = "per_image.csv"
DETECTIONS = "detections.jsonl"
STATE = "audit_state.json"
MAPS = "maps"


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a CSV table (an empty file has neither)."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        return header, [dict(zip(header, row, strict=False)) for row in reader if len(row) == len(header)]


def _cut_partial_line(path: Path) -> None:
    """An interrupted append can leave half a line at the end: drop it."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n")
        with open(path, "rb+") as fh:
            fh.truncate(cut + 1 if cut >= 0 else 0)


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
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.per_image, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerow(self.header)
        self.detections.write_text("", encoding="utf-8")

    def reopen(self, complete: Iterable[tuple[str, int]]) -> set[tuple[str, int]]:
        """Keep what belongs to complete chunks; returns the ``(model, index)`` pairs done.

        ``complete`` lists every pair of the chunks that may count as done; a chunk with a
        missing row is dropped whole (and redone), with its journal lines.
        """
        for path in (self.per_image, self.detections):
            if path.exists():
                _cut_partial_line(path)
        header, rows = read_rows(self.per_image)
        if header != self.header:
            from fracdet.errors import ConfigError

            raise ConfigError(f"cannot resume: {PER_IMAGE} has other columns than this audit writes; pass --overwrite", self.per_image)
        allowed = set(complete)
        kept = [r for r in rows if (r["model"], int(r["index"])) in allowed]
        if len(kept) != len(rows):
            self._rewrite_rows(kept)
        done = {(r["model"], int(r["index"])) for r in kept}
        lines = [line for line in self.detections.read_text(encoding="utf-8").splitlines() if line.strip()]
        entries = [json.loads(line) for line in lines]
        kept_lines = [line for line, e in zip(lines, entries, strict=True) if (e["model"], int(e["index"])) in done]
        if len(kept_lines) != len(lines):
            atomic_write(self.detections, lambda tmp: tmp.write_text("".join(f"{line}\n" for line in kept_lines), encoding="utf-8"))
        return done

    def _rewrite_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=self.header)
                writer.writeheader()
                writer.writerows(rows)

        atomic_write(self.per_image, write)

    def commit(self, model: str, chunk: int, rows: Sequence[dict[str, Any]], detections: Sequence[dict[str, Any]], maps: dict[str, np.ndarray]) -> None:
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

    def rows(self) -> list[dict[str, str]]:
        return read_rows(self.per_image)[1]

    def detection_entries(self) -> list[dict[str, Any]]:
        if not self.detections.exists():
            return []
        return [json.loads(line) for line in self.detections.read_text(encoding="utf-8").splitlines() if line.strip()]
