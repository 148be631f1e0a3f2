"""A batch job's saved state: its kind, status, shard and identity; opening an output to resume.

Every job writes one JSON state into its output: ``kind`` (which job wrote it), ``status``
(``running`` until the last row is committed, then ``complete``), ``shard`` and ``identity``
(the inputs' hashes and the options that decide the rows). A resume must match the identity
and the shard; a merge joins complete states of one kind whose identities agree
(:mod:`fracdet.jobs.shards`). ``fracdet merge`` reads the kind from the state itself.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fracdet.errors import ConfigError, DataError, OutputExistsError
from fracdet.fsutil import atomic_write_json, check_folder_path

__all__ = ["STATE_FILES", "write_state", "load_state", "open_output", "run_kind"]

logger = logging.getLogger(__name__)

#: The state file of each kind of job. The names predate the jobs module and are kept so that
#: existing outputs stay readable: predict's state doubles as its run report.
STATE_FILES: dict[str, str] = {"predict": "predict_report.json", "audit": "audit_state.json"}


def write_state(folder: Path, kind: str, state: Mapping[str, Any]) -> Path:
    """Save ``state`` (atomically) as ``kind``'s state in ``folder``, ``kind`` recorded in it."""
    return atomic_write_json(Path(folder) / STATE_FILES[kind], {"kind": kind, **state})


def load_state(folder: Path, kind: str) -> dict[str, Any]:
    """``kind``'s state in ``folder``; a missing, garbled or other kind's state is a clear error."""
    name = STATE_FILES[kind]
    path = Path(folder) / name
    if not path.is_file():
        raise DataError(f"not a fracdet {kind} output (no {name})", folder)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"unreadable {name} ({exc})", path) from exc
    if not isinstance(state, dict):
        raise DataError(f"unreadable {name} (not a JSON object)", path)
    if state.get("kind", kind) != kind:
        raise DataError(f"holds a `fracdet {state['kind']}` run, not a `fracdet {kind}` one", path)
    return state


def run_kind(folder: Path) -> str | None:
    """Which kind of job wrote ``folder``, as its state says; ``None`` when it holds no state.

    A state written before states named their kind (or a garbled one) is taken for the kind
    whose state file it is; the merge's own checks then read it properly.
    """
    for kind, name in STATE_FILES.items():
        path = Path(folder) / name
        if not path.is_file():
            continue
        try:
            saved = json.loads(path.read_text(encoding="utf-8")).get("kind")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            saved = None
        if saved is not None and saved not in STATE_FILES:
            raise DataError(f"made by an unknown kind of run ({saved!r})", path)
        return saved or kind
    return None


def open_output(
    out: Path,
    kind: str,
    identity: Mapping[str, Any],
    *,
    shard: str | None,
    resume: bool,
    overwrite: bool,
    needs: Sequence[str] = (),
) -> dict[str, Any] | None:
    """Create, replace or reopen a job's output folder.

    Returns ``None`` for a fresh start (the folder now exists and is empty) or the saved
    state of the run to resume, after checking that it is the same kind of run, with the
    same ``identity`` and ``shard``, and that the files in ``needs`` are there. Anything
    else is one clear error that says to pass ``--overwrite`` or another ``--out``.
    """
    out = Path(out)
    check_folder_path(out.parent)
    exists = out.exists() and (not out.is_dir() or any(out.iterdir()))
    if exists and not (resume or overwrite):
        raise OutputExistsError(
            f"already exists; pass --resume to continue that {kind} run"
            " or --overwrite to replace it",
            out,
        )
    if exists and overwrite:
        shutil.rmtree(out) if out.is_dir() else out.unlink()
        exists = False
    if not exists:
        if resume:
            logger.info("nothing to resume in %s: starting a new run", out)
        out.mkdir(parents=True, exist_ok=True)
        return None
    lacking = [name for name in (STATE_FILES[kind], *needs) if not (out / name).is_file()]
    if lacking:
        raise OutputExistsError(
            f"is not a fracdet {kind} output (no {' / '.join(lacking)}): cannot resume it;"
            " pass --overwrite or another --out",
            out,
        )
    try:
        state = load_state(out, kind)
    except DataError as exc:
        raise DataError(f"{exc.message}; pass --overwrite or another --out", exc.path) from exc
    changed = [k for k, v in identity.items() if state.get("identity", {}).get(k) != v]
    if state.get("shard") != shard:
        changed.append("shard")
    if changed:
        raise ConfigError(
            f"cannot resume: this run differs from the one in the output in {', '.join(changed)};"
            " pass --overwrite or another --out",
            out,
        )
    return state
