"""The one figure helper every report module shares: a bare Figure in, an atomically saved PNG out.

Figures are drawn on a bare :class:`matplotlib.figure.Figure` (no pyplot state, so nothing
leaks between calls or threads, and a host program's matplotlib backend is left alone).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from fracdet.fsutil import atomic_write

__all__ = ["DPI", "new_figure", "new_grid", "save_figure", "mark_undefined"]

DPI = 110


def new_figure(size: tuple[float, float] = (5.0, 4.5)) -> tuple[Figure, Any]:
    """A bare figure and its single axes."""
    fig = Figure(figsize=size)
    return fig, fig.add_subplot(1, 1, 1)


def new_grid(size: tuple[float, float], rows: int, cols: int, **kwargs: Any) -> tuple[Figure, Any]:
    """A bare figure and a ``(rows, cols)`` array of axes (always 2-D, even for one panel)."""
    fig = Figure(figsize=size)
    return fig, fig.subplots(rows, cols, squeeze=False, **kwargs)


def save_figure(fig: Figure, path: Path, *, dpi: int = DPI, tight: bool = True) -> Path:
    """Lay out and write ``fig`` as PNG to ``path`` atomically; returns ``path``."""
    if tight:
        fig.tight_layout()
    return atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))


def mark_undefined(ax: Any, message: str) -> None:
    """Say on the axes why there is nothing to draw (e.g. a split with one class)."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])
