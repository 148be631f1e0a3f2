"""The ``fracdet`` command line: thin commands that build a config and call the library.

Every command is an example of the library, not the only door to it: each one builds a
typed config and calls one function a Python user can call too.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from fracdet import __version__
from fracdet.errors import ConfigError, FracdetError
from fracdet.log import setup_logging

__all__ = ["app"]

logger = logging.getLogger("fracdet")
F = TypeVar("F", bound=Callable[..., object])

app = typer.Typer(
    name="fracdet",
    help="Bone-fracture radiographs: convert data, train and audit detectors and classifiers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML file of defaults (CLI options win).")
]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
SeedOpt = Annotated[
    int | None, typer.Option("--seed", help="Random seed (same seed, same output).")
]
FreshOpt = Annotated[
    bool,
    typer.Option(
        "--fresh",
        help="Redo every stage (default: reuse stages whose inputs and options did not change).",
    ),
]
ExactResumeOpt = Annotated[
    bool, typer.Option("--resume", help="Continue the interrupted run in --out exactly.")
]
TrustPickleOpt = Annotated[
    bool,
    typer.Option(
        "--trust-pickle",
        help="Unpickle the detector .pt in full (it can run code): only for a file you trust. Default: Ultralytics' restricted loader, which loads any Ultralytics/fracdet-trained .pt.",
    ),
]


def clean_errors(func: F) -> F:
    """Turn a :class:`FracdetError` into one line on stderr and a non-zero exit code."""

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return func(*args, **kwargs)
        except FracdetError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo(
                "interrupted: finished outputs are kept, unfinished ones were not written (training and predict: rerun with --resume)",
                err=True,
            )
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fracdet {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug messages.")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only warnings and errors; no progress bars.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Bone-fracture radiographs: convert data, train and audit detectors and classifiers."""
    setup_logging(verbose=verbose, quiet=quiet)


@app.command()
@clean_errors
def phantoms(
    output: Annotated[Path, typer.Argument(help="Folder to create (FracAtlas layout).")],
    count: Annotated[int | None, typer.Option(help="Number of images.")] = None,
    size: Annotated[int | None, typer.Option(help="Long side of each image in pixels.")] = None,
    seed: SeedOpt = None,
    prevalence: Annotated[
        float | None, typer.Option(help="Fraction of patients with a fracture (FracAtlas: ~0.18).")
    ] = None,
    max_fractures: Annotated[
        int | None, typer.Option(help="At most this many fractures per fractured image.")
    ] = None,
    image_format: Annotated[
        str | None, typer.Option("--format", help="jpg, png (8 bit) or png16 (16 bit).")
    ] = None,
    shortcut_rate: Annotated[
        float | None,
        typer.Option(
            help="Plant a spurious marker: drawn on fractured images with this probability, on intact ones with 1 minus it."
        ),
    ] = None,
    crack_scale: Annotated[
        float | None,
        typer.Option(
            help="Fracture conspicuity: crack width multiplier (1: FracAtlas-subtle; 3-4: clearly visible)."
        ),
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Rendering processes (0: up to 2).")] = None,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Generate synthetic radiograph phantoms with known fracture boxes, in FracAtlas layout."""
    from data_tools.phantoms import PhantomConfig, generate_phantoms
    from fracdet.config import build_config

    cfg = build_config(
        PhantomConfig,
        config,
        output=output,
        count=count,
        size=size,
        seed=seed,
        prevalence=prevalence,
        max_fractures=max_fractures,
        image_format=image_format,
        shortcut_rate=shortcut_rate,
        crack_scale=crack_scale,
        workers=workers,
        overwrite=overwrite or None,
    )
    generate_phantoms(cfg)
    typer.echo(f"phantoms written to {cfg.output}")


@app.command()
@clean_errors
def convert(
    source: Annotated[
        Path,
        typer.Argument(help="FracAtlas folder, YOLO data.yaml (or its folder), or COCO .json."),
    ],
    output: Annotated[Path, typer.Argument(help="Folder to create.")],
    source_format: Annotated[
        str | None, typer.Option("--from", help="auto, fracatlas, yolo or coco.")
    ] = None,
    targets: Annotated[
        str | None, typer.Option("--to", help="Comma-separated: yolo, coco, manifest, fracatlas.")
    ] = None,
    copy: Annotated[
        bool, typer.Option("--copy", help="Copy images instead of hard-linking them.")
    ] = False,
    symlink: Annotated[
        bool, typer.Option("--symlink", help="Symlink images instead of hard-linking them.")
    ] = False,
    split: Annotated[
        str | None,
        typer.Option(
            help="auto (official when present), official, random (grouped, stratified), or study (all fractured + a seeded sample of the rest, 80/10/10)."
        ),
    ] = None,
    fractions: Annotated[
        str | None, typer.Option(help="train,val,test fractions, e.g. 0.7,0.15,0.15.")
    ] = None,
    seed: SeedOpt = None,
    group_regex: Annotated[
        str | None,
        typer.Option(help="Regex on the image id whose first group is the patient/series id."),
    ] = None,
    images_root: Annotated[
        Path | None, typer.Option(help="COCO only: folder holding the images.")
    ] = None,
    full_check: Annotated[
        bool,
        typer.Option(
            "--full-check", help="Decode every image (slow) instead of header + end marker."
        ),
    ] = False,
    official_only: Annotated[
        bool,
        typer.Option(
            "--official-only",
            help="Keep only the images the official split lists (FracAtlas: its 717 fractured images).",
        ),
    ] = False,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Convert between FracAtlas, YOLO and COCO; write splits, a manifest and a report."""
    from fracdet.config import build_config
    from fracdet.data.convert import ConvertConfig
    from fracdet.data.convert import convert as run_convert

    if copy and symlink:
        raise ConfigError("--copy and --symlink exclude each other; pass one (default: hard links)")
    link = "copy" if copy else "symlink" if symlink else None
    cfg = build_config(
        ConvertConfig,
        config,
        source=source,
        output=output,
        source_format=source_format,
        targets=targets,
        link=link,
        split=split,
        fractions=fractions,
        seed=seed,
        group_regex=group_regex,
        images_root=images_root,
        full_check=full_check or None,
        official_only=official_only or None,
        overwrite=overwrite or None,
    )
    typer.echo(run_convert(cfg).line())


@app.command()
@clean_errors
def demo(
    output: Annotated[Path, typer.Option("--out", help="Folder for the demo run.")] = Path(
        "reports/demo"
    ),
    quick: Annotated[
        bool,
        typer.Option(
            "--quick", help="About 3 minutes on a CPU: fewer images and epochs (weaker numbers)."
        ),
    ] = False,
    fresh: FreshOpt = False,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="YAML file of defaults (CLI options win); without it configs/demo.yaml when present.",
        ),
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Show what fracdet is for on built-in phantoms: three classifiers audited against a detector."""
    from fracdet.config import build_config, config_file
    from fracdet.demo import DEFAULT_CONFIG_FILE, DemoConfig, run_demo

    cfg = build_config(
        DemoConfig,
        config_file(config, DEFAULT_CONFIG_FILE),
        output=output,
        quick=quick or None,
        fresh=fresh or None,
        device=device,
        seed=seed,
        overwrite=overwrite or None,
    )
    typer.echo(run_demo(cfg).line())


@app.command("run")
@clean_errors
def run_study_command(
    config: Annotated[Path, typer.Argument(help="Study config, e.g. configs/fracatlas.yaml.")],
    profile: Annotated[
        str | None,
        typer.Option(
            help="Profile of the config: cpu (about an hour on 2 cores) or gpu (pretrained weights, 640 px)."
        ),
    ] = None,
    source: Annotated[
        Path | None,
        typer.Option(
            help="FracAtlas folder (images/Fractured, images/Non_fractured, dataset.csv)."
        ),
    ] = None,
    output: Annotated[Path | None, typer.Option("--out", help="Folder for the study run.")] = None,
    fresh: FreshOpt = False,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Run a study from its config: convert, train both classifiers and the detector, audit, one results page."""
    from fracdet.config import build_config
    from fracdet.study import StudyConfig, run_study

    cfg = build_config(
        StudyConfig,
        config,
        profile=profile,
        source=source,
        output=output,
        fresh=fresh or None,
        device=device,
        seed=seed,
        overwrite=overwrite or None,
    )
    typer.echo(run_study(cfg).line())


@app.command()
@clean_errors
def fetch_fracatlas(
    output: Annotated[
        Path, typer.Argument(help="Folder to create; the published zip lands in OUT/FracAtlas.")
    ],
    from_zip: Annotated[
        Path | None,
        typer.Option(
            "--from-zip",
            help="Extract this FracAtlas zip (downloaded by hand) instead of downloading.",
        ),
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Download the real FracAtlas from figshare (or extract a zip), check MD5 and layout."""
    from data_tools.fracatlas_download import get_fracatlas

    report = get_fracatlas(output, from_zip=from_zip, overwrite=overwrite)
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(report.line())


DeviceOpt = Annotated[
    str | None, typer.Option(help="cpu, cuda, cuda:1 (default: CUDA when present).")
]
PrecisionOpt = Annotated[
    str | None,
    typer.Option(
        help="auto, fp32, bf16 or fp16 (auto: bf16 where fast, incl. AMX/AVX-512 BF16 CPUs)."
    ),
]
WorkersOpt = Annotated[int | None, typer.Option(help="Data-loading processes.")]


@app.command("train-cls")
@clean_errors
def train_cls(
    manifest: Annotated[Path, typer.Argument(help="manifest.csv written by `fracdet convert`.")],
    output: Annotated[
        Path | None, typer.Option("--out", help="Run folder (checkpoints, metrics log).")
    ] = None,
    backbone: Annotated[
        str | None,
        typer.Option(
            help="Any timm model name, e.g. resnet50, efficientnet_b0, convnext_tiny, vit_base_patch16_224.mae; or robustbench:MODEL (optional robustbench package)."
        ),
    ] = None,
    rb_dataset: Annotated[
        str | None,
        typer.Option(
            help="RobustBench zoo of robustbench:MODEL: cifar10 (default), cifar100 or imagenet."
        ),
    ] = None,
    rb_threat: Annotated[
        str | None,
        typer.Option(help="RobustBench threat model: Linf (default), L2 or corruptions."),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(help="label (fractured or not), body_part, or another manifest column."),
    ] = None,
    pretrained: Annotated[
        bool,
        typer.Option(
            "--pretrained",
            help="Start from timm hub weights or the RobustBench zoo's (needs internet unless cached; offline use --weights). tf_efficientnet_lite0: ImageNet weights offline from the pretrained-cpu extra when installed.",
        ),
    ] = False,
    weights: Annotated[
        Path | None,
        typer.Option(
            help="Local backbone state dict (.safetensors, .pth, .bin) to start from; RobustBench: its .pt checkpoint or model_dir."
        ),
    ] = None,
    freeze_backbone: Annotated[
        bool, typer.Option("--freeze-backbone", help="Linear probe: train the head only.")
    ] = False,
    mode: Annotated[
        str | None,
        typer.Option(help="full, linear or partial (head + last --unfreeze-blocks stages)."),
    ] = None,
    unfreeze_blocks: Annotated[
        int | None, typer.Option(help="Stages trained in partial mode.")
    ] = None,
    image_size: Annotated[
        int | None, typer.Option(help="Square input size in pixels (aspect kept, padded).")
    ] = None,
    resize: Annotated[
        str | None,
        typer.Option(
            help="letterbox (aspect kept, padded; default) or stretch (to the square, as the robust-transfer study)."
        ),
    ] = None,
    global_pool: Annotated[
        str | None,
        typer.Option(help="timm pooling: avg (default), max (keeps small findings), avgmax."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs.")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Images per batch (per process under torchrun).")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    optimizer: Annotated[str | None, typer.Option(help="adamw, adam or sgd.")] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="cosine, plateau or none (after warm-up).")
    ] = None,
    patience: Annotated[
        int | None, typer.Option(help="Early stopping: epochs without val AUROC gain.")
    ] = None,
    imbalance: Annotated[
        str | None, typer.Option(help="loss (class weights), sampler (weighted sampling) or none.")
    ] = None,
    loss: Annotated[str | None, typer.Option(help="ce or focal.")] = None,
    adv: Annotated[
        str | None, typer.Option(help="Adversarial training: none, pgd (Madry) or trades.")
    ] = None,
    adv_eps: Annotated[
        float | None, typer.Option(help="PGD l-inf budget in [0, 1] pixel units (default 4/255).")
    ] = None,
    adv_steps: Annotated[int | None, typer.Option(help="PGD steps.")] = None,
    adv_step_size: Annotated[
        float | None, typer.Option(help="PGD step size (default 1/255).")
    ] = None,
    threshold_method: Annotated[
        str | None,
        typer.Option(
            help="Operating point tuned on val: f1, youden, sensitivity or specificity; none keeps 0.5 (argmax)."
        ),
    ] = None,
    threshold_target: Annotated[
        float | None, typer.Option(help="Target sensitivity/specificity for those methods.")
    ] = None,
    precision: PrecisionOpt = None,
    device: DeviceOpt = None,
    workers: WorkersOpt = None,
    seed: SeedOpt = None,
    resume: ExactResumeOpt = False,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Train a timm or RobustBench classifier (fractured / not) from a convert manifest; torchrun-ready."""
    from fracdet.cls.train import ClsTrainConfig, train_classifier
    from fracdet.config import build_config

    cfg = build_config(
        ClsTrainConfig,
        config,
        manifest=manifest,
        output=output,
        backbone=backbone,
        rb_dataset=rb_dataset,
        rb_threat=rb_threat,
        target=target,
        pretrained=pretrained or None,
        weights=weights,
        mode="linear" if freeze_backbone else mode,
        unfreeze_blocks=unfreeze_blocks,
        image_size=image_size,
        resize=resize,
        global_pool=global_pool,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        scheduler=scheduler,
        patience=patience,
        imbalance=imbalance,
        loss=loss,
        adv=adv,
        adv_eps=adv_eps,
        adv_steps=adv_steps,
        adv_step_size=adv_step_size,
        threshold_method=threshold_method,
        threshold_target=threshold_target,
        precision=precision,
        device=device,
        workers=workers,
        seed=seed,
        resume=resume or None,
        overwrite=overwrite or None,
    )
    result = train_classifier(cfg)
    if result is not None:  # None in torchrun's other processes: rank 0 alone reports
        typer.echo(result.line())


@app.command("pretrain-mae")
@clean_errors
def pretrain_mae(
    data: Annotated[
        Path,
        typer.Argument(
            help="manifest.csv from `fracdet convert` or its folder (labels ignored: train split learned, val scored, test unseen), or any folder of images (JPEG/PNG/TIFF/DICOM)."
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Run folder (initial/best/last checkpoints, encoder.safetensors, metrics log).",
        ),
    ] = None,
    arch: Annotated[str | None, typer.Option(help="MAE size: base, large or huge.")] = None,
    pretrained: Annotated[
        bool,
        typer.Option(
            "--pretrained",
            help="Start from facebook/vit-mae-<arch> (needs internet; offline use --weights).",
        ),
    ] = False,
    weights: Annotated[
        Path | None,
        typer.Option(
            help="Start from a local Hugging Face ViT-MAE folder or a fracdet MAE checkpoint."
        ),
    ] = None,
    image_size: Annotated[
        int | None, typer.Option(help="Square input size in pixels (aspect kept, padded).")
    ] = None,
    patch_size: Annotated[
        int | None,
        typer.Option(help="Patch size in pixels (default: the weights' own, 16 from scratch)."),
    ] = None,
    mask_ratio: Annotated[
        float | None, typer.Option(help="Fraction of patches hidden (MAE: 0.75).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs.")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Images per batch (per process under torchrun).")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (AdamW).")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="AdamW weight decay.")] = None,
    warmup_epochs: Annotated[
        float | None, typer.Option(help="Linear warm-up before the cosine decay.")
    ] = None,
    val_fraction: Annotated[
        float | None,
        typer.Option(help="Images held out for validation when the data has no val split."),
    ] = None,
    precision: PrecisionOpt = None,
    device: DeviceOpt = None,
    workers: WorkersOpt = None,
    seed: SeedOpt = None,
    resume: ExactResumeOpt = False,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Masked-autoencoder pretraining (Hugging Face ViT-MAE) on unlabelled radiographs; torchrun-ready."""
    from fracdet.config import build_config
    from fracdet.mae.train import MAETrainConfig
    from fracdet.mae.train import pretrain_mae as run_pretraining

    cfg = build_config(
        MAETrainConfig,
        config,
        data=data,
        output=output,
        arch=arch,
        pretrained=pretrained or None,
        weights=weights,
        image_size=image_size,
        patch_size=patch_size,
        mask_ratio=mask_ratio,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        warmup_epochs=warmup_epochs,
        val_fraction=val_fraction,
        precision=precision,
        device=device,
        workers=workers,
        seed=seed,
        resume=resume or None,
        overwrite=overwrite or None,
    )
    result = run_pretraining(cfg)
    if result is not None:  # None in torchrun's other processes: rank 0 alone reports
        typer.echo(result.line())


@app.command("mae-show")
@clean_errors
def mae_show(
    checkpoint: Annotated[
        Path,
        typer.Argument(
            help="pretrain-mae run folder, or its best/last .safetensors (initial.safetensors must sit beside it)."
        ),
    ],
    images: Annotated[
        Path,
        typer.Argument(
            help="manifest.csv (its --split is used) or its folder, or any folder of images."
        ),
    ],
    output: Annotated[
        Path | None, typer.Option("--out", help="Folder to create (mae_show.png, mae_show.json).")
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(help="Manifest split to score and draw: val (default), test, train or all."),
    ] = None,
    count: Annotated[int | None, typer.Option(help="Images in the figure (a seeded draw).")] = None,
    max_images: Annotated[int | None, typer.Option(help="Score only the first N images.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per batch.")] = None,
    precision: PrecisionOpt = None,
    device: DeviceOpt = None,
    workers: WorkersOpt = None,
    seed: SeedOpt = None,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """MAE reconstructions, starting vs adapted weights, and their masked-patch MSE."""
    from fracdet.config import build_config
    from fracdet.mae.show import MAEShowConfig, show_mae

    cfg = build_config(
        MAEShowConfig,
        config,
        checkpoint=checkpoint,
        images=images,
        output=output,
        split=split,
        count=count,
        max_images=max_images,
        batch_size=batch_size,
        precision=precision,
        device=device,
        workers=workers,
        seed=seed,
        overwrite=overwrite or None,
    )
    typer.echo(show_mae(cfg).line())


@app.command("train-det")
@clean_errors
def train_det(
    data: Annotated[
        Path, typer.Argument(help="data.yaml written by `fracdet convert` (or its folder).")
    ],
    model: Annotated[
        str | None,
        typer.Option(
            help="yolov8n.yaml .. yolov8x.yaml (from scratch), a local .pt (fine-tune; a pickle: trusted files only), or a hub name like yolov8s.pt (fetched when online)."
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--out", help="Runs folder; the run goes to OUT/NAME.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Run name (folder under --out).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs.")] = None,
    imgsz: Annotated[int | None, typer.Option(help="Training image size in pixels.")] = None,
    batch: Annotated[
        int | None, typer.Option(help="Images per batch (-1: Ultralytics auto-batch on GPU).")
    ] = None,
    optimizer: Annotated[str | None, typer.Option(help="auto, SGD, AdamW, Adam, ...")] = None,
    lr0: Annotated[
        float | None, typer.Option(help="Initial learning rate (ignored by optimizer auto).")
    ] = None,
    patience: Annotated[int | None, typer.Option(help="Early stopping patience in epochs.")] = None,
    fliplr: Annotated[
        float | None, typer.Option(help="Horizontal flip probability (0 by default: laterality).")
    ] = None,
    extra: Annotated[
        list[str] | None,
        typer.Option(
            "--extra", help="Any other Ultralytics training argument, KEY=VALUE (repeatable)."
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="cpu, 0, or 0,1 for Ultralytics' multi-GPU DDP.")
    ] = None,
    workers: WorkersOpt = None,
    seed: SeedOpt = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue OUT/NAME from weights/last.pt.")
    ] = False,
    trust_pickle: TrustPickleOpt = False,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Train an Ultralytics YOLO fracture detector on a converted dataset (offline)."""
    import dataclasses

    from fracdet.config import build_config
    from fracdet.det.train import DetTrainConfig, parse_extra, train_detector

    cfg = build_config(
        DetTrainConfig,
        config,
        data=data,
        model=model,
        output=output,
        name=name,
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        optimizer=optimizer,
        lr0=lr0,
        patience=patience,
        fliplr=fliplr,
        device=device,
        workers=workers,
        seed=seed,
        resume=resume or None,
        overwrite=overwrite or None,
        trust_pickle=trust_pickle or None,
    )
    if extra:
        cfg = dataclasses.replace(cfg, extra={**cfg.extra, **parse_extra(extra)})
    typer.echo(train_detector(cfg).line())


@app.command("eval-det")
@clean_errors
def eval_det(
    weights: Annotated[
        Path, typer.Argument(help="YOLO .pt weights (e.g. runs/det/train/weights/best.pt).")
    ],
    data: Annotated[
        Path, typer.Argument(help="Folder written by `fracdet convert` (or its data.yaml).")
    ],
    split: Annotated[str | None, typer.Option(help="train, val or test.")] = None,
    output: Annotated[Path | None, typer.Option("--out", help="Report folder to create.")] = None,
    imgsz: Annotated[int | None, typer.Option(help="Inference image size.")] = None,
    batch: Annotated[int | None, typer.Option(help="Images per batch.")] = None,
    conf: Annotated[float | None, typer.Option(help="Lowest box score kept (low for mAP).")] = None,
    iou: Annotated[float | None, typer.Option(help="NMS IoU threshold.")] = None,
    image_threshold: Annotated[
        float | None, typer.Option(help="Box score above which an image counts as fractured.")
    ] = None,
    no_ultralytics_val: Annotated[
        bool,
        typer.Option(
            "--no-ultralytics-val", help="Skip Ultralytics' own val (side-by-side numbers)."
        ),
    ] = False,
    n_boot: Annotated[
        int | None, typer.Option(help="Bootstrap replicates for 95% CIs of mAP (0: none).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu or a GPU index.")] = None,
    seed: SeedOpt = None,
    trust_pickle: TrustPickleOpt = False,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Score a detector with pycocotools COCOeval (mAP) and as an image-level fracture test."""
    from fracdet.config import build_config
    from fracdet.det.evaluate import DetEvalConfig, evaluate_detector

    cfg = build_config(
        DetEvalConfig,
        config,
        weights=weights,
        data=data,
        split=split,
        output=output,
        imgsz=imgsz,
        batch=batch,
        conf=conf,
        iou=iou,
        image_threshold=image_threshold,
        ultralytics_val=False if no_ultralytics_val else None,
        n_boot=n_boot,
        device=device,
        seed=seed,
        overwrite=overwrite or None,
        trust_pickle=trust_pickle or None,
    )
    typer.echo(evaluate_detector(cfg).line())


@app.command("eval-cls")
@clean_errors
def eval_cls(
    checkpoint: Annotated[
        Path,
        typer.Argument(help="Classifier checkpoint: run folder, best.safetensors or its .json."),
    ],
    manifest: Annotated[Path, typer.Argument(help="manifest.csv written by `fracdet convert`.")],
    split: Annotated[str | None, typer.Option(help="train, val, test or all.")] = None,
    output: Annotated[Path | None, typer.Option("--out", help="Report folder to create.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per batch.")] = None,
    n_boot: Annotated[
        int | None, typer.Option(help="Bootstrap replicates for the 95% CIs.")
    ] = None,
    precision: PrecisionOpt = None,
    device: DeviceOpt = None,
    workers: WorkersOpt = None,
    seed: SeedOpt = None,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Score a classifier on a split: AUROC, sensitivity/specificity, calibration, CIs, figures."""
    from fracdet.cls.evaluate import EvalClsConfig, evaluate_classifier
    from fracdet.config import build_config

    cfg = build_config(
        EvalClsConfig,
        config,
        checkpoint=checkpoint,
        manifest=manifest,
        split=split,
        output=output,
        batch_size=batch_size,
        n_boot=n_boot,
        precision=precision,
        device=device,
        workers=workers,
        seed=seed,
        overwrite=overwrite or None,
    )
    summary = evaluate_classifier(cfg)
    typer.echo(summary.line())


@app.command()
@clean_errors
def predict(
    folder: Annotated[
        Path,
        typer.Argument(
            help="Folder of images (JPEG, PNG 8/16-bit, TIFF, DICOM with or without suffix), searched recursively."
        ),
    ],
    cls: Annotated[
        Path | None,
        typer.Option(
            "--cls", help="Classifier checkpoint: run folder, best.safetensors or its .json."
        ),
    ] = None,
    det: Annotated[
        Path | None, typer.Option("--det", help="YOLO .pt detector (a pickle: trusted files only).")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Output folder (predictions.csv, detections.json, images.json, report)."
        ),
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per batch (both tracks).")] = None,
    det_imgsz: Annotated[
        int | None, typer.Option(help="Detector input size (long side, letterboxed).")
    ] = None,
    det_conf: Annotated[float | None, typer.Option(help="Lowest box score kept.")] = None,
    det_iou: Annotated[float | None, typer.Option(help="Detector NMS IoU threshold.")] = None,
    no_recursive: Annotated[
        bool, typer.Option("--no-recursive", help="Only the files directly in FOLDER.")
    ] = False,
    overlays: Annotated[
        bool,
        typer.Option("--overlays", help="Write a PNG per image with its boxes under OUT/overlays."),
    ] = False,
    gradcam: Annotated[
        bool,
        typer.Option(
            "--gradcam",
            help="Blend the classifier's Grad-CAM map into the overlays (implies --overlays).",
        ),
    ] = False,
    shard: Annotated[
        str | None,
        typer.Option(
            help="K/N: process every N-th image from the K-th (1-based); join with `fracdet merge`."
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue an interrupted run in --out, skipping images already done."
        ),
    ] = False,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    workers: WorkersOpt = None,
    seed: SeedOpt = None,
    trust_pickle: TrustPickleOpt = False,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Classify and/or detect fractures in every image of a folder (streaming, resumable, shardable)."""
    from fracdet.config import build_config
    from fracdet.predict import PredictConfig, predict_folder

    cfg = build_config(
        PredictConfig,
        config,
        folder=folder,
        cls=cls,
        det=det,
        output=output,
        batch_size=batch_size,
        det_imgsz=det_imgsz,
        det_conf=det_conf,
        det_iou=det_iou,
        recursive=False if no_recursive else None,
        overlays=overlays or None,
        gradcam=gradcam or None,
        shard=shard,
        resume=resume or None,
        device=device,
        precision=precision,
        workers=workers,
        seed=seed,
        overwrite=overwrite or None,
        trust_pickle=trust_pickle or None,
    )
    try:
        summary = predict_folder(cfg)
    except KeyboardInterrupt:
        typer.echo(
            f"interrupted: the rows written so far are kept in {cfg.output}; rerun with --resume to continue",
            err=True,
        )
        raise typer.Exit(130) from None
    typer.echo(summary.line())


@app.command()
@clean_errors
def merge(
    output: Annotated[Path, typer.Argument(help="Folder to create with the joined outputs.")],
    shard_dirs: Annotated[
        list[Path],
        typer.Argument(
            help="Output folders of `fracdet predict --shard K/N` or `fracdet audit --shard K/N` runs."
        ),
    ],
    overwrite: OverwriteOpt = False,
) -> None:
    """Join sharded `fracdet predict` or `fracdet audit` runs into one (checks they match)."""
    import fracdet.audit
    import fracdet.predict

    is_audit = bool(shard_dirs) and (Path(shard_dirs[0]) / "audit_state.json").is_file()
    join = fracdet.audit.merge_audits if is_audit else fracdet.predict.merge_outputs
    typer.echo(join(shard_dirs, output, overwrite=overwrite).line())


@app.command()
@clean_errors
def audit(
    dataset: Annotated[
        Path,
        typer.Argument(
            help="Folder written by `fracdet convert` (manifest + boxes), its manifest.csv, or a plain folder of images."
        ),
    ],
    classifiers: Annotated[
        list[Path] | None,
        typer.Option(
            "--cls",
            help="Classifier checkpoint (run folder, best.safetensors or .json); repeat to compare several.",
        ),
    ] = None,
    names: Annotated[
        list[str] | None,
        typer.Option(
            "--name", help="Display name per --cls, in order (default: run folder names)."
        ),
    ] = None,
    detector: Annotated[
        Path | None,
        typer.Option("--det", help="YOLO .pt detector (loaded safely; see --trust-pickle)."),
    ] = None,
    det_imgsz: Annotated[
        int | None,
        typer.Option(help="Detector input size (the classifier's input is letterboxed to it)."),
    ] = None,
    det_conf: Annotated[
        float | None,
        typer.Option(help="Lowest detector score for boxes used in localization and agreement."),
    ] = None,
    split: Annotated[str | None, typer.Option(help="train, val, test or all.")] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Report folder (report.html, metrics.json, per_image.csv, maps/)."
        ),
    ] = None,
    attack: Annotated[str | None, typer.Option(help="pgd (l-inf), fgsm or pgd_l2.")] = None,
    eps: Annotated[
        str | None, typer.Option(help="Attack budget in pixel units: 4/255 or 0.0157.")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="PGD steps.")] = None,
    step_size: Annotated[str | None, typer.Option(help="PGD step size, e.g. 1/255.")] = None,
    restarts: Annotated[
        int | None, typer.Option(help="PGD random restarts (the worst case per image is kept).")
    ] = None,
    eps_space: Annotated[
        str | None,
        typer.Option(
            help="pixel (default) or normalized (the robust-transfer study's convention)."
        ),
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated: saliency, deeplift, integrated_gradients, gradcam, gradcam++."
        ),
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="Class to explain: fracture (default) or predicted.")
    ] = None,
    channels: Annotated[
        str | None, typer.Option(help="Channel aggregation: abs_max (default), abs_sum or sum.")
    ] = None,
    ig_steps: Annotated[int | None, typer.Option(help="Integrated Gradients steps.")] = None,
    group_by: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated manifest columns to split the numbers by, e.g. hardware,body_part."
        ),
    ] = None,
    max_images: Annotated[
        int | None, typer.Option(help="Audit only the first N images (a quick look).")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Images per batch (also the unit of --shard and --resume).")
    ] = None,
    trust_pickle: TrustPickleOpt = False,
    shard: Annotated[
        str | None,
        typer.Option(help="K/N: audit every N-th chunk from the K-th; join with `fracdet merge`."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted audit in --out.")
    ] = False,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    workers: WorkersOpt = None,
    seed: SeedOpt = None,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Audit classifiers (and a detector): clean vs PGD accuracy, attributions inside fracture boxes, report."""
    from fracdet.audit import AuditConfig, run_audit
    from fracdet.config import build_config

    cfg = build_config(
        AuditConfig,
        config,
        dataset=dataset,
        classifiers=tuple(classifiers) if classifiers else None,
        names=tuple(names) if names else None,
        detector=detector,
        det_imgsz=det_imgsz,
        det_conf=det_conf,
        split=split,
        output=output,
        attack=attack,
        eps=eps,
        steps=steps,
        step_size=step_size,
        restarts=restarts,
        eps_space=eps_space,
        methods=methods,
        target=target,
        channels=channels,
        ig_steps=ig_steps,
        group_by=group_by,
        max_images=max_images,
        batch_size=batch_size,
        trust_pickle=trust_pickle or None,
        shard=shard,
        resume=resume or None,
        device=device,
        precision=precision,
        workers=workers,
        seed=seed,
        overwrite=overwrite or None,
    )
    typer.echo(run_audit(cfg).line())


def run() -> None:  # pragma: no cover - console entry for `python -m fracdet`
    app(prog_name="fracdet")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
