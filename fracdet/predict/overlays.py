"""Overlays: the image (at most 1024 px), the Grad-CAM map blended in, the boxes on top."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fracdet.data.formats import Box
from fracdet.data.geometry import content_region
from fracdet.fsutil import atomic_write_bytes
from fracdet.predict.config import OVERLAYS
from fracdet.predict.decode import Decoded, to_uint8

__all__ = ["draw_overlay", "write_png", "overlay_path", "heat_on_image"]

#: Share of the colour map in the blend: enough to see it, little enough to see the bone under it.
HEAT_WEIGHT = 0.4


def heat_on_image(
    cam: np.ndarray,
    height: int,
    width: int,
    cls_size: int,
    out_shape: tuple[int, int],
    *,
    keep_aspect: bool = True,
) -> np.ndarray:
    """A classifier-frame map ``(cls_size, cls_size)`` as a ``(h, w)`` float map over the image.

    The training transform letterboxes the image into the square (or stretches it), so only
    the content region of the map belongs to the image; it is cut out and resized to ``out_shape``.
    """
    import cv2

    top, left, h, w = content_region(height, width, cls_size, keep_aspect=keep_aspect)
    crop = cam[top : top + h, left : left + w]
    return cv2.resize(crop, (out_shape[1], out_shape[0]), interpolation=cv2.INTER_LINEAR)


def draw_overlay(
    base: np.ndarray,
    item: Decoded,
    boxes: Sequence[Box],
    scores: Sequence[float],
    label: str | None,
    cam: np.ndarray | None,
    cls_size: int | None,
    *,
    keep_aspect: bool = True,
) -> np.ndarray:
    """A BGR uint8 picture: ``base`` (grey, shrunk), the map in JET colours, the boxes in red."""
    import cv2

    oh, ow = base.shape[:2]
    canvas = cv2.cvtColor(base, cv2.COLOR_GRAY2BGR)
    if cam is not None and cls_size is not None:
        heat = cv2.applyColorMap(
            to_uint8(
                heat_on_image(
                    cam, item.height, item.width, cls_size, (oh, ow), keep_aspect=keep_aspect
                )
            ),
            cv2.COLORMAP_JET,
        )
        canvas = cv2.addWeighted(canvas, 1.0 - HEAT_WEIGHT, heat, HEAT_WEIGHT, 0.0)
    sx, sy = ow / item.width, oh / item.height
    thickness = max(1, round(max(oh, ow) / 400))
    font = max(0.35, max(oh, ow) / 1600)
    for box, score in zip(boxes, scores, strict=True):
        p1 = (int(round(box.x1 * sx)), int(round(box.y1 * sy)))
        p2 = (int(round(box.x2 * sx)), int(round(box.y2 * sy)))
        cv2.rectangle(canvas, p1, p2, (0, 0, 255), thickness)
        cv2.putText(
            canvas,
            f"{score:.2f}",
            (p1[0], max(p1[1] - 3, 10)),
            cv2.FONT_HERSHEY_SIMPLEX,
            font,
            (0, 0, 255),
            thickness,
        )
    if label:
        cv2.putText(
            canvas,
            label,
            (5, 5 + int(22 * font * 1.5)),
            cv2.FONT_HERSHEY_SIMPLEX,
            font,
            (0, 255, 255),
            thickness,
        )
    return canvas


def write_png(path: Path, image: np.ndarray) -> None:
    """Encode and write atomically: a resumed run never finds half an overlay."""
    import cv2

    ok, data = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover - OpenCV only fails here on an empty image
        raise OSError(f"cannot encode {path.name} as PNG")
    atomic_write_bytes(path, data.tobytes())


def overlay_path(output: Path, rel: str) -> Path:
    """``output/overlays/<rel>.png``: the relative path mirrored, the full name kept.

    (``a.jpg`` and ``a.png`` may both exist.)
    """
    return Path(output) / OVERLAYS / f"{rel}.png"
