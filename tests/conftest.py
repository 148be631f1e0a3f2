"""Shared fixtures: tiny datasets built on the fly (no data is shipped with the tests)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from PIL import Image

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

from fracdet.data.formats import Box, ImageRecord  # noqa: E402
from fracdet.data.fracatlas import write_fracatlas_annotations  # noqa: E402
from fracdet.log import setup_logging  # noqa: E402

# Hypothesis profiles: "ci" (the default) keeps property and fuzz tests to ~50 examples each;
# `pytest --hypothesis-profile=long` runs far more locally. No deadline: the machine is shared.
settings.register_profile(
    "ci", max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")

REAL_FRACATLAS = Path(__file__).resolve().parents[2] / "shared" / "data" / "fracatlas" / "FracAtlas"


@pytest.fixture(autouse=True)
def _quiet_logging():
    setup_logging(quiet=True)


def save_image(path: Path, width: int, height: int, *, seed: int = 0, mode: str = "L") -> Path:
    """A grayscale image (JPEG or PNG by suffix): noise for small ones, a cheap ramp for big
    ones."""
    if width * height <= 256 * 256:
        pixels = np.random.default_rng(seed).integers(0, 255, size=(height, width), dtype=np.uint8)
    else:
        pixels = np.broadcast_to((np.arange(width) * 7 + seed).astype(np.uint8), (height, width))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode="L").convert(mode).save(path)
    return path


def make_fracatlas(
    root: Path,
    specs: list[tuple[str, int, int, list[tuple[float, float, float, float]]]],
    *,
    split: dict[str, str] | None = None,
) -> Path:
    """A FracAtlas tree from ``(image_id, width, height, boxes)``; boxed images are fractured."""
    records = []
    for index, (image_id, width, height, boxes) in enumerate(specs):
        folder = "Fractured" if boxes else "Non_fractured"
        path = save_image(root / "images" / folder / image_id, width, height, seed=index)
        records.append(
            ImageRecord(
                image_id,
                path,
                width,
                height,
                int(bool(boxes)),
                tuple(Box(*b) for b in boxes),
                split=(split or {}).get(image_id),
                body_part=("hand", "leg")[index % 2],
                attributes={"multiscan": "0"},
            )
        )
    write_fracatlas_annotations(records, root)
    return root


@pytest.fixture
def small_fracatlas(tmp_path: Path) -> Path:
    """12 images (4 fractured), portrait and landscape, no official split."""
    specs = []
    for i in range(12):
        w, h = (60, 80) if i % 2 else (80, 60)
        boxes = [(10.5, 12.25, 30.75, 28.0)] if i % 3 == 0 else []
        if i == 3:
            boxes.append((40.0, 5.0, 55.5, 20.0))
        specs.append((f"IMG{i:07d}.jpg", w, h, boxes))
    return make_fracatlas(tmp_path / "fracatlas", specs)


@pytest.fixture(scope="session")
def phantom_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 phantom radiographs (96 px, half fractured) converted: data.yaml, COCO, manifest.csv.

    Session-scoped and read-only: tests that change files copy it first.
    """
    from data_tools.phantoms import PhantomConfig, generate_phantoms
    from fracdet.data.convert import ConvertConfig, convert

    root = tmp_path_factory.mktemp("phantom_dataset")
    source = generate_phantoms(
        PhantomConfig(root / "phantoms", count=48, size=96, seed=0, prevalence=0.5, workers=1)
    )
    return convert(ConvertConfig(source=source, output=root / "dataset", seed=0)).output


#: A study (``fracdet run``) small enough for CI: tiny models and images, one epoch each, two
#: attribution methods.
TINY_STUDY = {
    "workers": 0,
    "n_boot": 100,
    "cls_backbone": "resnet10t",
    "cls_image_size": 64,
    "cls_epochs": 1,
    "cls_batch_size": 8,
    "cls_precision": "fp32",
    "adv_epochs": 1,
    "adv_steps": 1,
    "det_model": "yolov8n.yaml",
    "det_imgsz": 64,
    "det_epochs": 1,
    "det_batch": 8,
    "audit_methods": ["saliency", "gradcam"],
    "audit_steps": 2,
    "audit_batch_size": 8,
    "device": "cpu",
}


def write_study_config(path: Path, source: Path, output: Path, **extra: object) -> Path:
    """A study config with the :data:`TINY_STUDY` profile (and ``extra`` in it)."""
    import yaml

    doc = {
        "source": str(source),
        "output": str(output),
        "profile": "tiny",
        "profiles": {"tiny": {**TINY_STUDY, **extra}},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``fracdet run ROOT/study.yaml`` on 80 phantoms, finished: ``(ROOT, ROOT/run)``.

    Once per session (every stage trains or audits: about half a minute), on one thread like the
    reliability tests' reruns, so their results compare. Tests that change it work on a copy.
    """
    import torch
    from typer.testing import CliRunner

    from data_tools.phantoms import PhantomConfig, generate_phantoms
    from fracdet.cli import app

    root = tmp_path_factory.mktemp("study")
    generate_phantoms(
        PhantomConfig(
            root / "phantoms",
            count=80,
            size=64,
            seed=0,
            prevalence=0.5,
            crack_scale=4.0,
            hardware_rate=0.4,
            workers=0,
        )
    )
    config = write_study_config(root / "study.yaml", root / "phantoms", root / "run")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(app, ["-q", "run", str(config)])
    finally:
        torch.set_num_threads(before)
    assert result.exit_code == 0, result.output
    assert "study (tiny profile)" in result.output and "comparison.md" in result.output
    return root, root / "run"


def make_tiny_detector(root: Path, *, seed: int | None = 0) -> Path:
    """An untrained 1-class YOLOv8n saved as ``root/tiny_det.pt`` that draws a few boxes (offline).

    ``seed=None`` draws its weights from torch's current random state (a fixture that made
    other models first keeps the detector it always had).
    """
    import torch
    import ultralytics
    import yaml
    from ultralytics import YOLO

    # A local model yaml with one class (the name keeps Ultralytics' "n" scale; nothing is
    # downloaded).
    doc = yaml.safe_load(
        (Path(ultralytics.__file__).parent / "cfg/models/v8/yolov8.yaml").read_text()
    )
    doc["nc"] = 1
    (root / "yolov8n.yaml").write_text(yaml.safe_dump(doc))
    if seed is not None:
        torch.manual_seed(seed)
    detector = YOLO(str(root / "yolov8n.yaml"))
    # Untrained YOLO scores every anchor ~0.5 (its signals vanish): re-initialise so that it
    # draws a few boxes with distinct scores, as a trained one would.
    for module in detector.model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    head = detector.model.model[-1]
    for branch in (*head.cv2, *head.cv3):
        torch.nn.init.normal_(branch[-1].weight, std=25)
    for branch in head.cv3:
        torch.nn.init.constant_(branch[-1].bias, -1.5)
    detector.model.names = {0: "fractured"}
    detector.save(str(root / "tiny_det.pt"))
    return root / "tiny_det.pt"


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV as dicts."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def assert_same_rows(path_a: Path, path_b: Path) -> None:
    """Two audit tables agree: same images, decisions and attacks; metrics equal up to float noise.

    Gradients on the CPU are not bitwise reproducible between two calls (kernels reduce in
    varying order), so attribution-derived numbers may differ in the 7th digit.
    """
    a, b = read_rows(path_a), read_rows(path_b)
    assert len(a) == len(b) and [list(r) for r in a] == [list(r) for r in b]
    for row_a, row_b in zip(a, b, strict=True):
        for column, value in row_a.items():
            try:
                x, y = float(value), float(row_b[column])
            except ValueError:
                assert value == row_b[column], (column, value, row_b[column])
                continue
            assert x == pytest.approx(y, rel=1e-4, abs=1e-6, nan_ok=True), (row_a["key"], column)
