"""``fracdet demo``: what fracdet is for, on built-in phantoms, in minutes on a CPU.

Two phantom sets (clean, and one where a spurious marker gives the label away) are converted,
three classifiers are trained (standard, adversarially trained, and one on the shortcut
set), a YOLO detector is trained, ``fracdet audit`` compares the three classifiers against the
detector on the shortcut set's test images, and ``fracdet predict`` runs on a folder of new
phantoms in mixed formats. ``index.html`` leads with the audit's answer.

Each stage remembers the hash of its inputs and options: re-running reuses what is done
(``--fresh`` redoes everything), so a changed option reruns only the stages it affects.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from fracdet.demo_report import DemoSummary, write_demo_index
from fracdet.errors import ConfigError, OutputExistsError
from fracdet.stages import STAGES_DIR, StageRunner

__all__ = ["DemoConfig", "DemoSummary", "run_demo", "DEFAULT_CONFIG_FILE", "QUICK"]

logger = logging.getLogger(__name__)

#: Read by ``fracdet demo`` when present and no ``--config`` is named (relative to the working
#: folder: the repository root for ``make demo``).
DEFAULT_CONFIG_FILE = Path("configs/demo.yaml")


@dataclass(frozen=True)
class DemoConfig:
    """The demo's data, models and budget; ``quick`` swaps in :data:`QUICK` (fewer, smaller runs)."""

    output: Path = Path("reports/demo")
    seed: int = 0
    quick: bool = False
    fresh: bool = False
    overwrite: bool = False
    device: str | None = None
    workers: int = 2
    # phantoms: generated at the classifier's input size, so a crack is never resized away;
    # no hardware or letter markers (distractors that slow learning from scratch)
    count: int = 2000
    shortcut_count: int = 2000
    size: int = 96
    prevalence: float = 0.5
    crack_scale: float = 10.0
    max_fractures: int = 3
    shortcut_rate: float = 1.0
    # classifiers
    cls_backbone: str = "resnet10t"
    cls_epochs: int = 16
    cls_batch_size: int = 32
    cls_lr: float = 1e-3
    cls_global_pool: str = "max"
    shortcut_epochs: int = 3  # the marker is learned at once
    # adversarial training: TRADES fine-tuning of the standard classifier (cheaper than from scratch)
    adv: str = "trades"
    adv_eps: float = 4 / 255
    adv_steps: int = 3
    adv_step_size: float = 2 / 255
    adv_trades_beta: float = 3.0
    adv_epochs: int = 5
    adv_batch_size: int = (
        16  # more, smaller steps than the standard run: +30 PGD points instead of +13 at batch 32
    )
    adv_lr: float = 2e-4
    adv_global_pool: str = "avg"
    # detector
    det_model: str = "yolov8n.yaml"
    det_imgsz: int = 192
    det_epochs: int = 4
    # audit
    audit_ig_steps: int = 8
    audit_images: int | None = (
        180  # the first N of the shortcut test split (sorted by id; labels are random)
    )
    audit_precision: str = (
        "auto"  # bf16 where fast: 1.65x at 96 px, coverage@25 moved < 0.3 pp (benchmarks/README.md)
    )

    def __post_init__(self) -> None:
        if self.count < 40 or self.shortcut_count < 40:
            raise ConfigError(
                f"count and shortcut_count must be >= 40 (enough for three splits), got {self.count}, {self.shortcut_count}"
            )
        if not 0.5 <= self.shortcut_rate <= 1.0:
            raise ConfigError(
                f"shortcut_rate must be in [0.5, 1] (how often the marker tells the truth), got {self.shortcut_rate}"
            )

    def effective(self) -> DemoConfig:
        """This config with the quick profile applied."""
        return replace(self, **QUICK, quick=False) if self.quick else self


#: ``--quick``: about three minutes on a 2-core CPU; numbers are weaker and the summary says so.
QUICK: dict[str, Any] = {
    "count": 300,
    "shortcut_count": 200,
    "cls_epochs": 4,
    "shortcut_epochs": 2,
    "adv_epochs": 1,
    "det_epochs": 3,
    "audit_ig_steps": 8,
}


def _phantoms_and_dataset(
    folder: Path, cfg: DemoConfig, *, count: int, shortcut: float | None, seed: int
) -> None:
    from data_tools.phantoms import PhantomConfig, generate_phantoms
    from fracdet.data.convert import ConvertConfig, convert

    source = generate_phantoms(
        PhantomConfig(
            folder / "phantoms",
            count=count,
            size=cfg.size,
            seed=seed,
            prevalence=cfg.prevalence,
            max_fractures=cfg.max_fractures,
            shortcut_rate=shortcut,
            crack_scale=cfg.crack_scale,
            hardware_rate=0.0,
            letter_marker_rate=0.0,
            workers=cfg.workers,
        )
    )
    convert(ConvertConfig(source=source, output=folder / "dataset", split="random", seed=seed))


def _train_classifier(
    folder: Path, cfg: DemoConfig, manifest: Path, *, epochs: int, start_from: Path | None = None
) -> None:
    """Train, then score on the test split of the data it was trained on (its own test set).

    ``start_from`` (a run folder) makes this the adversarial fine-tuning of that classifier.
    """
    from fracdet.cls.evaluate import EvalClsConfig, evaluate_classifier
    from fracdet.cls.train import ClsTrainConfig, train_classifier

    options: dict[str, Any] = {
        "global_pool": cfg.cls_global_pool,
        "lr": cfg.cls_lr,
        "batch_size": cfg.cls_batch_size,
    }
    if start_from is not None:
        options = {
            "weights": start_from / "best.safetensors",
            "global_pool": cfg.adv_global_pool,
            "lr": cfg.adv_lr,
            "batch_size": cfg.adv_batch_size,
            "adv": cfg.adv,
            "adv_eps": cfg.adv_eps,
            "adv_steps": cfg.adv_steps,
            "adv_step_size": cfg.adv_step_size,
            "trades_beta": cfg.adv_trades_beta,
        }
    train_classifier(
        ClsTrainConfig(
            manifest=manifest,
            output=folder,
            backbone=cfg.cls_backbone,
            image_size=cfg.size,
            epochs=epochs,
            patience=epochs,
            workers=cfg.workers,
            device=cfg.device,
            seed=cfg.seed,
            **options,
        )
    )
    evaluate_classifier(
        EvalClsConfig(
            folder,
            manifest,
            split="test",
            output=folder / "eval",
            workers=cfg.workers,
            device=cfg.device,
            n_boot=500,
            seed=cfg.seed,
        )
    )


def _train_detector(folder: Path, cfg: DemoConfig, dataset: Path) -> None:
    from fracdet.det.evaluate import DetEvalConfig, evaluate_detector
    from fracdet.det.train import DetTrainConfig, train_detector

    trained = train_detector(
        DetTrainConfig(
            data=dataset / "data.yaml",
            model=cfg.det_model,
            output=folder,
            name="train",
            epochs=cfg.det_epochs,
            imgsz=cfg.det_imgsz,
            batch=16,
            workers=cfg.workers,
            seed=cfg.seed,
            device=cfg.device or "cpu",
        )
    )
    evaluate_detector(
        DetEvalConfig(
            trained.best_weights,
            dataset,
            split="test",
            imgsz=cfg.det_imgsz,
            output=folder / "eval",
            device=cfg.device or "cpu",
            seed=cfg.seed,
        )
    )


def _audit(
    folder: Path,
    cfg: DemoConfig,
    dataset: Path,
    classifiers: dict[str, Path],
    detector: Path,
    *,
    resume: bool = False,
) -> None:
    from fracdet.audit import AuditConfig, run_audit

    run_audit(
        AuditConfig(
            dataset=dataset,
            classifiers=tuple(classifiers.values()),
            names=tuple(classifiers),
            detector=detector,
            split="test",
            output=folder,
            det_imgsz=cfg.det_imgsz,
            ig_steps=cfg.audit_ig_steps,
            max_images=cfg.audit_images,
            precision=cfg.audit_precision,
            workers=cfg.workers,
            device=cfg.device,
            seed=cfg.seed,
            resume=resume,
        )
    )


def _predict(folder: Path, cfg: DemoConfig, classifier: Path, detector: Path) -> None:
    from data_tools.phantoms import mixed_format_folder
    from fracdet.predict import PredictConfig, predict_folder

    images = mixed_format_folder(
        folder / "new-images",
        count=12,
        size=cfg.size,
        seed=cfg.seed + 99,
        crack_scale=cfg.crack_scale,
    )
    predict_folder(
        PredictConfig(
            folder=images,
            output=folder / "out",
            cls=classifier,
            det=detector,
            det_imgsz=cfg.det_imgsz,
            overlays=True,
            gradcam=True,
            workers=cfg.workers,
            device=cfg.device,
            seed=cfg.seed,
        )
    )


def run_demo(config: DemoConfig) -> DemoSummary:
    """Run (or reuse) every stage, then write ``index.html``; returns the headline numbers."""
    cfg = config.effective()
    out = Path(cfg.output)
    if out.exists() and not out.is_dir():
        raise OutputExistsError("exists and is not a folder", out)
    is_demo = (out / "summary.json").exists() or (out / STAGES_DIR).is_dir()
    if out.exists() and any(out.iterdir()) and not is_demo and not cfg.overwrite:
        raise OutputExistsError(
            "exists and is not a demo folder; pass --overwrite to replace it", out
        )
    out.mkdir(parents=True, exist_ok=True)
    stages = StageRunner(out, fresh=cfg.fresh or cfg.overwrite, label="demo")
    common = {
        "seed": cfg.seed,
        "size": cfg.size,
        "prevalence": cfg.prevalence,
        "crack_scale": cfg.crack_scale,
        "max_fractures": cfg.max_fractures,
    }
    clean = stages.run(
        "data-clean",
        {**common, "count": cfg.count},
        (),
        lambda f: _phantoms_and_dataset(f, cfg, count=cfg.count, shortcut=None, seed=cfg.seed),
    )
    shortcut = stages.run(
        "data-shortcut",
        {**common, "count": cfg.shortcut_count, "rate": cfg.shortcut_rate},
        (),
        lambda f: _phantoms_and_dataset(
            f, cfg, count=cfg.shortcut_count, shortcut=cfg.shortcut_rate, seed=cfg.seed + 1
        ),
    )
    cls_options = {k: v for k, v in asdict(cfg).items() if k.startswith("cls_")} | {
        "seed": cfg.seed
    }
    adv_options = {k: v for k, v in asdict(cfg).items() if k.startswith("adv")}
    clean_manifest, shortcut_manifest = (
        clean / "dataset" / "manifest.csv",
        shortcut / "dataset" / "manifest.csv",
    )
    standard = stages.run(
        "cls-standard",
        cls_options | {"epochs": cfg.cls_epochs},
        ("data-clean",),
        lambda f: _train_classifier(f, cfg, clean_manifest, epochs=cfg.cls_epochs),
    )
    robust = stages.run(
        "cls-adversarial",
        cls_options | adv_options,
        ("data-clean", "cls-standard"),
        lambda f: _train_classifier(
            f, cfg, clean_manifest, epochs=cfg.adv_epochs, start_from=standard
        ),
    )
    cheat = stages.run(
        "cls-shortcut",
        cls_options | {"epochs": cfg.shortcut_epochs},
        ("data-shortcut",),
        lambda f: _train_classifier(f, cfg, shortcut_manifest, epochs=cfg.shortcut_epochs),
    )
    det_options = {
        "model": cfg.det_model,
        "imgsz": cfg.det_imgsz,
        "epochs": cfg.det_epochs,
        "seed": cfg.seed,
    }
    det = stages.run(
        "det", det_options, ("data-clean",), lambda f: _train_detector(f, cfg, clean / "dataset")
    )
    detector = det / "train" / "weights" / "best.pt"
    classifiers = {"standard": standard, "adversarial": robust, "shortcut": cheat}
    audit = stages.run(
        "audit",
        {
            "ig_steps": cfg.audit_ig_steps,
            "det_imgsz": cfg.det_imgsz,
            "images": cfg.audit_images,
            "precision": cfg.audit_precision,
        },
        ("data-shortcut", "cls-standard", "cls-adversarial", "cls-shortcut", "det"),
        lambda f, **kw: _audit(f, cfg, shortcut / "dataset", classifiers, detector, **kw),
        resumable=True,
    )
    predict = stages.run(
        "predict",
        {"det_imgsz": cfg.det_imgsz},
        ("cls-standard", "det"),
        lambda f: _predict(f, cfg, standard, detector),
    )
    return write_demo_index(
        out,
        cfg,
        {
            "clean": clean,
            "shortcut": shortcut,
            "det": det,
            "audit": audit,
            "predict": predict,
            **classifiers,
        },
        stages.seconds,
        quick=config.quick,
    )
