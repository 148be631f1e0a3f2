"""Image reading: 8/16-bit PNG, EXIF orientation, DICOM, and every decode error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_tools.dicom import write_dicom
from fracdet.data.images import is_dicom, load_image, read_image_info
from fracdet.errors import ImageError


def make_dicom(
    path: Path,
    pixels: np.ndarray | None,
    *,
    photometric: str = "MONOCHROME2",
    window: tuple[float, float] | None = None,
) -> Path:
    """A minimal secondary-capture DICOM (optionally without pixel data)."""
    return write_dicom(path, pixels, photometric=photometric, window=window)


def test_8bit_png_and_jpeg(tmp_path):
    pixels = np.array([[0, 255], [128, 64]], dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    image = load_image(tmp_path / "a.png")
    assert image.dtype == np.float32 and image.shape == (2, 2)
    np.testing.assert_allclose(image, pixels / 255.0, atol=1e-6)
    assert load_image(tmp_path / "a.png", channels=3).shape == (2, 2, 3)
    info = read_image_info(tmp_path / "a.png")
    assert (info.width, info.height, info.format) == (2, 2, "PNG")


def test_16bit_png_uses_the_full_range(tmp_path):
    pixels = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "a16.png")
    image = load_image(tmp_path / "a16.png")
    np.testing.assert_allclose(image, pixels / 65535.0, atol=1e-6)
    assert read_image_info(tmp_path / "a16.png").mode.startswith("I")


def test_exif_rotated_jpeg_reports_the_displayed_size(tmp_path):
    # Stored 40 wide x 30 high with orientation 6 (rotate 90°): displayed 30 x 40, as FracAtlas
    # annotates.
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("L", (40, 30), 100).save(tmp_path / "r.jpg", exif=exif)
    info = read_image_info(tmp_path / "r.jpg")
    assert (info.width, info.height) == (30, 40)
    assert load_image(tmp_path / "r.jpg").shape == (40, 30)


def test_truncated_jpeg_is_caught_by_the_header_check(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(
        tmp_path / "t.jpg"
    )
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"t\.jpg: truncated JPEG"):
        read_image_info(tmp_path / "t.jpg")
    with pytest.raises(ImageError, match="t.jpg"):
        load_image(tmp_path / "t.jpg")


def test_truncated_png(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(
        tmp_path / "t.png"
    )
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated PNG"):
        read_image_info(tmp_path / "t.png")
    # Cut inside the last checksum only: every pixel is there, so the image is kept with a note.
    (tmp_path / "t.png").write_bytes(data[:-20])
    assert (
        "no PNG end-of-image marker, but every pixel decodes"
        in read_image_info(tmp_path / "t.png").note
    )


def noise_jpeg(path: Path, size: int = 96, **options) -> bytes:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (size, size), dtype=np.uint8)).save(
        path, **options
    )
    return path.read_bytes()


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("padding", [b"\0" * 1500, bytes(range(256)) * 8])
def test_jpeg_with_trailing_bytes_after_its_end_marker_is_kept_with_a_note(tmp_path, full, padding):
    """Like FracAtlas IMG0004027.jpg: a complete JPEG, then more than the cheap check's tail of
    padding."""
    data = noise_jpeg(tmp_path / "p.jpg")
    (tmp_path / "p.jpg").write_bytes(data + padding)
    info = read_image_info(tmp_path / "p.jpg", full=full)
    assert (info.width, info.height, info.format) == (96, 96, "JPEG")
    assert (
        info.note
        == f"trailing bytes after end of image ({len(padding)} bytes after the JPEG end marker; "
        "the image decodes completely)"
    )
    assert load_image(tmp_path / "p.jpg").shape == (96, 96)


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("padding", [b"", b"\0" * 1500])
def test_jpeg_cut_mid_scan_is_still_truncated(tmp_path, progressive, padding):
    """Padded or not, a JPEG cut inside its entropy-coded data does not decode: it is dropped."""
    data = noise_jpeg(tmp_path / "c.jpg", size=200, progressive=progressive)
    (tmp_path / "c.jpg").write_bytes(data[: len(data) // 2] + padding)
    with pytest.raises(
        ImageError, match=r"c\.jpg: truncated JPEG \(no end-of-image marker, and decoding fails"
    ):
        read_image_info(tmp_path / "c.jpg")
    with pytest.raises(ImageError, match="c.jpg"):
        read_image_info(tmp_path / "c.jpg", full=True)


def test_complete_images_have_no_note_and_a_wrong_suffix_gets_one(tmp_path):
    noise_jpeg(tmp_path / "ok.jpg")
    assert read_image_info(tmp_path / "ok.jpg").note is None
    Image.new("L", (8, 6)).save(tmp_path / "png.jpg", format="PNG")
    info = read_image_info(tmp_path / "png.jpg")
    assert info.format == "PNG" and info.note == "content is PNG but the suffix is .jpg"


def test_corrupt_pixel_data_needs_the_full_check(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(
        tmp_path / "c.png"
    )
    data = bytearray((tmp_path / "c.png").read_bytes())
    start = data.find(b"IDAT") + 20
    data[start : start + 180] = (
        np.random.default_rng(1).integers(0, 255, 180, dtype=np.uint8).tobytes()
    )  # keep IEND
    (tmp_path / "c.png").write_bytes(bytes(data))
    read_image_info(tmp_path / "c.png")  # header and end marker look fine
    with pytest.raises(ImageError, match="c.png: cannot decode"):
        read_image_info(tmp_path / "c.png", full=True)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [("e.jpg", b"", "empty file"), ("n.jpg", b"not an image at all", "not an image")],
)
def test_empty_and_non_image_files(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageError, match=message):
        read_image_info(tmp_path / name)


def test_dicom_rescaled_windowed_and_monochrome1_inverted(tmp_path):
    pixels = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    mono2 = make_dicom(tmp_path / "a.dcm", pixels)
    mono1 = make_dicom(
        tmp_path / "b", pixels, photometric="MONOCHROME1"
    )  # no suffix: found by magic
    assert is_dicom(mono1)
    info = read_image_info(mono2)
    assert (info.width, info.height, info.format) == (2, 2, "DICOM")
    np.testing.assert_allclose(load_image(mono2), pixels / 4000.0, atol=1e-6)
    np.testing.assert_allclose(load_image(mono1), 1 - pixels / 4000.0, atol=1e-6)
    windowed = load_image(make_dicom(tmp_path / "w.dcm", pixels, window=(1000, 1000)))
    assert windowed[0, 0] == 0.0 and windowed[1, 1] == 1.0  # clipped by the window


def test_dicom_without_pixel_data(tmp_path):
    path = make_dicom(tmp_path / "empty.dcm", None)
    with pytest.raises(ImageError, match="empty.dcm: DICOM without pixel data"):
        read_image_info(path)
    with pytest.raises(ImageError, match="without pixel data"):
        load_image(path)


def test_bad_channels_argument(tmp_path):
    Image.new("L", (4, 4)).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="channels"):
        load_image(tmp_path / "a.png", channels=2)
