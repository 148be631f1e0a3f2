"""Figures and report files shared by every fracdet report (eval-cls, audit, demo).

Figures are drawn on a bare :class:`matplotlib.figure.Figure` (no pyplot state, so nothing to
leak between calls or threads) and saved as PNG. A report is written twice: a self-contained
HTML file (figures embedded, so it survives being emailed) and a Markdown twin that links the
PNG files for reading in a repository. Files are written to a temporary name and renamed, so an
interrupted run leaves no half-written file; refusing to overwrite is the caller's job
(:func:`fracdet.fsutil.atomic_output_dir`).
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
from matplotlib.figure import Figure
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

from fracdet.cls.metrics import check_binary_inputs, expected_calibration_error, reliability_curve
from fracdet.confusion import confusion_at
from fracdet.fsutil import atomic_write_text
from fracdet.report.figures import mark_undefined, new_figure, save_figure

__all__ = [
    "Section",
    "plot_roc",
    "plot_pr",
    "plot_confusion",
    "plot_reliability",
    "plot_curves",
    "write_report",
    "format_value",
]

logger = logging.getLogger(__name__)

FOOTER = "Research software, not a medical device."
_ONE_CLASS = "undefined: only one class in y_true"
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


# --------------------------------------------------------------------------- files


def _save(fig: Figure, path: Path) -> Path:
    return save_figure(fig, path)


def _new_figure(size: tuple[float, float] = (5.0, 4.5)) -> tuple[Figure, Any]:
    return new_figure(size)


def _undefined(ax: Any, message: str = _ONE_CLASS) -> None:
    mark_undefined(ax, message)


def _rates_at(y: np.ndarray, p: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """(FPR, TPR, precision) of ``prob >= threshold``; precision is nan with no positive call."""
    counts = confusion_at(y, p, threshold)
    precision = counts.ppv
    return float(counts.fpr or 0.0), float(counts.sensitivity or 0.0), math.nan if precision is None else precision


# --------------------------------------------------------------------------- figures


def plot_roc(
    y_true: Any,
    prob: Any,
    path: Path,
    *,
    operating_point: float | None = None,
    title: str = "ROC curve",
) -> Path:
    """ROC curve with AUROC in the legend and, if given, the threshold's (FPR, TPR) marked."""
    y, p = check_binary_inputs(y_true, prob)
    fig, ax = _new_figure()
    ax.set_title(title)
    if y.min() == y.max():
        _undefined(ax)
    else:
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, lw=2, label=f"AUROC = {auc(fpr, tpr):.3f}")
        ax.plot([0, 1], [0, 1], ls="--", lw=1, color="grey", label="chance")
        if operating_point is not None:
            x, t, _ = _rates_at(y, p, operating_point)
            ax.plot([x], [t], "o", ms=8, color="crimson",
                    label=f"threshold {operating_point:.3g} (FPR {x:.2f}, TPR {t:.2f})")  # fmt: skip
        ax.set(xlabel="False positive rate (1 - specificity)",
               ylabel="True positive rate (sensitivity)", xlim=(0, 1), ylim=(0, 1.02))  # fmt: skip
        ax.legend(loc="lower right", fontsize=8)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_pr(
    y_true: Any,
    prob: Any,
    path: Path,
    *,
    operating_point: float | None = None,
    title: str = "Precision-recall curve",
) -> Path:
    """Precision-recall curve with AP in the legend, prevalence as the chance line."""
    y, p = check_binary_inputs(y_true, prob)
    fig, ax = _new_figure()
    ax.set_title(title)
    if y.min() == y.max():
        _undefined(ax)
    else:
        precision, recall, _ = precision_recall_curve(y, p)
        ap = average_precision_score(y, p)
        ax.step(recall, precision, where="post", lw=2, label=f"AP = {ap:.3f}")
        prevalence = float(y.mean())
        ax.axhline(prevalence, ls="--", lw=1, color="grey", label=f"prevalence {prevalence:.2f}")
        if operating_point is not None:
            _, r, pr = _rates_at(y, p, operating_point)
            if not math.isnan(pr):
                ax.plot([r], [pr], "o", ms=8, color="crimson",
                        label=f"threshold {operating_point:.3g} (recall {r:.2f}, precision {pr:.2f})")  # fmt: skip
        ax.set(xlabel="Recall (sensitivity)", ylabel="Precision (PPV)", xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(loc="lower left", fontsize=8)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_confusion(
    cm: Any, class_names: Sequence[str], path: Path, *, title: str = "Confusion matrix"
) -> Path:
    """Confusion matrix (rows = truth, columns = prediction) with counts written in the cells."""
    counts = np.asarray(cm)
    if (
        counts.ndim != 2
        or counts.shape[0] != counts.shape[1]
        or counts.shape[0] != len(class_names)
    ):
        raise ValueError(
            f"cm must be square with one row per class name, got shape {counts.shape} "
            f"and {len(class_names)} class names"
        )
    size = max(3.5, 1.0 + 0.8 * len(class_names))
    fig, ax = _new_figure((size + 1.0, size))
    image = ax.imshow(counts, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, labels=[str(c) for c in class_names], rotation=30, ha="right")
    ax.set_yticks(ticks, labels=[str(c) for c in class_names])
    ax.set(xlabel="Predicted", ylabel="True", title=title)
    high = counts.max() / 2 if counts.size and counts.max() > 0 else 0
    for (i, j), value in np.ndenumerate(counts):
        text = f"{value:g}" if np.issubdtype(counts.dtype, np.floating) else str(value)
        ax.text(j, i, text, ha="center", va="center",
                color="white" if value > high else "black", fontsize=11)  # fmt: skip
    return _save(fig, path)


def plot_reliability(
    y_true: Any, prob: Any, path: Path, *, n_bins: int = 15, title: str = "Reliability"
) -> Path:
    """Reliability diagram (fraction positive per probability bin) with the ECE in the title.

    Calibration is defined on one class too (all fractions are 0 or 1), so nothing is special
    cased; the histogram underneath shows where the predictions lie.
    """
    curve = reliability_curve(y_true, prob, n_bins=n_bins)
    ece = expected_calibration_error(y_true, prob, n_bins=n_bins)
    fig = Figure(figsize=(5.0, 5.5))
    ax, hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    width = 1.0 / n_bins
    filled = curve.counts > 0
    ax.plot([0, 1], [0, 1], ls="--", lw=1, color="grey", label="perfect calibration")
    ax.bar(curve.bin_centers[filled], curve.fraction_positive[filled], width=width * 0.9,
           alpha=0.35, edgecolor="tab:blue", label="fraction positive")  # fmt: skip
    ax.plot(curve.mean_predicted[filled], curve.fraction_positive[filled], "o-", color="tab:blue",
            label="mean predicted vs observed")  # fmt: skip
    ax.set(ylabel="Fraction positive", xlim=(0, 1), ylim=(0, 1.02),
           title=f"{title} (ECE = {ece:.3f}, {n_bins} bins)")  # fmt: skip
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    hist.bar(curve.bin_centers, curve.counts, width=width * 0.9, color="grey")
    hist.set(xlabel="Predicted probability", ylabel="Count")
    return _save(fig, path)


def plot_curves(
    history: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    path: Path,
    *,
    title: str = "Training curves",
) -> Path:
    """Training curves: epoch against each key; losses and other metrics on separate panels.

    The x value is ``row["epoch"]`` when present, else the row's position (1-based); missing
    or ``None`` values are skipped, so a metric logged every few epochs still plots.
    """
    groups = [[k for k in keys if "loss" in k], [k for k in keys if "loss" not in k]]
    groups = [g for g in groups if g] or [[]]
    fig = Figure(figsize=(6.0, 3.2 * len(groups)))
    axes = np.atleast_1d(fig.subplots(len(groups), 1, sharex=True, squeeze=False)[:, 0])
    axes[0].set_title(title)
    drawn = False
    for ax, group in zip(axes, groups, strict=True):
        for key in group:
            points = [
                (row.get("epoch", i + 1), row[key])
                for i, row in enumerate(history)
                if _is_number(row.get(key)) and math.isfinite(row[key])
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, "o-", ms=3, label=key)
                drawn = True
        if ax.lines:
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        ax.set_ylabel("loss" if group and "loss" in group[0] else "value")
    axes[-1].set_xlabel("epoch")
    if not drawn:
        _undefined(axes[0], "no values to plot")
    return _save(fig, path)


# --------------------------------------------------------------------------- report


@dataclass
class Section:
    """One part of a report: a heading, prose, an optional table and figures (PNG paths).

    ``table`` is a mapping (rendered as key/value rows) or a list of mappings (one row each,
    columns in order of first appearance).
    """

    heading: str
    text: str = ""
    table: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None
    figures: list[Path] = field(default_factory=list)


def _is_number(value: Any) -> bool:
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
        if len(value) == 2 and all(_is_number(v) for v in value):
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
            if _is_number(v)
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
        "| " + " | ".join("---:" if rows and all(_is_number(r[i]) for r in rows) else "---"
                          for i in range(len(columns))) + " |",
    ]  # fmt: skip
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


def _render_html(title: str, sections: Sequence[Section]) -> str:
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
            link = Path(os.path.relpath(figure.resolve(), folder.resolve())).as_posix()
            parts.append(f"![{figure.stem}]({link})")
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
    page = _render_html(title, sections)
    markdown = _render_markdown(title, sections, path_md.parent)
    atomic_write_text(path_html, page)
    atomic_write_text(path_md, markdown)
    logger.debug("wrote report %s (and %s)", path_html, path_md.name)
    return path_html, path_md
