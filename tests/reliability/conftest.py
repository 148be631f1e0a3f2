"""The reliability suite's summary: how many bad-input and fuzz cases ran, and how many were handled.

A case is handled when its test passes: a clean one-line error, or the bad item skipped and
recorded while the rest is converted; for the fuzz targets, no exception but ``FracdetError``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_SUITE = Path(__file__).parent.name
_outcomes: dict[str, bool] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if Path(report.nodeid.split("::")[0]).parent.name != _SUITE:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        if report.skipped:
            return
        _outcomes[report.nodeid] = report.passed


def pytest_terminal_summary(terminalreporter) -> None:
    if _outcomes:
        handled = sum(_outcomes.values())
        terminalreporter.write_line(f"reliability: {len(_outcomes)} cases, {handled} handled")
