"""``fracdet eval-det``: score a YOLO detector with COCO's own code, plus image-level numbers.

The reference numbers are pycocotools' COCOeval (101-point interpolated AP), computed on the
converter's COCO ground truth (read through :mod:`fracdet.data.coco`), so they compare with
the literature. Ultralytics' own ``val`` is reported next to them because that is what its
training logs show; the two differ slightly by design (see :data:`ULTRALYTICS_NOTE`).
Clinicians also ask "is this image fractured?", so each image gets its best box score and an
AUROC, sensitivity and specificity. The headline numbers also go onto the detector's model
card (:mod:`fracdet.det.card`), the latest per split.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fracdet import __version__
from fracdet.data.coco import parse_coco, read_coco
from fracdet.data.formats import ImageRecord, Problem
from fracdet.data.yolo import read_class_names
from fracdet.det.card import record_detector_evaluation
from fracdet.det.coco_eval import (
    bootstrap_map_ci,
    coco_map,
    image_level_metrics,
    image_level_scores,
    predictions_to_coco_results,
    to_coco_gt,
    to_coco_results,
)
from fracdet.det.inference import Detection, DetectOptions, detect, result_boxes
from fracdet.det.model import (
    check_class_names,
    load_detector,
    model_class_names,
    resolve_data_yaml,
    ultralytics_offline,
)
from fracdet.errors import ConfigError, DataError
from fracdet.fsutil import atomic_output_dir, sha256_file
from fracdet.provenance import records_hash, versions
from fracdet.report.tables import number_cell
from fracdet.runtime import seed_everything

__all__ = [
    "DetEvalConfig",
    "DetEvalSummary",
    "ULTRALYTICS_NOTE",
    "METRICS_NAME",
    "evaluate_detector",
    # re-exported: fracdet.predict imports them from here (they live in coco_eval / inference)
    "predictions_to_coco_results",
    "result_boxes",
]

logger = logging.getLogger(__name__)

ULTRALYTICS_NOTE = (
    "Ultralytics' val interpolates precision-recall curves its own way (continuous, np.interp, "
    "where COCO "
    "samples 101 recall points) and letterboxes batches rectangularly, so its mAP differs from the "
    "pycocotools "
    "numbers: slightly for a good detector, by more when precision is low or boxes are few"
)
METRICS_NAME = "det_metrics.json"


@dataclass(frozen=True)
class DetEvalConfig:
    """Options of ``eval-det``. ``data`` is a ``fracdet convert`` output folder or its data.yaml.

    ``conf`` is low on purpose: mAP integrates over all thresholds, so low-score boxes count.
    ``image_threshold`` is the box score above which an image is called fractured (and the
    score from which boxes are drawn in the examples figure). ``trust_pickle`` unpickles
    ``weights`` in full instead of through Ultralytics' restricted loader.
    """

    weights: Path
    data: Path
    split: str = "test"
    imgsz: int = 640
    batch: int = 16
    conf: float = 0.001
    iou: float = 0.6
    max_det: int = 100
    image_threshold: float = 0.25
    device: str | None = None
    output: Path = Path("reports/det_eval")
    overwrite: bool = False
    seed: int = 0
    examples: int = 6
    ultralytics_val: bool = True
    trust_pickle: bool = False
    n_boot: int = (
        0  # bootstrap replicates for the mAP CIs (0: none; each replicate reruns COCOeval)
    )

    def __post_init__(self) -> None:
        checks = [
            (
                self.split in ("train", "val", "test"),
                f"split must be train, val or test, got {self.split!r}",
            ),
            (self.batch >= 1, f"batch must be >= 1, got {self.batch}"),
            (
                0.0 <= self.image_threshold <= 1.0,
                f"image_threshold must be in [0, 1], got {self.image_threshold}",
            ),
            (self.examples >= 0, f"examples must be >= 0, got {self.examples}"),
            (self.n_boot >= 0, f"n_boot must be >= 0, got {self.n_boot}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        self.detect_options()  # imgsz, conf, iou and max_det are checked where they are used

    def detect_options(self) -> DetectOptions:
        """The prediction settings of this evaluation."""
        return DetectOptions(
            imgsz=self.imgsz, conf=self.conf, iou=self.iou, max_det=self.max_det, device=self.device
        )


@dataclass(frozen=True)
class DetEvalSummary:
    """What ``eval-det`` measured: ``metrics`` is ``det_metrics.json`` in ``output``."""

    output: Path
    metrics: dict[str, Any]

    def line(self) -> str:
        coco, image = self.metrics["coco"], self.metrics["image_level"]
        auroc = number_cell(image.get("auroc"), missing="undefined")
        return (
            f"mAP@0.5 {_fmt(coco['map_50'])}, mAP@0.5:0.95 {_fmt(coco['map_50_95'])}, "
            f"image-level AUROC {auroc}; report: {self.output}"
        )


def _fmt(value: float | None) -> str:
    return number_cell(value, missing="n/a")


def evaluate_detector(cfg: DetEvalConfig) -> DetEvalSummary:
    """Predict the split, score it (COCO, image level, Ultralytics val), write JSON and figures.

    Writes ``predictions_{split}.json`` (COCO results), ``det_metrics.json``,
    ``pr_curve_{split}.png`` and ``examples_{split}.png`` into ``cfg.output``. Image ids are the
    ground-truth file's own, so ``predictions_{split}.json`` scores against that file with any
    COCO tool, also when an image could not be read.
    """
    data_yaml = resolve_data_yaml(cfg.data).resolve()
    root = data_yaml.parent
    gt_path = root / "annotations" / f"instances_{cfg.split}.json"
    if not gt_path.is_file():
        raise DataError(
            f"no COCO ground truth for split {cfg.split!r} (convert with the coco target)", gt_path
        )
    images_dir = root / "images" / cfg.split
    dataset = read_coco(gt_path, images_dir)
    records = dataset.records
    coco_ids = parse_coco(gt_path).ids
    problems = [_problem_row(p, images_dir) for p in dataset.problems]
    n_listed = len(records) + sum(1 for p in dataset.problems if p.action == "image skipped")
    if not n_listed:
        raise DataError(f"split {cfg.split!r} has no images", gt_path)
    _fail_if_none_read(records, problems, n_listed, cfg.split, gt_path)
    data_names = read_class_names(data_yaml)
    if dataset.class_names != data_names:
        raise DataError(
            f"categories {list(dataset.class_names)} differ from data.yaml names "
            f"{list(data_names)}",
            gt_path,
        )
    model = load_detector(cfg.weights, trust_pickle=cfg.trust_pickle)
    check_class_names(
        model_class_names(model), data_names, weights=Path(cfg.weights), data=data_yaml
    )
    seed_everything(cfg.seed)

    output = Path(cfg.output)
    with atomic_output_dir(output, overwrite=cfg.overwrite) as tmp:
        detections = detect(
            model,
            [r.path for r in records],
            cfg.detect_options(),
            batch=cfg.batch,
            description=f"Detecting ({cfg.split})",
        )
        # Scored on what could be read: a skipped image is not a missed fracture.
        problems += [_skipped(r, d) for r, d in zip(records, detections, strict=True) if not d.ok]
        n_skipped = sum(1 for p in problems if p["action"] == "image skipped")
        if n_skipped:
            logger.warning(
                "%d image(s) of %s skipped (listed in %s)", n_skipped, cfg.split, METRICS_NAME
            )
        image_ids = [coco_ids[r.image_id] for r in records]
        gt = to_coco_gt(records, data_names, image_ids)
        results = to_coco_results([(d.boxes, d.scores) for d in detections], image_ids)
        predictions_name = f"predictions_{cfg.split}.json"
        (tmp / predictions_name).write_text(json.dumps(results), encoding="utf-8")
        kept = [k for k, d in enumerate(detections) if d.ok]
        _fail_if_none_read(kept, problems, n_listed, cfg.split, gt_path)
        if len(kept) < len(records):
            gt = _only_images(gt, {image_ids[k] for k in kept})
        coco = coco_map(gt, results)
        if cfg.n_boot:
            coco |= bootstrap_map_ci(gt, results, n_boot=cfg.n_boot, seed=cfg.seed)
        scored = [(records[k], detections[k]) for k in kept]
        y_true, scores = image_level_scores(
            [r.boxes for r, _ in scored], [d.scores for _, d in scored]
        )
        image_level = image_level_metrics(y_true, scores, cfg.image_threshold)
        ultralytics = _ultralytics_val(model, data_yaml, cfg, tmp) if cfg.ultralytics_val else None
        files = {
            "predictions": predictions_name,
            "metrics": METRICS_NAME,
            **_figures(coco, scored, cfg, tmp),
        }
        report = {
            "fracdet_version": __version__,
            "split": cfg.split,
            "weights": str(Path(cfg.weights).resolve()),
            "weights_sha256": sha256_file(Path(cfg.weights)),
            "data_yaml": str(data_yaml),
            "gt_hash": records_hash([gt["images"], gt["annotations"], gt["categories"]]),
            "class_names": list(data_names),
            "coco": coco,
            "image_level": image_level,
            "ultralytics": ultralytics,
            "problems": problems,
            "files": {k: str(output / v) for k, v in files.items()},
            "seed": cfg.seed,
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
            "versions": versions(),
        }
        (tmp / METRICS_NAME).write_text(json.dumps(report, indent=2), encoding="utf-8")
    record_detector_evaluation(cfg.weights, report, output / METRICS_NAME)
    logger.info(
        "%s on %s: COCO mAP@0.5 %s, mAP@[.5:.95] %s, image AUROC %s (details in %s)",
        Path(cfg.weights).name,
        cfg.split,
        _fmt(coco["map_50"]),
        _fmt(coco["map_50_95"]),
        _fmt(image_level["auroc"]),
        output / METRICS_NAME,
    )
    return DetEvalSummary(output, report)


def _problem_row(problem: Problem, images_dir: Path) -> dict[str, str]:
    """A reader's problem as the report lists it; a skipped image is named by its full path."""
    row = problem.as_dict()
    if problem.action == "image skipped" and not Path(problem.file).is_absolute():
        row["file"] = str(images_dir / problem.file)
    return row


def _skipped(record: ImageRecord, detection: Detection) -> dict[str, str]:
    return {
        "file": str(record.path),
        "kind": "image_corrupt",
        "detail": detection.error or "",
        "action": "image skipped",
    }


def _fail_if_none_read(
    read: list[Any], problems: list[dict[str, str]], n_listed: int, split: str, gt_path: Path
) -> None:
    if not read:
        first = next(p for p in problems if p["action"] == "image skipped")
        raise DataError(
            f"none of the {n_listed} images of split {split!r} could be read (first: "
            f"{first['file']}: {first['detail']})",
            gt_path,
        )


def _only_images(gt: dict[str, Any], image_ids: set[int | str]) -> dict[str, Any]:
    """``gt`` restricted to ``image_ids`` (images and their boxes), keeping the ids themselves."""
    return {
        **gt,
        "images": [i for i in gt["images"] if i["id"] in image_ids],
        "annotations": [a for a in gt["annotations"] if a["image_id"] in image_ids],
    }


def _figures(
    coco: dict[str, Any], scored: list[tuple[ImageRecord, Detection]], cfg: DetEvalConfig, tmp: Path
) -> dict[str, str]:
    """The PR curve and, when asked for, the examples grid; returns their file names by kind."""
    from fracdet.report.det_figures import plot_examples, plot_pr_curve

    curve = coco["pr_curve"]
    ap50 = {name: ap["ap50"] for name, ap in coco["per_class_ap"].items()}
    title = f"{Path(cfg.weights).name} on {cfg.split}"
    files = {
        "pr_curve": plot_pr_curve(
            curve["recall"],
            curve["precision"],
            tmp / f"pr_curve_{cfg.split}.png",
            ap50=ap50,
            title=title,
        ).name
    }
    if cfg.examples:
        records, predictions = [r for r, _ in scored], [(d.boxes, d.scores) for _, d in scored]
        drawn = plot_examples(
            records,
            predictions,
            tmp / f"examples_{cfg.split}.png",
            count=cfg.examples,
            score_threshold=cfg.image_threshold,
        )
        if drawn is not None:
            files["examples"] = drawn.name
    return files


def _ultralytics_val(model: Any, data_yaml: Path, cfg: DetEvalConfig, tmp: Path) -> dict[str, Any]:
    """Ultralytics' own val on the same split and thresholds, for side-by-side comparison."""
    import shutil

    options: dict[str, Any] = {
        "data": str(data_yaml),
        "split": cfg.split,
        "imgsz": cfg.imgsz,
        "batch": cfg.batch,
        "conf": cfg.conf,
        "iou": cfg.iou,
        "max_det": cfg.max_det,
        "plots": False,
        "verbose": False,
        "project": str(
            tmp
        ),  # absolute: Ultralytics puts relative projects under its settings folder
        "name": "ultralytics_val",
        "exist_ok": True,
    }
    if cfg.device is not None:
        options["device"] = str(cfg.device)
    try:
        with ultralytics_offline():
            metrics = model.val(**options)
    except Exception as exc:  # a side-by-side number; its failure must not cost the COCO results
        logger.warning("Ultralytics' own val failed (%s); the COCO metrics are unaffected", exc)
        return {
            "map_50": None,
            "map_50_95": None,
            "precision": None,
            "recall": None,
            "note": ULTRALYTICS_NOTE,
            "error": f"{type(exc).__name__}: {exc}",
        }
    finally:
        shutil.rmtree(tmp / "ultralytics_val", ignore_errors=True)
    # precision and recall at the confidence of best F1, as Ultralytics (and the FracAtlas
    # paper) report them
    return {
        "map_50": float(metrics.box.map50),
        "map_50_95": float(metrics.box.map),
        "precision": float(metrics.box.mp),
        "recall": float(metrics.box.mr),
        "note": ULTRALYTICS_NOTE,
    }
