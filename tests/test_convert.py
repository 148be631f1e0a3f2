"""``convert`` end to end: outputs the tools accept, lossless round trips, safe outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import make_fracatlas, save_image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fracdet.data.convert import ConvertConfig, ConvertResult, convert, detect_format, read_dataset
from fracdet.data.fracatlas import read_fracatlas
from fracdet.data.manifest import read_manifest
from fracdet.errors import ConfigError, DataError, OutputExistsError
from fracdet.fsutil import LinkMode


def test_fracatlas_to_yolo_coco_manifest(small_fracatlas, tmp_path):
    from pycocotools.coco import COCO
    from ultralytics.data.utils import check_det_dataset

    out = tmp_path / "out"
    result = convert(ConvertConfig(small_fracatlas, out, fractions=(0.5, 0.25, 0.25), seed=1))
    assert result.n_images == 12 and result.n_skipped == 0
    data = check_det_dataset(str(out / "data.yaml"))
    assert data["nc"] == 1 and Path(data["train"]).is_dir()
    coco_boxes = 0
    for split in ("train", "val", "test"):
        coco = COCO(str(out / "annotations" / f"instances_{split}.json"))
        coco_boxes += len(coco.getAnnIds())
        for image in coco.loadImgs(coco.getImgIds()):
            assert (out / "images" / split / image["file_name"]).is_file()
    assert coco_boxes == 5
    manifest = read_manifest(out / "manifest.csv")
    assert len(manifest) == 12 and all(r.path.is_file() for r in manifest)
    assert sum(len(r.boxes) for r in manifest) == 5
    report = json.loads((out / "convert_report.json").read_text())
    assert report["images_written"] == 12 and report["split"]["strategy"] == "grouped-stratified"
    # hard links by default: the same inode, nothing copied
    linked = out / "images" / manifest[0].split / manifest[0].image_id
    assert (
        os.stat(linked).st_ino
        == os.stat(
            small_fracatlas
            / "images"
            / ("Fractured" if manifest[0].label else "Non_fractured")
            / manifest[0].image_id
        ).st_ino
    )


def test_copy_and_symlink_modes(small_fracatlas, tmp_path):
    convert(ConvertConfig(small_fracatlas, tmp_path / "c", link=LinkMode.copy, targets=("yolo",)))
    convert(
        ConvertConfig(small_fracatlas, tmp_path / "s", link=LinkMode.symlink, targets=("yolo",))
    )
    copied = next((tmp_path / "c" / "images" / "train").iterdir())
    assert copied.stat().st_nlink == 1
    assert next((tmp_path / "s" / "images" / "train").iterdir()).is_symlink()


def test_sources_are_never_modified(small_fracatlas, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in small_fracatlas.rglob("*") if p.is_file()}
    convert(ConvertConfig(small_fracatlas, tmp_path / "out"))
    assert {p: p.stat().st_mtime_ns for p in small_fracatlas.rglob("*") if p.is_file()} == before


def test_existing_output_needs_overwrite(small_fracatlas, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("precious")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        convert(ConvertConfig(small_fracatlas, tmp_path / "out"))
    assert (tmp_path / "out" / "keep.txt").read_text() == "precious"
    convert(ConvertConfig(small_fracatlas, tmp_path / "out", overwrite=True))
    assert (
        not (tmp_path / "out" / "keep.txt").exists() and (tmp_path / "out" / "data.yaml").exists()
    )


def test_a_failure_leaves_no_partial_output(small_fracatlas, tmp_path, monkeypatch):
    import fracdet.data.convert as module

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(module, "write_yolo_labels", explode)
    with pytest.raises(RuntimeError):
        convert(ConvertConfig(small_fracatlas, tmp_path / "out"))
    assert list(tmp_path.iterdir()) == [small_fracatlas]


def test_nothing_usable_is_one_clear_error(tmp_path):
    root = tmp_path / "fa"
    for i in range(2):
        path = save_image(root / "images" / "Fractured" / f"X{i}.jpg", 20, 20)
        path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(
        DataError, match=r"nothing usable left: .*2 image_corrupt \(first: .*X0.jpg: "
    ):
        convert(ConvertConfig(root, tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_config_errors(small_fracatlas, tmp_path):
    with pytest.raises(ConfigError, match="unknown target"):
        ConvertConfig(small_fracatlas, tmp_path / "o", targets=("voc",))
    with pytest.raises(ConfigError, match="cannot share"):
        ConvertConfig(small_fracatlas, tmp_path / "o", targets=("yolo", "fracatlas"))
    with pytest.raises(ConfigError, match="must differ"):
        ConvertConfig(small_fracatlas, small_fracatlas)
    with pytest.raises(ConfigError, match="no official split"):
        convert(ConvertConfig(small_fracatlas, tmp_path / "o", split="official"))
    with pytest.raises(ConfigError, match="--official-only: .* has no official split"):
        convert(ConvertConfig(small_fracatlas, tmp_path / "o", official_only=True))
    with pytest.raises(ConfigError, match="official_only .* not random"):
        ConvertConfig(small_fracatlas, tmp_path / "o", split="random", official_only=True)


def test_official_only_keeps_the_official_split_alone(tmp_path):
    """The detector's data: the fractured images of the official split, split as published."""
    specs = [(f"F{i}.jpg", 30, 30, [(1, 1, 9, 9)]) for i in range(4)] + [
        (f"N{i}.jpg", 30, 30, []) for i in range(4)
    ]
    split = {"F0.jpg": "train", "F1.jpg": "train", "F2.jpg": "val", "F3.jpg": "test"}
    root = make_fracatlas(tmp_path / "fa", specs, split=split)
    result = convert(ConvertConfig(root, tmp_path / "det", official_only=True))
    assert result.n_images == 4 and result.split_counts == {
        s: {"not_fractured": 0, "fractured": n} for s, n in (("train", 2), ("val", 1), ("test", 1))
    }
    assert {r.image_id: r.split for r in read_manifest(tmp_path / "det" / "manifest.csv")} == split
    report = json.loads((tmp_path / "det" / "convert_report.json").read_text())
    assert report["problem_counts"]["not_in_official_split"] == 1 and report["images_skipped"] == 0
    everything = convert(
        ConvertConfig(root, tmp_path / "all")
    )  # without it: all 8, the intact ones split too
    assert (
        everything.n_images == 8
        and sum(c["not_fractured"] for c in everything.split_counts.values()) == 4
    )


def test_detect_format(small_fracatlas, tmp_path):
    assert detect_format(small_fracatlas) == "fracatlas"
    with pytest.raises(DataError, match="source not found"):
        detect_format(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="cannot tell the format"):
        detect_format(tmp_path / "empty")


def test_duplicate_stems_in_one_split_are_skipped(tmp_path):
    root = make_fracatlas(
        tmp_path / "fa",
        [("A.jpg", 30, 30, [(1, 1, 9, 9)]), ("A.png", 30, 30, [(1, 1, 9, 9)])],
        split={"A.jpg": "train", "A.png": "train"},
    )
    result = convert(ConvertConfig(root, tmp_path / "out"))
    assert result.n_images == 1 and result.problem_counts["duplicate_id"] == 1


def boxes_by_name(dataset):
    return {Path(r.image_id).name: sorted(b.as_list() for b in r.boxes) for r in dataset.records}


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_round_trip_fracatlas_yolo_coco_fracatlas(tmp_path_factory, data):
    """FracAtlas -> YOLO -> COCO -> FracAtlas keeps every box to within half a pixel."""
    tmp = tmp_path_factory.mktemp("rt")
    specs = []
    for i in range(data.draw(st.integers(1, 4))):
        w, h = data.draw(st.integers(8, 3000)), data.draw(st.integers(8, 3000))
        boxes = []
        for _ in range(data.draw(st.integers(0, 3))):
            x1, y1 = data.draw(st.floats(0, w - 2)), data.draw(st.floats(0, h - 2))
            boxes.append((x1, y1, data.draw(st.floats(x1 + 1, w)), data.draw(st.floats(y1 + 1, h))))
        specs.append((f"IMG{i:03d}.png", w, h, boxes))
    source = make_fracatlas(tmp / "fa", specs)
    original = read_fracatlas(source)
    convert(ConvertConfig(source, tmp / "yolo", targets=("yolo",)))
    convert(ConvertConfig(tmp / "yolo" / "data.yaml", tmp / "coco", targets=("coco",)))
    convert(ConvertConfig(tmp / "coco", tmp / "back", targets=("fracatlas",)))
    back = read_dataset(tmp / "back")
    expected, got = boxes_by_name(original), boxes_by_name(back)
    assert expected.keys() == got.keys()
    for name, boxes in expected.items():
        remaining = list(got[name])
        for box in boxes:
            match = next((b for b in remaining if b == pytest.approx(box, abs=0.5)), None)
            assert match is not None, f"{name}: {box} lost, left {remaining}"
            remaining.remove(match)
        assert not remaining, f"{name}: extra boxes {remaining}"


def test_fractured_image_without_box_stays_out_of_detection_outputs(tmp_path):
    root = make_fracatlas(
        tmp_path / "fa", [("A.jpg", 30, 30, [(1, 1, 9, 9)]), ("B.jpg", 30, 30, [])]
    )
    save_image(root / "images" / "Fractured" / "C.jpg", 30, 30)  # fractured, no box anywhere
    out = tmp_path / "out"
    convert(ConvertConfig(root, out, fractions=(1.0, 0.0, 0.0)))
    assert sorted(p.name for p in (out / "images" / "train").iterdir()) == ["A.jpg", "B.jpg"]
    manifest = {r.image_id: r for r in read_manifest(out / "manifest.csv")}
    assert (
        manifest["C.jpg"].label == 1
        and manifest["C.jpg"].path == (root / "images" / "Fractured" / "C.jpg").resolve()
    )
    report = json.loads((out / "convert_report.json").read_text())
    assert report["problem_counts"]["fractured_without_box"] == 1


def test_hard_link_across_file_systems_falls_back_to_copy(small_fracatlas, tmp_path, monkeypatch):
    import errno

    def no_link(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    convert(ConvertConfig(small_fracatlas, tmp_path / "out", targets=("yolo",)))
    report = json.loads((tmp_path / "out" / "convert_report.json").read_text())
    assert report["link_modes"] == {"copy": 12}


def test_result_line_counts_each_split_and_class(tmp_path):
    result = ConvertResult(
        tmp_path, 5, 2, {"train": {"fractured": 1, "non_fractured": 2}, "test": {"fractured": 2}}
    )
    assert (
        result.line()
        == f"5 images -> {tmp_path} (train: 1 fractured, 2 non_fractured; test: 2 fractured); "
        "2 skipped, see convert_report.json"
    )


def test_study_split_keeps_every_fractured_image_and_a_seeded_sample(tmp_path):
    """The robust-transfer study's set: all fractured + as many drawn non-fractured, 80/10/10."""
    specs = [
        (f"IMG{i:07d}.jpg", 40, 30, [(5.0, 5.0, 20.0, 20.0)] if i < 10 else []) for i in range(40)
    ]
    source = make_fracatlas(tmp_path / "fa", specs)
    result = convert(
        ConvertConfig(source, tmp_path / "a", split="study", seed=3, targets=("manifest",))
    )
    manifest = read_manifest(tmp_path / "a" / "manifest.csv")
    assert result.n_images == 20 and sum(r.label for r in manifest) == 10
    report = json.loads((tmp_path / "a" / "convert_report.json").read_text())
    split = report["split"]
    assert split["strategy"] == "study-sample+grouped-stratified" and split["fractions"] == {
        "train": 0.8,
        "val": 0.1,
        "test": 0.1,
    }
    assert split["study_sample"] == {
        "fractured": 10,
        "non_fractured_drawn": 10,
        "non_fractured_available": 30,
        "negative_ratio": 1.0,
    }
    counts = split["counts_per_split_and_class"]
    assert [counts[s]["fractured"] for s in ("train", "val", "test")] == [8, 1, 1]
    assert [counts[s]["not_fractured"] for s in ("train", "val", "test")] == [8, 1, 1]
    # seeded: the same draw again, another seed another draw; a ratio draws that many per fractured
    # image
    again = convert(
        ConvertConfig(source, tmp_path / "b", split="study", seed=3, targets=("manifest",))
    )
    assert again.n_images == 20
    same = {r.image_id for r in read_manifest(tmp_path / "b" / "manifest.csv")}
    assert same == {r.image_id for r in manifest}
    convert(ConvertConfig(source, tmp_path / "c", split="study", seed=4, targets=("manifest",)))
    assert {r.image_id for r in read_manifest(tmp_path / "c" / "manifest.csv")} != same
    half = convert(
        ConvertConfig(
            source, tmp_path / "d", split="study", negative_ratio=0.5, targets=("manifest",)
        )
    )
    assert half.n_images == 15
    with pytest.raises(ConfigError, match="negative_ratio must be > 0"):
        ConvertConfig(source, tmp_path / "e", split="study", negative_ratio=0)
