"""What an audit run hands back: :class:`AuditSummary`.

Its own module so that ``run`` (which returns it for a shard) and ``finalize`` (which returns
it with the report) both import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["AuditSummary"]


@dataclass(frozen=True)
class AuditSummary:
    """What an audit (or a shard of one) wrote, with its headline numbers."""

    output: Path
    report: Path | None
    n_images: int
    n_models: int
    headline: tuple[str, ...] = ()
    shard: str | None = None

    def line(self) -> str:
        if self.report is None:
            return (
                f"shard {self.shard}: {self.n_images} images x {self.n_models} classifier(s)"
                f" -> {self.output}; join shards with `fracdet merge`"
            )
        details = "; ".join(self.headline)
        return (
            f"audit of {self.n_models} classifier(s) on {self.n_images} images: {details}"
            f" -> {self.report}"
        )
