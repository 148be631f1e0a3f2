"""``fracdet audit``: run the audit (whole, one shard, or one torchrun rank) and write its report.

The images are cut into chunks of ``batch_size``; a chunk is the unit of work, of sharding
(``--shard K/N`` takes every N-th chunk, :func:`fracdet.jobs.shard_items`) and of resuming
(:class:`fracdet.jobs.Journal`). Each chunk's random attack start comes from a generator
seeded by ``(seed, chunk)``, so one process, N shards and N torchrun ranks compute exactly
the same rows.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from fracdet import __version__
from fracdet.audit.checks import check_module, run_checks
from fracdet.audit.config import AuditConfig
from fracdet.audit.engine import audit_batch, column_names
from fracdet.audit.finalize import finalize_audit
from fracdet.audit.inputs import AuditInputs, AuditItem, load_inputs
from fracdet.audit.merge import join_shards
from fracdet.audit.models import load_audit_detector, load_classifiers
from fracdet.audit.result import AuditSummary
from fracdet.audit.schema import AuditSchema
from fracdet.audit.store import PER_IMAGE, AuditStore
from fracdet.data.scan import safe_name
from fracdet.errors import ConfigError, DataError
from fracdet.fsutil import output_lock
from fracdet.jobs import open_output, parse_shard, shard_items
from fracdet.log import progress
from fracdet.provenance import versions
from fracdet.runtime import distributed_runtime, resolve_precision, seed_everything

__all__ = ["run_audit", "merge_audits", "chunk_items"]

logger = logging.getLogger(__name__)


def chunk_items(items: Sequence[AuditItem], size: int) -> list[list[AuditItem]]:
    """Consecutive chunks of ``size`` images (the last may be shorter)."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _identity(
    cfg: AuditConfig,
    inputs: AuditInputs,
    classifiers: dict[str, Any],
    detector: dict[str, Any] | None,
) -> dict[str, Any]:
    """What must not change between a run and its resume, or between shards to be merged."""
    options = {
        k: v
        for k, v in json.loads(json.dumps(dataclasses.asdict(cfg), default=str)).items()
        if k
        not in (
            "output",
            "resume",
            "overwrite",
            "workers",
            "device",
            "shard",
            "figure_samples",
            "figure_worst",
            "n_boot",
            "group_by",
            "study_tables",
        )
    }
    return {
        "data_hash": inputs.data_hash,
        "classifiers": classifiers,
        "detector": detector,
        "options": options,
    }


def _prepare(
    store: AuditStore,
    cfg: AuditConfig,
    identity: dict[str, Any],
    shard: str | None,
    chunk_pairs: list[list[tuple[str, int]]],
) -> set[tuple[str, int]]:
    """Create, replace or reopen the output; returns the ``(model, index)`` pairs already done.

    ``chunk_pairs`` holds the pairs of each (model, chunk) this process audits.
    """
    previous = open_output(
        store.folder,
        "audit",
        identity,
        shard=shard,
        resume=bool(cfg.resume),
        overwrite=bool(cfg.overwrite),
        needs=(PER_IMAGE,),
    )
    if previous is None:
        store.start()
        return set()
    return store.reopen(chunk_pairs)


def run_audit(cfg: AuditConfig) -> AuditSummary:
    """Audit every classifier of ``cfg`` (and the detector) on the dataset; write the report.

    Under ``torchrun`` each rank audits its share of chunks into ``OUT/shards/rank-K`` and
    rank 0 merges them into ``OUT``; with ``--shard K/N`` this process writes only its share
    (join the shards with ``fracdet merge``).
    """
    with output_lock(cfg.output):
        return _run_audit(cfg)


def _run_audit(cfg: AuditConfig) -> AuditSummary:
    cfg.check_models()
    for key in cfg.checks:  # an unknown check, or bad input of one, fails before models load
        validate = getattr(check_module(key), "validate", None)  # optional: most need nothing
        if validate is not None:
            validate(cfg)
    runtime = distributed_runtime(cfg.device)
    shard = parse_shard(cfg.shard)
    if runtime.distributed:
        if shard is not None:
            raise ConfigError("under torchrun each rank takes its shard itself: drop --shard")
        shard = (runtime.rank + 1, runtime.world_size)
    out = (
        Path(cfg.output) / "shards" / f"rank-{runtime.rank + 1}"
        if runtime.distributed
        else Path(cfg.output)
    )
    seed_everything(cfg.seed)
    inputs = load_inputs(
        cfg.dataset, split=cfg.split, max_images=cfg.max_images, group_by=cfg.group_by
    )
    if inputs.has_labels and not inputs.has_boxes:
        raise DataError(
            f"no ground-truth boxes in split {cfg.split!r}"
            + (
                f" among its first {cfg.max_images} images by id (--max-images);"
                " raise it or audit the whole split"
                if cfg.max_images
                else ""
            )
            + ": attribution localization needs them (audit the images folder itself for"
            " robustness and classifier/detector agreement only)",
            inputs.source,
        )
    precision = resolve_precision(cfg.precision, runtime.device)
    classifiers, cls_identity = load_classifiers(cfg, runtime.device, precision)
    detector, det_identity = load_audit_detector(cfg)
    identity = _identity(cfg, inputs, cls_identity, det_identity)
    codes = [code for code in classifiers[0].explainers]
    store = AuditStore(out, column_names(cfg, codes))

    chunks = chunk_items(inputs.items, cfg.batch_size)
    mine = [number - 1 for number, _ in shard_items(chunks, shard)]  # chunks are the items
    pairs = [[(clf.name, item.index) for item in chunks[c]] for clf in classifiers for c in mine]
    shard_spec = cfg.shard if not runtime.distributed else f"{shard[0]}/{shard[1]}"
    done = _prepare(store, cfg, identity, shard_spec, pairs)
    # The audit's saved state (fracdet.jobs.state): what a resume or a merge checks.
    state = {
        "fracdet_version": __version__,
        "status": "running",
        "identity": identity,
        "schema": AuditSchema.of(codes, cfg.percentiles).state(),
        "shard": shard_spec,
        "config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
        "versions": versions(),
        "device": str(runtime.device),
        "precision": precision,
    }
    store.write_state(state)

    seconds: dict[str, float] = defaultdict(float)
    start = time.perf_counter()
    n_done = 0
    for clf in classifiers:
        todo = [c for c in mine if any((clf.name, item.index) not in done for item in chunks[c])]
        if not todo:
            continue
        n_done += _audit_chunks(clf, chunks, todo, store, cfg, detector, seconds)
    if shard is None or shard[0] == 1:  # one process runs the checks; a merge links them
        detections = store.detection_entries() if detector is not None else None
        seconds.update(run_checks(classifiers, inputs.items, cfg, out, detections, detector))
    seconds["total"] = time.perf_counter() - start
    state.update(
        status="complete", seconds={k: round(v, 3) for k, v in seconds.items()}, n_processed=n_done
    )
    store.write_state(state)

    if runtime.distributed:
        import torch.distributed as dist

        dist.barrier()
        if not runtime.is_main:
            return AuditSummary(
                out, None, len(inputs.items), len(classifiers), shard=state["shard"]
            )
        shard_dirs = [
            Path(cfg.output) / "shards" / f"rank-{k + 1}" for k in range(runtime.world_size)
        ]
        return _finalize_from_shards(shard_dirs, Path(cfg.output), overwrite=True)
    if shard is not None:
        return AuditSummary(out, None, len(inputs.items), len(classifiers), shard=cfg.shard)
    return finalize_audit(out, inputs, state)


def _audit_chunks(
    clf,
    chunks: list[list[AuditItem]],
    todo: list[int],
    store: AuditStore,
    cfg: AuditConfig,
    detector: Any,
    seconds: dict[str, float],
) -> int:
    """Audit ``todo`` chunks with one classifier, committing each; returns the images done."""
    from fracdet.data.datasets import ClassificationDataset, collate_skipping_failures

    items = [item for c in todo for item in chunks[c]]
    positions = {item.index: k for k, item in enumerate(items)}
    dataset = ClassificationDataset(
        [item.record() for item in items], clf.meta.image_size, keep_aspect=clf.meta.keep_aspect
    )
    batches = [[positions[item.index] for item in chunks[c]] for c in todo]
    loader = DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=cfg.workers,
        collate_fn=collate_skipping_failures,
        prefetch_factor=2 if cfg.workers else None,
    )
    n = 0
    batches = iter(loader)
    for chunk in progress(todo, f"Auditing {clf.name}", total=len(todo)):
        t0 = time.perf_counter()
        batch = next(
            batches
        )  # the wait for decoding (done ahead in the workers when there are any)
        seconds["decoding"] += time.perf_counter() - t0
        failed = {int(i): reason for i, reason in batch.failures}
        rows: list[dict[str, Any]] = [
            {
                "model": clf.name,
                "index": items[i].index,
                "key": items[i].key,
                "path": items[i].path_text,
                "status": "skipped",
                "reason": safe_name(" ".join(reason.split())),
                "label": "" if items[i].label is None else items[i].label,
            }
            for i, reason in failed.items()
        ]
        detections: list[dict[str, Any]] = []
        maps = {}
        if len(batch):
            good = [items[int(i)] for i in batch.indices]
            generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + chunk)
            outcome = audit_batch(
                clf, batch.images, good, cfg, detector=detector, generator=generator
            )
            rows += outcome.rows
            detections, maps = outcome.detections, outcome.maps
            for stage, value in outcome.seconds.items():
                seconds[stage] += value
        rows.sort(key=lambda r: r["index"])
        t0 = time.perf_counter()
        store.commit(clf.name, chunk, rows, detections, maps)
        seconds["saving"] += time.perf_counter() - t0
        n += len(rows)
    return n


def _finalize_from_shards(
    shard_dirs: Sequence[Path], output: Path, *, overwrite: bool
) -> AuditSummary:
    state, inputs = join_shards(shard_dirs, output, overwrite=overwrite)
    return finalize_audit(output, inputs, state)


def merge_audits(
    shard_dirs: Sequence[Path], output: Path, *, overwrite: bool = False
) -> AuditSummary:
    """Join the outputs of ``fracdet audit --shard K/N`` runs and write the audit's report."""
    return _finalize_from_shards(shard_dirs, output, overwrite=overwrite)
