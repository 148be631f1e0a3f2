"""Whole pipelines: ``demo`` (built-in phantoms) and ``run`` (a study from its config)."""

from __future__ import annotations

from pathlib import Path

from fracdet.cli.edge import clean_errors, echo_line
from fracdet.cli_options import DeviceOpt, FreshOpt, OverwriteOpt, SeedOpt
from fracdet.cli_options.data import Demo, Run

__all__ = ["demo", "run_study_command"]


@clean_errors
def demo(
    output: Demo.output = Path("reports/demo"),
    quick: Demo.quick = False,
    fresh: FreshOpt = False,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    config: Demo.config = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Show what fracdet is for on built-in phantoms:
    three classifiers audited against a detector."""
    from fracdet.config import build_config, config_file
    from fracdet.demo import DEFAULT_CONFIG_FILE, DemoConfig, run_demo

    cfg = build_config(
        DemoConfig,
        config_file(config, DEFAULT_CONFIG_FILE),
        output=output,
        profile="quick" if quick else None,  # the quick profile of the config
        fresh=fresh or None,
        device=device,
        seed=seed,
        overwrite=overwrite or None,
    )
    echo_line(run_demo(cfg))


@clean_errors
def run_study_command(
    config: Run.config,
    profile: Run.profile = None,
    source: Run.source = None,
    output: Run.output = None,
    fresh: FreshOpt = False,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Run a study from its config: convert, train both classifiers and the detector, audit, one
    results page.
    """
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
    echo_line(run_study(cfg))
