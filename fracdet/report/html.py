"""The report files of every fracdet command (eval-cls, audit, demo): HTML and a Markdown twin.

A report is written twice: a self-contained HTML file (figures embedded, so it survives being
emailed) and a Markdown twin that links the PNG files for reading in a repository. Files are
written to a temporary name and renamed, so an interrupted run leaves no half-written file;
refusing to overwrite is the caller's job (:func:`fracdet.fsutil.atomic_output_dir`).
"""

from __future__ import annotations

import base64
import html
import logging
import math
import mimetypes
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fracdet.fsutil import atomic_write_text

__all__ = ["FOOTER", "Section", "format_value", "is_number", "write_report"]

logger = logging.getLogger(__name__)

FOOTER = "Research software, not a medical device."
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 60rem;
       margin: 2rem auto; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .3rem; }
h2 { margin-top: 2rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1rem 0; font-size: .92rem; }
th, td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: .5rem 1rem .5rem 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .85rem; color: #555; }
footer { margin-top: 3rem; font-size: .85rem; color: #666; border-top: 1px solid #ccc; }
""".strip()


@dataclass
class Section:
    """One part of a report: a heading, prose, an optional table and figures (PNG paths).

    ``table`` is a mapping (rendered as key/value rows) or a list of mappings (one row each,
    columns in order of first appearance). ``links`` are ``(label, path)`` pairs to other
    files, written relative to the report's folder (e.g. each stage's own report).
    """

    heading: str
    text: str = ""
    table: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None
    figures: list[Path] = field(default_factory=list)
    links: list[tuple[str, Path]] = field(default_factory=list)


def _relative(path: Path, folder: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), folder.resolve())).as_posix()


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
        return "–"
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "–"
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


def _table_rows(
    table: Mapping[str, Any] | Sequence[Mapping[str, Any]],
) -> tuple[list[str], list[list[Any]]]:
    """(column names, rows of raw values) of either table form."""
    if isinstance(table, Mapping):
        return ["name", "value"], [[key, value] for key, value in table.items()]
    named = [{str(k): v for k, v in row.items()} for row in table]
    columns: list[str] = []
    for row in named:
        columns.extend(k for k in row if k not in columns)
    return columns, [[row.get(c) for c in columns] for row in named]


def _html_table(table: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> str:
    columns, rows = _table_rows(table)
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


def _md_table(table: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> str:
    columns, rows = _table_rows(table)
    lines = [
        "| " + " | ".join(_md_cell(c) for c in columns) + " |",
        "| "
        + " | ".join(
            "---:" if rows and all(is_number(r[i]) for r in rows) else "---"
            for i in range(len(columns))
        )
        + " |",
    ]
    lines += ["| " + " | ".join(_md_cell(format_value(v)) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_figure(path: Path) -> str:
    name = html.escape(path.name)
    if not path.is_file():
        logger.warning("report figure %s is missing; leaving a note instead", path)
        return f"<p><em>figure missing: {name}</em></p>"
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:{mime};base64,{data}" alt="{name}">'
        f"<figcaption>{name}</figcaption></figure>"
    )


def _html_text(text: str) -> str:
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    return "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)


def _render_html(title: str, sections: Sequence[Section], folder: Path) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for section in sections:
        parts.append(f"<section><h2>{html.escape(section.heading)}</h2>")
        if section.text:
            parts.append(_html_text(section.text))
        if section.table is not None:
            parts.append(_html_table(section.table))
        parts.extend(_html_figure(Path(f)) for f in section.figures)
        if section.links:
            items = "".join(
                f'<li><a href="{html.escape(_relative(p, folder))}">{html.escape(label)}</a></li>'
                for label, p in section.links
            )
            parts.append(f"<ul>{items}</ul>")
        parts.append("</section>")
    parts.append(f"<footer><p>{html.escape(FOOTER)}</p></footer></body></html>")
    return "\n".join(parts) + "\n"


def _render_markdown(title: str, sections: Sequence[Section], folder: Path) -> str:
    parts = [f"# {title}"]
    for section in sections:
        parts.append(f"## {section.heading}")
        if section.text:
            parts.append(section.text.strip())
        if section.table is not None:
            parts.append(_md_table(section.table))
        for figure in map(Path, section.figures):
            parts.append(f"![{figure.stem}]({_relative(figure, folder)})")
        if section.links:
            parts.append(
                "\n".join(f"- [{label}]({_relative(p, folder)})" for label, p in section.links)
            )
    parts.append(f"---\n\n*{FOOTER}*")
    return "\n\n".join(parts) + "\n"


def write_report(path_html: Path, *, title: str, sections: Sequence[Section]) -> tuple[Path, Path]:
    """Write ``path_html`` (self-contained) and its Markdown twin ``path_html.with_suffix(".md")``.

    Figures are embedded in the HTML as base64 and linked by relative path from the Markdown;
    a missing figure becomes a note (and a warning), not an error, so a report still appears.
    Section text is plain text: escaped in the HTML, written verbatim in the Markdown.
    """
    path_html = Path(path_html)
    path_md = path_html.with_suffix(".md")
    if path_md == path_html:
        raise ValueError(f"the HTML report needs a suffix other than .md, got {path_html}")
    page = _render_html(title, sections, path_html.parent)
    markdown = _render_markdown(title, sections, path_md.parent)
    atomic_write_text(path_html, page)
    atomic_write_text(path_md, markdown)
    logger.debug("wrote report %s (and %s)", path_html, path_md.name)
    return path_html, path_md
