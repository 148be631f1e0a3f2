"""Detector scoring: COCO mAP checked by hand, image-level metrics, checkpoint-kind checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fracdet.data.formats import Box
from fracdet.data.geometry import box_iou, match_boxes
from fracdet.det.evaluate import (
    DetEvalConfig,
    coco_map,
    image_level_metrics,
    image_level_scores,
    predictions_to_coco_results,
)
from fracdet.det.model import check_detector_path, is_classifier_checkpoint, load_detector
from fracdet.errors import ConfigError, DataError


def gt_doc(images: list[tuple[int, list[tuple[list[float], int]]]], names: tuple[str, ...] = ("fractured",)) -> dict:
    """A COCO ground truth from ``(image_id, [(xywh, category_id), ...])``."""
    annotations = []
    for image_id, boxes in images:
        for bbox, category in boxes:
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "category_id": category, "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0}
            )
    return {
        "images": [{"id": i, "file_name": f"{i}.png", "width": 200, "height": 200} for i, _ in images],
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
    results = [det(1, [10, 10, 20, 20], 0.9), det(2, [0, 0, 10, 10], 0.8), det(2, [50, 50, 40, 40], 0.7)]
    expected = (51 * 1 + 50 * 2 / 3) / 101
    m = coco_map(gt, results)
    assert m["map_50"] == pytest.approx(expected, abs=1e-6)
    assert m["map_50_95"] == pytest.approx(expected, abs=1e-6)
    assert m["map_75"] == pytest.approx(expected, abs=1e-6)
    assert m["map_small"] == pytest.approx(1.0, abs=1e-6)
    assert m["map_medium"] == pytest.approx(1.0, abs=1e-6)
    assert m["map_large"] is None
    assert m["ar_100"] == pytest.approx(1.0, abs=1e-6)
    assert m["per_class_ap"] == {"fractured": {"ap50_95": pytest.approx(expected, abs=1e-6), "ap50": pytest.approx(expected, abs=1e-6)}}
    curve = m["pr_curve"]["precision"]["fractured"]
    assert len(curve) == 101
    assert curve == pytest.approx([1.0] * 51 + [2 / 3] * 50, abs=1e-6)  # rounded to 6 decimals
    assert (m["n_images"], m["n_gt_boxes"], m["n_predictions"]) == (2, 2, 3)
    assert results[0] == det(1, [10, 10, 20, 20], 0.9)  # the caller's rows are not edited


def test_coco_map_perfect_empty_and_from_file(tmp_path):
    gt = gt_doc([(1, [([10, 10, 20, 20], 1), ([100, 100, 50, 30], 1)]), (2, []), (3, [([5, 5, 120, 120], 1)])])
    perfect = [det(a["image_id"], a["bbox"], 0.9) for a in gt["annotations"]]
    m = coco_map(gt, perfect)
    assert m["map_50"] == pytest.approx(1.0) and m["map_50_95"] == pytest.approx(1.0) and m["ar_100"] == pytest.approx(1.0)
    assert m["map_small"] == m["map_medium"] == m["map_large"] == pytest.approx(1.0)
    empty = coco_map(gt, [])
    assert empty["map_50"] == empty["map_50_95"] == empty["ar_100"] == 0.0
    assert empty["per_class_ap"] == {"fractured": {"ap50_95": 0.0, "ap50": 0.0}}
    assert empty["map_small"] == 0.0 and empty["n_predictions"] == 0
    # a false positive on the negative image 2 costs precision
    worse = coco_map(gt, [*perfect, det(2, [0, 0, 30, 30], 0.95)])
    assert worse["map_50"] < 1.0
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    assert coco_map(path, perfect)["map_50"] == pytest.approx(1.0)


def test_coco_map_is_silent(capsys):
    gt = gt_doc([(1, [([10, 10, 20, 20], 1)])])
    coco_map(gt, [det(1, [10, 10, 20, 20], 0.5)])
    assert capsys.readouterr().out == ""


def test_coco_map_per_class_two_classes():
    names = ("fractured", "hardware", "cast")
    gt = gt_doc([(1, [([10, 10, 40, 40], 1), ([100, 100, 30, 30], 2)]), (2, [([20, 20, 50, 50], 1)])], names)
    results = [
        det(1, [10, 10, 40, 40], 0.9, 1),
        det(2, [20, 20, 50, 50], 0.8, 1),
        det(1, [150, 150, 30, 30], 0.7, 2),  # hardware predicted in the wrong place: AP 0
    ]
    m = coco_map(gt, results)
    assert m["per_class_ap"]["fractured"] == {"ap50_95": pytest.approx(1.0), "ap50": pytest.approx(1.0)}
    assert m["per_class_ap"]["hardware"] == {"ap50_95": pytest.approx(0.0), "ap50": pytest.approx(0.0)}
    assert m["per_class_ap"]["cast"] == {"ap50_95": None, "ap50": None}  # no ground truth: undefined
    assert m["map_50"] == pytest.approx(0.5)  # mean over the classes that have ground truth
    assert m["pr_curve"]["precision"]["cast"] is None


def test_coco_map_rejects_rows_outside_the_ground_truth():
    gt = gt_doc([(1, [([10, 10, 20, 20], 1)])])
    with pytest.raises(DataError, match="image id 7"):
        coco_map(gt, [det(7, [10, 10, 20, 20], 0.5)])
    with pytest.raises(DataError, match="category id 0"):
        coco_map(gt, [det(1, [10, 10, 20, 20], 0.5, category=0)])
    with pytest.raises(DataError, match="not found"):
        coco_map("/nonexistent/gt.json", [])


def test_predictions_to_coco_results_are_one_based_xywh():
    rows = predictions_to_coco_results(5, [Box(10, 20, 30, 60, label=0), Box(1.5, 2.5, 4.0, 8.0, label=1)], [0.5, 0.25])
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
    gt = gt_doc([(1, [([10, 10, 20, 20], 1)]), (2, [([30, 30, 20, 20], 1)]), (3, []), (4, [])])
    results = [det(1, [0, 0, 5, 5], 0.3), det(1, [10, 10, 20, 20], 0.9), det(2, [30, 30, 20, 20], 0.4), det(3, [1, 1, 9, 9], 0.5)]
    y_true, scores = image_level_scores(gt, results)
    assert y_true.tolist() == [1, 1, 0, 0]
    assert scores.tolist() == [0.9, 0.4, 0.5, 0.0]
    m = image_level_metrics(y_true, scores, threshold=0.45)
    assert m["auroc"] == pytest.approx(0.75)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (1, 1, 1, 1)
    assert m["sensitivity"] == pytest.approx(0.5) and m["specificity"] == pytest.approx(0.5)
    assert image_level_metrics(y_true, scores)["sensitivity"] == pytest.approx(1.0)  # default threshold 0.25


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
    with pytest.raises(ConfigError, match="expected a YOLO .pt"):
        check_detector_path(onnx)


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
