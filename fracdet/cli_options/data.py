"""Options of ``phantoms``, ``convert``, ``fetch-fracatlas``, ``demo`` and ``run``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["Phantoms", "Convert", "FetchFracatlas", "Demo", "Run"]


class Phantoms:
    """Options of ``fracdet phantoms``."""

    output = Annotated[Path, typer.Argument(help="Folder to create (FracAtlas layout).")]
    count = Annotated[int | None, typer.Option(help="Number of images.")]
    size = Annotated[int | None, typer.Option(help="Long side of each image in pixels.")]
    prevalence = Annotated[
        float | None, typer.Option(help="Fraction of patients with a fracture (FracAtlas: ~0.18).")
    ]
    max_fractures = Annotated[
        int | None, typer.Option(help="At most this many fractures per fractured image.")
    ]
    image_format = Annotated[
        str | None, typer.Option("--format", help="jpg, png (8 bit) or png16 (16 bit).")
    ]
    shortcut_rate = Annotated[
        float | None,
        typer.Option(
            help=(
                "Plant a spurious marker: drawn on fractured images with this probability, on "
                "intact ones with 1 minus it."
            )
        ),
    ]
    crack_scale = Annotated[
        float | None,
        typer.Option(
            help=(
                "Fracture conspicuity: crack width multiplier (1: FracAtlas-subtle; 3-4: clearly "
                "visible)."
            )
        ),
    ]
    workers = Annotated[int | None, typer.Option(help="Rendering processes (0: up to 2).")]


class Convert:
    """Options of ``fracdet convert``."""

    source = Annotated[
        Path,
        typer.Argument(help="FracAtlas folder, YOLO data.yaml (or its folder), or COCO .json."),
    ]
    output = Annotated[Path, typer.Argument(help="Folder to create.")]
    source_format = Annotated[
        str | None, typer.Option("--from", help="auto, fracatlas, yolo or coco.")
    ]
    targets = Annotated[
        str | None, typer.Option("--to", help="Comma-separated: yolo, coco, manifest, fracatlas.")
    ]
    copy = Annotated[bool, typer.Option("--copy", help="Copy images instead of hard-linking them.")]
    symlink = Annotated[
        bool, typer.Option("--symlink", help="Symlink images instead of hard-linking them.")
    ]
    split = Annotated[
        str | None,
        typer.Option(
            help=(
                "auto (official when present), official, random (grouped, stratified), or study "
                "(all fractured + a seeded sample of the rest, 80/10/10)."
            )
        ),
    ]
    fractions = Annotated[
        str | None, typer.Option(help="train,val,test fractions, e.g. 0.7,0.15,0.15.")
    ]
    group_regex = Annotated[
        str | None,
        typer.Option(help="Regex on the image id whose first group is the patient/series id."),
    ]
    images_root = Annotated[Path | None, typer.Option(help="COCO only: folder holding the images.")]
    full_check = Annotated[
        bool,
        typer.Option(
            "--full-check", help="Decode every image (slow) instead of header + end marker."
        ),
    ]
    official_only = Annotated[
        bool,
        typer.Option(
            "--official-only",
            help=(
                "Keep only the images the official split lists (FracAtlas: its 717 fractured "
                "images)."
            ),
        ),
    ]


class FetchFracatlas:
    """Options of ``fracdet fetch-fracatlas``."""

    output = Annotated[
        Path, typer.Argument(help="Folder to create; the published zip lands in OUT/FracAtlas.")
    ]
    from_zip = Annotated[
        Path | None,
        typer.Option(
            "--from-zip",
            help="Extract this FracAtlas zip (downloaded by hand) instead of downloading.",
        ),
    ]


class Demo:
    """Options of ``fracdet demo``."""

    output = Annotated[Path, typer.Option("--out", help="Folder for the demo run.")]
    quick = Annotated[
        bool,
        typer.Option(
            "--quick", help="About 3 minutes on a CPU: fewer images and epochs (weaker numbers)."
        ),
    ]
    config = Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help=(
                "YAML file of defaults (CLI options win); without it configs/demo.yaml when "
                "present."
            ),
        ),
    ]


class Run:
    """Options of ``fracdet run``."""

    config = Annotated[Path, typer.Argument(help="Study config, e.g. configs/fracatlas.yaml.")]
    profile = Annotated[
        str | None,
        typer.Option(
            help=(
                "Profile of the config: cpu (about an hour on 2 cores) or gpu (pretrained "
                "weights, 640 px)."
            )
        ),
    ]
    source = Annotated[
        Path | None,
        typer.Option(
            help="FracAtlas folder (images/Fractured, images/Non_fractured, dataset.csv)."
        ),
    ]
    output = Annotated[Path | None, typer.Option("--out", help="Folder for the study run.")]
