"""``fetch_fracatlas`` and friends, with a fake figshare served from memory (never the network)."""

from __future__ import annotations

import hashlib
import io
import json
import urllib.error
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import data_tools.fracatlas_download as fd
from data_tools.fracatlas_download import (
    EXPECTED_COUNTS,
    extract_fracatlas_zip,
    fetch_fracatlas,
    get_fracatlas,
    verify_fracatlas,
)
from fracdet.cli import app
from fracdet.errors import DataError, OutputExistsError

REAL_FRACATLAS = Path(__file__).resolve().parents[2] / "shared" / "data" / "fracatlas" / "FracAtlas"
API = "https://api.example.test/v2/articles/{id}"
ZIP_URL = "https://download.example.test/files/1"

COCO = {
    "images": [{"id": 1, "file_name": "IMG0000000.jpg", "width": 10, "height": 10}],
    "annotations": [
        {"id": 0, "image_id": 1, "category_id": 0, "bbox": [1, 1, 2, 2]},
        {"id": 1, "image_id": 1, "category_id": 0, "bbox": [5, 5, 2, 2]},
    ],
    "categories": [{"id": 0, "name": "fractured"}],
}
TINY_TREE: dict[str, bytes] = {
    "images/Fractured/IMG0000000.jpg": b"\xff\xd8fake jpeg\xff\xd9",
    "images/Non_fractured/IMG0000001.jpg": b"\xff\xd8fake jpeg\xff\xd9",
    "images/Non_fractured/IMG0000002.jpg": b"\xff\xd8fake jpeg\xff\xd9",
    "Annotations/COCO JSON/COCO_fracture_masks.json": json.dumps(COCO).encode(),
    "Annotations/PASCAL VOC/IMG0000000.xml": b"<annotation/>",
    "Annotations/YOLO/IMG0000000.txt": b"0 0.2 0.2 0.2 0.2\n",
    "dataset.csv": b"image_id,fractured\nIMG0000000.jpg,1\nIMG0000001.jpg,0\nIMG0000002.jpg,0\n",
    "Utilities/Fracture Split/train.csv": b"image_id\nIMG0000000.jpg\n",
    "Utilities/Fracture Split/valid.csv": b"image_id\n",
    "Utilities/Fracture Split/test.csv": b"image_id\n",
}


def make_zip(files: dict[str, bytes], prefix: str = "FracAtlas/") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(prefix + name, data)
    return buffer.getvalue()


class FakeFigshare:
    """Stands in for ``urlopen``: answers the API URL and the download URL from memory."""

    def __init__(
        self,
        payload: bytes,
        *,
        name: str = "FracAtlas.zip",
        md5: str | None = None,
        size: int | None = None,
    ) -> None:
        self.payload = payload
        self.urls: list[str] = []
        self.article = {
            "id": 22363012,
            "files": [
                {
                    "name": name,
                    "size": len(payload) if size is None else size,
                    "download_url": ZIP_URL,
                    "computed_md5": md5 or hashlib.md5(payload).hexdigest(),
                }
            ],
        }

    def __call__(self, request, timeout=None):
        url = request.full_url
        self.urls.append(url)
        if url == API.format(id=22363012):
            return io.BytesIO(json.dumps(self.article).encode())
        if url == ZIP_URL:
            return io.BytesIO(self.payload)
        raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)


def offline(*_args, **_kwargs):
    raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Every test starts offline; tests that need figshare install a fake."""
    monkeypatch.setattr(fd, "urlopen", offline)


@pytest.fixture
def tiny_zip(tmp_path: Path) -> Path:
    path = tmp_path / "FracAtlas.zip"
    path.write_bytes(make_zip(TINY_TREE))
    return path


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize(
    "error",
    [offline, TimeoutError("timed out"), OSError(101, "Network is unreachable")],
    ids=["urlerror", "timeout", "oserror"],
)
def test_offline_error_is_one_clear_line(monkeypatch, tmp_path, error):
    def fail(*_args, **_kwargs):
        if callable(error):
            error()
        raise error

    monkeypatch.setattr(fd, "urlopen", fail)
    with pytest.raises(DataError) as info:
        fetch_fracatlas(tmp_path / "out", api_url=API)
    message = str(info.value)
    assert "\n" not in message
    assert "needs internet" in message and "--from-zip" in message
    assert fd.FIGSHARE_PAGE in message and "fracdet convert" in message
    assert not (tmp_path / "out").exists()


def test_http_error_on_download_is_clear(monkeypatch, tmp_path):
    fake = FakeFigshare(make_zip(TINY_TREE))
    fake.article["files"][0]["download_url"] = "https://download.example.test/files/missing"
    monkeypatch.setattr(fd, "urlopen", fake)
    with pytest.raises(DataError, match="HTTP 404.*--from-zip"):
        fetch_fracatlas(tmp_path / "out", api_url=API)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_download_verifies_md5_extracts_and_checks_layout(monkeypatch, tmp_path):
    fake = FakeFigshare(make_zip(TINY_TREE))
    monkeypatch.setattr(fd, "urlopen", fake)
    out = tmp_path / "data"
    root = fetch_fracatlas(out, api_url=API)
    assert fake.urls == [API.format(id=22363012), ZIP_URL]
    assert root == out / "FracAtlas"
    assert (root / "Annotations" / "COCO JSON" / "COCO_fracture_masks.json").is_file()
    assert (root / "images" / "Fractured" / "IMG0000000.jpg").read_bytes() == TINY_TREE[
        "images/Fractured/IMG0000000.jpg"
    ]
    assert sorted(p.name for p in out.iterdir()) == ["FracAtlas"]  # the zip itself is gone
    assert leftovers(tmp_path) == []  # no temporary folders left next to the output

    report = verify_fracatlas(out)
    assert report.root == root
    assert report.counts == {
        "dataset_csv_rows": 3,
        "fractured_images": 1,
        "non_fractured_images": 2,
        "coco_images": 1,
        "coco_annotations": 2,
        "split_train": 1,
        "split_valid": 0,
        "split_test": 0,
    }
    assert len(report.warnings) == len(EXPECTED_COUNTS) and not report.complete
    joined = "\n".join(report.warnings)
    for text in (
        "dataset.csv rows: found 3, the published dataset has 4083",
        "images/Fractured: found 1, the published dataset has 717",
        "images/Non_fractured: found 2, the published dataset has 3366",
        "found 1, the published dataset has 717",
        "found 2, the published dataset has 922",
    ):
        assert text in joined


def test_md5_mismatch_names_file_and_both_sums(monkeypatch, tmp_path):
    payload = make_zip(TINY_TREE)
    fake = FakeFigshare(payload, md5="0" * 32)
    monkeypatch.setattr(fd, "urlopen", fake)
    with pytest.raises(DataError) as info:
        fetch_fracatlas(tmp_path / "out", api_url=API)
    message = str(info.value)
    assert "FracAtlas.zip" in message and "0" * 32 in message
    assert hashlib.md5(payload).hexdigest() in message
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_short_download_is_refused(monkeypatch, tmp_path):
    payload = make_zip(TINY_TREE)
    monkeypatch.setattr(fd, "urlopen", FakeFigshare(payload, size=len(payload) + 10))
    with pytest.raises(DataError, match="FracAtlas.zip.*cut short"):
        fetch_fracatlas(tmp_path / "out", api_url=API)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "evil", ["../evil.txt", "FracAtlas/../../evil.txt", "/tmp/evil-fracdet.txt"]
)
def test_zip_slip_is_refused(tmp_path, evil):
    files = dict(TINY_TREE)
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr("FracAtlas/" + name, data)
        archive.writestr(zipfile.ZipInfo(evil), b"gotcha")
    with pytest.raises(DataError, match="outside the target"):
        extract_fracatlas_zip(path, tmp_path / "nested" / "out")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "nested" / "evil.txt").exists()
    assert not (tmp_path / "nested" / "out").exists() and leftovers(tmp_path / "nested") == []


def test_zip_slip_refused_on_download_too(monkeypatch, tmp_path):
    payload = make_zip({**TINY_TREE, "../../escape.txt": b"x"})
    monkeypatch.setattr(fd, "urlopen", FakeFigshare(payload))
    with pytest.raises(DataError, match="outside the target"):
        fetch_fracatlas(tmp_path / "out", api_url=API)
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "out").exists()


def test_extract_zip_works_offline(tiny_zip, tmp_path):
    root = extract_fracatlas_zip(tiny_zip, tmp_path / "out")  # urlopen raises: no network used
    assert root == tmp_path / "out" / "FracAtlas"
    assert verify_fracatlas(root).counts["fractured_images"] == 1


def test_extract_zip_without_top_folder(tmp_path):
    path = tmp_path / "flat.zip"
    path.write_bytes(make_zip(TINY_TREE, prefix=""))
    root = extract_fracatlas_zip(path, tmp_path / "out")
    assert root == tmp_path / "out" and (root / "dataset.csv").is_file()


def test_bad_zip_and_missing_zip_are_clear(tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="junk.zip: not a readable zip"):
        extract_fracatlas_zip(junk, tmp_path / "out")
    with pytest.raises(DataError, match="no such file"):
        extract_fracatlas_zip(tmp_path / "absent.zip", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_layout_pieces_raise_one_line(tmp_path):
    files = {
        k: v
        for k, v in TINY_TREE.items()
        if not k.startswith(("Annotations/COCO", "Utilities/Fracture Split/test"))
    }
    path = tmp_path / "partial.zip"
    path.write_bytes(make_zip(files))
    with pytest.raises(DataError) as info:
        extract_fracatlas_zip(path, tmp_path / "out")
    message = str(info.value)
    assert "\n" not in message and "missing" in message
    assert "Annotations/COCO JSON/COCO_fracture_masks.json" in message
    assert (
        "missing: Annotations/COCO JSON/COCO_fracture_masks.json, "
        "Utilities/Fracture Split/test.csv (" in message
    )
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []
    with pytest.raises(DataError, match="missing: images/Fractured/"):
        verify_fracatlas(tmp_path)


def test_verify_accepts_root_or_parent(tiny_zip, tmp_path):
    root = extract_fracatlas_zip(tiny_zip, tmp_path / "out")
    assert verify_fracatlas(root).root == root
    assert verify_fracatlas(root.parent).root == root


def test_existing_output_refused_without_overwrite(monkeypatch, tiny_zip, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    fake = FakeFigshare(make_zip(TINY_TREE))
    monkeypatch.setattr(fd, "urlopen", fake)
    with pytest.raises(OutputExistsError):
        fetch_fracatlas(out, api_url=API)
    assert fake.urls == []  # refused before touching the (fake) network
    with pytest.raises(OutputExistsError):
        extract_fracatlas_zip(tiny_zip, out)
    assert (out / "keep.txt").read_text() == "precious"
    root = fetch_fracatlas(out, api_url=API, overwrite=True)
    assert root.is_dir() and not (out / "keep.txt").exists()


def test_cli_offline_fails_with_message(tmp_path):
    result = CliRunner().invoke(app, ["fetch-fracatlas", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "--from-zip" in result.output and "needs internet" in result.output
    assert not (tmp_path / "out").exists()


def test_cli_from_zip(tiny_zip, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["fetch-fracatlas", "--from-zip", str(tiny_zip), str(out)])
    assert result.exit_code == 0, result.output
    assert f"FracAtlas tree at {out / 'FracAtlas'}" in result.output
    assert "warning: dataset.csv rows: found 3" in result.output
    again = CliRunner().invoke(app, ["fetch-fracatlas", "--from-zip", str(tiny_zip), str(out)])
    assert again.exit_code != 0 and "--overwrite" in again.output
    assert (
        CliRunner()
        .invoke(app, ["fetch-fracatlas", "--from-zip", str(tiny_zip), "--overwrite", str(out)])
        .exit_code
        == 0
    )


def test_get_fracatlas_extracts_or_downloads_and_reports(monkeypatch, tiny_zip, tmp_path):
    report = get_fracatlas(tmp_path / "a", from_zip=tiny_zip)  # offline: urlopen raises
    assert report.root == tmp_path / "a" / "FracAtlas" and report.counts["fractured_images"] == 1
    assert report == verify_fracatlas(report.root) and len(report.warnings) == len(EXPECTED_COUNTS)
    assert (
        report.line() == f"FracAtlas tree at {report.root} (1 fractured, 2 non-fractured images); "
        f"run `fracdet convert {report.root} OUT`"
    )
    fake = FakeFigshare(make_zip(TINY_TREE))
    monkeypatch.setattr(fd, "urlopen", fake)
    downloaded = get_fracatlas(tmp_path / "b", api_url=API)
    assert fake.urls == [API.format(id=22363012), ZIP_URL] and downloaded.counts == report.counts
    with pytest.raises(OutputExistsError):
        get_fracatlas(tmp_path / "b", from_zip=tiny_zip)
    assert (
        get_fracatlas(tmp_path / "b", from_zip=tiny_zip, overwrite=True).root
        == tmp_path / "b" / "FracAtlas"
    )
    with pytest.raises(DataError, match="no such file"):
        get_fracatlas(tmp_path / "c", from_zip=tmp_path / "absent.zip")


@pytest.mark.fracatlas
@pytest.mark.skipif(
    not REAL_FRACATLAS.is_dir(), reason="real FracAtlas sample not in ../shared/data"
)
def test_real_sample_layout_and_counts():
    report = verify_fracatlas(REAL_FRACATLAS.parent)
    assert report.root == REAL_FRACATLAS
    assert report.counts["dataset_csv_rows"] == 4083
    assert report.counts["fractured_images"] == 717
    assert report.counts["non_fractured_images"] == 717  # a subset of the 3366
    assert report.counts["coco_images"] == 717 and report.counts["coco_annotations"] == 922
    assert (
        report.counts["split_train"],
        report.counts["split_valid"],
        report.counts["split_test"],
    ) == (574, 82, 61)
    assert report.warnings == [
        "images in images/Non_fractured: found 717, "
        "the published dataset has 3366 (a partial copy?)"
    ]


def test_verify_errors_name_the_file(tiny_zip, tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        verify_fracatlas(tmp_path / "nowhere")
    root = extract_fracatlas_zip(tiny_zip, tmp_path / "out")
    (root / "dataset.csv").write_text("name,fractured\nA.jpg,1\n")
    with pytest.raises(DataError, match=r"dataset.csv: no image_id column"):
        verify_fracatlas(root)
    (root / "dataset.csv").write_text("image_id,fractured\n")
    (root / "Annotations" / "COCO JSON" / "COCO_fracture_masks.json").write_text("{")
    with pytest.raises(DataError, match=r"COCO_fracture_masks.json: not valid JSON"):
        verify_fracatlas(root)
