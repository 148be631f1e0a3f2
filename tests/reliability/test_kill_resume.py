"""SIGKILL in the middle of train-cls, predict and audit, then ``--resume``: one uninterrupted run's
result.

Each command runs as a real process (``python -m fracdet``), is killed with SIGKILL as soon as
some work is committed on disk, and is resumed; the result is compared with a run that was
never interrupted. Right after the kill every file in the output must parse or load: outputs
are written under a temporary name and renamed, and the append-only journals may end in at
most half a line (which a resume cuts). The resumed and reference runs run in this process,
on one thread like the killed one, so that CPU results can be compared bit for bit.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_same_rows, read_rows, save_image
from typer.testing import CliRunner

from fracdet.cli import app

from .command_corpus import JUNK_JPEG, small_manifest

REPO = Path(__file__).resolve().parents[2]
#: Append-only journals: a kill may leave half a line at their end, which --resume cuts.
JOURNALS = {"predictions.csv", "detections.jsonl", "per_image.csv"}
#: What the training log may differ in between two runs: wall-clock measurements.
TIMING = {"images_per_s", "data_wait_fraction"}

runner = CliRunner()


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """The killed process runs with OMP_NUM_THREADS=1; so do the in-process runs it is compared
    with."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def invoke(args: list[str]) -> None:
    result = runner.invoke(app, ["-q", *args])
    assert result.exit_code == 0, result.output


def kill_when(
    args: list[str], committed: Callable[[], bool], log: Path, *, timeout: float = 300
) -> None:
    """Run ``fracdet ARGS`` in a new process and SIGKILL it once ``committed()`` is true."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "YOLO_OFFLINE": "1",
        "MPLBACKEND": "Agg",
    }
    with open(log, "wb") as fh:
        process = subprocess.Popen(
            [sys.executable, "-m", "fracdet", "-q", *args],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout
    try:
        while not committed():
            if process.poll() is not None:
                pytest.fail(
                    f"the run ended (exit {process.returncode}) before it was killed: "
                    f"{log.read_text()[-2000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"no work committed after {timeout} s: {log.read_text()[-2000:]}")
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()  # a no-op after the SIGKILL; stops the run if the test failed before it
        returncode = process.wait(timeout=60)
    assert returncode == -signal.SIGKILL, (
        f"the run ended by itself (exit {returncode}) before the kill landed"
    )


def complete_lines(path: Path) -> int:
    """Lines ending in a newline (a journal's committed rows, header included)."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def assert_whole(out: Path) -> int:
    """Every file the kill left parses or loads (journals up to their last newline); returns how
    many were checked.

    Temporary files keep their ``.tmp`` names and are not read: they never stand in for an output.
    """
    from safetensors.torch import load as load_safetensors

    checked = 0
    for path in sorted(p for p in out.rglob("*") if p.is_file() and ".tmp" not in p.name):
        data = path.read_bytes()
        if path.name in JOURNALS:
            data = data[: data.rfind(b"\n") + 1]
        if path.suffix == ".json":
            json.loads(data)
        elif path.suffix == ".jsonl":
            [json.loads(line) for line in data.splitlines() if line.strip()]
        elif path.suffix == ".csv":
            table = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
            assert table and all(len(row) == len(table[0]) for row in table[1:]), path
        elif path.suffix == ".safetensors":
            load_safetensors(data)
        elif path.suffix == ".pt":
            torch.load(io.BytesIO(data), weights_only=True)
        elif path.suffix == ".npz":
            with np.load(io.BytesIO(data)) as saved:
                [saved[name] for name in saved.files]
        else:
            continue
        checked += 1
    return checked


# --- train-cls -------------------------------------------------------------------------------


def train_args(manifest: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train-cls",
        str(manifest),
        "--out",
        str(out),
        "--backbone",
        "resnet10t",
        "--image-size",
        "32",
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        *extra,
    ]


@pytest.fixture(scope="module")
def uninterrupted_training(phantom_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train") / "straight"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        invoke(train_args(phantom_dataset / "manifest.csv", out))
    finally:
        torch.set_num_threads(before)
    return out


def assert_same_training(a: Path, b: Path) -> None:
    """Same weights bit for bit (last and best), same training log but for timings."""
    from safetensors.torch import load_file

    for name in ("last.safetensors", "best.safetensors"):
        x, y = load_file(str(a / name)), load_file(str(b / name))
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), name
    strip = lambda rows: [{k: v for k, v in row.items() if k not in TIMING} for row in rows]  # noqa: E731
    assert strip(json.loads((a / "metrics.json").read_text())) == strip(
        json.loads((b / "metrics.json").read_text())
    )
    assert (
        json.loads((a / "best.json").read_text())["threshold"]
        == json.loads((b / "best.json").read_text())["threshold"]
    )


def epochs_logged(out: Path) -> int:
    try:
        return len(json.loads((out / "metrics.json").read_text()))
    except (
        FileNotFoundError,
        json.JSONDecodeError,
    ):  # not there yet (it is never half-written: see assert_whole)
        return 0


@pytest.mark.slow
def test_train_cls_killed_and_resumed_gives_the_same_weights(
    phantom_dataset, uninterrupted_training, tmp_path
):
    out = tmp_path / "run"
    kill_when(
        train_args(phantom_dataset / "manifest.csv", out),
        lambda: epochs_logged(out) >= 1,
        tmp_path / "log",
    )
    assert assert_whole(out) >= 4 and epochs_logged(out) < 3
    assert not (out / "train_report.json").exists()  # it really was mid-run
    invoke(train_args(phantom_dataset / "manifest.csv", out, "--resume"))
    assert_same_training(out, uninterrupted_training)


def test_train_cls_killed_between_the_weights_and_their_state_resumes_exactly(
    phantom_dataset, uninterrupted_training, tmp_path, monkeypatch
):
    """The two files of an epoch cannot be renamed together: a kill between them must not mix
    epochs."""
    import fracdet.cls.train as train_module

    real = train_module.save_state
    calls = []

    def dies_before_the_second_state(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # epoch 2's last.safetensors is on disk, its state is not
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "save_state", dies_before_the_second_state)
    out = tmp_path / "run"
    assert (
        runner.invoke(app, ["-q", *train_args(phantom_dataset / "manifest.csv", out)]).exit_code
        == 130
    )
    monkeypatch.setattr(train_module, "save_state", real)
    invoke(train_args(phantom_dataset / "manifest.csv", out, "--resume"))
    assert_same_training(out, uninterrupted_training)


# --- predict and audit -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 images of several sizes and one that cannot be read (its skipped row must survive too)."""
    folder = tmp_path_factory.mktemp("kill_images") / "images"
    for k in range(24):
        save_image(
            folder / f"img{k:02d}.{'png' if k % 3 else 'jpg'}", 60 + 7 * k, 120 - 3 * k, seed=k
        )
    (folder / "img05_broken.jpg").write_bytes(JUNK_JPEG)
    return folder


def predict_args(folder: Path, models: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    return [
        "predict",
        str(folder),
        "--cls",
        str(models[0]),
        "--det",
        str(models[1]),
        "--out",
        str(out),
        "--det-imgsz",
        "160",
        "--batch-size",
        "2",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        *extra,
    ]


@pytest.mark.slow
def test_predict_killed_and_resumed_writes_the_same_rows(images, tiny_models, tmp_path):
    out = tmp_path / "run"
    kill_when(
        predict_args(images, tiny_models, out),
        lambda: complete_lines(out / "predictions.csv") >= 5,
        tmp_path / "log",
    )
    assert assert_whole(out) >= 2
    done = complete_lines(out / "predictions.csv") - 1
    assert 4 <= done < 25
    invoke(predict_args(images, tiny_models, out, "--resume"))
    report = json.loads((out / "predict_report.json").read_text())
    assert report["n_resumed"] >= 4 and report["n_resumed"] + report["n_processed"] == 25
    invoke(predict_args(images, tiny_models, tmp_path / "straight"))
    for name in ("predictions.csv", "detections.json", "images.json"):
        assert (out / name).read_bytes() == (tmp_path / "straight" / name).read_bytes(), name
    assert [r["status"] for r in read_rows(out / "predictions.csv")].count("skipped") == 1


def audit_args(manifest: Path, models: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    return [
        "audit",
        str(manifest),
        "--cls",
        str(models[0]),
        "--det",
        str(models[1]),
        "--out",
        str(out),
        "--split",
        "all",
        "--checks",
        "none",
        "--methods",
        "saliency,integrated_gradients",
        "--ig-steps",
        "8",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--det-imgsz",
        "64",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        *extra,
    ]


@pytest.fixture(scope="module")
def audit_manifest(phantom_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve phantom images, six with boxes."""
    return small_manifest(phantom_dataset, tmp_path_factory.mktemp("audit_data"), boxed=6, count=12)


@pytest.fixture(scope="module")
def uninterrupted_audit(
    audit_manifest: Path, tiny_models: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("audit") / "straight"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        invoke(audit_args(audit_manifest, tiny_models, out))
    finally:
        torch.set_num_threads(before)
    return out


@pytest.mark.slow
def test_audit_killed_and_resumed_writes_the_same_rows(
    audit_manifest, tiny_models, uninterrupted_audit, tmp_path
):
    out = tmp_path / "run"
    kill_when(
        audit_args(audit_manifest, tiny_models, out),
        lambda: complete_lines(out / "per_image.csv") >= 3,
        tmp_path / "log",
    )
    assert assert_whole(out) >= 2
    assert (
        2 <= complete_lines(out / "per_image.csv") - 1 < 12 and not (out / "report.html").exists()
    )
    invoke(audit_args(audit_manifest, tiny_models, out, "--resume"))
    assert_same_rows(out / "per_image.csv", uninterrupted_audit / "per_image.csv")
    assert (out / "report.html").is_file()


def test_audit_killed_inside_a_chunk_commit_redoes_that_chunk_whole(
    audit_manifest, tiny_models, uninterrupted_audit, tmp_path, monkeypatch
):
    """A chunk's rows may reach the disk in several writes: a kill between them leaves part of the
    chunk."""
    from fracdet.audit.store import AuditStore

    real = AuditStore.commit
    calls = []

    def dies_inside_the_third_commit(self, model, chunk, rows, detections, maps):
        calls.append(chunk)
        if (
            len(calls) == 3
        ):  # the maps, the detections and the first row are on disk; the second row is not
            real(self, model, chunk, rows[:1], detections, maps)
            raise KeyboardInterrupt
        real(self, model, chunk, rows, detections, maps)

    monkeypatch.setattr(AuditStore, "commit", dies_inside_the_third_commit)
    out = tmp_path / "run"
    assert (
        runner.invoke(app, ["-q", *audit_args(audit_manifest, tiny_models, out)]).exit_code == 130
    )
    assert complete_lines(out / "per_image.csv") - 1 == 5
    monkeypatch.setattr(AuditStore, "commit", real)
    invoke(audit_args(audit_manifest, tiny_models, out, "--resume"))
    assert_same_rows(out / "per_image.csv", uninterrupted_audit / "per_image.csv")
    entries = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    assert len(entries) == len(
        {(e["model"], e["index"], e["cond"]) for e in entries}
    )  # the redone chunk's boxes are not doubled
