"""Does an attribution map point at the fracture? Pure numpy metrics of one ``(H, W)`` map.

A map is an ``(H, W)`` float array (one image's attribution, any sign and scale); a mask is
an ``(H, W)`` bool array, the union of the boxes it is judged against (ground truth or
detector, e.g. from :func:`fracdet.data.geometry.boxes_mask`), in the map's pixels. Every
metric comes with the score a map without information would get, so tables can show it
beside the numbers:

- ``coverage@p``: share of box pixels among the map's top-p% pixels; random map: ``p/100``.
- relevance rank accuracy (RRA, Arras et al. 2022, "CLEVR-XAI"): share of the top-|mask|
  pixels that lie in the mask; random map: the box-area share.
- localization AUC: ROC AUC of the map's values as a score for "this pixel is in the mask"
  (no percentile to choose); random map: 0.5.
- energy in box: share of the positive attribution mass inside the boxes; random map: the
  box-area share.
- pointing game: the map's maximum lies within ``tolerance_px`` of a box; random point: the
  share of pixels that close to a box.

A metric against boxes needs a box: an empty mask is refused (the caller skips such images
with a reason).

Ties. Maps are often flat: Grad-CAM is exactly zero over large regions, so the top-k cut
falls inside a run of equal values, and any fixed order among them (row-major, the sort
algorithm's) would let the box's position in the image decide the score. Every metric here
is therefore the expected value under a random order among tied pixels: the pixels strictly
above the cut's value count fully, and the tied run that straddles position ``k`` counts
each of its pixels as ``(k - n_above) / n_tied`` of a pixel. The pointing game with several
tied maxima scores the share of them within the zone (a number in [0, 1]); the AUC counts a
tie between a box pixel and another as half a win, as ROC does. On maps without ties every
number is the plain top-k count.

Every ranking metric sorts the map's pixels. The audit scores each map several times
(against ground truth and detector boxes, and against its attacked twin), so a map may be
passed as a :class:`RankedMap`, which sorts once (and finds its runs of ties once); and
:func:`near_mask` computes a mask's pointing-game zone once for all the maps judged against
it.
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
    "relevance_rank_accuracy",
    "localization_auc",
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
    """Flat pixel indices from most to least attributed; ties: earlier pixel (row-major) first.

    A fixed order for reproducible arrays; no metric depends on the order among ties.
    """
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
    def runs(self) -> tuple[np.ndarray, np.ndarray]:
        """The runs of equal values along :attr:`order`: their first and one-past-last positions."""
        ordered = self.values.ravel()[self.order]
        first = np.empty(ordered.size, dtype=bool)
        first[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        return starts, np.append(starts[1:], ordered.size)

    def cut(self, k: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The run of ties that holds position ``k - 1`` (the top-k cut): its start and end.

        The top k take the ``start`` pixels above that run fully and ``k - start`` of its
        ``end - start`` tied pixels; ``end - start == 1`` when the cut falls between values.
        """
        starts, ends = self.runs
        run = np.searchsorted(starts, np.asarray(k) - 1, side="right") - 1
        return starts[run], ends[run]

    def top_k_share(self, k: int) -> np.ndarray:
        """Each pixel's chance to be among the top ``k`` under a random order of tied pixels."""
        start, end = self.cut(k)
        share = np.zeros(self.size, dtype=np.float64)
        share[self.order[:start]] = 1.0
        share[self.order[start:end]] = (k - start) / (end - start)
        return share

    def expected_hits(self, mask: np.ndarray, ks: Sequence[int]) -> np.ndarray:
        """The expected number of ``mask`` pixels among the top ``k``, for each ``k`` in ``ks``.

        Pixels above the cut's run count fully; the run's mask pixels count in proportion,
        ``(k - start) / (end - start)`` each. Without a tie at the cut: the plain count.
        """
        hits = np.zeros(self.size + 1, dtype=np.int64)
        np.cumsum(mask.ravel()[self.order], out=hits[1:])
        ks = np.asarray(ks, dtype=np.int64)
        start, end = self.cut(ks)
        return hits[start] + (ks - start) * (hits[end] - hits[start]) / (end - start)

    @cached_property
    def average_ranks(self) -> np.ndarray:
        """Each pixel's rank from the top (0-based), ties sharing their mean rank (for Spearman)."""
        starts, ends = self.runs
        ranks = np.empty(self.size, dtype=np.float64)
        ranks[self.order] = np.repeat((starts + ends - 1) / 2.0, ends - starts)
        return ranks


def coverage_at_percentiles(
    attr: np.ndarray | RankedMap, mask: np.ndarray, percentiles: Sequence[float] = (5, 25, 50)
) -> dict[float, float]:
    """Share of box pixels among the map's top-p% pixels, for each ``p`` in ``percentiles``.

    ``k = ceil(p/100 * H*W)`` (at least 1) pixels are taken; the score is
    ``|top_k ∩ mask| / |mask|``, with the tied pixels at the cut counted in proportion (the
    expected value under a random order among them). A random map scores ``p/100`` on
    average; ``p = 100`` always gives 1. The map is sorted once for all ``p``.
    """
    ranked = RankedMap.of(attr)
    mask = _check_mask(mask, ranked.shape)
    ps = [float(p) for p in percentiles]
    hits = ranked.expected_hits(mask, [_top_k_count(p, ranked.size) for p in ps])
    n_box = int(np.count_nonzero(mask))
    return {p: float(h) / n_box for p, h in zip(ps, hits, strict=True)}


def coverage_at_percentile(attr: np.ndarray | RankedMap, mask: np.ndarray, p: float) -> float:
    """:func:`coverage_at_percentiles` for one ``p``."""
    return coverage_at_percentiles(attr, mask, (p,))[float(p)]


def relevance_rank_accuracy(attr: np.ndarray | RankedMap, mask: np.ndarray) -> float:
    """Relevance rank accuracy: the share of the top-|mask| pixels that lie in the mask.

    Arras et al. 2022 ("CLEVR-XAI"): ``k`` is the box's own size, so no percentile is chosen
    and a perfect map scores 1; ties at the cut count in proportion. A random map scores the
    box-area share (:func:`box_area_share`).
    """
    ranked = RankedMap.of(attr)
    mask = _check_mask(mask, ranked.shape)
    n_box = int(np.count_nonzero(mask))
    return float(ranked.expected_hits(mask, [n_box])[0]) / n_box


def localization_auc(attr: np.ndarray | RankedMap, mask: np.ndarray) -> float:
    """ROC AUC of the map's values as a score for mask membership (random map: 0.5).

    The chance that a random box pixel outranks a random pixel outside the boxes, ties counted
    half (Mann-Whitney U from the average ranks, as ``sklearn.metrics.roc_auc_score``): a
    localization score with no percentile to choose. ``nan`` when the mask is the whole image.
    """
    ranked = RankedMap.of(attr)
    return _auc(ranked, _check_mask(mask, ranked.shape))


def _auc(ranked: RankedMap, mask: np.ndarray) -> float:
    n_box = int(np.count_nonzero(mask))
    n_out = ranked.size - n_box
    if n_out == 0:
        return float("nan")
    # average_ranks count from the top from 0; U wants ranks from the bottom from 1
    rank_sum = n_box * ranked.size - float(ranked.average_ranks[mask.ravel()].sum())
    return (rank_sum - n_box * (n_box + 1) / 2.0) / (n_box * n_out)


def energy_in_box(attr: np.ndarray | RankedMap, mask: np.ndarray) -> float:
    """Share of the positive attribution mass that lies inside the mask.

    Negative attributions (evidence against the class) are not mass towards it, so only the
    positive part counts. Returns ``nan`` when the map has no positive mass at all (nothing
    to share out); the random baseline is :func:`box_area_share`.
    """
    attr = RankedMap.of(attr).values
    return _energy(attr, _check_mask(mask, attr.shape))


def _energy(attr: np.ndarray, mask: np.ndarray) -> float:
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


def _pointing(ranked: RankedMap, near: np.ndarray) -> float:
    """The share of the map's (tied) maxima that lie in the zone ``near``."""
    top = ranked.order[: ranked.runs[1][0]]
    return float(np.count_nonzero(near.ravel()[top]) / top.size)


def pointing_game(
    attr: np.ndarray | RankedMap, mask: np.ndarray, *, tolerance_px: float = 15
) -> float:
    """Whether the map's maximum is within ``tolerance_px`` of the mask: 1.0 or 0.0.

    With tied maxima, the share of them within the tolerance (the chance that a maximum
    picked at random hits).
    """
    ranked = RankedMap.of(attr)
    mask = _check_mask(mask, ranked.shape)
    return _pointing(ranked, _near_mask(mask, tolerance_px))


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
    """Share of the top-p% pixels of ``a`` that are also among the top-p% pixels of ``b``.

    Ties at either cut count in proportion: the expected share when the tied pixels of each map
    are ordered at random, independently (``sum_i P(i in top_a) * P(i in top_b) / k``).
    """
    a, b = RankedMap.of(a, "a"), RankedMap.of(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a has shape {a.shape} but b has shape {b.shape}")
    k = _top_k_count(p, a.size)
    return float(np.dot(a.top_k_share(k), b.top_k_share(k)) / k)


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
    ``p/100``), ``relevance_rank_accuracy``, ``localization_auc``, ``energy_in_box`` (``nan``
    without positive mass), ``pointing_game`` (1.0 or 0.0; the share of tied maxima that hit),
    ``box_area_share`` and ``pointing_baseline``. ``near`` is :func:`near_mask` of ``mask`` at
    ``tolerance_px`` when the caller already has it (one per mask, not per map).
    """
    ranked = RankedMap.of(attr)
    mask = _check_mask(mask, ranked.shape)
    ps = [float(p) for p in percentiles]
    n_box = int(np.count_nonzero(mask))
    # coverage at each p and RRA (k = |mask|) from one pass over the sorted mask
    ks = [*(_top_k_count(p, ranked.size) for p in ps), n_box]
    hits = ranked.expected_hits(mask, ks)
    scores = {f"coverage@{p:g}": float(h) / n_box for p, h in zip(ps, hits[:-1], strict=True)}
    if near is None:
        near = _near_mask(mask, tolerance_px)
    elif near.shape != mask.shape or near.dtype != np.bool_:
        raise ValueError(
            f"near must be a bool mask of shape {mask.shape}, got {near.dtype} {near.shape}"
        )
    scores["relevance_rank_accuracy"] = float(hits[-1]) / n_box
    scores["localization_auc"] = _auc(ranked, mask)
    scores["energy_in_box"] = _energy(ranked.values, mask)
    scores["pointing_game"] = _pointing(ranked, near)
    scores["box_area_share"] = float(mask.mean())
    scores["pointing_baseline"] = float(near.mean())
    return scores
