"""The machine failing under a running command: a full disk, Ctrl-C and SIGTERM, two runs into one
folder, inputs changing mid-run, read-only outputs and unreadable inputs.

Each case ends in one line and a known exit code, leaves the last good work whole (no temporary
file behind) and, where the command resumes, a resumed run equal to an uninterrupted one. Real
processes get the signals (as a user's terminal sends them); a full disk is injected in-process
at the write that fails and, where this machine lets the test mount one, met for real on a small
tmpfs. In-process runs use one thread, like the killed processes, so results compare bit for bit.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from conftest import read_rows, save_image
from typer.testing import CliRunner

from fracdet.cli import app
from fracdet.fsutil import lock_path

from .command_corpus import JUNK_JPEG, mae_images, small_manifest, study_config
from .command_corpus import audit as audit_cmd
from .command_corpus import predict as predict_cmd
from .command_corpus import pretrain_mae as pretrain_mae_cmd
from .command_corpus import run as run_cmd
from .command_corpus import train_det as train_det_cmd
from .test_kill_resume import (
    TIMING,
    assert_same_training,
    complete_lines,
    epochs_logged,
    predict_args,
    train_args,
)

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def invoke(args: list[str]):
    return runner.invoke(app, ["-q", *args])


def ok(args: list[str]) -> None:
    result = invoke(args)
    assert result.exit_code == 0, result.output


def with_out(args: list[str], out: Path) -> list[str]:
    """The same command into another output folder."""
    at = args.index("--out") + 1
    return [*args[:at], str(out), *args[at + 1 :]]


def one_line(result) -> str:
    """The single line a failed command printed; no traceback."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def leftovers(folder: Path) -> list[Path]:
    """Temporary files of atomic writes (and write tests) left anywhere under ``folder``."""
    return [p for p in folder.rglob("*") if ".tmp-" in p.name or "write-test" in p.name]


# ``python -c`` program: fracdet's predict, held (sleeping) once HOLD_AFTER images are committed
# until the file RELEASE exists, so what a test does after those rows appear (a signal, a second
# run) always meets a run in progress, however loaded the machine is.
_HELD_PREDICT = """
import os, runpy, sys, time
import fracdet.predict.run as run
batches = run.predict_batches
def held(*args, **kwargs):
    for n, step in enumerate(batches(*args, **kwargs), 1):
        yield step
        while n == HOLD_AFTER and not os.path.exists(RELEASE):
            time.sleep(0.01)
run.predict_batches = held
sys.argv = ["fracdet", *sys.argv[1:]]
runpy.run_module("fracdet", run_name="__main__")
"""


def start(args: list[str], log: Path, *, hold_after: int | None = None) -> subprocess.Popen:
    """``fracdet ARGS`` as a real process on one thread; a ``predict`` with ``hold_after``
    waits once that many images are committed, until a signal or :func:`release`."""
    program = ["-m", "fracdet"]
    if hold_after is not None:
        held = _HELD_PREDICT.replace("HOLD_AFTER", str(hold_after))
        program = ["-c", held.replace("RELEASE", repr(str(log) + ".release"))]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "YOLO_OFFLINE": "1",
        "MPLBACKEND": "Agg",
    }
    with open(log, "wb") as fh:
        return subprocess.Popen(
            [sys.executable, *program, "-q", *args], env=env, stdout=fh, stderr=fh
        )


def release(log: Path) -> None:
    """Let a predict :func:`start` held go on."""
    Path(f"{log}.release").touch()


def wait_for(process: subprocess.Popen, ready: Callable[[], bool], log: Path, timeout=300) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            pytest.fail(f"the run ended (exit {process.returncode}) too soon: {log.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"nothing happened in {timeout} s: {log.read_text()[-2000:]}")
        time.sleep(0.01)


def stop(process: subprocess.Popen, signum: int, log: Path) -> tuple[int, str]:
    """Send ``signum``; returns the exit code and the lines the run printed."""
    os.kill(process.pid, signum)
    try:
        code = process.wait(timeout=120)
    finally:
        process.kill()
    return code, log.read_text()


def no_space_after(calls: int) -> Callable:
    """A stand-in for a write function that fails with ENOSPC on call ``calls`` (and after)."""
    count = [0]

    def check() -> None:
        count[0] += 1
        if count[0] >= calls:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return check


# --- shared inputs ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 images and one that cannot be read."""
    folder = tmp_path_factory.mktemp("machine_images") / "images"
    for k in range(16):
        save_image(folder / f"img{k:02d}.png", 60 + 5 * k, 90 - 2 * k, seed=k)
    (folder / "img03_broken.jpg").write_bytes(JUNK_JPEG)
    return folder


@pytest.fixture(scope="module")
def straight_predict(images, tiny_models, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight_predict") / "out"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ok(predict_args(images, tiny_models, out))
    finally:
        torch.set_num_threads(before)
    return out


def assert_same_predictions(a: Path, b: Path) -> None:
    for name in ("predictions.csv", "detections.json", "images.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture(scope="module")
def straight_training(phantom_dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight_training") / "out"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ok(train_args(phantom_dataset / "manifest.csv", out))
    finally:
        torch.set_num_threads(before)
    return out


@pytest.fixture(scope="module")
def mountable(tmp_path_factory) -> Callable[..., Path]:
    """Mount a tmpfs of a given size (and options) in the test's folder; skip where not allowed."""
    mounted: list[Path] = []

    def mount(where: Path, size: str, *options: str) -> Path:
        where.mkdir(parents=True, exist_ok=True)
        opts = ",".join((f"size={size}", *options))
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()[:200]}")
        mounted.append(where)
        return where

    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


# --- two runs into one output folder ----------------------------------------------------------


@pytest.fixture
def live_pid() -> Iterator[int]:
    """A process that runs for the test: the holder of a lock left by a run still going."""
    process = subprocess.Popen(["sleep", "120"])
    yield process.pid
    process.kill()
    process.wait()


def hold_lock(out: Path, pid: int) -> Path:
    lock = lock_path(out)
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(
        json.dumps({"pid": pid, "host": socket.gethostname(), "started": "earlier", "command": "x"})
    )
    return lock


def _lock_cases() -> list:
    def predict(kit, tmp, out):
        folder = tmp / "images"
        save_image(folder / "a.png", 40, 30)
        return predict_cmd(folder, out, "--cls", str(kit[0]))

    def audit(kit, tmp, out):
        return audit_cmd(kit[2], out, "--cls", str(kit[0]))

    def train_cls(kit, tmp, out):
        return train_args(kit[2], out)

    def train_det(kit, tmp, out):
        return train_det_cmd(kit[3], out)

    def pretrain_mae(kit, tmp, out):
        return pretrain_mae_cmd(mae_images(tmp), out, tmp)

    def convert(kit, tmp, out):
        return ["convert", str(kit[3]), str(out), "--copy"]

    def run(kit, tmp, out):
        return run_cmd(study_config(tmp), out)

    return [
        pytest.param(f, id="into-" + f.__name__.replace("_", "-"))
        for f in (predict, audit, train_cls, train_det, pretrain_mae, convert, run)
    ]


@pytest.mark.parametrize("overwrite", [False, True], ids=["new", "overwrite"])
@pytest.mark.parametrize("case", _lock_cases())
def test_a_second_run_into_a_busy_output_is_refused_at_once(
    case, overwrite, tiny_models, phantom_dataset, live_pid, tmp_path
):
    kit = (*tiny_models, phantom_dataset / "manifest.csv", phantom_dataset / "data.yaml")
    out = tmp_path / "out"
    args = case(kit, tmp_path, out)
    locked = out / "train" if args[0] == "train-det" else out  # train-det's run is OUT/NAME
    if overwrite:
        locked.mkdir(parents=True)
        (locked / "keep.txt").write_text("the running run's work")
    lock = hold_lock(locked, live_pid)
    started = time.perf_counter()
    result = invoke([*args, *(["--overwrite"] if overwrite else [])])
    assert result.exit_code == 1
    line = one_line(result)
    assert "another fracdet run is writing here" in line and f"pid {live_pid}" in line, line
    assert time.perf_counter() - started < 30  # at once, before any training or prediction
    assert lock.is_file() and str(live_pid) in lock.read_text()  # the live run's lock stays
    if overwrite:
        assert sorted(p.name for p in locked.iterdir()) == ["keep.txt"]
    else:
        assert not locked.exists()


def test_a_stale_lock_after_a_kill_is_taken_over_with_a_note(
    images, tiny_models, straight_predict, tmp_path, caplog
):
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid runs no more: the lock of a killed run
    out = tmp_path / "out"
    lock = hold_lock(out, dead.pid)
    with caplog.at_level("WARNING", logger="fracdet.fsutil"):
        ok(predict_args(images, tiny_models, out))
    assert any("taking over the lock" in r.getMessage() for r in caplog.records)
    assert not lock.exists()  # released at the end
    assert_same_predictions(out, straight_predict)


@pytest.mark.slow
def test_two_live_runs_the_second_refuses_and_shards_into_their_own_folders_go_on(
    images, tiny_models, tmp_path
):
    out, log = tmp_path / "out", tmp_path / "log"
    first = start(predict_args(images, tiny_models, out), log, hold_after=2)
    try:
        wait_for(first, lambda: complete_lines(out / "predictions.csv") >= 3, log)
        second = invoke(predict_args(images, tiny_models, out, "--overwrite"))
        assert second.exit_code == 1 and "another fracdet run is writing here" in one_line(second)
        assert f"pid {first.pid}" in second.output
        # a shard of the same job into its own folder is another output: allowed meanwhile
        ok(predict_args(images, tiny_models, tmp_path / "shard2", "--shard", "2/2"))
        release(log)
        assert first.wait(timeout=300) == 0, log.read_text()
    finally:
        first.kill()
        first.wait()
    assert not lock_path(out).exists()
    rows = read_rows(out / "predictions.csv")
    assert len(rows) == len({r["path"] for r in rows}) == 17  # no interleaved second run


# --- Ctrl-C and SIGTERM -----------------------------------------------------------------------


@pytest.mark.slow
def test_predict_ctrl_c_exits_130_with_the_resume_command_and_resumes_exactly(
    images, tiny_models, straight_predict, tmp_path
):
    out, log = tmp_path / "out", tmp_path / "log"
    args = predict_args(images, tiny_models, out)
    process = start(args, log, hold_after=4)
    wait_for(process, lambda: complete_lines(out / "predictions.csv") >= 5, log)
    code, printed = stop(process, signal.SIGINT, log)
    assert code == 130, printed
    lines = printed.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in printed, printed
    assert lines[0].startswith("interrupted (Ctrl-C): the rows written so far are kept in")
    command = lines[0].split("resume with: ", 1)[1]
    assert command.endswith("--resume") and command.startswith("fracdet -q predict")
    assert not lock_path(out).exists() and not leftovers(out)
    assert complete_lines(out / "predictions.csv") - 1 < 17
    ok(predict_args(images, tiny_models, out, "--resume"))
    assert_same_predictions(out, straight_predict)


@pytest.mark.slow
def test_train_cls_sigterm_exits_143_and_resumes_to_the_same_weights(
    phantom_dataset, straight_training, tmp_path
):
    out, log = tmp_path / "out", tmp_path / "log"
    process = start(train_args(phantom_dataset / "manifest.csv", out, "--overwrite"), log)
    wait_for(process, lambda: epochs_logged(out) >= 1, log)
    code, printed = stop(process, signal.SIGTERM, log)
    assert code == 143, printed
    lines = printed.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in printed, printed
    assert lines[0].startswith(f"interrupted (SIGTERM): the last finished epoch is kept in {out}")
    command = lines[0].split("resume with: ", 1)[1]
    assert command.endswith("--resume") and "--overwrite" not in command
    assert not leftovers(out) and epochs_logged(out) < 3
    ok(train_args(phantom_dataset / "manifest.csv", out, "--resume"))
    assert_same_training(out, straight_training)


@pytest.mark.slow
def test_audit_sigterm_exits_143_and_resumes_to_the_same_rows(
    phantom_dataset, tiny_models, tmp_path
):
    from conftest import assert_same_rows

    manifest = small_manifest(phantom_dataset, tmp_path, boxed=6, count=12)
    args = audit_cmd(manifest, tmp_path / "out", "--cls", str(tiny_models[0]))
    args[args.index("--batch-size") + 1] = "2"
    args[args.index("--max-images") + 1] = "12"
    out, log = tmp_path / "out", tmp_path / "log"
    process = start(args, log)
    wait_for(process, lambda: complete_lines(out / "per_image.csv") >= 3, log)
    code, printed = stop(process, signal.SIGTERM, log)
    assert code == 143 and printed.count("\n") == 1, printed
    assert "the chunks audited so far are kept" in printed and printed.strip().endswith("--resume")
    ok([*args, "--resume"])
    ok(with_out(args, tmp_path / "straight"))
    assert_same_rows(out / "per_image.csv", tmp_path / "straight" / "per_image.csv")


def sigterm_on_call(calls: int) -> Callable[[], None]:
    """Send this process SIGTERM on call ``calls``, as a service manager stopping the job would."""
    count = [0]

    def check() -> None:
        count[0] += 1
        if count[0] == calls:
            os.kill(os.getpid(), signal.SIGTERM)

    return check


def test_convert_sigterm_exits_143_and_leaves_no_half_output(
    phantom_dataset, tmp_path, monkeypatch
):
    import fracdet.data.convert as convert_module

    real, hit = convert_module.place_file, sigterm_on_call(5)

    def place(*args, **kwargs):
        hit()
        return real(*args, **kwargs)

    monkeypatch.setattr(convert_module, "place_file", place)
    out = tmp_path / "out"
    args = ["convert", str(phantom_dataset / "data.yaml"), str(out), "--copy"]
    result = invoke(args)
    assert result.exit_code == 143
    assert one_line(result).startswith("interrupted (SIGTERM): nothing was written")
    assert list(tmp_path.iterdir()) == []  # no output, no temporary folder, no lock
    monkeypatch.setattr(convert_module, "place_file", real)
    ok(args)
    assert (out / "manifest.csv").is_file()


def test_pretrain_mae_sigterm_exits_143_and_keeps_the_last_epoch(tmp_path, monkeypatch):
    import fracdet.mae.train as mae_module

    real, hit = mae_module.write_history, sigterm_on_call(1)

    def history(*args, **kwargs):
        real(*args, **kwargs)
        hit()

    monkeypatch.setattr(mae_module, "write_history", history)
    out = tmp_path / "out"
    args = pretrain_mae_cmd(mae_images(tmp_path), out, tmp_path)
    args[args.index("--epochs") + 1] = "2"
    result = invoke(args)
    assert result.exit_code == 143
    assert one_line(result).startswith("interrupted (SIGTERM): the last finished epoch is kept")
    assert (out / "last_state.pt").is_file() and not leftovers(out)
    monkeypatch.setattr(mae_module, "write_history", real)
    ok([*args, "--resume"])
    assert len(json.loads((out / "metrics.json").read_text())) == 2


# --- a full disk ------------------------------------------------------------------------------


def test_predict_disk_full_in_the_journal_is_one_line_and_resumes_exactly(
    images, tiny_models, straight_predict, tmp_path, monkeypatch
):
    import fracdet.jobs.journal as journal_module

    real, full = journal_module.append_rows, no_space_after(6)

    def append(path, header, rows):
        rows = list(rows)
        try:
            full()
        except OSError:
            with open(path, "a", encoding="utf-8") as fh:  # the disk took half a row
                fh.write(",".join(str(v) for v in rows[0].values())[:9])
            raise
        real(path, header, rows)

    monkeypatch.setattr(journal_module, "append_rows", append)
    out = tmp_path / "out"
    result = invoke(predict_args(images, tiny_models, out))
    assert result.exit_code == 1
    assert one_line(result) == (
        f"error: no space left on device writing {out}: free space and rerun with --resume"
    )
    assert not leftovers(out) and not lock_path(out).exists()
    assert complete_lines(out / "predictions.csv") == 11  # header, five commits of two rows
    monkeypatch.setattr(journal_module, "append_rows", real)
    ok(predict_args(images, tiny_models, out, "--resume"))
    assert_same_predictions(out, straight_predict)


def test_audit_disk_full_in_the_journal_is_one_line_and_resumes_exactly(
    phantom_dataset, tiny_models, tmp_path, monkeypatch
):
    from conftest import assert_same_rows

    import fracdet.jobs.journal as journal_module

    manifest = small_manifest(phantom_dataset, tmp_path, boxed=4, count=8)
    args = audit_cmd(manifest, tmp_path / "out", "--cls", str(tiny_models[0]))
    args[args.index("--batch-size") + 1] = "2"
    args[args.index("--max-images") + 1] = "8"
    real, full = journal_module.append_rows, no_space_after(3)

    def append(path, header, rows):
        full()
        real(path, header, rows)

    monkeypatch.setattr(journal_module, "append_rows", append)
    result = invoke(args)
    assert result.exit_code == 1
    out = tmp_path / "out"
    assert one_line(result) == (
        f"error: no space left on device writing {out}: free space and rerun with --resume"
    )
    assert not leftovers(out) and complete_lines(out / "per_image.csv") == 5
    monkeypatch.setattr(journal_module, "append_rows", real)
    ok([*args, "--resume"])
    ok(with_out(args, tmp_path / "straight"))
    assert_same_rows(out / "per_image.csv", tmp_path / "straight" / "per_image.csv")


def test_train_cls_disk_full_in_a_checkpoint_keeps_the_last_one_and_resumes_exactly(
    phantom_dataset, straight_training, tmp_path, monkeypatch
):
    import fracdet.cls.train_state as state_module

    real, full = state_module.atomic_write, no_space_after(2)

    def half_then_full(path, write):
        def partial(tmp: Path) -> None:
            write(tmp)
            try:
                full()
            except OSError:
                with open(tmp, "r+b") as fh:  # the disk filled up halfway through the file
                    fh.truncate(tmp.stat().st_size // 2)
                raise

        return real(path, partial)

    monkeypatch.setattr(state_module, "atomic_write", half_then_full)
    out = tmp_path / "out"
    result = invoke(train_args(phantom_dataset / "manifest.csv", out))
    assert result.exit_code == 1
    assert one_line(result) == (
        f"error: no space left on device writing {out}: free space and rerun with --resume"
    )
    assert not leftovers(out)
    saved = torch.load(out / "last_state.pt", weights_only=True)
    assert saved["epoch"] == 1  # epoch 1's state, whole; epoch 2's never replaced it
    monkeypatch.setattr(state_module, "atomic_write", real)
    ok(train_args(phantom_dataset / "manifest.csv", out, "--resume"))
    assert_same_training(out, straight_training)


@pytest.mark.slow
def test_predict_on_a_real_full_disk_stops_in_one_line_and_resumes_once_space_is_back(
    images, tiny_models, straight_predict, tmp_path, mountable
):
    disk = mountable(tmp_path / "disk", "64k")
    out = disk / "out"
    args = predict_args(images, tiny_models, out, "--overlays")
    result = invoke(args)
    assert result.exit_code == 1
    assert one_line(result) == (
        f"error: no space left on device writing {out}: free space and rerun with --resume"
    )
    assert not leftovers(disk) and not lock_path(out).exists()
    done = complete_lines(out / "predictions.csv") - 1
    assert 0 <= done < 17
    subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
    ok([*args, "--resume"])
    assert_same_predictions(out, straight_predict)
    assert len(list((out / "overlays").rglob("*.*"))) == 16


def test_convert_on_a_real_full_disk_leaves_no_half_output(phantom_dataset, tmp_path, mountable):
    disk = mountable(tmp_path / "disk", "256k")
    out = disk / "dataset"
    result = invoke(["convert", str(phantom_dataset / "data.yaml"), str(out), "--copy"])
    assert result.exit_code == 1
    assert one_line(result) == (
        f"error: no space left on device writing {out}: free space and rerun the same command"
    )
    assert list(disk.iterdir()) == []


# --- read-only, unwritable and other file systems ---------------------------------------------


def test_a_read_only_output_is_one_line_before_any_work(images, tiny_models, tmp_path, mountable):
    disk = mountable(tmp_path / "ro", "1m", "ro")
    result = invoke(predict_args(images, tiny_models, disk / "out"))
    assert result.exit_code == 1
    assert one_line(result) == (
        f"error: {disk / 'out'}: read-only file system: pass an output folder on a writable disk"
    )


def test_an_output_on_another_file_system_renames_only_inside_its_folder(
    images, tiny_models, straight_predict, tmp_path, mountable, monkeypatch
):
    disk = mountable(tmp_path / "other", "16m")
    renames: list[tuple[Path, Path]] = []
    real = os.replace

    def replace(src, dst):
        renames.append((Path(src), Path(dst)))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the temp folder: another disk
    ok(predict_args(images, tiny_models, disk / "out"))
    assert renames and all(s.parent == d.parent for s, d in renames)
    assert all(d.is_relative_to(disk) for _, d in renames)
    assert_same_predictions(disk / "out", straight_predict)


def as_nobody(work: Callable[[], int]) -> int:
    """Run ``work`` in a forked child that is user ``nobody``; its return value is the exit code.

    Forked, not started: the interpreter and every module are loaded already (a fresh process
    of ``nobody`` may not be able to read them).
    """
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99  # could not become nobody
        try:
            os.setgid(65534)
            os.setuid(65534)
            code = 98  # work() raised
            code = work()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_an_input_this_user_may_not_read_is_skipped_and_recorded(images, tiny_models, tmp_path):
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    shared = Path(tempfile.mkdtemp(prefix="fracdet-perm-"))  # /tmp: a place nobody can reach
    try:
        os.chmod(shared, 0o777)
        folder = Path(shutil.copytree(images, shared / "images"))
        cls = Path(shutil.copytree(tiny_models[0], shared / "cls"))
        for path in (folder, cls, *folder.iterdir(), *cls.iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)
        (folder / "img07.png").chmod(0o000)
        out = shared / "out"
        args = predict_cmd(folder, out, "--cls", str(cls))
        ok(predict_cmd(folder, shared / "warm", "--cls", str(cls)))  # loads every module first
        printed = shared / "printed"
        printed.touch(mode=0o666)
        printed.chmod(0o666)

        def work() -> int:
            result = invoke(args)
            printed.write_text(result.output)
            return result.exit_code

        if os.getuid() == 0:
            code = as_nobody(work)
            if code == 99:
                pytest.skip("cannot become user nobody here")
        else:
            code = work()
        assert code == 0, printed.read_text()
        rows = {r["path"]: r for r in read_rows(out / "predictions.csv")}
        assert rows["img07.png"]["status"] == "skipped"
        assert "Permission denied" in rows["img07.png"]["reason"]
        assert sum(r["status"] == "ok" for r in rows.values()) == 15
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_an_output_folder_this_user_may_not_write_is_one_line_before_any_work(
    images, tiny_models, tmp_path
):
    shared = Path(tempfile.mkdtemp(prefix="fracdet-perm-"))
    try:
        os.chmod(shared, 0o755)  # readable, not writable, by others
        folder = Path(shutil.copytree(images, shared / "images"))
        cls = Path(shutil.copytree(tiny_models[0], shared / "cls"))
        for path in (folder, cls, *folder.iterdir(), *cls.iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)
        (shared / "out").mkdir(mode=0o755)
        ok(predict_cmd(folder, Path(tempfile.mkdtemp()) / "warm", "--cls", str(cls)))
        lines = shared / "printed"
        lines.touch(mode=0o666)
        lines.chmod(0o666)

        def work() -> int:
            result = invoke(predict_cmd(folder, shared / "out", "--cls", str(cls)))
            lines.write_text(result.output)
            return result.exit_code

        if os.getuid() == 0:
            code = as_nobody(work)
            if code == 99:
                pytest.skip("cannot become user nobody here")
        else:
            code = work()
        assert code == 1
        assert lines.read_text().strip() == (
            f"error: {shared / 'out'}: permission denied writing here: pass another output folder"
        )
    finally:
        shutil.rmtree(shared, ignore_errors=True)


# --- inputs that change under the run ---------------------------------------------------------


def test_a_file_deleted_mid_predict_is_skipped_and_recorded(
    images, tiny_models, tmp_path, monkeypatch
):
    import fracdet.predict.decode as decode_module

    folder = Path(shutil.copytree(images, tmp_path / "images"))
    real = decode_module.load_image

    def load(path, **kwargs):
        if Path(path).name == "img05.png":
            Path(path).unlink()  # gone between the listing and its turn
        return real(path, **kwargs)

    monkeypatch.setattr(decode_module, "load_image", load)
    out = tmp_path / "out"
    ok(predict_args(folder, tiny_models, out))
    rows = {r["path"]: r for r in read_rows(out / "predictions.csv")}
    assert rows["img05.png"]["status"] == "skipped"
    assert "No such file" in rows["img05.png"]["reason"]
    report = json.loads((out / "predict_report.json").read_text())
    assert "img05.png" in [s["path"] for s in report["skipped"]] and len(rows) == 17


def test_resume_after_inputs_changed_names_them_and_redoes_them(
    images, tiny_models, tmp_path, monkeypatch, caplog
):
    import fracdet.jobs.journal as journal_module

    folder = Path(shutil.copytree(images, tmp_path / "images"))
    real, count = journal_module.append_rows, [0]

    def interrupted(path, header, rows):
        count[0] += 1
        if count[0] == 7:
            raise KeyboardInterrupt
        real(path, header, rows)

    monkeypatch.setattr(journal_module, "append_rows", interrupted)
    out = tmp_path / "out"
    assert invoke(predict_args(folder, tiny_models, out)).exit_code == 130
    monkeypatch.setattr(journal_module, "append_rows", real)
    done = [r["path"] for r in read_rows(out / "predictions.csv")]
    changed = sorted(done[1:3])
    for k, name in enumerate(changed):  # replaced by other pictures while the run was stopped
        save_image(folder / name, 33 + k, 47, seed=100 + k)
    with caplog.at_level("WARNING", logger="fracdet.predict.outputs"):
        ok(predict_args(folder, tiny_models, out, "--resume"))
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "2 input(s) changed" in said and all(name in said for name in changed)
    report = json.loads((out / "predict_report.json").read_text())
    assert report["changed_since_interrupted"] == changed
    ok(predict_args(folder, tiny_models, tmp_path / "straight"))
    assert_same_predictions(out, tmp_path / "straight")
    rows = {r["path"]: r for r in read_rows(out / "predictions.csv")}
    assert [rows[name]["width"] for name in changed] == ["33", "34"]


@pytest.mark.slow
def test_train_det_sigterm_exits_143_and_resume_finishes(phantom_dataset, tmp_path, monkeypatch):
    import fracdet.det.train as det_module

    build, hit = det_module._build_model, sigterm_on_call(1)

    def build_and_stop(*args, **kwargs):
        model, start = build(*args, **kwargs)
        model.add_callback("on_fit_epoch_end", lambda trainer: hit())  # after last.pt is saved
        return model, start

    monkeypatch.setattr(det_module, "_build_model", build_and_stop)
    out = tmp_path / "out"
    args = train_det_cmd(phantom_dataset / "data.yaml", out)
    args[args.index("--epochs") + 1] = "2"
    args[args.index("--imgsz") + 1] = "64"  # 32 px leaves BatchNorm a one-image last batch here
    result = invoke(args)
    assert result.exit_code == 143, result.output
    # Ultralytics prints its own progress whatever -q says; fracdet's part is the one line on stderr
    assert "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        f"interrupted (SIGTERM): the last epoch Ultralytics saved is kept in {out}"
    )
    assert (out / "train" / "weights" / "last.pt").is_file() and not lock_path(
        out / "train"
    ).exists()
    monkeypatch.setattr(det_module, "_build_model", build)
    ok([*args, "--resume"])
    assert (out / "train" / "metrics.json").is_file()


@pytest.mark.slow
def test_train_det_disk_full_in_a_checkpoint_keeps_the_last_one_and_resumes(
    phantom_dataset, tmp_path, monkeypatch
):
    """Epoch 2's ``last.pt`` hits a full disk halfway: epoch 1's stays whole and loadable (the
    save goes to a temporary name first), no partial file is left, and --resume finishes."""
    real, full = Path.write_bytes, no_space_after(2)

    def half_then_full(self: Path, data: bytes) -> int:
        if not self.name.endswith(".pt.partial") or not self.name.startswith(".last"):
            return real(self, data)
        try:
            full()
        except OSError:
            real(self, data[: len(data) // 2])  # the disk filled up halfway through the file
            raise
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", half_then_full)
    out = tmp_path / "out"
    args = train_det_cmd(phantom_dataset / "data.yaml", out)
    args[args.index("--epochs") + 1] = "3"
    args[args.index("--imgsz") + 1] = "64"
    result = invoke(args)
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: no space left on device writing {out / 'train'}: free space and "
        "rerun with --resume"
    )
    weights = out / "train" / "weights"
    assert sorted(p.name for p in weights.iterdir()) == ["best.pt", "last.pt"]
    saved = torch.load(weights / "last.pt", map_location="cpu", weights_only=False)
    assert saved["epoch"] == 0  # epoch 1's checkpoint, whole; epoch 2's never replaced it
    monkeypatch.setattr(Path, "write_bytes", real)
    ok([*args, "--resume"])
    assert json.loads((out / "train" / "metrics.json").read_text())["epochs_completed"] == 3


def test_a_file_replaced_mid_predict_by_a_half_written_one_is_skipped_and_recorded(
    images, tiny_models, tmp_path, monkeypatch
):
    import fracdet.predict.decode as decode_module

    folder = Path(shutil.copytree(images, tmp_path / "images"))
    real = decode_module.load_image

    def load(path, **kwargs):
        if Path(path).name == "img09.png":  # another program is rewriting it right now
            data = Path(path).read_bytes()
            Path(path).write_bytes(data[: len(data) // 2])
        return real(path, **kwargs)

    monkeypatch.setattr(decode_module, "load_image", load)
    out = tmp_path / "out"
    ok(predict_args(folder, tiny_models, out))
    rows = {r["path"]: r for r in read_rows(out / "predictions.csv")}
    assert rows["img09.png"]["status"] == "skipped" and rows["img09.png"]["reason"]
    assert sum(r["status"] == "ok" for r in rows.values()) == 15


# --- stopped before the first checkpoint: nothing to resume, the command that starts again ----


def start_again(line: str, out: Path, args: list[str]) -> list[str]:
    """The line of a training stopped in its first epoch: it names no ``--resume`` (there is no
    checkpoint yet) but the exact command that starts again; returns that command's args."""
    again = shlex.join(["fracdet", "-q", *args, "--overwrite"])
    assert line == (
        "interrupted (SIGTERM): no epoch had finished, so there is nothing to resume "
        f"in {out}; start again with: {again}"
    )
    return shlex.split(again)[1:]


def stop_in_epoch_one(monkeypatch, module) -> None:
    """SIGTERM as ``module``'s first training epoch starts: no checkpoint exists yet."""
    real, hit = module.train_epoch, sigterm_on_call(1)

    def train_epoch(*args, **kwargs):
        hit()
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "train_epoch", train_epoch)


def test_train_cls_stopped_in_epoch_one_says_start_again_and_that_command_works(
    phantom_dataset, straight_training, tmp_path, monkeypatch
):
    import fracdet.cls.train as cls_module

    out = tmp_path / "out"
    args = train_args(phantom_dataset / "manifest.csv", out)
    monkeypatch.setattr(sys, "argv", ["fracdet", "-q", *args])  # as the fracdet program
    stop_in_epoch_one(monkeypatch, cls_module)
    result = invoke(args)
    assert result.exit_code == 143
    again = start_again(one_line(result), out, args)
    assert not (out / "last_state.pt").exists() and not leftovers(out)
    assert invoke([*args, "--resume"]).exit_code == 1  # what the line no longer offers
    monkeypatch.undo()
    result = runner.invoke(app, again)
    assert result.exit_code == 0, result.output
    assert_same_training(out, straight_training)


def test_pretrain_mae_stopped_in_epoch_one_says_start_again_and_that_command_works(
    tmp_path, monkeypatch
):
    import fracdet.mae.train as mae_module

    out = tmp_path / "out"
    args = pretrain_mae_cmd(mae_images(tmp_path), out, tmp_path)
    monkeypatch.setattr(sys, "argv", ["fracdet", "-q", *args])
    stop_in_epoch_one(monkeypatch, mae_module)
    result = invoke(args)
    assert result.exit_code == 143
    again = start_again(one_line(result), out, args)
    assert not (out / "last_state.pt").exists() and not leftovers(out)
    monkeypatch.undo()
    ok(again)
    ok(with_out(args, tmp_path / "straight"))
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING} for r in rows]  # noqa: E731
    assert strip(json.loads((out / "metrics.json").read_text())) == strip(
        json.loads((tmp_path / "straight" / "metrics.json").read_text())
    )


@pytest.mark.parametrize(
    ("command", "checkpoint"),
    [
        ("train_cls", "last_state.pt"),
        ("pretrain_mae", "last_state.pt"),
        ("train_det", "weights/last.pt"),
    ],
)
def test_a_full_disk_before_the_first_checkpoint_says_overwrite_not_resume(
    command, checkpoint, tmp_path
):
    from fracdet.cli.edge import os_error_line
    from fracdet.fsutil import output_lock

    out = tmp_path / "run"
    out.mkdir()
    (out / "events.out").write_text("the stopped run's first file")

    def full() -> OSError:
        try:
            with output_lock(out):  # marks the error with the folder, as in every command
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as exc:
            return exc

    assert os_error_line(full(), command) == (
        f"no space left on device writing {out}: free space and rerun with --overwrite "
        "(no epoch had finished)"
    )
    (out / checkpoint).parent.mkdir(exist_ok=True)
    (out / checkpoint).write_bytes(b"a finished epoch")
    assert os_error_line(full(), command) == (
        f"no space left on device writing {out}: free space and rerun with --resume"
    )


@pytest.mark.slow
def test_train_det_stopped_in_epoch_one_says_start_again_and_that_command_works(
    phantom_dataset, tmp_path, monkeypatch
):
    import fracdet.det.train as det_module

    build, hit = det_module._build_model, sigterm_on_call(1)

    def build_and_stop(*args, **kwargs):
        model, start = build(*args, **kwargs)
        model.add_callback("on_train_batch_end", lambda trainer: hit())  # before any last.pt
        return model, start

    monkeypatch.setattr(det_module, "_build_model", build_and_stop)
    out = tmp_path / "out"
    args = train_det_cmd(phantom_dataset / "data.yaml", out)
    args[args.index("--imgsz") + 1] = "64"
    monkeypatch.setattr(sys, "argv", ["fracdet", "-q", *args])
    result = invoke(args)
    assert result.exit_code == 143, result.output
    # Ultralytics prints its own progress whatever -q says; fracdet's part is the one line on stderr
    (line,) = result.stderr.strip().splitlines()
    again = start_again(line, out / "train", args)
    assert not (out / "train" / "weights" / "last.pt").exists()
    monkeypatch.undo()
    ok(again)
    assert json.loads((out / "train" / "metrics.json").read_text())["epochs_completed"] == 1


# --- the study (`fracdet run`): stopped, or a full disk, in the middle of a stage -------------


#: Where a stage of the study writes (its folder inside the study's).
STUDY_FOLDERS = {"audit": "audit", "cls-standard-eval": "cls-standard/eval"}


def unfinished_study(tiny_study: tuple[Path, Path], tmp: Path, stage: str) -> tuple[Path, list]:
    """A copy of the finished tiny study whose ``stage`` never ran (its record and folder gone,
    as after a run stopped before it); returns the copy and the ``fracdet run`` args.

    Every other stage is reused (the keys hold paths relative to the output), so only ``stage``
    runs: the study's own stop and resume is what is tested, in seconds, not its training.
    """
    root, study = tiny_study
    out = Path(shutil.copytree(study, tmp / "out"))
    (out / ".stages" / f"{stage}.json").unlink()
    shutil.rmtree(out / STUDY_FOLDERS[stage])
    (out / "summary.json").unlink()
    return out, run_cmd(root / "study.yaml", out)


def assert_study_finished_as_straight(out: Path, study: Path, stage: str) -> None:
    """``stage`` ran again (only it), and the study's numbers (and the audit's rows) equal the
    straight run's."""
    from conftest import assert_same_rows

    summary = json.loads((out / "summary.json").read_text())
    assert {name for name, seconds in summary["seconds"].items() if seconds} == {stage}
    if stage == "audit":
        assert_same_rows(out / "audit" / "per_image.csv", study / "audit" / "per_image.csv")
    assert summary["numbers"] == json.loads((study / "summary.json").read_text())["numbers"]
    assert not lock_path(out).exists() and not leftovers(out)


def _stop_in_the_rows(monkeypatch) -> None:
    """The audit (the study's resumable stage) stops once its rows are written, before its
    tables: the rerun resumes it from those rows."""
    import fracdet.jobs.journal as journal_module

    real, hit = journal_module.append_rows, sigterm_on_call(1)

    def append(path, header, rows):
        real(path, header, rows)
        hit()

    monkeypatch.setattr(journal_module, "append_rows", append)


def _stop_in_the_output(monkeypatch) -> None:
    """The evaluation stops as it writes its metrics (into a temporary folder): the rerun
    does it again."""
    real, hit = Path.write_text, sigterm_on_call(1)

    def write_text(self: Path, *args, **kwargs):
        if self.name == "cls_metrics.json":
            hit()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)


@pytest.mark.parametrize(
    ("stage", "stop"),
    [
        pytest.param("cls-standard-eval", _stop_in_the_output, id="in-an-evaluation"),
        pytest.param("audit", _stop_in_the_rows, id="in-the-audit", marks=pytest.mark.slow),
    ],
)
def test_run_sigterm_mid_stage_exits_143_and_the_printed_command_finishes_it(
    stage, stop, tiny_study, tmp_path, monkeypatch
):
    out, args = unfinished_study(tiny_study, tmp_path, stage)
    stop(monkeypatch)
    monkeypatch.setattr(sys, "argv", ["fracdet", "-q", *args])  # as the fracdet program
    result = invoke(args)
    assert result.exit_code == 143
    again = shlex.join(["fracdet", "-q", *args])
    assert one_line(result) == (
        f"interrupted (SIGTERM): the finished stages are kept in {out}; continue with: {again}"
    )
    assert json.loads((out / ".stages" / f"{stage}.json").read_text())["done"] is False
    monkeypatch.undo()
    ok(shlex.split(again)[2:])
    assert_study_finished_as_straight(out, tiny_study[1], stage)


def _full_in_the_output(monkeypatch, out: Path) -> Path:
    """The evaluation's metrics file meets a full disk (it builds its folder under a temporary
    name, so nothing half-written appears)."""
    real = Path.write_text

    def write_text(self: Path, *args, **kwargs):
        if self.name == "cls_metrics.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    return out


def _full_in_the_record(monkeypatch, out: Path) -> Path:
    """The stage's work is done; the record that says so meets a full disk."""
    import fracdet.stages as stages_module

    real = stages_module.atomic_write_json

    def write(path, doc, **kwargs):
        if Path(path).name == "cls-standard-eval.json" and doc.get("done"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, doc, **kwargs)

    monkeypatch.setattr(stages_module, "atomic_write_json", write)
    return out


@pytest.mark.parametrize(
    "fill", [_full_in_the_output, _full_in_the_record], ids=["in-a-stage's-output", "in-its-record"]
)
def test_run_disk_full_mid_stage_is_one_line_and_finishes_once_space_is_back(
    fill, tiny_study, tmp_path, monkeypatch
):
    out, args = unfinished_study(tiny_study, tmp_path, "cls-standard-eval")
    folder = fill(monkeypatch, out)
    result = invoke(args)
    assert result.exit_code == 1
    assert one_line(result) == (
        f"error: no space left on device writing {folder}: free space and rerun the same command"
    )
    assert json.loads((out / ".stages" / "cls-standard-eval.json").read_text())["done"] is False
    monkeypatch.undo()
    ok(args)
    assert_study_finished_as_straight(out, tiny_study[1], "cls-standard-eval")
