"""Box geometry in the one convention (absolute ``xyxy`` pixels): overlap, matching, frames, masks.

Models see a letterboxed square (aspect kept, long side resized to ``size``, padding centred,
as :func:`fracdet.data.datasets.build_transform` does), or with ``keep_aspect=False`` the
whole image stretched to the square (the resize of the robust-transfer study); the annotation
model keeps boxes in the original image's frame. The functions here map between the two, so the
audit can compare
a classifier's attribution map with ground-truth and detector boxes in the same pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fracdet.data.formats import Box, clip_box

__all__ = [
    "RESIZE_MODES",
    "keeps_aspect",
    "box_iou",
    "match_boxes",
    "content_region",
    "box_to_model_frame",
    "box_from_model_frame",
    "scale_boxes",
    "boxes_mask",
]


#: ``letterbox``: aspect kept, padded to a square (fracdet's default: no anatomy distorted);
#: ``stretch``: resized to the square regardless of aspect (the robust-transfer study).
RESIZE_MODES = ("letterbox", "stretch")


def keeps_aspect(resize: str) -> bool:
    """Whether a resize mode (``letterbox`` or ``stretch``) keeps the aspect ratio."""
    if resize not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {resize!r}; choose one of {', '.join(RESIZE_MODES)}")
    return resize == "letterbox"


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two xyxy boxes (0 for boxes without area)."""
    w = min(a.x2, b.x2) - max(a.x1, b.x1)
    h = min(a.y2, b.y2) - max(a.y1, b.y1)
    inter = max(w, 0.0) * max(h, 0.0)
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def match_boxes(
    gt: Sequence[Box], predictions: Sequence[tuple[Box, float]], iou: float = 0.5
) -> list[bool]:
    """Whether each prediction is a true positive: greedy by score, one ground-truth box each,
    same class.
    """
    order = sorted(range(len(predictions)), key=lambda i: -predictions[i][1])
    taken: set[int] = set()
    hits = [False] * len(predictions)
    for i in order:
        box = predictions[i][0]
        best, best_iou = None, iou
        for j, target in enumerate(gt):
            if j in taken or target.label != box.label:
                continue
            overlap = box_iou(box, target)
            if overlap >= best_iou:
                best, best_iou = j, overlap
        if best is not None:
            taken.add(best)
            hits[i] = True
    return hits


def content_region(
    height: int, width: int, size: int, *, keep_aspect: bool = True
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of an ``height x width`` image inside the model's padded ``size``
    square.

    Mirrors albumentations' LongestMaxSize (``round``) and centred PadIfNeeded; checked
    against the transform itself in the tests. A stretched image fills the whole square.
    """
    if not keep_aspect:
        return 0, 0, size, size
    scale = size / max(height, width)
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    return (size - h) // 2, (size - w) // 2, h, w


def box_to_model_frame(
    box: Box, height: int, width: int, size: int, *, keep_aspect: bool = True
) -> Box:
    """A box of the original ``height x width`` image in the model's ``size`` square (letterboxed
    or stretched).
    """
    top, left, h, w = content_region(height, width, size, keep_aspect=keep_aspect)
    sx, sy = w / width, h / height
    return Box(
        left + box.x1 * sx, top + box.y1 * sy, left + box.x2 * sx, top + box.y2 * sy, box.label
    )


def box_from_model_frame(
    box: Box, height: int, width: int, size: int, *, keep_aspect: bool = True
) -> Box:
    """The inverse of :func:`box_to_model_frame`: back to the original image's pixels."""
    top, left, h, w = content_region(height, width, size, keep_aspect=keep_aspect)
    sx, sy = width / w, height / h
    return Box(
        (box.x1 - left) * sx,
        (box.y1 - top) * sy,
        (box.x2 - left) * sx,
        (box.y2 - top) * sy,
        box.label,
    )


def scale_boxes(
    boxes: Sequence[Box],
    scores: Sequence[float],
    *,
    from_shape: tuple[int, int],
    to_shape: tuple[int, int],
) -> tuple[list[Box], list[float]]:
    """Boxes of an image resized from ``from_shape`` to ``to_shape`` (both ``(h, w)``), clipped to
    it.

    Boxes that lose all area to clipping are dropped with their scores; swapped corners of a
    model's output are put in order.
    """
    sy, sx = to_shape[0] / from_shape[0], to_shape[1] / from_shape[1]
    kept_boxes: list[Box] = []
    kept_scores: list[float] = []
    for box, score in zip(boxes, scores, strict=True):
        # a model's output, not a label file: swapped corners (an untrained head draws them)
        # are put in order rather than reported as a label error
        x1, x2 = sorted((box.x1 * sx, box.x2 * sx))
        y1, y2 = sorted((box.y1 * sy, box.y2 * sy))
        scaled, _ = clip_box(Box(x1, y1, x2, y2, box.label), to_shape[1], to_shape[0])
        if scaled is not None:
            kept_boxes.append(scaled)
            kept_scores.append(score)
    return kept_boxes, kept_scores


def boxes_mask(boxes: Sequence[Box], height: int, width: int) -> np.ndarray:
    """``(height, width)`` bool mask of the union of ``boxes``: a pixel is in when its centre is.

    Pixel ``(i, j)`` covers ``[j, j+1) x [i, i+1)``, centre ``(j + 0.5, i + 0.5)``. A box
    narrower than a pixel still marks the pixel its centre falls in, so no box is lost.
    """
    mask = np.zeros((height, width), dtype=bool)
    for box in boxes:
        x1 = int(np.ceil(box.x1 - 0.5))
        x2 = int(np.floor(box.x2 - 0.5))
        y1 = int(np.ceil(box.y1 - 0.5))
        y2 = int(np.floor(box.y2 - 0.5))
        if x2 < x1:
            x1 = x2 = int(np.floor((box.x1 + box.x2) / 2))
        if y2 < y1:
            y1 = y2 = int(np.floor((box.y1 + box.y2) / 2))
        x1, x2 = max(x1, 0), min(x2, width - 1)
        y1, y2 = max(y1, 0), min(y2, height - 1)
        if x1 <= x2 and y1 <= y2:
            mask[y1 : y2 + 1, x1 : x2 + 1] = True
    return mask
