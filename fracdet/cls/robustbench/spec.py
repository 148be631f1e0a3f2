"""Names of RobustBench models: ``robustbench:[DATASET/THREAT/]NAME`` read and checked.

Cheap and dependency-free, so the classifier's config can recognise and canonicalise a
RobustBench backbone without loading the zoo.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fracdet.errors import ConfigError

__all__ = [
    "PREFIX",
    "DATASETS",
    "THREATS",
    "NATIVE_SIZE",
    "RobustBenchSpec",
    "is_robustbench",
    "parse_spec",
    "robustbench_spec",
]

PREFIX = "robustbench:"
DATASETS = ("cifar10", "cifar100", "imagenet")
THREATS = ("Linf", "L2", "corruptions")
#: The input size each zoo was trained and benchmarked at: the probe runs there.
NATIVE_SIZE = {"cifar10": 32, "cifar100": 32, "imagenet": 224}


@dataclass(frozen=True)
class RobustBenchSpec:
    """One zoo entry: RobustBench's dataset, threat model and model name."""

    dataset: str
    threat: str
    name: str

    def __str__(self) -> str:
        return f"{PREFIX}{self.dataset}/{self.threat}/{self.name}"

    def checkpoint_in(self, model_dir: Path) -> Path:
        """Where RobustBench keeps this model's checkpoint under ``model_dir``."""
        return Path(model_dir) / self.dataset / self.threat / f"{self.name}.pt"


def is_robustbench(backbone: str) -> bool:
    """Whether ``backbone`` names a RobustBench model (``robustbench:...``)."""
    return backbone.startswith(PREFIX)


def parse_spec(
    backbone: str, dataset: str | None = None, threat: str | None = None
) -> RobustBenchSpec:
    """``robustbench:NAME`` (with ``dataset``/``threat``, default cifar10/Linf) or
    ``robustbench:DATASET/THREAT/NAME``.

    A full name and an explicit ``dataset``/``threat`` that disagree are an error: neither
    silently wins.
    """
    if not is_robustbench(backbone):
        raise ConfigError(f"not a RobustBench backbone: {backbone!r} (expected {PREFIX}MODEL_NAME)")
    rest = backbone[len(PREFIX) :]
    parts = rest.split("/")
    if len(parts) == 3:
        named_dataset, named_threat, name = parts
        for option, given, named in (
            ("rb_dataset", dataset, named_dataset),
            ("rb_threat", threat, named_threat),
        ):
            if given is not None and given != named:
                raise ConfigError(
                    f"backbone {backbone!r} names {named!r} but {option} is {given!r}: give "
                    "one of them"
                )
        dataset, threat = named_dataset, named_threat
    elif len(parts) == 1:
        name = parts[0]
    else:
        raise ConfigError(
            f"cannot read RobustBench backbone {backbone!r}: expected {PREFIX}NAME or "
            f"{PREFIX}DATASET/THREAT/NAME"
        )
    dataset, threat = dataset or "cifar10", threat or "Linf"
    if not name:
        raise ConfigError(
            f"RobustBench backbone {backbone!r} names no model (e.g. {PREFIX}Standard)"
        )
    if dataset not in DATASETS:
        raise ConfigError(
            f"unknown RobustBench dataset {dataset!r}; choose one of {', '.join(DATASETS)}"
        )
    if threat not in THREATS:
        raise ConfigError(
            f"unknown RobustBench threat model {threat!r}; choose one of {', '.join(THREATS)}"
        )
    return RobustBenchSpec(dataset, threat, name)


def robustbench_spec(backbone: str, dataset: str | None = None, threat: str | None = None) -> str:
    """The canonical ``robustbench:DATASET/THREAT/NAME`` that checkpoints record."""
    return str(parse_spec(backbone, dataset, threat))
