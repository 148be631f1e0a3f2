"""Detection figures: which examples are shown, and that what is drawn is what the boxes say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import save_image
from PIL import Image

from fracdet.data.formats import Box, ImageRecord
from fracdet.report.det_figures import (
    FP_COLOR,
    GT_COLOR,
    TP_COLOR,
    pick_examples,
    plot_examples,
    plot_pr_curve,
)


def pixels_near(path: Path, color: str, tolerance: int = 40) -> int:
    """How many pixels of the PNG are within ``tolerance`` (per channel) of ``color``."""
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=int)
    target = np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(rgb - target).max(axis=2) <= tolerance).sum())


def record(path: Path, boxes: list[Box]) -> ImageRecord:
    return ImageRecord(path.name, path, 120, 100, int(bool(boxes)), tuple(boxes))


def test_pick_examples_shows_fractures_then_confident_false_positives():
    truth = [[], [Box(0, 0, 10, 10)], [], [Box(0, 0, 10, 10)], []]
    predictions = [
        ([Box(50, 50, 60, 60)], [0.4]),  # intact, false positive 0.4
        ([Box(0, 0, 10, 10)], [0.9]),  # fractured, found
        ([Box(50, 50, 60, 60)], [0.8]),  # intact, false positive 0.8
        ([], []),  # fractured, missed
        (
            [Box(50, 50, 60, 60)],
            [0.1],
        ),  # intact, false positive below the threshold: does not count
    ]
    assert pick_examples(truth, predictions, count=5, score_threshold=0.25) == [1, 3, 2, 0, 4]
    assert pick_examples(truth, predictions, count=2, score_threshold=0.25) == [1, 3]
    # with a lower threshold the 0.1 box counts, but 0.4 and 0.8 still rank above it
    assert pick_examples(truth, predictions, count=5, score_threshold=0.05) == [1, 3, 2, 0, 4]


def test_examples_draw_truth_hits_and_false_positives_in_their_colours(tmp_path):
    image = save_image(tmp_path / "a.png", 120, 100)
    records = [record(image, [Box(10, 10, 50, 60)])]
    hit_and_miss = [([Box(11, 10, 50, 60), Box(70, 20, 110, 80)], [0.9, 0.6])]
    path = plot_examples(records, hit_and_miss, tmp_path / "all.png", count=1, score_threshold=0.25)
    assert path == tmp_path / "all.png"
    assert (
        pixels_near(path, GT_COLOR) > 50
        and pixels_near(path, TP_COLOR) > 20
        and pixels_near(path, FP_COLOR) > 20
    )
    # the hit alone is blue, not red: colours follow the matching, not the order of the boxes
    hit = plot_examples(records, [([Box(11, 10, 50, 60)], [0.9])], tmp_path / "hit.png", count=1)
    assert pixels_near(hit, TP_COLOR) > 20 and pixels_near(hit, FP_COLOR) == 0
    # above both scores nothing but the ground truth is drawn
    only_truth = plot_examples(
        records, hit_and_miss, tmp_path / "truth.png", count=1, score_threshold=0.95
    )
    assert (
        pixels_near(only_truth, GT_COLOR) > 50
        and pixels_near(only_truth, TP_COLOR) == 0
        and pixels_near(only_truth, FP_COLOR) == 0
    )
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"


def test_examples_without_a_readable_image_draw_nothing(tmp_path):
    records = [record(tmp_path / "gone.png", [Box(0, 0, 5, 5)])]
    assert plot_examples(records, [([], [])], tmp_path / "ex.png") is None
    assert not (tmp_path / "ex.png").exists()
    with pytest.raises(ValueError, match="1 records but 0 predictions"):
        plot_examples(records, [], tmp_path / "ex.png")


def test_pr_curve_draws_the_classes_with_ground_truth(tmp_path):
    recall = [i / 100 for i in range(101)]
    drawn = plot_pr_curve(
        recall,
        {"fractured": [1.0] * 51 + [0.5] * 50, "cast": None},
        tmp_path / "pr.png",
        ap50={"fractured": 0.75},
    )
    with Image.open(drawn) as png:
        assert png.format == "PNG" and png.size == (550, 495)  # 5 x 4.5 inches at 110 dpi
    assert (
        pixels_near(drawn, "#1f77b4", tolerance=10) > 100
    )  # matplotlib's first colour: the fractured curve
    empty = plot_pr_curve(recall, {"cast": None}, tmp_path / "empty.png")
    assert pixels_near(empty, "#1f77b4", tolerance=10) == 0
