"""Reports of every fracdet command: the HTML/Markdown writer and the figures it embeds.

The package sits below the tracks: it imports only fracdet.errors, fsutil, confusion,
provenance and log (and libraries); cls, det, predict, the audit and the demo use it. Figures
take arrays and precomputed curves, so nothing here needs a model.
"""

from fracdet.report.cls_figures import (
    plot_confusion,
    plot_curves,
    plot_pr,
    plot_reliability,
    plot_roc,
)
from fracdet.report.html import FOOTER, Section, format_value, write_report

__all__ = [
    "FOOTER",
    "Section",
    "format_value",
    "write_report",
    "plot_roc",
    "plot_pr",
    "plot_confusion",
    "plot_reliability",
    "plot_curves",
]
