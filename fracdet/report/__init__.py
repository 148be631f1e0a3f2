"""Reports of every fracdet command: the HTML/Markdown writer, its tables and the figures it embeds.

The package sits below the tracks: it imports only fracdet.errors, fsutil, confusion,
provenance and log (and libraries); cls, det, predict, the audit and the demo use it. Every
cell and table is formatted by ``tables``. Figures take arrays and precomputed curves, so
nothing here needs a model.
"""

from fracdet.report.cls_figures import (
    plot_confusion,
    plot_curves,
    plot_pr,
    plot_reliability,
    plot_roc,
)
from fracdet.report.html import FOOTER, Section, write_report
from fracdet.report.tables import (
    ci_cell,
    estimate_cell,
    format_value,
    html_table,
    markdown_table,
    number_cell,
)

__all__ = [
    "FOOTER",
    "Section",
    "format_value",
    "number_cell",
    "ci_cell",
    "estimate_cell",
    "html_table",
    "markdown_table",
    "write_report",
    "plot_roc",
    "plot_pr",
    "plot_confusion",
    "plot_reliability",
    "plot_curves",
]
