"""``fracdet.jobs``: journal files, the chunked journal and its resume, run state, shards, merge."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import fracdet.jobs.journal as journal_module
from fracdet.errors import ConfigError, DataError, OutputExistsError
from fracdet.jobs import (
    Journal,
    append_jsonl,
    append_rows,
    check_same_run,
    cut_partial_line,
    finished_states,
    link_tree,
    load_state,
    merge_rows,
    open_output,
    read_jsonl,
    read_rows,
    rewrite_jsonl,
    run_kind,
    sort_rows,
    start_rows,
    write_rows,
    write_state,
)

HEADER = ["image_id", "path", "score"]


def journal(path: Path, rows: list[tuple[int, str, str]]) -> Path:
    start_rows(path, HEADER)
    append_rows(path, HEADER, [dict(zip(HEADER, map(str, row), strict=True)) for row in rows])
    return path


def by_path(folder: Path) -> Journal[str]:
    """A predict-like journal: one item per chunk, keyed by path, renumbered by image id."""
    return Journal(
        folder,
        HEADER,
        lambda r: r["path"],
        rows="rows.csv",
        side="side.jsonl",
        id_column="image_id",
    )


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
    append_rows(path, HEADER, [{"image_id": 1, "path": "a.jpg", "score": "0.5"}])
    assert read_rows(path)[1] == [{"image_id": "1", "path": "a.jpg", "score": "0.5"}]
    append_rows(path, HEADER, [{"image_id": 2, "path": "b, with comma.jpg"}])  # a missing cell
    assert read_rows(path)[1][1] == {"image_id": "2", "path": "b, with comma.jpg", "score": ""}


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
    numeric = ["1", "2", "3", "10"]  # not text order
    assert [r["image_id"] for r in sort_rows(path)] == numeric
    assert [r["image_id"] for r in read_rows(path)[1]] == numeric


# --- the chunked journal: commit and reopen --------------------------------------------------


def test_commit_writes_the_side_journal_before_the_rows(tmp_path, monkeypatch):
    rows = by_path(tmp_path)
    rows.start()
    rows.commit([{"image_id": 1, "path": "a.jpg", "score": "0.1"}], [{"image_id": 1}])
    assert read_rows(rows.rows_path)[1] == [{"image_id": "1", "path": "a.jpg", "score": "0.1"}]
    assert read_jsonl(rows.side_path) == [{"image_id": 1}]

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(journal_module, "append_rows", killed)
    with pytest.raises(KeyboardInterrupt):
        rows.commit([{"image_id": 2, "path": "b.jpg"}], [{"image_id": 2}])
    assert len(read_jsonl(rows.side_path)) == 2 and len(read_rows(rows.rows_path)[1]) == 1


def test_reopen_renumbers_drops_and_cuts(tmp_path):
    rows = by_path(tmp_path)
    journal(
        rows.rows_path,
        [(1, "a.jpg", "0.1"), (2, "b.jpg", "0.2"), (3, "gone.jpg", "0.3"), (4, "b.jpg", "0.4")],
    )
    with open(rows.rows_path, "a", encoding="utf-8") as fh:
        fh.write("5,d.jp")  # half a row from an interrupted write
    append_jsonl(rows.side_path, [{"image_id": i} for i in (1, 2, 3, 5)])
    # Since then "0.jpg" arrived first (every id moves up) and gone.jpg went.
    today = {"0.jpg": 1, "a.jpg": 2, "b.jpg": 3, "d.jpg": 4}

    def renumber(doc, found):
        new = found.remap.get(doc["image_id"])
        return None if new is None else {"image_id": new}

    found = rows.reopen([[p] for p in today], ids=today, side=renumber)
    assert [(r["image_id"], r["path"], r["score"]) for r in found.kept] == [
        ("2", "a.jpg", "0.1"),
        ("3", "b.jpg", "0.2"),
    ]
    # gone from the list, and a second row for b.jpg
    assert [r["path"] for r in found.dropped] == ["gone.jpg", "b.jpg"]
    assert found.remap == {1: 2, 2: 3}
    assert found.done == {"a.jpg", "b.jpg"}
    assert read_rows(rows.rows_path) == (HEADER, found.kept)
    assert read_jsonl(rows.side_path) == [{"image_id": 2}, {"image_id": 3}]


def test_reopen_leaves_an_unchanged_journal_alone(tmp_path):
    rows = by_path(tmp_path)
    journal(rows.rows_path, [(1, "a.jpg", ""), (2, "b.jpg", "")])
    inode = rows.rows_path.stat().st_ino
    today = {"a.jpg": 1, "b.jpg": 2, "c.jpg": 3}
    found = rows.reopen([[p] for p in today], ids=today)
    assert found.done == {"a.jpg", "b.jpg"} and found.dropped == [] and found.remap == {1: 1, 2: 2}
    assert rows.rows_path.stat().st_ino == inode
    assert rows.side_path.read_text() == ""  # a missing side journal becomes an empty one


def test_reopen_drops_a_chunk_committed_in_part_with_its_side_lines(tmp_path):
    """The audit's case: chunks of several items, keyed (model, index), no renumbering."""
    header = ["model", "index", "value"]
    key = lambda r: (r["model"], int(r["index"]))  # noqa: E731
    rows = Journal(tmp_path, header, key, rows="per_image.csv", side="detections.jsonl")
    rows.start()
    chunks = [[("m", 1), ("m", 2)], [("m", 3), ("m", 4)], [("m", 5)]]
    cells = lambda i: {"model": "m", "index": i, "value": f"v{i}"}  # noqa: E731
    rows.commit([cells(1), cells(2)], [{"model": "m", "index": 1}, {"model": "m", "index": 2}])
    # A kill inside the second chunk's commit: its side lines and one of its two rows made it.
    rows.commit([cells(3)], [{"model": "m", "index": 3}, {"model": "m", "index": 4}])
    found = rows.reopen(chunks)
    assert found.done == {("m", 1), ("m", 2)}
    assert [r["index"] for r in found.dropped] == ["3"]
    assert [r["index"] for r in read_rows(rows.rows_path)[1]] == ["1", "2"]
    assert [d["index"] for d in read_jsonl(rows.side_path)] == [1, 2]
    # Another shard's chunks: rows of chunks not listed are not this run's.
    assert rows.reopen(chunks[1:]).done == set() and read_rows(rows.rows_path)[1] == []


def test_reopen_refuses_other_columns(tmp_path):
    rows = Journal(tmp_path, ["image_id", "path"], lambda r: r["path"], rows="rows.csv", side="s")
    journal(rows.rows_path, [(1, "a.jpg", "")])
    with pytest.raises(ConfigError, match="cannot resume: rows.csv has other columns") as info:
        rows.reopen([["a.jpg"]])
    assert info.value.path == rows.rows_path


# --- run state: kind, identity, resume -------------------------------------------------------


def test_state_records_its_kind_and_run_kind_reads_it(tmp_path):
    write_state(tmp_path / "p", "predict", {"status": "complete"})
    assert load_state(tmp_path / "p", "predict") == {"kind": "predict", "status": "complete"}
    assert run_kind(tmp_path / "p") == "predict"
    write_state(tmp_path / "a", "audit", {"status": "running"})
    assert run_kind(tmp_path / "a") == "audit"
    # The kind comes from the state, not from the file's name.
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "audit_state.json").write_text(json.dumps({"kind": "predict"}))
    assert run_kind(tmp_path / "odd") == "predict"
    (tmp_path / "odd" / "audit_state.json").write_text(json.dumps({"kind": "train"}))
    with pytest.raises(DataError, match="unknown kind of run"):
        run_kind(tmp_path / "odd")
    # A state from before states named their kind: the kind whose state file it is.
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "audit_state.json").write_text("{}")
    assert run_kind(tmp_path / "old") == "audit"
    (tmp_path / "none").mkdir()
    assert run_kind(tmp_path / "none") is None and run_kind(tmp_path / "missing") is None


def test_open_output_creates_refuses_replaces_and_resumes(tmp_path):
    out = tmp_path / "out"
    opts = dict(shard=None, resume=False, overwrite=False, needs=("rows.csv",))
    assert open_output(out, "predict", {"h": 1}, **opts) is None and out.is_dir()
    (out / "rows.csv").write_text("x\n")
    write_state(out, "predict", {"identity": {"h": 1}, "shard": None})
    with pytest.raises(OutputExistsError, match="--resume .* --overwrite"):
        open_output(out, "predict", {"h": 1}, **opts)
    state = open_output(out, "predict", {"h": 1}, **{**opts, "resume": True})
    assert state == {"kind": "predict", "identity": {"h": 1}, "shard": None}
    with pytest.raises(ConfigError, match="cannot resume: .* differs .* in h, shard; pass"):
        open_output(out, "predict", {"h": 2}, **{**opts, "resume": True, "shard": "1/2"})
    with pytest.raises(OutputExistsError, match="not a fracdet audit output"):
        open_output(out, "audit", {"h": 1}, **{**opts, "resume": True})
    (out / "predict_report.json").write_text("{not json")
    with pytest.raises(DataError, match="unreadable predict_report.json"):
        open_output(out, "predict", {"h": 1}, **{**opts, "resume": True})
    assert open_output(out, "predict", {"h": 1}, **{**opts, "overwrite": True}) is None
    assert list(out.iterdir()) == []


# --- shards: finished states, identities, rows, links ----------------------------------------


def test_finished_states_refuse_what_cannot_be_merged(tmp_path):
    with pytest.raises(ConfigError, match="at least one shard"):
        finished_states([], "audit", ())
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a fracdet audit output"):
        finished_states([tmp_path / "empty"], "audit", ())
    write_state(tmp_path / "p", "predict", {"status": "complete"})
    (tmp_path / "p" / "audit_state.json").write_text(json.dumps({"kind": "predict"}))
    with pytest.raises(DataError, match="holds a `fracdet predict` run, not a `fracdet audit` one"):
        finished_states([tmp_path / "p"], "audit", ())
    write_state(tmp_path / "run", "audit", {"status": "running"})
    with pytest.raises(DataError, match="did not finish: rerun it with --resume"):
        finished_states([tmp_path / "run"], "audit", ())
    write_state(tmp_path / "run", "audit", {"status": "complete"})
    with pytest.raises(DataError, match="per_image.csv is missing") as info:
        finished_states([tmp_path / "run"], "audit", ("per_image.csv",))
    assert info.value.path == tmp_path / "run" / "per_image.csv"
    (tmp_path / "run" / "per_image.csv").write_text("")
    assert finished_states([tmp_path / "run"], "audit", ("per_image.csv",))[0]["kind"] == "audit"


def test_check_same_run_names_the_key_that_differs(tmp_path):
    states = [{"identity": {"a": 1, "b": "x"}}, {"identity": {"a": 1, "b": "y"}}]
    check_same_run([tmp_path / "1", tmp_path / "2"], states, {"a": "thing"})
    with pytest.raises(DataError, match=r"made with another checkpoint than .*1 \(y vs x\)"):
        check_same_run([tmp_path / "1", tmp_path / "2"], states, {"b": "checkpoint"})


def test_merge_rows_interleaves_shards_by_key(tmp_path):
    one = journal(tmp_path / "s1.csv", [(1, "a.jpg", ""), (3, "c.jpg", "")])
    two = journal(tmp_path / "s2.csv", [(2, "b.jpg", ""), (10, "d.jpg", "")])
    header, rows = merge_rows(
        [two, one], lambda r: int(r["image_id"]), describe=lambda r: r["path"]
    )
    assert header == HEADER and [r["path"] for r in rows] == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    _, rows = merge_rows(
        [one, two], lambda r: int(r["image_id"]), describe=str, order=lambda r: r["path"][::-1]
    )
    assert [r["path"] for r in rows] == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]


def test_merge_rows_refuses_duplicates_and_other_columns(tmp_path):
    one = journal(tmp_path / "s1.csv", [(1, "a.jpg", "")])
    key = lambda r: int(r["image_id"])  # noqa: E731
    describe = lambda r: f"image id {r['image_id']} ({r['path']})"  # noqa: E731
    with pytest.raises(
        DataError,
        match=r"image id 1 \(a.jpg\) is in .*s1.csv and in .*s1.csv: the same shard twice",
    ):
        merge_rows([one, one], key, describe=describe)
    other = tmp_path / "other.csv"
    write_rows(other, ["image_id", "path"], [{"image_id": "2", "path": "b.jpg"}])
    with pytest.raises(DataError, match="other.csv has other columns than") as info:
        merge_rows([one, other], key, describe=describe)
    assert info.value.path == other


def test_link_tree_links_the_layout_skips_temporaries_and_replaces_targets(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "m").mkdir(parents=True)
    (src / "m" / "chunk_00001.npz").write_bytes(b"new")
    (src / "m" / ".chunk_00002.npz.tmp-x1").write_bytes(b"half")  # a killed atomic write
    (dst / "m").mkdir(parents=True)
    (dst / "m" / "chunk_00001.npz").write_bytes(b"previous join")
    link_tree(src, dst)
    assert sorted(p.name for p in (dst / "m").iterdir()) == ["chunk_00001.npz"]
    target = dst / "m" / "chunk_00001.npz"
    assert target.read_bytes() == b"new"
    assert os.path.samefile(target, src / "m" / "chunk_00001.npz")  # a hard link, not a copy
    link_tree(tmp_path / "absent", dst)  # nothing to link is fine


# --- JSONL side journals ---------------------------------------------------------------------


def test_jsonl_append_and_read(tmp_path):
    path = tmp_path / "boxes.jsonl"
    append_jsonl(path, [{"image_id": 1, "results": []}])
    append_jsonl(path, [])  # nothing to write is fine
    assert read_jsonl(path) == [{"image_id": 1, "results": []}]
    append_jsonl(path, [{"image_id": 2, "results": [{"score": 0.5}]}, {"image_id": 3}], sync=True)
    assert [d["image_id"] for d in read_jsonl(path)] == [1, 2, 3]


def test_read_jsonl_names_a_bad_line(tmp_path):
    path = tmp_path / "boxes.jsonl"
    path.write_text('{"image_id": 1}\n\n{"image_id": 2\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 3 is not JSON") as info:
        read_jsonl(path)
    assert info.value.path == path


def test_rewrite_jsonl(tmp_path):
    path = tmp_path / "boxes.jsonl"
    # a missing journal is an empty one
    assert rewrite_jsonl(path, lambda doc: doc) == 0 and path.read_text() == ""
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
