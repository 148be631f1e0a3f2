"""Detector .pt files are pickles: every detector path loads them restricted unless the user trusts
the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from conftest import save_image
from typer.testing import CliRunner

from fracdet.cli import app
from fracdet.det.model import load_detector
from fracdet.errors import ConfigError

runner = CliRunner()


class _Payload:
    """Unpickling this creates ``marker``: the stand-in for code a crafted .pt would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def crafted(tmp_path: Path) -> tuple[Path, Path]:
    """A ``.pt`` that looks like an Ultralytics checkpoint and runs code when fully unpickled."""
    marker = tmp_path / "PAYLOAD_RAN"
    path = tmp_path / "crafted.pt"
    torch.save({"model": _Payload(marker), "train_args": {}, "epoch": -1}, path)
    return path, marker


def test_crafted_pickle_is_refused_by_default_and_the_error_names_the_flag(crafted):
    path, marker = crafted
    with pytest.raises(ConfigError, match=r"refused: .*could run code; .*--trust-pickle") as info:
        load_detector(path)
    assert info.value.path == path and "\n" not in str(info.value)
    assert not marker.exists()


def test_trust_pickle_unpickles_in_full(crafted):
    """The payload is live: only the opt-in runs it (which is why it is an opt-in)."""
    path, marker = crafted
    with pytest.raises(ConfigError, match="cannot load as an Ultralytics YOLO checkpoint"):
        load_detector(path, trust_pickle=True)
    assert marker.exists()


def test_restricted_loading_unavailable_is_refused_not_silently_unsafe(crafted, monkeypatch):
    import ultralytics.nn.tasks as tasks

    path, marker = crafted
    monkeypatch.setattr(tasks._SafeLoad, "SUPPORTED", False)  # as on torch < 2.6
    with pytest.raises(
        ConfigError, match=r"cannot load this .pt safely with torch .*--trust-pickle"
    ):
        load_detector(path)
    assert not marker.exists()


@pytest.fixture(scope="module")
def ultralytics_saved(tmp_path_factory) -> Path:
    """A one-class yolov8n built from its YAML and saved by Ultralytics itself (nothing
    downloaded)."""
    import ultralytics
    from ultralytics import YOLO

    root = tmp_path_factory.mktemp("saved")
    doc = yaml.safe_load(
        (Path(ultralytics.__file__).parent / "cfg/models/v8/yolov8.yaml").read_text()
    )
    doc["nc"] = 1
    (root / "yolov8n.yaml").write_text(yaml.safe_dump(doc))
    model = YOLO(str(root / "yolov8n.yaml"))
    model.model.names = {0: "fractured"}
    model.save(str(root / "saved.pt"))
    return root / "saved.pt"


def test_an_ultralytics_saved_model_loads_with_the_restricted_loader(
    ultralytics_saved, monkeypatch
):
    import ultralytics.nn.tasks as tasks

    seen, before = [], tasks.SAFE_LOAD
    original = tasks.torch_safe_load
    monkeypatch.setattr(
        tasks,
        "torch_safe_load",
        lambda weight, safe_only=None: seen.append(tasks.SAFE_LOAD) or original(weight, safe_only),
    )
    model = load_detector(ultralytics_saved)
    assert model.task == "detect" and dict(model.names) == {0: "fractured"}
    assert seen == [True] and tasks.SAFE_LOAD is before  # restricted for that load only


def _commands(crafted_pt: Path, data: Path, tmp_path: Path) -> dict[str, list[str]]:
    images = tmp_path / "images"
    save_image(images / "a.png", 40, 30)
    return {
        "train-det": [
            "train-det",
            str(data),
            "--model",
            str(crafted_pt),
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "runs"),
            "--device",
            "cpu",
        ],
        "eval-det": [
            "eval-det",
            str(crafted_pt),
            str(data),
            "--out",
            str(tmp_path / "eval"),
            "--device",
            "cpu",
        ],
        "predict": [
            "predict",
            str(images),
            "--det",
            str(crafted_pt),
            "--out",
            str(tmp_path / "pred"),
            "--device",
            "cpu",
        ],
    }


@pytest.mark.parametrize("command", ["train-det", "eval-det", "predict"])
def test_no_command_runs_a_crafted_pickle(command, crafted, phantom_dataset, tmp_path):
    path, marker = crafted
    result = runner.invoke(app, ["-q", *_commands(path, phantom_dataset, tmp_path)[command]])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert (
        len(lines) == 1
        and lines[0].startswith(f"error: {path}: refused")
        and "--trust-pickle" in lines[0]
    ), result.output
    assert not marker.exists()


@pytest.mark.parametrize("command", ["train-det", "eval-det", "predict"])
def test_trust_pickle_flag_reaches_the_loader(command, crafted, phantom_dataset, tmp_path):
    path, marker = crafted
    result = runner.invoke(
        app, ["-q", *_commands(path, phantom_dataset, tmp_path)[command], "--trust-pickle"]
    )
    assert (
        result.exit_code == 1 and "cannot load as an Ultralytics YOLO checkpoint" in result.output
    ), result.output
    assert marker.exists()


def test_a_damaged_pickle_is_not_called_a_refusal(tmp_path):
    path = tmp_path / "damaged.pt"
    path.write_bytes(b"\x80\x02" + b"\xff" * 40)  # a pickle header, then bytes no unpickler reads
    with pytest.raises(ConfigError, match="cannot load as an Ultralytics YOLO checkpoint") as info:
        load_detector(path)
    assert "--trust-pickle" not in str(info.value)
