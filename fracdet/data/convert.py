"""``fracdet convert``: any supported dataset in, YOLO / COCO / manifest / FracAtlas out.

Data flows one way: read (one annotation model) -> group and split -> place images ->
write each target -> ``convert_report.json``. Sources are never modified and the output
appears only when complete.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

from fracdet import __version__
from fracdet.data.coco import coco_document, read_coco
from fracdet.data.formats import SPLITS, AnnotatedDataset, ImageRecord, Problem, flat_name
from fracdet.data.fracatlas import (
    fracatlas_folder,
    is_fracatlas,
    read_fracatlas,
    write_fracatlas_annotations,
)
from fracdet.data.manifest import LABEL_NAMES, format_manifest
from fracdet.data.splits import (
    STUDY_FRACTIONS,
    SplitReport,
    apply_group_regex,
    assign_splits,
    study_sample,
)
from fracdet.data.yolo import read_yolo_dataset, write_yolo_labels, yolo_data_yaml
from fracdet.errors import ConfigError, DataError
from fracdet.fsutil import LinkMode, atomic_output_dir, output_lock, place_file
from fracdet.log import progress
from fracdet.provenance import records_hash, versions

__all__ = [
    "ConvertConfig",
    "ConvertResult",
    "SOURCE_FORMATS",
    "TARGETS",
    "detect_format",
    "read_dataset",
    "convert",
]

logger = logging.getLogger(__name__)

SOURCE_FORMATS = ("auto", "fracatlas", "yolo", "coco")
TARGETS = ("yolo", "coco", "manifest", "fracatlas")
#: ``study``: the robust-transfer study's classification set (all fractured images and a
#: seeded sample of the others, ``negative_ratio`` per fractured one), split 80/10/10.
SPLIT_STRATEGIES = ("auto", "official", "random", "study")
REPORT_NAME = "convert_report.json"


@dataclass(frozen=True)
class ConvertConfig:
    """Everything ``convert`` needs; the CLI and YAML configs build one of these."""

    config_section: ClassVar[str] = "convert"  # its section in a preset (configs/r2i.yaml)

    source: Path
    output: Path
    source_format: str = "auto"
    targets: tuple[str, ...] = ("yolo", "coco", "manifest")
    link: LinkMode = LinkMode.hardlink
    split: str = "auto"
    fractions: tuple[float, float, float] | None = None
    negative_ratio: float = 1.0  # split study only: non-fractured images drawn per fractured one
    seed: int = 0
    group_regex: str | None = None
    images_root: Path | None = None
    full_check: bool = False
    #: Keep only the images the official split lists (FracAtlas: the 717 fractured images of
    #: its localization split), e.g. to train a detector on the published split.
    official_only: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.source_format not in SOURCE_FORMATS:
            raise ConfigError(
                f"unknown source format {self.source_format!r}; choose from "
                f"{', '.join(SOURCE_FORMATS)}"
            )
        unknown = set(self.targets) - set(TARGETS)
        if unknown or not self.targets:
            raise ConfigError(
                f"unknown target(s) {sorted(unknown) or '(none)'}; choose from {', '.join(TARGETS)}"
            )
        if "fracatlas" in self.targets and {"yolo", "coco"} & set(self.targets):
            raise ConfigError(
                "the fracatlas target cannot share an output folder with yolo/coco; convert twice"
            )
        if self.split not in SPLIT_STRATEGIES:
            raise ConfigError(
                f"unknown split strategy {self.split!r}; choose from {', '.join(SPLIT_STRATEGIES)}"
            )
        if self.official_only and self.split == "random":
            raise ConfigError(
                "official_only keeps the official split's images: it needs split auto or "
                "official, not random"
            )
        if not self.negative_ratio > 0:
            raise ConfigError(
                "negative_ratio must be > 0 (non-fractured images drawn per fractured one), "
                f"got {self.negative_ratio}"
            )
        if Path(self.output).resolve() == Path(self.source).resolve():
            raise ConfigError("output must differ from the source (sources are never modified)")


@dataclass
class ConvertResult:
    output: Path
    n_images: int
    n_skipped: int
    split_counts: dict[str, dict[str, int]]
    problem_counts: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        """One line for a person: images per split and class, skips, where the details are."""
        counts = "; ".join(
            f"{s}: " + ", ".join(f"{n} {c}" for c, n in per.items())
            for s, per in self.split_counts.items()
        )
        return (
            f"{self.n_images} images -> {self.output} ({counts}); "
            f"{self.n_skipped} skipped, see {REPORT_NAME}"
        )


def detect_format(source: Path) -> str:
    """fracatlas for its folder layout, yolo for a data.yaml, coco for a .json or annotations/."""
    source = Path(source)
    if not source.exists():
        raise DataError("source not found", source)
    if source.is_dir() and is_fracatlas(source):
        return "fracatlas"
    if source.suffix in (".yaml", ".yml") or (source / "data.yaml").is_file():
        return "yolo"
    if source.suffix == ".json" or (source / "annotations").is_dir():
        return "coco"
    raise DataError(
        "cannot tell the format: expected images/Fractured (FracAtlas), data.yaml (YOLO) or a "
        "COCO .json",
        source,
    )


def read_dataset(
    source: Path,
    source_format: str = "auto",
    *,
    images_root: Path | None = None,
    full_check: bool = False,
) -> AnnotatedDataset:
    """Read any supported dataset into the one annotation model."""
    fmt = detect_format(source) if source_format == "auto" else source_format
    if fmt == "fracatlas":
        return read_fracatlas(source, full_check=full_check)
    if fmt == "yolo":
        return read_yolo_dataset(source, full_check=full_check)
    files = (
        sorted(Path(source, "annotations").glob("*.json"))
        if Path(source).is_dir()
        else [Path(source)]
    )
    if not files:
        raise DataError("no COCO .json files in annotations/", source)
    parts = [read_coco(f, images_root, full_check=full_check) for f in files]
    first = parts[0]
    for part in parts[1:]:
        if part.class_names != first.class_names:
            raise DataError(f"categories differ from those of {files[0].name}", part.root)
        first.records += part.records
        first.problems += part.problems
    return first


def _dedupe_names(records: list[ImageRecord], problems: list[Problem]) -> list[ImageRecord]:
    """Ultralytics pairs image and label by stem, so two images may not share one in a split."""
    seen: set[tuple[str | None, str]] = set()
    kept = []
    for record in records:
        key = (record.split, Path(flat_name(record.image_id)).stem.lower())
        if key in seen:
            problems.append(
                Problem(
                    str(record.path),
                    "duplicate_id",
                    f"another image in {record.split} has the stem {key[1]!r}",
                    "image skipped",
                )
            )
            continue
        seen.add(key)
        kept.append(record)
    return kept


def _only_official(records: list[ImageRecord], problems: list[Problem]) -> list[ImageRecord]:
    """The records the official split lists; the others are left out (counted in the report, not
    listed one by one).
    """
    kept = [r for r in records if r.split in SPLITS]
    left_out = len(records) - len(kept)
    if left_out:
        problems.append(
            Problem(
                "(dataset)",
                "not_in_official_split",
                f"{left_out} image(s) not listed by the official split",
                "left out (official_only)",
            )
        )
    return kept


def _usable_or_fail(dataset: AnnotatedDataset) -> None:
    if dataset.records:
        return
    kinds = Counter(p.kind for p in dataset.problems)
    first = next(
        (p for p in dataset.problems if p.kind == "image_corrupt"),
        dataset.problems[0] if dataset.problems else None,
    )
    summary = ", ".join(f"{n} {k}" for k, n in kinds.most_common()) or "no images found"
    hint = f" (first: {first.file}: {first.detail})" if first else ""
    raise DataError(f"nothing usable left: {summary}{hint}", dataset.root)


def convert(config: ConvertConfig) -> ConvertResult:
    """Run one conversion; see :class:`ConvertConfig` for the options."""
    with output_lock(Path(config.output)):
        return _convert(config)


def _convert(config: ConvertConfig) -> ConvertResult:
    """Run one conversion; see :class:`ConvertConfig` for the options."""
    started = time.perf_counter()
    dataset = read_dataset(
        Path(config.source),
        config.source_format,
        images_root=config.images_root,
        full_check=config.full_check,
    )
    _usable_or_fail(dataset)
    records = (
        apply_group_regex(dataset.records, config.group_regex)
        if config.group_regex
        else dataset.records
    )
    if (config.split == "official" or config.official_only) and not dataset.has_official_split:
        option = "--official-only" if config.official_only else "--split official"
        raise ConfigError(f"{option}: {config.source} has no official split")
    if config.official_only:
        records = _only_official(records, dataset.problems)
    sample = None
    fractions = config.fractions
    if config.split == "study":
        records, sample = study_sample(
            records, negative_ratio=config.negative_ratio, seed=config.seed
        )
        fractions = fractions or STUDY_FRACTIONS
    records, split_report, split_problems = assign_splits(
        records,
        fractions=fractions,
        seed=config.seed,
        use_official=config.split not in ("random", "study"),
        class_names=LABEL_NAMES,
    )
    if sample is not None:
        split_report.strategy = "study-sample+grouped-stratified"
    problems = [*dataset.problems, *split_problems]
    records = _dedupe_names(records, problems)

    with atomic_output_dir(Path(config.output), overwrite=config.overwrite) as tmp:
        paths, link_modes = _place_images(records, tmp, config)
        detection = [r for r in records if not (r.label and not r.boxes)]
        if "yolo" in config.targets:
            write_yolo_labels(detection, tmp)
            (tmp / "data.yaml").write_text(
                yolo_data_yaml(dataset.class_names, SPLITS), encoding="utf-8"
            )
        if "coco" in config.targets:
            _write_coco(detection, dataset.class_names, tmp)
        if "manifest" in config.targets:
            (tmp / "manifest.csv").write_text(format_manifest(records, paths), encoding="utf-8")
        if "fracatlas" in config.targets:
            write_fracatlas_annotations(
                records, tmp, dataset.class_names, name_of=lambda r: flat_name(r.image_id)
            )
        report = _report(
            config,
            dataset,
            records,
            split_report,
            problems,
            link_modes,
            time.perf_counter() - started,
        )
        if sample is not None:
            report["split"]["study_sample"] = sample
        (tmp / REPORT_NAME).write_text(json.dumps(report, indent=2), encoding="utf-8")
    n_skipped = sum(1 for p in problems if p.action == "image skipped")
    logger.info(
        "Converted %d images into %s (%d skipped; see %s)",
        len(records),
        config.output,
        n_skipped,
        REPORT_NAME,
    )
    return ConvertResult(
        Path(config.output), len(records), n_skipped, split_report.counts, report["problem_counts"]
    )


def _place_images(
    records: list[ImageRecord], out: Path, config: ConvertConfig
) -> tuple[list[str], Counter]:
    """Link (or copy) images into the output; returns each record's manifest path.

    A fractured image without a box stays out of the image folders (a detector would learn it
    as background); its manifest row points at the source instead.
    """
    modes: Counter = Counter()
    paths: list[str] = []
    fracatlas = "fracatlas" in config.targets
    if not (fracatlas or {"yolo", "coco"} & set(config.targets)):
        return [os.path.abspath(r.path) for r in records], modes
    folders = (
        ("images/Fractured", "images/Non_fractured")
        if fracatlas
        else tuple(f"images/{s}" for s in SPLITS)
    )
    for folder in folders:
        (out / folder).mkdir(parents=True)
    for record in progress(records, "Placing images", total=len(records)):
        if record.label and not record.boxes and not fracatlas:
            paths.append(os.path.abspath(record.path))
            continue
        relative = f"{_image_folder(record, fracatlas)}/{flat_name(record.image_id)}"
        modes[place_file(Path(record.path), out / relative, config.link).value] += 1
        paths.append(relative)
    if config.link is LinkMode.hardlink and modes.get("copy"):
        logger.warning(
            "Hard links are not possible here (another file system?): %d images were copied",
            modes["copy"],
        )
    return paths, modes


def _image_folder(record: ImageRecord, fracatlas: bool) -> str:
    return f"images/{fracatlas_folder(record)}" if fracatlas else f"images/{record.split}"


def _write_coco(records: list[ImageRecord], class_names: tuple[str, ...], out: Path) -> None:
    (out / "annotations").mkdir()
    for split in SPLITS:
        in_split = [r for r in records if r.split == split]
        doc = coco_document(in_split, class_names, lambda r: flat_name(r.image_id))
        (out / "annotations" / f"instances_{split}.json").write_text(
            json.dumps(doc), encoding="utf-8"
        )


def _report(
    config: ConvertConfig,
    dataset: AnnotatedDataset,
    records: list[ImageRecord],
    split_report: SplitReport,
    problems: list[Problem],
    link_modes: Counter,
    elapsed: float,
) -> dict:
    config_dict = {
        k: (str(v) if isinstance(v, Path) else v.value if isinstance(v, LinkMode) else v)
        for k, v in asdict(config).items()
    }
    rows = (
        (
            r.image_id,
            r.width,
            r.height,
            r.label,
            r.split,
            [b.as_list() + [b.label] for b in r.boxes],
        )
        for r in records
    )
    return {
        "fracdet_version": __version__,
        "versions": versions(("numpy", "pillow", "pyyaml")),
        "config": config_dict,
        "source_format": dataset.source_format,
        "class_names": list(dataset.class_names),
        "images_written": len(records),
        "boxes_written": sum(len(r.boxes) for r in records),
        "images_skipped": sum(1 for p in problems if p.action == "image skipped"),
        "link_modes": dict(link_modes),
        "records_hash": records_hash(rows),
        "split": split_report.as_dict(),
        "problem_counts": dict(Counter(p.kind for p in problems).most_common()),
        "problems": [p.as_dict() for p in problems],
        "elapsed_s": round(elapsed, 3),
    }
