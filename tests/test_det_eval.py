"""Detector scoring: COCO mAP checked by hand, image-level metrics, batched inference,
checkpoint-kind checks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fracdet.data.coco import parse_coco
from fracdet.data.formats import Box, ImageRecord
from fracdet.data.geometry import box_iou, match_boxes
from fracdet.data.yolo import read_class_names
from fracdet.det.coco_eval import (
    bootstrap_map_ci,
    coco_map,
    image_level_metrics,
    image_level_scores,
    predictions_to_coco_results,
    to_coco_gt,
    to_coco_results,
)
from fracdet.det.evaluate import DetEvalConfig, DetEvalSummary
from fracdet.det.inference import DetectOptions, detect
from fracdet.det.model import check_detector_path, is_classifier_checkpoint, load_detector
from fracdet.det.train import DetTrainResult
from fracdet.errors import ConfigError, DataError


def gt_doc(
    images: list[tuple[int, list[tuple[list[float], int]]]], names: tuple[str, ...] = ("fractured",)
) -> dict:
    """A COCO ground truth from ``(image_id, [(xywh, category_id), ...])``."""
    annotations = []
    for image_id, boxes in images:
        for bbox, category in boxes:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category,
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                }
            )
    return {
        "images": [
            {"id": i, "file_name": f"{i}.png", "width": 200, "height": 200} for i, _ in images
        ],
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": n} for k, n in enumerate(names)],
    }


def det(image_id: int, bbox: list[float], score: float, category: int = 1) -> dict:
    return {"image_id": image_id, "category_id": category, "bbox": bbox, "score": score}


# --- coco_map ------------------------------------------------------------------------------


def test_coco_map_hand_checked():
    # Image 1: GT A = [10, 10, 20, 20] (area 400: "small"), one exact prediction, score 0.9.
    # Image 2: GT B = [50, 50, 40, 40] (area 1600: "medium"), a prediction far away (IoU 0,
    # score 0.8) and an exact one (score 0.7).
    # Detections by score: 0.9 TP, 0.8 FP, 0.7 TP; 2 GT boxes.
    #   recall    = 1/2, 1/2, 2/2
    #   precision = 1/1, 1/2, 2/3  -> made monotone from the right: 1, 2/3, 2/3
    # COCO samples precision at 101 recall points r = 0, 0.01, ..., 1 (first detection whose
    # recall >= r): r <= 0.50 (51 points) -> 1; r = 0.51 .. 1.00 (50 points) -> 2/3.
    #   AP@0.5 = (51 * 1 + 50 * 2/3) / 101 = 84.333.../101 = 0.834983...
    # Every match is exact (IoU 1), so AP is the same at all 10 IoU thresholds: mAP@[.5:.95] too.
    # Small range: only A counts (B ignored; the far-away 0.8 box, area 100, is a small FP):
    #   0.9 TP, 0.8 FP with 1 GT -> recall 1 at the first detection -> AP 1.
    # Medium range: only B counts; 0.9 matches ignored A, the 0.8 box is out of range -> ignored:
    #   0.7 TP -> AP 1. Large: no GT -> None. Recall@100 = 2/2 at every IoU -> 1.
    gt = gt_doc([(1, [([10, 10, 20, 20], 1)]), (2, [([50, 50, 40, 40], 1)])])
    results = [
        det(1, [10, 10, 20, 20], 0.9),
        det(2, [0, 0, 10, 10], 0.8),
        det(2, [50, 50, 40, 40], 0.7),
    ]
    expected = (51 * 1 + 50 * 2 / 3) / 101
    m = coco_map(gt, results)
    assert m["map_50"] == pytest.approx(expected, abs=1e-6)
    assert m["map_50_95"] == pytest.approx(expected, abs=1e-6)
    assert m["map_75"] == pytest.approx(expected, abs=1e-6)
    assert m["map_small"] == pytest.approx(1.0, abs=1e-6)
    assert m["map_medium"] == pytest.approx(1.0, abs=1e-6)
    assert m["map_large"] is None
    assert m["ar_100"] == pytest.approx(1.0, abs=1e-6)
    assert m["per_class_ap"] == {
        "fractured": {
            "ap50_95": pytest.approx(expected, abs=1e-6),
            "ap50": pytest.approx(expected, abs=1e-6),
        }
    }
    curve = m["pr_curve"]["precision"]["fractured"]
    assert len(curve) == 101
    assert curve == pytest.approx([1.0] * 51 + [2 / 3] * 50, abs=1e-6)  # rounded to 6 decimals
    assert (m["n_images"], m["n_gt_boxes"], m["n_predictions"]) == (2, 2, 3)
    assert results[0] == det(1, [10, 10, 20, 20], 0.9)  # the caller's rows are not edited


def test_coco_map_perfect_and_empty():
    gt = gt_doc(
        [
            (1, [([10, 10, 20, 20], 1), ([100, 100, 50, 30], 1)]),
            (2, []),
            (3, [([5, 5, 120, 120], 1)]),
        ]
    )
    perfect = [det(a["image_id"], a["bbox"], 0.9) for a in gt["annotations"]]
    m = coco_map(gt, perfect)
    assert (
        m["map_50"] == pytest.approx(1.0)
        and m["map_50_95"] == pytest.approx(1.0)
        and m["ar_100"] == pytest.approx(1.0)
    )
    assert m["map_small"] == m["map_medium"] == m["map_large"] == pytest.approx(1.0)
    empty = coco_map(gt, [])
    assert empty["map_50"] == empty["map_50_95"] == empty["ar_100"] == 0.0
    assert empty["per_class_ap"] == {"fractured": {"ap50_95": 0.0, "ap50": 0.0}}
    assert empty["map_small"] == 0.0 and empty["n_predictions"] == 0
    # a false positive on the negative image 2 costs precision
    worse = coco_map(gt, [*perfect, det(2, [0, 0, 30, 30], 0.95)])
    assert worse["map_50"] < 1.0
    assert gt == gt_doc(
        [
            (1, [([10, 10, 20, 20], 1), ([100, 100, 50, 30], 1)]),
            (2, []),
            (3, [([5, 5, 120, 120], 1)]),
        ]
    )  # not edited


def test_bootstrap_map_ci_hand_checked():
    # Image 1: GT found exactly; image 2: GT missed. A replicate with k copies of image 1 (and
    # 2 - k of image 2) has recall k/2 at precision 1: AP@0.5 = 1 (k=2), 51/101 (k=1), 0 (k=0).
    # k=0 and k=2 each have probability 1/4, so the 2.5% and 97.5% quantiles are 0 and 1.
    gt = gt_doc([(1, [([10, 10, 20, 20], 1)]), (2, [([50, 50, 40, 40], 1)])])
    results = [det(1, [10, 10, 20, 20], 0.9)]
    ci = bootstrap_map_ci(gt, results, n_boot=200, seed=0)
    assert ci == {"map_50_ci95": [0.0, 1.0], "map_50_95_ci95": [0.0, 1.0]}
    assert bootstrap_map_ci(gt, results, n_boot=200, seed=0) == ci  # seeded
    perfect = bootstrap_map_ci(gt, [*results, det(2, [50, 50, 40, 40], 0.8)], n_boot=50, seed=1)
    assert perfect == {
        "map_50_ci95": [pytest.approx(1.0), pytest.approx(1.0)],
        "map_50_95_ci95": [pytest.approx(1.0), pytest.approx(1.0)],
    }
    # replicates without any ground-truth box are left out; none left: no CI
    assert bootstrap_map_ci(gt_doc([(1, [])]), [], n_boot=20) == {
        "map_50_ci95": None,
        "map_50_95_ci95": None,
    }
    with pytest.raises(ValueError, match="n_boot must be >= 1"):
        bootstrap_map_ci(gt, results, n_boot=0)


def test_coco_map_is_silent(capsys):
    gt = gt_doc([(1, [([10, 10, 20, 20], 1)])])
    coco_map(gt, [det(1, [10, 10, 20, 20], 0.5)])
    assert capsys.readouterr().out == ""


def test_coco_map_per_class_two_classes():
    names = ("fractured", "hardware", "cast")
    gt = gt_doc(
        [(1, [([10, 10, 40, 40], 1), ([100, 100, 30, 30], 2)]), (2, [([20, 20, 50, 50], 1)])], names
    )
    results = [
        det(1, [10, 10, 40, 40], 0.9, 1),
        det(2, [20, 20, 50, 50], 0.8, 1),
        det(1, [150, 150, 30, 30], 0.7, 2),  # hardware predicted in the wrong place: AP 0
    ]
    m = coco_map(gt, results)
    assert m["per_class_ap"]["fractured"] == {
        "ap50_95": pytest.approx(1.0),
        "ap50": pytest.approx(1.0),
    }
    assert m["per_class_ap"]["hardware"] == {
        "ap50_95": pytest.approx(0.0),
        "ap50": pytest.approx(0.0),
    }
    assert m["per_class_ap"]["cast"] == {
        "ap50_95": None,
        "ap50": None,
    }  # no ground truth: undefined
    assert m["map_50"] == pytest.approx(0.5)  # mean over the classes that have ground truth
    assert m["pr_curve"]["precision"]["cast"] is None


def test_coco_map_rejects_rows_outside_the_ground_truth():
    gt = gt_doc([(1, [([10, 10, 20, 20], 1)])])
    with pytest.raises(DataError, match="image id 7"):
        coco_map(gt, [det(7, [10, 10, 20, 20], 0.5)])
    with pytest.raises(DataError, match="category id 0"):
        coco_map(gt, [det(1, [10, 10, 20, 20], 0.5, category=0)])
    with pytest.raises(DataError, match="needs images and categories"):
        coco_map({"images": []}, [])


def record(name: str, boxes: list[Box], width: int = 200, height: int = 200) -> ImageRecord:
    return ImageRecord(name, Path(name), width, height, int(bool(boxes)), tuple(boxes))


def test_records_to_coco_and_back_score_what_the_boxes_say():
    # Two fractured images and one intact one; class 1 ("hardware") only on the second.
    records = [
        record("a.png", [Box(10, 10, 30, 30)]),
        record("b.png", [Box(50, 60, 90, 100), Box(5, 5, 25, 45, label=1)]),
        record("c.png", []),
    ]
    gt = to_coco_gt(records, ("fractured", "hardware"))
    assert [(i["id"], i["file_name"]) for i in gt["images"]] == [
        (1, "a.png"),
        (2, "b.png"),
        (3, "c.png"),
    ]
    assert [(a["image_id"], a["category_id"], a["bbox"]) for a in gt["annotations"]] == [
        (1, 1, [10.0, 10.0, 20.0, 20.0]),
        (2, 1, [50.0, 60.0, 40.0, 40.0]),
        (2, 2, [5.0, 5.0, 20.0, 40.0]),
    ]
    # the ground truth's own boxes as predictions: perfect in both classes
    perfect = to_coco_results([(r.boxes, [0.9] * len(r.boxes)) for r in records])
    assert [row["image_id"] for row in perfect] == [1, 2, 2]
    m = coco_map(gt, perfect)
    assert m["map_50"] == pytest.approx(1.0) and m["per_class_ap"]["hardware"][
        "ap50"
    ] == pytest.approx(1.0)
    # the hardware box called a fracture: hardware AP 0, and the extra fracture box is a false
    # positive
    relabelled = [(r.boxes, [0.9] * len(r.boxes)) for r in records[:1]] + [
        ([records[1].boxes[0], Box(5, 5, 25, 45)], [0.9, 0.95]),
        ([], []),
    ]
    m = coco_map(gt, to_coco_results(relabelled))
    assert m["per_class_ap"]["hardware"]["ap50"] == pytest.approx(0.0)
    assert m["per_class_ap"]["fractured"]["ap50"] < 1.0


def test_the_ground_truth_files_own_ids_number_both_sides():
    records = [record("a.png", [Box(10, 10, 30, 30)]), record("c.png", [])]
    gt = to_coco_gt(records, ("fractured",), image_ids=[7, 42])
    results = to_coco_results([(r.boxes, [0.9] * len(r.boxes)) for r in records], image_ids=[7, 42])
    assert [i["id"] for i in gt["images"]] == [7, 42] and [
        a["image_id"] for a in gt["annotations"]
    ] == [7]
    assert [row["image_id"] for row in results] == [7] and coco_map(gt, results)[
        "map_50"
    ] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        to_coco_results([([], [])], image_ids=[1, 2])


def test_parse_coco_keeps_each_images_id(tmp_path):
    doc = {
        "images": [
            {"id": 12, "file_name": "a.png", "width": 9, "height": 9},
            {"id": "x7", "file_name": "b.png", "width": 9, "height": 9},
        ],
        "annotations": [],
        "categories": [{"id": 1, "name": "fractured"}],
    }
    (tmp_path / "gt.json").write_text(json.dumps(doc))
    assert parse_coco(tmp_path / "gt.json").ids == {"a.png": 12, "b.png": "x7"}


def test_predictions_to_coco_results_are_one_based_xywh():
    rows = predictions_to_coco_results(
        5, [Box(10, 20, 30, 60, label=0), Box(1.5, 2.5, 4.0, 8.0, label=1)], [0.5, 0.25]
    )
    assert rows == [
        {"image_id": 5, "category_id": 1, "bbox": [10.0, 20.0, 20.0, 40.0], "score": 0.5},
        {"image_id": 5, "category_id": 2, "bbox": [1.5, 2.5, 2.5, 5.5], "score": 0.25},
    ]
    with pytest.raises(ValueError):
        predictions_to_coco_results(1, [Box(0, 0, 1, 1)], [])


# --- image level ---------------------------------------------------------------------------


def test_image_level_hand_checked():
    # Images 1, 2 fractured (a GT box), 3, 4 not. Best box scores: 0.9, 0.4, 0.5, 0 (none).
    # AUROC = P(score of a fractured image > score of an intact one) over 2 x 2 pairs:
    #   0.9 > 0.5 yes, 0.9 > 0 yes, 0.4 > 0.5 no, 0.4 > 0 yes -> 3/4.
    # At threshold 0.45: called fractured = 1, 3 -> TP 1, FN 1, FP 1, TN 1 -> sens 1/2, spec 1/2.
    truth = [[Box(10, 10, 30, 30)], [Box(30, 30, 50, 50)], [], []]
    y_true, scores = image_level_scores(truth, [[0.3, 0.9], [0.4], [0.5], []])
    assert y_true.tolist() == [1, 1, 0, 0]
    assert scores.tolist() == [0.9, 0.4, 0.5, 0.0]
    m = image_level_metrics(y_true, scores, threshold=0.45)
    assert m["auroc"] == pytest.approx(0.75)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (1, 1, 1, 1)
    assert m["sensitivity"] == pytest.approx(0.5) and m["specificity"] == pytest.approx(0.5)
    assert image_level_metrics(y_true, scores)["sensitivity"] == pytest.approx(
        1.0
    )  # default threshold 0.25


def test_image_level_scores_need_one_prediction_list_per_image():
    with pytest.raises(ValueError, match="2 ground-truth images but 1 predicted"):
        image_level_scores([[], []], [[0.5]])


def test_image_level_single_class_has_no_auroc():
    m = image_level_metrics(np.array([1, 1]), np.array([0.2, 0.9]))
    assert m["auroc"] is None and "every image is fractured" in m["auroc_note"]
    assert m["specificity"] is None and m["sensitivity"] == pytest.approx(0.5)


# --- figure helpers ------------------------------------------------------------------------


def test_box_matching_for_the_examples_figure():
    gt = [Box(0, 0, 10, 10)]
    assert box_iou(Box(0, 0, 10, 10), Box(5, 0, 15, 10)) == pytest.approx(50 / 150)
    # the higher score takes the ground truth; the duplicate is a false positive
    assert match_boxes(gt, [(Box(0, 0, 10, 10), 0.4), (Box(1, 0, 10, 10), 0.8)]) == [False, True]
    assert match_boxes(gt, [(Box(0, 0, 10, 10, label=1), 0.9)]) == [False]  # other class


# --- batched inference ---------------------------------------------------------------------


class _Tensor:
    """Just enough of a torch tensor for result_boxes: ``.cpu().numpy()``."""

    def __init__(self, values):
        self.values = np.asarray(values)

    def cpu(self):
        return self

    def numpy(self):
        return self.values


class _Boxes:
    def __init__(self, rows):
        self.xyxy = _Tensor([r[:4] for r in rows] or np.zeros((0, 4)))
        self.cls = _Tensor([r[4] for r in rows])
        self.conf = _Tensor([r[5] for r in rows])

    def __len__(self):
        return len(self.cls.values)


class _Result:
    def __init__(self, path, rows):
        self.path, self.boxes = path, _Boxes(rows)


class FakeDetector:
    """Answers like Ultralytics: a file it cannot decode is left out; arrays come back in order.

    Each image gets one box covering its left half (so the frame of the answer is visible),
    scored by its mean pixel; ``raise_on_batch`` makes multi-image calls fail, as a loader may.
    """

    def __init__(self, unreadable=(), raise_on=(), raise_on_batch=False):
        self.unreadable, self.raise_on, self.raise_on_batch = (
            set(unreadable),
            set(raise_on),
            raise_on_batch,
        )
        self.calls: list[tuple[int, dict]] = []
        self.arrays: list[np.ndarray] = []

    def predict(self, source, stream=True, **kwargs):
        sources = source if isinstance(source, list) else [source]
        self.calls.append((len(sources), kwargs))
        if self.raise_on_batch and len(sources) > 1:
            raise RuntimeError("loader failed")
        results = []
        for index, item in enumerate(sources):
            if isinstance(item, np.ndarray):
                self.arrays.append(item)
                h, w = item.shape[:2]
                results.append(
                    _Result(f"image{index}.jpg", [(0, 0, w / 2, h, 0, float(item.mean()) / 255)])
                )
                continue
            name = Path(item).name
            if name in self.raise_on:
                raise RuntimeError(f"cannot read {name}\nsecond line")
            if name not in self.unreadable:
                results.append(
                    _Result(item, [(1, 2, 11, 22, 0, 0.8)] if name.startswith("frac") else [])
                )
        return iter(results)


def test_detect_files_in_batches_skips_what_cannot_be_read(tmp_path):
    names = ["frac1.png", "bad.png", "clear.png", "frac2.png", "frac3.png"]
    model = FakeDetector(unreadable={"bad.png"})
    found = detect(
        model,
        [tmp_path / n for n in names],
        DetectOptions(imgsz=64, conf=0.1, device="cpu"),
        batch=2,
    )
    assert [d.ok for d in found] == [True, False, True, True, True]
    assert found[0].boxes == (Box(1, 2, 11, 22, label=0),) and found[0].scores == pytest.approx(
        (0.8,)
    )
    assert found[1].error == "Ultralytics could not decode this image" and found[1].boxes == ()
    assert found[2].boxes == () and found[2].scores == ()
    assert [n for n, _ in model.calls] == [2, 2, 1]  # batches of 2, one model call each
    assert model.calls[0][1] == {
        "imgsz": 64,
        "conf": 0.1,
        "iou": 0.7,
        "max_det": 300,
        "verbose": False,
        "device": "cpu",
        "batch": 2,
    }


def test_detect_retries_a_failing_batch_image_by_image(tmp_path):
    model = FakeDetector(raise_on={"broken.png"}, raise_on_batch=True)
    found = detect(
        model, [tmp_path / "frac.png", tmp_path / "broken.png", tmp_path / "clear.png"], batch=3
    )
    assert [d.error for d in found] == [None, "cannot read broken.png", None]
    assert found[0].scores == pytest.approx((0.8,))
    assert [n for n, _ in model.calls] == [3, 1, 1, 1]


def test_detect_arrays_boxes_in_their_own_frame():
    grey = np.full((40, 100), 0.5, dtype=np.float32)  # fracdet pixels in [0, 1]
    rgb = np.zeros((30, 20, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # red in RGB
    model = FakeDetector()
    found = detect(model, [grey, rgb], batch=8)
    assert found[0].boxes == (Box(0, 0, 50, 40),) and found[1].boxes == (Box(0, 0, 10, 30),)
    sent_grey, sent_rgb = model.arrays
    assert (
        sent_grey.dtype == np.uint8 and sent_grey.shape == (40, 100) and int(sent_grey[0, 0]) == 128
    )
    assert sent_rgb[0, 0].tolist() == [0, 0, 200]  # handed to Ultralytics as OpenCV's BGR
    assert found[0].scores[0] == pytest.approx(128 / 255)


@pytest.mark.parametrize(
    ("images", "error", "match"),
    [
        ([np.full((4, 4), 1.5, dtype=np.float32)], ValueError, r"in \[0, 1\]"),
        ([np.zeros((4, 4, 2), dtype=np.uint8)], ValueError, "must be"),
        ([np.zeros((4, 4), dtype=np.int32)], ValueError, "float in"),
        ([np.zeros((4, 4), dtype=np.uint8), "a.png"], TypeError, "not a mix"),
    ],
)
def test_detect_refuses_inputs_it_cannot_hand_over(images, error, match):
    with pytest.raises(error, match=match):
        detect(FakeDetector(), images)


def test_detect_needs_a_positive_batch():
    with pytest.raises(ValueError, match="batch must be >= 1"):
        detect(FakeDetector(), [], batch=0)
    assert detect(FakeDetector(), []) == []


def test_detect_options_are_checked():
    assert DetectOptions().predict_kwargs() == {
        "imgsz": 640,
        "conf": 0.25,
        "iou": 0.7,
        "max_det": 300,
        "verbose": False,
    }
    for bad, match in (
        ({"imgsz": 16}, "imgsz"),
        ({"conf": 1.0}, "conf"),
        ({"iou": 0.0}, "iou"),
        ({"max_det": 0}, "max_det"),
    ):
        with pytest.raises(ConfigError, match=match):
            DetectOptions(**bad)


# --- one-line summaries --------------------------------------------------------------------


def test_summary_lines():
    metrics = {"coco": {"map_50": 0.51234, "map_50_95": None}, "image_level": {"auroc": None}}
    assert (
        DetEvalSummary(Path("out/eval"), metrics).line()
        == "mAP@0.5 0.512, mAP@0.5:0.95 n/a, image-level AUROC undefined; report: out/eval"
    )
    metrics["image_level"]["auroc"] = 0.75
    assert "image-level AUROC 0.750" in DetEvalSummary(Path("x"), metrics).line()
    trained = DetTrainResult(
        Path("r"),
        Path("r/weights/best.pt"),
        Path("r/weights/last.pt"),
        {"mAP50": 0.25, "note": "x"},
    )
    assert trained.line() == "best weights: r/weights/best.pt (mAP50 0.250)"
    assert DetTrainResult(Path("r"), Path("b.pt"), Path("l.pt"), {}).line() == "best weights: b.pt"


# --- class names -----------------------------------------------------------------------------


def test_class_names_come_from_the_data_layer(tmp_path):
    (tmp_path / "data.yaml").write_text("nc: 2\nnames: {0: fractured, 1: hardware}\n")
    assert (
        read_class_names(tmp_path)
        == read_class_names(tmp_path / "data.yaml")
        == ("fractured", "hardware")
    )
    for text, match in (
        ("names: {0: a, 2: b}\n", "numbered 0..1"),
        ("nc: 1\n", "no 'names' list"),
        ("names: [a]\nnc: 2\n", "nc=2 but 1 names"),
    ):
        (tmp_path / "data.yaml").write_text(text)
        with pytest.raises(DataError, match=match) as info:
            read_class_names(tmp_path)
        assert info.value.path == tmp_path / "data.yaml"


# --- checkpoint kinds ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["safetensors", "json", "folder"])
def test_classifier_checkpoint_is_refused_as_detector(tmp_path, kind):
    if kind == "folder":
        path = tmp_path / "cls_run"
        path.mkdir()
        (path / "model.safetensors").write_bytes(b"\0" * 8)
    else:
        path = tmp_path / f"model.{kind}"
        path.write_text("{}")
    assert is_classifier_checkpoint(path)
    with pytest.raises(ConfigError, match="classifier checkpoint, pass it with --cls"):
        load_detector(path)


def test_detector_path_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found.*never downloads"):
        check_detector_path(tmp_path / "yolov8n.pt")
    run = tmp_path / "run"
    (run / "weights").mkdir(parents=True)
    (run / "weights" / "best.pt").write_bytes(b"x")
    with pytest.raises(ConfigError, match="did you mean .*best.pt"):
        check_detector_path(run)
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"x")
    with pytest.raises(ConfigError, match="an ONNX model: this command needs the PyTorch detector"):
        check_detector_path(onnx)
    text = tmp_path / "model.txt"
    text.write_bytes(b"x")
    with pytest.raises(ConfigError, match="expected a YOLO .pt"):
        check_detector_path(text)


def test_unloadable_pt_is_a_config_error(tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"this is not a torch checkpoint")
    with pytest.raises(ConfigError, match="cannot load as an Ultralytics YOLO checkpoint") as info:
        load_detector(broken)
    assert info.value.path == broken


def test_eval_config_validation(tmp_path):
    with pytest.raises(ConfigError, match="split"):
        DetEvalConfig(weights=tmp_path / "w.pt", data=tmp_path, split="valid")
    with pytest.raises(ConfigError, match="conf"):
        DetEvalConfig(weights=tmp_path / "w.pt", data=tmp_path, conf=1.5)
