"""``fracdet demo``: the whole pipeline on built-in phantoms, so a new user sees it work at once.

phantoms -> convert -> train-cls -> eval-cls -> train-det -> eval-det -> predict, with every
stage's output under one folder and an ``index.html`` linking them. The settings are small so
the demo runs in minutes on a laptop CPU; its numbers show the plumbing, not a model worth
using.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fracdet.data.convert import ConvertConfig, convert
from fracdet.errors import ConfigError, OutputExistsError

__all__ = ["DemoConfig", "run_demo", "STAGES", "DEFAULT_CONFIG_FILE"]

logger = logging.getLogger(__name__)

STAGES = ("cls", "det", "predict")
#: Read by ``fracdet demo`` when present and no ``--config`` is named (relative to the working
#: folder: the repository root for ``make demo``).
DEFAULT_CONFIG_FILE = Path("configs/demo.yaml")


@dataclass(frozen=True)
class DemoConfig:
    output: Path = Path("reports/demo")
    count: int = 300
    size: int = 384
    seed: int = 0
    prevalence: float = 0.3
    shortcut_rate: float | None = None
    crack_scale: float = 3.0  # conspicuous fractures (1 is FracAtlas-subtle)
    stages: tuple[str, ...] = STAGES
    cls_backbone: str = "resnet10t"
    cls_image_size: int = 128
    cls_epochs: int = 6
    det_model: str = "yolov8n.yaml"
    det_imgsz: int = 256
    det_epochs: int = 3
    workers: int = 2
    overwrite: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.stages) - set(STAGES)
        if unknown:
            raise ConfigError(f"unknown demo stage(s) {sorted(unknown)}; choose from {', '.join(STAGES)}")


def run_demo(config: DemoConfig) -> str:
    """Run every stage; return a short text summary (also in ``summary.json`` and ``index.html``)."""
    from data_tools.phantoms import PhantomConfig, generate_phantoms

    out = Path(config.output)
    if out.exists() and not config.overwrite:
        raise OutputExistsError("already exists; pass --overwrite to replace it", out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    phantoms = generate_phantoms(
        PhantomConfig(
            out / "phantoms", count=config.count, size=config.size, seed=config.seed, prevalence=config.prevalence,
            shortcut_rate=config.shortcut_rate, crack_scale=config.crack_scale, overwrite=True,
        )
    )  # fmt: skip
    result = convert(ConvertConfig(source=phantoms, output=out / "dataset", seed=config.seed, overwrite=True))
    summary: dict[str, Any] = {
        "phantoms": str(phantoms),
        "dataset": str(result.output),
        "yolo_data_yaml": str(result.output / "data.yaml"),
        "manifest": str(result.output / "manifest.csv"),
        "images": result.n_images,
        "skipped": result.n_skipped,
        "splits": result.split_counts,
    }
    lines = [f"demo: {result.n_images} phantom radiographs in {phantoms}", f"      YOLO dataset: {summary['yolo_data_yaml']}", f"      manifest:     {summary['manifest']}"]
    lines += [f"      {split:5s}: {counts}" for split, counts in result.split_counts.items()]
    classifier = detector = None
    if "cls" in config.stages:
        classifier, text = _classifier_stage(config, result.output, out, summary)
        lines.append(text)
    if "det" in config.stages:
        detector, text = _detector_stage(config, result.output, out, summary)
        lines.append(text)
    if "predict" in config.stages and (classifier or detector):
        lines.append(_predict_stage(config, result.output, out, classifier, detector, summary))
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    _write_index(out, summary)
    lines.append(f"      report: {out / 'index.html'}")
    return "\n".join(lines)


def _classifier_stage(config: DemoConfig, dataset: Path, out: Path, summary: dict) -> tuple[Path, str]:
    from fracdet.cls.evaluate import EvalClsConfig, evaluate_classifier
    from fracdet.cls.train import ClsTrainConfig, train_classifier

    trained = train_classifier(
        ClsTrainConfig(
            manifest=dataset / "manifest.csv", output=out / "cls", backbone=config.cls_backbone, image_size=config.cls_image_size,
            epochs=config.cls_epochs, batch_size=16, lr=2e-3, patience=config.cls_epochs, workers=config.workers, seed=config.seed,
        )
    )  # fmt: skip
    metrics = evaluate_classifier(EvalClsConfig(trained.run_dir, dataset / "manifest.csv", split="test", output=out / "eval-cls", workers=config.workers, n_boot=200, seed=config.seed)).metrics
    summary["classifier"] = {"checkpoint": str(trained.best), "test_auroc": metrics.get("auroc"), "sensitivity": metrics.get("sensitivity"), "specificity": metrics.get("specificity"), "report": str(out / "eval-cls" / "report.html")}
    auroc = "undefined" if metrics.get("auroc") is None else f"{metrics['auroc']:.3f}"
    return trained.run_dir, f"      classifier ({config.cls_backbone}): test AUROC {auroc}, report {out / 'eval-cls' / 'report.html'}"


def _detector_stage(config: DemoConfig, dataset: Path, out: Path, summary: dict) -> tuple[Path, str]:
    from fracdet.det.evaluate import DetEvalConfig, evaluate_detector
    from fracdet.det.train import DetTrainConfig, train_detector

    trained = train_detector(
        DetTrainConfig(
            data=dataset / "data.yaml", model=config.det_model, output=out / "det", name="train", epochs=config.det_epochs,
            imgsz=config.det_imgsz, batch=8, workers=config.workers, seed=config.seed, device="cpu",
        )
    )  # fmt: skip
    evaluated = evaluate_detector(DetEvalConfig(trained.best_weights, dataset, split="test", imgsz=config.det_imgsz, output=out / "eval-det", device="cpu", seed=config.seed))
    coco = evaluated.metrics["coco"]
    summary["detector"] = {"weights": str(trained.best_weights), "test_map_50": coco["map_50"], "test_map_50_95": coco["map_50_95"], "report": str(out / "eval-det")}
    return trained.best_weights, f"      detector ({config.det_model}): test mAP@0.5 {coco['map_50']:.3f} (pycocotools), report {out / 'eval-det'}"


def _predict_stage(config: DemoConfig, dataset: Path, out: Path, classifier: Path | None, detector: Path | None, summary: dict) -> str:
    from fracdet.predict import PredictConfig, predict_folder

    done = predict_folder(
        PredictConfig(
            folder=dataset / "images" / "test", output=out / "predict", cls=classifier, det=detector,
            det_imgsz=config.det_imgsz, overlays=True, gradcam=classifier is not None, workers=config.workers, seed=config.seed,
        )
    )  # fmt: skip
    summary["predict"] = {"predictions": str(done.predictions), "images": done.n_images, "images_per_s": done.images_per_s}
    return f"      predict: {done.n_ok} test images -> {done.predictions} (overlays in {done.overlays})"


def _write_index(out: Path, summary: dict) -> None:
    from fracdet.report import Section, write_report

    def rel(path: str) -> str:
        return str(Path(path).relative_to(out)) if Path(path).is_relative_to(out) else path

    sections = [Section("Data", text=f"{summary['images']} phantom radiographs converted to {rel(summary['dataset'])}", table=summary["splits"])]
    if "classifier" in summary:
        c = summary["classifier"]
        sections.append(Section("Classifier (eval-cls, test split)", text=f"Full report: {rel(c['report'])}", table={k: v for k, v in c.items() if k != "report"}, figures=sorted((out / "eval-cls").glob("*.png"))))
    if "detector" in summary:
        d = summary["detector"]
        sections.append(Section("Detector (eval-det, test split)", text=f"Full report: {rel(d['report'])}", table={k: v for k, v in d.items() if k != "report"}, figures=sorted((out / "eval-det").glob("*.png"))))
    if "predict" in summary:
        overlays = sorted((out / "predict" / "overlays").rglob("*.png"))[:4]
        sections.append(Section("predict (test images)", table=summary["predict"], figures=overlays))
    write_report(out / "index.html", title="fracdet demo on synthetic phantoms", sections=sections)
