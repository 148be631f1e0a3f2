"""Long batch jobs (``fracdet predict``, ``fracdet audit``): journal, identity, resume, merge.

One contract for every batch command, so that a kill, a resume or a split over many
machines gives what one uninterrupted run writes:

- ``journal``: work is cut into chunks; a chunk's side files (overlays, maps) and side
  journal lines are written first, its CSV rows last, so a row on disk means its item is
  done. ``--resume`` keeps chunks committed whole and redoes the rest (:class:`Journal`).
- ``state``: each output holds a JSON state with the job's ``kind``, ``status``, ``shard``
  and ``identity`` (inputs' hashes, row-deciding options); a resume must match it
  (:func:`open_output`), ``fracdet merge`` reads the kind from it (:func:`run_kind`).
- ``shards``: ``--shard K/N`` slices, and the checks and joins of a merge.
- ``files``: the CSV/JSONL operations underneath (atomic rewrites, half-line repair).

Nothing here knows what an item is: predict journals images keyed by path, the audit
``(classifier, image index)`` pairs in chunks of a batch.
"""

from fracdet.jobs.files import (
    append_jsonl,
    append_rows,
    cut_partial_line,
    iter_jsonl,
    iter_rows,
    read_jsonl,
    read_rows,
    rewrite_jsonl,
    sort_rows,
    start_rows,
    write_rows,
)
from fracdet.jobs.journal import Journal, Reopened
from fracdet.jobs.shards import (
    check_same_run,
    finished_states,
    link_tree,
    merge_rows,
    missing_shards,
    parse_shard,
    shard_items,
)
from fracdet.jobs.state import (
    STATE_FILES,
    load_state,
    open_output,
    run_kind,
    write_state,
)

__all__ = [
    "Journal",
    "Reopened",
    "STATE_FILES",
    "write_state",
    "load_state",
    "open_output",
    "run_kind",
    "parse_shard",
    "shard_items",
    "missing_shards",
    "finished_states",
    "check_same_run",
    "merge_rows",
    "link_tree",
    "read_rows",
    "iter_rows",
    "write_rows",
    "start_rows",
    "append_rows",
    "append_jsonl",
    "cut_partial_line",
    "sort_rows",
    "read_jsonl",
    "iter_jsonl",
    "rewrite_jsonl",
]
