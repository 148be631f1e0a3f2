"""``fracdet demo``: the pipeline on built-in phantoms, so a new user sees it work at once.

At this stage of the project the demo generates phantoms and converts them; the training,
audit and prediction stages join as they land.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from fracdet.data.convert import ConvertConfig, convert
from fracdet.errors import OutputExistsError

__all__ = ["DemoConfig", "run_demo"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    output: Path = Path("reports/demo")
    count: int = 300
    size: int = 384
    seed: int = 0
    prevalence: float = 0.3
    shortcut_rate: float | None = None
    overwrite: bool = False


def run_demo(config: DemoConfig) -> str:
    """Generate phantoms, convert them; return a short text summary (also in ``summary.json``)."""
    from data_tools.phantoms import PhantomConfig, generate_phantoms

    out = Path(config.output)
    if out.exists() and not config.overwrite:
        raise OutputExistsError("already exists; pass --overwrite to replace it", out)
    out.mkdir(parents=True, exist_ok=True)
    phantoms = generate_phantoms(
        PhantomConfig(
            out / "phantoms", count=config.count, size=config.size, seed=config.seed,
            prevalence=config.prevalence, shortcut_rate=config.shortcut_rate, overwrite=True,
        )
    )  # fmt: skip
    result = convert(ConvertConfig(source=phantoms, output=out / "dataset", seed=config.seed, overwrite=True))
    summary = {
        "phantoms": str(phantoms),
        "dataset": str(result.output),
        "yolo_data_yaml": str(result.output / "data.yaml"),
        "manifest": str(result.output / "manifest.csv"),
        "images": result.n_images,
        "skipped": result.n_skipped,
        "splits": result.split_counts,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    lines = [f"demo: {result.n_images} phantom radiographs in {phantoms}", f"      YOLO dataset: {summary['yolo_data_yaml']}", f"      manifest:     {summary['manifest']}"]
    lines += [f"      {split:5s}: {counts}" for split, counts in result.split_counts.items()]
    return "\n".join(lines)
