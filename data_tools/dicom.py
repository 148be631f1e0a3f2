"""A minimal DICOM writer (secondary capture, 16-bit grey) for demo and test data.

Real radiographs come from modalities and PACS exports; fracdet only reads DICOM. This writer
exists so the demo and the tests can make DICOM files without shipping binary data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["write_dicom"]


def write_dicom(
    path: Path,
    pixels: np.ndarray | None,
    *,
    photometric: str = "MONOCHROME2",
    window: tuple[float, float] | None = None,
    bits_stored: int = 12,
) -> Path:
    """Write ``pixels`` (2-D unsigned integers, or ``None`` for a file without pixel data) to
    ``path``."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.Modality, ds.PatientID = "DX", "PHANTOM"
    ds.PhotometricInterpretation = photometric
    ds.SamplesPerPixel = 1
    if pixels is not None:
        ds.Rows, ds.Columns = pixels.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = (
            16,
            bits_stored,
            bits_stored - 1,
            0,
        )
        ds.RescaleSlope, ds.RescaleIntercept = 1, 0
        if window:
            ds.WindowCenter, ds.WindowWidth = window
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return Path(path)
