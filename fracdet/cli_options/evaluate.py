"""Options of ``eval-det``, ``eval-cls``, ``predict``, ``merge`` and ``audit``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fracdet.cli_options import BatchOpt, ManifestArg, PgdStepsOpt, ReportOutOpt, SplitOpt

__all__ = ["EvalDet", "EvalCls", "Predict", "Merge", "Audit"]


class EvalDet:
    """Options of ``fracdet eval-det``."""

    weights = Annotated[
        Path, typer.Argument(help="YOLO .pt weights (e.g. runs/det/train/weights/best.pt).")
    ]
    data = Annotated[
        Path, typer.Argument(help="Folder written by `fracdet convert` (or its data.yaml).")
    ]
    split = Annotated[str | None, typer.Option(help="train, val or test.")]
    output = ReportOutOpt
    imgsz = Annotated[int | None, typer.Option(help="Inference image size.")]
    batch = BatchOpt
    conf = Annotated[float | None, typer.Option(help="Lowest box score kept (low for mAP).")]
    iou = Annotated[float | None, typer.Option(help="NMS IoU threshold.")]
    image_threshold = Annotated[
        float | None, typer.Option(help="Box score above which an image counts as fractured.")
    ]
    no_ultralytics_val = Annotated[
        bool,
        typer.Option(
            "--no-ultralytics-val", help="Skip Ultralytics' own val (side-by-side numbers)."
        ),
    ]
    n_boot = Annotated[
        int | None, typer.Option(help="Bootstrap replicates for 95% CIs of mAP (0: none).")
    ]
    device = Annotated[str | None, typer.Option(help="cpu or a GPU index.")]


class EvalCls:
    """Options of ``fracdet eval-cls``."""

    checkpoint = Annotated[
        Path,
        typer.Argument(help="Classifier checkpoint: run folder, best.safetensors or its .json."),
    ]
    manifest = ManifestArg
    split = SplitOpt
    output = ReportOutOpt
    batch_size = BatchOpt
    n_boot = Annotated[int | None, typer.Option(help="Bootstrap replicates for the 95% CIs.")]


class Predict:
    """Options of ``fracdet predict``."""

    folder = Annotated[
        Path,
        typer.Argument(
            help=(
                "Folder of images (JPEG, PNG 8/16-bit, TIFF, DICOM with or without suffix), "
                "searched recursively."
            )
        ),
    ]
    cls = Annotated[
        Path | None,
        typer.Option(
            "--cls", help="Classifier checkpoint: run folder, best.safetensors or its .json."
        ),
    ]
    det = Annotated[
        Path | None, typer.Option("--det", help="YOLO .pt detector (a pickle: trusted files only).")
    ]
    output = Annotated[
        Path | None,
        typer.Option(
            "--out", help="Output folder (predictions.csv, detections.json, images.json, report)."
        ),
    ]
    batch_size = Annotated[int | None, typer.Option(help="Images per batch (both tracks).")]
    det_imgsz = Annotated[
        int | None, typer.Option(help="Detector input size (long side, letterboxed).")
    ]
    det_conf = Annotated[float | None, typer.Option(help="Lowest box score kept.")]
    det_iou = Annotated[float | None, typer.Option(help="Detector NMS IoU threshold.")]
    no_recursive = Annotated[
        bool, typer.Option("--no-recursive", help="Only the files directly in FOLDER.")
    ]
    overlays = Annotated[
        bool,
        typer.Option("--overlays", help="Write a PNG per image with its boxes under OUT/overlays."),
    ]
    gradcam = Annotated[
        bool,
        typer.Option(
            "--gradcam",
            help="Blend the classifier's Grad-CAM map into the overlays (implies --overlays).",
        ),
    ]
    shard = Annotated[
        str | None,
        typer.Option(
            help="K/N: process every N-th image from the K-th (1-based); join with `fracdet merge`."
        ),
    ]
    resume = Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue an interrupted run in --out, skipping images already done."
        ),
    ]


class Merge:
    """Options of ``fracdet merge``."""

    output = Annotated[Path, typer.Argument(help="Folder to create with the joined outputs.")]
    shard_dirs = Annotated[
        list[Path],
        typer.Argument(
            help=(
                "Output folders of `fracdet predict --shard K/N` or `fracdet audit --shard K/N` "
                "runs."
            )
        ),
    ]


class Audit:
    """Options of ``fracdet audit``."""

    dataset = Annotated[
        Path,
        typer.Argument(
            help=(
                "Folder written by `fracdet convert` (manifest + boxes), its manifest.csv, or a "
                "plain folder of images."
            )
        ),
    ]
    classifiers = Annotated[
        list[Path] | None,
        typer.Option(
            "--cls",
            help=(
                "Classifier checkpoint (run folder, best.safetensors or .json); repeat to compare "
                "several."
            ),
        ),
    ]
    names = Annotated[
        list[str] | None,
        typer.Option(
            "--name", help="Display name per --cls, in order (default: run folder names)."
        ),
    ]
    detector = Annotated[
        Path | None,
        typer.Option("--det", help="YOLO .pt detector (loaded safely; see --trust-pickle)."),
    ]
    det_imgsz = Annotated[
        int | None,
        typer.Option(help="Detector input size (the classifier's input is letterboxed to it)."),
    ]
    det_conf = Annotated[
        float | None,
        typer.Option(help="Lowest detector score for boxes used in localization and agreement."),
    ]
    split = SplitOpt
    output = Annotated[
        Path | None,
        typer.Option(
            "--out", help="Report folder (report.html, metrics.json, per_image.csv, maps/)."
        ),
    ]
    attack = Annotated[
        str | None,
        typer.Option(
            help="pgd (l-inf), fgsm, pgd_l2 or autoattack (APGD-CE, APGD-margin, FAB, Square)."
        ),
    ]
    attack_budget = Annotated[
        str | None,
        typer.Option(help="autoattack budget: quick (CPU, default) or standard."),
    ]
    eps = Annotated[str | None, typer.Option(help="Attack budget in pixel units: 4/255 or 0.0157.")]
    steps = PgdStepsOpt
    step_size = Annotated[str | None, typer.Option(help="PGD step size, e.g. 1/255.")]
    restarts = Annotated[
        int | None, typer.Option(help="PGD random restarts (the worst case per image is kept).")
    ]
    eps_space = Annotated[
        str | None,
        typer.Option(
            help="pixel (default) or normalized (the robust-transfer study's convention)."
        ),
    ]
    methods = Annotated[
        str | None,
        typer.Option(
            help="Comma-separated: saliency, deeplift, integrated_gradients, gradcam, gradcam++."
        ),
    ]
    target = Annotated[
        str | None, typer.Option(help="Class to explain: fracture (default) or predicted.")
    ]
    channels = Annotated[
        str | None, typer.Option(help="Channel aggregation: abs_max (default), abs_sum or sum.")
    ]
    ig_steps = Annotated[int | None, typer.Option(help="Integrated Gradients steps.")]
    group_by = Annotated[
        str | None,
        typer.Option(
            help=(
                "Comma-separated manifest columns to split the numbers by, e.g. hardware,body_part."
            )
        ),
    ]
    checks = Annotated[
        str | None,
        typer.Option(
            help=(
                "Comma-separated checks of the audit's own instruments (README: the audit's "
                "checks); 'none' runs none."
            )
        ),
    ]
    check_images = Annotated[
        int | None,
        typer.Option(help="The checks' subset: this many fractured images and as many intact."),
    ]
    causal_regions = Annotated[
        Path | None,
        typer.Option(
            help=(
                "CSV of named regions (image_id,region,x1,y1,x2,y2 in original pixels) the "
                "causal box test removes too, e.g. a suspected shortcut marker."
            )
        ),
    ]
    max_images = Annotated[
        int | None, typer.Option(help="Audit only the first N images (a quick look).")
    ]
    batch_size = Annotated[
        int | None, typer.Option(help="Images per batch (also the unit of --shard and --resume).")
    ]
    shard = Annotated[
        str | None,
        typer.Option(help="K/N: audit every N-th chunk from the K-th; join with `fracdet merge`."),
    ]
    resume = Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted audit in --out.")
    ]
