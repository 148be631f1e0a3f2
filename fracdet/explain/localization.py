"""Does an attribution map point at the fracture? Pure numpy metrics of one ``(H, W)`` map.

A map is an ``(H, W)`` float array (one image's attribution, any sign and scale); a mask is
an ``(H, W)`` bool array, the union of the boxes it is judged against (ground truth or
detector, e.g. from :func:`fracdet.data.geometry.boxes_mask`), in the map's pixels. Every
metric comes with the score a map without information would get, so tables can show it
beside the numbers:

- ``coverage@p``: share of box pixels among the map's top-p% pixels; random map: ``p/100``.
- energy in box: share of the positive attribution mass inside the boxes; random map: the
  box-area share.
- pointing game: the map's maximum lies within ``tolerance_px`` of a box; random point: the
  share of pixels that close to a box.

A metric against boxes needs a box: an empty mask is refused (the caller skips such images
with a reason). Ties between equal attributions are broken the same way everywhere: the
earlier pixel in row-major order ranks first, so results do not depend on the sort algorithm.

Every ranking metric sorts the map's pixels. The audit scores each map several times
(against ground truth and detector boxes, and against its attacked twin), so a map may be
passed as a :class:`RankedMap`, which sorts once; and :func:`near_mask` computes a mask's
pointing-game zone once for all the maps judged against it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.ndimage import distance_transform_edt

__all__ = [
    "RankedMap",
    "near_mask",
    "coverage_at_percentiles",
    "coverage_at_percentile",
    "energy_in_box",
    "box_area_share",
    "pointing_game",
    "pointing_game_baseline",
    "rank_correlation",
    "topk_intersection",
    "localization_scores",
]

log = logging.getLogger(__name__)


def _check_map(attr: np.ndarray, name: str = "attr") -> np.ndarray:
    attr = np.asarray(attr)
    if attr.ndim != 2 or attr.size == 0:
        raise ValueError(f"{name} must be a non-empty (H, W) map, got shape {attr.shape}")
    if not np.issubdtype(attr.dtype, np.number) or np.issubdtype(attr.dtype, np.complexfloating):
        raise ValueError(f"{name} must be a real-valued map, got dtype {attr.dtype}")
    if not np.isfinite(attr).all():
        raise ValueError(f"{name} of shape {attr.shape} contains NaN or infinite values")
    return attr


def _check_mask(mask: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        raise ValueError(f"mask must be a bool array, got dtype {mask.dtype}")
    if mask.ndim != 2 or mask.size == 0:
        raise ValueError(f"mask must be a non-empty (H, W) array, got shape {mask.shape}")
    if shape is not None and mask.shape != shape:
        raise ValueError(f"attr has shape {shape} but mask has shape {mask.shape}")
    if not mask.any():
        raise ValueError(
            f"mask of shape {mask.shape} is empty: localization needs at least one box pixel"
        )
    return mask


def _top_k_count(p: float, n_pixels: int) -> int:
    """``ceil(p/100 * n_pixels)``, at least 1.

    Rounded to 6 decimals before the ceiling so that float error in ``p/100 * n`` (e.g.
    ``0.07 * 100 = 7.000000000000001``) does not add a pixel.
    """
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    return max(1, math.ceil(round(p / 100 * n_pixels, 6)))


def _rank_order(attr: np.ndarray) -> np.ndarray:
    """Flat pixel indices from most to least attributed; ties: earlier pixel (row-major) first."""
    return np.argsort(-attr.ravel(), kind="stable")


@dataclass(frozen=True, eq=False)
class RankedMap:
    """A checked ``(H, W)`` map with its pixel ranking, sorted once and reused by every metric.

    Every function of this module takes a plain array or a ``RankedMap``; build one with
    :meth:`of` when a map is scored more than once.
    """

    values: np.ndarray

    @classmethod
    def of(cls, attr: np.ndarray | RankedMap, name: str = "attr") -> RankedMap:
        return attr if isinstance(attr, RankedMap) else cls(_check_map(attr, name))

    @property
    def shape(self) -> tuple[int, ...]:
        return self.values.shape

    @property
    def size(self) -> int:
        return self.values.size

    @cached_property
    def order(self) -> np.ndarray:
        """Flat pixel indices from most to least attributed (ties: row-major order)."""
        return _rank_order(self.values)

    @cached_property
    def average_ranks(self) -> np.ndarray:
        """Each pixel's rank from the top (0-based), ties sharing their mean rank (for Spearman)."""
        ordered = self.values.ravel()[self.order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        ends = np.r_[starts[1:], ordered.size]
        ranks = np.empty(ordered.size, dtype=np.float64)
        ranks[self.order] = np.repeat((starts + ends - 1) / 2.0, ends - starts)
        return ranks


def coverage_at_percentiles(
    attr: np.ndarray | RankedMap, mask: np.ndarray, percentiles: Sequence[float] = (5, 25, 50)
) -> dict[float, float]:
    """Share of box pixels among the map's top-p% pixels, for each ``p`` in ``percentiles``.

    ``k = ceil(p/100 * H*W)`` (at least 1) pixels are taken; the score is
    ``|top_k ∩ mask| / |mask|``. A random map scores ``p/100`` on average; ``p = 100``
    always gives 1. The map is sorted once for all ``p``.
    """
    ranked = RankedMap.of(attr)
    mask = _check_mask(mask, ranked.shape)
    ks = {float(p): _top_k_count(p, ranked.size) for p in percentiles}
    hits = np.cumsum(mask.ravel()[ranked.order])
    n_box = int(hits[-1])
    return {p: float(hits[k - 1]) / n_box for p, k in ks.items()}


def coverage_at_percentile(attr: np.ndarray | RankedMap, mask: np.ndarray, p: float) -> float:
    """:func:`coverage_at_percentiles` for one ``p``."""
    return coverage_at_percentiles(attr, mask, (p,))[float(p)]


def energy_in_box(attr: np.ndarray | RankedMap, mask: np.ndarray) -> float:
    """Share of the positive attribution mass that lies inside the mask.

    Negative attributions (evidence against the class) are not mass towards it, so only the
    positive part counts. Returns ``nan`` when the map has no positive mass at all (nothing
    to share out); the random baseline is :func:`box_area_share`.
    """
    attr = RankedMap.of(attr).values
    mask = _check_mask(mask, attr.shape)
    positive = np.clip(attr.astype(np.float64), 0.0, None)
    total = positive.sum()
    if total == 0:
        return float("nan")
    return float(positive[mask].sum() / total)


def box_area_share(mask: np.ndarray) -> float:
    """Share of the image inside the boxes: the energy a uniform map would put there."""
    return float(_check_mask(mask).mean())


def _near_mask(mask: np.ndarray, tolerance_px: float) -> np.ndarray:
    """Pixels whose centre lies within ``tolerance_px`` (Euclidean) of a mask pixel's centre."""
    if not tolerance_px >= 0:
        raise ValueError(f"tolerance_px must be >= 0, got {tolerance_px}")
    # The transform measures each pixel's distance to the nearest zero, so the mask pixels
    # are passed as the zeros.
    return distance_transform_edt(~mask) <= tolerance_px


def near_mask(mask: np.ndarray, *, tolerance_px: float = 15) -> np.ndarray:
    """The pointing game's zone: pixels within ``tolerance_px`` of the (non-empty) mask.

    Pass it to :func:`localization_scores` to reuse it.
    """
    return _near_mask(_check_mask(mask), tolerance_px)


def pointing_game(
    attr: np.ndarray | RankedMap, mask: np.ndarray, *, tolerance_px: float = 15
) -> bool:
    """Whether the map's maximum (row-major first) is within ``tolerance_px`` of the mask."""
    attr = RankedMap.of(attr).values
    mask = _check_mask(mask, attr.shape)
    peak = np.unravel_index(int(np.argmax(attr)), attr.shape)
    return bool(_near_mask(mask, tolerance_px)[peak])


def pointing_game_baseline(mask: np.ndarray, *, tolerance_px: float = 15) -> float:
    """Chance a uniformly random pixel wins the pointing game: the share of pixels near the mask."""
    return float(_near_mask(_check_mask(mask), tolerance_px).mean())


def rank_correlation(a: np.ndarray | RankedMap, b: np.ndarray | RankedMap) -> float:
    """Spearman rank correlation of two maps of one shape; ``nan`` when either map is constant.

    Pearson's correlation of the average ranks (ties share their mean rank), as
    ``scipy.stats.spearmanr`` computes it, from the rankings the maps may already carry.
    """
    a, b = RankedMap.of(a, "a"), RankedMap.of(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a has shape {a.shape} but b has shape {b.shape}")
    # A constant map has no ranking: its correlation is undefined.
    if np.ptp(a.values) == 0 or np.ptp(b.values) == 0:
        return float("nan")
    ra, rb = (
        a.average_ranks - (a.size - 1) / 2.0,
        b.average_ranks - (b.size - 1) / 2.0,
    )  # mean rank is (n-1)/2 either way
    return float(np.clip(np.dot(ra, rb) / math.sqrt(np.dot(ra, ra) * np.dot(rb, rb)), -1.0, 1.0))


def topk_intersection(
    a: np.ndarray | RankedMap, b: np.ndarray | RankedMap, *, p: float = 25
) -> float:
    """Share of the top-p% pixels of ``a`` that are also among the top-p% pixels of ``b``."""
    a, b = RankedMap.of(a, "a"), RankedMap.of(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a has shape {a.shape} but b has shape {b.shape}")
    k = _top_k_count(p, a.size)
    in_b = np.zeros(b.size, dtype=bool)
    in_b[b.order[:k]] = True
    return float(np.count_nonzero(in_b[a.order[:k]]) / k)


def localization_scores(
    attr: np.ndarray | RankedMap,
    mask: np.ndarray,
    *,
    percentiles: Sequence[float] = (5, 25, 50),
    tolerance_px: float = 15,
    near: np.ndarray | None = None,
) -> dict[str, float]:
    """Every localization metric of one map against one mask, with the baselines that need the mask.

    Keys: ``coverage@{p}`` for each percentile (e.g. ``coverage@25``; its random baseline is
    ``p/100``), ``energy_in_box`` (``nan`` without positive mass), ``pointing_game`` (1.0 or
    0.0), ``box_area_share`` and ``pointing_baseline``. ``near`` is :func:`near_mask` of
    ``mask`` at ``tolerance_px`` when the caller already has it (one per mask, not per map).
    """
    ranked = RankedMap.of(attr)
    attr = ranked.values
    mask = _check_mask(mask, attr.shape)
    scores = {
        f"coverage@{p:g}": value
        for p, value in coverage_at_percentiles(ranked, mask, percentiles).items()
    }
    if near is None:
        near = _near_mask(mask, tolerance_px)
    elif near.shape != mask.shape or near.dtype != np.bool_:
        raise ValueError(
            f"near must be a bool mask of shape {mask.shape}, got {near.dtype} {near.shape}"
        )
    peak = np.unravel_index(int(np.argmax(attr)), attr.shape)
    scores["energy_in_box"] = energy_in_box(ranked, mask)
    scores["pointing_game"] = 1.0 if near[peak] else 0.0
    scores["box_area_share"] = float(mask.mean())
    scores["pointing_baseline"] = float(near.mean())
    return scores
