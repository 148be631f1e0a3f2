"""Box geometry: frames, masks and scaling, checked against hand-computed values and the
transform."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fracdet.data.datasets import build_transform
from fracdet.data.formats import Box
from fracdet.data.geometry import (
    box_from_model_frame,
    box_to_model_frame,
    boxes_mask,
    content_region,
    scale_boxes,
)


def test_box_to_model_frame_by_hand():
    # 200 x 100 (h x w) into 64: scale 0.32, content 64 x 32, padded left by (64 - 32) // 2 = 16
    box = box_to_model_frame(Box(10, 50, 60, 150, label=1), height=200, width=100, size=64)
    assert box == Box(16 + 10 * 0.32, 50 * 0.32, 16 + 60 * 0.32, 150 * 0.32, label=1)


@given(
    st.integers(8, 400),
    st.integers(8, 400),
    st.sampled_from([32, 64, 97, 224]),
    st.floats(0, 0.9),
    st.floats(0, 0.9),
    st.floats(0.05, 0.1),
    st.floats(0.05, 0.1),
)
def test_model_frame_round_trip(height, width, size, fx, fy, fw, fh):
    box = Box(fx * width, fy * height, (fx + fw) * width, (fy + fh) * height)
    back = box_from_model_frame(box_to_model_frame(box, height, width, size), height, width, size)
    assert back.as_list() == pytest.approx(box.as_list(), abs=1e-6)


def test_model_frame_matches_the_training_transform():
    """A bright box drawn in the original lands where box_to_model_frame says, after the real
    transform."""
    height, width, size = 90, 150, 64
    image = np.zeros((height, width), np.float32)
    image[30:60, 100:140] = 1.0
    square = build_transform(size)(image=image)["image"]
    mapped = box_to_model_frame(Box(100, 30, 140, 60), height, width, size)
    top, left, h, w = content_region(height, width, size)
    assert (top, left, h, w) == (13, 0, 38, 64)
    ys, xs = np.nonzero(square > 0.5)
    assert xs.min() == pytest.approx(mapped.x1, abs=1) and xs.max() + 1 == pytest.approx(
        mapped.x2, abs=1
    )
    assert ys.min() == pytest.approx(mapped.y1, abs=1) and ys.max() + 1 == pytest.approx(
        mapped.y2, abs=1
    )


def test_boxes_mask_by_hand():
    mask = boxes_mask([Box(1, 1, 3, 2), Box(2.6, 2.4, 2.9, 2.6)], height=4, width=5)
    expected = np.zeros((4, 5), bool)
    expected[1, 1:3] = True  # centres (1.5, 1.5) and (2.5, 1.5)
    expected[2, 2] = True  # a box smaller than a pixel marks the pixel its centre falls in
    assert (mask == expected).all()
    assert not boxes_mask([], 3, 3).any()
    assert not boxes_mask([Box(10, 10, 12, 12)], 3, 3).any()  # outside the image
    assert boxes_mask([Box(-5, -5, 100, 100)], 3, 3).all()  # clipped to the image


def test_scale_boxes_orders_corners_and_clips():
    boxes, scores = scale_boxes(
        [Box(40, 10, 20, 30), Box(0, 0, 10, 10), Box(200, 200, 210, 210)],
        [0.9, 0.8, 0.7],
        from_shape=(50, 50),
        to_shape=(100, 200),
    )
    assert boxes == [Box(80, 20, 160, 60), Box(0, 0, 40, 20)] and scores == [0.9, 0.8]


def test_stretched_frame_by_hand_and_against_the_transform():
    """The robust-transfer study's resize: the whole image fills the square, x and y scaled
    apart."""
    height, width, size = 90, 150, 60
    assert content_region(height, width, size, keep_aspect=False) == (0, 0, 60, 60)
    mapped = box_to_model_frame(Box(100, 30, 140, 60), height, width, size, keep_aspect=False)
    assert mapped.as_list() == pytest.approx([40, 20, 56, 40])
    image = np.zeros((height, width), np.float32)
    image[30:60, 100:140] = 1.0
    square = build_transform(size, keep_aspect=False)(image=image)["image"]
    assert square.shape == (size, size)
    ys, xs = np.nonzero(square > 0.5)
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == pytest.approx(
        (40, 56, 20, 40), abs=1
    )
    back = box_from_model_frame(mapped, height, width, size, keep_aspect=False)
    assert back.as_list() == pytest.approx([100, 30, 140, 60])


def test_resize_modes_are_checked():
    from fracdet.data.geometry import keeps_aspect

    assert keeps_aspect("letterbox") and not keeps_aspect("stretch")
    with pytest.raises(ValueError, match="unknown resize mode 'crop'"):
        keeps_aspect("crop")
