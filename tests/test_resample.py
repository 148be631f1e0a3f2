"""The one bootstrap resampling primitive: seeded, chunked, stratified on request."""

from __future__ import annotations

import numpy as np
import pytest

from fracdet.resample import bootstrap_indices


def test_replicates_are_the_generators_draws_in_chunks():
    chunks = list(bootstrap_indices(5, 7, seed=3, chunk_cells=10))
    assert [c.shape for c in chunks] == [(2, 5)] * 3 + [(1, 5)]  # 10 // 5 = 2 rows a chunk
    rng = np.random.default_rng(3)
    expected = [rng.integers(0, 5, size=(rows, 5)) for rows in (2, 2, 2, 1)]
    assert all(np.array_equal(a, b) for a, b in zip(chunks, expected, strict=True))


def test_one_replicate_per_draw_equals_drawing_a_vector_each_time():
    # what the detector's mAP bootstrap drew before it used the primitive
    rng = np.random.default_rng(11)
    before = [rng.integers(0, 9, size=9) for _ in range(4)]
    after = [rows[0] for rows in bootstrap_indices(9, 4, seed=11, chunk_cells=1)]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_strata_keep_their_sizes_and_members():
    strata = [np.array([0, 2, 4]), np.array([1, 3])]
    rows = np.concatenate(list(bootstrap_indices(5, 50, seed=0, chunk_cells=20, strata=strata)))
    assert rows.shape == (50, 5)
    assert np.isin(rows[:, :3], strata[0]).all() and np.isin(rows[:, 3:], strata[1]).all()
    assert len(np.unique(rows)) == 5  # every item drawn somewhere: not a constant index


def test_refuses_no_replicates():
    with pytest.raises(ValueError, match="n_boot"):
        next(bootstrap_indices(3, 0, seed=0))
