"""The phantom generator: FracAtlas layout, determinism, shortcut mode, options checked."""

from __future__ import annotations

import csv
import hashlib

import numpy as np
import pytest

from data_tools.phantoms import PhantomConfig, generate_phantoms
from fracdet.data.fracatlas import read_fracatlas
from fracdet.data.images import load_image
from fracdet.errors import ConfigError


def tree_digest(root):
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_layout_reads_back_as_fracatlas(tmp_path):
    out = generate_phantoms(
        PhantomConfig(tmp_path / "ph", count=24, size=96, seed=3, prevalence=0.5, workers=1)
    )
    for part in (
        "images/Fractured",
        "images/Non_fractured",
        "Annotations/COCO JSON/COCO_fracture_masks.json",
        "Annotations/PASCAL VOC",
        "Annotations/YOLO/labels.txt",
        "dataset.csv",
        "Utilities/Fracture Split/train.csv",
        "phantom_meta.csv",
    ):
        assert (out / part).exists(), part
    ds = read_fracatlas(out)
    assert len(ds.records) == 24 and not [p for p in ds.problems if p.kind != "official_split_leak"]
    fractured = [r for r in ds.records if r.label]
    assert fractured and all(r.boxes for r in fractured)
    assert all(r.split for r in fractured) and not any(r.split for r in ds.records if not r.label)
    assert {r.width for r in ds.records} | {r.height for r in ds.records} <= {
        96,
        round(96 * 373 / 454),
    }


def test_same_seed_same_bytes_with_any_worker_count(tmp_path):
    a = generate_phantoms(PhantomConfig(tmp_path / "a", count=12, size=64, seed=5, workers=1))
    b = generate_phantoms(PhantomConfig(tmp_path / "b", count=12, size=64, seed=5, workers=2))
    c = generate_phantoms(PhantomConfig(tmp_path / "c", count=12, size=64, seed=6, workers=1))
    assert tree_digest(a) == tree_digest(b) != tree_digest(c)


def test_png16_output(tmp_path):
    out = generate_phantoms(
        PhantomConfig(tmp_path / "p", count=4, size=64, image_format="png16", workers=1)
    )
    image_path = next((out / "images").rglob("*.png"))
    image = load_image(image_path)
    assert image.dtype == np.float32 and image.min() >= 0.0 and image.max() <= 1.0
    from PIL import Image

    assert Image.open(image_path).mode.startswith("I;16")


def test_shortcut_marker_follows_the_label_at_the_chosen_rate(tmp_path):
    out = generate_phantoms(
        PhantomConfig(
            tmp_path / "s",
            count=80,
            size=48,
            prevalence=0.5,
            shortcut_rate=1.0,
            series_rate=0.0,
            workers=1,
        )
    )
    with open(out / "phantom_meta.csv") as fh:
        meta = {row["image_id"]: row for row in csv.DictReader(fh)}
    for record in read_fracatlas(out).records:
        assert meta[record.image_id]["shortcut_marker"] == str(record.label)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"count": 0}, "count"),
        ({"prevalence": 1.5}, "prevalence"),
        ({"image_format": "gif"}, "image_format"),
        ({"shortcut_rate": -0.1}, "shortcut_rate"),
        ({"size": 8}, "size"),
    ],
)
def test_bad_options(tmp_path, option, message):
    with pytest.raises(ConfigError, match=message):
        PhantomConfig(tmp_path / "x", **option)


def test_module_entry_builds_the_config_from_options(tmp_path, monkeypatch, capsys):
    from data_tools import phantoms

    seen = []
    monkeypatch.setattr(phantoms, "generate_phantoms", seen.append)
    (tmp_path / "c.yaml").write_text("count: 7\nsize: 80\n")
    argv = [
        str(tmp_path / "ph"),
        "--config",
        str(tmp_path / "c.yaml"),
        "--size",
        "96",
        "--format",
        "png16",
        "--official-split",
        "0.5,0.25,0.25",
        "--overwrite",
    ]
    assert phantoms.main(argv) == 0
    (cfg,) = seen
    assert (cfg.output, cfg.count, cfg.size, cfg.image_format) == (tmp_path / "ph", 7, 96, "png16")
    assert (
        cfg.official_split == (0.5, 0.25, 0.25)
        and cfg.overwrite is True
        and cfg.shortcut_rate is None
    )
    assert "phantoms written to" in capsys.readouterr().out


def test_module_entry_turns_bad_options_into_one_line(tmp_path, capsys):
    from data_tools.phantoms import main

    assert main([str(tmp_path / "ph"), "--prevalence", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "prevalence" in err and "\n" not in err
    assert not (tmp_path / "ph").exists()
