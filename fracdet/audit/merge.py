"""Joining the shards of an audit (``--shard K/N`` runs or torchrun ranks) into one output."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fracdet.audit.inputs import AuditInputs, load_inputs
from fracdet.audit.store import DETECTIONS, MAPS, PER_IMAGE, AuditStore
from fracdet.errors import DataError, OutputExistsError
from fracdet.fsutil import LinkMode, check_folder_path, place_file
from fracdet.journal import read_rows

__all__ = ["join_shards"]

logger = logging.getLogger(__name__)


def _read_state(shard_dir: Path) -> dict[str, Any]:
    state = AuditStore(shard_dir, []).read_state()
    if state is None:
        raise DataError("not a fracdet audit output (no readable audit_state.json)", shard_dir)
    if state.get("status") != "complete":
        raise DataError(
            "this shard's audit did not finish: rerun it with --resume first", shard_dir
        )
    for name in (PER_IMAGE, DETECTIONS):
        if not (shard_dir / name).is_file():
            raise DataError(
                "missing from this shard's audit output (rerun the shard)", shard_dir / name
            )
    return state


def join_shards(
    shard_dirs: Sequence[Path], output: Path, *, overwrite: bool = False
) -> tuple[dict[str, Any], AuditInputs]:
    """Write the joined table, journal and maps into ``output``; returns its state and inputs.

    The shards must come from the same data, classifiers, detector and options (their
    identities are compared); an image audited twice is a :class:`DataError`.
    """
    shard_dirs = [Path(d) for d in shard_dirs]
    states = [_read_state(d) for d in shard_dirs]
    first = states[0]
    for shard_dir, state in zip(shard_dirs[1:], states[1:], strict=True):
        for key in ("data_hash", "classifiers", "detector", "options"):
            if state["identity"].get(key) != first["identity"].get(key):
                raise DataError(
                    f"made with other {key.replace('_', ' ')} than {shard_dirs[0]}", shard_dir
                )
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

    header: list[str] | None = None
    rows: list[dict[str, str]] = []
    seen: dict[tuple[str, int], Path] = {}
    detections: list[str] = []
    for shard_dir in shard_dirs:
        shard_header, shard_rows = read_rows(shard_dir / PER_IMAGE)
        if header is None:
            header = shard_header
        elif shard_header != header:
            raise DataError(f"{PER_IMAGE} has other columns than the first shard's", shard_dir)
        for row in shard_rows:
            key = (row["model"], int(row["index"]))
            if key in seen:
                raise DataError(
                    f"image {row['key']} ({row['model']}) is in {seen[key]} and in {shard_dir}: the same shard twice?",
                    shard_dir,
                )
            seen[key] = shard_dir
            rows.append(row)
        detections += [
            line
            for line in (shard_dir / DETECTIONS).read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
    assert header is not None
    model_order = {name: k for k, name in enumerate(first["identity"]["classifiers"])}
    rows.sort(key=lambda r: (model_order.get(r["model"], 0), int(r["index"])))

    store = AuditStore(output, header)
    if not inside and output.exists() and overwrite:
        import shutil

        shutil.rmtree(output) if output.is_dir() else output.unlink()
    store.start()
    store.write_rows(rows)
    store.detections.write_text("".join(f"{line}\n" for line in detections), encoding="utf-8")
    for shard_dir in shard_dirs:
        _link_tree(shard_dir / MAPS, output / MAPS)
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


def _link_tree(src: Path, dst: Path) -> None:
    if not src.is_dir():
        return
    for root, _, files in os.walk(src):
        for name in files:
            source = Path(root) / name
            target = dst / source.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                target.unlink()
            place_file(source, target, LinkMode.hardlink)
