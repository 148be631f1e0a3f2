"""The ``fracdet`` command line: thin commands that build a config and call the library.

Every command is an example of the library, not the only door to it: each one builds a
typed config and calls one function a Python user can call too. The commands live in modules
by job (:mod:`~fracdet.cli.data`, :mod:`~fracdet.cli.pipelines`, :mod:`~fracdet.cli.train`,
:mod:`~fracdet.cli.evaluate`, :mod:`~fracdet.cli.inference`); they are registered here, in the
order ``fracdet --help`` lists them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from fracdet import __version__
from fracdet.cli import data, evaluate, export, inference, pipelines, train
from fracdet.log import setup_logging

__all__ = ["app", "run"]

app = typer.Typer(
    name="fracdet",
    help="Bone-fracture radiographs: convert data, train and audit detectors and classifiers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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


app.command()(data.phantoms)
app.command()(data.convert)
app.command()(pipelines.demo)
app.command("run")(pipelines.run_study_command)
app.command()(data.fetch_fracatlas)
app.command("train-cls")(train.train_cls)
app.command("import-cls")(train.import_cls)
app.command("pretrain-mae")(train.pretrain_mae)
app.command("mae-show")(train.mae_show)
app.command("train-det")(train.train_det)
app.command("eval-det")(evaluate.eval_det)
app.command("eval-cls")(evaluate.eval_cls)
app.command()(inference.predict)
app.command()(inference.merge)
app.command()(inference.audit)
app.command()(export.export)


def run() -> None:  # pragma: no cover - console entry for `python -m fracdet`
    app(prog_name="fracdet")
