"""What ``fracdet export`` is asked to do, and what it reports back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from fracdet.errors import ConfigError

__all__ = ["ExportConfig", "ExportSummary", "RECORD", "FORMAT"]

#: The verification record written beside the ``.onnx`` file.
RECORD = "export.json"
FORMAT = "fracdet-export/1"


@dataclass(frozen=True)
class ExportConfig:
    """Options of ``fracdet export``.

    ``source`` is a fracdet classifier (run folder, ``.safetensors`` or ``.json``) or a YOLO
    ``.pt`` detector; the track is told by the file. ``output`` is the folder to create
    (``model.onnx`` + ``export.json``; default: ``SOURCE-onnx`` beside the source).
    ``images`` is an optional folder of real images added to the seeded random samples of the
    parity check (at most ``max_images`` of them, the first in sorted order). ``imgsz`` is the
    detector's input size for the check (default: the size it was trained at).
    ``cls_tolerance`` is the largest logit difference the classifier may show.
    """

    config_section: ClassVar[str] = "export"

    source: Path
    output: Path | None = None
    opset: int = 17
    images: Path | None = None
    n_random: int = 8
    max_images: int = 16
    imgsz: int | None = None
    det_conf: float = 0.25
    det_iou: float = 0.7
    cls_tolerance: float = 1e-4
    seed: int = 0
    overwrite: bool = False
    trust_pickle: bool = False

    def __post_init__(self) -> None:
        checks = [
            (11 <= self.opset <= 20, f"opset must be in 11..20, got {self.opset}"),
            (self.n_random >= 1, f"n_random must be >= 1, got {self.n_random}"),
            (self.max_images >= 0, f"max_images must be >= 0, got {self.max_images}"),
            (self.imgsz is None or self.imgsz >= 32, f"imgsz must be >= 32, got {self.imgsz}"),
            (0.0 <= self.det_conf <= 1.0, f"det_conf must be in [0, 1], got {self.det_conf}"),
            (0.0 < self.det_iou <= 1.0, f"det_iou must be in (0, 1], got {self.det_iou}"),
            (self.cls_tolerance > 0, f"cls_tolerance must be > 0, got {self.cls_tolerance}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @property
    def output_folder(self) -> Path:
        """``output``, or ``SOURCE-onnx`` beside the source (``run`` -> ``run-onnx``)."""
        if self.output is not None:
            return Path(self.output)
        source = Path(self.source)
        return source.parent / f"{source.stem if source.suffix else source.name}-onnx"


@dataclass(frozen=True)
class ExportSummary:
    """What ``fracdet export`` wrote and how closely ONNX reproduces PyTorch."""

    kind: str  # "classifier" | "detector"
    onnx: Path
    record: Path
    opset: int
    parity: dict[str, Any]

    def line(self) -> str:
        p = self.parity
        if self.kind == "classifier":
            numbers = (
                f"logits max |diff| {p['max_abs_diff']:.2e} over {p['n_inputs']} inputs "
                f"(tolerance {p['tolerance']:.0e})"
            )
        else:
            numbers = (
                f"raw boxes max |diff| {p['raw_box_max_abs_diff_px']:.2e} px, scores "
                f"{p['raw_score_max_abs_diff']:.2e}; {p['boxes']} predicted boxes on "
                f"{p['images']} images, max |diff| {p['box_max_abs_diff_px']:.2e} px / "
                f"{p['score_max_abs_diff']:.2e}"
                + (
                    f" ({p['unpaired_boxes']} on one side only, NMS near-ties)"
                    if p["unpaired_boxes"]
                    else ""
                )
            )
        return f"{self.kind} -> {self.onnx} (opset {self.opset}): {numbers}; record {self.record}"
