"""Fuzzing: random bytes and random structures into every annotation reader and the manifest reader.

The one rule: a reader either returns or raises :class:`FracdetError` (a clean one-line error);
anything else escaping is a bug. The example count comes from the hypothesis profile: ``ci``
(the default, registered in tests/conftest.py) keeps CI fast; ``--hypothesis-profile=long``
runs many more locally.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import make_fracatlas, save_image
from hypothesis import given
from hypothesis import strategies as st

from fracdet.config import load_yaml
from fracdet.data.coco import parse_coco, read_coco
from fracdet.data.formats import parse_voc_xml, parse_yolo_label
from fracdet.data.fracatlas import CSV_COLUMNS, read_fracatlas
from fracdet.data.images import read_image_info
from fracdet.data.manifest import MANIFEST_COLUMNS, read_manifest
from fracdet.data.yolo import read_yolo_dataset
from fracdet.errors import FracdetError

# --- strategies -----------------------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
numbers = (
    st.sampled_from(
        ["0", "1", "-1", "0.5", "nan", "inf", "-inf", "1e309", "", "x", "٣", "0x1f", "1_0"]
    )
    | st.floats().map(str)
    | st.integers().map(str)
)
cells = numbers | st.text(max_size=10)
raw = st.binary(max_size=300)


def coco_entry(keys: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    """A dict with COCO-like keys (each present or not, plausible or wild) and maybe stray ones."""
    return (
        st.fixed_dictionaries({}, optional={k: v | json_values for k, v in keys.items()})
        | json_values
    )


file_names = st.sampled_from(
    [
        "a.jpg",
        "b.jpg",
        "../a.jpg",
        "/etc/passwd",
        "C:\\x.jpg",
        "images/a.jpg",
        "a" * 300 + ".jpg",
        "a\0.jpg",
        "",
    ]
) | st.text(max_size=20)
coco_docs = st.fixed_dictionaries(
    {},
    optional={
        "images": st.lists(
            coco_entry(
                {
                    "id": st.integers(0, 4),
                    "file_name": file_names,
                    "width": st.integers(-5, 100),
                    "height": st.integers(-5, 100),
                }
            ),
            max_size=5,
        ),
        "annotations": st.lists(
            coco_entry(
                {
                    "id": st.integers(),
                    "image_id": st.integers(0, 4),
                    "category_id": st.integers(0, 3),
                    "bbox": st.lists(st.floats() | st.integers() | st.text(max_size=3), max_size=6),
                    "iscrowd": st.integers(0, 1),
                }
            ),
            max_size=6,
        ),
        "categories": st.lists(
            coco_entry({"id": st.integers(0, 3), "name": st.text(max_size=8)}), max_size=4
        ),
    },
)
yolo_text = st.lists(st.lists(numbers, max_size=8).map(" ".join), max_size=6).map(
    "\n".join
) | st.text(max_size=200)
yaml_docs = st.dictionaries(
    st.sampled_from(["train", "val", "test", "names", "nc", "path", "other"]),
    json_values,
    max_size=6,
)


def csv_text(header: st.SearchStrategy[list[str]]) -> st.SearchStrategy[str]:
    def render(rows: list[list[str]]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer).writerows(rows)
        return buffer.getvalue()

    return st.builds(
        lambda head, body: render([head, *body]),
        header,
        st.lists(st.lists(cells, max_size=15), max_size=5),
    )


xml_text = st.builds(
    lambda name, values, extra: (
        "<annotation><object><name>"
        + name
        + "</name><bndbox>"
        + "".join(
            f"<{t}>{v}</{t}>"
            for t, v in zip(("xmin", "ymin", "xmax", "ymax"), values, strict=False)
        )
        + "</bndbox></object>"
        + extra
        + "</annotation>"
    ),
    st.sampled_from(["fractured", "other", ""]) | st.text(max_size=6),
    st.lists(numbers, max_size=4),
    st.sampled_from(
        ["", "<object/>", "<object><name>fractured</name></object>", "&undefined;", "<![CDATA[x]]>"]
    ),
)


def only_fracdet_errors(call: Callable[[], object]) -> None:
    try:
        call()
    except FracdetError as exc:
        assert "\n" not in str(exc), f"multi-line error: {exc!r}"


def payload(data: str | bytes) -> bytes:
    return data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")


# --- shared trees (module-scoped: each example rewrites one file in them) -------------------------


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzz")
    fracatlas = make_fracatlas(
        root / "fracatlas", [("F1.jpg", 40, 30, [(2, 2, 20, 20)]), ("N1.jpg", 40, 30, [])]
    )
    yolo = root / "yolo"
    save_image(yolo / "images" / "train" / "a.png", 40, 30)
    (yolo / "labels" / "train").mkdir(parents=True)
    coco = root / "coco"
    for name in ("a.jpg", "b.jpg"):
        save_image(coco / "images" / name, 40, 30)
    return {"fracatlas": fracatlas, "yolo": yolo, "coco": coco, "scratch": root}


# --- targets --------------------------------------------------------------------------------------


@given(
    text=yolo_text,
    width=st.integers(1, 5000),
    height=st.integers(1, 5000),
    classes=st.integers(1, 3),
)
def test_parse_yolo_label(text, width, height, classes):
    parse_yolo_label(text, width, height, classes, "x.txt")  # documented: never raises


@given(data=raw | yolo_text.map(payload))
def test_read_yolo_dataset_label_files(trees, data):
    root = trees["yolo"]
    (root / "labels" / "train" / "a.txt").write_bytes(data)
    (root / "data.yaml").write_text("train: images/train\nnames: [fracture]\n")
    only_fracdet_errors(lambda: read_yolo_dataset(root / "data.yaml"))


@given(data=raw | yaml_docs.map(lambda d: yaml.safe_dump(d)) | st.text(max_size=200))
def test_read_yolo_dataset_data_yaml(trees, data):
    root = trees["yolo"]
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_bytes(payload(data))
    only_fracdet_errors(lambda: read_yolo_dataset(root / "data.yaml"))


@given(data=raw | st.text(max_size=200) | json_values.map(json.dumps) | coco_docs.map(json.dumps))
def test_parse_coco(trees, data):
    path = trees["scratch"] / "parse.json"
    path.write_bytes(payload(data))
    only_fracdet_errors(lambda: parse_coco(path))


@given(doc=coco_docs)
def test_read_coco(trees, doc):
    path = trees["coco"] / "annotations.json"
    path.write_text(json.dumps(doc))
    only_fracdet_errors(lambda: read_coco(path, trees["coco"] / "images"))


@given(data=raw | xml_text.map(payload) | st.text(max_size=200).map(payload))
def test_parse_voc_xml(trees, data):
    path = trees["scratch"] / "a.xml"
    path.write_bytes(data)
    only_fracdet_errors(lambda: parse_voc_xml(path, ["fractured"]))


@given(
    data=raw
    | csv_text(st.just(list(CSV_COLUMNS))).map(payload)
    | csv_text(st.lists(st.sampled_from(CSV_COLUMNS) | st.text(max_size=6), max_size=14)).map(
        payload
    )
)
def test_read_fracatlas_dataset_csv(trees, data):
    root = trees["fracatlas"]
    (root / "dataset.csv").write_bytes(data)
    only_fracdet_errors(lambda: read_fracatlas(root))


@given(
    data=raw
    | csv_text(st.just(["image_id"]) | st.lists(st.text(max_size=8), max_size=3)).map(payload),
    voc=raw | xml_text.map(payload),
)
def test_read_fracatlas_split_csv_and_voc(trees, data, voc):
    root = trees["fracatlas"]
    (root / "Utilities" / "Fracture Split" / "train.csv").write_bytes(data)
    coco = root / "Annotations" / "COCO JSON" / "COCO_fracture_masks.json"
    coco.unlink(missing_ok=True)  # boxes then come from YOLO txt, else VOC
    (root / "Annotations" / "YOLO" / "F1.txt").unlink(missing_ok=True)
    (root / "Annotations" / "PASCAL VOC" / "F1.xml").write_bytes(voc)
    only_fracdet_errors(lambda: read_fracatlas(root))


@given(
    data=raw
    | csv_text(
        st.just(list(MANIFEST_COLUMNS)) | st.lists(st.sampled_from(MANIFEST_COLUMNS), max_size=12)
    ).map(payload)
)
def test_read_manifest(trees, data):
    path = trees["scratch"] / "manifest.csv"
    path.write_bytes(data)
    only_fracdet_errors(lambda: read_manifest(path))


@given(
    data=raw
    | st.text(max_size=200).map(payload)
    | json_values.map(lambda v: yaml.safe_dump(v).encode())
)
def test_load_yaml(trees, data):
    path = trees["scratch"] / "c.yaml"
    path.write_bytes(data)
    only_fracdet_errors(lambda: load_yaml(path))


image_prefixes = st.sampled_from(
    [
        b"",
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        b"GIF89a",
        b"BM",
        b"II*\x00",
        b"\0" * 128 + b"DICM",
    ]
)


@pytest.mark.filterwarnings(
    "ignore:Corrupt EXIF data", "ignore::PIL.Image.DecompressionBombWarning"
)
@given(
    prefix=image_prefixes,
    body=raw,
    suffix=st.sampled_from([".jpg", ".png", ".dcm", ".tif", ""]),
    full=st.booleans(),
)
def test_read_image_info(trees, prefix, body, suffix, full):
    path = trees["scratch"] / f"image{suffix}"
    path.write_bytes(prefix + body)
    only_fracdet_errors(lambda: read_image_info(path, full=full))
