"""Box conventions against hand-computed values, and every label-parsing error path."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fracdet.data.formats import (
    Box,
    box_from_coco,
    box_from_yolo,
    box_to_coco,
    box_to_yolo,
    clip_box,
    flat_name,
    format_voc_xml,
    format_yolo_label,
    parse_voc_xml,
    parse_yolo_label,
)
from fracdet.errors import DataError


def test_yolo_hand_computed():
    # A 40x20 box at (10, 20) in a 200x100 image: centre (30, 30) -> (0.15, 0.3); size (0.2, 0.2).
    assert box_to_yolo(Box(10, 20, 50, 40), 200, 100) == pytest.approx((0.15, 0.3, 0.2, 0.2))
    assert box_from_yolo(0.15, 0.3, 0.2, 0.2, 200, 100).as_list() == pytest.approx([10, 20, 50, 40])


def test_fracatlas_yolo_label_matches_its_coco_box():
    # IMG0000019 in FracAtlas: COCO bbox and YOLO line of the same box on a 2304x2880 image.
    coco = box_from_coco(
        [1242.2970297029703, 929.1089108910893, 273.2673267326734, 147.3267326732672]
    )
    boxes, problems = parse_yolo_label("0 0.5985 0.3482 0.1186 0.0512\n", 2304, 2880, 1, "x.txt")
    assert not problems
    assert boxes[0].as_list() == pytest.approx(coco.as_list(), abs=0.5 * 2880 * 1e-4 + 0.2)


def test_coco_hand_computed():
    assert box_to_coco(Box(1, 2, 4, 8)) == [1, 2, 3, 6]
    assert box_from_coco([1, 2, 3, 6], label=2) == Box(1, 2, 4, 8, 2)


def test_format_yolo_label_is_six_decimals_and_empty_for_negatives():
    assert (
        format_yolo_label([Box(0, 0, 100, 50, 1)], 200, 100)
        == "1 0.250000 0.250000 0.500000 0.500000\n"
    )
    assert format_yolo_label([], 10, 10) == ""


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("3 0.5 0.5 0.1 0.1", "class_id_out_of_range"),
        ("-1 0.5 0.5 0.1 0.1", "class_id_out_of_range"),
        ("0.5 0.5 0.5 0.1 0.1", "class_id_out_of_range"),
        ("nan 0.5 0.5 0.1 0.1", "class_id_out_of_range"),
        ("inf 0.5 0.5 0.1 0.1", "class_id_out_of_range"),
        ("-1 0.5 0.5 0.1 0.1", "class_id_out_of_range"),
        ("a 0.5 0.5 0.1 0.1", "label_unparsable"),
        ("0 0.5 0.5", "label_unparsable"),
        ("0 0.5 0.5 0.1 0.1 0.2", "label_unparsable"),
    ],
)
def test_yolo_bad_lines_are_dropped_and_reported(line, kind):
    boxes, problems = parse_yolo_label(f"{line}\n0 0.5 0.5 0.2 0.2\n", 100, 100, 2, "lbl.txt")
    assert len(boxes) == 1, "the good line is kept"
    assert [p.kind for p in problems] == [kind]
    assert problems[0].file == "lbl.txt" and "line 1" in problems[0].detail


def test_yolo_segment_line_becomes_its_bounding_box():
    boxes, problems = parse_yolo_label("0 0.1 0.2 0.5 0.2 0.3 0.6\n", 100, 50, 1, "seg.txt")
    assert not problems
    assert boxes[0].as_list() == pytest.approx([10, 10, 50, 30])


@pytest.mark.parametrize(
    ("box", "expected", "kind"),
    [
        (Box(10, 10, 20, 20), Box(10, 10, 20, 20), None),
        (Box(-0.3, 0, 20, 100.4), Box(0, 0, 20, 100), None),  # rounding overshoot: silent
        (Box(-5, 10, 20, 120), Box(0, 10, 20, 100), "box_clipped"),
        (
            Box(20, 20, 10, 10),
            None,
            "box_inverted",
        ),  # swapped corners are a label error, not repaired
        (Box(10, 20, 20, 10), None, "box_inverted"),
        (Box(150, 10, 180, 20), None, "box_zero_area"),  # wholly outside
        (Box(10, 10, 10, 20), None, "box_zero_area"),
        (Box(float("nan"), 0, 1, 1), None, "box_not_finite"),
    ],
)
def test_clip_box(box, expected, kind):
    assert clip_box(box, 100, 100) == (expected, kind)


def test_voc_round_trip_rounds_outward(tmp_path):
    xml = format_voc_xml("a.jpg", 100, 80, [Box(10.4, 5.6, 20.2, 30.9)], ["fractured"])
    (tmp_path / "a.xml").write_text(xml)
    boxes, problems = parse_voc_xml(tmp_path / "a.xml", ["fractured"])
    assert boxes == [Box(10, 5, 21, 31)] and not problems


def test_voc_unknown_class_and_bad_xml(tmp_path):
    xml = format_voc_xml("a.jpg", 100, 80, [Box(1, 1, 5, 5)], ["other"])
    (tmp_path / "a.xml").write_text(xml)
    boxes, problems = parse_voc_xml(tmp_path / "a.xml", ["fractured"])
    assert boxes == [] and problems[0].kind == "class_id_out_of_range"
    (tmp_path / "b.xml").write_text("<annotation><object>")
    with pytest.raises(DataError, match="b.xml"):
        parse_voc_xml(tmp_path / "b.xml", ["fractured"])


def test_flat_name():
    assert flat_name("train/sub/a.jpg") == "train__sub__a.jpg"
    assert flat_name("a.jpg") == "a.jpg"


sizes = st.integers(min_value=1, max_value=8000)


@given(st.data(), sizes, sizes)
def test_yolo_and_coco_round_trip_within_half_a_pixel(data, width, height):
    x1 = data.draw(st.floats(0, width - 0.01))
    y1 = data.draw(st.floats(0, height - 0.01))
    x2 = data.draw(st.floats(x1 + 0.01, width))
    y2 = data.draw(st.floats(y1 + 0.01, height))
    box = Box(x1, y1, x2, y2)
    text = format_yolo_label([box], width, height)
    (parsed,), problems = parse_yolo_label(text, width, height, 1, "t")
    assert not problems
    via_coco = box_from_coco(box_to_coco(parsed))
    assert via_coco.as_list() == pytest.approx(box.as_list(), abs=0.5)


def test_negative_yolo_width_and_voc_xmin_past_xmax_come_back_inverted_for_clip_box(tmp_path):
    (box,), problems = parse_yolo_label("0 0.5 0.5 -0.2 0.2\n", 100, 100, 1, "neg.txt")
    assert not problems and box.x1 > box.x2 and clip_box(box, 100, 100) == (None, "box_inverted")
    xml = format_voc_xml("a.jpg", 100, 80, [Box(10, 5, 20, 30)], ["fractured"]).replace(
        "<xmin>10<", "<xmin>40<"
    )
    (tmp_path / "a.xml").write_text(xml)
    (box,), problems = parse_voc_xml(tmp_path / "a.xml", ["fractured"])
    assert (
        not problems
        and (box.x1, box.x2) == (40, 20)
        and clip_box(box, 100, 80) == (None, "box_inverted")
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe\x00junk", "not valid PASCAL VOC XML"),
        (b'<?xml version="1.0" encoding="nope"?><a/>', "a.xml"),
    ],
)
def test_voc_that_is_not_xml_is_one_data_error(tmp_path, content, message):
    (tmp_path / "a.xml").write_bytes(content)
    with pytest.raises(DataError, match=message):
        parse_voc_xml(tmp_path / "a.xml", ["fractured"])
