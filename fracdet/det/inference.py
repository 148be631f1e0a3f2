"""Running a YOLO detector over many images: boxes in each image's own frame, or why there are none.

Ultralytics letterboxes every input and maps its boxes back to the frame of the image it was
given, so for an image file or an array of the original image the boxes come back in the
original frame, the library's one box convention. A bad image costs that image, not the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fracdet.data.formats import Box
from fracdet.det.model import ultralytics_offline
from fracdet.errors import ConfigError
from fracdet.log import progress

__all__ = ["DetectOptions", "Detection", "result_boxes", "detect"]

logger = logging.getLogger(__name__)

UNREADABLE = "Ultralytics could not decode this image"


@dataclass(frozen=True)
class DetectOptions:
    """Ultralytics prediction settings: input size, lowest box score kept, NMS IoU, boxes per image.

    ``device`` is Ultralytics' own spelling (``"cpu"``, ``"0"``); ``None`` lets it choose.
    """

    imgsz: int = 640
    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 300
    device: str | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.imgsz >= 32, f"imgsz must be >= 32, got {self.imgsz}"),
            (0.0 <= self.conf < 1.0, f"conf must be in [0, 1), got {self.conf}"),
            (0.0 < self.iou <= 1.0, f"iou must be in (0, 1], got {self.iou}"),
            (self.max_det >= 1, f"max_det must be >= 1, got {self.max_det}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def predict_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``YOLO.predict``."""
        kwargs: dict[str, Any] = {
            "imgsz": self.imgsz,
            "conf": self.conf,
            "iou": self.iou,
            "max_det": self.max_det,
            "verbose": False,
        }
        if self.device is not None:
            kwargs["device"] = str(self.device)
        return kwargs


@dataclass(frozen=True)
class Detection:
    """One image's boxes (pixel ``xyxy`` in its own frame) and their scores, or ``error`` saying why
    none."""

    boxes: tuple[Box, ...] = ()
    scores: tuple[float, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def result_boxes(result: Any) -> tuple[list[Box], list[float]]:
    """Boxes (original-image pixels, xyxy) and scores of one Ultralytics ``Results`` object."""
    boxes = result.boxes
    if boxes is None or len(boxes) == 0:
        return [], []
    xyxy = boxes.xyxy.cpu().numpy().tolist()
    labels = boxes.cls.cpu().numpy().astype(int).tolist()
    scores = boxes.conf.cpu().numpy().astype(float).tolist()
    return [Box(*xy, label=lab) for xy, lab in zip(xyxy, labels, strict=True)], scores


def detect(
    model: Any,
    images: Sequence[str | Path] | Sequence[np.ndarray],
    options: DetectOptions | None = None,
    *,
    batch: int = 16,
    description: str = "Detecting",
) -> list[Detection]:
    """One :class:`Detection` per image, in the order given.

    ``images`` are all files or all arrays. Arrays are fracdet pixels, ``(H, W)`` or RGB
    ``(H, W, 3)``, float in [0, 1] or uint8; boxes come back in that array's frame. Files are
    read by Ultralytics; one it cannot decode gets a Detection with ``error`` set.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    sources = _sources(images)
    kwargs = (options or DetectOptions()).predict_kwargs()
    found: list[Detection] = []
    with ultralytics_offline():
        for chunk in progress(
            _batches(sources, batch), description, total=(len(sources) + batch - 1) // batch
        ):
            found.extend(_predict_batch(model, chunk, kwargs))
    return found


def _sources(images: Sequence[str | Path] | Sequence[np.ndarray]) -> list[str] | list[np.ndarray]:
    """What Ultralytics takes: absolute path strings (never URLs: nothing is downloaded) or BGR
    uint8 arrays."""
    arrays = [isinstance(image, np.ndarray) for image in images]
    if any(arrays) and not all(arrays):
        raise TypeError("images must be all files or all arrays, not a mix")
    if all(arrays) and images:
        return [_to_ultralytics_array(image) for image in images]  # type: ignore[arg-type]
    return [
        str(Path(image).absolute()) for image in images
    ]  # the form Ultralytics reports in Results.path


def _to_ultralytics_array(image: np.ndarray) -> np.ndarray:
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))):
        raise ValueError(f"an image array must be (H, W) or (H, W, 3), got shape {image.shape}")
    if image.dtype.kind == "f":
        if image.size and not (
            np.isfinite(image).all() and image.min() >= 0.0 and image.max() <= 1.0
        ):
            raise ValueError("float image arrays must hold pixels in [0, 1]")
        image = (image * 255.0 + 0.5).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"image arrays must be float in [0, 1] or uint8, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 3:
        image = image[
            :, :, ::-1
        ]  # fracdet arrays are RGB; Ultralytics reads arrays as OpenCV's BGR
    return np.ascontiguousarray(image)


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _predict_batch(
    model: Any, sources: Sequence[str] | Sequence[np.ndarray], kwargs: dict[str, Any]
) -> list[Detection]:
    """One streamed prediction over a batch; each source gets its boxes or the reason it has none.

    Ultralytics skips a file it cannot decode with a warning (so results are matched to files
    by path; arrays come back in order); a loader that raises instead costs a retry image by
    image, so one bad file costs one image.
    """
    by_path = isinstance(sources[0], str)
    keys: list[Any] = list(sources) if by_path else list(range(len(sources)))
    try:
        results = model.predict(list(sources), stream=True, batch=len(sources), **kwargs)
        found = {(r.path if by_path else i): _detection(r) for i, r in enumerate(results)}
    except Exception:
        logger.debug("batch prediction failed; retrying image by image", exc_info=True)
        found = {}
        for key, source in zip(keys, sources, strict=True):
            try:
                for r in model.predict(source, stream=True, **kwargs):
                    found[r.path if by_path else key] = _detection(r)
            except Exception as exc:  # recorded per image, the rest goes on
                found[key] = Detection(error=_first_line(exc))
    return [found.get(key, Detection(error=UNREADABLE)) for key in keys]


def _detection(result: Any) -> Detection:
    boxes, scores = result_boxes(result)
    return Detection(tuple(boxes), tuple(scores))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
