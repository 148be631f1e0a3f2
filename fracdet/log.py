"""One logging and progress convention for the library and the CLI.

``--verbose`` shows debug messages, ``--quiet`` only warnings and hides progress bars.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["setup_logging", "progress"]

T = TypeVar("T")
_state = {"progress": True, "active": False}


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Configure the ``fracdet`` logger once; later calls change the level only."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logger = logging.getLogger("fracdet")
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        # stderr: stdout carries each command's one-line result, which scripts may parse
        handler = RichHandler(
            console=Console(stderr=True), show_path=False, show_time=False, markup=False
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)
    _state["progress"] = not quiet


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a rich progress bar (items/s, ETA) unless ``--quiet``.

    Inside another bar (e.g. the detector called per batch of an audit) only the outer bar
    is shown: rich allows one live display at a time.
    """
    if not _state["progress"] or _state["active"]:
        yield from items
        return
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(show_speed=True),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    _state["active"] = True
    try:
        # stderr, like the logs: stdout carries only the command's result line
        with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
            yield from bar.track(items, total=total, description=description)
    finally:
        _state["active"] = False
