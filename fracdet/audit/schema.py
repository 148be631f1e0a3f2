"""The audit's results, named in one place: per-image columns, ``metrics.json`` keys, methods.

Every writer (the engine's rows, the store's header) and every reader (summary, groups,
finalize, figures, the report, the study tables, the demo and study pages) builds its names
here. A metric of one map against the fracture boxes is one :class:`MapMetric` in
:data:`BOX_METRICS`: from there it reaches ``per_image.csv``, ``metrics.json`` (mean and CI
per classifier, method and input) and the report's table. The audited methods and
percentiles are saved in the audit's state (:meth:`AuditSchema.state`), so a reader never
guesses them from the CSV header.

Layout: per image, the fixed columns (:data:`FIXED_COLUMNS`), then per method and input
``{code}_{input}_{metric}`` (``SM_clean_cov25``, ``IG_pgd_energy``), the map stability
``{code}_rho`` and ``{code}_top{focus}``, and where a method has one its convergence delta
``{code}_{input}_delta``. In ``metrics.json``, ``localization[model]["{code}/{input}"]``
holds one estimate per metric key (``coverage@25``, ``energy_in_box``...).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fracdet.audit.config import CONDITIONS
from fracdet.audit.stats import bootstrap_mean_ci
from fracdet.explain.localization import RankedMap

__all__ = [
    "CONDITIONS",
    "FIXED_COLUMNS",
    "AUC",
    "BOX_METRICS",
    "DELTA_METHODS",
    "ENERGY",
    "POINTING",
    "RRA",
    "SPEARMAN",
    "AuditSchema",
    "ImageRow",
    "MapMetric",
    "MaskScores",
    "coverage_metric",
    "focus_percentile",
    "mean_estimate",
    "input_column",
    "input_key",
    "method_column",
    "values",
]


def method_column(code: str) -> str:
    """A column-safe method code: ``GC++`` -> ``GCpp``."""
    return code.replace("+", "p")


def focus_percentile(percentiles: Sequence[float]) -> float:
    """The percentile of detector-box coverage, map stability and paired tests (25 if audited)."""
    return 25.0 if 25.0 in percentiles else sorted(percentiles)[len(percentiles) // 2]


def _p(value: float) -> str:
    return f"{value:g}"


def input_column(name: str, cond: str) -> str:
    """A fixed per-input column of the table: ``p_clean``, ``det_max_pgd``..."""
    return f"{name}_{cond}"


def input_key(cond: str, measure: str) -> str:
    """A per-input number of ``metrics.json``'s robustness and agreement: ``clean_accuracy``..."""
    return f"{cond}_{measure}"


#: The table's first columns, the same for every audit.
FIXED_COLUMNS: tuple[str, ...] = (
    "model",
    "index",
    "key",
    "path",
    "status",
    "reason",
    "label",
    "n_gt_boxes",
    *(input_column("p", cond) for cond in CONDITIONS),
    *(input_column("pred", cond) for cond in CONDITIONS),
    "linf",
    *(input_column(name, cond) for cond in CONDITIONS for name in ("det_n", "det_max")),
    "det_gt_iou",
    "box_share",
    "pointing_baseline",
    *(input_column("det_box_share", cond) for cond in CONDITIONS),
)


@dataclass
class ImageRow:
    """One image's row: the fixed columns, per-input values by input, per-method ``scores``.

    ``scores`` is keyed by :class:`AuditSchema`'s column names. ``None`` is an empty cell
    (an image without boxes has no coverage).
    """

    model: str
    index: int
    key: str
    path: str
    status: str = "ok"
    reason: str = ""
    label: int | None = None
    n_gt_boxes: int | None = None
    p: dict[str, float] = field(default_factory=dict)
    pred: dict[str, int] = field(default_factory=dict)
    linf: float | None = None
    det_n: dict[str, int] = field(default_factory=dict)
    det_max: dict[str, float] = field(default_factory=dict)
    det_gt_iou: float | None = None
    box_share: float | None = None
    pointing_baseline: float | None = None
    det_box_share: dict[str, float] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)

    def as_row(self) -> dict[str, Any]:
        """The CSV row: per-input values as ``{name}_{input}``, empty cells left out."""
        row: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "scores":
                row.update(value)
            elif isinstance(value, dict):
                row.update({input_column(f.name, cond): v for cond, v in value.items()})
            elif value is not None:
                row[f.name] = value
        return row


def values(rows: Sequence[Mapping[str, str]], column: str) -> np.ndarray:
    """A column of ``per_image.csv`` as floats, ``nan`` where empty."""
    out = np.full(len(rows), np.nan)
    for k, row in enumerate(rows):
        text = row.get(column, "")
        if text not in ("", None):
            out[k] = float(text)
    return out


def mean_estimate(x: np.ndarray, *, n_boot: int, seed: int) -> dict[str, Any]:
    """A mean as ``metrics.json`` holds it: ``{"mean", "ci95" (bootstrap), "n"}``, finite values."""
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"mean": None, "ci95": None, "n": 0}
    ci = bootstrap_mean_ci(x, n_boot=n_boot, seed=seed)
    return {
        "mean": float(x.mean()),
        "ci95": None if ci is None else [float(ci[0]), float(ci[1])],
        "n": int(x.size),
    }


@dataclass(frozen=True)
class MaskScores:
    """What a map metric reads: the sorted map, the box mask, its pointing zone, shared scores.

    ``scores`` is :func:`fracdet.explain.localization.localization_scores` of this map and
    mask, computed once for every metric.
    """

    ranked: RankedMap
    mask: np.ndarray
    near: np.ndarray
    scores: Mapping[str, float]


@dataclass(frozen=True)
class MapMetric:
    """A score of one attribution map against one box mask: a column per method and input.

    ``key`` names it in ``metrics.json``, ``column`` ends its CSV column, ``label`` heads its
    report column. ``baseline`` is a random map's score: a number, or the fixed column whose
    mean over images it is. ``detector_label`` set: also scored against the detector's boxes.
    """

    key: str
    column: str
    label: str
    score: Callable[[MaskScores], float]
    baseline: float | str | None = None
    baseline_label: str = ""
    detector_label: str | None = None

    def on_detector(self) -> MapMetric:
        """The same metric against the detector's boxes (``det_`` names)."""
        return dataclasses.replace(
            self,
            key=f"det_{self.key}",
            column=f"det_{self.column}",
            label=self.detector_label or self.label,
            baseline=None,
        )


def _shared(key: str) -> Callable[[MaskScores], float]:
    return lambda s: s.scores[key]


def coverage_metric(p: float) -> MapMetric:
    """coverage@p: the share of box pixels among the top-p% attributed ones (random: p/100)."""
    key = f"coverage@{_p(p)}"
    return MapMetric(
        key,
        f"cov{_p(p)}",
        key,
        _shared(key),
        baseline=p / 100.0,
        detector_label=f"{key} of detector boxes",
    )


ENERGY = MapMetric(
    "energy_in_box",
    "energy",
    "energy in box",
    _shared("energy_in_box"),
    baseline="box_share",
    baseline_label="random (box share)",
    detector_label="energy in detector boxes",
)
POINTING = MapMetric(
    "pointing_game",
    "pointing",
    "pointing game",
    _shared("pointing_game"),
    baseline="pointing_baseline",
    baseline_label="random (pointing)",
)
AUC = MapMetric(
    "localization_auc",
    "auc",
    "localization AUC",
    _shared("localization_auc"),
    baseline=0.5,
    baseline_label="random (AUC)",
)
RRA = MapMetric(
    "relevance_rank_accuracy",
    "rra",
    "RRA",
    _shared("relevance_rank_accuracy"),
    baseline="box_share",
    baseline_label="random RRA (box share)",
)
#: Metrics against the boxes beside coverage (one per percentile): add a metric here.
BOX_METRICS: tuple[MapMetric, ...] = (ENERGY, POINTING, AUC, RRA)
#: Methods whose attribution comes with a convergence delta (captum's, for IG).
DELTA_METHODS: tuple[str, ...] = ("IG",)
#: The map stability keys of ``metrics.json``: Spearman's rho (top-k intersection: per schema).
SPEARMAN = "spearman"


def _box_metrics() -> tuple[MapMetric, ...]:
    return BOX_METRICS  # read when a schema is made, so a test can extend the module's tuple


@dataclass(frozen=True)
class AuditSchema:
    """The names of one audit's results: its methods (column codes) and percentiles."""

    methods: tuple[str, ...]
    percentiles: tuple[float, ...]
    box_metrics: tuple[MapMetric, ...] = field(default_factory=_box_metrics)

    @classmethod
    def of(cls, codes: Sequence[str], percentiles: Sequence[float]) -> AuditSchema:
        """From the explainers' codes (``GC++`` allowed) and the audited percentiles."""
        return cls(tuple(map(method_column, codes)), tuple(float(p) for p in percentiles))

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> AuditSchema:
        """The schema saved in ``audit_state.json``; an older state: from its config's methods."""
        saved = state.get("schema")
        if saved:
            return cls(tuple(saved["methods"]), tuple(float(p) for p in saved["percentiles"]))
        from fracdet.explain.registry import METHODS

        config = state["config"]
        return cls.of([METHODS[m] for m in config["methods"]], config["percentiles"])

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Any]) -> AuditSchema:
        """The schema of a summary (``metrics.json``)."""
        return cls(tuple(metrics["methods"]), tuple(float(p) for p in metrics["percentiles"]))

    def state(self) -> dict[str, Any]:
        """What the audit's state saves: methods and percentiles."""
        return {"methods": list(self.methods), "percentiles": list(self.percentiles)}

    @property
    def focus(self) -> float:
        return focus_percentile(self.percentiles)

    # --- metrics
    def coverage(self, p: float | None = None) -> MapMetric:
        """coverage@p, at the focus percentile unless given."""
        return coverage_metric(self.focus if p is None else p)

    def gt_metrics(self) -> tuple[MapMetric, ...]:
        """Scored against the ground-truth boxes: coverage at each percentile, then the rest."""
        return (*(coverage_metric(p) for p in self.percentiles), *self.box_metrics)

    def det_metrics(self) -> tuple[MapMetric, ...]:
        """Scored against the detector's boxes: coverage at the focus percentile, and the rest."""
        chosen = [self.coverage(), *(m for m in self.box_metrics if m.detector_label)]
        return tuple(m.on_detector() for m in chosen)

    def focus_metrics(self) -> tuple[MapMetric, ...]:
        """Compared between classifiers and between groups: coverage at the focus, energy."""
        return (self.coverage(), ENERGY)

    # --- per_image.csv
    def column(self, code: str, cond: str, metric: MapMetric) -> str:
        return f"{code}_{cond}_{metric.column}"

    def rho_column(self, code: str) -> str:
        return f"{code}_rho"

    def topk_column(self, code: str) -> str:
        return f"{code}_top{_p(self.focus)}"

    def delta_column(self, code: str, cond: str) -> str:
        return f"{code}_{cond}_delta"

    def map_name(self, code: str, cond: str) -> str:
        """The array of one method's maps on one input in a chunk's ``.npz``."""
        return f"{method_column(code)}_{cond}"

    def columns(self) -> list[str]:
        """The per-image table's header: fixed columns, then per method and input."""
        columns = list(FIXED_COLUMNS)
        for code in self.methods:
            for cond in CONDITIONS:
                columns += [
                    self.column(code, cond, m) for m in (*self.gt_metrics(), *self.det_metrics())
                ]
            columns += [self.rho_column(code), self.topk_column(code)]
            if code in DELTA_METHODS:
                columns += [self.delta_column(code, cond) for cond in CONDITIONS]
        return columns

    # --- metrics.json
    def localization_key(self, code: str, cond: str) -> str:
        return f"{code}/{cond}"

    def stability_key(self, code: str) -> str:
        return f"{code}/stability"

    def topk_key(self) -> str:
        return f"top{_p(self.focus)}_intersection"

    def delta_key(self, code: str) -> str:
        return f"{code}/convergence_delta"

    def study_label(self, code: str, p: float) -> str:
        """The robust-transfer study's column name: ``SM-25``."""
        return f"{code}-{_p(p)}"
