"""Synthetic radiograph phantoms written in the exact FracAtlas layout.

No real data can be downloaded everywhere, so fracdet ships a generator of
musculoskeletal radiographs with known fracture boxes (rendering in
:mod:`data_tools.phantom_render`). The output reads like FracAtlas: same folders, CSV
columns, annotation files and a FracAtlas-style official split (fractured images only,
drawn image by image, so it can leak a multi-view series across splits as the real one can).

``shortcut_rate`` plants a spurious cue: a marker drawn on fractured images with that
probability and on intact ones with one minus it, so a classifier can learn the marker
instead of the fracture, and the audit can catch it. ``phantom_meta.csv`` records where.

Run ``fracdet phantoms OUT`` or ``python -m data_tools.phantoms OUT``.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

import cv2
import numpy as np

from data_tools.phantom_render import BODY_PARTS, render_radiograph
from fracdet.config import build_config
from fracdet.data.formats import Box, ImageRecord
from fracdet.data.fracatlas import FRACATLAS_CLASSES, write_fracatlas_annotations
from fracdet.errors import ConfigError, DataError, FracdetError
from fracdet.fsutil import atomic_output_dir
from fracdet.log import progress, setup_logging

__all__ = [
    "PhantomConfig",
    "generate_phantoms",
    "mixed_format_folder",
    "shortcut_regions",
    "IMAGE_FORMATS",
    "SHORTCUT_REGION",
]

logger = logging.getLogger(f"fracdet.{__name__}")

IMAGE_FORMATS = {"jpg": ".jpg", "png": ".png", "png16": ".png"}
# Body parts in roughly FracAtlas' proportions (hand, leg, hip, shoulder, mixed).
BODY_PART_WEIGHTS = (0.35, 0.4, 0.07, 0.06, 0.12)
ASPECT = 373 / 454  # FracAtlas' most common frame
#: the shortcut marker's name in the named-regions CSV the causal box test reads
SHORTCUT_REGION = "shortcut marker"


@dataclass(frozen=True)
class PhantomConfig:
    """Options of the generator; ``size`` is the long side in pixels."""

    output: Path
    count: int = 200
    size: int = 512
    seed: int = 0
    prevalence: float = 0.18
    max_fractures: int = 2
    image_format: str = "jpg"
    shortcut_rate: float | None = None
    crack_scale: float = 1.0  # crack width multiplier: 1 is FracAtlas-subtle, 3-4 clearly visible
    hardware_rate: float = 0.05
    letter_marker_rate: float = 0.5
    series_rate: float = 0.15
    official_split: tuple[float, float, float] = (0.8, 0.115, 0.085)
    workers: int = 0
    overwrite: bool = False

    def __post_init__(self) -> None:
        checks = [
            (self.count >= 1, f"count must be >= 1, got {self.count}"),
            (32 <= self.size <= 4096, f"size must be in 32..4096, got {self.size}"),
            (0.0 <= self.prevalence <= 1.0, f"prevalence must be in [0, 1], got {self.prevalence}"),
            (self.max_fractures >= 1, f"max_fractures must be >= 1, got {self.max_fractures}"),
            (
                self.image_format in IMAGE_FORMATS,
                f"image_format must be one of {', '.join(IMAGE_FORMATS)}, "
                f"got {self.image_format!r}",
            ),
            (
                self.shortcut_rate is None or 0.0 <= self.shortcut_rate <= 1.0,
                f"shortcut_rate must be in [0, 1], got {self.shortcut_rate}",
            ),
            (
                0.5 <= self.crack_scale <= 10.0,
                f"crack_scale must be in 0.5..10, got {self.crack_scale}",
            ),
            (
                abs(sum(self.official_split) - 1) < 1e-6,
                f"official_split must sum to 1, got {self.official_split}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


@dataclass(frozen=True)
class _Task:
    """Everything one worker needs to render and save one image, drawn up front."""

    index: int
    image_id: str
    folder: str
    path: str
    height: int
    width: int
    body_part: str
    n_fractures: int
    hardware: bool
    letter_marker: bool
    shortcut_marker: bool
    anatomy_seed: tuple[int, ...]
    view_seed: tuple[int, ...]
    image_format: str
    crack_scale: float = 1.0


def _plan(config: PhantomConfig, out: Path) -> tuple[list[_Task], dict[str, dict[str, str]]]:
    """Draw patients (label, body part, views) and the images they yield, deterministically."""
    rng = np.random.default_rng(config.seed)
    suffix = IMAGE_FORMATS[config.image_format]
    tasks: list[_Task] = []
    meta: dict[str, dict[str, str]] = {}
    patient = 0
    while len(tasks) < config.count:
        fractured = bool(rng.random() < config.prevalence)
        body_part = BODY_PARTS[int(rng.choice(len(BODY_PARTS), p=BODY_PART_WEIGHTS))]
        n_views = int(rng.integers(2, 4)) if rng.random() < config.series_rate else 1
        n_views = min(n_views, config.count - len(tasks))
        n_fractures = int(rng.integers(1, config.max_fractures + 1)) if fractured else 0
        hardware = bool(rng.random() < config.hardware_rate)
        shortcut = config.shortcut_rate is not None and bool(
            rng.random() < (config.shortcut_rate if fractured else 1 - config.shortcut_rate)
        )
        for view in range(n_views):
            index = len(tasks)
            portrait = bool(rng.random() < 0.6)
            long_side, short_side = config.size, max(16, round(config.size * ASPECT))
            image_id = f"IMG{index:07d}{suffix}"
            folder = "Fractured" if fractured else "Non_fractured"
            tasks.append(
                _Task(
                    index,
                    image_id,
                    folder,
                    str(out / "images" / folder / image_id),
                    long_side if portrait else short_side,
                    short_side if portrait else long_side,
                    body_part,
                    n_fractures,
                    hardware,
                    bool(rng.random() < config.letter_marker_rate),
                    shortcut,
                    (config.seed, patient),
                    (config.seed, patient, view, 1),
                    config.image_format,
                    config.crack_scale,
                )
            )
            meta[image_id] = {
                "patient": f"P{patient:06d}",
                "view": str(view),
                "n_views": str(n_views),
            }
        patient += 1
    return tasks, meta


def _render(task: _Task) -> tuple[int, dict]:
    """Worker: render one phantom, save it, return its boxes and facts."""
    phantom = render_radiograph(
        np.random.default_rng(task.anatomy_seed),
        np.random.default_rng(task.view_seed),
        height=task.height,
        width=task.width,
        body_part=task.body_part,
        n_fractures=task.n_fractures,
        hardware=task.hardware,
        letter_marker=task.letter_marker,
        shortcut_marker=task.shortcut_marker,
        crack_scale=task.crack_scale,
    )
    image = np.clip(phantom.image, 0.0, 1.0)
    if task.image_format == "png16":
        ok = cv2.imwrite(task.path, np.round(image * 65535).astype(np.uint16))
    else:
        params = [cv2.IMWRITE_JPEG_QUALITY, 92] if task.image_format == "jpg" else []
        ok = cv2.imwrite(task.path, np.round(image * 255).astype(np.uint8), params)
    if not ok:
        raise OSError(f"could not write {task.path}")
    return task.index, {
        "boxes": phantom.fracture_boxes,
        "types": phantom.fracture_types,
        "shortcut_box": phantom.shortcut_box,
        "hardware": bool(phantom.hardware_boxes),
        "letter_marker": bool(phantom.marker_boxes),
    }


def _official_split(
    tasks: list[_Task], fractions: tuple[float, float, float], seed: int
) -> dict[str, str]:
    """FracAtlas-style: fractured images only, shuffled image by image."""
    fractured = [t.image_id for t in tasks if t.n_fractures]
    order = np.random.default_rng((seed, 7)).permutation(len(fractured))
    n_train = round(fractions[0] * len(fractured))
    n_val = round(fractions[1] * len(fractured))
    split_of = {}
    for rank, position in enumerate(order):
        split_of[fractured[position]] = (
            "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
        )
    return split_of


def generate_phantoms(config: PhantomConfig) -> Path:
    """Write ``config.count`` phantoms in FracAtlas layout to ``config.output``; returns it."""
    workers = config.workers or min(2, os.cpu_count() or 1)
    with atomic_output_dir(Path(config.output), overwrite=config.overwrite) as tmp:
        for folder in ("Fractured", "Non_fractured"):
            (tmp / "images" / folder).mkdir(parents=True)
        tasks, meta = _plan(config, tmp)
        results: dict[int, dict] = {}
        if workers > 1 and len(tasks) > 8:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for index, facts in progress(
                    pool.map(_render, tasks, chunksize=8), "Rendering phantoms", total=len(tasks)
                ):
                    results[index] = facts
        else:
            for index, facts in progress(
                map(_render, tasks), "Rendering phantoms", total=len(tasks)
            ):
                results[index] = facts
        split_of = _official_split(tasks, config.official_split, config.seed)
        records = [
            _record(task, results[task.index], meta[task.image_id], split_of) for task in tasks
        ]
        write_fracatlas_annotations(records, tmp, FRACATLAS_CLASSES)
        _write_meta(tmp / "phantom_meta.csv", tasks, results, meta)
    logger.info(
        "Wrote %d phantoms (%d fractured) to %s",
        len(tasks),
        sum(1 for t in tasks if t.n_fractures),
        config.output,
    )
    return Path(config.output)


def _record(
    task: _Task, facts: dict, meta: dict[str, str], split_of: dict[str, str]
) -> ImageRecord:
    multiscan = int(meta["n_views"]) > 1
    view = int(meta["view"])
    attributes = {part: str(int(task.body_part == part)) for part in BODY_PARTS}
    attributes.update(
        hardware=str(int(facts["hardware"])),
        multiscan=str(int(multiscan)),
        frontal=str(int(view % 2 == 0)),
        lateral=str(int(view % 2 == 1)),
        oblique="0",
    )
    return ImageRecord(
        image_id=task.image_id,
        path=Path(task.path),
        width=task.width,
        height=task.height,
        label=int(task.n_fractures > 0),
        boxes=tuple(Box(*b, label=0) for b in facts["boxes"]),
        group=meta["patient"],
        split=split_of.get(task.image_id),
        body_part=task.body_part,
        attributes=attributes,
    )


def _write_meta(
    path: Path, tasks: list[_Task], results: dict[int, dict], meta: dict[str, dict[str, str]]
) -> None:
    """Ground truth the FracAtlas files cannot hold: patient, fracture types, shortcut marker."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(
            [
                "image_id",
                "patient",
                "view",
                "fracture_types",
                "hardware",
                "letter_marker",
                "shortcut_marker",
                "shortcut_box",
            ]
        )
        for task in tasks:
            facts = results[task.index]
            box = facts["shortcut_box"]
            writer.writerow(
                [
                    task.image_id,
                    meta[task.image_id]["patient"],
                    meta[task.image_id]["view"],
                    ";".join(facts["types"]),
                    int(facts["hardware"]),
                    int(facts["letter_marker"]),
                    int(box is not None),
                    "" if box is None else ";".join(f"{v:.1f}" for v in box),
                ]
            )


def shortcut_regions(phantoms: Path, output: Path | None = None) -> Path:
    """The shortcut markers of a phantom set as a named-regions CSV (``fracdet.data.regions``),
    for the audit's ``causal_regions``: the causal box test then removes each marker.

    Read from ``phantom_meta.csv`` (the marker's box in the original image's pixels, which
    ``fracdet convert`` keeps, under the same image ids); written to ``output`` (default
    ``PHANTOMS/shortcut_regions.csv``). Returns the CSV's path.
    """
    from fracdet.data.regions import write_regions

    meta = Path(phantoms) / "phantom_meta.csv"
    if not meta.is_file():
        raise DataError("no phantom_meta.csv: not a folder written by the generator", meta)
    with open(meta, newline="", encoding="utf-8") as fh:
        rows = [
            (row["image_id"], SHORTCUT_REGION, Box(*map(float, row["shortcut_box"].split(";"))))
            for row in csv.DictReader(fh)
            if row["shortcut_box"]
        ]
    return write_regions(Path(output or Path(phantoms) / "shortcut_regions.csv"), rows)


def main(argv: list[str] | None = None) -> int:
    """``python -m data_tools.phantoms OUT [--count N ...]``: the generator without the CLI.

    One ``--option`` per :class:`PhantomConfig` field, values coerced and checked by
    :func:`fracdet.config.build_config`, so this door cannot drift from the config; the
    ``fracdet phantoms`` command (with its help texts) stays the main one.
    """
    parser = argparse.ArgumentParser(
        prog="python -m data_tools.phantoms",
        description="Generate synthetic radiograph phantoms in FracAtlas layout.",
    )
    parser.add_argument("output", type=Path, help="Folder to create (FracAtlas layout).")
    parser.add_argument("--config", type=Path, help="YAML file of defaults (options win).")
    parser.add_argument(
        "--overwrite", action="store_true", default=None, help="Replace an existing output."
    )
    for f in fields(PhantomConfig):
        if f.name not in ("output", "overwrite"):
            flags = [
                f"--{f.name.replace('_', '-')}",
                *(["--format"] if f.name == "image_format" else []),
            ]  # as `fracdet phantoms`
            parser.add_argument(
                *flags, dest=f.name, metavar=f.name.upper(), help=f"default: {f.default}"
            )
    options = vars(parser.parse_args(argv))
    setup_logging()
    try:
        generate_phantoms(build_config(PhantomConfig, options.pop("config"), **options))
    except FracdetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"phantoms written to {options['output']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def mixed_format_folder(
    output: Path,
    *,
    count: int = 12,
    size: int = 256,
    seed: int = 0,
    crack_scale: float = 1.0,
    prevalence: float = 0.5,
) -> Path:
    """A flat folder of new phantoms as a hospital export might hold them: JPEG, 16-bit PNG and
    DICOM in turn.

    What ``fracdet predict`` meets in practice (and what the demo shows it reading); labels are
    not written: the point is inference on unlabelled files.
    """
    import tempfile

    from PIL import Image

    from data_tools.dicom import write_dicom

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent) as scratch:
        source = generate_phantoms(
            PhantomConfig(
                Path(scratch) / "p",
                count=count,
                size=size,
                seed=seed,
                prevalence=prevalence,
                crack_scale=crack_scale,
                image_format="png16",
                workers=1,
            )
        )
        paths = sorted((source / "images").rglob("*.png"))
        for k, path in enumerate(paths):
            with Image.open(path) as image:
                pixels = np.asarray(image, dtype=np.uint16)
            stem = f"new_{k:03d}"
            if k % 3 == 0:
                Image.fromarray((pixels >> 8).astype(np.uint8)).save(
                    output / f"{stem}.jpg", quality=95
                )
            elif k % 3 == 1:
                shutil.copyfile(path, output / f"{stem}.png")
            else:
                write_dicom(output / f"{stem}.dcm", pixels, bits_stored=16)
    return output
