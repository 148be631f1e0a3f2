"""Ties at the cut count in proportion, and the p-free metrics (localization AUC, RRA).

Hand-computed on small tied maps, then checked against the definition itself: the mean over
every order of the tied pixels (enumerated on tiny maps), and scikit-learn's ROC AUC.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import roc_auc_score

from fracdet.explain.localization import (
    RankedMap,
    coverage_at_percentiles,
    localization_auc,
    localization_scores,
    pointing_game,
    relevance_rank_accuracy,
    topk_intersection,
)

# ---------------------------------------------------------------- a flat zero region

# 4x4, three positive pixels in the top-left corner, zero elsewhere (13 tied zeros):
#    3 2 0 0
#    1 0 0 0
#    0 0 0 0
#    0 0 0 0
FLAT = np.zeros((4, 4))
FLAT[0, 0], FLAT[0, 1], FLAT[1, 0] = 3.0, 2.0, 1.0


def _block(rows: slice, cols: slice, shape: tuple[int, int] = (4, 4)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[rows, cols] = True
    return mask


def test_a_box_in_the_flat_region_scores_the_same_wherever_it_is():
    # p=25: k = 4 -> the 3 positives (none in the box), then 1 of the 13 tied zeros, 4 of which
    # are box pixels: 4/13 of a box pixel -> coverage (4/13) / 4 = 1/13. Row-major order would
    # give the top-right box (0, 2) -> 1/4 and the bottom-right box 0.
    top_right, bottom_right = _block(slice(0, 2), slice(2, 4)), _block(slice(2, 4), slice(2, 4))
    for box in (top_right, bottom_right):
        cov = coverage_at_percentiles(FLAT, box, (25, 50, 100))
        # p=50: k = 8 -> 5 of the 13 zeros: (4 * 5/13) / 4 = 5/13
        assert cov == pytest.approx({25.0: 1 / 13, 50.0: 5 / 13, 100.0: 1.0})
        # RRA: k = |box| = 4, as coverage@25
        assert relevance_rank_accuracy(FLAT, box) == pytest.approx(1 / 13)
        # AUC: each box zero ties 9 outside zeros and loses to 3 positives: 4.5 / 12 each
        assert localization_auc(FLAT, box) == pytest.approx(4.5 / 12)
    # the box on the positives (3, 2, 1 and the zero at (1, 1)): 3 box pixels above the cut,
    # and the zero's 1/13 share -> (3 + 1/13) / 4 = 10/13
    corner = _block(slice(0, 2), slice(0, 2))
    assert coverage_at_percentiles(FLAT, corner, (25,)) == pytest.approx({25.0: 10 / 13})
    assert relevance_rank_accuracy(FLAT, corner) == pytest.approx(10 / 13)
    # the three positives beat all 12 outside zeros, the zero ties them: (36 + 6) / 48
    assert localization_auc(FLAT, corner) == pytest.approx(42 / 48)
    # the three positives alone: k = 3, the cut falls between values, nothing shared
    assert relevance_rank_accuracy(FLAT, FLAT > 0) == 1.0


# ---------------------------------------------------------------- a Grad-CAM-like plateau

# 6x6, an upsampled-CAM-like blob: a plateau of tied maxima (2), a shoulder (1), zero around.
#    0 0 0 0 0 0
#    0 2 2 2 0 0        box (rows 1-2, cols 2-4), 6 pixels:
#    0 2 2 2 0 0        4 on the plateau, 2 on zeros
#    0 1 1 1 0 0
#    0 0 0 0 0 0
#    0 0 0 0 0 0
CAM = np.zeros((6, 6))
CAM[1:3, 1:4] = 2.0
CAM[3, 1:4] = 1.0
CAM_BOX = _block(slice(1, 3), slice(2, 5), (6, 6))


def test_a_plateau_hand_computed():
    cov = coverage_at_percentiles(CAM, CAM_BOX, (10, 25, 50))
    # p=10: k = ceil(3.6) = 4 of the 6 tied maxima, 4 of them box pixels: (4 * 4/6) / 6 = 4/9
    #   (row-major: (1,1), (1,2), (1,3), (2,1) -> 2 box pixels -> 1/3)
    # p=25: k = 9 = plateau + shoulder exactly: 4 / 6 (no tie at the cut)
    # p=50: k = 18 -> 9 above, then 9 of the 27 tied zeros, 2 of them box pixels:
    #   (4 + 2 * 9/27) / 6 = 7/9   (row-major: row 0, (1,0), (1,4), (1,5) -> 5/6)
    assert cov == pytest.approx({10.0: 4 / 9, 25.0: 2 / 3, 50.0: 7 / 9})
    # RRA: k = 6 = the plateau exactly: 4 of 6
    assert relevance_rank_accuracy(CAM, CAM_BOX) == pytest.approx(2 / 3)
    # pointing game (tolerance 0): 4 of the 6 tied maxima in the box (row-major first: a miss,
    # Quantus: a hit because one of them is)
    assert pointing_game(CAM, CAM_BOX, tolerance_px=0) == pytest.approx(2 / 3)
    # AUC: a box pixel at 2 beats the 3 ones and 25 zeros outside and ties the 2 other 2s
    # (28 + 1); a box zero ties the 25 zeros (12.5): (4 * 29 + 2 * 12.5) / (6 * 30) = 47/60
    assert localization_auc(CAM, CAM_BOX) == pytest.approx(47 / 60)
    assert localization_auc(CAM, CAM_BOX) == pytest.approx(
        roc_auc_score(CAM_BOX.ravel(), CAM.ravel())
    )


def test_the_cut_finds_the_run_of_ties():
    ranked = RankedMap.of(CAM)  # sorted: 6 twos, 3 ones, 27 zeros
    assert [tuple(map(int, r)) for r in ranked.runs] == [(0, 6, 9), (6, 9, 36)]
    assert tuple(map(int, ranked.cut(4))) == (0, 6)
    assert tuple(map(int, ranked.cut(9))) == (6, 9)  # the last one sits in the ones' run
    assert tuple(map(int, ranked.cut(10))) == (9, 36)
    share = ranked.top_k_share(4).reshape(6, 6)
    np.testing.assert_allclose(share, np.where(CAM == 2, 4 / 6, 0.0))
    assert share.sum() == pytest.approx(4)


def test_topk_intersection_counts_ties_in_proportion():
    # p=50 of 4 pixels: k = 2. a: (0, 0) surely, then 1 of its 3 tied zeros; b's top 2 are
    # (0, 0), (0, 1). Expected overlap 1 + 1/3 -> / 2 = 2/3 (row-major: (0, 1) -> 1).
    a = np.array([[1.0, 0.0], [0.0, 0.0]])
    b = np.array([[4.0, 3.0], [2.0, 1.0]])
    assert topk_intersection(a, b, p=50) == pytest.approx(2 / 3)
    assert topk_intersection(b, a, p=50) == pytest.approx(2 / 3)
    # two constant maps: each pixel is in either top half with chance 1/2: 4 * 1/4 / 2 = 1/2
    assert topk_intersection(np.zeros((2, 2)), np.ones((2, 2)), p=50) == pytest.approx(0.5)


# ---------------------------------------------------------------- the definition, enumerated


def _mean_over_orders(attr: np.ndarray, score) -> float:
    """``score(order)`` averaged over every order of the pixels that keeps the values sorted.

    Each permutation of the pixel indices breaks the ties one way (it is a random tie-breaking
    key); every tie order appears equally often among them.
    """
    flat = attr.ravel()
    results = []
    for key in itertools.permutations(range(flat.size)):
        order = np.lexsort((np.array(key), -flat))  # by value, then by the key
        results.append(score(order))
    return float(np.mean(results))


tiny_maps_and_masks = st.tuples(st.integers(1, 2), st.integers(1, 3)).flatmap(
    lambda shape: st.tuples(
        arrays(np.float64, shape, elements=st.integers(0, 2).map(float)),
        arrays(np.bool_, shape).filter(lambda m: m.any()),
    )
)


@settings(max_examples=60, deadline=None)
@given(data=tiny_maps_and_masks, p=st.floats(1.0, 100.0))
def test_coverage_rra_and_pointing_are_the_mean_over_every_tie_order(data, p):
    attr, mask = data
    flat, inside = attr.ravel(), mask.ravel()
    k = max(1, math.ceil(round(p * flat.size / 100, 6)))
    n_box = inside.sum()
    expected_cov = _mean_over_orders(attr, lambda o: inside[o[:k]].sum() / n_box)
    expected_rra = _mean_over_orders(attr, lambda o: inside[o[:n_box]].sum() / n_box)
    expected_hit = _mean_over_orders(attr, lambda o: float(inside[o[0]]))
    assert coverage_at_percentiles(attr, mask, (p,))[p] == pytest.approx(expected_cov)
    assert relevance_rank_accuracy(attr, mask) == pytest.approx(expected_rra)
    assert pointing_game(attr, mask, tolerance_px=0) == pytest.approx(expected_hit)


@settings(max_examples=30, deadline=None)
@given(
    a=arrays(np.float64, (2, 2), elements=st.integers(0, 2).map(float)),
    b=arrays(np.float64, (2, 2), elements=st.integers(0, 2).map(float)),
    p=st.sampled_from([25, 50, 75]),
)
def test_topk_intersection_is_the_mean_over_both_maps_tie_orders(a, b, p):
    k = p * 4 // 100
    tops_a = [set(_orders(a)[i][:k]) for i in range(24)]
    tops_b = [set(_orders(b)[i][:k]) for i in range(24)]
    expected = np.mean([len(ta & tb) / k for ta in tops_a for tb in tops_b])
    assert topk_intersection(a, b, p=p) == pytest.approx(expected)


def _orders(attr: np.ndarray) -> list[list[int]]:
    flat = attr.ravel()
    return [
        np.lexsort((np.array(key), -flat)).tolist()
        for key in itertools.permutations(range(flat.size))
    ]


# ---------------------------------------------------------------- localization AUC and RRA


maps_and_masks = st.tuples(st.integers(1, 8), st.integers(1, 8)).flatmap(
    lambda shape: st.tuples(
        arrays(np.float64, shape, elements=st.integers(-3, 3).map(float)),
        arrays(np.bool_, shape).filter(lambda m: m.any() and not m.all()),
    )
)


@settings(max_examples=200, deadline=None)
@given(data=maps_and_masks)
def test_localization_auc_is_sklearns_roc_auc_with_ties(data):
    attr, mask = data
    assert localization_auc(attr, mask) == pytest.approx(
        roc_auc_score(mask.ravel(), attr.ravel()), abs=1e-12
    )


def test_localization_auc_of_a_perfect_a_reversed_and_a_constant_map():
    box = _block(slice(1, 3), slice(1, 3))
    assert localization_auc(box.astype(float), box) == 1.0
    assert localization_auc(-box.astype(float), box) == 0.0
    assert localization_auc(np.zeros((4, 4)), box) == 0.5
    assert math.isnan(localization_auc(np.arange(16.0).reshape(4, 4), np.ones((4, 4), bool)))


def test_random_maps_score_their_baselines():
    # AUC 0.5 and RRA the box share (0.1) on average
    rng = np.random.default_rng(4)
    mask = np.zeros((25, 40), dtype=bool)
    mask[5:15, 10:20] = True
    scores = np.array(
        [
            (localization_auc(m, mask), relevance_rank_accuracy(m, mask))
            for m in rng.random((300, 25, 40))
        ]
    )
    np.testing.assert_allclose(scores.mean(axis=0), [0.5, 0.1], atol=0.01)


def test_rra_of_a_perfect_map_is_one_and_equals_coverage_at_the_box_share():
    rng = np.random.default_rng(5)
    mask = _block(slice(2, 5), slice(1, 6), (8, 10))  # 15 of 80 pixels
    attr = rng.random((8, 10)) + 2 * mask
    assert relevance_rank_accuracy(attr, mask) == 1.0
    noisy = rng.random((8, 10)) + 0.5 * mask
    scores = localization_scores(noisy, mask, percentiles=(15 / 80 * 100,))
    assert scores["relevance_rank_accuracy"] == scores["coverage@18.75"]


# ---------------------------------------------------------------- the demo's effect, in small


def test_the_box_position_no_longer_decides_a_flat_maps_coverage():
    """Grad-CAM over an image: a blob of distinct values, zero over most of the image.

    Two boxes of one size in the zero region, one high and one low: row-major order favoured
    the high box by the row of the image it sat in; the proportional count scores them equally,
    at the expected value.
    """
    attr = np.zeros((32, 32))
    rng = np.random.default_rng(6)
    attr[12:20, 12:20] = rng.random((8, 8)) + 0.5  # 64 distinct positives, 960 zeros
    high, low = (
        _block(slice(0, 4), slice(0, 8), (32, 32)),
        _block(slice(28, 32), slice(0, 8), (32, 32)),
    )
    cov = [coverage_at_percentiles(attr, box, (50,))[50.0] for box in (high, low)]
    # k = 512: 64 positives, then 448 of the 960 zeros -> each box pixel 448/960 = 7/15
    assert cov == pytest.approx([7 / 15, 7 / 15])
