"""The files of a predict output: starting them, reopening them for ``--resume``, finishing them.

Rows go to ``predictions.csv`` and boxes to the ``detections.jsonl`` side journal as the run
goes (see :mod:`fracdet.journal`); :func:`finish_outputs` folds them into the COCO files
(``images.json``, ``detections.json``) that one unsharded run would have written.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fracdet.errors import ConfigError, DataError, OutputExistsError
from fracdet.fsutil import atomic_write_json, atomic_write_text, check_folder_path
from fracdet.journal import read_jsonl, reconcile_rows, rewrite_jsonl, sort_rows, start_rows
from fracdet.predict.config import (
    DETECTIONS,
    DETECTIONS_LOG,
    IMAGES,
    PREDICTIONS,
    REPORT,
    PredictConfig,
)
from fracdet.predict.overlays import overlay_path

__all__ = ["columns", "prepare_output", "finish_outputs", "BASE_COLUMNS", "DET_COLUMNS"]

logger = logging.getLogger(__name__)

BASE_COLUMNS = ["image_id", "path", "status", "reason", "width", "height"]
DET_COLUMNS = ["n_boxes", "max_box_score"]


def columns(meta: Any, with_cls: bool) -> list[str]:
    """The CSV header: binary classifiers (and runs without one) get a probability and a decision, others one column per class."""
    if with_cls and not meta.binary:
        cls_columns = [f"p_{name}" for name in meta.class_names] + ["predicted_class"]
    else:
        cls_columns = ["fracture_probability", "fracture_decision"]
    return BASE_COLUMNS + cls_columns + DET_COLUMNS


def prepare_output(
    out: Path,
    cfg: PredictConfig,
    identity: dict[str, Any],
    header: list[str],
    items: Sequence[tuple[int, str]],
) -> set[str]:
    """Create, replace or reopen the output; returns the paths already done (for ``--resume``)."""
    check_folder_path(out.parent)
    exists = out.exists() and (not out.is_dir() or any(out.iterdir()))
    if exists and not (cfg.resume or cfg.overwrite):
        raise OutputExistsError(
            "already exists; pass --resume to continue that run or --overwrite to replace it", out
        )
    if exists and cfg.overwrite:
        shutil.rmtree(out) if out.is_dir() else out.unlink()
        exists = False
    if not exists:
        if cfg.resume:
            logger.info("nothing to resume in %s: starting a new run", out)
        out.mkdir(parents=True, exist_ok=True)
        start_rows(out / PREDICTIONS, header)
        atomic_write_text(out / DETECTIONS_LOG, "")
        return set()
    report_path = out / REPORT
    if not (out / PREDICTIONS).is_file() or not report_path.is_file():
        raise OutputExistsError(
            f"is not a fracdet predict output (no {PREDICTIONS} / {REPORT}): cannot resume it; pass --overwrite or another --out",
            out,
        )
    try:
        previous = json.loads(report_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(
            f"unreadable run report ({exc}); pass --overwrite to start again", report_path
        ) from exc
    changed = [k for k, v in identity.items() if previous.get("identity", {}).get(k) != v]
    if previous.get("shard") != cfg.shard:
        changed.append("shard")
    if changed:
        raise ConfigError(
            f"cannot resume: this run differs from the one in the output in {', '.join(changed)}; pass --overwrite or another --out",
            out,
        )
    return _reconcile(out, header, items)


def _reconcile(out: Path, header: list[str], items: Sequence[tuple[int, str]]) -> set[str]:
    """Match the rows already written to today's listing; drop the overlays and boxes of rows that go."""
    found = reconcile_rows(out / PREDICTIONS, header, {rel: image_id for image_id, rel in items})
    if found.dropped:
        logger.info("%d row(s) of files no longer in this listing were dropped", len(found.dropped))
    for row in found.dropped:
        overlay_path(out, row["path"]).unlink(missing_ok=True)

    def renumber(entry: dict[str, Any]) -> dict[str, Any] | None:
        # The CSV row is the commit: boxes of an image without a row are redone with it.
        new_id = found.remap.get(int(entry["image_id"]))
        if new_id is None:
            return None
        if new_id == entry["image_id"]:
            return entry
        return {
            "image_id": new_id,
            "results": [{**r, "image_id": new_id} for r in entry["results"]],
        }

    rewrite_jsonl(out / DETECTIONS_LOG, renumber)
    return found.done


def finish_outputs(out: Path, det_names: Sequence[str], with_det: bool) -> dict[str, Any]:
    """Sort the CSV if a resume left it out of order; write images.json and detections.json."""
    rows = sort_rows(out / PREDICTIONS)
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(det_names)]
    images = [
        {
            "id": int(r["image_id"]),
            "file_name": r["path"],
            "width": int(r["width"]),
            "height": int(r["height"]),
        }
        for r in rows
        if r["status"] == "ok"
    ]
    atomic_write_json(out / IMAGES, {"images": images, "categories": categories})
    n_boxes = 0
    if with_det:
        entries = sorted(
            read_jsonl(out / DETECTIONS_LOG), key=lambda e: int(e["image_id"])
        )  # stable: boxes keep their order
        results = [r for entry in entries for r in entry["results"]]
        n_boxes = len(results)
        atomic_write_text(out / DETECTIONS, json.dumps(results) + "\n")
    skipped = [
        {"image_id": int(r["image_id"]), "path": r["path"], "reason": r["reason"]}
        for r in rows
        if r["status"] != "ok"
    ]
    return {
        "n_images": len(rows),
        "n_ok": len(images),
        "n_skipped": len(skipped),
        "n_boxes": n_boxes,
        "skipped": skipped,
    }
