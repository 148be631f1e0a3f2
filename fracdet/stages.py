"""Pipelines of stages that reuse finished work: ``fracdet demo`` and ``fracdet run`` share this.

A stage is a folder its library calls fill (:class:`Stage`: a list of :class:`Call`). Its key
hashes exactly what those calls are given (their config dataclasses, field by field), the keys
of the stages upstream of it, and the code that will run (:func:`code_version`). So a changed
option reruns the stages that pass it to a library call and everything downstream of them,
and nothing else; a new fracdet (version or, in an editable install, source) reruns them all.
Each stage's record (key, what went into it, seconds, done) lives in ``OUT/.stages/NAME.json``,
beside the stage folders, so a stage's folder holds its outputs only and a rerun says why.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import fracdet
from fracdet.errors import OutputExistsError
from fracdet.fsutil import atomic_write_json, check_folder_path
from fracdet.provenance import LIBRARIES

__all__ = [
    "STAGES_DIR",
    "NOT_IN_KEY",
    "Call",
    "PipelineSummary",
    "Stage",
    "StageRunner",
    "code_version",
    "read_stage_json",
    "stage_key",
    "stage_keys",
]

logger = logging.getLogger(__name__)

#: The folder (under a pipeline's output) that holds one record per stage.
STAGES_DIR = ".stages"
#: Config fields that say how to treat an existing output, not what is computed: a resumed
#: stage must keep its key.
NOT_IN_KEY = frozenset({"resume", "overwrite"})
#: Packages whose source is the code a stage runs (``data_tools`` draws the demo's phantoms).
_SOURCE_PACKAGES = ("fracdet", "data_tools")


@dataclass(frozen=True)
class PipelineSummary:
    """Where a pipeline's front page is and its headline lines (what the command prints)."""

    output: Path
    index: Path
    lines: tuple[str, ...]

    def line(self) -> str:
        return "\n".join(self.lines)


def read_stage_json(path: Path) -> dict[str, Any]:
    """A JSON file a stage wrote, or ``{}`` when that stage wrote none (the page says "–")."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


@dataclass(frozen=True)
class Call:
    """One library call of a stage, ``fn(*args, **kwargs)``; what it is given makes the key.

    Build its arguments (config dataclasses, paths, numbers) before the stage runs: paths a
    stage will write are known in advance (``OUT/det/train/weights/best.pt``).
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Call:
        return cls(fn, args, kwargs)

    def __call__(self, *, resume: bool = False) -> Any:
        """Run it; ``resume`` sets ``resume=True`` on every config argument that has the field."""
        if not resume:
            return self.fn(*self.args, **self.kwargs)
        args = tuple(_resumed(a) for a in self.args)
        return self.fn(*args, **{k: _resumed(v) for k, v in self.kwargs.items()})

    def describe(self, out: Path) -> dict[str, Any]:
        """The call as JSON: the function's full name and its arguments (see :func:`canonical`)."""
        return {
            "call": f"{self.fn.__module__}.{self.fn.__qualname__}",
            "args": canonical(list(self.args), out),
            "kwargs": canonical(dict(self.kwargs), out),
        }


def _resumed(value: Any) -> Any:
    has_resume = dataclasses.is_dataclass(value) and not isinstance(value, type)
    if has_resume and any(f.name == "resume" for f in dataclasses.fields(value)):
        return dataclasses.replace(value, resume=True)
    return value


@dataclass(frozen=True)
class Stage:
    """A named folder filled by ``calls`` in order, after the stages named in ``upstream``.

    ``resumable``: an interrupted run with the same key continues (its calls get
    ``resume=True``) instead of starting over.
    """

    name: str
    folder: Path
    calls: tuple[Call, ...]
    upstream: tuple[str, ...] = ()
    resumable: bool = False


def canonical(value: Any, out: Path) -> Any:
    """``value`` as plain JSON: dataclasses field by field (with their type, without
    :data:`NOT_IN_KEY`), paths inside ``out`` relative to it (a moved output keeps its keys),
    other paths absolute. Anything else is an error, never a ``str()`` that could hide a change."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        kind = type(value)
        fields = {
            f.name: canonical(getattr(value, f.name), out)
            for f in dataclasses.fields(value)
            if f.name not in NOT_IN_KEY
        }
        return {"type": f"{kind.__module__}.{kind.__qualname__}", **fields}
    if isinstance(value, Path):
        path, root = value.resolve(), Path(out).resolve()
        return f"OUT/{path.relative_to(root)}" if path.is_relative_to(root) else str(path)
    if isinstance(value, enum.Enum):
        return canonical(value.value, out)
    if isinstance(value, Mapping):
        return {str(k): canonical(v, out) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v, out) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"a stage's key cannot hold a {type(value).__name__}: {value!r}")


def _hash_sources(roots: Sequence[Path]) -> str:
    """sha256 over every file of ``roots`` (names and bytes, sorted), bytecode caches left out."""
    digest = hashlib.sha256()
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            digest.update(f"{root.name}/{path.relative_to(root).as_posix()}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@lru_cache(maxsize=1)
def _source_hash() -> str:
    roots = []
    for name in _SOURCE_PACKAGES:
        spec = importlib.util.find_spec(name)  # no import: a top-level package is only located
        if spec is not None and spec.submodule_search_locations:
            roots += [Path(p) for p in spec.submodule_search_locations]
    return _hash_sources(roots)


@lru_cache(maxsize=1)
def _library_versions() -> dict[str, str | None]:
    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {name: version(name) for name in LIBRARIES}


def code_version() -> dict[str, Any]:
    """What code a stage runs: fracdet's version, a hash of its source (an editable install's
    edit counts, not only a release) and the versions of the libraries that make the numbers."""
    return {
        "fracdet": fracdet.__version__,
        "source": _source_hash(),
        "libraries": _library_versions(),
    }


def _key_parts(stage: Stage, upstream_keys: Mapping[str, str], out: Path) -> dict[str, Any]:
    return {
        "calls": [call.describe(out) for call in stage.calls],
        "upstream": dict(upstream_keys),
        "code": code_version(),
    }


def stage_key(parts: Mapping[str, Any]) -> str:
    """The short hash that says whether a stage's finished output can be reused."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def stage_keys(pipeline: Sequence[Stage], out: Path) -> dict[str, str]:
    """Every stage's key, in order, without running anything: what a run would reuse."""
    keys: dict[str, str] = {}
    for stage in pipeline:
        keys[stage.name] = stage_key(_key_parts(stage, {u: keys[u] for u in stage.upstream}, out))
    return keys


def _why(recorded: Mapping[str, Any], parts: Mapping[str, Any]) -> str:
    if not recorded:
        return "first run"
    changed = [what for what in ("calls", "upstream", "code") if recorded.get(what) != parts[what]]
    names = {"calls": "its options", "upstream": "an upstream stage", "code": "the code"}
    return "changed: " + ", ".join(names[c] for c in changed) if changed else "unfinished"


class StageRunner:
    """Runs stages whose outputs are reused while their key (calls, upstream, code) is unchanged.

    ``label`` prefixes the log lines (``demo: det ...``), so a user sees which pipeline speaks.
    """

    def __init__(self, out: Path, fresh: bool, *, label: str = "pipeline") -> None:
        self.out, self.fresh, self.label = Path(out), fresh, label
        self.keys: dict[str, str] = {}
        self.seconds: dict[str, float] = {}

    @classmethod
    def open(
        cls,
        out: Path,
        *,
        label: str,
        fresh: bool,
        overwrite: bool,
        also_ours: Sequence[str] = (),
    ) -> StageRunner:
        """A runner over the pipeline folder ``out``, made if missing. Refuses a file, and a
        folder that holds something else than this pipeline's work (its stage records, or a
        file named in ``also_ours``) unless ``overwrite``, which, like ``fresh``, reruns every
        stage."""
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise OutputExistsError("exists and is not a folder", out)
        check_folder_path(out)  # a folder above it that is a file: one line, not a traceback
        ours = (out / STAGES_DIR).is_dir() or any((out / name).exists() for name in also_ours)
        if out.exists() and any(out.iterdir()) and not ours and not overwrite:
            raise OutputExistsError(
                f"exists and is not a {label} folder; pass --overwrite to replace it", out
            )
        out.mkdir(parents=True, exist_ok=True)
        return cls(out, fresh=fresh or overwrite, label=label)

    def record(self, name: str) -> dict[str, Any]:
        """What the last run of stage ``name`` recorded (empty before its first run)."""
        return read_stage_json(self.out / STAGES_DIR / f"{name}.json")

    def run(self, stage: Stage) -> Path:
        """Run the stage's calls unless its key is recorded as done; returns its folder."""
        folder, root = Path(stage.folder), self.out.resolve()
        if not folder.resolve().is_relative_to(root) or folder.resolve() == root:
            raise ValueError(f"stage {stage.name}: folder {folder} is not inside {self.out}")
        parts = _key_parts(stage, {u: self.keys[u] for u in stage.upstream}, self.out)
        key = self.keys[stage.name] = stage_key(parts)
        marker = self.out / STAGES_DIR / f"{stage.name}.json"
        recorded = self.record(stage.name)
        same = not self.fresh and recorded.get("key") == key
        if same and recorded.get("done", True):  # markers are written "done: false" at the start
            logger.info("%s: %s is up to date (reused)", self.label, stage.name)
            self.seconds[stage.name] = 0.0
            return folder
        resume = same and stage.resumable
        if folder.exists() and not resume:
            shutil.rmtree(folder)
        why = "fresh" if self.fresh else _why(recorded, parts)
        logger.info("%s: %s ... (%s)", self.label, stage.name, "resuming" if resume else why)
        start = time.perf_counter()
        atomic_write_json(marker, {"key": key, **parts, "done": False})
        for call in stage.calls:
            call(resume=resume)
        self.seconds[stage.name] = round(time.perf_counter() - start, 1)
        atomic_write_json(
            marker, {"key": key, **parts, "seconds": self.seconds[stage.name], "done": True}
        )
        return folder
