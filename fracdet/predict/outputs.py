"""The files of a predict output: starting them, reopening them for ``--resume``, finishing them.

Rows go to ``predictions.csv`` and boxes to the ``detections.jsonl`` side journal as the run
goes (:class:`fracdet.jobs.Journal`: one image is one chunk); :func:`finish_outputs` folds
them into the COCO files (``images.json``, ``detections.json``) that one unsharded run would
have written.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from fracdet.fsutil import atomic_write_json, atomic_writer
from fracdet.jobs import Journal, Reopened, iter_jsonl, iter_rows, open_output, sort_rows
from fracdet.predict.config import (
    DETECTIONS,
    DETECTIONS_LOG,
    IMAGES,
    INPUT_FILES,
    PREDICTIONS,
    PredictConfig,
)
from fracdet.predict.overlays import overlay_path

__all__ = [
    "columns",
    "journal",
    "prepare_output",
    "finish_outputs",
    "BASE_COLUMNS",
    "DET_COLUMNS",
    "SPACING_COLUMNS",
]

logger = logging.getLogger(__name__)

# The pixel size a DICOM header records (mm; empty for other formats, or none recorded) and
# the tag it came from: PixelSpacing (at the patient) or ImagerPixelSpacing (at the detector).
SPACING_COLUMNS = ["pixel_spacing_row_mm", "pixel_spacing_col_mm", "pixel_spacing_source"]
BASE_COLUMNS = ["image_id", "path", "status", "reason", "width", "height", *SPACING_COLUMNS]
DET_COLUMNS = ["n_boxes", "max_box_score"]


def columns(meta: Any, with_cls: bool) -> list[str]:
    """The CSV header.

    Binary classifiers (and runs without one) get a probability and a decision, others one
    column per class.
    """
    if with_cls and not meta.binary:
        cls_columns = [f"p_{name}" for name in meta.class_names] + ["predicted_class"]
    else:
        cls_columns = ["fracture_probability", "fracture_decision"]
    return BASE_COLUMNS + cls_columns + DET_COLUMNS


def journal(out: Path, header: Sequence[str]) -> Journal[str]:
    """Predict's journal: a row per image (a chunk is one image, keyed by path), boxes beside."""
    return Journal(
        out,
        header,
        lambda row: row["path"],
        rows=PREDICTIONS,
        side=DETECTIONS_LOG,
        id_column="image_id",
    )


def prepare_output(
    rows: Journal[str],
    cfg: PredictConfig,
    identity: dict[str, Any],
    items: Sequence[tuple[int, str]],
) -> tuple[set[str], list[str]]:
    """Create, replace or reopen the output; returns the paths already done (for ``--resume``)
    and those whose rows were dropped because the file changed since they were written."""
    today = _fingerprints(Path(cfg.folder), items)
    previous = open_output(
        rows.folder,
        "predict",
        identity,
        shard=cfg.shard,
        resume=bool(cfg.resume),
        overwrite=bool(cfg.overwrite),
        needs=(PREDICTIONS,),
    )
    if previous is None:
        rows.start()
        atomic_write_json(rows.folder / INPUT_FILES, {"size_mtime_ns": today}, indent=None)
        return set(), []
    saved = _saved_fingerprints(rows.folder / INPUT_FILES)
    changed = {rel for rel, stat in today.items() if rel in saved and saved[rel] != stat}
    done, redone = _reconcile(rows, items, changed)
    atomic_write_json(rows.folder / INPUT_FILES, {"size_mtime_ns": today}, indent=None)
    if redone:
        logger.warning(
            "%d input(s) changed since their rows were written (size or modification time)"
            " and are predicted again: %s%s",
            len(redone),
            ", ".join(redone[:5]),
            ", ..." if len(redone) > 5 else "",
        )
    return done, redone


def _fingerprints(folder: Path, items: Sequence[tuple[int, str]]) -> dict[str, list[int] | None]:
    """Each input's ``[size, mtime_ns]`` (``None``: it cannot be read now): cheap, no reading."""
    stats: dict[str, list[int] | None] = {}
    for _, rel in items:
        try:
            stat = os.stat(folder / rel)
        except OSError:
            stats[rel] = None
            continue
        stats[rel] = [stat.st_size, stat.st_mtime_ns]
    return stats


def _saved_fingerprints(path: Path) -> dict[str, Any]:
    """What :data:`INPUT_FILES` recorded; empty for an output written before it existed."""
    try:
        return dict(json.loads(path.read_text(encoding="utf-8"))["size_mtime_ns"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _reconcile(
    rows: Journal[str], items: Sequence[tuple[int, str]], changed: set[str]
) -> tuple[set[str], list[str]]:
    """Match the rows written to today's listing; drop the overlays and boxes of rows that go.

    Rows of ``changed`` files go too (they are redone): a resumed output never mixes rows of
    a file's old content with rows of the new files.
    """

    def renumber(entry: dict[str, Any], found: Reopened[str]) -> dict[str, Any] | None:
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

    found = rows.reopen(
        [[rel] for _, rel in items if rel not in changed],
        ids={rel: image_id for image_id, rel in items},
        side=renumber,
    )
    redone = sorted(row["path"] for row in found.dropped if row["path"] in changed)
    gone = len(found.dropped) - len(redone)
    if gone:
        logger.info("%d row(s) of files no longer in this listing were dropped", gone)
    for row in found.dropped:
        overlay_path(rows.folder, row["path"]).unlink(missing_ok=True)
    return found.done, redone


def finish_outputs(out: Path, det_names: Sequence[str], with_det: bool) -> dict[str, Any]:
    """Write images.json and detections.json from the journal in one pass each; count the rows.

    Memory stays flat in the number of images: the files are streamed (only the skipped rows
    are kept, for the report). They are in id order unless a resume appended rows or boxes
    of lower ids after higher ones; only then is the file sorted first (that rare pass holds
    its rows), so the outputs are what one uninterrupted run writes.
    """
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(det_names)]
    try:
        counts = _write_images(out, categories)
    except _OutOfOrder:
        sort_rows(out / PREDICTIONS)  # rewrites the CSV in id order, for the next readers too
        counts = _write_images(out, categories)
    n_boxes = 0
    if with_det:
        try:
            n_boxes = _write_detections(out / DETECTIONS, iter_jsonl(out / DETECTIONS_LOG))
        except _OutOfOrder:
            entries = sorted(iter_jsonl(out / DETECTIONS_LOG), key=_image_id)  # stable
            n_boxes = _write_detections(out / DETECTIONS, entries)
    return {
        "n_images": counts["n_images"],
        "n_ok": counts["n_ok"],
        "n_skipped": len(counts["skipped"]),
        "n_boxes": n_boxes,
        "skipped": counts["skipped"],
    }


#: ``json.dumps(doc, indent=2)``'s encoder, made once (``dumps`` makes one a call).
_PRETTY = json.JSONEncoder(indent=2)


class _OutOfOrder(Exception):
    """A journal's ids go down somewhere (a resume appended lower ids): it must be sorted."""


def _image_id(doc: dict[str, Any]) -> int:
    return int(doc["image_id"])


def _in_id_order(docs: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """``docs`` as they come, raising :class:`_OutOfOrder` at the first id lower than the last."""
    last = None
    for doc in docs:
        image_id = _image_id(doc)
        if last is not None and image_id < last:
            raise _OutOfOrder
        last = image_id
        yield doc


def _indented(doc: Any, depth: int) -> str:
    """``json.dumps(doc, indent=2)`` as it reads ``depth`` levels deep in an indented document
    (JSON strings hold no raw newline, so every newline is the layout's)."""
    return _PRETTY.encode(doc).replace("\n", "\n" + "  " * depth)


def _write_images(out: Path, categories: list[dict[str, Any]]) -> dict[str, Any]:
    """Stream the ok rows of the CSV into ``images.json``, byte for byte the document
    ``json.dumps({"images": [...], "categories": categories}, indent=2)`` would be."""
    n_images, n_ok, skipped = 0, 0, []
    with atomic_writer(out / IMAGES) as fh:
        fh.write('{\n  "images": [')
        for row in _in_id_order(iter_rows(out / PREDICTIONS)):
            n_images += 1
            if row["status"] != "ok":
                skipped.append(
                    {"image_id": int(row["image_id"]), "path": row["path"], "reason": row["reason"]}
                )
                continue
            image = {
                "id": int(row["image_id"]),
                "file_name": row["path"],
                "width": int(row["width"]),
                "height": int(row["height"]),
            }
            fh.write(("," if n_ok else "") + "\n    " + _indented(image, 2))
            n_ok += 1
        fh.write(("\n  ]" if n_ok else "]") + ',\n  "categories": ')
        fh.write(_indented(categories, 1) + "\n}\n")
    return {"n_images": n_images, "n_ok": n_ok, "skipped": skipped}


def _write_detections(path: Path, entries: Iterable[dict[str, Any]]) -> int:
    """Stream the boxes of the journal's entries (each image's in their order) into the COCO
    results list, byte for byte ``json.dumps(results)``; returns how many boxes."""
    n_boxes = 0
    with atomic_writer(path) as fh:
        fh.write("[")
        for entry in _in_id_order(entries):
            for result in entry["results"]:
                fh.write((", " if n_boxes else "") + json.dumps(result))
                n_boxes += 1
        fh.write("]\n")
    return n_boxes
