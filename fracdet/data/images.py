"""Reading images: JPEG, PNG (8 and 16 bit) and DICOM, as pixel arrays in [0, 1].

Decode failures become :class:`~fracdet.errors.ImageError` naming the file and the problem.
Orientation follows EXIF, because FracAtlas annotates the EXIF-transposed image.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fracdet.errors import ImageError

__all__ = [
    "IMAGE_SUFFIXES",
    "DICOM_SUFFIXES",
    "ImageInfo",
    "is_dicom",
    "read_image_info",
    "load_image",
]

logger = logging.getLogger(__name__)

#: Raster formats Ultralytics and timm pipelines read directly.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
_EXIF_ORIENTATION = 0x0112
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
_TAIL_BYTES = 1024


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What the header says: size as displayed (after EXIF orientation), mode and format."""

    width: int
    height: int
    mode: str
    format: str


def is_dicom(path: Path) -> bool:
    """DICOM by suffix or by its ``DICM`` magic at byte 128 (exports often lack a suffix)."""
    suffix = path.suffix.lower()
    if suffix in DICOM_SUFFIXES or suffix in IMAGE_SUFFIXES:
        return suffix in DICOM_SUFFIXES
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _check_complete(fh: BinaryIO, size: int, fmt: str, path: Path) -> None:
    """Catch truncated files cheaply: a complete JPEG ends with EOI, a PNG with IEND."""
    marker = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}.get(fmt)
    if marker is None:
        return
    fh.seek(max(0, size - _TAIL_BYTES))
    if marker not in fh.read():
        raise ImageError(f"truncated {fmt} (no end-of-image marker)", path)


def read_image_info(path: str | Path, *, full: bool = False) -> ImageInfo:
    """Header facts of a raster image, checking that it is complete.

    ``full=False`` parses the header and checks the end-of-image marker (fast, catches
    truncated files); ``full=True`` decodes every pixel (slow, catches corrupt data too).
    DICOM is read with pydicom. The file is opened once: on datasets of thousands of
    small images, opens dominate.
    """
    path = Path(path)
    if is_dicom(path):
        return _read_dicom_info(path)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                raise ImageError("empty file", path)
            with Image.open(fh) as img:
                fmt = img.format or path.suffix.lstrip(".").upper()
                width, height = img.size
                orientation = _orientation(img)
                mode = img.mode
                if full:
                    img.load()
            _check_complete(fh, size, fmt, path)
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageError("not an image (or an unsupported format)", path) from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"cannot decode image ({exc})", path) from exc
    if orientation in _SWAPPING_ORIENTATIONS:
        width, height = height, width
    return ImageInfo(width, height, mode, fmt)


def _orientation(img: Image.Image) -> int:
    """EXIF orientation from the header; PNG keeps EXIF after the pixels, so only if parsed."""
    if img.format == "PNG" and "exif" not in img.info:
        return 1  # PIL would decode the whole image to look for a trailing eXIf chunk
    try:
        return int(img.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - broken EXIF must not hide a readable image
        return 1


def _read_dicom_info(path: Path) -> ImageInfo:
    dataset = _read_dicom(path, defer=True)
    return ImageInfo(int(dataset.Columns), int(dataset.Rows), str(dataset.PhotometricInterpretation), "DICOM")


def _read_dicom(path: Path, *, defer: bool):  # -> pydicom.Dataset
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        dataset = pydicom.dcmread(path, defer_size="1 KB" if defer else None, force=False)
    except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise ImageError(f"cannot read DICOM ({exc})", path) from exc
    if "PixelData" not in dataset or "Rows" not in dataset:
        raise ImageError("DICOM without pixel data", path)
    return dataset


def load_image(path: str | Path, *, channels: int = 1) -> np.ndarray:
    """Pixels as float32 in [0, 1], shape ``(H, W)`` for ``channels=1`` or ``(H, W, 3)``.

    8-bit images are divided by 255 and 16-bit ones by 65535; DICOM gets its rescale and
    window applied and MONOCHROME1 is inverted so that bone is bright, as in every other
    format.
    """
    path = Path(path)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    array = _load_dicom(path) if is_dicom(path) else _load_raster(path)
    if channels == 3 and array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif channels == 1 and array.ndim == 3:
        array = array.mean(axis=2, dtype=np.float32)
    return np.ascontiguousarray(array, dtype=np.float32)


def _load_raster(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                return np.asarray(img, dtype=np.float32) / 65535.0
            if img.mode not in ("L", "RGB"):
                img = img.convert("RGB")
            return np.asarray(img, dtype=np.float32) / 255.0
    except UnidentifiedImageError as exc:
        raise ImageError("not an image (or an unsupported format)", path) from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"cannot decode image ({exc})", path) from exc


def _load_dicom(path: Path) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    dataset = _read_dicom(path, defer=False)
    try:
        pixels = dataset.pixel_array
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for bad pixel data
        raise ImageError(f"cannot decode DICOM pixel data ({exc})", path) from exc
    if pixels.ndim == 3 and pixels.shape[-1] != 3:
        pixels = pixels[0]  # multi-frame: the first frame
    values = apply_modality_lut(pixels, dataset).astype(np.float32)
    if "WindowCenter" in dataset and "WindowWidth" in dataset:
        values = apply_voi_lut(values, dataset).astype(np.float32)
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    if str(dataset.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        scaled = 1.0 - scaled
    return scaled
