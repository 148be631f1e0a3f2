"""Data commands: ``phantoms``, ``convert``, ``fetch-fracatlas``."""

from __future__ import annotations

import typer

from fracdet.cli.edge import clean_errors, echo_line
from fracdet.cli_options import ConfigOpt, OverwriteOpt, SeedOpt
from fracdet.cli_options.data import Convert, FetchFracatlas, Phantoms
from fracdet.errors import ConfigError

__all__ = ["phantoms", "convert", "fetch_fracatlas"]


@clean_errors
def phantoms(
    output: Phantoms.output,
    count: Phantoms.count = None,
    size: Phantoms.size = None,
    seed: SeedOpt = None,
    prevalence: Phantoms.prevalence = None,
    max_fractures: Phantoms.max_fractures = None,
    image_format: Phantoms.image_format = None,
    shortcut_rate: Phantoms.shortcut_rate = None,
    crack_scale: Phantoms.crack_scale = None,
    workers: Phantoms.workers = None,
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


@clean_errors
def convert(
    source: Convert.source,
    output: Convert.output,
    source_format: Convert.source_format = None,
    targets: Convert.targets = None,
    copy: Convert.copy = False,
    symlink: Convert.symlink = False,
    split: Convert.split = None,
    fractions: Convert.fractions = None,
    seed: SeedOpt = None,
    group_regex: Convert.group_regex = None,
    images_root: Convert.images_root = None,
    full_check: Convert.full_check = False,
    official_only: Convert.official_only = False,
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
    echo_line(run_convert(cfg))


@clean_errors
def fetch_fracatlas(
    output: FetchFracatlas.output,
    from_zip: FetchFracatlas.from_zip = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Download the real FracAtlas from figshare (or extract a zip), check MD5 and layout."""
    from data_tools.fracatlas_download import get_fracatlas

    report = get_fracatlas(output, from_zip=from_zip, overwrite=overwrite)
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)
    echo_line(report)
