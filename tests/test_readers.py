"""FracAtlas, YOLO and COCO readers: the quirks of real data and every bad-input case."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest
import yaml
from conftest import make_fracatlas, save_image

from fracdet.data.coco import read_coco
from fracdet.data.fracatlas import COCO_FILE, read_fracatlas
from fracdet.data.yolo import label_path_for, read_yolo_dataset
from fracdet.errors import DataError


def kinds(dataset):
    return Counter(p.kind for p in dataset.problems)


def test_fracatlas_reads_boxes_labels_and_body_parts(small_fracatlas):
    ds = read_fracatlas(small_fracatlas)
    assert len(ds.records) == 12 and ds.class_names == ("fractured",)
    by_id = {r.image_id: r for r in ds.records}
    assert by_id["IMG0000003.jpg"].label == 1 and len(by_id["IMG0000003.jpg"].boxes) == 2
    assert by_id["IMG0000001.jpg"].label == 0 and by_id["IMG0000001.jpg"].boxes == ()
    assert by_id["IMG0000000.jpg"].boxes[0].as_list() == pytest.approx([10.5, 12.25, 30.75, 28.0])
    assert {r.body_part for r in ds.records} == {"hand", "leg"}
    assert not ds.problems


def test_fracatlas_quirks(tmp_path):
    root = make_fracatlas(
        tmp_path / "fa",
        [("IMG1.jpg", 50, 40, [(5, 5, 20, 20)]), ("IMG2.jpg", 50, 40, [])],
        split={"IMG1.jpg": "test"},
    )
    # CSV flag contradicting folder and box (like IMG0003298 in FracAtlas).
    csv_path = root / "dataset.csv"
    csv_path.write_text(
        csv_path.read_text().replace("IMG1.jpg,1,0,0,0,0,0,0,1,1", "IMG1.jpg,1,0,0,0,0,0,0,0,1")
    )
    # COCO lists an image that is not on disk; YOLO has a label for another missing one.
    doc = json.loads((root / COCO_FILE).read_text())
    doc["images"].append({"id": 99, "file_name": "GONE.jpg", "width": 10, "height": 10})
    (root / COCO_FILE).write_text(json.dumps(doc))
    (root / "Annotations" / "YOLO" / "ALSO_GONE.txt").write_text("")
    # A truncated JPEG and a DICOM in the image folders.
    save_image(root / "images" / "Non_fractured" / "BAD.jpg", 50, 40)
    data = (root / "images" / "Non_fractured" / "BAD.jpg").read_bytes()
    (root / "images" / "Non_fractured" / "BAD.jpg").write_bytes(data[: len(data) // 2])
    (root / "images" / "Non_fractured" / "scan.dcm").write_bytes(b"\0" * 128 + b"DICM")
    ds = read_fracatlas(root)
    found = kinds(ds)
    assert found == {
        "label_conflict": 1,
        "annotation_without_image": 2,
        "image_corrupt": 1,
        "unsupported_format": 1,
    }
    assert {r.image_id: r.label for r in ds.records} == {"IMG1.jpg": 1, "IMG2.jpg": 0}
    assert next(r for r in ds.records if r.image_id == "IMG1.jpg").split == "test"
    conflict = next(p for p in ds.problems if p.kind == "label_conflict")
    assert "IMG1.jpg" in conflict.file and "trusted folder and boxes" in conflict.action


def test_fracatlas_falls_back_to_yolo_then_voc(small_fracatlas):
    (small_fracatlas / COCO_FILE).unlink()
    via_yolo = read_fracatlas(small_fracatlas)
    assert kinds(via_yolo) == {"missing_file": 1}
    shutil.rmtree(small_fracatlas / "Annotations" / "YOLO")
    via_voc = read_fracatlas(small_fracatlas)
    for a, b in zip(via_yolo.records, via_voc.records, strict=True):
        assert len(a.boxes) == len(b.boxes)
        for ba, bb in zip(a.boxes, b.boxes, strict=True):
            assert ba.as_list() == pytest.approx(bb.as_list(), abs=1.0)  # VOC corners are integers


def test_fracatlas_fractured_image_without_box_and_box_in_negative_folder(tmp_path):
    root = make_fracatlas(
        tmp_path / "fa", [("A.jpg", 50, 40, [(5, 5, 20, 20)]), ("B.jpg", 50, 40, [])]
    )
    shutil.move(
        root / "images" / "Fractured" / "A.jpg", root / "images" / "Non_fractured" / "A.jpg"
    )
    save_image(root / "images" / "Fractured" / "C.jpg", 50, 40)
    ds = read_fracatlas(root)
    assert {r.image_id: r.label for r in ds.records} == {"A.jpg": 1, "B.jpg": 0, "C.jpg": 1}
    assert kinds(ds)["fractured_without_box"] == 1
    assert any(p.kind == "label_conflict" and "boxes win" in p.action for p in ds.problems)


def test_fracatlas_without_images_is_an_error(tmp_path):
    (tmp_path / "fa" / "images" / "Fractured").mkdir(parents=True)
    with pytest.raises(DataError, match="no images under"):
        read_fracatlas(tmp_path / "fa")


def make_yolo(root, names=("fracture",)):
    for split in ("train", "val"):
        for i in range(3):
            save_image(root / "images" / split / f"{split}{i}.png", 64, 32, seed=i)
            label_path_for(root / "images" / split / f"{split}{i}.png").parent.mkdir(
                parents=True, exist_ok=True
            )
            label_path_for(root / "images" / split / f"{split}{i}.png").write_text(
                "0 0.5 0.5 0.25 0.5\n" if i else ""
            )
    (root / "data.yaml").write_text(
        yaml.safe_dump(
            {"path": ".", "train": "images/train", "val": "images/val", "names": list(names)}
        )
    )
    return root / "data.yaml"


def test_yolo_reader(tmp_path):
    ds = read_yolo_dataset(make_yolo(tmp_path / "y"))
    assert ds.class_names == ("fracture",) and len(ds.records) == 6 and not ds.problems
    record = next(r for r in ds.records if r.image_id == "train1.png")
    assert record.split == "train" and record.label == 1
    assert record.boxes[0].as_list() == pytest.approx([24, 8, 40, 24])


@pytest.mark.parametrize("path_key", [None, ".", "ds"])
def test_yolo_reader_with_a_relative_data_yaml(tmp_path, monkeypatch, path_key):
    """`fracdet convert data/x/data.yaml` from the repository root: the root must not be doubled."""
    data = make_yolo(tmp_path / "data" / "ds")
    doc = yaml.safe_load(data.read_text())
    if path_key is None:
        doc.pop("path")
    elif path_key == "ds":  # relative to the data.yaml's folder: data/ds/ds
        shutil.move(
            str(tmp_path / "data" / "ds" / "images"),
            str(tmp_path / "data" / "ds" / "ds" / "images"),
        )
        shutil.move(
            str(tmp_path / "data" / "ds" / "labels"),
            str(tmp_path / "data" / "ds" / "ds" / "labels"),
        )
        doc["path"] = "ds"
    data.write_text(yaml.safe_dump(doc))
    monkeypatch.chdir(tmp_path)
    assert len(read_yolo_dataset("data/ds/data.yaml").records) == 6


def test_yolo_bad_labels(tmp_path):
    data = make_yolo(tmp_path / "y")
    labels = tmp_path / "y" / "labels" / "train"
    (labels / "train1.txt").write_text(
        "5 0.5 0.5 0.1 0.1\n0 1.2 0.5 0.5 0.5\n"
    )  # class out of range; box past the edge
    (labels / "train2.txt").unlink()  # image without label
    (labels / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # label without image
    (labels.parent / "val" / "val1.txt").write_text(
        "0 2.0 2.0 0.1 0.1\n"
    )  # wholly outside: dropped
    ds = read_yolo_dataset(data)
    assert kinds(ds) == {
        "class_id_out_of_range": 1,
        "box_clipped": 1,
        "image_without_label": 1,
        "label_without_image": 1,
        "box_zero_area": 1,
    }
    labels_of = {r.image_id: r.label for r in ds.records}
    assert labels_of["train2.png"] == 0 and labels_of["val1.png"] == 0


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"train": "images/train", "val": "images/val"}, "no 'names'"),
        ({"train": "images/train", "names": ["a"], "nc": 2}, "nc=2 but 1 names"),
        ({"train": "images/nowhere", "names": ["a"]}, "not found"),
        ({"names": ["a"]}, "no images in any split"),
        ({"train": "images/train", "names": {0: "a", 2: "b"}}, "numbered"),
    ],
)
def test_yolo_bad_data_yaml(tmp_path, doc, message):
    make_yolo(tmp_path / "y")
    (tmp_path / "y" / "data.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(DataError, match=message):
        read_yolo_dataset(tmp_path / "y" / "data.yaml")


def test_yolo_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(DataError, match="data.yaml not found"):
        read_yolo_dataset(tmp_path)
    (tmp_path / "data.yaml").write_text("names: [unclosed")
    with pytest.raises(DataError, match="not valid YAML"):
        read_yolo_dataset(tmp_path / "data.yaml")


def test_coco_reader_and_its_errors(tmp_path):
    save_image(tmp_path / "imgs" / "a.jpg", 40, 30)
    save_image(tmp_path / "imgs" / "b.jpg", 40, 30)
    doc = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
            {"id": 2, "file_name": "b.jpg"},
            {"id": 3, "file_name": "c.jpg"},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 2, 10, 5], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 9, "bbox": [1, 2, 10, 5], "iscrowd": 0},
            {"id": 3, "image_id": 42, "category_id": 7, "bbox": [1, 2, 10, 5], "iscrowd": 0},
        ],
        "categories": [{"id": 7, "name": "fracture"}],
    }
    (tmp_path / "val.json").write_text(json.dumps(doc))
    ds = read_coco(tmp_path / "val.json", tmp_path / "imgs")
    assert kinds(ds) == {"class_id_out_of_range": 1, "annotation_without_image": 2}
    assert [(r.image_id, r.label, r.split) for r in ds.records] == [
        ("a.jpg", 1, "val"),
        ("b.jpg", 0, "val"),
    ]
    assert ds.records[0].boxes[0].as_list() == [1, 2, 11, 7]
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="not valid JSON"):
        read_coco(tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DataError, match="not a COCO detection file"):
        read_coco(tmp_path / "bad.json")


def test_dataset_csv_without_image_id_column(small_fracatlas):
    (small_fracatlas / "dataset.csv").write_text("name,hand\nIMG0000000.jpg,1\n")
    with pytest.raises(DataError, match=r"dataset.csv has no image_id column"):
        read_fracatlas(small_fracatlas)


def test_coco_files_with_different_categories_are_refused(tmp_path):
    from fracdet.data.convert import read_dataset

    (tmp_path / "annotations").mkdir()
    save_image(tmp_path / "images" / "a.jpg", 20, 20)
    for split, name in (("train", "fracture"), ("val", "lesion")):
        doc = {
            "images": [{"id": 1, "file_name": "a.jpg"}],
            "annotations": [],
            "categories": [{"id": 1, "name": name}],
        }
        (tmp_path / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="categories differ"):
        read_dataset(tmp_path)
    for path in (tmp_path / "annotations").iterdir():
        path.unlink()
    with pytest.raises(DataError, match="no COCO .json files"):
        read_dataset(tmp_path, "coco")


# --- findings of the bad-input run (issue 10) ------------------------------------------------


def test_yolo_label_of_binary_junk_skips_its_image_and_says_why(tmp_path):
    data = make_yolo(tmp_path / "y")
    (tmp_path / "y" / "labels" / "train" / "train1.txt").write_bytes(
        b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x81"
    )
    ds = read_yolo_dataset(data)
    (problem,) = [p for p in ds.problems if p.kind == "label_unreadable"]
    assert problem.file.endswith("train1.txt") and problem.action == "image skipped"
    assert "train1.png" not in {r.image_id for r in ds.records} and len(ds.records) == 5


def test_yolo_negative_width_is_a_label_error_not_a_flipped_box(tmp_path):
    data = make_yolo(tmp_path / "y")
    (tmp_path / "y" / "labels" / "train" / "train1.txt").write_text(
        "0 0.5 0.5 -0.25 0.5\n0 0.5 0.5 0.25 0.5\n"
    )
    ds = read_yolo_dataset(data)
    assert kinds(ds) == {"box_inverted": 1}
    record = next(r for r in ds.records if r.image_id == "train1.png")
    assert [b.as_list() for b in record.boxes] == [pytest.approx([24, 8, 40, 24])]


def test_yolo_list_file_paths_must_stay_inside_the_dataset(tmp_path):
    data = make_yolo(tmp_path / "y")
    outside = save_image(tmp_path / "outside.png", 64, 32)
    (tmp_path / "y" / "train.txt").write_text(
        f"images/train/train0.png\n../outside.png\n{outside}\nimages/train/gone.png\n"
    )
    (tmp_path / "y" / "data.yaml").write_text(
        yaml.safe_dump({"train": "train.txt", "names": ["fracture"]})
    )
    ds = read_yolo_dataset(data)
    assert [r.image_id for r in ds.records] == ["train0.png"]
    refused = [p for p in ds.problems if p.kind == "path_outside_dataset"]
    assert [p.detail.split(":")[0] for p in refused] == ["line 2", "line 3"] and all(
        p.action == "image skipped" and "never opened" in p.detail for p in refused
    )
    assert any(p.kind == "annotation_without_image" and "gone.png" in p.detail for p in ds.problems)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"train": "images/train", "names": ["a"], "nc": "one"}, "nc must be a whole number"),
        ({"train": 3, "names": ["a"]}, "a split must be a folder or list file"),
        ({"train": "images/train", "names": []}, "empty 'names'"),
        ({"path": ["x"], "train": "images/train", "names": ["a"]}, "path must be a folder name"),
    ],
)
def test_yolo_data_yaml_with_wrong_types(tmp_path, doc, message):
    make_yolo(tmp_path / "y")
    (tmp_path / "y" / "data.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(DataError, match=message):
        read_yolo_dataset(tmp_path / "y" / "data.yaml")


def coco_tree(tmp_path, images, annotations, categories=({"id": 1, "name": "fracture"},)):
    root = tmp_path / "coco"
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        save_image(root / "images" / name, 40, 30)
    doc = {"images": images, "annotations": annotations, "categories": list(categories)}
    (root / "train.json").write_text(json.dumps(doc))
    return root / "train.json"


def test_coco_bad_entries_are_dropped_and_reported(tmp_path):
    images = [
        {"id": 1, "file_name": "a.jpg"},
        {"id": 2, "file_name": "b.jpg"},
        {"id": 3},
        "not an object",
    ]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3]},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": ["x", 2, 3, 4]},
        {"id": 3, "image_id": 1, "category_id": 1},
        {"id": 4, "image_id": 2, "category_id": 1, "bbox": [1, 2, 10, 5]},
        {"id": 5, "image_id": [2], "category_id": 1, "bbox": [1, 2, 10, 5]},
        {"id": 6, "image_id": 2, "category_id": 1, "bbox": [30, 2, -10, 5]},
        7,
    ]
    ds = read_coco(coco_tree(tmp_path, images, annotations))
    assert kinds(ds) == {"label_unparsable": 6, "annotation_without_image": 1, "box_inverted": 1}
    details = " | ".join(p.detail for p in ds.problems)
    assert (
        "annotation 1: bbox must be 4 numbers [x, y, w, h], got [1, 2, 3]" in details
        and "got ['x', 2, 3, 4]" in details
    )
    assert (
        "annotation 3: bbox must be 4 numbers" in details
        and "images[2] needs an id and a file_name" in details
    )
    assert {r.image_id: len(r.boxes) for r in ds.records} == {"a.jpg": 0, "b.jpg": 1}


def test_coco_duplicate_image_ids_skip_the_images_they_make_ambiguous(tmp_path):
    images = [
        {"id": 1, "file_name": "a.jpg"},
        {"id": 1, "file_name": "b.jpg"},
        {"id": 2, "file_name": "c.jpg"},
    ]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 5]},
        {"id": 2, "image_id": 2, "category_id": 1, "bbox": [1, 2, 10, 5]},
    ]
    ds = read_coco(coco_tree(tmp_path, images, annotations))
    assert kinds(ds) == {"duplicate_id": 2} and all(
        p.action == "image skipped" for p in ds.problems
    )
    assert (
        "image id 1 of 'a.jpg' is also used by 'b.jpg'" in ds.problems[0].detail
        and "of 'b.jpg'" in ds.problems[1].detail
    )
    assert [(r.image_id, r.label) for r in ds.records] == [("c.jpg", 1)]


def test_coco_file_names_leaving_the_dataset_are_refused_never_opened(tmp_path, monkeypatch):
    import fracdet.data.coco as coco_module

    secret = save_image(tmp_path / "secret.jpg", 40, 30)  # a valid image outside the dataset
    images = [
        {"id": 1, "file_name": "a.jpg"},
        {"id": 2, "file_name": "../../secret.jpg"},
        {"id": 3, "file_name": str(secret)},
        {"id": 4, "file_name": "images/../../../etc/passwd"},
        {"id": 5, "file_name": "C:\\Windows\\win.ini"},
    ]
    probed = []
    original = coco_module.probe_images
    monkeypatch.setattr(
        coco_module,
        "probe_images",
        lambda paths, **kw: probed.extend(paths) or original(paths, **kw),
    )
    ds = read_coco(coco_tree(tmp_path, images, []), tmp_path / "coco" / "images")
    assert [r.image_id for r in ds.records] == ["a.jpg"] and probed == [
        tmp_path / "coco" / "images" / "a.jpg"
    ]
    refused = [p for p in ds.problems if p.kind == "path_outside_dataset"]
    assert len(refused) == 4 and all(
        p.action == "image skipped" and "(refused, never opened)" in p.detail for p in refused
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "expected a JSON object .* got a list"),
        ('{"images": {}, "categories": []}', "'images' must be a list, got dict"),
        ('{"categories": []}', "no 'images' list"),
        ('{"images": [], "categories": [{"id": 1}]}', r"categories\[0\] needs an id and a name"),
        (
            '{"images": [], "categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]}',
            "category id 1 is listed twice",
        ),
        (
            '{"images": [], "categories": [{"id": 1, "name": "a"}, {"id": "x", "name": "b"}]}',
            "mix numbers and strings",
        ),
        ('{"images": [{"id": 1, "file_name": "a.jpg"}', "not valid JSON"),
        ("[" * 100000, "nested too deeply"),
    ],
)
def test_coco_files_that_are_not_coco_are_one_data_error(tmp_path, text, message):
    (tmp_path / "x.json").write_text(text)
    with pytest.raises(DataError, match=message):
        read_coco(tmp_path / "x.json")


def test_is_safe_relative():
    from fracdet.data.coco import is_safe_relative

    assert all(
        map(is_safe_relative, ["a.jpg", "sub/a.jpg", "sub/../a.jpg", "a b ü.jpg", "sub\\a.jpg"])
    )
    assert not any(
        map(
            is_safe_relative,
            [
                "../a.jpg",
                "/etc/passwd",
                "a/../../b",
                "..",
                ".",
                "C:\\x.jpg",
                "\\\\server\\x.jpg",
                "..\\a.jpg",
                "a\0.jpg",
            ],
        )
    )


def test_dataset_csv_without_body_part_columns_is_a_warning_not_silence(small_fracatlas):
    path = small_fracatlas / "dataset.csv"
    rows = [line.split(",") for line in path.read_text().splitlines()]
    keep = [
        i
        for i, name in enumerate(rows[0])
        if name not in ("hand", "leg", "hip", "shoulder", "mixed")
    ]
    path.write_text("\n".join(",".join(row[i] for i in keep) for row in rows) + "\n")
    ds = read_fracatlas(small_fracatlas)
    (problem,) = [p for p in ds.problems if p.kind == "csv_missing_columns"]
    assert (
        problem.detail == "no column(s) hand, leg, hip, shoulder, mixed"
        and "body part unknown for every image" in problem.action
    )
    assert {r.body_part for r in ds.records} == {"unknown"}


def test_dataset_csv_unparsable_values_are_recorded_and_not_used(small_fracatlas):
    path = small_fracatlas / "dataset.csv"
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")  # IMG0000000.jpg: fractured, hand
    row[header.index("hand")], row[header.index("fractured")] = "yes", "maybe"
    lines[1] = ",".join(row)
    lines.append("")  # a blank line is no row
    lines.append(",1,0")  # a row without image_id
    path.write_text("\n".join(lines) + "\n")
    ds = read_fracatlas(small_fracatlas)
    (bad,) = [p for p in ds.problems if p.kind == "csv_value_unparsable"]
    assert (
        "line 2 (IMG0000000.jpg): hand='yes', fractured='maybe'" in bad.detail
        and bad.action == "values treated as unknown"
    )
    assert any(p.kind == "label_unparsable" and "no image_id" in p.detail for p in ds.problems)
    record = next(r for r in ds.records if r.image_id == "IMG0000000.jpg")
    assert record.body_part == "unknown" and record.label == 1 and record.attributes["hand"] == ""


def test_fracatlas_voc_fallback_not_xml_and_inverted(small_fracatlas):
    (small_fracatlas / COCO_FILE).unlink()
    shutil.rmtree(small_fracatlas / "Annotations" / "YOLO")
    voc = small_fracatlas / "Annotations" / "PASCAL VOC"
    (voc / "IMG0000000.xml").write_text("this is not xml")
    xml = (voc / "IMG0000003.xml").read_text()
    (voc / "IMG0000003.xml").write_text(xml.replace("<xmin>10</xmin>", "<xmin>35</xmin>", 1))
    ds = read_fracatlas(small_fracatlas)
    unreadable = [p for p in ds.problems if p.kind == "label_unreadable"]
    assert (
        len(unreadable) == 1
        and unreadable[0].file.endswith("IMG0000000.xml")
        and "not valid PASCAL VOC XML" in unreadable[0].detail
    )
    assert [p.file.rsplit("/", 1)[1] for p in ds.problems if p.kind == "box_inverted"] == [
        "IMG0000003.jpg"
    ]
    by_id = {r.image_id: r for r in ds.records}
    assert (
        by_id["IMG0000000.jpg"].label == 1 and by_id["IMG0000000.jpg"].boxes == ()
    )  # fractured, kept for classification
    assert len(by_id["IMG0000003.jpg"].boxes) == 1


def test_fracatlas_yolo_label_of_binary_junk_falls_back_to_voc(small_fracatlas):
    (small_fracatlas / COCO_FILE).unlink()
    (small_fracatlas / "Annotations" / "YOLO" / "IMG0000000.txt").write_bytes(b"\xff\xfe\x00\x81")
    ds = read_fracatlas(small_fracatlas)
    assert [p.kind for p in ds.problems if p.file.endswith("IMG0000000.txt")] == [
        "label_unreadable"
    ]
    assert len(next(r for r in ds.records if r.image_id == "IMG0000000.jpg").boxes) == 1


def test_image_notes_are_reported_by_every_reader(tmp_path):
    data = make_yolo(tmp_path / "y")
    image = tmp_path / "y" / "images" / "train" / "train0.png"
    image.write_bytes(image.read_bytes() + b"\0" * 2000)
    ds = read_yolo_dataset(data)
    (note,) = [p for p in ds.problems if p.kind == "image_note"]
    assert (
        note.action == "image kept"
        and "trailing bytes after end of image" in note.detail
        and len(ds.records) == 6
    )
