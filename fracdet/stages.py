"""Pipelines of stages that reuse finished work: ``fracdet demo`` and ``fracdet run`` share this.

A stage is a folder its work fills. Its key hashes its options and its upstream stages' keys,
so a changed option reruns that stage and everything downstream of it, and nothing else. Each
stage's record (key, options, seconds, done) lives in ``OUT/.stages/NAME.json``, beside the
stage folders, so that a stage's folder holds its outputs only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fracdet.fsutil import atomic_write_json

__all__ = ["STAGES_DIR", "PipelineSummary", "StageRunner", "read_stage_json", "stage_key"]

logger = logging.getLogger(__name__)

#: The folder (under a pipeline's output) that holds one record per stage.
STAGES_DIR = ".stages"


@dataclass(frozen=True)
class PipelineSummary:
    """Where a pipeline's front page is and its headline lines (what the command prints)."""

    output: Path
    index: Path
    lines: tuple[str, ...]

    def line(self) -> str:
        return "\n".join(self.lines)


def read_stage_json(path: Path) -> dict[str, Any]:
    """A JSON file a stage wrote, or ``{}`` when that stage wrote none (the page says "–")."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def stage_key(options: dict[str, Any], upstream_keys: list[str]) -> str:
    """The short hash that says whether a stage's finished output can be reused."""
    return hashlib.sha256(
        json.dumps([options, upstream_keys], sort_keys=True, default=str).encode()
    ).hexdigest()[:16]


class StageRunner:
    """Runs stages whose outputs are reused while their key (inputs + options) is unchanged.

    ``label`` prefixes the log lines (``demo: det ...``), so a user sees which pipeline speaks.
    """

    def __init__(self, out: Path, fresh: bool, *, label: str = "pipeline") -> None:
        self.out, self.fresh, self.label = Path(out), fresh, label
        self.keys: dict[str, str] = {}
        self.seconds: dict[str, float] = {}

    def record(self, name: str) -> dict[str, Any]:
        """What the last run of stage ``name`` recorded (empty before its first run)."""
        marker = self.out / STAGES_DIR / f"{name}.json"
        return json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else {}

    def run(
        self,
        name: str,
        options: dict[str, Any],
        upstream: tuple[str, ...],
        work: Callable[..., Any],
        *,
        resumable: bool = False,
    ) -> Path:
        """Run ``work(folder)`` unless its key is recorded as done; a ``resumable`` stage that was
        interrupted with the same key continues (``work(folder, resume=True)``) instead of restarting."""
        folder = self.out / name
        key = stage_key(options, [self.keys[u] for u in upstream])
        self.keys[name] = key
        marker = self.out / STAGES_DIR / f"{name}.json"
        recorded = self.record(name)
        same = not self.fresh and recorded.get("key") == key
        if same and recorded.get("done", True):  # markers are written "done: false" at the start
            logger.info("%s: %s is up to date (reused)", self.label, name)
            self.seconds[name] = 0.0
            return folder
        resume = same and resumable
        if folder.exists() and not resume:
            shutil.rmtree(folder)
        start = time.perf_counter()
        logger.info("%s: %s ...%s", self.label, name, " (resuming)" if resume else "")
        atomic_write_json(marker, {"key": key, "options": options, "done": False})
        work(folder, resume=True) if resume else work(folder)
        self.seconds[name] = round(time.perf_counter() - start, 1)
        atomic_write_json(
            marker, {"key": key, "options": options, "seconds": self.seconds[name], "done": True}
        )
        return folder
