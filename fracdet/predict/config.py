"""What ``fracdet predict`` is asked to do, what it reports back, and the names of its files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fracdet.errors import ConfigError
from fracdet.jobs import STATE_FILES, parse_shard

__all__ = [
    "PredictConfig",
    "PredictSummary",
    "MergeSummary",
    "PREDICTIONS",
    "DETECTIONS",
    "DETECTIONS_LOG",
    "IMAGES",
    "REPORT",
    "OVERLAYS",
    "OVERLAY_MAX_SIDE",
    "INPUT_FILES",
]

PREDICTIONS = "predictions.csv"
DETECTIONS = "detections.json"
#: The detections journal (one JSON line per image with boxes), folded into DETECTIONS at the end.
DETECTIONS_LOG = "detections.jsonl"
IMAGES = "images.json"
#: Size and modification time of each input when the run (or its last resume) started: a
#: resume redoes the images that changed since, instead of keeping their old rows.
INPUT_FILES = "input_files.json"
#: The run report, which is also the run's saved state (:mod:`fracdet.jobs.state`).
REPORT = STATE_FILES["predict"]
OVERLAYS = "overlays"
#: Overlays are for looking at, not for measuring: a long side of 1024 px keeps them small.
OVERLAY_MAX_SIDE = 1024


@dataclass(frozen=True)
class PredictConfig:
    """Options of ``fracdet predict``; at least one of ``cls`` (classifier) and ``det`` (detector).

    ``shard`` is ``"K/N"`` (1-based K): this process takes every image whose index ``i`` in the
    sorted list has ``i % N == K - 1``. ``gradcam`` implies ``overlays``. ``trust_pickle``
    unpickles the ``det`` file in full instead of through Ultralytics' restricted loader.
    """

    folder: Path
    output: Path = Path("reports/predict")
    cls: Path | None = None
    det: Path | None = None
    recursive: bool = True
    batch_size: int = 16
    det_imgsz: int = 640
    det_conf: float = 0.25
    det_iou: float = 0.7
    overlays: bool = False
    gradcam: bool = False
    shard: str | None = None
    resume: bool = False
    overwrite: bool = False
    device: str | None = None
    precision: str = "auto"
    workers: int = 2
    seed: int = 0
    trust_pickle: bool = False

    def __post_init__(self) -> None:
        checks = [
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.det_imgsz >= 32, f"det_imgsz must be >= 32, got {self.det_imgsz}"),
            (0.0 <= self.det_conf <= 1.0, f"det_conf must be in [0, 1], got {self.det_conf}"),
            (0.0 < self.det_iou <= 1.0, f"det_iou must be in (0, 1], got {self.det_iou}"),
            (self.workers >= 0, f"workers must be >= 0, got {self.workers}"),
            (
                not (self.resume and self.overwrite),
                "--resume continues an output and --overwrite replaces it: pass one",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        parse_shard(self.shard)

    def check_models(self) -> None:
        """The checks that involve ``cls``, run by :func:`predict_folder`, not at construction.

        ``build_config``'s first parameter is itself named ``cls``, so the CLI sets this field
        with ``dataclasses.replace`` after building; a config without models must exist
        in between.
        """
        if self.cls is None and self.det is None:
            raise ConfigError("give a classifier (--cls CKPT), a detector (--det PT) or both")
        if self.gradcam and self.cls is None:
            raise ConfigError("--gradcam explains the classifier: pass one with --cls")

    @property
    def with_overlays(self) -> bool:
        """Grad-CAM maps are only ever shown on overlays, so asking for them asks for overlays."""
        return self.overlays or self.gradcam


@dataclass(frozen=True)
class PredictSummary:
    """What a predict run wrote, how much of it this call did, and how fast."""

    output: Path
    predictions: Path
    images: Path
    report: Path
    detections: Path | None
    overlays: Path | None
    n_images: int
    n_ok: int
    n_skipped: int
    n_processed: int
    n_resumed: int
    n_not_images: int
    n_boxes: int
    seconds: float
    images_per_s: float

    def line(self) -> str:
        resumed = f", {self.n_resumed} done before" if self.n_resumed else ""
        return (
            f"{self.n_images} images ({self.n_ok} ok, {self.n_skipped} skipped{resumed};"
            f" {self.n_not_images} non-image files ignored) "
            f"at {self.images_per_s:.1f} images/s -> {self.predictions}"
        )


@dataclass(frozen=True)
class MergeSummary:
    """What :func:`~fracdet.predict.merge.merge_outputs` joined."""

    output: Path
    n_shards: int
    n_images: int
    n_ok: int
    n_skipped: int
    n_boxes: int
    missing_shards: tuple[str, ...] = ()

    def line(self) -> str:
        missing = (
            f"; MISSING shards {', '.join(self.missing_shards)}" if self.missing_shards else ""
        )
        return (
            f"{self.n_images} images ({self.n_ok} ok, {self.n_skipped} skipped)"
            f" from {self.n_shards} shards -> {self.output / PREDICTIONS}{missing}"
        )
