"""Bootstrap resampling: which items each replicate draws, from one seeded generator.

The one primitive behind every bootstrap interval in fracdet (classification metrics,
the audit's means and paired differences, the detector's mAP): callers compute their
statistic on the index matrices it yields. Replicates come in chunks so memory stays
bounded; the chunk size changes which numbers a seed gives (numpy draws bounded integers
per call), so each caller keeps its own ``chunk_cells`` and its numbers stay put.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

__all__ = ["bootstrap_indices"]


def bootstrap_indices(
    size: int,
    n_boot: int,
    *,
    seed: int,
    chunk_cells: int = 1 << 20,
    strata: Sequence[np.ndarray] | None = None,
) -> Iterator[np.ndarray]:
    """Index matrices ``(rows, size)`` of bootstrap replicates, ``n_boot`` rows in all.

    Each row draws ``size`` items with replacement from ``numpy.random.default_rng(seed)``.
    A chunk holds ``max(1, chunk_cells // size)`` replicates (``chunk_cells=1``: one per
    draw). With ``strata`` (index arrays that partition the items, e.g. one per class) each
    stratum's members are drawn from that stratum only, so every replicate keeps the
    stratum sizes; its columns are the strata's draws side by side, in the order given.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    per_chunk = max(1, chunk_cells // max(size, 1))
    for start in range(0, n_boot, per_chunk):
        rows = min(per_chunk, n_boot - start)
        if strata is None:
            yield rng.integers(0, size, size=(rows, size))
        else:
            yield np.concatenate(
                [idx[rng.integers(0, idx.size, size=(rows, idx.size))] for idx in strata], axis=1
            )
