"""``fracdet.jobs.shards``: K/N parsing, partitions covering every item once, what a merge lacks."""

from __future__ import annotations

import pytest

from fracdet.errors import ConfigError
from fracdet.jobs import missing_shards, parse_shard, shard_items


def test_parse_shard():
    assert parse_shard("2/3") == (2, 3)
    assert parse_shard(" 1/1 ") == (1, 1)
    assert parse_shard(None) is None and parse_shard("") is None and parse_shard("  ") is None


@pytest.mark.parametrize("bad", ["0/2", "3/2", "a/b", "1", "1/2/3", "-1/2", "1/0", "1.5/2"])
def test_parse_shard_refuses(bad):
    with pytest.raises(ConfigError, match="--shard"):
        parse_shard(bad)


@pytest.mark.parametrize("count", [0, 1, 5, 7, 12])
@pytest.mark.parametrize("n", [1, 2, 3, 8])
def test_shards_partition_the_items(count, n):
    items = [f"{i}.jpg" for i in range(count)]
    shards = [shard_items(items, (k, n)) for k in range(1, n + 1)]
    ids = [image_id for shard in shards for image_id, _ in shard]
    assert sorted(ids) == list(range(1, count + 1))  # every item exactly once
    for shard in shards:
        assert all(
            items[image_id - 1] == item for image_id, item in shard
        )  # ids are positions in the full list
        assert [i for i, _ in shard] == sorted(i for i, _ in shard)
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1  # balanced


def test_shard_items_without_a_shard_and_by_example():
    items = ["a", "b", "c", "d", "e", "f", "g"]
    assert shard_items(items, None) == [(i + 1, x) for i, x in enumerate(items)]
    assert shard_items(items, (2, 3)) == [(2, "b"), (5, "e")]
    assert shard_items(items, (3, 3)) == [(3, "c"), (6, "f")]


def test_missing_shards():
    assert missing_shards(["1/3", "3/3"]) == ["2/3"]
    assert missing_shards(["2/2", "1/2"]) == []
    assert missing_shards(["1/4"]) == ["2/4", "3/4", "4/4"]
    assert missing_shards(["1/2", "1/3"]) == []  # different N: no set to complete
    assert missing_shards(["1/2", None]) == []  # an unsharded output: nothing is missing
    assert missing_shards([]) == []
