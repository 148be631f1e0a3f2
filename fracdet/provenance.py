"""What every report records so that a number can be traced back: versions, seed, data hash."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

__all__ = ["LIBRARIES", "versions", "records_hash"]

#: The libraries whose version can change fracdet's numbers: every report records them, and a
#: new one reruns a pipeline's stages (:mod:`fracdet.stages`), like a new fracdet.
LIBRARIES = (
    "numpy",
    "pillow",
    "torch",
    "torchvision",
    "timm",
    "ultralytics",
    "captum",
    "grad-cam",
    "pycocotools",
    "scikit-learn",
    "scipy",
    "opencv-python-headless",
)


def versions(packages: Iterable[str] = ("fracdet", *LIBRARIES)) -> dict[str, str]:
    """Installed versions (without importing the packages: importing torch costs seconds)."""
    found = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def records_hash(rows: Iterable[object]) -> str:
    """SHA-256 of JSON-serialisable rows, order-sensitive: the same data gives the same hash."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def installed_package_file(module: str, relative: str) -> Path | None:
    """``relative`` inside the installed package ``module``, found without importing it (a
    package's ``__init__`` may pull in code fracdet never needs), or None when absent."""
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return path if path.is_file() else None


def package_file_record(
    path: Path, *, distribution: str, relative: str, name: str, licence: str
) -> dict[str, str]:
    """Where weights from a pip package came from: what a checkpoint or run report records."""
    from fracdet.fsutil import sha256_file

    return {
        "source": "package",
        "name": name,
        "package": distribution,
        "version": metadata.version(distribution),
        "file": relative,
        "sha256": sha256_file(path),
        "licence": licence,
    }
