"""fracdet's localization metrics against Quantus 0.6.0, a published second implementation.

Quantus is a test-only extra (LGPL; the Makefile installs it with ``--no-deps``, without its
``torch`` extra, which would pin an old torch); the tests skip when it is not installed. On maps
without ties both must agree: pointing game (tolerance 0), energy in box (Quantus'
AttributionLocalisation on the positive part), coverage@p (TopKIntersection * k / |mask|), RRA
and the localization AUC. Where they differ by design (ties, empty masks) is pinned below and
explained in the README.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from fracdet.explain.localization import (
    coverage_at_percentile,
    energy_in_box,
    localization_auc,
    pointing_game,
    relevance_rank_accuracy,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    # not installed, or installed without a dependency it imports: skip either way
    quantus = pytest.importorskip("quantus", exc_type=ImportError)

#: Quantus' own preprocessing off: no normalisation (dividing by the max could merge two
#: float values into a tie), no absolute value (fracdet ranks signed attributions).
PLAIN = {"normalise": False, "abs": False, "disable_warnings": True, "display_progressbar": False}


def _quantus(metric, maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """One Quantus metric on precomputed ``(B, H, W)`` maps and masks (no model needed)."""
    n = len(maps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = metric(
            model=None,
            x_batch=np.zeros((n, 1, *maps.shape[1:]), dtype=np.float32),
            y_batch=np.zeros(n, dtype=np.int64),
            a_batch=maps[:, None],
            s_batch=masks[:, None],
        )
    return np.asarray(scores, dtype=np.float64)


@pytest.fixture(scope="module")
def untied() -> tuple[np.ndarray, np.ndarray]:
    """24 random maps without ties (continuous values) and random one- or two-box masks."""
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(24, 20, 28))
    maps[::3] = np.abs(maps[::3]) * rng.random((8, 1, 1))  # some all-positive, rescaled
    masks = np.zeros(maps.shape, dtype=bool)
    for mask in masks:
        for _ in range(rng.integers(1, 3)):
            y, x = rng.integers(0, 16), rng.integers(0, 24)
            mask[y : y + rng.integers(2, 10), x : x + rng.integers(2, 12)] = True
    maps[1][masks[1]] += 3.0  # a few maps that find their box, so hits are not all misses
    maps[5][masks[5]] += 1.0
    for m in maps:
        assert np.unique(m).size == m.size  # no ties: the order is unambiguous
    return maps, masks


def test_pointing_game_agrees(untied):
    maps, masks = untied
    ours = [pointing_game(m, s, tolerance_px=0) for m, s in zip(maps, masks, strict=True)]
    theirs = _quantus(quantus.PointingGame(**PLAIN), maps, masks)
    assert ours == theirs.tolist()
    assert 0 < sum(ours) < len(ours)  # both hits and misses were compared


def test_energy_in_box_agrees(untied):
    maps, masks = untied
    ours = [energy_in_box(m, s) for m, s in zip(maps, masks, strict=True)]
    metric = quantus.AttributionLocalisation(positive_attributions=True, **PLAIN)
    # Quantus adds 1e-9 to the total mass
    np.testing.assert_allclose(ours, _quantus(metric, maps, masks), rtol=1e-6)


@pytest.mark.parametrize("p", [5, 25, 50])
def test_coverage_is_top_k_intersection_times_k_over_the_box(untied, p):
    maps, masks = untied
    k = math.ceil(p / 100 * maps[0].size)
    ours = [coverage_at_percentile(m, s, p) for m, s in zip(maps, masks, strict=True)]
    intersection = _quantus(quantus.TopKIntersection(k=k, **PLAIN), maps, masks)
    np.testing.assert_allclose(ours, intersection * k / masks.sum(axis=(1, 2)), rtol=1e-12)


def test_relevance_rank_accuracy_agrees(untied):
    maps, masks = untied
    ours = [relevance_rank_accuracy(m, s) for m, s in zip(maps, masks, strict=True)]
    theirs = _quantus(quantus.RelevanceRankAccuracy(**PLAIN), maps, masks)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_localization_auc_agrees_with_and_without_ties(untied):
    maps, masks = untied
    rounded = np.round(maps)  # ROC counts ties half in both
    for batch in (maps, rounded):
        ours = [localization_auc(m, s) for m, s in zip(batch, masks, strict=True)]
        theirs = _quantus(quantus.AUC(**PLAIN), batch, masks)
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_where_they_differ_tied_maxima_and_an_empty_mask():
    # A Grad-CAM-like plateau of 6 tied maxima, 4 of them in the box: Quantus counts a hit when
    # any maximum is in the box; fracdet scores the share, 4/6.
    cam = np.zeros((6, 6))
    cam[1:3, 1:4], cam[3, 1:4] = 2.0, 1.0
    box = np.zeros((6, 6), dtype=bool)
    box[1:3, 2:5] = True
    empty = np.zeros_like(box)
    hits = _quantus(quantus.PointingGame(**PLAIN), np.stack([cam, cam]), np.stack([box, empty]))
    assert hits.tolist() == [1.0, 1.0]  # the empty mask: NaN cast to bool, a hit
    assert pointing_game(cam, box, tolerance_px=0) == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="is empty"):
        pointing_game(cam, empty, tolerance_px=0)
