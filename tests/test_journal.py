"""``fracdet.journal``: append-only CSV and JSONL journals, partial-line repair, reconcile, merge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fracdet.errors import ConfigError, DataError
from fracdet.journal import (
    CsvAppender,
    JsonlAppender,
    cut_partial_line,
    merge_rows,
    read_jsonl,
    read_rows,
    reconcile_rows,
    rewrite_jsonl,
    sort_rows,
    start_rows,
    write_rows,
)

HEADER = ["image_id", "path", "score"]


def journal(path: Path, rows: list[tuple[int, str, str]]) -> Path:
    start_rows(path, HEADER)
    with CsvAppender(path) as out:
        out.append(rows)
    return path


# --- cut_partial_line -----------------------------------------------------------------------


def test_cut_partial_line_drops_only_the_unfinished_line(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_bytes(b"image_id,path\n1,a.jpg\n2,b.j")
    assert cut_partial_line(path) == len(b"2,b.j")
    assert path.read_bytes() == b"image_id,path\n1,a.jpg\n"
    assert cut_partial_line(path) == 0  # a complete file is left alone
    assert path.read_bytes() == b"image_id,path\n1,a.jpg\n"


def test_cut_partial_line_edge_cases(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert cut_partial_line(empty) == 0 and empty.read_bytes() == b""
    only_half = tmp_path / "half.csv"
    only_half.write_bytes(b"image_id,pa")  # not even the header finished
    assert cut_partial_line(only_half) == 11 and only_half.read_bytes() == b""
    # A last line longer than one read-back chunk (64 KiB): the cut is still at the last newline.
    long = tmp_path / "long.csv"
    long.write_bytes(b"h\n1\n" + b"x" * 200_000)
    assert cut_partial_line(long) == 200_000 and long.read_bytes() == b"h\n1\n"
    no_newline_long = tmp_path / "nonl.csv"
    no_newline_long.write_bytes(b"y" * 150_000)
    assert cut_partial_line(no_newline_long) == 150_000 and no_newline_long.read_bytes() == b""


# --- rows: write, append, sort ---------------------------------------------------------------


def test_rows_round_trip_and_appends_are_flushed(tmp_path):
    path = tmp_path / "rows.csv"
    start_rows(path, HEADER)
    assert read_rows(path) == (HEADER, [])
    with CsvAppender(path) as out:
        out.append([(1, "a.jpg", "0.5")])
        # Flushed on every call: another reader sees the row while the appender is still open.
        assert read_rows(path)[1] == [{"image_id": "1", "path": "a.jpg", "score": "0.5"}]
        out.append([(2, "b, with comma.jpg", "")])
    assert [r["path"] for r in read_rows(path)[1]] == ["a.jpg", "b, with comma.jpg"]
    with pytest.raises(RuntimeError, match="outside the `with` block"):
        out.append([(3, "c.jpg", "")])


def test_write_rows_is_atomic(tmp_path):
    path = journal(tmp_path / "rows.csv", [(1, "a.jpg", "0.1")])
    before = path.read_bytes()

    def rows():
        yield {"image_id": "9", "path": "z.jpg", "score": ""}
        raise RuntimeError("interrupted mid-write")

    with pytest.raises(RuntimeError, match="mid-write"):
        write_rows(path, HEADER, rows())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["rows.csv"]  # no temporary file left behind


def test_sort_rows_rewrites_only_when_out_of_order(tmp_path):
    path = journal(tmp_path / "rows.csv", [(1, "a.jpg", ""), (2, "b.jpg", "")])
    inode = path.stat().st_ino
    assert [r["image_id"] for r in sort_rows(path)] == ["1", "2"]
    assert path.stat().st_ino == inode  # not rewritten
    path = journal(
        tmp_path / "shuffled.csv",
        [(3, "c.jpg", ""), (1, "a.jpg", ""), (10, "j.jpg", ""), (2, "b.jpg", "")],
    )
    assert [r["image_id"] for r in sort_rows(path)] == [
        "1",
        "2",
        "3",
        "10",
    ]  # numeric, not text order
    assert [r["image_id"] for r in read_rows(path)[1]] == ["1", "2", "3", "10"]


# --- reconcile -------------------------------------------------------------------------------


def test_reconcile_renumbers_drops_and_cuts(tmp_path):
    path = journal(
        tmp_path / "rows.csv",
        [(1, "a.jpg", "0.1"), (2, "b.jpg", "0.2"), (3, "gone.jpg", "0.3"), (4, "b.jpg", "0.4")],
    )
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("5,d.jp")  # half a row from an interrupted write
    # Since then "0.jpg" arrived first (every id moves up) and gone.jpg went.
    today = {"0.jpg": 1, "a.jpg": 2, "b.jpg": 3, "d.jpg": 4}
    found = reconcile_rows(path, HEADER, today)
    assert [(r["image_id"], r["path"], r["score"]) for r in found.kept] == [
        ("2", "a.jpg", "0.1"),
        ("3", "b.jpg", "0.2"),
    ]
    assert [r["path"] for r in found.dropped] == [
        "gone.jpg",
        "b.jpg",
    ]  # gone, and a second row for b.jpg
    assert found.remap == {1: 2, 2: 3}
    assert found.done == {"a.jpg", "b.jpg"}
    assert read_rows(path) == (HEADER, found.kept)


def test_reconcile_leaves_an_unchanged_journal_alone(tmp_path):
    path = journal(tmp_path / "rows.csv", [(1, "a.jpg", ""), (2, "b.jpg", "")])
    inode = path.stat().st_ino
    found = reconcile_rows(path, HEADER, {"a.jpg": 1, "b.jpg": 2, "c.jpg": 3})
    assert found.done == {"a.jpg", "b.jpg"} and found.dropped == [] and found.remap == {1: 1, 2: 2}
    assert path.stat().st_ino == inode


def test_reconcile_refuses_other_columns(tmp_path):
    path = journal(tmp_path / "rows.csv", [(1, "a.jpg", "")])
    with pytest.raises(ConfigError, match="cannot resume: rows.csv has other columns") as info:
        reconcile_rows(path, ["image_id", "path"], {"a.jpg": 1})
    assert info.value.path == path


# --- merge -----------------------------------------------------------------------------------


def test_merge_rows_interleaves_shards_by_id(tmp_path):
    one = journal(tmp_path / "s1.csv", [(1, "a.jpg", ""), (3, "c.jpg", "")])
    two = journal(tmp_path / "s2.csv", [(2, "b.jpg", ""), (4, "d.jpg", "")])
    header, rows = merge_rows([two, one])
    assert header == HEADER and [r["path"] for r in rows] == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]


def test_merge_rows_refuses_duplicates_and_other_columns(tmp_path):
    one = journal(tmp_path / "s1.csv", [(1, "a.jpg", "")])
    with pytest.raises(
        DataError,
        match=r"image id 1 \(a.jpg\) is in .*s1.csv and in .*s1.csv: the same shard twice",
    ):
        merge_rows([one, one])
    other = tmp_path / "other.csv"
    write_rows(other, ["image_id", "path"], [{"image_id": "2", "path": "b.jpg"}])
    with pytest.raises(DataError, match="other.csv has other columns than") as info:
        merge_rows([one, other])
    assert info.value.path == other


# --- JSONL side journals ---------------------------------------------------------------------


def test_jsonl_append_and_read(tmp_path):
    path = tmp_path / "boxes.jsonl"
    with JsonlAppender(path) as out:
        out.append([{"image_id": 1, "results": []}])
        out.append([])  # nothing to write is fine
        assert read_jsonl(path) == [{"image_id": 1, "results": []}]
        out.append([{"image_id": 2, "results": [{"score": 0.5}]}, {"image_id": 3, "results": []}])
    assert [d["image_id"] for d in read_jsonl(path)] == [1, 2, 3]
    with pytest.raises(RuntimeError, match="outside the `with` block"):
        out.append([{}])


def test_read_jsonl_names_a_bad_line(tmp_path):
    path = tmp_path / "boxes.jsonl"
    path.write_text('{"image_id": 1}\n\n{"image_id": 2\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 3 is not JSON") as info:
        read_jsonl(path)
    assert info.value.path == path


def test_rewrite_jsonl(tmp_path):
    path = tmp_path / "boxes.jsonl"
    assert (
        rewrite_jsonl(path, lambda doc: doc) == 0 and path.read_text() == ""
    )  # a missing journal is an empty one
    path.write_text(
        "".join(json.dumps({"image_id": i}) + "\n" for i in (1, 2, 3)) + '{"image_id": 4, "res',
        encoding="utf-8",
    )
    dropped = rewrite_jsonl(
        path, lambda doc: None if doc["image_id"] == 2 else {"image_id": doc["image_id"] * 10}
    )
    assert dropped == 2  # image 2, and the half line
    assert read_jsonl(path) == [{"image_id": 10}, {"image_id": 30}]
    inode = path.stat().st_ino
    assert rewrite_jsonl(path, lambda doc: doc) == 0
    assert path.stat().st_ino == inode  # nothing changed: not rewritten
