"""Tables of every fracdet report: cells as text, and one table as HTML or as Markdown.

Every page (eval-cls, eval-det, the audit, the demo, the study) formats its numbers here, so a
number with its 95% CI reads the same everywhere (``0.812 [0.700–0.900]``) and a missing one
is always "–".
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MISSING",
    "Table",
    "is_number",
    "format_value",
    "number_cell",
    "ci_cell",
    "estimate_cell",
    "html_table",
    "markdown_table",
]

#: What a table shows where there is no number.
MISSING = "–"

#: A table: a mapping (key/value rows) or a list of mappings (one row each).
Table = Mapping[str, Any] | Sequence[Mapping[str, Any]]


def is_number(value: Any) -> bool:
    """A real number and not a bool: right-aligned in tables, plotted in training curves."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def format_value(value: Any) -> str:
    """A table cell as text: 4 significant digits, ``[lo, hi]`` pairs as ``lo–hi``.

    Integers stay exact, ``None`` and nan become "–", lists of non-numbers are joined with
    "; ", mappings become ``key: value`` pairs.
    """
    if value is None:
        return MISSING
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return MISSING
        return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {format_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and all(is_number(v) for v in value):
            return f"{format_value(value[0])}–{format_value(value[1])}"
        if value and all(isinstance(v, (list, tuple)) for v in value):  # e.g. a confusion matrix
            return "[" + ", ".join("[" + ", ".join(map(format_value, v)) + "]" for v in value) + "]"
        return "; ".join(format_value(v) for v in value)
    if isinstance(value, Path):
        return value.as_posix()
    return str(value)


def number_cell(
    value: float | None, digits: int = 3, *, scale: float = 1.0, missing: str = MISSING
) -> str:
    """``value * scale`` with ``digits`` decimals (``scale=100``: a share in percent)."""
    return missing if value is None else f"{scale * value:.{digits}f}"


def ci_cell(
    value: float | None, ci: Sequence[float] | None, digits: int = 3, *, scale: float = 1.0
) -> str:
    """A number and its CI, ``0.812 [0.700–0.900]``; without a CI the number alone."""
    if value is None:
        return MISSING
    text = number_cell(value, digits, scale=scale)
    if ci:
        low, high = (number_cell(bound, digits, scale=scale) for bound in ci[:2])
        text += f" [{low}–{high}]"
    return text


def estimate_cell(
    entry: Mapping[str, Any] | None, key: str = "mean", digits: int = 3, *, scale: float = 1.0
) -> str:
    """:func:`ci_cell` of an estimate as the audit stores it: ``{key: value, "ci95": [lo, hi]}``."""
    if not entry or entry.get(key) is None:
        return MISSING
    return ci_cell(entry[key], entry.get("ci95"), digits, scale=scale)


def _columns_and_rows(
    table: Table, columns: Sequence[str] | None = None
) -> tuple[list[str], list[list[Any]]]:
    """(column names, rows of raw values); columns in order of first appearance unless given."""
    if isinstance(table, Mapping):
        return ["name", "value"], [[key, value] for key, value in table.items()]
    named = [{str(k): v for k, v in row.items()} for row in table]
    if columns is None:
        columns = list(dict.fromkeys(k for row in named for k in row))
    return list(columns), [[row.get(c) for c in columns] for row in named]


def html_table(table: Table, columns: Sequence[str] | None = None) -> str:
    """One ``<table>``, escaped; numbers right-aligned (``td.num``)."""
    columns, rows = _columns_and_rows(table, columns)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{html.escape(format_value(v))}</td>'
            if is_number(v)
            else f"<td>{html.escape(format_value(v))}</td>"
            for v in row
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_table(table: Table, columns: Sequence[str] | None = None) -> str:
    """A GitHub Markdown table (pipes escaped, numeric columns right-aligned); "" without rows."""
    columns, rows = _columns_and_rows(table, columns)
    if not rows:
        return ""
    lines = [
        "| " + " | ".join(_md_cell(c) for c in columns) + " |",
        "| "
        + " | ".join(
            "---:" if all(is_number(r[i]) for r in rows) else "---" for i in range(len(columns))
        )
        + " |",
    ]
    lines += ["| " + " | ".join(_md_cell(format_value(v)) for v in row) + " |" for row in rows]
    return "\n".join(lines)
