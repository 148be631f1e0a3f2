"""DICOM as scanners write it: every transfer syntax of pydicom's own single-frame reference files,
and the radiograph semantics on hand-made files.

The reference files are the ones the installed pydicom carries in ``pydicom/data/test_files``
(pydicom 3 downloads others on demand; nothing here touches the network). Each decodes, through
fracdet's reader, to the array pydicom's own ``pixel_array`` gives, to every other installed
plugin's decode of it, and to the pixel values pydicom's test suite publishes for it
(``tests/pixels/pixels_reference.py`` in the pydicom repository; copied below as data), or to the
uncompressed original where the encoding is lossless and the original ships too. Then all twelve
go through ``fracdet predict`` and the audit's plain-folder mode.
"""

from __future__ import annotations

import csv
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.pixels import get_decoder
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from typer.testing import CliRunner

from fracdet.cli import app
from fracdet.data.dicom import decode_dicom, read_dicom
from fracdet.data.images import load_image
from fracdet.errors import ImageError
from fracdet.predict import PredictConfig, predict_folder

runner = CliRunner()
TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"

_MR = [((0, slice(31, 34)), (422, 319, 361)), ((31, slice(0, 3)), (366, 363, 322))]
_MR_LAST = [((-1, slice(-3, None)), (1369, 1129, 862))]
_SC_RGB = [((5, 50), (255, 0, 0)), ((15, 50), (255, 128, 128)), ((25, 50), (0, 255, 0))]
_SC_RGB += [((65, 50), (0, 0, 0)), ((75, 50), (64, 64, 64)), ((95, 50), (255, 255, 255))]

#: transfer syntax UID -> (reference file, pixel values pydicom publishes for it, the lossless
#: original it must equal). ``None``: pydicom publishes none for a locally shipped file of this
#: syntax; the decode is held to pydicom's own and to every other installed plugin's.
SYNTAXES: dict[str, tuple[str, list, str | None]] = {
    "1.2.840.10008.1.2": ("MR_small_implicit.dcm", _MR + _MR_LAST, "MR_small.dcm"),
    "1.2.840.10008.1.2.1": ("MR_small.dcm", _MR + _MR_LAST, None),
    "1.2.840.10008.1.2.1.99": (
        "image_dfl.dcm",
        [((300, slice(255, 263)), (138, 65, 65, 65, 65, 35, 35, 35))],
        None,
    ),
    "1.2.840.10008.1.2.2": ("MR_small_expb.dcm", _MR + _MR_LAST, "MR_small.dcm"),
    "1.2.840.10008.1.2.4.50": ("SC_rgb_dcmtk_+eb+cr.dcm", _SC_RGB, None),
    "1.2.840.10008.1.2.4.51": ("JPGExtended.dcm", [((420, 140), 244), ((230, 120), 95)], None),
    "1.2.840.10008.1.2.4.70": ("SC_rgb_jpeg_gdcm.dcm", [], "SC_rgb_rle.dcm"),
    "1.2.840.10008.1.2.4.80": (
        "MR_small_jpeg_ls_lossless.dcm",
        _MR + [((slice(55, 64), 35), (170, 193, 191, 373, 1293, 2053, 1879, 1683, 1711))],
        "MR_small.dcm",
    ),
    "1.2.840.10008.1.2.4.81": ("JPEGLSNearLossless_16.dcm", [], None),
    "1.2.840.10008.1.2.4.90": (
        "GDCMJ2K_TextGBR.dcm",
        [((45, 140), (223, 32, 32)), ((46, 140), (255, 0, 0)), ((350, 195), (128, 128, 128))],
        None,
    ),
    "1.2.840.10008.1.2.4.91": ("JPEG2000.dcm", [], None),
    "1.2.840.10008.1.2.5": ("MR_small_RLE.dcm", _MR + _MR_LAST, "MR_small.dcm"),
}


#: Lossy syntaxes: their decoders may differ by rounding (pydicom's own reference says so).
LOSSY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81"}
LOSSY |= {"1.2.840.10008.1.2.4.91"}


def _ref(name: str) -> Path:
    path = TEST_FILES / name
    if not path.is_file():
        pytest.fail(f"{name} is not in the installed pydicom's test files ({TEST_FILES})")
    return path


def _short(uid: str) -> str:
    """A test id that names the syntax (and starts with no command's name)."""
    return "ts-" + pydicom.uid.UID(uid).keyword


def test_the_twelve_are_every_syntax_among_the_local_single_frame_files():
    found = set()
    for path in TEST_FILES.glob("*.dcm"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path, stop_before_pixels=True)
                frames = ds.get("NumberOfFrames", 1)
        except Exception:  # noqa: BLE001 - files without a meta header are not images here
            continue
        if "Rows" in ds and str(frames) in ("1", "None") and "TransferSyntaxUID" in ds.file_meta:
            found.add(str(ds.file_meta.TransferSyntaxUID))
    assert found == set(SYNTAXES)
    assert len(SYNTAXES) == 12


@pytest.mark.parametrize("uid", list(SYNTAXES), ids=[_short(u) for u in SYNTAXES])
def test_transfer_syntax_decodes_to_pydicom_reference(uid):
    name, points, original = SYNTAXES[uid]
    path = _ref(name)
    dataset = read_dicom(path, pixels=True)
    assert str(dataset.file_meta.TransferSyntaxUID) == uid
    ours = decode_dicom(dataset, path)
    np.testing.assert_array_equal(ours, pydicom.dcmread(path).pixel_array)
    for index, value in points:
        assert tuple(np.atleast_1d(ours[index]).ravel()) == tuple(np.atleast_1d(value)), index
    if original is not None:
        np.testing.assert_array_equal(ours, pydicom.dcmread(_ref(original)).pixel_array)
    syntax = pydicom.uid.UID(uid)
    if syntax.is_compressed:  # every installed plugin that reads it gives the same array
        agreeing = 0
        for plugin in get_decoder(syntax).available_plugins:
            try:
                other = pydicom.pixels.pixel_array(path, decoding_plugin=plugin)
            except RuntimeError as exc:  # Pillow: no 12-bit JPEG, no GDCM-written J2K
                assert plugin == "pillow", exc
                continue
            if uid in LOSSY:  # DCT decoders round their IDCT differently: one grey level
                assert np.abs(ours.astype(np.int64) - other).max() <= 1, plugin
            else:
                np.testing.assert_array_equal(ours, other)
            agreeing += 1
        assert agreeing >= 1
    pixels = load_image(path)
    assert pixels.shape == (int(dataset.Rows), int(dataset.Columns))
    assert pixels.dtype == np.float32 and pixels.min() >= 0.0 and pixels.max() <= 1.0


@pytest.fixture(scope="module")
def syntax_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One reference file per transfer syntax, named by it."""
    folder = tmp_path_factory.mktemp("syntaxes")
    for uid, (name, _, _) in SYNTAXES.items():
        shutil.copy(_ref(name), folder / f"{pydicom.uid.UID(uid).keyword}.dcm")
    return folder


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_every_syntax_through_predict(syntax_folder, tiny_models, tmp_path):
    out = tmp_path / "out"
    cls_run, det = tiny_models
    result = runner.invoke(
        app,
        [
            "predict",
            str(syntax_folder),
            "--cls",
            str(cls_run),
            "--det",
            str(det),
            "--out",
            str(out),
            "--det-imgsz",
            "64",
            "--precision",
            "fp32",
            "--device",
            "cpu",
            "--workers",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = {r["path"]: r for r in _rows(out / "predictions.csv")}
    assert len(rows) == 12
    for uid, (name, _, _) in SYNTAXES.items():
        row = rows[f"{pydicom.uid.UID(uid).keyword}.dcm"]
        assert row["status"] == "ok" and row["fracture_probability"], row
        ds = pydicom.dcmread(_ref(name), stop_before_pixels=True)
        assert (int(row["width"]), int(row["height"])) == (ds.Columns, ds.Rows)
        spacing = ds.get("PixelSpacing")
        if spacing is not None:
            assert float(row["pixel_spacing_row_mm"]) == pytest.approx(float(spacing[0]))
            assert float(row["pixel_spacing_col_mm"]) == pytest.approx(float(spacing[1]))
            assert row["pixel_spacing_source"] == "PixelSpacing"
        else:
            assert row["pixel_spacing_row_mm"] == row["pixel_spacing_source"] == ""


def test_every_syntax_through_the_audit_plain_folder(syntax_folder, tiny_models, tmp_path):
    out = tmp_path / "audit"
    cls_run, det = tiny_models
    result = runner.invoke(
        app,
        [
            "audit",
            str(syntax_folder),
            "--cls",
            str(cls_run),
            "--det",
            str(det),
            "--out",
            str(out),
            "--checks",
            "none",
            "--steps",
            "1",
            "--methods",
            "saliency",
            "--batch-size",
            "12",
            "--det-imgsz",
            "64",
            "--precision",
            "fp32",
            "--device",
            "cpu",
            "--workers",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = _rows(out / "per_image.csv")
    assert len(rows) == 12
    assert all(r["status"] == "ok" for r in rows), [r for r in rows if r["status"] != "ok"]


# --- the radiograph semantics, on hand-made files ----------------------------------------------


def _dicom(path: Path, stored: np.ndarray, **attrs) -> Path:
    """A DX file of ``stored`` (written as given: uint16 or int16) with extra attributes."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, generate_uid()
    ds.Modality, ds.SamplesPerPixel, ds.PhotometricInterpretation = "DX", 1, "MONOCHROME2"
    frames = stored.shape[0] if stored.ndim == 3 else 1
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = int(stored.dtype.kind == "i")
    if frames > 1:
        ds.NumberOfFrames = frames
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _lut(descriptor: list[int], data: list[int]) -> DicomSequence:
    item = pydicom.Dataset()
    item.LUTDescriptor = descriptor
    item.LUTData = np.asarray(data, dtype="<u2").tobytes()  # OW, as scanners write it
    return DicomSequence([item])


ROW = np.array([[50, 100, 150, 200]], dtype=np.uint16)


def test_rescale_then_window_maps_the_window_not_the_image_range(tmp_path):
    # modality: 2 * stored - 100 = [0, 100, 200, 300]; window c=100.5, w=201 covers 0..200:
    # DICOM's LINEAR window gives (x - 100) / 200 + 0.5, clipped. The image's own min..max
    # would have given [0, 1/3, 2/3, 1].
    path = _dicom(
        tmp_path / "w.dcm",
        ROW,
        RescaleSlope=2,
        RescaleIntercept=-100,
        WindowCenter=100.5,
        WindowWidth=201,
    )
    np.testing.assert_allclose(load_image(path), [[0.0, 0.5, 1.0, 1.0]], atol=1e-6)


def test_sigmoid_window(tmp_path):
    path = _dicom(
        tmp_path / "s.dcm", ROW, WindowCenter=100, WindowWidth=100, VOILUTFunction="SIGMOID"
    )
    expected = 1.0 / (1.0 + np.exp(-4.0 * (ROW - 100.0) / 100.0))
    np.testing.assert_allclose(load_image(path), expected, atol=1e-6)


def test_negative_slope_without_window_keeps_high_values_bright(tmp_path):
    path = _dicom(tmp_path / "n.dcm", ROW, RescaleSlope=-1, RescaleIntercept=1000)
    np.testing.assert_allclose(load_image(path), [[1.0, 2 / 3, 1 / 3, 0.0]], atol=1e-6)


def test_modality_lut_sequence(tmp_path):
    stored = np.array([[0, 1, 2, 3]], dtype=np.uint16)
    path = _dicom(
        tmp_path / "m.dcm", stored, ModalityLUTSequence=_lut([4, 0, 16], [0, 1000, 3000, 4000])
    )
    np.testing.assert_allclose(load_image(path), [[0.0, 0.25, 0.75, 1.0]], atol=1e-6)


def test_voi_lut_sequence_wins_over_the_window_and_maps_its_bit_depth(tmp_path):
    stored = np.array([[0, 1, 2, 3]], dtype=np.uint16)
    path = _dicom(
        tmp_path / "v.dcm",
        stored,
        VOILUTSequence=_lut([4, 0, 8], [0, 51, 204, 255]),
        WindowCenter=1,
        WindowWidth=2,
    )
    np.testing.assert_allclose(load_image(path), [[0.0, 0.2, 0.8, 1.0]], atol=1e-6)


def test_monochrome1_is_inverted_after_the_window(tmp_path):
    path = _dicom(
        tmp_path / "m1.dcm",
        ROW,
        PhotometricInterpretation="MONOCHROME1",
        WindowCenter=100.5,
        WindowWidth=201,
    )
    # stored 50..200: window 0..200 -> (x - 100) / 200 + 0.5 = x / 200, then inverted
    np.testing.assert_allclose(load_image(path), 1.0 - ROW / 200.0, atol=1e-6)
    plain = _dicom(tmp_path / "m1p.dcm", ROW, PhotometricInterpretation="MONOCHROME1")
    np.testing.assert_allclose(load_image(plain), [[1.0, 2 / 3, 1 / 3, 0.0]], atol=1e-6)


def test_bits_stored_below_bits_allocated_ignores_the_high_bits(tmp_path):
    # 12 of 16 bits: the top nibble carries junk (old overlay planes) that must not count
    raw = np.array([[0xF000 | 0, 0x1000 | 2048, 0x0FFF]], dtype=np.uint16)
    path = _dicom(tmp_path / "b.dcm", raw, BitsStored=12, HighBit=11)
    np.testing.assert_array_equal(
        decode_dicom(read_dicom(path, pixels=True), path), [[0, 2048, 4095]]
    )
    np.testing.assert_allclose(load_image(path), [[0.0, 2048 / 4095, 1.0]], atol=1e-6)


def test_signed_pixels_are_sign_extended_from_bits_stored(tmp_path):
    # 12-bit two's complement in 16 bits: 0x800 is -2048, 0x7FF is 2047
    raw = np.array([[0x0800, 0x0000, 0x07FF]], dtype=np.uint16).view(np.int16)
    path = _dicom(
        tmp_path / "s.dcm", raw, BitsStored=12, HighBit=11, RescaleIntercept=-1024, RescaleSlope=1
    )
    np.testing.assert_array_equal(
        decode_dicom(read_dicom(path, pixels=True), path), [[-2048, 0, 2047]]
    )
    np.testing.assert_allclose(load_image(path), [[0.0, 2048 / 4095, 1.0]], atol=1e-6)


def test_multi_frame_is_refused_in_one_line_and_one_frame_is_read(tmp_path):
    frames = np.stack([ROW, ROW[:, ::-1]])
    path = _dicom(tmp_path / "cine.dcm", frames)
    with pytest.raises(ImageError, match=r"cine\.dcm: multi-frame DICOM \(2 frames\)") as info:
        load_image(path)
    assert "\n" not in str(info.value)
    single = _dicom(tmp_path / "one.dcm", ROW, NumberOfFrames=1)
    np.testing.assert_allclose(load_image(single), [[0.0, 1 / 3, 2 / 3, 1.0]], atol=1e-6)


def test_pixel_spacing_in_predictions_and_multi_frame_skipped(tiny_models, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _dicom(folder / "calibrated.dcm", ROW, PixelSpacing=[0.1, 0.2], ImagerPixelSpacing=[0.15, 0.15])
    _dicom(folder / "detector.dcm", ROW, ImagerPixelSpacing=[0.143, 0.143])
    _dicom(folder / "none.dcm", ROW)
    _dicom(folder / "cine.dcm", np.stack([ROW, ROW]))
    summary = predict_folder(
        PredictConfig(
            folder=folder,
            output=tmp_path / "out",
            cls=tiny_models[0],
            workers=0,
            device="cpu",
            precision="fp32",
        )
    )
    rows = {r["path"]: r for r in _rows(summary.predictions)}
    spacing = {
        k: (r["pixel_spacing_row_mm"], r["pixel_spacing_col_mm"], r["pixel_spacing_source"])
        for k, r in rows.items()
    }
    assert spacing == {
        "calibrated.dcm": ("0.1", "0.2", "PixelSpacing"),
        "detector.dcm": ("0.143", "0.143", "ImagerPixelSpacing"),
        "none.dcm": ("", "", ""),
        "cine.dcm": ("", "", ""),
    }
    assert rows["cine.dcm"]["status"] == "skipped"
    assert rows["cine.dcm"]["reason"].startswith("multi-frame DICOM (2 frames)")
    assert all(rows[k]["status"] == "ok" for k in ("calibrated.dcm", "detector.dcm", "none.dcm"))


@pytest.mark.parametrize("layout", ["yolo", "coco"], ids=["convert-yolo", "convert-coco"])
def test_convert_skips_and_records_a_dicom_image_by_name(layout, tmp_path):
    """Decision: convert skips DICOM (the YOLO and COCO tools that read its output take raster
    files) and records it with the file's name; the rest converts."""
    from .corpus import coco, coco_doc, yolo

    if layout == "yolo":
        source = yolo(tmp_path)
        _dicom(source.parent / "images" / "train" / "scan.dcm", ROW)
        (source.parent / "labels" / "train" / "scan.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    else:
        doc = coco_doc()
        doc["images"].append({"id": 4, "file_name": "scan.dcm", "width": 4, "height": 1})
        source = coco(tmp_path, doc)
        _dicom(source.parent.parent / "images" / "scan.dcm", ROW)
    out = tmp_path / "out"
    result = runner.invoke(app, ["convert", str(source), str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "convert_report.json").read_text())
    found = [p for p in report["problems"] if "scan.dcm" in json.dumps(p)]
    assert len(found) == 1, report["problems"]
    assert "DICOM" in json.dumps(found[0]), found
    manifest = (out / "manifest.csv").read_text()
    assert "scan.dcm" not in manifest and manifest.count("\n") > 1


def test_a_syntax_without_its_plugin_is_skipped_naming_the_extra(monkeypatch, tmp_path):
    """Where the ``dicom`` extra is not installed: one line naming the file, the syntax and
    the extra to install (simulated: pydicom sees no available plugin)."""
    from pydicom.uid import JPEGLSLossless

    monkeypatch.setattr(get_decoder(JPEGLSLossless), "_available", {})
    path = shutil.copy(_ref("MR_small_jpeg_ls_lossless.dcm"), tmp_path / "ls.dcm")
    with pytest.raises(ImageError) as info:
        load_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: cannot decode DICOM pixel data (JPEG-LS Lossless")
    assert message.endswith("needs a decoder plugin: pip install 'fracdet[dicom]'")
    assert "\n" not in message


def test_a_window_of_zero_width_is_one_clear_line(tmp_path):
    path = _dicom(tmp_path / "zero.dcm", ROW, WindowCenter=100, WindowWidth=0)
    with pytest.raises(ImageError, match=r"zero\.dcm: invalid DICOM LUT or window \(") as info:
        load_image(path)
    assert "\n" not in str(info.value)
