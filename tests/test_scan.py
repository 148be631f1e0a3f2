"""``fracdet.data.scan``: the one folder walker, as the converter (``list_images``) and predict
(``list_inputs``) see it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import save_image
from test_images import make_dicom

from fracdet.data.scan import OtherFile, list_images, scan_folder
from fracdet.errors import DataError
from fracdet.predict import list_inputs

LOOP = "symbolic link loop"


@pytest.fixture
def folder(tmp_path) -> Path:
    """Rasters, DICOM with and without suffix, a text file, hidden things, a subfolder, bad links, a
    FIFO."""
    root = tmp_path / "images"
    save_image(root / "b.png", 8, 8)
    save_image(root / "a.jpg", 8, 8)
    make_dicom(root / "scan.dcm", np.zeros((4, 4), np.uint16))
    make_dicom(root / "export", np.zeros((4, 4), np.uint16))
    (root / "notes.txt").write_text("x")
    (root / ".DS_Store").write_bytes(b"x")
    save_image(root / "._a.jpg", 8, 8)  # a macOS shadow file: hidden, not an image to read
    save_image(root / ".cache" / "c.jpg", 8, 8)
    save_image(root / "sub" / "d.jpg", 8, 8)
    save_image(root / "sub-x.png", 8, 8)  # sorts between "sub" and "sub/..." as text, not as a path
    os.symlink("loop.jpg", root / "loop.jpg")  # points at itself
    os.symlink("nowhere.png", root / "broken.png")
    os.symlink(root, root / "sub" / "up")  # a folder link back to an ancestor: must not be followed
    os.symlink(root / "a.jpg", root / "sub" / "link_to_a.jpg")  # a good link is an image
    os.mkfifo(root / "pipe")
    return root


def test_scan_sorts_every_entry_with_a_reason(folder):
    scan = scan_folder(folder, recursive=True)
    assert scan.images == ("a.jpg", "b.png", "sub-x.png", "sub/d.jpg", "sub/link_to_a.jpg")
    assert scan.dicoms == ("export", "scan.dcm")
    kinds = {o.path: o.kind for o in scan.others}
    assert kinds == {
        "broken.png": "unreadable_file",
        "loop.jpg": "unreadable_file",
        "notes.txt": "not_an_image",
        "pipe": "unreadable_file",
    }
    details = {o.path: o.detail for o in scan.others}
    assert LOOP in details["loop.jpg"]
    assert "broken symbolic link" in details["broken.png"]
    assert "not a regular file" in details["pipe"]
    assert details["notes.txt"] == "suffix .txt is not an image format"


def test_scan_not_recursive_and_exclude(folder):
    flat = scan_folder(folder)
    assert flat.images == ("a.jpg", "b.png", "sub-x.png")
    assert (
        OtherFile(
            "loop.jpg",
            "unreadable_file",
            "symbolic link loop: it points (through links) back at itself",
        )
        in flat.others
    )
    assert "sub/d.jpg" not in scan_folder(folder, recursive=True, exclude=folder / "sub").images
    # The excluded folder is compared by real path: a relative spelling excludes it too.
    relative = Path(os.path.relpath(folder / "sub"))
    assert "sub/d.jpg" not in scan_folder(folder, recursive=True, exclude=relative).images


def test_scan_errors(tmp_path, folder, monkeypatch):
    with pytest.raises(DataError, match="cannot list folder") as info:
        scan_folder(tmp_path / "missing")
    assert info.value.path == tmp_path / "missing"
    real_scandir = os.scandir

    def scandir(path):
        if Path(path) == folder / "sub":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    scan = scan_folder(folder, recursive=True)
    assert (
        OtherFile("sub", "unreadable_folder", "cannot list folder (Permission denied)")
        in scan.others
    )
    assert "sub/d.jpg" not in scan.images and "a.jpg" in scan.images


def test_converter_listing(folder):
    """Training datasets take rasters only: DICOM is reported, as are non-images and unreadable
    entries."""
    images, problems = list_images(folder, recursive=True)
    assert images == [
        folder / p for p in ("a.jpg", "b.png", "sub/d.jpg", "sub/link_to_a.jpg", "sub-x.png")
    ]  # path order, as before
    found = {Path(p.file).relative_to(folder).as_posix(): (p.kind, p.action) for p in problems}
    assert found == {
        "broken.png": ("unreadable_file", "ignored"),
        "export": ("unsupported_format", "image skipped"),
        "loop.jpg": ("unreadable_file", "ignored"),
        "notes.txt": ("not_an_image", "ignored"),
        "pipe": ("unreadable_file", "ignored"),
        "scan.dcm": ("unsupported_format", "image skipped"),
    }
    assert [p.file for p in problems] == sorted(p.file for p in problems)
    loop = next(p for p in problems if p.file.endswith("loop.jpg"))
    assert LOOP in loop.detail
    assert list_images(folder)[0] == [
        folder / "a.jpg",
        folder / "b.png",
        folder / "sub-x.png",
    ]  # not recursive by default


def test_predict_listing(folder):
    """Predict reads DICOM, so it lists it with the rasters; the rest is reported with its
    reason."""
    images, others, _ = list_inputs(folder)
    assert images == [
        "a.jpg",
        "b.png",
        "export",
        "scan.dcm",
        "sub-x.png",
        "sub/d.jpg",
        "sub/link_to_a.jpg",
    ]  # text order: ids are positions in it
    reasons = {o["path"]: o["reason"] for o in others}
    assert set(reasons) == {"broken.png", "loop.jpg", "notes.txt", "pipe"}
    assert reasons["notes.txt"] == "not an image (suffix .txt, no DICOM header)"
    assert LOOP in reasons["loop.jpg"]


def test_scan_reports_an_entry_it_cannot_stat(folder, monkeypatch):
    """Any other OSError from following a link (here EACCES on a.jpg) is reported, not raised."""
    import contextlib

    class Denied:
        def __init__(self, entry):
            self.name, self.path = entry.name, entry.path

        def is_dir(self):
            raise PermissionError(13, "Permission denied", self.path)

        is_file = is_dir

        def is_symlink(self):
            return False

    real_scandir = os.scandir

    def scandir(path):
        with real_scandir(path) as it:
            entries = [Denied(e) if e.name == "a.jpg" else e for e in it]
        return contextlib.nullcontext(entries)

    monkeypatch.setattr(os, "scandir", scandir)
    scan = scan_folder(folder)
    assert "a.jpg" not in scan.images
    assert (
        OtherFile("a.jpg", "unreadable_file", "cannot stat it (Permission denied)") in scan.others
    )
