"""The CLI's option declarations, kept apart from the commands that use them.

Only the :mod:`fracdet.cli` package imports this one (``tests/test_architecture.py`` checks
it). Here are the aliases shared by several commands; each submodule holds one class per command, a
plain namespace of ``Annotated`` aliases named like the command's parameters, so a command
reads like the call it makes (``backbone: TrainCls.backbone = None``) and a help text is
declared once, beside its siblings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = [
    "ConfigOpt",
    "OverwriteOpt",
    "SeedOpt",
    "FreshOpt",
    "ExactResumeOpt",
    "TrustPickleOpt",
    "DeviceOpt",
    "PrecisionOpt",
    "WorkersOpt",
    "ManifestArg",
    "TrainImageSizeOpt",
    "TrainBatchOpt",
    "PgdStepsOpt",
    "BatchOpt",
    "ReportOutOpt",
    "SplitOpt",
]

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
        help=(
            "Unpickle the detector .pt in full (it can run code): only for a file you trust. "
            "Default: Ultralytics' restricted loader, which loads any Ultralytics/fracdet-trained "
            ".pt."
        ),
    ),
]
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
ManifestArg = Annotated[Path, typer.Argument(help="manifest.csv written by `fracdet convert`.")]
TrainImageSizeOpt = Annotated[
    int | None, typer.Option(help="Square input size in pixels (aspect kept, padded).")
]
TrainBatchOpt = Annotated[
    int | None, typer.Option(help="Images per batch (per process under torchrun).")
]
PgdStepsOpt = Annotated[int | None, typer.Option(help="PGD steps.")]
BatchOpt = Annotated[int | None, typer.Option(help="Images per batch.")]
ReportOutOpt = Annotated[Path | None, typer.Option("--out", help="Report folder to create.")]
SplitOpt = Annotated[str | None, typer.Option(help="train, val, test or all.")]
