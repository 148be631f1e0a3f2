"""What every benchmark script does after parsing its options: run in a scratch folder, print,
save, check."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options :func:`run_and_report` reads: ``--workdir``, ``--json`` and ``--check``."""
    parser.add_argument(
        "--workdir",
        type=Path,
        help="where to make the scratch folder, removed at the end (default: the system temp dir)",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")


def run_and_report(
    args: Any,
    prefix: str,
    benchmark: Callable[[Any, Path], Any],
    print_table: Callable[[Any], None],
    targets: dict[str, float],
) -> int:
    """``benchmark(args, work)`` in a scratch folder (removed after), then the table, ``--json``
    and ``--check``.

    ``results`` must be a dataclass with ``summary()`` and ``passed()``; the exit code is 1 only
    when ``--check`` is given and a target is missed.
    """
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=args.workdir))
    try:
        results = benchmark(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(results)
    if args.json:
        payload = {
            **asdict(results),
            "median": results.summary(),
            "passed": results.passed(),
            "targets": targets,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    if args.check and not results.passed():
        print("targets missed", file=sys.stderr)
        return 1
    return 0


def print_rows(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """A plain left-aligned text table: header, a dashed rule, then the rows."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
