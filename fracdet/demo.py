"""``fracdet demo``: what fracdet is for, on built-in phantoms, in minutes on a CPU.

Two phantom sets (clean, and one where a spurious marker gives the label away) are converted,
three classifiers are trained (standard, adversarially trained, and one on the shortcut
set), a YOLO detector is trained, ``fracdet audit`` compares the three classifiers against the
detector on the shortcut set's test images, and ``fracdet predict`` runs on a folder of new
phantoms in mixed formats. ``index.html`` leads with the audit's answer.

The stages are :mod:`fracdet.pipeline`'s, as in ``fracdet run``: re-running reuses what is done
(``--fresh`` redoes everything), and a changed option or a new fracdet reruns only the stages
it affects (:mod:`fracdet.stages`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fracdet.cls.checkpoint import save_input_quantized
from fracdet.demo_report import DemoSummary, write_demo_index
from fracdet.errors import ConfigError
from fracdet.fsutil import output_lock
from fracdet.pipeline import (
    Settings,
    audit_stage,
    classifier_stages,
    detector_stages,
    detector_weights,
)
from fracdet.profiles import apply_profile, check_profiles
from fracdet.stages import Call, Stage, StageRunner

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "PROFILES",
    "DemoConfig",
    "DemoSummary",
    "demo_stages",
    "run_demo",
]

logger = logging.getLogger(__name__)

#: Read by ``fracdet demo`` when present and no ``--config`` is named (relative to the working
#: folder: the repository root for ``make demo``).
DEFAULT_CONFIG_FILE = Path("configs/demo.yaml")

#: The profiles when the config file names none (``configs/demo.yaml`` names the same ones):
#: ``quick`` (``--quick``) takes about three minutes on a 2-core CPU; numbers are weaker and the
#: summary says so.
PROFILES: dict[str, dict[str, Any]] = {
    "default": {},
    "quick": {
        "count": 300,
        "shortcut_count": 200,
        "cls_epochs": 4,
        "shortcut_epochs": 2,
        "adv_epochs": 1,
        "det_epochs": 3,
        "audit_ig_steps": 8,
        "audit_check_images": 8,
    },
}


@dataclass(frozen=True)
class DemoConfig:
    """The demo's data, models and budget; ``profile`` picks one of ``profiles`` (overrides)."""

    output: Path = Path("reports/demo")
    seed: int = 0
    profile: str = "default"
    profiles: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {k: dict(v) for k, v in PROFILES.items()}
    )
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
    n_boot: int = 500  # bootstrap replicates of each classifier's own-test AUROC CI
    # adversarial training: TRADES fine-tuning of the standard classifier (cheaper than scratch)
    adv: str = "trades"
    adv_eps: float = 4 / 255
    adv_steps: int = 3
    adv_step_size: float = 2 / 255
    adv_trades_beta: float = 3.0
    adv_epochs: int = 5
    # more, smaller steps than the standard run: +30 PGD points instead of +13 at batch 32
    adv_batch_size: int = 16
    adv_lr: float = 2e-4
    adv_global_pool: str = "avg"
    # detector (its mAP without CIs: each bootstrap replicate reruns COCOeval)
    det_model: str = "yolov8n.yaml"
    det_imgsz: int = 192
    det_epochs: int = 4
    # audit
    audit_ig_steps: int = 8
    # the first N of the shortcut test split (sorted by id; labels are random)
    audit_images: int | None = 180
    # bf16 where fast: 1.65x at 96 px, coverage@25 moved < 0.3 pp (benchmarks/README.md)
    audit_precision: str = "auto"
    # the checks' subset: the first N fractured images with boxes and N intact ones
    audit_check_images: int = 24
    # the masked classifier: the standard one with its inputs rounded to this many grey levels
    masked_levels: int = 256
    # the attacks check on the first N fractured and N intact images of the subset, along a
    # shorter ε curve than an audit's default (the check is the costliest one on a CPU)
    audit_attack_check_images: int = 8
    audit_attack_check_eps: tuple[str, ...] = ("0", "2/255", "4/255", "16/255", "64/255")

    def __post_init__(self) -> None:
        if self.count < 40 or self.shortcut_count < 40:
            raise ConfigError(
                "count and shortcut_count must be >= 40 (enough for three splits), "
                f"got {self.count}, {self.shortcut_count}"
            )
        if not 0.5 <= self.shortcut_rate <= 1.0:
            raise ConfigError(
                "shortcut_rate must be in [0.5, 1] (how often the marker tells the truth), "
                f"got {self.shortcut_rate}"
            )
        check_profiles(self)

    def effective(self) -> DemoConfig:
        """This config with its profile's overrides applied."""
        return apply_profile(self)


def _data_stage(
    name: str, out: Path, cfg: DemoConfig, *, count: int, shortcut: float | None, seed: int
) -> Stage:
    """Phantoms in FracAtlas layout, converted with a random split (``NAME/dataset``)."""
    from data_tools.phantoms import PhantomConfig, generate_phantoms, shortcut_regions
    from fracdet.data.convert import ConvertConfig, convert

    folder = out / name
    phantoms = PhantomConfig(
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
    dataset = ConvertConfig(
        source=phantoms.output, output=folder / "dataset", split="random", seed=seed
    )
    calls = [Call.of(generate_phantoms, phantoms), Call.of(convert, dataset)]
    if shortcut is not None:  # the markers as named regions: the causal box test removes them
        calls.append(Call.of(shortcut_regions, phantoms.output))
    return Stage(name, folder, tuple(calls))


def _predict_stage(
    out: Path, cfg: DemoConfig, settings: Settings, classifier: Path, detector: Path
) -> Stage:
    """``fracdet predict`` on a folder of new phantoms as JPEG, 16-bit PNG and DICOM."""
    from data_tools.phantoms import mixed_format_folder
    from fracdet.predict import PredictConfig, predict_folder

    folder = out / "predict"
    images = folder / "new-images"
    make = Call.of(
        mixed_format_folder,
        images,
        count=12,
        size=cfg.size,
        seed=cfg.seed + 99,
        crack_scale=cfg.crack_scale,
    )
    predict = PredictConfig(
        folder=images,
        output=folder / "out",
        cls=classifier,
        det=detector,
        det_imgsz=cfg.det_imgsz,
        overlays=True,
        gradcam=True,
        workers=settings.workers,
        device=settings.device,
        seed=settings.seed,
    )
    return Stage(
        "predict", folder, (make, Call.of(predict_folder, predict)), ("cls-standard", "det")
    )


def demo_stages(cfg: DemoConfig, out: Path) -> list[Stage]:
    """Every stage of the demo, in the order they run (an effective config)."""
    settings = Settings.of(seed=cfg.seed, workers=cfg.workers, device=cfg.device)
    clean = _data_stage("data-clean", out, cfg, count=cfg.count, shortcut=None, seed=cfg.seed)
    shortcut = _data_stage(
        "data-shortcut",
        out,
        cfg,
        count=cfg.shortcut_count,
        shortcut=cfg.shortcut_rate,
        seed=cfg.seed + 1,
    )
    clean_manifest = clean.folder / "dataset" / "manifest.csv"
    common = {"backbone": cfg.cls_backbone, "image_size": cfg.size}
    # the standard and the shortcut classifier are trained alike: their data (and epochs) differ
    scratch = {
        **common,
        "global_pool": cfg.cls_global_pool,
        "lr": cfg.cls_lr,
        "batch_size": cfg.cls_batch_size,
    }
    standard = classifier_stages(
        "cls-standard",
        out,
        clean_manifest,
        settings,
        upstream=("data-clean",),
        n_boot=cfg.n_boot,
        **scratch,
        epochs=cfg.cls_epochs,
    )
    robust = classifier_stages(  # TRADES fine-tuning of the standard classifier
        "cls-adversarial",
        out,
        clean_manifest,
        settings,
        upstream=("data-clean", "cls-standard"),
        n_boot=cfg.n_boot,
        **common,
        epochs=cfg.adv_epochs,
        weights=standard[0].folder / "best.safetensors",
        global_pool=cfg.adv_global_pool,
        lr=cfg.adv_lr,
        batch_size=cfg.adv_batch_size,
        adv=cfg.adv,
        adv_eps=cfg.adv_eps,
        adv_steps=cfg.adv_steps,
        adv_step_size=cfg.adv_step_size,
        trades_beta=cfg.adv_trades_beta,
    )
    cheat = classifier_stages(
        "cls-shortcut",
        out,
        shortcut.folder / "dataset" / "manifest.csv",
        settings,
        upstream=("data-shortcut",),
        n_boot=cfg.n_boot,
        **scratch,
        epochs=cfg.shortcut_epochs,
    )
    det = detector_stages(
        "det",
        out,
        clean.folder / "dataset",
        settings,
        upstream=("data-clean",),
        n_boot=0,
        model=cfg.det_model,
        imgsz=cfg.det_imgsz,
        epochs=cfg.det_epochs,
        batch=16,
    )
    detector = detector_weights(det[0].folder)
    # the standard classifier behind a 16-level input quantisation: shattered gradients, the
    # proof that the attack checks catch a model PGD alone would call robust
    masked = Stage(
        "cls-masked",
        out / "cls-masked",
        (
            Call.of(
                save_input_quantized,
                standard[0].folder / "best.safetensors",
                out / "cls-masked",
                levels=cfg.masked_levels,
            ),
        ),
        ("cls-standard",),
    )
    classifiers = {
        "standard": standard[0].folder,
        "adversarial": robust[0].folder,
        "shortcut": cheat[0].folder,
        "masked": masked.folder,
    }
    audit = audit_stage(
        "audit",
        out,
        shortcut.folder / "dataset",
        classifiers,
        settings,
        upstream=(
            "data-shortcut",
            "cls-standard",
            "cls-adversarial",
            "cls-shortcut",
            "cls-masked",
            "det",
        ),
        detector=detector,
        split="test",
        det_imgsz=cfg.det_imgsz,
        ig_steps=cfg.audit_ig_steps,
        max_images=cfg.audit_images,
        precision=cfg.audit_precision,
        check_images=cfg.audit_check_images,
        attack_check_images=cfg.audit_attack_check_images,
        attack_check_eps=cfg.audit_attack_check_eps,
        causal_regions=shortcut.folder / "phantoms" / "shortcut_regions.csv",
    )
    predict = _predict_stage(out, cfg, settings, classifiers["standard"], detector)
    return [clean, shortcut, *standard, *robust, *cheat, masked, *det, audit, predict]


def run_demo(config: DemoConfig) -> DemoSummary:
    """Run (or reuse) every stage, then write ``index.html``; returns the headline numbers."""
    with output_lock(Path(config.effective().output)):
        return _run_demo(config)


def _run_demo(config: DemoConfig) -> DemoSummary:
    """Run (or reuse) every stage, then write ``index.html``; returns the headline numbers."""
    cfg = config.effective()
    out = Path(cfg.output)
    runner = StageRunner.open(
        out, label="demo", fresh=cfg.fresh, overwrite=cfg.overwrite, also_ours=("summary.json",)
    )
    folders = {stage.name: runner.run(stage) for stage in demo_stages(cfg, out)}
    return write_demo_index(
        out,
        cfg,
        {
            "clean": folders["data-clean"],
            "shortcut": folders["cls-shortcut"],  # the classifier: the page reads no data folder
            "det": folders["det"],
            "audit": folders["audit"],
            "predict": folders["predict"],
            "standard": folders["cls-standard"],
            "adversarial": folders["cls-adversarial"],
            "masked": folders["cls-masked"],
        },
        runner.seconds,
        quick=cfg.profile == "quick",
    )
