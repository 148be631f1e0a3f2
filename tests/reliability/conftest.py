"""The reliability suite's summary: how many bad-input, fuzz and kill cases ran, and how many were handled.

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

_SUITE = Path(__file__).parent.name
_GROUPS = {"test_bad_inputs": "convert", "test_bad_command_inputs": "commands", "test_fuzz_readers": "fuzz", "test_kill_resume": "kill/resume"}
_outcomes: dict[str, bool] = {}


def _group(nodeid: str) -> str:
    """The command a case exercises: from its parameter id (``train-cls-...``), else from its file."""
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
        terminalreporter.write_line(f"reliability: {len(_outcomes)} cases, {handled} handled ({detail})")
