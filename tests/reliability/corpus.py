"""The bad-input corpus, built on the fly: small good datasets in each layout, and bad files to drop
in.

Nothing binary is committed: every bad file is made here, from a good one or from bytes.
"""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from conftest import make_fracatlas, save_image
from PIL import Image
from test_images import make_dicom

__all__ = ["Case", "CASES"]

FRACATLAS_SPECS = [
    ("F1.jpg", 64, 48, [(5, 5, 20, 20)]),
    ("F2.jpg", 64, 48, [(10, 10, 30, 30)]),
    ("F3.jpg", 48, 64, [(8, 20, 24, 40)]),
    ("N1.jpg", 64, 48, []),
    ("N2.jpg", 48, 64, []),
    ("N3.jpg", 64, 48, []),
]
N_FRACATLAS = len(FRACATLAS_SPECS)
N_YOLO = 5
N_COCO = 3


@dataclass(frozen=True)
class Case:
    """One bad input and what ``fracdet convert`` must do with it.

    ``expect`` is ``"error"`` (exit != 0, one ``error:`` line naming ``hint``), ``"recorded"``
    (exit 0; a problem of ``kind`` naming ``hint`` in convert_report.json, ``images`` written)
    or ``"kept"`` (exit 0; the image ``hint`` is in the output, a ``kind`` problem too if given).
    """

    name: str
    build: Callable[[Path], Path]
    expect: str
    hint: str
    kind: str | None = None
    images: int | None = None


# --- good datasets ------------------------------------------------------------------------------


def fracatlas(tmp: Path) -> Path:
    return make_fracatlas(tmp / "fracatlas", FRACATLAS_SPECS)


def yolo(tmp: Path) -> Path:
    """data.yaml + images/{train,val} + labels: 3 train images (2 boxed), 2 val images (1 boxed)."""
    root = tmp / "yolo"
    for split, count in (("train", 3), ("val", 2)):
        for i in range(count):
            save_image(root / "images" / split / f"{split}{i}.png", 64, 32, seed=i)
            label = root / "labels" / split / f"{split}{i}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("0 0.5 0.5 0.25 0.5\n" if i < count - 1 else "")
    (root / "data.yaml").write_text(
        yaml.safe_dump({"train": "images/train", "val": "images/val", "names": ["fracture"]})
    )
    return root / "data.yaml"


def coco_doc() -> dict:
    return {
        "images": [
            {"id": i, "file_name": name, "width": 40, "height": 30}
            for i, name in enumerate(("a.jpg", "b.jpg", "c.jpg"), start=1)
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 8], "iscrowd": 0}
        ],
        "categories": [{"id": 1, "name": "fracture"}],
    }


def coco(tmp: Path, doc: dict | None = None, text: str | None = None) -> Path:
    """coco/images/{a,b,c}.jpg and coco/annotations/instances_train.json (a boxed, b and c
    negative)."""
    root = tmp / "coco"
    for i, name in enumerate(("a.jpg", "b.jpg", "c.jpg")):
        save_image(root / "images" / name, 40, 30, seed=i)
    path = root / "annotations" / "instances_train.json"
    path.parent.mkdir(parents=True)
    path.write_text(
        text if text is not None else json.dumps(doc if doc is not None else coco_doc()),
        encoding="utf-8",
    )
    return path


# --- bad files ------------------------------------------------------------------------------------


def noise(size: tuple[int, int] = (120, 160)) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 255, size, dtype=np.uint8)


def jpeg_bytes(tmp: Path) -> bytes:
    Image.fromarray(noise()).save(tmp / "_scratch.jpg")
    data = (tmp / "_scratch.jpg").read_bytes()
    (tmp / "_scratch.jpg").unlink()
    return data


def bomb_png(path: Path) -> None:
    """A tiny PNG whose header declares 30000 x 30000 pixels (with a valid header checksum)."""
    Image.new("L", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", 30000, 30000)  # IHDR width, height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def in_negatives(write: Callable[[Path, Path], None], name: str) -> Callable[[Path], Path]:
    """A FracAtlas tree with one more file ``name`` in images/Non_fractured, written by
    ``write(path, tmp)``."""

    def build(tmp: Path) -> Path:
        root = fracatlas(tmp)
        write(root / "images" / "Non_fractured" / name, tmp)
        return root

    return build


def yolo_label(text: str | bytes) -> Callable[[Path], Path]:
    """The YOLO dataset with train0's label replaced."""

    def build(tmp: Path) -> Path:
        data = yolo(tmp)
        label = data.parent / "labels" / "train" / "train0.txt"
        label.write_bytes(text if isinstance(text, bytes) else text.encode())
        return data

    return build


def data_yaml(text: str) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        data = yolo(tmp)
        data.write_text(text)
        return data

    return build


def coco_with(change: Callable[[dict, Path], None]) -> Callable[[Path], Path]:
    """The COCO dataset with its document changed by ``change(doc, tmp)``."""

    def build(tmp: Path) -> Path:
        doc = coco_doc()
        change(doc, tmp)
        return coco(tmp, doc)

    return build


def coco_text(text: str) -> Callable[[Path], Path]:
    return lambda tmp: coco(tmp, text=text)


def secret_image(tmp: Path) -> Path:
    """A valid image outside every dataset: a path in an annotation that reaches it must be
    refused."""
    return save_image(tmp / "secret.jpg", 40, 30, seed=99)


def set_bbox(value: object) -> Callable[[dict, Path], None]:
    def change(doc: dict, tmp: Path) -> None:
        doc["annotations"][0]["bbox"] = value

    return change


def set_file_name(value: Callable[[Path], str]) -> Callable[[dict, Path], None]:
    def change(doc: dict, tmp: Path) -> None:
        secret_image(tmp)
        doc["images"][1]["file_name"] = value(tmp)

    return change


def fracatlas_with(change: Callable[[Path], None]) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        root = fracatlas(tmp)
        change(root)
        return root

    return build


def drop_csv_columns(*names: str) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        rows = [line.split(",") for line in (root / "dataset.csv").read_text().splitlines()]
        keep = [i for i, column in enumerate(rows[0]) if column not in names]
        (root / "dataset.csv").write_text(
            "\n".join(",".join(row[i] for i in keep) for row in rows) + "\n"
        )

    return change


def set_csv_value(image_id: str, column: str, value: str) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        lines = (root / "dataset.csv").read_text().splitlines()
        header = lines[0].split(",")
        for n, line in enumerate(lines):
            row = line.split(",")
            if row[0] == image_id:
                row[header.index(column)] = value
                lines[n] = ",".join(row)
        (root / "dataset.csv").write_text("\n".join(lines) + "\n")

    return change


def voc_only(stem: str, rewrite: Callable[[str], str]) -> Callable[[Path], None]:
    """No COCO file and no YOLO txt for ``stem``: its boxes come from its (rewritten) VOC XML."""

    def change(root: Path) -> None:
        (root / "Annotations" / "COCO JSON" / "COCO_fracture_masks.json").unlink()
        (root / "Annotations" / "YOLO" / f"{stem}.txt").unlink()
        voc = root / "Annotations" / "PASCAL VOC" / f"{stem}.xml"
        voc.write_text(rewrite(voc.read_text()))

    return change


def split_csv_naming_missing(root: Path) -> None:
    split = root / "Utilities" / "Fracture Split" / "train.csv"
    split.write_text("image_id\nF1.jpg\nGHOST.jpg\n")


def _write(content: bytes) -> Callable[[Path, Path], None]:
    return lambda path, tmp: path.write_bytes(content)


def _trailing(path: Path, tmp: Path) -> None:
    path.write_bytes(jpeg_bytes(tmp) + b"\0" * 1500)


def _cut(path: Path, tmp: Path) -> None:
    data = jpeg_bytes(tmp)
    path.write_bytes(data[: len(data) // 2])


def _image(
    mode: str, size: tuple[int, int], *, fmt: str | None = None, bits16: bool = False
) -> Callable[[Path, Path], None]:
    def write(path: Path, tmp: Path) -> None:
        if bits16:
            Image.fromarray(noise(size).astype(np.uint16) * 257).save(path)
        else:
            Image.fromarray(noise(size)).convert(mode).save(path, format=fmt)

    return write


def _folder(path: Path, tmp: Path) -> None:
    path.mkdir()
    save_image(path / "inside.jpg", 20, 20)


def _dicom(photometric: str, pixels: bool) -> Callable[[Path, Path], None]:
    def write(path: Path, tmp: Path) -> None:
        make_dicom(
            path, noise((16, 16)).astype(np.uint16) if pixels else None, photometric=photometric
        )

    return write


def _coco_folder_named_jpg(doc: dict, tmp: Path) -> None:
    doc["images"][2]["file_name"] = "x.jpg"
    (tmp / "coco" / "images" / "x.jpg").mkdir(parents=True)


def _coco_unicode_name(doc: dict, tmp: Path) -> None:
    save_image(tmp / "coco" / "images" / "frakturé 1 ü.jpg", 40, 30)
    doc["images"].append({"id": 4, "file_name": "frakturé 1 ü.jpg"})


def _coco_duplicate_ids(doc: dict, tmp: Path) -> None:
    doc["images"][1]["id"] = 1


def _coco_unknown_image(doc: dict, tmp: Path) -> None:
    doc["annotations"].append({"id": 2, "image_id": 77, "category_id": 1, "bbox": [1, 1, 5, 5]})


def _coco_unknown_category(doc: dict, tmp: Path) -> None:
    doc["annotations"][0]["category_id"] = 9


def _coco_no_file_name(doc: dict, tmp: Path) -> None:
    del doc["images"][2]["file_name"]


def _coco_no_bbox(doc: dict, tmp: Path) -> None:
    del doc["annotations"][0]["bbox"]


def _yolo_list_outside(tmp: Path) -> Path:
    data = yolo(tmp)
    secret_image(tmp)
    (data.parent / "train.txt").write_text("images/train/train0.png\n../secret.jpg\n")
    data.write_text(
        yaml.safe_dump({"train": "train.txt", "val": "images/val", "names": ["fracture"]})
    )
    return data


def _remove_folder(name: str) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        shutil.rmtree(root / name)

    return change


CASES: list[Case] = [
    # images (dropped into a FracAtlas tree of 6 good ones)
    Case(
        "image-zero-bytes",
        in_negatives(_write(b""), "Z.jpg"),
        "recorded",
        "Z.jpg",
        "image_corrupt",
        N_FRACATLAS,
    ),
    Case(
        "image-cut-mid-scan",
        in_negatives(_cut, "CUT.jpg"),
        "recorded",
        "CUT.jpg",
        "image_corrupt",
        N_FRACATLAS,
    ),
    Case(
        "image-trailing-bytes-kept",
        in_negatives(_trailing, "PAD.jpg"),
        "kept",
        "PAD.jpg",
        "image_note",
        N_FRACATLAS + 1,
    ),
    Case(
        "image-png-named-jpg",
        in_negatives(_image("L", (30, 40), fmt="PNG"), "P.jpg"),
        "kept",
        "P.jpg",
        "image_note",
        N_FRACATLAS + 1,
    ),
    Case(
        "image-16bit-png",
        in_negatives(_image("I;16", (30, 40), bits16=True), "W16.png"),
        "kept",
        "W16.png",
        None,
        N_FRACATLAS + 1,
    ),
    Case(
        "image-rgba",
        in_negatives(_image("RGBA", (30, 40)), "RGBA.png"),
        "kept",
        "RGBA.png",
        None,
        N_FRACATLAS + 1,
    ),
    Case(
        "image-1x1",
        in_negatives(_image("L", (1, 1)), "ONE.png"),
        "kept",
        "ONE.png",
        None,
        N_FRACATLAS + 1,
    ),
    Case(
        "image-decompression-bomb-header",
        in_negatives(lambda p, t: bomb_png(p), "BOMB.png"),
        "recorded",
        "BOMB.png",
        "image_corrupt",
        N_FRACATLAS,
    ),
    Case(
        "image-text-named-png",
        in_negatives(_write(b"just some notes\n"), "T.png"),
        "recorded",
        "T.png",
        "image_corrupt",
        N_FRACATLAS,
    ),
    Case(
        "image-folder-named-jpg-listed-in-coco",
        coco_with(_coco_folder_named_jpg),
        "recorded",
        "x.jpg",
        "annotation_without_image",
        N_COCO - 1,
    ),
    Case(
        "image-dicom-without-pixels",
        in_negatives(_dicom("MONOCHROME2", pixels=False), "NOPIX.dcm"),
        "recorded",
        "NOPIX.dcm",
        "unsupported_format",
        N_FRACATLAS,
    ),
    Case(
        "image-dicom-monochrome1",
        in_negatives(_dicom("MONOCHROME1", pixels=True), "MONO1.dcm"),
        "recorded",
        "MONO1.dcm",
        "unsupported_format",
        N_FRACATLAS,
    ),
    Case(
        "image-name-spaces-non-ascii",
        in_negatives(_image("L", (30, 40)), "N ü ß 4.jpg"),
        "kept",
        "N ü ß 4.jpg",
        None,
        N_FRACATLAS + 1,
    ),
    Case(
        "coco-name-spaces-non-ascii",
        coco_with(_coco_unicode_name),
        "kept",
        "frakturé 1 ü.jpg",
        None,
        N_COCO + 1,
    ),
    # YOLO labels (the label of train0, one of 5 images)
    Case(
        "yolo-class-id-out-of-range",
        yolo_label("5 0.5 0.5 0.2 0.2\n"),
        "recorded",
        "train0.txt",
        "class_id_out_of_range",
        N_YOLO,
    ),
    Case(
        "yolo-class-id-negative",
        yolo_label("-1 0.5 0.5 0.2 0.2\n"),
        "recorded",
        "train0.txt",
        "class_id_out_of_range",
        N_YOLO,
    ),
    Case(
        "yolo-nan",
        yolo_label("0 nan 0.5 0.2 0.2\n"),
        "recorded",
        "train0.txt",
        "box_not_finite",
        N_YOLO,
    ),
    Case(
        "yolo-inf",
        yolo_label("0 0.5 0.5 inf 0.2\n"),
        "recorded",
        "train0.txt",
        "box_not_finite",
        N_YOLO,
    ),
    Case(
        "yolo-negative-width",
        yolo_label("0 0.5 0.5 -0.2 0.2\n"),
        "recorded",
        "train0.txt",
        "box_inverted",
        N_YOLO,
    ),
    Case(
        "yolo-box-fully-outside",
        yolo_label("0 2.5 2.5 0.1 0.1\n"),
        "recorded",
        "train0.txt",
        "box_zero_area",
        N_YOLO,
    ),
    Case(
        "yolo-4-columns",
        yolo_label("0 0.5 0.5 0.2\n"),
        "recorded",
        "train0.txt",
        "label_unparsable",
        N_YOLO,
    ),
    Case(
        "yolo-6-columns",
        yolo_label("0 0.5 0.5 0.2 0.2 0.9\n"),
        "recorded",
        "train0.txt",
        "label_unparsable",
        N_YOLO,
    ),
    Case(
        "yolo-blank-lines",
        yolo_label("\n\n0 0.5 0.5 0.2 0.2\n\n  \n"),
        "kept",
        "train0.png",
        None,
        N_YOLO,
    ),
    Case(
        "yolo-binary-junk",
        yolo_label(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x81junk"),
        "recorded",
        "train0.txt",
        "label_unreadable",
        N_YOLO - 1,
    ),
    Case(
        "yolo-list-path-outside-dataset",
        _yolo_list_outside,
        "recorded",
        "secret.jpg",
        "path_outside_dataset",
        N_YOLO - 2,
    ),
    Case(
        "yolo-data-yaml-without-names",
        data_yaml("train: images/train\nval: images/val\n"),
        "error",
        "data.yaml",
    ),
    Case(
        "yolo-data-yaml-missing-folder",
        data_yaml("train: images/nowhere\nnames: [fracture]\n"),
        "error",
        "data.yaml",
    ),
    Case(
        "yolo-data-yaml-not-yaml",
        data_yaml("train: [images/train\nnames: {0: fracture\n"),
        "error",
        "data.yaml",
    ),
    # COCO JSON (3 images: a boxed, b and c negative)
    Case(
        "coco-missing-images",
        coco_with(lambda doc, tmp: doc.pop("images")),
        "error",
        "instances_train.json",
    ),
    Case(
        "coco-annotation-for-unknown-image",
        coco_with(_coco_unknown_image),
        "recorded",
        "instances_train.json",
        "annotation_without_image",
        N_COCO,
    ),
    Case(
        "coco-bbox-3-numbers",
        coco_with(set_bbox([1, 2, 3])),
        "recorded",
        "instances_train.json",
        "label_unparsable",
        N_COCO,
    ),
    Case(
        "coco-bbox-strings",
        coco_with(set_bbox(["x", "y", "w", "h"])),
        "recorded",
        "instances_train.json",
        "label_unparsable",
        N_COCO,
    ),
    Case(
        "coco-annotation-without-bbox",
        coco_with(_coco_no_bbox),
        "recorded",
        "instances_train.json",
        "label_unparsable",
        N_COCO,
    ),
    Case(
        "coco-image-without-file-name",
        coco_with(_coco_no_file_name),
        "recorded",
        "instances_train.json",
        "label_unparsable",
        N_COCO - 1,
    ),
    Case(
        "coco-unknown-category",
        coco_with(_coco_unknown_category),
        "recorded",
        "instances_train.json",
        "class_id_out_of_range",
        N_COCO,
    ),
    Case(
        "coco-duplicate-image-ids",
        coco_with(_coco_duplicate_ids),
        "recorded",
        "instances_train.json",
        "duplicate_id",
        N_COCO - 2,
    ),
    Case(
        "coco-truncated-json",
        coco_text(json.dumps(coco_doc())[:60]),
        "error",
        "instances_train.json",
    ),
    Case("coco-json-list", coco_text("[1, 2, 3]"), "error", "instances_train.json"),
    Case(
        "coco-file-name-etc-passwd",
        coco_with(set_file_name(lambda tmp: "../../etc/passwd")),
        "recorded",
        "instances_train.json",
        "path_outside_dataset",
        N_COCO - 1,
    ),
    Case(
        "coco-file-name-climbing-to-an-image",
        coco_with(set_file_name(lambda tmp: "../../secret.jpg")),
        "recorded",
        "instances_train.json",
        "path_outside_dataset",
        N_COCO - 1,
    ),
    Case(
        "coco-file-name-absolute",
        coco_with(set_file_name(lambda tmp: str(tmp / "secret.jpg"))),
        "recorded",
        "instances_train.json",
        "path_outside_dataset",
        N_COCO - 1,
    ),
    # FracAtlas layout
    Case(
        "fracatlas-csv-without-body-parts",
        fracatlas_with(drop_csv_columns("hand", "leg", "hip", "shoulder", "mixed")),
        "recorded",
        "dataset.csv",
        "csv_missing_columns",
        N_FRACATLAS,
    ),
    Case(
        "fracatlas-csv-fractured-maybe",
        fracatlas_with(set_csv_value("F1.jpg", "fractured", "maybe")),
        "recorded",
        "dataset.csv",
        "csv_value_unparsable",
        N_FRACATLAS,
    ),
    Case(
        "fracatlas-csv-hand-yes",
        fracatlas_with(set_csv_value("N1.jpg", "hand", "yes")),
        "recorded",
        "dataset.csv",
        "csv_value_unparsable",
        N_FRACATLAS,
    ),
    Case(
        "fracatlas-csv-binary",
        fracatlas_with(lambda root: (root / "dataset.csv").write_bytes(b"\xff\xfe\x00\x81\x00")),
        "error",
        "dataset.csv",
    ),
    Case(
        "fracatlas-split-csv-names-missing-image",
        fracatlas_with(split_csv_naming_missing),
        "recorded",
        "GHOST",
        "annotation_without_image",
        N_FRACATLAS,
    ),
    Case(
        "fracatlas-voc-not-xml",
        fracatlas_with(voc_only("F2", lambda xml: "this is not XML <<<")),
        "recorded",
        "F2.xml",
        "label_unreadable",
        N_FRACATLAS,
    ),
    Case(
        "fracatlas-voc-xmin-past-xmax",
        fracatlas_with(
            voc_only("F2", lambda xml: xml.replace("<xmin>10</xmin>", "<xmin>50</xmin>"))
        ),
        "recorded",
        "F2.jpg",
        "box_inverted",
        N_FRACATLAS,
    ),
    Case(
        "fracatlas-without-annotations-folder",
        fracatlas_with(_remove_folder("Annotations")),
        "recorded",
        "COCO_fracture_masks.json",
        "missing_file",
        N_FRACATLAS,
    ),
]
