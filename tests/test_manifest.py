"""The manifest: written and read back unchanged; bad files give one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from fracdet.data.formats import Box, ImageRecord
from fracdet.data.manifest import format_manifest, read_manifest
from fracdet.errors import DataError


def test_round_trip(tmp_path):
    record = ImageRecord(
        "a.jpg",
        tmp_path / "a.jpg",
        40,
        30,
        1,
        (Box(1.5, 2.25, 10.0, 12.125, 0),),
        group="P1",
        split="val",
        body_part="hand",
        attributes={"hardware": "1"},
    )
    (tmp_path / "m.csv").write_text(format_manifest([record], ["images/val/a.jpg"]))
    (back,) = read_manifest(tmp_path / "m.csv")
    assert back.path == tmp_path / "images" / "val" / "a.jpg"  # relative to the manifest
    assert (back.boxes, back.label, back.split, back.group, back.body_part) == (
        record.boxes,
        1,
        "val",
        "P1",
        "hand",
    )
    assert back.attributes["hardware"] == "1"


def test_bad_manifests(tmp_path):
    with pytest.raises(DataError, match="manifest not found"):
        read_manifest(tmp_path / "none.csv")
    (tmp_path / "m.csv").write_text("image_id,path\na.jpg,a.jpg\n")
    with pytest.raises(DataError, match="missing columns: .*boxes"):
        read_manifest(tmp_path / "m.csv")
    good = format_manifest([ImageRecord("a.jpg", Path("a.jpg"), 4, 4, 0)], ["a.jpg"])
    (tmp_path / "m.csv").write_text(good.replace(",4,4,", ",four,4,"))
    with pytest.raises(DataError, match="m.csv: line 2: cannot parse"):
        read_manifest(tmp_path / "m.csv")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda text: text.replace(",0,not_fractured,", ",7,not_fractured,"),
            "line 2: cannot parse \\(label must be 0 or 1, got 7\\)",
        ),
        (
            lambda text: text.replace(",[],", ',"[[1, 2]]",'),
            "line 2: cannot parse \\(list index out of range\\)",
        ),
        (
            lambda text: text.splitlines()[0] + "\na.jpg,a.jpg\n",
            "line 2: cannot parse \\(the row has fewer fields than the header\\)",
        ),
        (lambda text: text.replace(",[],", ',"' + "[" * 100000 + '",'), "line 2: cannot parse"),
    ],
    ids=["label-out-of-range", "short-box", "short-row", "deep-json"],
)
def test_bad_manifest_rows(tmp_path, mutate, message):
    good = format_manifest([ImageRecord("a.jpg", Path("a.jpg"), 4, 4, 0)], ["a.jpg"])
    (tmp_path / "m.csv").write_text(mutate(good))
    with pytest.raises(DataError, match=message):
        read_manifest(tmp_path / "m.csv")


def test_binary_manifest_is_one_data_error(tmp_path):
    (tmp_path / "m.csv").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(DataError, match="m.csv: not UTF-8 CSV text"):
        read_manifest(tmp_path / "m.csv")
