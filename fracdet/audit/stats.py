"""Uncertainty of the audit's numbers: bootstrap CIs, paired tests between models, Wilson intervals.

Per-image values of two models on the same images are paired, so models are compared on
their per-image differences (Wilcoxon signed-rank test, bootstrap CI of the mean difference)
rather than on two independent means. Undefined results are ``None`` with a note, never a
crash, so one empty comparison does not stop a report. NaN values (images skipped for a
metric) are dropped, pairwise for paired values, and the count kept is reported.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
from scipy.stats import wilcoxon

from fracdet.resample import bootstrap_indices

__all__ = ["paired_comparison", "bootstrap_mean_ci", "proportion_ci"]

log = logging.getLogger(__name__)

# Resampling indices are drawn in chunks of at most this many, so memory stays bounded
# for large n and large n_boot alike.
_CHUNK_ELEMENTS = 1 << 20


def _check_options(n_boot: int, alpha: float) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def _as_vector(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def _bootstrap_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    chunks = bootstrap_indices(values.size, n_boot, seed=seed, chunk_cells=_CHUNK_ELEMENTS)
    return np.concatenate([values[rows].mean(axis=1) for rows in chunks])


def bootstrap_mean_ci(
    values: Sequence[float] | np.ndarray, *, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float] | None:
    """Percentile bootstrap ``(1 - alpha)`` CI of the mean; NaNs dropped; ``None`` below 2 values.

    Reproducible: the resamples come from ``numpy.random.default_rng(seed)``.
    """
    _check_options(n_boot, alpha)
    array = _as_vector(values, "values")
    array = array[~np.isnan(array)]
    if array.size < 2:
        return None
    means = _bootstrap_means(array, n_boot, seed)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def paired_comparison(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare two models' per-image values on the same images (``a[i]`` and ``b[i]`` pair up).

    Returns ``n`` (pairs kept after dropping any pair with a NaN), ``mean_a``, ``mean_b``,
    ``mean_diff`` (a - b), ``ci_low``/``ci_high`` (percentile bootstrap CI of the mean
    difference, resampling pairs), ``wilcoxon_p`` (two-sided signed-rank test on the
    differences; zero differences are dropped, scipy's default) and ``note`` (why something
    is ``None``, and how many pairs were dropped; ``None`` when there is nothing to say).
    """
    _check_options(n_boot, alpha)
    a, b = _as_vector(a, "a"), _as_vector(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a has shape {a.shape} but b has shape {b.shape}: values must pair up")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    diff = a - b
    n = int(diff.size)
    notes = []
    if n < len(keep):
        notes.append(f"{len(keep) - n} pair(s) with NaN dropped")
    result: dict[str, Any] = {
        "n": n,
        "mean_a": float(a.mean()) if n else None,
        "mean_b": float(b.mean()) if n else None,
        "mean_diff": float(diff.mean()) if n else None,
        "ci_low": None,
        "ci_high": None,
        "wilcoxon_p": None,
    }
    # Resampling pairs is resampling their differences: the mean of resampled pairs' a - b
    # is the mean of the resampled differences.
    ci = bootstrap_mean_ci(diff, n_boot=n_boot, alpha=alpha, seed=seed)
    if ci is not None:
        result["ci_low"], result["ci_high"] = ci
    if n < 2:
        notes.append(f"{n} pair(s): no CI or test")
    elif not diff.any():
        notes.append("all differences are zero: no Wilcoxon test")
    else:
        result["wilcoxon_p"] = float(wilcoxon(diff, alternative="two-sided").pvalue)
    result["note"] = "; ".join(notes) or None
    return result


def proportion_ci(successes: int, n: int, *, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score ``(1 - alpha)`` interval of ``successes / n`` (e.g. an accuracy).

    Wilson rather than the normal approximation because it stays inside [0, 1] and keeps its
    coverage for accuracies near 0 or 1 and small test sets.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n={n}], got {successes}")
    z = NormalDist().inv_cdf(1 - alpha / 2)
    share = successes / n
    denominator = 1 + z * z / n
    centre = (share + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)
