"""Files as people's folders hold them: names that are not UTF-8, encodings beyond baseline JPEG
and 8-bit PNG, EXIF orientation, and a scan that streams with progress.

Each encoding is either read (the pixels equal a reference decode, upright as a viewer shows
them) or refused by the one reader with a reason that predict and convert record.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageOps
from typer.testing import CliRunner

from fracdet.audit.inputs import load_inputs
from fracdet.cli import app
from fracdet.data import scan as scan_module
from fracdet.data.convert import ConvertConfig, convert
from fracdet.data.images import _upright, load_image, read_image_info
from fracdet.data.scan import list_images, safe_name, scan_folder
from fracdet.errors import ImageError
from fracdet.mae.data import load_unlabelled

from .command_corpus import rows

runner = CliRunner()
# A ramp with no symmetry: any flip or rotation changes it.
RAMP = (np.arange(12 * 20).reshape(12, 20) % 251).astype(np.uint8)
BAD = b"caf\xe9-\xff.png"  # Latin-1 "café" and a byte no encoding maps: not UTF-8


def bad_name(folder: Path, name: bytes = BAD) -> Path:
    return Path(os.fsdecode(os.fsencode(folder) + b"/" + name))


def _save_heic(img: Image.Image, path: Path) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")  # test-only encoder (dev extra)
    pillow_heif.register_heif_opener()
    img.convert("RGB").save(path, format="HEIF", quality=-1)


# (name, writer, expected grey array or None for "close to RAMP / 255")
ENCODINGS = {
    "progressive_jpeg": ("x.jpg", lambda im, p: im.save(p, progressive=True, quality=100)),
    "cmyk_jpeg": ("x.jpg", lambda im, p: im.convert("CMYK").save(p, quality=100)),
    "png_16bit": ("x.png", lambda im, p: Image.fromarray(RAMP.astype(np.uint16) * 257).save(p)),
    "png_grey_alpha": ("x.png", lambda im, p: im.convert("LA").save(p)),
    "png_palette": ("x.png", lambda im, p: im.convert("P").save(p)),
    "png_rgba": ("x.png", lambda im, p: im.convert("RGBA").save(p)),
    "tiff_16bit": ("x.tif", lambda im, p: Image.fromarray(RAMP.astype(np.uint16) * 257).save(p)),
    "tiff_deflate": ("x.tif", lambda im, p: im.save(p, compression="tiff_deflate")),
    "webp_lossless": ("x.webp", lambda im, p: im.save(p, lossless=True)),
    "bmp": ("x.bmp", lambda im, p: im.save(p)),
    "jpeg2000": ("x.jp2", lambda im, p: im.save(p, irreversible=False)),
    "avif": ("x.avif", lambda im, p: im.convert("RGB").save(p, quality=100)),
    "heic": ("x.heic", _save_heic),
}
LOSSY = {"progressive_jpeg", "cmyk_jpeg", "avif", "heic"}


@pytest.mark.parametrize("kind", sorted(ENCODINGS))
def test_encoding_is_read(tmp_path: Path, kind: str) -> None:
    name, write = ENCODINGS[kind]
    path = tmp_path / name
    write(Image.fromarray(RAMP), path)
    info = read_image_info(path)
    pixels = load_image(path)
    assert (info.width, info.height) == (20, 12) and pixels.shape == (12, 20)
    error = np.abs(pixels - RAMP / 255.0).max()
    assert error < (0.06 if kind in LOSSY else 1e-6), error


def _multi_tiff(path: Path) -> None:
    Image.fromarray(RAMP).save(path, save_all=True, append_images=[Image.fromarray(RAMP)])


def _animated_webp(path: Path) -> None:
    frames = [Image.fromarray(RAMP), Image.fromarray(255 - RAMP)]
    frames[0].save(path, save_all=True, append_images=frames[1:], lossless=True)


REFUSED = {
    "tiff_multipage": ("x.tif", _multi_tiff, "multi-page TIFF (2 pages)"),
    "webp_animated": ("x.webp", _animated_webp, "animated WebP (2 pages)"),
    "tiff_float32": (
        "x.tif",
        lambda p: Image.fromarray(RAMP.astype(np.float32)).save(p),
        "32-bit floating-point",
    ),
}


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_encoding_is_refused_with_reason(tmp_path: Path, kind: str) -> None:
    name, write, reason = REFUSED[kind]
    path = tmp_path / name
    write(path)
    for read in (read_image_info, load_image):
        with pytest.raises(ImageError, match=re.escape(reason)):
            read(path)


def test_scrambled_rotated_tiff_is_refused_not_guessed(tmp_path: Path) -> None:
    """Pillow 13 scrambles an uncompressed rotated TIFF opened by path (memory-mapped); the
    readers open files instead (the orientation tests read such TIFFs right), and the guard
    refuses that decode should it happen."""
    path = tmp_path / "u.tif"
    Image.fromarray(RAMP).save(path, tiffinfo={0x0112: 6})
    with pytest.raises(ImageError, match="uncompressed TIFF with a rotating orientation"):
        _upright(Image.open(path), path)


def test_12bit_values_in_a_16bit_png_keep_their_scale(tmp_path: Path) -> None:
    """PNG has no 12-bit depth: 12-bit data is stored in 16 bits and read as stored (/65535)."""
    values = (RAMP.astype(np.uint16) * 16).clip(0, 4095)
    Image.fromarray(values).save(tmp_path / "x12.png")
    np.testing.assert_allclose(load_image(tmp_path / "x12.png"), values / 65535.0, atol=1e-7)


# --- EXIF orientation: all 8, in the formats that carry it ------------------------------------


def _with_orientation(fmt: str, orientation: int, path: Path) -> None:
    img = Image.fromarray(RAMP)
    if fmt in ("tif", "raw.tif"):
        compression = "tiff_deflate" if fmt == "tif" else None
        img.save(path, tiffinfo={0x0112: orientation}, compression=compression)
        return
    exif = Image.Exif()
    exif[0x0112] = orientation
    extra = {"quality": 100} if fmt == "jpg" else {"lossless": True} if fmt == "webp" else {}
    img.save(path, exif=exif, **extra)


@pytest.mark.parametrize("fmt", ["jpg", "png", "webp", "tif", "raw.tif"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_shows_the_viewers_pixels(
    tmp_path: Path, fmt: str, orientation: int
) -> None:
    """Reference: PIL.ImageOps.exif_transpose of the same stored pixels (what a viewer shows)."""
    path = tmp_path / f"o{orientation}.{fmt}"
    _with_orientation(fmt, orientation, path)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = Image.fromarray(RAMP)
    stored.info["exif"] = exif.tobytes()
    stored.getexif()[0x0112] = orientation
    expected = np.asarray(ImageOps.exif_transpose(stored)) / 255.0
    pixels = load_image(path)
    info = read_image_info(path)
    assert pixels.shape == expected.shape == (info.height, info.width)
    assert np.abs(pixels - expected).max() < (0.03 if fmt == "jpg" else 1e-6)


def test_exif_rotated_image_in_yolo_dataset_labels_refer_to_displayed_pixels(
    tmp_path: Path,
) -> None:
    """Ultralytics sizes labels with ``exif_size`` and reads images upright; convert does too:
    a box normalised to the displayed (rotated) image keeps its pixel place in COCO."""
    root = tmp_path / "yolo"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
    _with_orientation("jpg", 6, root / "images" / "train" / "r.jpg")  # stored 20x12, shown 12x20
    (root / "labels" / "train" / "r.txt").write_text("0 0.5 0.25 0.5 0.1\n")
    Image.fromarray(RAMP).save(root / "images" / "val" / "v.png")
    (root / "labels" / "val" / "v.txt").write_text("")
    (root / "data.yaml").write_text(
        yaml.safe_dump({"train": "images/train", "val": "images/val", "names": ["fracture"]})
    )
    out = tmp_path / "out"
    convert(ConvertConfig(root / "data.yaml", out, targets=("coco", "manifest"), split="official"))
    doc = json.loads((out / "annotations" / "instances_train.json").read_text())
    (image,) = [i for i in doc["images"] if i["file_name"].startswith("r")]
    assert (image["width"], image["height"]) == (12, 20)
    (ann,) = [a for a in doc["annotations"] if a["image_id"] == image["id"]]
    np.testing.assert_allclose(ann["bbox"], [3.0, 4.0, 6.0, 2.0], atol=1e-6)
    # ... and the pixels training and the audit read are those same upright 12x20 ones
    assert load_image(out / "images" / "train" / image["file_name"]).shape == (20, 12)


# --- names that are not valid UTF-8 -------------------------------------------------------------


def test_safe_name_escapes_only_what_is_not_utf8() -> None:
    assert safe_name("plain é.png") == "plain é.png"
    assert safe_name(os.fsdecode(BAD)) == "caf\\xe9-\\xff.png"


@pytest.fixture
def odd_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(RAMP).save(folder / "ok.png")
    Image.fromarray(255 - RAMP).save(bad_name(folder))
    bad_name(folder, b"notes-\xff.txt").write_text("x")
    bad_name(folder, b"broken-\xfe.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return folder


def test_non_utf8_names_scan_escaped(odd_folder: Path) -> None:
    scan = scan_folder(odd_folder)
    assert scan.images == ("broken-\\xfe.jpg", "caf\\xe9-\\xff.png", "ok.png")
    assert [o.path for o in scan.others] == ["notes-\\xff.txt"]
    assert load_image(odd_folder / scan.real("caf\\xe9-\\xff.png")).shape == (12, 20)


def test_escaped_name_colliding_with_a_real_name_is_reported(tmp_path: Path) -> None:
    Image.fromarray(RAMP).save(tmp_path / "a\\xff.png")  # a literal backslash in the name
    Image.fromarray(RAMP).save(bad_name(tmp_path, b"a\xff.png"))
    scan = scan_folder(tmp_path)
    assert scan.images == ("a\\xff.png",) and scan.real("a\\xff.png") == "a\\xff.png"
    assert [o.detail for o in scan.others] == [
        "its name is not valid UTF-8 and its escaped form names another file"
    ]


def test_predict_non_utf8_names(
    odd_folder: Path, tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    """Processed, written escaped in the CSV and the JSON report; a resume finds them done."""
    out = tmp_path / "out"
    args = ["--out", str(out), "--cls", str(tiny_models[0]), "--device", "cpu", "--workers", "0"]
    result = runner.invoke(app, ["predict", str(odd_folder), *args])
    assert result.exit_code == 0, result.output
    found = {r["path"]: r for r in rows(out / "predictions.csv")}
    assert found["caf\\xe9-\\xff.png"]["status"] == "ok"
    assert found["broken-\\xfe.jpg"]["status"] == "skipped" and found["broken-\\xfe.jpg"]["reason"]
    report = json.loads((out / "predict_report.json").read_text(encoding="utf-8"))
    assert report["not_images"][0]["path"] == "notes-\\xff.txt"
    assert report["escaped_names"] == ["broken-\\xfe.jpg", "caf\\xe9-\\xff.png", "notes-\\xff.txt"]
    again = runner.invoke(app, ["predict", str(odd_folder), *args, "--resume"])
    assert again.exit_code == 0 and "3 done before" in again.output, again.output


def test_audit_folder_non_utf8_names(odd_folder: Path) -> None:
    inputs = load_inputs(odd_folder, split="all")
    item = next(i for i in inputs.items if i.key == "caf\\xe9-\\xff.png")
    assert item.path_text.endswith("caf\\xe9-\\xff.png") and item.path.is_file()
    assert load_image(item.path).shape == (12, 20)


def test_convert_skips_non_utf8_names_with_reason(tmp_path: Path) -> None:
    root = tmp_path / "yolo"
    for split in ("train", "val"):
        (root / "labels" / split).mkdir(parents=True)
        (root / "images" / split).mkdir(parents=True)
        Image.fromarray(RAMP).save(root / "images" / split / "ok.png")
        (root / "labels" / split / "ok.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    Image.fromarray(RAMP).save(bad_name(root / "images" / "train"))
    (root / "data.yaml").write_text(
        yaml.safe_dump({"train": "images/train", "val": "images/val", "names": ["fracture"]})
    )
    out = tmp_path / "out"
    result = runner.invoke(app, ["convert", str(root / "data.yaml"), str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "convert_report.json").read_text(encoding="utf-8"))
    (problem,) = [p for p in report["problems"] if p["kind"] == "non_utf8_name"]
    assert problem["file"].endswith("caf\\xe9-\\xff.png") and problem["action"] == "image skipped"
    found, problems = list_images(root / "images" / "train")
    assert [p.name for p in found] == ["ok.png"] and problems[0].kind == "non_utf8_name"


def test_training_folder_non_utf8_names(odd_folder: Path) -> None:
    """pretrain-mae's plain-folder mode trains on such a file, opened by its real name."""
    data = load_unlabelled(odd_folder, val_fraction=0.5)
    records = [*data.train, *data.val]
    keys = {r.image_id for r in records}
    assert "caf\\xe9-\\xff.png" in keys
    assert all(r.path.is_file() for r in records)


# --- scale: the scan streams and shows progress from the first entry ---------------------------


def test_scan_shows_progress_before_listing_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The progress wrapper gets the walk itself: its first item arrives before the walk has
    listed the folder (os.scandir is iterated, not listed)."""
    for i in range(300):
        (tmp_path / f"f{i:04d}.png").write_bytes(b"")
    seen: list[int] = []
    calls = {"scandir_next": 0}
    real_scandir = os.scandir

    class Counting:
        def __init__(self, where):
            self.inner = real_scandir(where)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.inner.close()

        def __iter__(self):
            for entry in self.inner:
                calls["scandir_next"] += 1
                yield entry

    def recording(items, description, total=None):
        assert total is None  # a count, not a bar that waits for the total
        for item in items:
            seen.append(calls["scandir_next"])
            yield item

    monkeypatch.setattr(scan_module.os, "scandir", Counting)
    monkeypatch.setattr(scan_module, "progress", recording)
    scan = scan_folder(tmp_path)
    assert len(scan.images) == 300
    assert seen[0] == 1 and seen[-1] == 300  # item k shown when k entries were read
