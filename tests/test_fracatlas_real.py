"""End to end on the real FracAtlas sample in ../shared/data (skipped when it is absent)."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
from conftest import REAL_FRACATLAS

from fracdet.data.convert import ConvertConfig, convert
from fracdet.data.images import load_image, read_image_info
from fracdet.data.manifest import read_manifest

PADDED = ("IMG0004027.jpg", "IMG0004214.jpg")

pytestmark = [
    pytest.mark.fracatlas,
    pytest.mark.skipif(not REAL_FRACATLAS.is_dir(), reason="real FracAtlas sample not present"),
]


def test_convert_real_fracatlas(tmp_path):
    from pycocotools.coco import COCO
    from ultralytics.data.utils import check_det_dataset

    out = tmp_path / "fa"
    result = convert(ConvertConfig(REAL_FRACATLAS, out))
    report = json.loads((out / "convert_report.json").read_text())
    problems = report["problems"]
    # The sample holds 717 + 717 images, all kept. Two Non_fractured JPEGs carry ~1.2 KiB of
    # padding after their end-of-image marker (so the cheap tail check misses it) and decode
    # completely: kept, with a note.
    assert result.n_images == 1434 and result.n_skipped == 0
    assert report["images_written"] == 1434 and report["images_skipped"] == 0
    assert not [p for p in problems if p["action"] == "image skipped"]
    notes = {
        p["file"].rsplit("/", 1)[1]: p["detail"] for p in problems if p["kind"] == "image_note"
    }
    assert sorted(notes) == [*PADDED] and all(
        d.startswith("trailing bytes after end of image") for d in notes.values()
    )
    assert {p.name for p in (out / "images").rglob("*.jpg")} >= set(PADDED)
    # IMG0003298: CSV says not fractured, folder and box say fractured -> fractured, conflict
    # reported.
    conflict = [p for p in problems if p["kind"] == "label_conflict"]
    assert len(conflict) == 1 and "IMG0003298.jpg" in conflict[0]["file"]
    # Annotation files cover all 4083 images; 2649 are not on disk.
    assert report["problem_counts"]["annotation_without_image"] == 2649
    assert report["boxes_written"] == 922
    # Official split kept for fractured images (574/82/61); negatives split in the same proportions.
    counts = report["split"]["counts_per_split_and_class"]
    assert (
        counts["train"]["fractured"],
        counts["val"]["fractured"],
        counts["test"]["fractured"],
    ) == (574, 82, 61)
    assert sum(c["not_fractured"] for c in counts.values()) == 717
    # EXIF-rotated IMG0002628 is stored 373x454 but annotated (and written) as 454x373.
    coco = COCO(str(out / "annotations" / "instances_train.json"))
    sizes = {i["file_name"]: (i["width"], i["height"]) for i in coco.loadImgs(coco.getImgIds())}
    split_files = {
        s: COCO(str(out / "annotations" / f"instances_{s}.json")) for s in ("val", "test")
    }
    for c in split_files.values():
        sizes.update({i["file_name"]: (i["width"], i["height"]) for i in c.loadImgs(c.getImgIds())})
    assert sizes["IMG0002628.jpg"] == (454, 373)
    assert check_det_dataset(str(out / "data.yaml"))["nc"] == 1


@pytest.mark.parametrize("name", PADDED)
def test_padded_real_jpegs_pass_the_full_check_too(name):
    path = REAL_FRACATLAS / "images" / "Non_fractured" / name
    info = read_image_info(path, full=True)
    assert (info.width, info.height) == (373, 454) and info.note.startswith(
        "trailing bytes after end of image"
    )
    assert load_image(path).shape == (454, 373)


def _slice_of_the_sample(root: Path) -> tuple[Path, list[str]]:
    """40 images of the sample as a FracAtlas tree of links: 20 fractured (official split 8 / 4 / 8,
    two hardware images in each part where there are some) and 20 intact, the two padded JPEGs
    among them."""
    rows = {r["image_id"]: r for r in csv.DictReader((REAL_FRACATLAS / "dataset.csv").open())}
    official = {
        s: sorted(
            r["image_id"]
            for r in csv.DictReader(
                (REAL_FRACATLAS / "Utilities" / "Fracture Split" / f"{s}.csv").open()
            )
        )
        for s in ("train", "valid", "test")
    }

    def pick(ids: list[str], n: int) -> list[str]:
        hardware = [i for i in ids if rows[i]["hardware"] == "1"][:2]
        return (hardware + [i for i in ids if i not in hardware])[:n]

    fractured = pick(official["train"], 8) + pick(official["valid"], 4) + pick(official["test"], 8)
    intact = [
        *PADDED,
        *[
            p.name
            for p in sorted((REAL_FRACATLAS / "images" / "Non_fractured").iterdir())
            if p.name not in PADDED
        ][:18],
    ]
    dest = root / "FracAtlas"
    for folder, names in (("Fractured", fractured), ("Non_fractured", intact)):
        (dest / "images" / folder).mkdir(parents=True)
        for name in names:
            (dest / "images" / folder / name).symlink_to(REAL_FRACATLAS / "images" / folder / name)
    for name in ("dataset.csv", "Annotations", "Utilities"):
        (dest / name).symlink_to(REAL_FRACATLAS / name)
    return dest, fractured


def test_the_study_on_a_40_image_slice(tmp_path):
    """`fracdet run` on real radiographs, tiny sizes and one epoch: every stage chains, the padded
    JPEGs stay in, the detector gets the official split, the audit splits by hardware."""
    from conftest import TINY_STUDY as TINY

    from fracdet.study import StudyConfig, run_study

    source, _ = _slice_of_the_sample(tmp_path)
    started = time.perf_counter()
    summary = run_study(
        StudyConfig(source=source, output=tmp_path / "run", profile="tiny", profiles={"tiny": TINY})
    )
    seconds = time.perf_counter() - started
    out = tmp_path / "run"
    numbers = json.loads((out / "summary.json").read_text())["numbers"]
    assert numbers["splits"]["data-det"] == {
        "train": {"not_fractured": 0, "fractured": 8},
        "val": {"not_fractured": 0, "fractured": 4},
        "test": {"not_fractured": 0, "fractured": 8},
    }
    assert sum(sum(c.values()) for c in numbers["splits"]["data"].values()) == 40
    # the two JPEGs with bytes after their end marker are valid images: kept, with a note
    manifest = {r.image_id for r in read_manifest(out / "data" / "dataset" / "manifest.csv")}
    assert set(PADDED) <= manifest and sorted(Path(n["file"]).name for n in numbers["notes"]) == [
        *PADDED
    ]
    assert (
        numbers["detector"]["n_images"] == 8
        and numbers["classifiers"]["standard"]["n"] == numbers["classifiers"]["pgd"]["n"]
    )
    hardware = numbers["groups"]["hardware"]
    assert (
        hardware["values"] == ["0", "1"] and hardware["models"]["standard"]["1"]["n_positive"] == 2
    )
    assert (
        "| fracdet: tiny profile | 8 |" in (out / "comparison.md").read_text()
        and summary.index.is_file()
    )
    assert seconds < 300, (
        f"the slice took {seconds:.0f} s"
    )  # about a minute on 2 cores; generous for a shared machine
