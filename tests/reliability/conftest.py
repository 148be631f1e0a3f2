"""The reliability suite's summary: how many bad-input, fuzz and kill cases ran, and how many were
handled.

A case is handled when its test passes: a clean one-line error, or the bad item skipped and
recorded while the rest is done; for the fuzz targets, no exception but ``FracdetError``; for
the kill tests, a resumed run equal to an uninterrupted one. The line counts every case and
then, in brackets, handled/ran per command (or per file, for cases that are not per command).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from .command_corpus import COMMANDS


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(classifier run, detector .pt)``: a random resnet10t at 32 px (binary) and an untrained
    1-class YOLOv8n."""
    import torch
    from conftest import make_tiny_detector

    from fracdet.cls.checkpoint import ClassifierMeta, save_classifier
    from fracdet.cls.model import create_classifier

    root = tmp_path_factory.mktemp("tiny_models")
    torch.manual_seed(0)
    model = create_classifier("resnet10t", num_outputs=1)
    meta = ClassifierMeta(
        backbone="resnet10t",
        class_names=("not_fractured", "fractured"),
        image_size=32,
        mean=tuple(model.mean.flatten().tolist()),
        std=tuple(model.std.flatten().tolist()),
    )
    save_classifier(model, meta, root / "cls_run" / "best.safetensors")
    return root / "cls_run", make_tiny_detector(root)


_SUITE = Path(__file__).parent.name
_GROUPS = {
    "test_bad_inputs": "convert",
    "test_bad_command_inputs": "commands",
    "test_fuzz_readers": "fuzz",
    "test_kill_resume": "kill/resume",
    "test_dicom_syntaxes": "dicom",
    "test_odd_files": "files",
    "test_machine_failures": "machine",
}
_outcomes: dict[str, bool] = {}


def _group(nodeid: str) -> str:
    """The command a case exercises: from its parameter id (``train-cls-...``), else from its
    file."""
    file, _, test = nodeid.partition("::")
    param = test.partition("[")[2]
    command = next((c for c in COMMANDS if param.startswith(c + "-")), None)
    return command or _GROUPS.get(Path(file).stem, Path(file).stem)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if Path(report.nodeid.split("::")[0]).parent.name != _SUITE:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        if report.skipped:
            return
        _outcomes[report.nodeid] = report.passed


def pytest_terminal_summary(terminalreporter) -> None:
    if _outcomes:
        groups: dict[str, list[bool]] = defaultdict(list)
        for nodeid, handled in _outcomes.items():
            groups[_group(nodeid)].append(handled)
        handled = sum(_outcomes.values())
        detail = ", ".join(f"{name} {sum(found)}/{len(found)}" for name, found in groups.items())
        terminalreporter.write_line(
            f"reliability: {len(_outcomes)} cases, {handled} handled ({detail})"
        )
