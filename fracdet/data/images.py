"""Reading images: JPEG, PNG (8 and 16 bit) and DICOM, as pixel arrays in [0, 1].

Decode failures become :class:`~fracdet.errors.ImageError` naming the file and the problem.
Orientation follows EXIF, because FracAtlas annotates the EXIF-transposed image.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fracdet.data.dicom import decode_dicom, dicom_to_unit, read_dicom
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
_END_MARKERS = {
    "JPEG": (b"\xff\xd9", 2),
    "PNG": (b"IEND", 8),
}  # marker, bytes from its start to the end of file
# PIL's format plugins raise these (not only OSError) on hostile or damaged files.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    struct.error,
)
_SUFFIX_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What the header says: size as displayed (after EXIF orientation), mode and format.

    ``note`` says what is odd about a usable image (trailing bytes after its end marker,
    content that does not match its suffix): worth a line in a report, not a reason to drop it.
    """

    width: int
    height: int
    mode: str
    format: str
    note: str | None = None


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


def _ends_with_marker(fh: BinaryIO, size: int, fmt: str) -> bool:
    """The cheap completeness check: a JPEG's EOI or a PNG's IEND in the last bytes."""
    marker = _END_MARKERS.get(fmt)
    if marker is None:
        return True
    fh.seek(max(0, size - _TAIL_BYTES))
    return marker[0] in fh.read()


def _trailing_note(fh: BinaryIO, size: int, fmt: str) -> str:
    """What follows the last end marker of an image that decoded completely."""
    marker, length = _END_MARKERS[fmt]
    fh.seek(0)
    end = fh.read().rfind(marker)
    if end < 0:
        return f"no {fmt} end-of-image marker, but every pixel decodes"
    return (
        f"trailing bytes after end of image ({size - end - length} bytes after the {fmt} end "
        "marker; the image decodes completely)"
    )


def _suffix_note(path: Path, fmt: str) -> str | None:
    expected = _SUFFIX_FORMATS.get(path.suffix.lower())
    if expected is None or expected == fmt:
        return None
    return f"content is {fmt} but the suffix is {path.suffix}"


def read_image_info(path: str | Path, *, full: bool = False) -> ImageInfo:
    """Header facts of a raster image, checking that it is complete.

    ``full=False`` parses the header and looks for the end-of-image marker in the last bytes
    (fast, catches truncated files); when the marker is not there, the image is decoded
    before deciding, because valid images may carry padding after their marker (FracAtlas
    has some): one that decodes completely is kept, with a note. ``full=True`` decodes every
    pixel (slow, catches corrupt data too). DICOM is read with pydicom. The file is opened
    once: on datasets of thousands of small images, opens dominate.
    """
    path = Path(path)
    if is_dicom(path):
        return _read_dicom_info(path)
    note = None
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
                if not _ends_with_marker(fh, size, fmt):
                    if not full:
                        _decode_or_truncated(img, fmt, path)
                    note = _trailing_note(fh, size, fmt)
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageError("not an image (or an unsupported format)", path) from exc
    except (*_DECODE_ERRORS, Image.DecompressionBombError) as exc:
        raise ImageError(f"cannot decode image ({_one_line(exc)})", path) from exc
    if orientation in _SWAPPING_ORIENTATIONS:
        width, height = height, width
    notes = [n for n in (note, _suffix_note(path, fmt)) if n]
    return ImageInfo(width, height, mode, fmt, "; ".join(notes) or None)


def _decode_or_truncated(img: Image.Image, fmt: str, path: Path) -> None:
    """Decode every pixel; failing that, the image is truncated (cut before its end marker)."""
    try:
        img.load()
    except (*_DECODE_ERRORS, Image.DecompressionBombError) as exc:
        raise ImageError(
            f"truncated {fmt} (no end-of-image marker, and decoding fails: {_one_line(exc)})", path
        ) from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _orientation(img: Image.Image) -> int:
    """EXIF orientation from the header; PNG keeps EXIF after the pixels, so only if parsed."""
    if img.format == "PNG" and "exif" not in img.info:
        return 1  # PIL would decode the whole image to look for a trailing eXIf chunk
    try:
        return int(img.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - broken EXIF must not hide a readable image
        return 1


def _read_dicom_info(path: Path) -> ImageInfo:
    dataset = read_dicom(path, pixels=False)
    return ImageInfo(
        int(dataset.Columns), int(dataset.Rows), str(dataset.PhotometricInterpretation), "DICOM"
    )


def load_image(path: str | Path, *, channels: int = 1) -> np.ndarray:
    """Pixels as float32 in [0, 1], shape ``(H, W)`` for ``channels=1`` or ``(H, W, 3)``.

    8-bit images are divided by 255 and 16-bit ones by 65535; DICOM gets its Modality LUT
    (rescale), its VOI (window or VOI LUT) and MONOCHROME1 inversion so that bone is bright, as
    in every other format (:mod:`fracdet.data.dicom`).
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
    except (*_DECODE_ERRORS, Image.DecompressionBombError) as exc:
        raise ImageError(f"cannot decode image ({_one_line(exc)})", path) from exc


def _load_dicom(path: Path) -> np.ndarray:
    dataset = read_dicom(path, pixels=True)
    return dicom_to_unit(decode_dicom(dataset, path), dataset, path)
