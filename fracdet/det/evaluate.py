"""``fracdet eval-det``: score a YOLO detector with COCO's own code, plus image-level numbers.

The reference numbers are pycocotools' COCOeval (101-point interpolated AP), computed on the
converter's COCO ground truth, so they compare with the literature. Ultralytics' own
``val`` is reported next to them because that is what its training logs show; the two differ
slightly by design (see :data:`ULTRALYTICS_NOTE`). Clinicians also ask "is this image
fractured?", so each image gets its best box score and an AUROC, sensitivity and specificity.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fracdet import __version__
from fracdet.confusion import confusion_at
from fracdet.data.formats import Box, box_to_coco
from fracdet.det.model import (
    check_class_names,
    data_class_names,
    load_detector,
    model_class_names,
    resolve_data_yaml,
    ultralytics_offline,
)
from fracdet.errors import ConfigError, DataError, ImageError
from fracdet.fsutil import atomic_output_dir, sha256_file
from fracdet.log import progress
from fracdet.provenance import records_hash, versions
from fracdet.runtime import seed_everything

__all__ = [
    "DetEvalConfig",
    "ULTRALYTICS_NOTE",
    "predictions_to_coco_results",
    "result_boxes",
    "coco_map",
    "image_level_scores",
    "image_level_metrics",
    "evaluate_detector",
]

logger = logging.getLogger(__name__)

ULTRALYTICS_NOTE = (
    "Ultralytics' val interpolates precision-recall curves its own way (continuous, np.interp, where COCO "
    "samples 101 recall points) and letterboxes batches rectangularly, so its mAP differs from the pycocotools "
    "numbers: slightly for a good detector, by more when precision is low or boxes are few"
)
METRICS_NAME = "det_metrics.json"
# COCO's area ranges (pixels^2) for small / medium / large objects.
_SMALL, _MEDIUM = 32**2, 96**2


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

    def __post_init__(self) -> None:
        checks = [
            (self.split in ("train", "val", "test"), f"split must be train, val or test, got {self.split!r}"),
            (self.imgsz >= 32, f"imgsz must be >= 32, got {self.imgsz}"),
            (self.batch >= 1, f"batch must be >= 1, got {self.batch}"),
            (0.0 <= self.conf < 1.0, f"conf must be in [0, 1), got {self.conf}"),
            (0.0 < self.iou <= 1.0, f"iou must be in (0, 1], got {self.iou}"),
            (self.max_det >= 1, f"max_det must be >= 1, got {self.max_det}"),
            (0.0 <= self.image_threshold <= 1.0, f"image_threshold must be in [0, 1], got {self.image_threshold}"),
            (self.examples >= 0, f"examples must be >= 0, got {self.examples}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


# --- boxes -> COCO results -----------------------------------------------------------------


def predictions_to_coco_results(
    image_id: int, boxes: Sequence[Box], scores: Sequence[float], *, first_category_id: int = 1
) -> list[dict[str, Any]]:
    """COCO results rows for one image from pixel-xyxy boxes (``Box.label`` is the 0-based class).

    Category ids are ``label + first_category_id``: 1-based, as in the converter's ground truth.
    """
    if len(boxes) != len(scores):
        raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    return [
        {
            "image_id": int(image_id),
            "category_id": int(box.label) + first_category_id,
            "bbox": [round(float(v), 3) for v in box_to_coco(box)],
            "score": round(float(score), 6),
        }
        for box, score in zip(boxes, scores, strict=True)
    ]


def result_boxes(result: Any) -> tuple[list[Box], list[float]]:
    """Boxes (original-image pixels, xyxy) and scores of one Ultralytics ``Results`` object."""
    boxes = result.boxes
    if boxes is None or len(boxes) == 0:
        return [], []
    xyxy = boxes.xyxy.cpu().numpy().tolist()
    labels = boxes.cls.cpu().numpy().astype(int).tolist()
    scores = boxes.conf.cpu().numpy().astype(float).tolist()
    return [Box(*xy, label=lab) for xy, lab in zip(xyxy, labels, strict=True)], scores


# --- COCO mAP ------------------------------------------------------------------------------


def _load_gt(gt: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A private, complete copy of a COCO ground truth (ids, areas, iscrowd filled in)."""
    if isinstance(gt, Mapping):
        doc = copy.deepcopy(dict(gt))
    else:
        try:
            doc = json.loads(Path(gt).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise DataError("COCO ground truth not found", gt) from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"not valid JSON ({exc})", gt) from exc
    if not isinstance(doc, dict) or "images" not in doc or "categories" not in doc:
        raise DataError("not a COCO detection file (needs images and categories)", None if isinstance(gt, Mapping) else gt)
    doc.setdefault("annotations", [])
    for index, ann in enumerate(doc["annotations"], start=1):
        ann.setdefault("id", index)
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", float(ann["bbox"][2]) * float(ann["bbox"][3]))
    return doc


def _check_results(doc: dict[str, Any], results: Sequence[Mapping[str, Any]]) -> None:
    image_ids = {img["id"] for img in doc["images"]}
    category_ids = {c["id"] for c in doc["categories"]}
    for row in results:
        if row.get("image_id") not in image_ids:
            raise DataError(f"a prediction refers to image id {row.get('image_id')!r}, which the ground truth does not list")
        if row.get("category_id") not in category_ids:
            raise DataError(f"a prediction has category id {row.get('category_id')!r}; the ground truth has {sorted(category_ids)}")


def _none_if_missing(value: float) -> float | None:
    """COCOeval writes -1 where a number does not exist (no ground truth in that bucket)."""
    return None if value is None or value < 0 else float(value)


def coco_map(gt: str | Path | Mapping[str, Any], results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """COCO bbox metrics of ``results`` against ``gt`` (a COCO file or dict), via pycocotools.

    Returns ``map_50_95``, ``map_50``, ``map_75``, ``map_small``, ``map_medium``,
    ``map_large``, ``ar_100``, ``per_class_ap`` (name -> ``{"ap50_95", "ap50"}``) and
    ``pr_curve`` (precision at IoU 0.5 on COCO's 101 recall points, per class). A value is
    ``None`` where it does not exist (no ground-truth box in that class or size range); no
    predictions at all score 0 (pycocotools itself cannot load an empty result list).
    """
    doc = _load_gt(gt)
    _check_results(doc, results)
    categories = sorted(doc["categories"], key=lambda c: c["id"])
    recall = [round(float(r), 2) for r in np.linspace(0.0, 1.0, 101)]
    if not results:
        return _empty_result(doc, categories, recall)
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools narrates every step on stdout
        coco_gt = COCO()
        coco_gt.dataset = doc
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(list(results)))  # loadRes edits the rows it gets
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    precision = evaluator.eval["precision"]  # [IoU thresholds, recall points, classes, areas, max dets]
    per_class: dict[str, dict[str, float | None]] = {}
    curves: dict[str, list[float] | None] = {}
    for k, category in enumerate(categories):
        p_all = precision[:, :, k, 0, -1]
        p_50 = precision[0, :, k, 0, -1]
        per_class[category["name"]] = {
            "ap50_95": float(p_all[p_all > -1].mean()) if (p_all > -1).any() else None,
            "ap50": float(p_50[p_50 > -1].mean()) if (p_50 > -1).any() else None,
        }
        curves[category["name"]] = [round(float(v), 6) for v in p_50] if (p_50 > -1).any() else None
    return {
        "map_50_95": _none_if_missing(stats[0]),
        "map_50": _none_if_missing(stats[1]),
        "map_75": _none_if_missing(stats[2]),
        "map_small": _none_if_missing(stats[3]),
        "map_medium": _none_if_missing(stats[4]),
        "map_large": _none_if_missing(stats[5]),
        "ar_100": _none_if_missing(stats[8]),
        "per_class_ap": per_class,
        "pr_curve": {"iou": 0.5, "recall": recall, "precision": curves},
        "n_images": len(doc["images"]),
        "n_gt_boxes": sum(1 for a in doc["annotations"] if not a.get("iscrowd")),
        "n_predictions": len(results),
    }


def _empty_result(doc: dict[str, Any], categories: list[dict[str, Any]], recall: list[float]) -> dict[str, Any]:
    """What COCOeval would say about no predictions: 0 where ground truth exists, else None."""
    boxes = [a for a in doc["annotations"] if not a.get("iscrowd")]
    with_gt = {a["category_id"] for a in boxes}
    areas = [float(a["area"]) for a in boxes]

    def zero_if(present: bool) -> float | None:
        return 0.0 if present else None

    any_gt = bool(boxes)
    return {
        "map_50_95": zero_if(any_gt),
        "map_50": zero_if(any_gt),
        "map_75": zero_if(any_gt),
        "map_small": zero_if(any(a < _SMALL for a in areas)),
        "map_medium": zero_if(any(_SMALL <= a < _MEDIUM for a in areas)),
        "map_large": zero_if(any(a >= _MEDIUM for a in areas)),
        "ar_100": zero_if(any_gt),
        "per_class_ap": {
            c["name"]: {"ap50_95": zero_if(c["id"] in with_gt), "ap50": zero_if(c["id"] in with_gt)} for c in categories
        },
        "pr_curve": {
            "iou": 0.5,
            "recall": recall,
            "precision": {c["name"]: ([0.0] * len(recall) if c["id"] in with_gt else None) for c in categories},
        },
        "n_images": len(doc["images"]),
        "n_gt_boxes": len(boxes),
        "n_predictions": 0,
    }


# --- image level ---------------------------------------------------------------------------


def image_level_scores(
    gt: str | Path | Mapping[str, Any], results: Sequence[Mapping[str, Any]]
) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, max_score)`` per ground-truth image, in image-id order.

    An image is positive when it has at least one ground-truth box; its score is its best box
    score (0 when the detector found nothing).
    """
    doc = _load_gt(gt)
    ids = sorted(img["id"] for img in doc["images"])
    positive = {a["image_id"] for a in doc["annotations"] if not a.get("iscrowd")}
    best: dict[int, float] = {}
    for row in results:
        best[row["image_id"]] = max(best.get(row["image_id"], 0.0), float(row["score"]))
    y_true = np.array([int(i in positive) for i in ids], dtype=int)
    scores = np.array([best.get(i, 0.0) for i in ids], dtype=float)
    return y_true, scores


def image_level_metrics(y_true: Sequence[int], scores: Sequence[float], threshold: float = 0.25) -> dict[str, Any]:
    """AUROC of the image score, and sensitivity/specificity when ``score >= threshold`` calls it fractured.

    AUROC needs both classes: with one, it is ``None`` and ``auroc_note`` says why.
    """
    y = np.asarray(y_true, dtype=int)
    s = np.asarray(scores, dtype=float)
    counts = confusion_at(y, s, threshold)
    auroc: float | None = None
    note = None
    if len(set(y.tolist())) == 2:
        from sklearn.metrics import roc_auc_score

        auroc = float(roc_auc_score(y, s))
    else:
        only = "fractured" if y.size and y[0] == 1 else "non-fractured"
        note = f"AUROC undefined: every image is {only}" if y.size else "AUROC undefined: no images"
    return {
        "auroc": auroc,
        "auroc_note": note,
        "threshold": float(threshold),
        **counts.as_dict(),
        "n_positive": counts.n_positive,
        "n_negative": counts.n_negative,
    }


# --- the command ---------------------------------------------------------------------------


def evaluate_detector(cfg: DetEvalConfig) -> dict[str, Any]:
    """Predict the split, score it (COCO, image level, Ultralytics val), write JSON and figures.

    Writes ``predictions_{split}.json`` (COCO results), ``det_metrics.json``,
    ``pr_curve_{split}.png`` and ``examples_{split}.png`` into ``cfg.output``; returns the
    content of ``det_metrics.json``.
    """
    data_yaml = resolve_data_yaml(cfg.data).resolve()
    root = data_yaml.parent
    gt_path = root / "annotations" / f"instances_{cfg.split}.json"
    if not gt_path.is_file():
        raise DataError(f"no COCO ground truth for split {cfg.split!r} (convert with the coco target)", gt_path)
    gt = _load_gt(gt_path)
    if not gt["images"]:
        raise DataError(f"split {cfg.split!r} has no images", gt_path)
    data_names = data_class_names(data_yaml)
    gt_names = tuple(c["name"] for c in sorted(gt["categories"], key=lambda c: c["id"]))
    if gt_names != data_names:
        raise DataError(f"categories {list(gt_names)} differ from data.yaml names {list(data_names)}", gt_path)
    model = load_detector(cfg.weights, trust_pickle=cfg.trust_pickle)
    check_class_names(model_class_names(model), data_names, weights=Path(cfg.weights), data=data_yaml)
    seed_everything(cfg.seed)

    output = Path(cfg.output)
    with atomic_output_dir(output, overwrite=cfg.overwrite) as tmp:
        results, problems, skipped = _predict_split(model, gt, root / "images" / cfg.split, cfg)
        if skipped:  # scored on what could be read: a skipped image is not a missed fracture
            gt = {**gt, "images": [i for i in gt["images"] if i["id"] not in skipped], "annotations": [a for a in gt["annotations"] if a["image_id"] not in skipped]}
            if not gt["images"]:
                raise DataError(f"none of the {len(skipped)} images of split {cfg.split!r} could be read (first: {problems[0]['file']}: {problems[0]['detail']})", gt_path)
        predictions_name = f"predictions_{cfg.split}.json"
        (tmp / predictions_name).write_text(json.dumps(results), encoding="utf-8")
        coco = coco_map(gt, results)
        y_true, scores = image_level_scores(gt, results)
        image_level = image_level_metrics(y_true, scores, cfg.image_threshold)
        ultralytics = _ultralytics_val(model, data_yaml, cfg, tmp) if cfg.ultralytics_val else None
        files = {"predictions": predictions_name, "metrics": METRICS_NAME}
        from fracdet.det.figures import plot_examples, plot_pr_curve

        files["pr_curve"] = plot_pr_curve(coco, tmp / f"pr_curve_{cfg.split}.png", title=f"{Path(cfg.weights).name} on {cfg.split}").name
        if cfg.examples:
            drawn = plot_examples(gt, results, root / "images" / cfg.split, tmp / f"examples_{cfg.split}.png", count=cfg.examples, score_threshold=cfg.image_threshold)
            if drawn is not None:
                files["examples"] = drawn.name
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
    logger.info(
        "%s on %s: COCO mAP@0.5 %s, mAP@[.5:.95] %s, image AUROC %s (details in %s)",
        Path(cfg.weights).name, cfg.split, _fmt(coco["map_50"]), _fmt(coco["map_50_95"]), _fmt(image_level["auroc"]), output / METRICS_NAME,
    )  # fmt: skip
    return report


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _predict_split(
    model: Any, gt: dict[str, Any], images_dir: Path, cfg: DetEvalConfig
) -> tuple[list[dict[str, Any]], list[dict[str, str]], set[int]]:
    """COCO results for every readable image of the split; unreadable ones are skipped and listed."""
    problems: list[dict[str, str]] = []
    skipped: set[int] = set()
    todo: list[tuple[int, Path]] = []
    for image in sorted(gt["images"], key=lambda i: i["id"]):
        path = images_dir / image["file_name"]
        if path.is_file():
            todo.append((image["id"], path))
        else:
            problems.append({"file": str(path), "kind": "image_missing", "detail": "listed in the ground truth but not found", "action": "image skipped"})
            skipped.add(image["id"])
    results: list[dict[str, Any]] = []
    options = {"imgsz": cfg.imgsz, "conf": cfg.conf, "iou": cfg.iou, "max_det": cfg.max_det, "verbose": False}
    if cfg.device is not None:
        options["device"] = str(cfg.device)
    n_batches = (len(todo) + cfg.batch - 1) // cfg.batch
    with ultralytics_offline():
        for batch in progress(_batches(todo, cfg.batch), f"Detecting ({cfg.split})", total=n_batches):
            for (image_id, path), outcome in zip(batch, _predict_batch(model, [p for _, p in batch], options), strict=True):
                if isinstance(outcome, Exception):
                    detail = str(outcome).strip().splitlines()[0] if str(outcome).strip() else type(outcome).__name__
                    problems.append({"file": str(path), "kind": "image_corrupt", "detail": detail, "action": "image skipped"})
                    skipped.add(image_id)
                    continue
                boxes, scores = outcome
                results.extend(predictions_to_coco_results(image_id, boxes, scores))
    if problems:
        logger.warning("%d image(s) of %s skipped (listed in %s)", len(problems), cfg.split, METRICS_NAME)
    return results, problems, skipped


def _predict_batch(model: Any, paths: list[Path], options: dict[str, Any]) -> list[tuple[list[Box], list[float]] | Exception]:
    """One streamed prediction over a batch; each path gets its boxes or the reason it has none.

    Ultralytics skips an image it cannot decode with a warning (so results are matched to
    paths by name); a loader that raises instead costs a retry image by image, so one bad
    file costs one image.
    """
    names = [str(Path(p).absolute()) for p in paths]  # the form Ultralytics reports in Results.path
    try:
        found = {r.path: result_boxes(r) for r in model.predict(names, stream=True, batch=len(names), **options)}
    except Exception:
        logger.debug("batch prediction failed; retrying image by image", exc_info=True)
        found = {}
        for name in names:
            try:
                found.update({r.path: result_boxes(r) for r in model.predict(name, stream=True, **options)})
            except Exception as exc:  # recorded per image, the rest goes on
                found[name] = exc
    unreadable = ImageError("Ultralytics could not decode this image")
    return [found.get(name, unreadable) for name in names]


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
        "project": str(tmp),  # absolute: Ultralytics puts relative projects under its settings folder
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
        return {"map_50": None, "map_50_95": None, "note": ULTRALYTICS_NOTE, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        shutil.rmtree(tmp / "ultralytics_val", ignore_errors=True)
    return {"map_50": float(metrics.box.map50), "map_50_95": float(metrics.box.map), "note": ULTRALYTICS_NOTE}

