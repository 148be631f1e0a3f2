"""``fracdet merge`` of predict runs: ``--shard K/N`` outputs joined into one unsharded output."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fracdet import __version__
from fracdet.fsutil import atomic_output_dir, atomic_write_json, atomic_write_text
from fracdet.jobs import (
    check_same_run,
    finished_states,
    link_tree,
    merge_rows,
    missing_shards,
    write_rows,
    write_state,
)
from fracdet.predict.config import DETECTIONS, IMAGES, OVERLAYS, PREDICTIONS, MergeSummary
from fracdet.predict.models import IDENTITY_NAMES
from fracdet.provenance import versions

__all__ = ["merge_outputs"]

logger = logging.getLogger(__name__)

#: Identity keys that shards must share to be merged (the shard spec itself differs, of course).
_SHARED = ("folder", "recursive", "cls_sha256", "det_sha256", "det_options")


def merge_outputs(
    shard_dirs: Sequence[Path], output: Path, *, overwrite: bool = False
) -> MergeSummary:
    """Join the outputs of ``--shard K/N`` runs into what one unsharded run writes.

    The shards must be complete and come from the same folder, checkpoints (sha256) and
    detector options; an image id in two shards is a :class:`DataError`. Overlays are
    hard-linked (copied across file systems) into ``output/overlays``.
    """
    shard_dirs = [Path(d) for d in shard_dirs]
    reports = finished_states(shard_dirs, "predict", (PREDICTIONS, IMAGES))
    check_same_run(shard_dirs, reports, {k: IDENTITY_NAMES.get(k, k) for k in _SHARED})
    first = reports[0]

    header, rows = merge_rows(
        [d / PREDICTIONS for d in shard_dirs],
        lambda row: int(row["image_id"]),
        describe=lambda row: f"image id {row['image_id']} ({row['path']})",
    )
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
            link_tree(shard_dir / OVERLAYS, tmp / OVERLAYS)
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
        write_state(tmp, "predict", report)
    return MergeSummary(
        Path(output),
        len(shard_dirs),
        len(rows),
        len(images),
        len(skipped),
        len(results),
        tuple(missing),
    )
