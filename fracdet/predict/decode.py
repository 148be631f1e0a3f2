"""One decode per image, in DataLoader workers, for both tracks.

A worker reads the file once and hands the main process the classifier input (the training
transform, so predict sees what training saw) and a small grey uint8 array for the detector
(and one for the overlay). Nothing holds a list of decoded images, so memory stays flat
however large the folder is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from fracdet.data.dicom import PixelSpacing, pixel_spacing
from fracdet.data.images import is_dicom, load_image
from fracdet.errors import ImageError
from fracdet.predict.config import OVERLAY_MAX_SIDE

__all__ = ["Decoded", "Batch", "DecodeDataset", "collate", "to_uint8", "shrink", "one_line"]


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8, rounded (what the detector and the overlays take)."""
    return (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale so the long side is at most ``max_side`` (INTER_AREA: no aliasing); no upscale."""
    import cv2

    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return image
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def one_line(text: str) -> str:
    """A reason fit for one CSV cell: whitespace (newlines from library errors) collapsed."""
    return " ".join(str(text).split())


@dataclass
class Decoded:
    """One file after the worker: its inputs for each track, or why it has none."""

    image_id: int
    path: str
    reason: str | None = None
    width: int = 0
    height: int = 0
    cls: torch.Tensor | None = None
    det: np.ndarray | None = None
    overlay: np.ndarray | None = None
    spacing: PixelSpacing | None = None

    def spacing_cells(self) -> list[str]:
        """The pixel-spacing columns of its row (empty cells when none is recorded)."""
        if self.spacing is None:
            return ["", "", ""]
        return [f"{self.spacing.row:g}", f"{self.spacing.column:g}", self.spacing.source]


@dataclass
class Batch:
    """The decoded items of one batch and their classifier inputs stacked (readable items only)."""

    items: list[Decoded]
    cls: torch.Tensor | None

    def pin_memory(self) -> Batch:
        return Batch(self.items, self.cls.pin_memory() if self.cls is not None else None)


class DecodeDataset(Dataset):
    """Reads each file once; a file that cannot be read becomes a reason, not an exception."""

    def __init__(
        self,
        folder: Path,
        items: Sequence[tuple[int, str]],
        *,
        cls_size: int | None,
        det_imgsz: int | None,
        overlays: bool,
        cls_keep_aspect: bool = True,
    ) -> None:
        self.folder = Path(folder)
        self.items = list(items)
        self.cls_size = cls_size
        self.det_imgsz = det_imgsz
        self.overlays = overlays
        # Built here, in the main process: forked workers inherit it (and albumentations'
        # half-second import) instead of each paying for it before its first batch.
        self._transform = None
        if cls_size is not None:
            from fracdet.data.datasets import build_transform

            self._transform = build_transform(cls_size, keep_aspect=cls_keep_aspect)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Decoded:
        image_id, rel = self.items[index]
        out = Decoded(image_id, rel)
        try:
            pixels = load_image(
                self.folder / rel, channels=1
            )  # radiographs are grey; colour is averaged
        except ImageError as exc:
            out.reason = one_line(exc.message)
            return out
        except OSError as exc:  # vanished file, permission...
            out.reason = one_line(f"cannot read file ({exc.strerror or exc})")
            return out
        if pixels.size == 0:
            out.reason = "empty image (zero width or height)"
            return out
        out.height, out.width = pixels.shape
        path = self.folder / rel
        out.spacing = pixel_spacing(path) if is_dicom(path) else None
        if self._transform is not None:
            square = self._transform(image=pixels)["image"]
            out.cls = torch.from_numpy(np.clip(square, 0.0, 1.0)[None])
        if self.det_imgsz is not None or self.overlays:
            grey = to_uint8(pixels)
            del pixels
            if self.det_imgsz is not None:
                # Ultralytics letterboxes to imgsz anyway: shrinking here, in parallel workers,
                # moves less data to the main process and gives it less to resize.
                out.det = shrink(grey, self.det_imgsz)
            if self.overlays:
                out.overlay = shrink(grey, OVERLAY_MAX_SIDE)
        return out


def collate(items: list[Decoded]) -> Batch:
    """Stack the classifier inputs of the readable items (in the worker, off the main process)."""
    good = [item for item in items if item.cls is not None]
    cls = torch.stack([item.cls for item in good]) if good else None
    for item in good:
        item.cls = None  # the stacked copy is what travels
    return Batch(items, cls)
