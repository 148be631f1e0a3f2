"""``fracdet predict``: both tracks over a folder of images, streaming, resumable, shardable.

Images are decoded once, in DataLoader workers (:mod:`~fracdet.predict.decode`); rows are
appended to ``predictions.csv`` and flushed batch by batch (detections go to a journal
first), so an interrupted run keeps its work and ``--resume`` continues it
(:mod:`fracdet.jobs`: one image is one chunk). ``--shard K/N`` takes a deterministic slice
of the sorted file list; image ids are positions in the full list, so
:func:`~fracdet.predict.merge.merge_outputs` joins shards into what one unsharded run
would have written.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from fracdet import __version__
from fracdet.errors import DataError
from fracdet.fsutil import output_lock
from fracdet.jobs import parse_shard, shard_items, write_state
from fracdet.log import progress
from fracdet.predict.batches import predict_batches
from fracdet.predict.config import (
    DETECTIONS,
    IMAGES,
    OVERLAYS,
    PREDICTIONS,
    REPORT,
    PredictConfig,
    PredictSummary,
)
from fracdet.predict.decode import DecodeDataset, collate
from fracdet.predict.inputs import check_locations, list_inputs
from fracdet.predict.models import load_models, run_identity
from fracdet.predict.outputs import columns, finish_outputs, journal, prepare_output
from fracdet.provenance import versions
from fracdet.runtime import seed_everything

__all__ = ["predict_folder"]

logger = logging.getLogger(__name__)


def predict_folder(cfg: PredictConfig) -> PredictSummary:
    """Classify and/or detect every image of ``cfg.folder`` (this shard), writing as it goes.

    Writes ``predictions.csv``, ``images.json``, ``detections.json`` (with a detector),
    ``predict_report.json`` and, if asked, ``overlays/`` into ``cfg.output``. Unreadable
    images get a ``skipped`` row with the reason; the run goes on. The output is locked for
    the run (:func:`fracdet.fsutil.output_lock`): a second run into it refuses at once.
    """
    with output_lock(cfg.output):
        return _predict_folder(cfg)


def _predict_folder(cfg: PredictConfig) -> PredictSummary:
    cfg.check_models()
    folder, out = Path(cfg.folder), Path(cfg.output)
    check_locations(folder, out)
    paths, not_images, real_names = list_inputs(folder, recursive=cfg.recursive, exclude=out)
    if not paths:
        found = (
            f" ({len(not_images)} other files, e.g. {not_images[0]['path']})" if not_images else ""
        )
        raise DataError(
            f"no images found (JPEG, PNG, TIFF, BMP, WebP, JPEG 2000, AVIF, HEIC or DICOM){found}",
            folder,
        )
    items = shard_items(paths, parse_shard(cfg.shard))
    seed_everything(cfg.seed)
    models = load_models(cfg)
    with_det = models.detector is not None
    header = columns(models.meta, models.classifier is not None)
    identity = run_identity(folder, cfg, models)
    rows = journal(out, header)
    done, changed = prepare_output(rows, cfg, identity, items)
    todo = [item for item in items if item[1] not in done]
    report: dict[str, Any] = {
        "fracdet_version": __version__,
        "status": "running",
        "identity": identity,
        "shard": cfg.shard,
        "seed": cfg.seed,
        "config": json.loads(json.dumps(asdict(cfg), default=str)),
        "checkpoints": models.checkpoints,
        "device": str(models.device),
        "precision": models.precision,
        "versions": versions(),
        "n_listed": len(paths),
        "n_in_shard": len(items),
        "not_images": not_images,
        # names that are not valid UTF-8 are written with \xNN escapes (fracdet.data.scan)
        "escaped_names": sorted(real_names),
        "changed_since_interrupted": changed,
    }
    write_state(out, "predict", report)
    if not_images:
        logger.info("%d non-image file(s) ignored (listed in %s)", len(not_images), out / REPORT)

    dataset = DecodeDataset(
        folder,
        todo,
        cls_size=models.cls_size,
        det_imgsz=cfg.det_imgsz if with_det else None,
        overlays=cfg.with_overlays,
        cls_keep_aspect=models.cls_keep_aspect,
        real_names=real_names,
    )
    loader = DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        num_workers=cfg.workers,
        collate_fn=collate,
        pin_memory=models.device.type == "cuda",
        prefetch_factor=2 if cfg.workers else None,
    )
    start = time.perf_counter()
    processed = 0
    for _ in progress(
        predict_batches(loader, models, cfg, out, header, rows), "Predicting", total=len(todo)
    ):
        processed += 1
    seconds = time.perf_counter() - start
    rate = processed / seconds if seconds > 0 and processed else 0.0
    counts = finish_outputs(out, models.det_names, with_det)
    report.update(
        status="complete",
        counts={k: v for k, v in counts.items() if k != "skipped"},
        n_processed=processed,
        n_resumed=len(done),
        seconds=round(seconds, 3),
        images_per_s=round(rate, 2),
        skipped=counts["skipped"],
    )
    write_state(out, "predict", report)
    if counts["n_skipped"]:
        logger.warning(
            "%d image(s) could not be read and were skipped (reasons in %s)",
            counts["n_skipped"],
            out / PREDICTIONS,
        )
    return PredictSummary(
        output=out,
        predictions=out / PREDICTIONS,
        images=out / IMAGES,
        report=out / REPORT,
        detections=out / DETECTIONS if with_det else None,
        overlays=out / OVERLAYS if cfg.with_overlays else None,
        n_images=counts["n_images"],
        n_ok=counts["n_ok"],
        n_skipped=counts["n_skipped"],
        n_processed=processed,
        n_resumed=len(done),
        n_not_images=len(not_images),
        n_boxes=counts["n_boxes"],
        seconds=seconds,
        images_per_s=rate,
    )
