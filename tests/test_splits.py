"""Grouped, stratified splits: no group in two splits, proportions kept, official respected."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fracdet.data.formats import ImageRecord
from fracdet.data.splits import apply_group_regex, assign_splits
from fracdet.errors import ConfigError


def records(
    n: int, group_size: int = 1, prevalence_every: int = 5, official: dict[int, str] | None = None
):
    return [
        ImageRecord(
            f"P{i // group_size:04d}_v{i % group_size}.jpg",
            Path("x"),
            10,
            10,
            label=int((i // group_size) % prevalence_every == 0),
            group=f"P{i // group_size:04d}",
            body_part=("hand", "leg")[(i // group_size) % 2],
            split=(official or {}).get(i),
        )
        for i in range(n)
    ]


def splits_of_groups(assigned):
    found = defaultdict(set)
    for r in assigned:
        found[r.group].add(r.split)
    return found


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 300), group_size=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_no_group_in_two_splits_and_everything_assigned(n, group_size, seed):
    assigned, report, _ = assign_splits(records(n, group_size), seed=seed)
    assert len(assigned) == n and all(r.split in ("train", "val", "test") for r in assigned)
    assert all(len(s) == 1 for s in splits_of_groups(assigned).values())
    assert sum(sum(c.values()) for c in report.counts.values()) == n


def test_fractions_are_met_per_class():
    assigned, report, _ = assign_splits(records(1000), fractions=(0.7, 0.15, 0.15), seed=1)
    for label in (0, 1):
        per = Counter(r.split for r in assigned if r.label == label)
        total = sum(per.values())
        assert per["train"] / total == pytest.approx(0.7, abs=0.01)
        assert per["val"] / total == pytest.approx(0.15, abs=0.01)
    assert report.counts["train"]["fractured"] == per["train"]


def test_same_seed_same_split_other_seed_other_split():
    a, _, _ = assign_splits(records(200), seed=3)
    b, _, _ = assign_splits(records(200), seed=3)
    c, _, _ = assign_splits(records(200), seed=4)
    assert [r.split for r in a] == [r.split for r in b]
    assert [r.split for r in a] != [r.split for r in c]


def test_official_split_is_kept_and_pulls_its_group_along():
    rs = records(40, group_size=2, official={0: "test", 2: "val", 5: "train"})
    assigned, report, problems = assign_splits(rs, seed=0)
    by_id = {r.image_id: r.split for r in assigned}
    assert by_id["P0000_v0.jpg"] == by_id["P0000_v1.jpg"] == "test"  # v1 had no official split
    assert by_id["P0001_v0.jpg"] == "val"
    assert report.strategy == "official+grouped" and not problems


def test_official_split_that_leaks_a_group_is_reported_and_fixed():
    rs = records(10, group_size=2, official={0: "train", 1: "test", 2: "val"})
    assigned, report, problems = assign_splits(rs, seed=0)
    assert report.leaking_groups == ["P0000"]
    assert [p.kind for p in problems] == ["official_split_leak"]
    assert all(len(s) == 1 for s in splits_of_groups(assigned).values())


def test_random_strategy_ignores_the_official_split():
    rs = records(100, official={i: "test" for i in range(100)})
    assigned, report, _ = assign_splits(rs, seed=0, use_official=False)
    assert (
        Counter(r.split for r in assigned)["train"] > 50 and report.strategy == "grouped-stratified"
    )


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.7, 0.2, 0.2), (1.2, -0.1, -0.1)])
def test_bad_fractions(fractions):
    with pytest.raises(ConfigError, match="fractions"):
        assign_splits(records(10), fractions=fractions)


def test_group_regex():
    rs = [
        ImageRecord(name, Path("x"), 1, 1, 0, group=name)
        for name in ("pat7_a.jpg", "pat7_b.jpg", "other.jpg")
    ]
    grouped = apply_group_regex(rs, r"^(pat\d+)_")
    assert [r.group for r in grouped] == ["pat7", "pat7", "other.jpg"]
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        apply_group_regex(rs, "(")
