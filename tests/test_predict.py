"""``fracdet predict`` and ``fracdet merge``: both tracks over a mixed folder, shards, resume."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import make_tiny_detector, save_image
from PIL import Image
from test_images import make_dicom
from typer.testing import CliRunner

from fracdet.cli import app
from fracdet.cls.checkpoint import ClassifierMeta, load_classifier, save_classifier
from fracdet.cls.model import create_classifier
from fracdet.data.datasets import build_transform
from fracdet.data.formats import Box
from fracdet.data.geometry import content_region
from fracdet.data.images import load_image
from fracdet.errors import ConfigError, DataError, OutputExistsError
from fracdet.explain import gradcam_target
from fracdet.predict import (
    PredictConfig,
    list_inputs,
    merge_outputs,
    parse_shard,
    predict_folder,
    shard_items,
)
from fracdet.predict.batches import to_original_frame
from fracdet.predict.decode import Decoded, to_uint8

DET_IMGSZ = 64


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A tiny resnet10t classifier (binary, 3-class); an untrained 1-class YOLOv8n (draws boxes)."""
    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    paths = {}
    for key, names in (("cls", ("not_fractured", "fractured")), ("cls3", ("hand", "leg", "hip"))):
        model = create_classifier("resnet10t", num_outputs=1 if len(names) == 2 else len(names))
        meta = ClassifierMeta(
            backbone="resnet10t",
            class_names=names,
            image_size=32,
            mean=tuple(model.mean.flatten().tolist()),
            std=tuple(model.std.flatten().tolist()),
            threshold=0.5,
            temperature=1.5,
        )
        save_classifier(model, meta, root / key / "best.safetensors")
        paths[key] = root / key
    paths["det"] = make_tiny_detector(root, seed=None)
    return paths


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> Path:
    """JPEG, 8/16-bit PNG, DICOM (MONOCHROME1/2, suffix-less), broken files, a .txt, a subfolder."""
    root = tmp_path_factory.mktemp("mixed") / "images"
    save_image(root / "a_big.jpg", 200, 150, seed=1)
    save_image(root / "b.png", 40, 60, seed=2)
    Image.fromarray(np.random.default_rng(3).integers(0, 65535, (48, 64), dtype=np.uint16)).save(
        root / "c16.png"
    )
    dicom = np.random.default_rng(4).integers(0, 4095, (70, 50)).astype(np.uint16)
    make_dicom(root / "d_mono2.dcm", dicom)
    make_dicom(root / "e_mono1.dcm", dicom, photometric="MONOCHROME1", window=(2000, 4000))
    make_dicom(root / "f_noext", dicom)
    make_dicom(root / "g_nopixels.dcm", None)
    (root / "h_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.jpg").write_bytes(b"ignored")
    save_image(root / "sub" / "deeper" / "i.jpg", 90, 120, seed=5)
    save_image(root / "sub" / "j.png", 64, 64, seed=6)
    return root


def run(folder: Path, out: Path, checkpoints: dict[str, Path], **options) -> object:
    options = {
        "cls": checkpoints["cls"],
        "det": checkpoints["det"],
        "workers": 0,
        "batch_size": 4,
        "det_imgsz": DET_IMGSZ,
        "device": "cpu",
        "precision": "fp32",
        **options,
    }
    return predict_folder(PredictConfig(folder=folder, output=out, **options))


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def reference_probabilities(folder: Path, names: list[str], cls_dir: Path) -> dict[str, np.ndarray]:
    """What the classifier says of each image alone.

    Training transform, one forward, temperature, sigmoid/softmax by hand.
    """
    model, meta = load_classifier(cls_dir)
    transform = build_transform(meta.image_size)
    out = {}
    for name in names:
        square = np.clip(transform(image=load_image(folder / name, channels=1))["image"], 0.0, 1.0)
        with torch.no_grad():
            z = (
                model(torch.from_numpy(square)[None, None].float()).double().numpy()[0]
                / meta.temperature
            )
        out[name] = (
            1.0 / (1.0 + np.exp(-z))
            if meta.binary
            else np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        )
    return out


def reference_detections(
    folder: Path, names: list[str], det_pt: Path
) -> dict[str, list[tuple[list[float], float]]]:
    """What the detector finds in each image alone.

    Grey uint8 shrunk to DET_IMGSZ, boxes scaled back and clipped, COCO xywh.
    """
    import cv2
    from ultralytics import YOLO

    from fracdet.det.model import ultralytics_offline

    detector = YOLO(str(det_pt))
    out = {}
    for name in names:
        grey = (np.clip(load_image(folder / name, channels=1), 0.0, 1.0) * 255.0 + 0.5).astype(
            np.uint8
        )
        h, w = grey.shape
        scale = DET_IMGSZ / max(h, w)
        small = (
            grey
            if scale >= 1
            else cv2.resize(
                grey,
                (max(1, round(w * scale)), max(1, round(h * scale))),
                interpolation=cv2.INTER_AREA,
            )
        )
        with ultralytics_offline():
            result = detector.predict(
                small, imgsz=DET_IMGSZ, conf=0.25, iou=0.7, rect=False, verbose=False, device="cpu"
            )[0]
        sx, sy = w / small.shape[1], h / small.shape[0]
        found = []
        for (ax, ay, bx, by), score in zip(
            result.boxes.xyxy.tolist(), result.boxes.conf.tolist(), strict=True
        ):
            # Corners in order: this untrained detector draws some boxes inside out.
            x1, x2 = (min(max(v * sx, 0.0), w) for v in sorted((ax, bx)))
            y1, y2 = (min(max(v * sy, 0.0), h) for v in sorted((ay, by)))
            if x2 > x1 and y2 > y1:
                found.append(([x1, y1, x2 - x1, y2 - y1], score))
        out[name] = found
    return out


GOOD = [
    "a_big.jpg",
    "b.png",
    "c16.png",
    "d_mono2.dcm",
    "e_mono1.dcm",
    "f_noext",
    "sub/deeper/i.jpg",
    "sub/j.png",
]
BAD = {
    "g_nopixels.dcm": "DICOM without pixel data",
    "h_corrupt.jpg": "cannot decode|not an image|truncated",
}


# --- the mixed folder, both tracks ---------------------------------------------------------


def test_mixed_folder_every_image_gets_a_row(checkpoints, mixed_folder, tmp_path):
    summary = run(mixed_folder, tmp_path / "out", checkpoints, workers=2)
    rows = read_csv(summary.predictions)
    assert [r["path"] for r in rows] == sorted(GOOD + list(BAD))
    assert [int(r["image_id"]) for r in rows] == list(range(1, len(rows) + 1))
    assert (summary.n_images, summary.n_ok, summary.n_skipped, summary.n_not_images) == (
        10,
        8,
        2,
        1,
    )
    by_path = {r["path"]: r for r in rows}
    import re

    for name, reason in BAD.items():
        assert by_path[name]["status"] == "skipped" and re.search(
            reason, by_path[name]["reason"]
        ), by_path[name]
    sizes = {
        "a_big.jpg": (200, 150),
        "b.png": (40, 60),
        "c16.png": (64, 48),
        "d_mono2.dcm": (50, 70),
        "e_mono1.dcm": (50, 70),
        "f_noext": (50, 70),
        "sub/deeper/i.jpg": (90, 120),
        "sub/j.png": (64, 64),
    }
    # Batched, in workers, with both tracks: each image still gets exactly what the models say
    # of it alone.
    expected_p = reference_probabilities(mixed_folder, GOOD, checkpoints["cls"])
    expected_boxes = reference_detections(mixed_folder, GOOD, checkpoints["det"])
    distinct = [
        name for name in GOOD if name != "f_noext"
    ]  # f_noext is d_mono2.dcm without its suffix
    assert len({round(float(expected_p[name]), 6) for name in distinct}) == len(distinct), (
        "the images must be told apart"
    )
    assert len({len(found) for found in expected_boxes.values()}) > 1, (
        "box counts must differ between images"
    )
    for name in GOOD:
        row = by_path[name]
        assert row["status"] == "ok" and row["reason"] == ""
        assert (int(row["width"]), int(row["height"])) == sizes[name]
        assert float(row["fracture_probability"]) == pytest.approx(
            float(expected_p[name]), abs=1e-6
        ), name
        assert row["fracture_decision"] == (
            "fractured" if expected_p[name] >= 0.5 else "not_fractured"
        )
        assert int(row["n_boxes"]) == len(expected_boxes[name]), name
        assert float(row["max_box_score"]) == pytest.approx(
            max((s for _, s in expected_boxes[name]), default=0.0), abs=1e-5
        )

    images = json.loads(summary.images.read_text())
    assert [i["file_name"] for i in images["images"]] == GOOD
    assert images["categories"] == [{"id": 1, "name": "fractured"}]
    results = json.loads(summary.detections.read_text())
    assert results, "the test detector draws boxes"
    frame = {i["id"]: (i["width"], i["height"]) for i in images["images"]}
    for r in results:
        assert set(r) == {"image_id", "category_id", "bbox", "score"} and r["category_id"] == 1
        x, y, w, h = r["bbox"]
        width, height = frame[r["image_id"]]
        assert (
            x >= 0
            and y >= 0
            and w > 0
            and h > 0
            and x + w <= width + 1e-3
            and y + h <= height + 1e-3
        )
    per_image = {}
    for r in results:
        per_image.setdefault(r["image_id"], []).append(r["score"])
    id_of = {r["path"]: int(r["image_id"]) for r in rows}
    for name in GOOD:
        mine = [r for r in results if r["image_id"] == id_of[name]]
        assert [r["bbox"] for r in mine] == [
            pytest.approx(b, abs=1e-2) for b, _ in expected_boxes[name]
        ], name
        assert [r["score"] for r in mine] == [
            pytest.approx(s, abs=1e-5) for _, s in expected_boxes[name]
        ], name
    for row in rows:
        if row["status"] == "ok":
            scores = per_image.get(int(row["image_id"]), [])
            assert int(row["n_boxes"]) == len(scores)
            assert float(row["max_box_score"]) == pytest.approx(max(scores, default=0.0), abs=1e-6)

    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {**images, "annotations": []}
        gt.createIndex()
        loaded = gt.loadRes(results)
    assert len(loaded.getAnnIds()) == len(results)

    report = json.loads(summary.report.read_text())
    assert report["status"] == "complete" and report["seed"] == 0 and report["shard"] is None
    assert report["not_images"] == [
        {"path": "notes.txt", "reason": "not an image (suffix .txt, no DICOM header)"}
    ]
    assert {s["path"] for s in report["skipped"]} == set(BAD)
    assert set(report["checkpoints"]["cls"]["sha256"]) == {"best.safetensors", "best.json"}
    assert len(report["checkpoints"]["det"]["sha256"]["tiny_det.pt"]) == 64
    assert report["counts"]["n_boxes"] == len(results) and report["images_per_s"] > 0
    assert "torch" in report["versions"]
    assert not (summary.output / "overlays").exists()


def test_boxes_are_scaled_back_to_the_original_frame():
    item = Decoded(1, "x.png", width=400, height=300)
    # The detector saw the image shrunk to 64 x 48: a box there is 6.25x larger in the original.
    boxes, scores = to_original_frame(
        ([Box(8, 4, 16, 12), Box(60, 40, 70, 50), Box(64, 10, 64, 20)], [0.9, 0.5, 0.4]),
        item,
        (48, 64),
    )
    assert boxes[0] == Box(50.0, 25.0, 100.0, 75.0)
    assert boxes[1] == Box(375.0, 250.0, 400.0, 300.0)  # clipped to the image
    assert scores == [0.9, 0.5]  # the zero-width box is dropped


@pytest.mark.parametrize(
    ("height", "width", "size"),
    [(50, 37, 32), (37, 50, 32), (101, 1000, 224), (31, 30, 32), (7, 500, 33)],
)
def test_content_region_matches_the_training_transform(height, width, size):
    square = build_transform(size)(image=np.full((height, width), 2.0, np.float32))["image"]
    ys, xs = np.nonzero(square > 1.0)
    top, left, h, w = content_region(height, width, size)
    assert (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) == (top, top + h, left, left + w)


def test_listing_and_sharding(mixed_folder, tmp_path):
    images, others, _ = list_inputs(mixed_folder)
    assert images == sorted(GOOD + list(BAD)) and [o["path"] for o in others] == ["notes.txt"]
    flat, _, _ = list_inputs(mixed_folder, recursive=False)
    assert "sub/j.png" not in flat and "a_big.jpg" in flat
    inside = mixed_folder / "sub"
    assert "sub/j.png" not in list_inputs(mixed_folder, exclude=inside)[0]
    assert parse_shard("2/3") == (2, 3) and parse_shard(None) is None
    for bad in ("0/2", "3/2", "a/b", "1", "1/2/3", "-1/2"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)
    paths = [f"{i}.jpg" for i in range(7)]
    shards = [shard_items(paths, (k, 3)) for k in (1, 2, 3)]
    assert shards[1] == [(2, "1.jpg"), (5, "4.jpg")]
    assert sorted(i for s in shards for i in s) == shard_items(paths, None)


# --- shards and merge ----------------------------------------------------------------------


def _assert_same_outputs(a: Path, b: Path) -> None:
    rows_a, rows_b = read_csv(a / "predictions.csv"), read_csv(b / "predictions.csv")
    assert len(rows_a) == len(rows_b)
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for key in ra:
            if key in ("fracture_probability", "max_box_score") and ra[key]:
                assert float(ra[key]) == pytest.approx(float(rb[key]), abs=1e-6), (key, ra, rb)
            else:
                assert ra[key] == rb[key], (key, ra, rb)
    assert json.loads((a / "images.json").read_text()) == json.loads(
        (b / "images.json").read_text()
    )
    det_a, det_b = (
        json.loads((a / "detections.json").read_text()),
        json.loads((b / "detections.json").read_text()),
    )
    assert [d["image_id"] for d in det_a] == [d["image_id"] for d in det_b]
    for da, db in zip(det_a, det_b, strict=True):
        assert da["score"] == pytest.approx(db["score"], abs=1e-5)
        assert da["bbox"] == pytest.approx(db["bbox"], abs=1e-2)


def test_shards_merged_equal_a_full_run(checkpoints, mixed_folder, tmp_path):
    full = run(mixed_folder, tmp_path / "full", checkpoints, batch_size=3)
    one = run(mixed_folder, tmp_path / "s1", checkpoints, shard="1/2", overlays=True)
    two = run(mixed_folder, tmp_path / "s2", checkpoints, shard="2/2", overlays=True)
    assert one.n_images + two.n_images == full.n_images
    assert {int(r["image_id"]) for r in read_csv(one.predictions)} == {1, 3, 5, 7, 9}
    merged = merge_outputs([tmp_path / "s2", tmp_path / "s1"], tmp_path / "merged")
    assert (merged.n_shards, merged.n_images, merged.missing_shards) == (2, full.n_images, ())
    _assert_same_outputs(tmp_path / "full", tmp_path / "merged")
    overlays = sorted(
        p.relative_to(tmp_path / "merged" / "overlays").as_posix()
        for p in (tmp_path / "merged" / "overlays").rglob("*.png")
    )
    assert overlays == [f"{name}.png" for name in GOOD]
    report = json.loads((tmp_path / "merged" / "predict_report.json").read_text())
    assert report["shards"] == ["2/2", "1/2"] and {s["path"] for s in report["skipped"]} == set(BAD)

    with pytest.raises(OutputExistsError):
        merge_outputs([tmp_path / "s1", tmp_path / "s2"], tmp_path / "merged")
    with pytest.raises(DataError, match="image id 1 .* is in"):
        merge_outputs([tmp_path / "s1", tmp_path / "s1"], tmp_path / "dup")
    partial = merge_outputs([tmp_path / "s1"], tmp_path / "partial")
    assert partial.missing_shards == ("2/2",)
    other = run(mixed_folder, tmp_path / "other", checkpoints, shard="2/2", cls=checkpoints["cls3"])
    with pytest.raises(DataError, match="another classifier checkpoint"):
        merge_outputs([tmp_path / "s1", other.output], tmp_path / "mixed_ckpt")
    assert not (tmp_path / "dup").exists() and not (tmp_path / "mixed_ckpt").exists()


def test_merge_refuses_what_is_not_a_finished_shard(checkpoints, mixed_folder, tmp_path):
    done = run(mixed_folder, tmp_path / "done", checkpoints, shard="1/2", det=None).output
    with pytest.raises(ConfigError, match="at least one shard"):
        merge_outputs([], tmp_path / "m")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a fracdet predict output") as info:
        merge_outputs([done, tmp_path / "empty"], tmp_path / "m")
    assert info.value.path == tmp_path / "empty"
    cases = {
        "garbled": (
            lambda d: (d / "predict_report.json").write_text("{not json"),
            "unreadable predict_report.json",
        ),
        "running": (
            lambda d: (d / "predict_report.json").write_text(json.dumps({"status": "running"})),
            "did not finish: rerun it with --resume",
        ),
        "no_images": (lambda d: (d / "images.json").unlink(), "images.json is missing"),
        "no_rows": (lambda d: (d / "predictions.csv").unlink(), "predictions.csv is missing"),
    }
    for name, (spoil, message) in cases.items():
        shard = tmp_path / name
        shutil.copytree(done, shard)
        spoil(shard)
        with pytest.raises(DataError, match=message):
            merge_outputs([shard], tmp_path / "m")
    assert not (tmp_path / "m").exists()


# --- resume --------------------------------------------------------------------------------


def test_resume_redoes_only_the_missing_images(checkpoints, mixed_folder, tmp_path):
    full = run(mixed_folder, tmp_path / "full", checkpoints)
    with pytest.raises(OutputExistsError, match="--resume .* --overwrite"):
        run(mixed_folder, tmp_path / "full", checkpoints)

    # An interrupted run: three rows kept, half a row cut off mid-write, a detection journal
    # line for an image whose row never made it.
    out = tmp_path / "interrupted"
    shutil.copytree(tmp_path / "full", out)
    lines = (out / "predictions.csv").read_text().splitlines(keepends=True)
    (out / "predictions.csv").write_text("".join(lines[:4]) + lines[4][:12])
    report = json.loads((out / "predict_report.json").read_text())
    (out / "predict_report.json").write_text(json.dumps({**report, "status": "running"}))
    for name in ("detections.json", "images.json"):
        (out / name).unlink()
    resumed = run(mixed_folder, out, checkpoints, resume=True)
    assert (resumed.n_resumed, resumed.n_processed, resumed.n_images) == (
        3,
        full.n_images - 3,
        full.n_images,
    )
    _assert_same_outputs(tmp_path / "full", out)
    assert json.loads((out / "predict_report.json").read_text())["status"] == "complete"

    again = run(mixed_folder, out, checkpoints, resume=True)  # nothing left to do
    assert (again.n_processed, again.n_resumed) == (0, full.n_images)
    with pytest.raises(ConfigError, match="cannot resume.*det_options"):
        run(mixed_folder, out, checkpoints, resume=True, det_conf=0.5)
    replaced = run(mixed_folder, out, checkpoints, overwrite=True, det=None)
    assert replaced.detections is None and not (out / "detections.json").exists()
    assert read_csv(out / "predictions.csv")[0]["n_boxes"] == ""


def test_resume_after_files_arrive_and_go(checkpoints, mixed_folder, tmp_path):
    folder = tmp_path / "images"
    shutil.copytree(mixed_folder, folder)
    (folder / "a_big.jpg").rename(tmp_path / "a_big.jpg")
    save_image(folder / "zz_gone.png", 30, 30, seed=9)
    run(folder, tmp_path / "out", checkpoints, overlays=True)
    # A file that sorts first arrives late (every id moves up by one) and one disappears.
    (tmp_path / "a_big.jpg").rename(folder / "a_big.jpg")
    (folder / "zz_gone.png").unlink()
    resumed = run(folder, tmp_path / "out", checkpoints, overlays=True, resume=True)
    assert (resumed.n_processed, resumed.n_resumed) == (1, 9)
    assert not (tmp_path / "out" / "overlays" / "zz_gone.png.png").exists()
    run(folder, tmp_path / "full", checkpoints)
    _assert_same_outputs(tmp_path / "full", tmp_path / "out")


# --- overlays and Grad-CAM -----------------------------------------------------------------


def test_overlays_with_gradcam(checkpoints, tmp_path):
    folder = tmp_path / "images"
    save_image(folder / "big.png", 1500, 1200, seed=1)
    save_image(folder / "sub" / "small.jpg", 50, 40, seed=2)
    summary = run(folder, tmp_path / "out", checkpoints, gradcam=True)
    assert summary.overlays == tmp_path / "out" / "overlays"
    big = np.asarray(Image.open(summary.overlays / "big.png.png"))
    small = np.asarray(Image.open(summary.overlays / "sub" / "small.jpg.png"))
    assert big.shape == (819, 1024, 3)  # long side capped at 1024, aspect kept
    assert small.shape == (40, 50, 3)

    plain = run(folder, tmp_path / "plain", checkpoints, overlays=True, cls=None)
    drawn = np.asarray(Image.open(plain.overlays / "big.png.png")).astype(int)
    # Without a classifier: the image itself (shrunk without aliasing), red boxes drawn over it.
    expected = cv2.resize(
        to_uint8(load_image(folder / "big.png", channels=1)),
        (1024, 819),
        interpolation=cv2.INTER_AREA,
    ).astype(int)
    grey = (drawn[..., 0] == drawn[..., 1]) & (drawn[..., 1] == drawn[..., 2])
    assert grey.mean() > 0.9 and np.array_equal(drawn[..., 0][grey], expected[grey])
    assert ((drawn[..., 0] > 200) & (drawn[..., 2] < 50))[
        ~grey
    ].mean() > 0.5  # what is not the image is mostly box red
    with pytest.raises(ConfigError, match="--gradcam explains the classifier"):
        run(folder, tmp_path / "nocls", checkpoints, cls=None, gradcam=True)


class _Gate(torch.nn.Module):
    """Multiplies the image by a fixed mask (and a learnable 1, so that gradients flow)."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)
        self.weight = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask * self.weight


class RegionNet(torch.nn.Module):
    """A binary classifier whose fracture logit is the mean brightness of one region, minus 0.5.

    Its only feature map (``features``, named in ``feature_info`` like a timm backbone's last
    stage) is the image times the region's mask, so Grad-CAM can be hot there and nowhere else.
    """

    def __init__(self, size: int, rows: slice, cols: slice) -> None:
        super().__init__()
        mask = torch.zeros(1, 1, size, size)
        mask[..., rows, cols] = 1.0
        self.features = _Gate(mask)
        self.feature_info = [{"module": "features", "num_chs": 1}]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).sum(dim=(1, 2, 3)) / self.features.mask.sum() - 0.5


@pytest.mark.parametrize(
    ("quadrant", "rows", "cols"),
    [("top-right", slice(0, 16), slice(16, 32)), ("bottom-left", slice(16, 32), slice(0, 16))],
)
def test_gradcam_overlay_is_hot_where_the_classifier_looks(
    checkpoints, tmp_path, monkeypatch, quadrant, rows, cols
):
    """A 400 x 300 grey image letterboxed into the 32 px square fills rows 4-28: the model frame's
    quadrant maps back onto the same quadrant of the original image, and the overlay must be hot
    (red: R > B in the JET colour map) there and cold (blue) in the other three."""
    import fracdet.cls.checkpoint

    meta = ClassifierMeta(
        backbone="region",
        class_names=("not_fractured", "fractured"),
        image_size=32,
        mean=(0.0,),
        std=(1.0,),
    )
    monkeypatch.setattr(
        fracdet.cls.checkpoint,
        "load_classifier",
        lambda path, device="cpu", **_: (RegionNet(32, rows, cols).to(device).eval(), meta),
    )
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.full((300, 400), 200, np.uint8)).save(folder / "grey.png")
    assert content_region(300, 400, 32) == (4, 0, 24, 32)
    summary = run(folder, tmp_path / "out", checkpoints, det=None, gradcam=True)

    # The region holds 12 content rows of 16 (4 are padding): the classifier's answer is known too.
    row = read_csv(summary.predictions)[0]
    assert float(row["fracture_probability"]) == pytest.approx(
        1.0 / (1.0 + np.exp(-(0.75 * 200 / 255 - 0.5))), abs=1e-5
    )
    overlay = np.asarray(Image.open(summary.overlays / "grey.png.png")).astype(int)
    assert overlay.shape == (300, 400, 3)
    heat = overlay[..., 0] - overlay[..., 2]  # R - B: +51 where the map is 1, -51 where it is 0
    centres = {
        "top-left": (75, 100),
        "top-right": (75, 300),
        "bottom-left": (225, 100),
        "bottom-right": (225, 300),
    }
    for name, (y, x) in centres.items():
        patch = heat[
            y - 40 : y + 40, x - 40 : x + 40
        ]  # clear of the quadrant edges and of the label
        if name == quadrant:
            assert patch.min() > 40, (name, patch.min())
        else:
            assert patch.max() < -40, (name, patch.max())
    assert (heat > 0).mean() == pytest.approx(
        0.25, abs=0.03
    )  # one quadrant (and the small label) is hot


def test_gradcam_refuses_backbones_without_a_feature_map():
    class Flat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 1)
            self.feature_info = [{"module": "fc", "num_chs": 1}]

        def forward(self, x):
            return self.fc(x.mean(dim=(2, 3)).expand(-1, 4))

    with pytest.raises(ConfigError, match="supports CNN and ViT backbones"):
        gradcam_target(Flat(), 8, "flat")
    with pytest.raises(ConfigError, match="feature_info"):
        gradcam_target(torch.nn.Conv2d(1, 1, 1), 8, "bare")


def test_multiclass_classifier_writes_class_probabilities(checkpoints, mixed_folder, tmp_path):
    summary = run(mixed_folder, tmp_path / "out", checkpoints, cls=checkpoints["cls3"], det=None)
    rows = read_csv(summary.predictions)
    assert list(rows[0]) == [
        "image_id",
        "path",
        "status",
        "reason",
        "width",
        "height",
        "pixel_spacing_row_mm",
        "pixel_spacing_col_mm",
        "pixel_spacing_source",
        "p_hand",
        "p_leg",
        "p_hip",
        "predicted_class",
        "n_boxes",
        "max_box_score",
    ]
    expected = reference_probabilities(mixed_folder, GOOD, checkpoints["cls3"])
    assert [r["path"] for r in rows if r["status"] == "ok"] == GOOD
    for row in rows:
        if row["status"] == "ok":
            probs = [float(row[f"p_{n}"]) for n in ("hand", "leg", "hip")]
            assert probs == pytest.approx(expected[row["path"]].tolist(), abs=1e-6)
            assert sum(probs) == pytest.approx(1.0, abs=1e-6)
            assert (
                row["predicted_class"]
                == ("hand", "leg", "hip")[int(np.argmax(expected[row["path"]]))]
            )


# --- errors --------------------------------------------------------------------------------


def test_input_errors(checkpoints, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "labels.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="no images found.*labels.csv") as info:
        run(empty, tmp_path / "out", checkpoints)
    assert info.value.path == empty
    with pytest.raises(DataError, match="input folder not found"):
        run(tmp_path / "missing", tmp_path / "out", checkpoints)
    with pytest.raises(ConfigError, match="--cls CKPT.*--det PT"):
        predict_folder(PredictConfig(folder=empty))
    with pytest.raises(ConfigError, match="--shard"):
        PredictConfig(folder=empty, cls=checkpoints["cls"], shard="3/2")
    with pytest.raises(ConfigError, match="contains the input folder"):
        run(empty, tmp_path, checkpoints)
    assert not (tmp_path / "out").exists()


def test_checkpoint_kind_errors(checkpoints, mixed_folder, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="pass it with --det"):
        run(mixed_folder, out, checkpoints, cls=checkpoints["det"], det=None)
    for classifier in (checkpoints["cls"] / "best.safetensors", checkpoints["cls"]):
        with pytest.raises(ConfigError, match="classifier .*pass it with --cls"):
            run(mixed_folder, out, checkpoints, cls=None, det=classifier)
    assert not out.exists()  # nothing is written before both models load


# --- CLI -----------------------------------------------------------------------------------


def test_cli_predict_and_merge(checkpoints, mixed_folder, tmp_path):
    runner = CliRunner()
    common = [
        "--cls",
        str(checkpoints["cls"]),
        "--det",
        str(checkpoints["det"]),
        "--det-imgsz",
        str(DET_IMGSZ),
        "--workers",
        "0",
        "--device",
        "cpu",
        "--precision",
        "fp32",
    ]
    for k in (1, 2):
        result = runner.invoke(
            app,
            [
                "--quiet",
                "predict",
                str(mixed_folder),
                "--out",
                str(tmp_path / f"s{k}"),
                "--shard",
                f"{k}/2",
                *common,
            ],
        )
        assert result.exit_code == 0, result.output
        lines = (
            result.stdout.strip().splitlines()
        )  # a logged warning about the skipped files may come first
        assert "images/s" in lines[-1] and sum("images/s" in line for line in lines) == 1, (
            result.stdout
        )
    result = runner.invoke(
        app,
        ["--quiet", "merge", str(tmp_path / "merged"), str(tmp_path / "s1"), str(tmp_path / "s2")],
    )
    assert result.exit_code == 0, result.output
    assert len(result.stdout.strip().splitlines()) == 1
    assert result.stdout.strip().startswith("10 images (8 ok, 2 skipped) from 2 shards")

    result = runner.invoke(
        app,
        ["--quiet", "predict", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x"), *common],
    )
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nowhere'}: input folder not found"
    ]
    result = runner.invoke(
        app,
        [
            "--quiet",
            "predict",
            str(mixed_folder),
            "--out",
            str(tmp_path / "s1"),
            "--shard",
            "1/2",
            *common,
        ],
    )
    assert (
        result.exit_code == 1
        and result.stderr.strip().startswith("error:")
        and "--resume" in result.stderr
    )
