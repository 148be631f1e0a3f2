"""``fracdet merge``: the outputs of ``--shard K/N`` runs joined into what one unsharded run writes."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fracdet import __version__
from fracdet.errors import ConfigError, DataError
from fracdet.fsutil import (
    LinkMode,
    atomic_output_dir,
    atomic_write_json,
    atomic_write_text,
    place_file,
)
from fracdet.journal import merge_rows, write_rows
from fracdet.predict.config import DETECTIONS, IMAGES, OVERLAYS, PREDICTIONS, REPORT, MergeSummary
from fracdet.predict.models import IDENTITY_NAMES
from fracdet.provenance import versions
from fracdet.shards import missing_shards

__all__ = ["merge_outputs"]

logger = logging.getLogger(__name__)

#: Identity keys that shards must share to be merged (the shard spec itself differs, of course).
_SHARED = ("folder", "recursive", "cls_sha256", "det_sha256", "det_options")


def _read_report(shard_dir: Path) -> dict[str, Any]:
    """The run report of a finished shard, whose files are all there."""
    path = shard_dir / REPORT
    if not path.is_file():
        raise DataError(f"not a fracdet predict output (no {REPORT})", shard_dir)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"unreadable run report ({exc})", path) from exc
    if report.get("status") != "complete":
        raise DataError("this shard's run did not finish: rerun it with --resume first", shard_dir)
    for name in (PREDICTIONS, IMAGES):
        if not (shard_dir / name).is_file():
            raise DataError(
                f"the run report says complete but {name} is missing: rerun this shard with --overwrite",
                shard_dir,
            )
    return report


def _check_same_run(shard_dirs: Sequence[Path], reports: Sequence[dict[str, Any]]) -> None:
    first = reports[0]["identity"]
    for shard_dir, report in zip(shard_dirs[1:], reports[1:], strict=True):
        for key in _SHARED:
            if report["identity"].get(key) != first.get(key):
                what = IDENTITY_NAMES.get(key, key)
                raise DataError(
                    f"made with another {what} than {shard_dirs[0]} ({report['identity'].get(key)} vs {first.get(key)})",
                    shard_dir,
                )


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link (or copy, across file systems) every file of ``src`` into ``dst``, keeping the layout."""
    if not src.is_dir():
        return
    for root, _, files in os.walk(src):
        for name in files:
            if name.startswith("."):
                continue
            source = Path(root) / name
            target = dst / source.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            place_file(source, target, LinkMode.hardlink)


def merge_outputs(
    shard_dirs: Sequence[Path], output: Path, *, overwrite: bool = False
) -> MergeSummary:
    """Join the outputs of ``--shard K/N`` runs into what one unsharded run writes.

    The shards must be complete and come from the same folder, checkpoints (sha256) and
    detector options; an image id in two shards is a :class:`DataError`. Overlays are
    hard-linked (copied across file systems) into ``output/overlays``.
    """
    if not shard_dirs:
        raise ConfigError("give at least one shard output folder to merge")
    shard_dirs = [Path(d) for d in shard_dirs]
    reports = [_read_report(d) for d in shard_dirs]
    _check_same_run(shard_dirs, reports)
    first = reports[0]

    header, rows = merge_rows([d / PREDICTIONS for d in shard_dirs])
    images: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    categories = None
    for shard_dir in shard_dirs:
        doc = json.loads((shard_dir / IMAGES).read_text(encoding="utf-8"))
        images.extend(doc["images"])
        categories = categories if categories is not None else doc["categories"]
        if (shard_dir / DETECTIONS).is_file():
            results.extend(json.loads((shard_dir / DETECTIONS).read_text(encoding="utf-8")))
    images.sort(key=lambda i: i["id"])
    results.sort(key=lambda r: r["image_id"])  # stable: each image keeps its boxes' order
    missing = missing_shards([r.get("shard") for r in reports])
    if missing:
        logger.warning(
            "shards %s are missing from the merge: their images have no rows", ", ".join(missing)
        )
    skipped = [
        {"image_id": int(r["image_id"]), "path": r["path"], "reason": r["reason"]}
        for r in rows
        if r["status"] != "ok"
    ]
    with_det = first["identity"].get("det_sha256") is not None
    with atomic_output_dir(Path(output), overwrite=overwrite) as tmp:
        write_rows(tmp / PREDICTIONS, header, rows)
        atomic_write_json(tmp / IMAGES, {"images": images, "categories": categories or []})
        if with_det:
            atomic_write_text(tmp / DETECTIONS, json.dumps(results) + "\n")
        for shard_dir in shard_dirs:
            _link_tree(shard_dir / OVERLAYS, tmp / OVERLAYS)
        seconds = sum(float(r.get("seconds", 0.0)) for r in reports)
        processed = sum(int(r.get("n_processed", 0)) for r in reports)
        report = {
            "fracdet_version": __version__,
            "status": "complete",
            "merged_from": [str(d.resolve()) for d in shard_dirs],
            "shards": [r.get("shard") for r in reports],
            "missing_shards": missing,
            "identity": first["identity"],
            "shard": None,
            "seed": first.get("seed"),
            "config": {**first.get("config", {}), "shard": None},
            "checkpoints": first.get("checkpoints"),
            "versions": versions(),
            "n_listed": first.get("n_listed"),
            "not_images": first.get("not_images", []),
            "counts": {
                "n_images": len(rows),
                "n_ok": len(images),
                "n_skipped": len(skipped),
                "n_boxes": len(results),
            },
            "images_per_s_per_shard": [r.get("images_per_s") for r in reports],
            "images_per_s": round(processed / seconds, 2) if seconds > 0 else 0.0,
            "skipped": skipped,
        }
        atomic_write_json(tmp / REPORT, report)
    return MergeSummary(
        Path(output),
        len(shard_dirs),
        len(rows),
        len(images),
        len(skipped),
        len(results),
        tuple(missing),
    )
