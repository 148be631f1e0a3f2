"""End to end on the real FracAtlas sample in ../shared/data (skipped when it is absent)."""

from __future__ import annotations

import json

import pytest
from conftest import REAL_FRACATLAS

from fracdet.data.convert import ConvertConfig, convert

pytestmark = [pytest.mark.fracatlas, pytest.mark.skipif(not REAL_FRACATLAS.is_dir(), reason="real FracAtlas sample not present")]


def test_convert_real_fracatlas(tmp_path):
    from pycocotools.coco import COCO
    from ultralytics.data.utils import check_det_dataset

    out = tmp_path / "fa"
    result = convert(ConvertConfig(REAL_FRACATLAS, out))
    report = json.loads((out / "convert_report.json").read_text())
    problems = report["problems"]
    # The sample holds 717 + 717 images; two Non_fractured JPEGs are cut at 16 KiB (no EOI).
    assert result.n_images == 1432 and result.n_skipped == 2
    assert sorted(p["file"].rsplit("/", 1)[1] for p in problems if p["kind"] == "image_corrupt") == ["IMG0004027.jpg", "IMG0004214.jpg"]
    # IMG0003298: CSV says not fractured, folder and box say fractured -> fractured, conflict reported.
    conflict = [p for p in problems if p["kind"] == "label_conflict"]
    assert len(conflict) == 1 and "IMG0003298.jpg" in conflict[0]["file"]
    # Annotation files cover all 4083 images; 2649 are not on disk.
    assert report["problem_counts"]["annotation_without_image"] == 2649
    assert report["boxes_written"] == 922
    # Official split kept for fractured images (574/82/61); negatives split in the same proportions.
    counts = report["split"]["counts_per_split_and_class"]
    assert (counts["train"]["fractured"], counts["val"]["fractured"], counts["test"]["fractured"]) == (574, 82, 61)
    assert sum(c["not_fractured"] for c in counts.values()) == 715
    # EXIF-rotated IMG0002628 is stored 373x454 but annotated (and written) as 454x373.
    coco = COCO(str(out / "annotations" / "instances_train.json"))
    sizes = {i["file_name"]: (i["width"], i["height"]) for i in coco.loadImgs(coco.getImgIds())}
    split_files = {s: COCO(str(out / "annotations" / f"instances_{s}.json")) for s in ("val", "test")}
    for c in split_files.values():
        sizes.update({i["file_name"]: (i["width"], i["height"]) for i in c.loadImgs(c.getImgIds())})
    assert sizes["IMG0002628.jpg"] == (454, 373)
    assert check_det_dataset(str(out / "data.yaml"))["nc"] == 1
