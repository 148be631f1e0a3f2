"""DICOM radiographs: decode any transfer syntax pydicom can, then show the pixels as a viewer
would, in [0, 1].

pydicom does the decoding (its pixel-data plugins: the ``dicom`` extra installs the ones for
JPEG Lossless, 12-bit JPEG Extended, JPEG-LS and JPEG 2000) and the LUT arithmetic
(:func:`~pydicom.pixels.apply_modality_lut`, :func:`~pydicom.pixels.apply_voi_lut`); this
module only decides the order and the output range, the places where a radiograph goes wrong
silently:

- Modality LUT (a Modality LUT Sequence, or Rescale Slope/Intercept) first, on the stored
  values that pydicom has already masked to Bits Stored and sign-extended when signed.
- VOI: a VOI LUT Sequence (preferred, as pydicom does) or the first Window Center/Width. Its
  output range (the LUT's bit depth; the window's ``y_min``..``y_max``) maps to [0, 1], so a
  window means the same contrast as on a reading screen, whatever the image's own range.
  Without a VOI, the image's own minimum..maximum maps to [0, 1] (a viewer's auto window).
- MONOCHROME1 (low values bright) is inverted last, so bone is bright as in every other format.
- Colour (RGB, YBR converted to RGB by pydicom, palette colour through its LUT) is scaled by its
  bit depth, no windowing.
- Multi-frame files are refused: a frame of a cine, tomosynthesis or enhanced CT/MR stack is not
  the projection radiograph the models learned from, and a first-frame guess would be silent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fracdet.errors import ImageError

__all__ = ["PixelSpacing", "read_dicom", "decode_dicom", "dicom_to_unit", "pixel_spacing"]

#: Where the physical pixel size is, most calibrated first: Pixel Spacing (at the patient, when
#: a projection radiograph carries it), Imager Pixel Spacing (at the detector face, magnified),
#: Nominal Scanned Pixel Spacing (digitised film).
_SPACING_TAGS = ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing")
_COLOUR = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "PALETTE COLOR"})


@dataclass(frozen=True, slots=True)
class PixelSpacing:
    """The size of one pixel in mm (``row``: between rows, ``column``: between columns) and
    the tag it came from, which says where it was measured."""

    row: float
    column: float
    source: str


def read_dicom(path: Path, *, pixels: bool):  # -> pydicom.Dataset
    """The dataset of a single-frame image DICOM; ``pixels=False`` reads the header only."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        dataset = pydicom.dcmread(path, defer_size=None if pixels else "1 KB")
    except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise ImageError(f"cannot read DICOM ({_one_line(exc)})", path) from exc
    if "PixelData" not in dataset or "Rows" not in dataset:
        raise ImageError("DICOM without pixel data", path)
    frames = _frames(dataset, path)
    if frames > 1:
        raise ImageError(
            f"multi-frame DICOM ({frames} frames): fracdet reads single-frame radiographs; "
            "split the frames into files first (e.g. one file per frame with pydicom)",
            path,
        )
    return dataset


def _frames(dataset: Any, path: Path) -> int:
    try:
        value = dataset.get("NumberOfFrames", 1)
        return int(value) if value not in (None, "") else 1
    except (TypeError, ValueError) as exc:
        raise ImageError(f"invalid Number of Frames ({_one_line(exc)})", path) from exc


def decode_dicom(dataset: Any, path: Path) -> np.ndarray:
    """The stored values as pydicom's plugins decode them (YBR converted to RGB), or a clear
    :class:`ImageError` naming the transfer syntax and what to install when no plugin can."""
    from pydicom.pixels import get_decoder

    meta = getattr(dataset, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    try:
        return dataset.pixel_array
    except Exception as exc:  # noqa: BLE001 - pydicom and its plugins raise many types
        name = getattr(syntax, "name", None) or str(syntax or "unknown transfer syntax")
        hint = ""
        try:
            decoder = get_decoder(syntax) if syntax is not None else None
        except (NotImplementedError, ValueError):
            decoder = None
        if syntax is not None and decoder is None:
            hint = f"; pydicom has no decoder for {name}"
        elif decoder is not None and not decoder.is_available:
            hint = f"; {name} needs a decoder plugin: pip install 'fracdet[dicom]'"
        raise ImageError(
            f"cannot decode DICOM pixel data ({name}: {_one_line(exc)}){hint}", path
        ) from exc


def dicom_to_unit(stored: np.ndarray, dataset: Any, path: Path) -> np.ndarray:
    """Stored values -> float32 in [0, 1] as a viewer shows them (the rules in the module doc)."""
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    from pydicom.pixels import apply_modality_lut

    try:
        if photometric in _COLOUR or stored.ndim == 3:
            return _colour_to_unit(stored, dataset, photometric)
        values = np.asarray(apply_modality_lut(stored, dataset), dtype=np.float64)
        scaled = _voi_to_unit(values, dataset)
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise ImageError(f"invalid DICOM LUT or window ({_one_line(exc)})", path) from exc
    if scaled is None:
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    scaled = np.clip(scaled, 0.0, 1.0)
    if photometric == "MONOCHROME1":
        scaled = 1.0 - scaled
    return scaled.astype(np.float32)


def _voi_to_unit(values: np.ndarray, dataset: Any) -> np.ndarray | None:
    """The VOI LUT or window, its output range mapped to [0, 1]; ``None`` without a VOI."""
    from pydicom.pixels import apply_voi, apply_windowing

    if dataset.get("VOILUTSequence"):
        bits = int(dataset.VOILUTSequence[0].LUTDescriptor[2])
        # A LUT is indexed by integers: the modality output rounded (pydicom warns on floats).
        indices = np.rint(values).astype(np.int64)
        return np.asarray(apply_voi(indices, dataset), dtype=np.float64) / (2.0**bits - 1.0)
    if "WindowCenter" in dataset and "WindowWidth" in dataset:
        windowed = np.asarray(apply_windowing(values, dataset), dtype=np.float64)
        # The window's output range, from pydicom itself: the values far below and above it.
        big = 1e12 + float(np.abs(values).max())
        with np.errstate(over="ignore"):
            low, high = np.asarray(apply_windowing(np.array([-big, big]), dataset), float)
        return (windowed - low) / (high - low) if high != low else None
    return None


def _colour_to_unit(stored: np.ndarray, dataset: Any, photometric: str) -> np.ndarray:
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        rgb = apply_color_lut(stored, dataset)
        return (rgb / float(np.iinfo(rgb.dtype).max)).astype(np.float32)
    bits = int(dataset.get("BitsStored", 8) or 8)
    return (stored.astype(np.float64) / (2.0**bits - 1.0)).astype(np.float32)


def pixel_spacing(path: str | Path) -> PixelSpacing | None:
    """The pixel size a DICOM header records (``None`` when none, or for other formats)."""
    import pydicom

    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - a header we cannot read has no spacing to report
        return None
    for tag in _SPACING_TAGS:
        value = dataset.get(tag)
        try:
            row, column = (float(v) for v in value)
        except (TypeError, ValueError):
            continue
        if row > 0 and column > 0:
            return PixelSpacing(row, column, tag)
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
