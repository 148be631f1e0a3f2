"""Options of ``train-cls``, ``pretrain-mae``, ``mae-show`` and ``train-det``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fracdet.cli_options import BatchOpt, ManifestArg, PgdStepsOpt, TrainBatchOpt, TrainImageSizeOpt

__all__ = ["TrainCls", "ImportCls", "PretrainMae", "MaeShow", "TrainDet"]


class TrainCls:
    """Options of ``fracdet train-cls``."""

    manifest = ManifestArg
    output = Annotated[
        Path | None, typer.Option("--out", help="Run folder (checkpoints, metrics log).")
    ]
    backbone = Annotated[
        str | None,
        typer.Option(
            help=(
                "Any timm model name, e.g. resnet50, efficientnet_b0, convnext_tiny, "
                "vit_base_patch16_224.mae; or robustbench:MODEL (optional robustbench package)."
            )
        ),
    ]
    rb_dataset = Annotated[
        str | None,
        typer.Option(
            help="RobustBench zoo of robustbench:MODEL: cifar10 (default), cifar100 or imagenet."
        ),
    ]
    rb_threat = Annotated[
        str | None,
        typer.Option(help="RobustBench threat model: Linf (default), L2 or corruptions."),
    ]
    target = Annotated[
        str | None,
        typer.Option(help="label (fractured or not), body_part, or another manifest column."),
    ]
    pretrained = Annotated[
        bool,
        typer.Option(
            "--pretrained",
            help=(
                "Start from timm hub weights or the RobustBench zoo's (needs internet unless "
                "cached; offline use --weights). tf_efficientnet_lite0: ImageNet weights offline "
                "from the pretrained-cpu extra when installed."
            ),
        ),
    ]
    weights = Annotated[
        Path | None,
        typer.Option(
            help=(
                "Local backbone state dict (.safetensors, .pth, .bin) to start from; RobustBench: "
                "its .pt checkpoint or model_dir."
            )
        ),
    ]
    freeze_backbone = Annotated[
        bool, typer.Option("--freeze-backbone", help="Linear probe: train the head only.")
    ]
    mode = Annotated[
        str | None,
        typer.Option(help="full, linear or partial (head + last --unfreeze-blocks stages)."),
    ]
    unfreeze_blocks = Annotated[int | None, typer.Option(help="Stages trained in partial mode.")]
    image_size = TrainImageSizeOpt
    resize = Annotated[
        str | None,
        typer.Option(
            help=(
                "letterbox (aspect kept, padded; default) or stretch (to the square, as the "
                "robust-transfer study)."
            )
        ),
    ]
    global_pool = Annotated[
        str | None,
        typer.Option(help="timm pooling: avg (default), max (keeps small findings), avgmax."),
    ]
    epochs = Annotated[int | None, typer.Option(help="Maximum epochs.")]
    batch_size = TrainBatchOpt
    lr = Annotated[float | None, typer.Option(help="Peak learning rate.")]
    optimizer = Annotated[str | None, typer.Option(help="adamw, adam or sgd.")]
    scheduler = Annotated[str | None, typer.Option(help="cosine, plateau or none (after warm-up).")]
    patience = Annotated[
        int | None, typer.Option(help="Early stopping: epochs without val AUROC gain.")
    ]
    imbalance = Annotated[
        str | None, typer.Option(help="loss (class weights), sampler (weighted sampling) or none.")
    ]
    loss = Annotated[str | None, typer.Option(help="ce or focal.")]
    adv = Annotated[
        str | None, typer.Option(help="Adversarial training: none, pgd (Madry) or trades.")
    ]
    adv_eps = Annotated[
        float | None, typer.Option(help="PGD l-inf budget in [0, 1] pixel units (default 4/255).")
    ]
    adv_steps = PgdStepsOpt
    adv_step_size = Annotated[float | None, typer.Option(help="PGD step size (default 1/255).")]
    threshold_method = Annotated[
        str | None,
        typer.Option(
            help=(
                "Operating point tuned on val: f1, youden, sensitivity or specificity; none keeps "
                "0.5 (argmax)."
            )
        ),
    ]
    threshold_target = Annotated[
        float | None, typer.Option(help="Target sensitivity/specificity for those methods.")
    ]


class ImportCls:
    """Options of ``fracdet import-cls``."""

    source = Annotated[
        Path,
        typer.Argument(
            help=(
                "The classifier: a state dict (.pth/.pt/.bin read with weights_only, or "
                ".safetensors) or a TorchScript file."
            )
        ),
    ]
    arch = Annotated[
        str,
        typer.Option(
            help="timm:NAME or torchvision:NAME (the state dict's architecture), or torchscript."
        ),
    ]
    output = Annotated[
        Path | None, typer.Option("--out", help="Classifier folder to create (best.* + .json).")
    ]
    input_size = Annotated[
        int | None, typer.Option(help="Square input size the model takes (default 224).")
    ]
    resize = Annotated[
        str | None,
        typer.Option(help="How images reach that size: letterbox (aspect kept) or stretch."),
    ]
    mean = Annotated[
        str | None, typer.Option(help="Normalisation mean, 1 or 3 values (default ImageNet's).")
    ]
    std = Annotated[
        str | None, typer.Option(help="Normalisation std, 1 or 3 values (default ImageNet's).")
    ]
    normalize = Annotated[
        str | None,
        typer.Option(
            help=(
                "wrapper: fracdet applies --mean/--std before the model (default); model: the "
                "model normalises itself ([0, 1] pixels go in; --mean/--std only set ε's units)."
            )
        ),
    ]
    channels = Annotated[int | None, typer.Option(help="Channels the model takes: 3 or 1.")]
    head = Annotated[
        str | None,
        typer.Option(
            help=(
                "sigmoid: one fracture logit (default); softmax: K classes, give --class-names "
                "and --fracture-index."
            )
        ),
    ]
    class_names = Annotated[
        str | None, typer.Option(help="Softmax head: class names in output order, a,b,c.")
    ]
    fracture_index = Annotated[
        int | None, typer.Option(help="Softmax head: the index of the fractured class.")
    ]
    threshold = Annotated[
        float | None, typer.Option(help="Fracture probability threshold (default 0.5).")
    ]
    strip_prefix = Annotated[
        str | None,
        typer.Option(help="Key prefixes removed where every key has one (default module.,model.)."),
    ]
    rename_map = Annotated[
        Path | None,
        typer.Option(help="YAML/JSON {old key: new key}; 'old.': 'new.' renames a prefix."),
    ]
    allow_missing = Annotated[
        bool,
        typer.Option("--allow-missing", help="Load although keys are missing (they stay random)."),
    ]
    allow_unexpected = Annotated[
        bool, typer.Option("--allow-unexpected", help="Drop state dict keys the model lacks.")
    ]
    cam_layer = Annotated[
        str | None,
        typer.Option(
            help="The layer Grad-CAM hooks, e.g. layer4 (default: the last feature map found)."
        ),
    ]
    samples = Annotated[
        int | None, typer.Option(help="Seeded random images the verification compares (4).")
    ]


class PretrainMae:
    """Options of ``fracdet pretrain-mae``."""

    data = Annotated[
        Path,
        typer.Argument(
            help=(
                "manifest.csv from `fracdet convert` or its folder (labels ignored: train split "
                "learned, val scored, test unseen), or any folder of images (JPEG/PNG/TIFF/DICOM)."
            )
        ),
    ]
    output = Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Run folder (initial/best/last checkpoints, encoder.safetensors, metrics log).",
        ),
    ]
    arch = Annotated[str | None, typer.Option(help="MAE size: base, large or huge.")]
    pretrained = Annotated[
        bool,
        typer.Option(
            "--pretrained",
            help="Start from facebook/vit-mae-<arch> (needs internet; offline use --weights).",
        ),
    ]
    weights = Annotated[
        Path | None,
        typer.Option(
            help="Start from a local Hugging Face ViT-MAE folder or a fracdet MAE checkpoint."
        ),
    ]
    image_size = TrainImageSizeOpt
    patch_size = Annotated[
        int | None,
        typer.Option(help="Patch size in pixels (default: the weights' own, 16 from scratch)."),
    ]
    mask_ratio = Annotated[
        float | None, typer.Option(help="Fraction of patches hidden (MAE: 0.75).")
    ]
    epochs = Annotated[int | None, typer.Option(help="Epochs.")]
    batch_size = TrainBatchOpt
    lr = Annotated[float | None, typer.Option(help="Peak learning rate (AdamW).")]
    weight_decay = Annotated[float | None, typer.Option(help="AdamW weight decay.")]
    warmup_epochs = Annotated[
        float | None, typer.Option(help="Linear warm-up before the cosine decay.")
    ]
    val_fraction = Annotated[
        float | None,
        typer.Option(help="Images held out for validation when the data has no val split."),
    ]


class MaeShow:
    """Options of ``fracdet mae-show``."""

    checkpoint = Annotated[
        Path,
        typer.Argument(
            help=(
                "pretrain-mae run folder, or its best/last .safetensors (initial.safetensors must "
                "sit beside it)."
            )
        ),
    ]
    images = Annotated[
        Path,
        typer.Argument(
            help="manifest.csv (its --split is used) or its folder, or any folder of images."
        ),
    ]
    output = Annotated[
        Path | None, typer.Option("--out", help="Folder to create (mae_show.png, mae_show.json).")
    ]
    split = Annotated[
        str | None,
        typer.Option(help="Manifest split to score and draw: val (default), test, train or all."),
    ]
    count = Annotated[int | None, typer.Option(help="Images in the figure (a seeded draw).")]
    max_images = Annotated[int | None, typer.Option(help="Score only the first N images.")]
    batch_size = BatchOpt


class TrainDet:
    """Options of ``fracdet train-det``."""

    data = Annotated[
        Path, typer.Argument(help="data.yaml written by `fracdet convert` (or its folder).")
    ]
    model = Annotated[
        str | None,
        typer.Option(
            help=(
                "yolov8n.yaml .. yolov8x.yaml (from scratch), a local .pt (fine-tune; a pickle: "
                "trusted files only), or a hub name like yolov8s.pt (fetched when online)."
            )
        ),
    ]
    output = Annotated[
        Path | None, typer.Option("--out", help="Runs folder; the run goes to OUT/NAME.")
    ]
    name = Annotated[str | None, typer.Option(help="Run name (folder under --out).")]
    epochs = Annotated[int | None, typer.Option(help="Training epochs.")]
    imgsz = Annotated[int | None, typer.Option(help="Training image size in pixels.")]
    batch = Annotated[
        int | None, typer.Option(help="Images per batch (-1: Ultralytics auto-batch on GPU).")
    ]
    optimizer = Annotated[str | None, typer.Option(help="auto, SGD, AdamW, Adam, ...")]
    lr0 = Annotated[
        float | None, typer.Option(help="Initial learning rate (ignored by optimizer auto).")
    ]
    patience = Annotated[int | None, typer.Option(help="Early stopping patience in epochs.")]
    fliplr = Annotated[
        float | None, typer.Option(help="Horizontal flip probability (0 by default: laterality).")
    ]
    extra = Annotated[
        list[str] | None,
        typer.Option(
            "--extra", help="Any other Ultralytics training argument, KEY=VALUE (repeatable)."
        ),
    ]
    device = Annotated[
        str | None, typer.Option(help="cpu, 0, or 0,1 for Ultralytics' multi-GPU DDP.")
    ]
    resume = Annotated[
        bool, typer.Option("--resume", help="Continue OUT/NAME from weights/last.pt.")
    ]
