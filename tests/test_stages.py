"""The stage cache of ``fracdet demo`` / ``fracdet run``: what a stage's key holds, so that a
changed option, an upstream rerun or new code reruns exactly the stages it affects."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

import fracdet
from fracdet import stages
from fracdet.stages import Call, Stage, StageRunner, canonical


@dataclass(frozen=True)
class Job:
    """A stand-in for a library config (``ClsTrainConfig``...)."""

    output: Path
    n: int = 1
    resume: bool = False


def _work(calls: list[tuple[str, int, bool]]):
    def fn(job: Job) -> None:
        calls.append((job.output.name, job.n, job.resume))
        job.output.mkdir(parents=True, exist_ok=True)
        (job.output / "done").write_text(str(job.n))

    return fn


def _pipeline(out: Path, fn, *, a: int = 1, b: int = 1) -> list[Stage]:
    return [
        Stage("a", out / "a", (Call.of(fn, Job(out / "a", a)),)),
        Stage("b", out / "b", (Call.of(fn, Job(out / "b", b)),), ("a",)),
        Stage("c", out / "c", (Call.of(fn, Job(out / "c")),)),
    ]


def _run(out: Path, pipeline: list[Stage]) -> None:
    runner = StageRunner(out, fresh=False)
    for stage in pipeline:
        runner.run(stage)


def test_a_changed_argument_reruns_its_stage_and_those_downstream(tmp_path):
    calls: list = []
    fn = _work(calls)
    _run(tmp_path, _pipeline(tmp_path, fn))
    assert [c[0] for c in calls] == ["a", "b", "c"]
    calls.clear()
    _run(tmp_path, _pipeline(tmp_path, fn))
    assert calls == []  # all reused
    _run(tmp_path, _pipeline(tmp_path, fn, b=2))
    assert calls == [("b", 2, False)]
    calls.clear()
    _run(tmp_path, _pipeline(tmp_path, fn, a=2, b=2))
    assert calls == [("a", 2, False), ("b", 2, False)]  # b: its upstream changed


def test_new_fracdet_code_reruns_every_stage(tmp_path, monkeypatch):
    calls: list = []
    fn = _work(calls)
    _run(tmp_path, _pipeline(tmp_path, fn))
    calls.clear()
    monkeypatch.setattr(fracdet, "__version__", "99.0.0")
    _run(tmp_path, _pipeline(tmp_path, fn))
    assert [c[0] for c in calls] == ["a", "b", "c"]
    record = StageRunner(tmp_path, fresh=False).record("a")
    assert record["code"]["fracdet"] == "99.0.0" and record["done"] is True
    calls.clear()  # an edited source file (an editable install) counts as new code too
    monkeypatch.setattr(stages, "_source_hash", lambda: "edited")
    _run(tmp_path, _pipeline(tmp_path, fn))
    assert [c[0] for c in calls] == ["a", "b", "c"]


def test_the_source_hash_sees_an_edit_and_ignores_bytecode(tmp_path):
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "m.py").write_text("x = 1\n")
    before = stages._hash_sources([tmp_path / "pkg"])
    (tmp_path / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")
    assert stages._hash_sources([tmp_path / "pkg"]) == before
    (tmp_path / "pkg" / "m.py").write_text("x = 2\n")
    assert stages._hash_sources([tmp_path / "pkg"]) != before
    root = Path(fracdet.__file__).parent.parent  # this checkout: fracdet and data_tools hashed
    expected = stages._hash_sources([root / "fracdet", root / "data_tools"])
    assert stages.code_version()["source"] == expected


def test_an_interrupted_stage_that_can_resume_continues(tmp_path):
    calls: list = []

    def work(job: Job) -> None:
        calls.append(job.resume)
        job.output.mkdir(parents=True, exist_ok=True)
        (job.output / "part").touch()
        if len(calls) == 1:
            raise KeyboardInterrupt

    def stage(n: int) -> Stage:
        job = Job(tmp_path / "s", n)
        return Stage("s", tmp_path / "s", (Call.of(work, job),), resumable=True)

    with pytest.raises(KeyboardInterrupt):
        StageRunner(tmp_path, fresh=False).run(stage(1))
    StageRunner(tmp_path, fresh=False).run(stage(1))
    assert calls == [False, True] and (tmp_path / "s" / "part").is_file()
    StageRunner(tmp_path, fresh=False).run(stage(2))  # other options: a fresh start
    assert calls[-1] is False


def test_the_key_holds_configs_field_by_field_and_paths_relative_to_the_output(tmp_path):
    out = tmp_path / "run"
    described = Call.of(print, Job(out / "x" / "y", 3, resume=True), flag=None).describe(out)
    assert described == {
        "call": "builtins.print",
        "args": [{"type": f"{__name__}.Job", "output": "OUT/x/y", "n": 3}],  # no "resume"
        "kwargs": {"flag": None},
    }
    assert canonical(tmp_path / "elsewhere", out) == str((tmp_path / "elsewhere").resolve())
    with pytest.raises(TypeError, match="cannot hold a object"):
        canonical(object(), out)  # never a str() that could hide a change
    for folder in (tmp_path / "s", out):  # a stage's folder is removed before it reruns
        with pytest.raises(ValueError, match="is not inside"):
            StageRunner(out, fresh=False).run(Stage("s", folder, ()))


def test_a_pipeline_folder_opens_only_where_nothing_else_would_be_lost(tmp_path):
    from fracdet.errors import ConfigError, OutputExistsError

    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputExistsError, match="exists and is not a folder"):
        StageRunner.open(tmp_path / "file", label="demo", fresh=False, overwrite=False)
    with pytest.raises(ConfigError, match="is a file"):  # a file above it: one line, no mkdir
        StageRunner.open(tmp_path / "file" / "out", label="demo", fresh=False, overwrite=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not a study folder; pass --overwrite"):
        StageRunner.open(other, label="study", fresh=False, overwrite=False)
    assert StageRunner.open(other, label="study", fresh=False, overwrite=True).fresh
    (other / "summary.json").write_text("{}")  # an older demo's marker
    runner = StageRunner.open(
        other, label="demo", fresh=False, overwrite=False, also_ours=("summary.json",)
    )
    assert not runner.fresh and runner.label == "demo"
    made = StageRunner.open(tmp_path / "new" / "run", label="demo", fresh=True, overwrite=False)
    assert made.out.is_dir() and made.fresh
