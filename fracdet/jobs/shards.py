"""``--shard K/N`` and joining shards: slices of a sorted item list, and their outputs merged.

Any scheduler (Slurm array jobs, Kubernetes jobs, Ray) can fan a batch command out by giving
each process its ``K/N``; item ids are positions in the full list, so shard outputs join back
into what one unsharded run would have written. ``fracdet predict`` shards images, ``fracdet
audit`` chunks of images (and torchrun ranks); both merge with the helpers below: complete
states of one kind (:func:`finished_states`) with one identity (:func:`check_same_run`),
rows with no item twice (:func:`merge_rows`), side files linked (:func:`link_tree`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from fracdet.errors import ConfigError, DataError
from fracdet.fsutil import LinkMode, place_file
from fracdet.jobs.files import read_rows
from fracdet.jobs.state import STATE_FILES, load_state

__all__ = [
    "parse_shard",
    "shard_items",
    "missing_shards",
    "finished_states",
    "check_same_run",
    "merge_rows",
    "link_tree",
]

T = TypeVar("T")


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """``"K/N"`` -> ``(K, N)`` with ``1 <= K <= N``; ``None`` or blank -> ``None`` (no sharding)."""
    if spec is None or str(spec).strip() == "":
        return None
    parts = str(spec).strip().split("/")
    try:
        k, n = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(
            f"--shard must be K/N with whole numbers, e.g. 2/8, got {spec!r}"
        ) from None
    if not 1 <= k <= n:
        raise ConfigError(f"--shard K/N needs 1 <= K <= N, got {spec!r}")
    return k, n


def shard_items(items: Sequence[T], shard: tuple[int, int] | None) -> list[tuple[int, T]]:
    """``(id, item)`` of this shard: every N-th item from the K-th.

    Ids are 1-based positions in the full list, the same in every shard, so the N shards
    together hold each id exactly once.
    """
    if shard is None:
        return [(i + 1, item) for i, item in enumerate(items)]
    k, n = shard
    return [(i + 1, items[i]) for i in range(k - 1, len(items), n)]


def missing_shards(specs: Sequence[str | None]) -> list[str]:
    """The ``K/N`` specs that complete the set given, so a merge can say what it lacks.

    Only meaningful when every spec names the same ``N``; otherwise (or when one output was
    not sharded) nothing is reported missing.
    """
    parsed = [parse_shard(s) for s in specs]
    present: set[int] = set()
    totals: set[int] = set()
    for shard in parsed:
        if shard is None:
            return []
        present.add(shard[0])
        totals.add(shard[1])
    if len(totals) != 1:
        return []
    (n,) = totals
    return [f"{k}/{n}" for k in range(1, n + 1) if k not in present]


def finished_states(
    shard_dirs: Sequence[Path], kind: str, needs: Sequence[str]
) -> list[dict[str, Any]]:
    """The states of finished ``kind`` runs, one per folder, each with the files in ``needs``.

    No folder, a folder of another kind, a run that did not finish or a file missing are
    each one clear error naming the folder (or the file).
    """
    if not shard_dirs:
        raise ConfigError("give at least one shard output folder to merge")
    states = []
    for shard_dir in map(Path, shard_dirs):
        state = load_state(shard_dir, kind)
        if state.get("status") != "complete":
            raise DataError(
                "this shard's run did not finish: rerun it with --resume first", shard_dir
            )
        for name in needs:
            if not (shard_dir / name).is_file():
                raise DataError(
                    f"{name} is missing although {STATE_FILES[kind]} says the run finished:"
                    " rerun this shard with --overwrite",
                    shard_dir / name,
                )
        states.append(state)
    return states


def check_same_run(
    shard_dirs: Sequence[Path], states: Sequence[Mapping[str, Any]], names: Mapping[str, str]
) -> None:
    """Refuse shards whose identities differ in a key of ``names`` (key -> its name in messages)."""
    first = states[0].get("identity", {})
    for shard_dir, state in zip(shard_dirs[1:], states[1:], strict=True):
        identity = state.get("identity", {})
        for key, what in names.items():
            got, want = identity.get(key), first.get(key)
            if got != want:
                values = f" ({got} vs {want})" if not isinstance(want, (dict, list)) else ""
                raise DataError(f"made with another {what} than {shard_dirs[0]}{values}", shard_dir)


def merge_rows(
    files: Sequence[Path],
    key: Callable[[Mapping[str, str]], Hashable],
    *,
    describe: Callable[[Mapping[str, str]], str],
    order: Callable[[Mapping[str, str]], Any] | None = None,
) -> tuple[list[str], list[dict[str, str]]]:
    """The rows of several shards' journals in ``order`` (default: ``key``), as one run writes them.

    Every file must have the first file's columns, and an item (``key``) may appear in one
    file only (the same shard given twice is a mistake, not a merge): both are
    :class:`DataError`; ``describe(row)`` names the item.
    """
    header: list[str] | None = None
    rows: list[dict[str, str]] = []
    owner: dict[Hashable, Path] = {}
    for path in map(Path, files):
        file_header, file_rows = read_rows(path)
        if header is None:
            header = file_header
        elif file_header != header:
            raise DataError(f"{path.name} has other columns than {files[0]}", path)
        for row in file_rows:
            item = key(row)
            if item in owner:
                raise DataError(
                    f"{describe(row)} is in {owner[item]} and in {path}: the same shard twice?",
                    path,
                )
            owner[item] = path
            rows.append(row)
    rows.sort(key=order or key)
    return header or [], rows


def link_tree(src: Path, dst: Path) -> None:
    """Hard-link (copy across file systems) every file of ``src`` into ``dst``, keeping the layout.

    Dotfiles are skipped: they are the temporaries of atomic writes a killed run left
    behind (``.NAME.tmp-*``), never outputs. A file already at a target is replaced: a
    torchrun audit re-joins its ranks into the folder that holds the previous join.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        return
    for root, _, files in os.walk(src):
        for name in files:
            if name.startswith("."):
                continue
            source = Path(root) / name
            target = dst / source.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            place_file(source, target, LinkMode.hardlink)
