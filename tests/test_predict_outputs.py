"""``finish_outputs``: the COCO files of a predict run, streamed, byte for byte as before.

The reference is the function as it was before streaming (it loaded every row and every
journal entry, then ``json.dumps``-ed the whole documents); the streamed one must write the
same bytes and return the same counts, with the rows in order (the usual case) and out of
order (as a resume that redid or renumbered rows leaves them).
"""

from __future__ import annotations

import json
import shutil
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

import fracdet.predict.outputs as outputs_module
from fracdet.errors import DataError
from fracdet.fsutil import atomic_write_json, atomic_write_text
from fracdet.jobs import append_jsonl, append_rows, read_jsonl, sort_rows, start_rows
from fracdet.predict.config import DETECTIONS, DETECTIONS_LOG, IMAGES, PREDICTIONS
from fracdet.predict.outputs import BASE_COLUMNS, DET_COLUMNS, finish_outputs

HEADER = BASE_COLUMNS + ["fracture_probability", "fracture_decision"] + DET_COLUMNS
FILES = (PREDICTIONS, IMAGES, DETECTIONS)


def reference_finish_outputs(out: Path, det_names: list[str], with_det: bool) -> dict[str, Any]:
    """``finish_outputs`` before streaming (fracdet main, 2026-12-02), verbatim."""
    rows = sort_rows(out / PREDICTIONS)
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(det_names)]
    images = [
        {
            "id": int(r["image_id"]),
            "file_name": r["path"],
            "width": int(r["width"]),
            "height": int(r["height"]),
        }
        for r in rows
        if r["status"] == "ok"
    ]
    atomic_write_json(out / IMAGES, {"images": images, "categories": categories})
    n_boxes = 0
    if with_det:
        entries = sorted(read_jsonl(out / DETECTIONS_LOG), key=lambda e: int(e["image_id"]))
        results = [r for entry in entries for r in entry["results"]]
        n_boxes = len(results)
        atomic_write_text(out / DETECTIONS, json.dumps(results) + "\n")
    skipped = [
        {"image_id": int(r["image_id"]), "path": r["path"], "reason": r["reason"]}
        for r in rows
        if r["status"] != "ok"
    ]
    return {
        "n_images": len(rows),
        "n_ok": len(images),
        "n_skipped": len(skipped),
        "n_boxes": n_boxes,
        "skipped": skipped,
    }


def _row(image_id: int, skipped: bool) -> dict[str, Any]:
    path = f'sub/ré,"q" {image_id}.png' if image_id % 3 == 0 else f"img{image_id:05d}.png"
    if skipped:
        return {"image_id": image_id, "path": path, "status": "skipped", "reason": "cannot decode"}
    return {
        "image_id": image_id,
        "path": path,
        "status": "ok",
        "width": 100 + image_id,
        "height": 50 + image_id,
        "fracture_probability": 0.1 + 0.2,
        "fracture_decision": image_id % 2,
        "n_boxes": image_id % 3,
        "max_box_score": 0.75,
    }


def _entry(image_id: int) -> dict[str, Any]:
    """A journal entry: 0-2 boxes, floats that print long (0.1 + 0.2), a non-ASCII name."""
    box = {"image_id": image_id, "category_id": 1, "bbox": [1.5, 2.0, 0.1 + 0.2, 4e-7]}
    return {
        "image_id": image_id,
        "results": [{**box, "score": k / 3, "name": "fractüre"} for k in range(image_id % 3)],
    }


def make_output(out: Path, ids: list[int], entry_ids: list[int], skipped: set[int]) -> Path:
    """A predict output as a run leaves it before ``finish_outputs``: rows and journal in the
    order given (a resume appends redone or renumbered images after the others)."""
    out.mkdir(parents=True)
    start_rows(out / PREDICTIONS, HEADER)
    append_rows(out / PREDICTIONS, HEADER, [_row(i, i in skipped) for i in ids])
    (out / DETECTIONS_LOG).touch()
    append_jsonl(out / DETECTIONS_LOG, [_entry(i) for i in entry_ids])
    return out


IN_ORDER = list(range(12))
RESUMED = [0, 1, 2, 3, 7, 8, 9, 10, 11, 4, 5, 6]  # 4-6 changed and were redone at the end


@pytest.mark.parametrize(
    ("ids", "entry_ids", "skipped", "det_names", "with_det"),
    [
        (IN_ORDER, IN_ORDER, {2, 5}, ["fracture"], True),
        (RESUMED, IN_ORDER, {2, 5}, ["fracture"], True),
        (IN_ORDER, RESUMED, set(), ["fracture", "old"], True),
        (RESUMED, [*RESUMED, 4], {4, 11}, ["fracture"], True),  # image 4's entry twice: stable
        (IN_ORDER, IN_ORDER, set(IN_ORDER), [], False),  # nothing readable, no detector
        (RESUMED, [], {0}, [], False),
        ([], [], set(), ["fracture"], True),  # an empty listing
    ],
    ids=[
        "in-order",
        "csv-resumed",
        "journal-resumed",
        "both-resumed",
        "all-skipped",
        "no-det",
        "empty",
    ],
)
def test_streamed_outputs_are_byte_for_byte_the_old_ones(
    tmp_path, ids, entry_ids, skipped, det_names, with_det
):
    new = make_output(tmp_path / "new", ids, entry_ids, skipped)
    old = tmp_path / "old"
    shutil.copytree(new, old)
    expected = reference_finish_outputs(old, det_names, with_det)
    counts = finish_outputs(new, det_names, with_det)
    assert list(counts.items()) == list(expected.items())  # the report's key order too
    for name in FILES:
        assert (new / name).is_file() == (old / name).is_file(), name
        if (old / name).is_file():
            assert (new / name).read_bytes() == (old / name).read_bytes(), name
    assert sorted(p.name for p in new.iterdir()) == sorted(p.name for p in old.iterdir())


def test_resumed_csv_is_rewritten_in_id_order(tmp_path):
    out = make_output(tmp_path / "out", RESUMED, RESUMED, {5})
    counts = finish_outputs(out, ["fracture"], True)
    assert (counts["n_images"], counts["n_ok"], counts["n_skipped"]) == (12, 11, 1)
    assert counts["skipped"] == [{"image_id": 5, "path": "img00005.png", "reason": "cannot decode"}]
    lines = (out / PREDICTIONS).read_text(encoding="utf-8").splitlines()
    assert [int(line.split(",")[0]) for line in lines[1:]] == IN_ORDER
    images = json.loads((out / IMAGES).read_text(encoding="utf-8"))["images"]
    assert [image["id"] for image in images] == [i for i in IN_ORDER if i != 5]
    boxes = json.loads((out / DETECTIONS).read_text(encoding="utf-8"))
    assert [box["image_id"] for box in boxes] == [1, 2, 2, 4, 5, 5, 7, 8, 8, 10, 11, 11]


def test_in_order_outputs_are_streamed_in_flat_memory(tmp_path, monkeypatch):
    """No sort (the rows are never all loaded) and a peak far below the rows' size: the old
    function held about 1.8 KB a row (3.6 MB here)."""
    n = 2000
    out = make_output(tmp_path / "out", list(range(n)), list(range(n)), {7, 1500})

    def refuse(path):
        raise AssertionError(f"sorted {path} although it was in order")

    monkeypatch.setattr(outputs_module, "sort_rows", refuse)
    tracemalloc.start()
    try:
        counts = finish_outputs(out, ["fracture"], True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (counts["n_ok"], counts["n_skipped"], counts["n_boxes"]) == (n - 2, 2, n - 1)
    assert peak < 512 * 1024, f"peak {peak / 1024:.0f} KB"


def test_a_bad_journal_line_names_the_file_and_leaves_no_half_output(tmp_path):
    out = make_output(tmp_path / "out", IN_ORDER, IN_ORDER, set())
    (out / DETECTIONS).write_text("[]\n", encoding="utf-8")  # an earlier finish's file
    with open(out / DETECTIONS_LOG, "a", encoding="utf-8") as fh:
        fh.write('{"image_id": 12, "resu\n')
    with pytest.raises(DataError, match=r"line 13 is not JSON") as caught:
        finish_outputs(out, ["fracture"], True)
    assert DETECTIONS_LOG in str(caught.value)
    assert (out / DETECTIONS).read_text(encoding="utf-8") == "[]\n"
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name]
