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
import mimetypes
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fracdet.fsutil import atomic_write_text
from fracdet.report.tables import Table, html_table, markdown_table

__all__ = ["FOOTER", "Section", "write_report"]

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
    table: Table | None = None
    figures: list[Path] = field(default_factory=list)
    links: list[tuple[str, Path]] = field(default_factory=list)


def _relative(path: Path, folder: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), folder.resolve())).as_posix()


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
            parts.append(html_table(section.table))
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
        if section.table is not None and (table := markdown_table(section.table)):
            parts.append(table)
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
