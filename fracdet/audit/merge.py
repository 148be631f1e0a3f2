"""Joining the shards of an audit (``--shard K/N`` runs or torchrun ranks) into one output."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fracdet.audit.inputs import AuditInputs, load_inputs
from fracdet.audit.store import CHECKS_DIR, DETECTIONS, MAPS, PER_IMAGE, AuditStore, item_key
from fracdet.errors import DataError, OutputExistsError
from fracdet.fsutil import atomic_write_text, check_folder_path
from fracdet.jobs import check_same_run, finished_states, link_tree, merge_rows

__all__ = ["join_shards"]

logger = logging.getLogger(__name__)


#: Identity keys that shards must share to be joined, and how a message names them.
_SHARED = {
    "data_hash": "dataset (its hash)",
    "classifiers": "set of classifiers",
    "detector": "detector",
    "options": "set of audit options",
}


def join_shards(
    shard_dirs: Sequence[Path], output: Path, *, overwrite: bool = False
) -> tuple[dict[str, Any], AuditInputs]:
    """Write the joined table, journal and maps into ``output``; returns its state and inputs.

    The shards must come from the same data, classifiers, detector and options (their
    identities are compared); an image audited twice is a :class:`DataError`.
    """
    shard_dirs = [Path(d) for d in shard_dirs]
    states = finished_states(shard_dirs, "audit", (PER_IMAGE, DETECTIONS))
    check_same_run(shard_dirs, states, _SHARED)
    first = states[0]
    output = Path(output)
    inside = all(output in d.parents for d in shard_dirs)  # torchrun: OUT/shards/rank-K
    check_folder_path(output.parent)
    if (
        not inside
        and output.exists()
        and (not output.is_dir() or any(output.iterdir()))
        and not overwrite
    ):
        raise OutputExistsError("already exists; pass --overwrite to replace it", output)

    model_order = {name: k for k, name in enumerate(first["identity"]["classifiers"])}
    header, rows = merge_rows(
        [d / PER_IMAGE for d in shard_dirs],
        item_key,
        describe=lambda row: f"image {row['key']} ({row['model']})",
        order=lambda row: (model_order.get(row["model"], 0), int(row["index"])),
    )
    detections = [
        line
        for shard_dir in shard_dirs
        for line in (shard_dir / DETECTIONS).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]

    store = AuditStore(output, header)
    if not inside and output.exists() and overwrite:
        shutil.rmtree(output) if output.is_dir() else output.unlink()
    store.start()
    store.write_rows(rows)
    atomic_write_text(store.detections, "".join(f"{line}\n" for line in detections))
    for shard_dir in shard_dirs:
        link_tree(shard_dir / MAPS, output / MAPS)
        link_tree(shard_dir / CHECKS_DIR, output / CHECKS_DIR)  # shard 1 ran the checks
    specs = [s.get("shard") for s in states]
    state = {
        **first,
        "status": "complete",
        "merged_from": [str(d.resolve()) for d in shard_dirs],
        "shards": specs,
        "shard": None,
        "seconds": _sum_seconds(states),
        "n_processed": sum(int(s.get("n_processed", 0)) for s in states),
    }
    store.write_state(state)
    config = first["config"]
    inputs = load_inputs(
        Path(config["dataset"]),
        split=config["split"],
        max_images=config.get("max_images"),
        group_by=config.get("group_by") or (),
    )
    if inputs.data_hash != first["identity"]["data_hash"]:
        raise DataError(
            "the dataset changed since the shards were audited (its hash differs)",
            config["dataset"],
        )
    covered = {int(r["index"]) for r in rows}
    missing = [it.key for it in inputs.items if it.index not in covered]
    if missing:
        logger.warning(
            "%d image(s) are in no shard (first: %s): a shard is missing from the merge",
            len(missing),
            missing[0],
        )
        state["missing_images"] = len(missing)
        store.write_state(state)
    return state, inputs


def _sum_seconds(states: Sequence[dict[str, Any]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for state in states:
        for stage, value in (state.get("seconds") or {}).items():
            total[stage] = round(total.get(stage, 0.0) + float(value), 3)
    return total
