"""``--shard K/N``: a deterministic slice of a sorted item list, for any batch command.

Any scheduler (Slurm array jobs, Kubernetes jobs, Ray) can fan a command out by giving each
process its ``K/N``; item ids are positions in the full list, so shard outputs join back
into what one unsharded run would have written. Used by ``fracdet predict`` and meant for
``fracdet audit``: nothing here knows what an item is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from fracdet.errors import ConfigError

__all__ = ["parse_shard", "shard_items", "missing_shards"]

T = TypeVar("T")


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """``"K/N"`` -> ``(K, N)`` with ``1 <= K <= N``; ``None`` or blank -> ``None`` (no sharding)."""
    if spec is None or str(spec).strip() == "":
        return None
    parts = str(spec).strip().split("/")
    try:
        k, n = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(
            f"--shard must be K/N with whole numbers, e.g. 2/8, got {spec!r}"
        ) from None
    if not 1 <= k <= n:
        raise ConfigError(f"--shard K/N needs 1 <= K <= N, got {spec!r}")
    return k, n


def shard_items(items: Sequence[T], shard: tuple[int, int] | None) -> list[tuple[int, T]]:
    """``(id, item)`` of this shard: every N-th item from the K-th.

    Ids are 1-based positions in the full list, the same in every shard, so the N shards
    together hold each id exactly once.
    """
    if shard is None:
        return [(i + 1, item) for i, item in enumerate(items)]
    k, n = shard
    return [(i + 1, items[i]) for i in range(k - 1, len(items), n)]


def missing_shards(specs: Sequence[str | None]) -> list[str]:
    """The ``K/N`` specs that complete the set given, so a merge can say what it lacks.

    Only meaningful when every spec names the same ``N``; otherwise (or when one output was
    not sharded) nothing is reported missing.
    """
    parsed = [parse_shard(s) for s in specs]
    present: set[int] = set()
    totals: set[int] = set()
    for shard in parsed:
        if shard is None:
            return []
        present.add(shard[0])
        totals.add(shard[1])
    if len(totals) != 1:
        return []
    (n,) = totals
    return [f"{k}/{n}" for k in range(1, n + 1) if k not in present]
