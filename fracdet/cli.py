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
from fracdet.errors import FracdetError
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

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML file of defaults (CLI options win).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Random seed (same seed, same output).")]


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
            typer.echo("interrupted: nothing was written to the output", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fracdet {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug messages.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors; no progress bars.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
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
    prevalence: Annotated[float | None, typer.Option(help="Fraction of patients with a fracture (FracAtlas: ~0.18).")] = None,
    max_fractures: Annotated[int | None, typer.Option(help="At most this many fractures per fractured image.")] = None,
    image_format: Annotated[str | None, typer.Option("--format", help="jpg, png (8 bit) or png16 (16 bit).")] = None,
    shortcut_rate: Annotated[float | None, typer.Option(help="Plant a spurious marker: drawn on fractured images with this probability, on intact ones with 1 minus it.")] = None,
    workers: Annotated[int | None, typer.Option(help="Rendering processes (0: up to 2).")] = None,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Generate synthetic radiograph phantoms with known fracture boxes, in FracAtlas layout."""
    from data_tools.phantoms import PhantomConfig, generate_phantoms
    from fracdet.config import build_config

    cfg = build_config(
        PhantomConfig, config, output=output, count=count, size=size, seed=seed, prevalence=prevalence,
        max_fractures=max_fractures, image_format=image_format, shortcut_rate=shortcut_rate,
        workers=workers, overwrite=overwrite or None,
    )  # fmt: skip
    generate_phantoms(cfg)
    typer.echo(f"phantoms written to {cfg.output}")


@app.command()
@clean_errors
def convert(
    source: Annotated[Path, typer.Argument(help="FracAtlas folder, YOLO data.yaml (or its folder), or COCO .json.")],
    output: Annotated[Path, typer.Argument(help="Folder to create.")],
    source_format: Annotated[str | None, typer.Option("--from", help="auto, fracatlas, yolo or coco.")] = None,
    targets: Annotated[str | None, typer.Option("--to", help="Comma-separated: yolo, coco, manifest, fracatlas.")] = None,
    copy: Annotated[bool, typer.Option("--copy", help="Copy images instead of hard-linking them.")] = False,
    symlink: Annotated[bool, typer.Option("--symlink", help="Symlink images instead of hard-linking them.")] = False,
    split: Annotated[str | None, typer.Option(help="auto (official when present), official, or random (grouped, stratified).")] = None,
    fractions: Annotated[str | None, typer.Option(help="train,val,test fractions, e.g. 0.7,0.15,0.15.")] = None,
    seed: SeedOpt = None,
    group_regex: Annotated[str | None, typer.Option(help="Regex on the image id whose first group is the patient/series id.")] = None,
    images_root: Annotated[Path | None, typer.Option(help="COCO only: folder holding the images.")] = None,
    full_check: Annotated[bool, typer.Option("--full-check", help="Decode every image (slow) instead of header + end marker.")] = False,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Convert between FracAtlas, YOLO and COCO; write splits, a manifest and a report."""
    from fracdet.config import build_config
    from fracdet.data.convert import ConvertConfig
    from fracdet.data.convert import convert as run_convert

    link = "copy" if copy else "symlink" if symlink else None
    cfg = build_config(
        ConvertConfig, config, source=source, output=output, source_format=source_format, targets=targets,
        link=link, split=split, fractions=fractions, seed=seed, group_regex=group_regex,
        images_root=images_root, full_check=full_check or None, overwrite=overwrite or None,
    )  # fmt: skip
    result = run_convert(cfg)
    counts = "; ".join(f"{s}: " + ", ".join(f"{n} {c}" for c, n in per.items()) for s, per in result.split_counts.items())
    typer.echo(f"{result.n_images} images -> {result.output} ({counts}); {result.n_skipped} skipped, see convert_report.json")


@app.command()
@clean_errors
def demo(
    output: Annotated[Path, typer.Option("--out", help="Folder for the demo run.")] = Path("reports/demo"),
    config: ConfigOpt = Path("configs/demo.yaml"),
    overwrite: OverwriteOpt = False,
) -> None:
    """Run the pipeline end to end on built-in phantoms (now: phantoms + convert)."""
    from fracdet.config import build_config
    from fracdet.demo import DemoConfig, run_demo

    cfg = build_config(DemoConfig, config if config and config.exists() else None, output=output, overwrite=overwrite or None)
    summary = run_demo(cfg)
    typer.echo(summary)


@app.command()
@clean_errors
def fetch_fracatlas(
    output: Annotated[Path, typer.Argument(help="Folder to create; the published zip lands in OUT/FracAtlas.")],
    from_zip: Annotated[Path | None, typer.Option("--from-zip", help="Extract this FracAtlas zip (downloaded by hand) instead of downloading.")] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Download the real FracAtlas from figshare (or extract a zip), check MD5 and layout."""
    from data_tools.fracatlas_download import extract_fracatlas_zip, verify_fracatlas
    from data_tools.fracatlas_download import fetch_fracatlas as download

    root = extract_fracatlas_zip(from_zip, output, overwrite=overwrite) if from_zip else download(output, overwrite=overwrite)
    report = verify_fracatlas(root)
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"FracAtlas tree at {root} ({report.counts['fractured_images']} fractured, {report.counts['non_fractured_images']} non-fractured images); run `fracdet convert {root} OUT`")


def run() -> None:  # pragma: no cover - console entry for `python -m fracdet`
    app(prog_name="fracdet")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
