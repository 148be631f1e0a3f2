"""Options of ``export``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["Export"]


class Export:
    """Options of ``fracdet export``."""

    source = Annotated[
        Path,
        typer.Argument(
            help=(
                "A fracdet classifier (run folder, best.safetensors or its .json) or a YOLO .pt "
                "detector."
            )
        ),
    ]
    output = Annotated[
        Path | None,
        typer.Option(
            "--out", help="Folder to create: model.onnx + export.json (default: SOURCE-onnx)."
        ),
    ]
    opset = Annotated[int | None, typer.Option(help="ONNX opset (default 17).")]
    images = Annotated[
        Path | None,
        typer.Option(
            help="Folder of real images added to the seeded random ones in the parity check."
        ),
    ]
    n_random = Annotated[
        int | None, typer.Option(help="Seeded random images in the parity check (default 8).")
    ]
    max_images = Annotated[
        int | None, typer.Option(help="At most this many images of --images (default 16).")
    ]
    imgsz = Annotated[
        int | None,
        typer.Option(help="Detector input size for the check (default: its training size)."),
    ]
    det_conf = Annotated[
        float | None, typer.Option(help="Detector: lowest box score compared (default 0.25).")
    ]
    det_iou = Annotated[float | None, typer.Option(help="Detector: NMS IoU (default 0.7).")]
    cls_tolerance = Annotated[
        float | None,
        typer.Option(help="Classifier: largest logit difference allowed (default 1e-4)."),
    ]
