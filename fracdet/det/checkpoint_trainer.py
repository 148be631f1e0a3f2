"""Ultralytics' detection trainer with checkpoints that a full disk cannot truncate.

Ultralytics writes ``last.pt`` and ``best.pt`` in place (``Path.write_bytes``): a disk that
fills during that write leaves a truncated ``last.pt`` and nothing to ``--resume`` from. This
trainer lets Ultralytics write each checkpoint under a temporary name in the same folder and
renames it over the old one only once it is complete (a rename within one folder is atomic), so
the previous good checkpoint survives any failed save. Everything else is Ultralytics' own.

Imported only when a detector trains (it imports Ultralytics); a class at module level, because
Ultralytics' multi-GPU DDP re-imports the trainer by module and name in its worker processes.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ultralytics.models.yolo.detect import DetectionTrainer

__all__ = ["AtomicCheckpointTrainer"]

_PARTIAL = ".partial"


class AtomicCheckpointTrainer(DetectionTrainer):
    """A ``DetectionTrainer`` whose ``last.pt``/``best.pt`` are replaced, never rewritten."""

    def save_model(self) -> bool:
        final = {"last": Path(self.last), "best": Path(self.best)}
        partial = {k: path.with_name(f".{path.name}{_PARTIAL}") for k, path in final.items()}
        self.last, self.best = partial["last"], partial["best"]
        try:
            saved = super().save_model()
        except BaseException:
            for path in partial.values():
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
        finally:
            self.last, self.best = final["last"], final["best"]
        for key, path in partial.items():
            if path.exists():
                os.replace(path, final[key])
        return saved
