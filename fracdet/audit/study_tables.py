"""The robust-transfer study's two tables, in its shape, with fracdet's additions beside them.

The study reported Table 1 (model, clean accuracy, PGD accuracy, ΔAcc, in percent) and
Table I (attribution coverage SM/DL/IG at p = 5/25/50, in percent). With
``study_tables: true`` (the ``configs/r2i.yaml`` preset) the audit report opens with both,
each followed by what the study did not report: the split and its size, 95% CIs, the budget
in grey levels, the random-map baseline and energy in box. The numbers are the audit's own
(:mod:`fracdet.audit.summary`): nothing is recomputed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from fracdet.audit.schema import CONDITIONS, ENERGY, AuditSchema
from fracdet.report import Section, estimate_cell, number_cell

__all__ = ["study_sections", "table_1", "table_1_additions", "table_i", "table_i_additions"]

TABLE_1_TEXT = (
    "Table 1 as the study reports it: accuracy on clean and on ℓ∞-PGD inputs, in percent; ΔAcc = "
    "PGD − clean, in percentage points. "
    "Accuracy at each classifier's tuned threshold."
)
TABLE_I_TEXT = (
    "Table I as the study reports it: coverage@p in percent (the share of fracture-box pixels "
    "among the top-p% attributed pixels), "
    "on clean inputs, for each attribution method and p. A random map scores p%."
)


def _pct(value: float | None) -> str:
    return number_cell(value, 1, scale=100)


def _pct_ci(entry: Mapping[str, Any] | None) -> str:
    return estimate_cell(entry, digits=1, scale=100)


def _in_255ths(value: float) -> str:
    """A budget as the study writes it: ``4/255``, or ``0.90/255`` when not a whole grey level."""
    levels = value * 255
    return f"{round(levels)}/255" if abs(levels - round(levels)) < 1e-6 else f"{levels:.2f}/255"


def _as_given(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return _in_255ths(float(Fraction(str(value))))
    except (ValueError, ZeroDivisionError):
        return str(value)


def table_1(metrics: Mapping[str, Any]) -> list[dict[str, str]]:
    """``model | Clean Acc (%) | PGD Acc (%) | ΔAcc (pp)``: the study's Table 1."""
    rows = []
    for model, rob in metrics["robustness"].items():
        clean, pgd = rob.get("clean_accuracy"), rob.get("pgd_accuracy")
        delta = None if clean is None or pgd is None else 100 * (pgd - clean)
        rows.append(
            {
                "Model": model,
                "Clean Acc (%)": _pct(clean),
                "PGD Acc (%)": _pct(pgd),
                "ΔAcc (pp)": "–" if delta is None else f"{delta:+.1f}",
            }
        )
    return rows


def table_1_additions(metrics: Mapping[str, Any]) -> list[dict[str, str]]:
    """Beside Table 1: split and n, CIs, and the budget actually applied in grey levels."""
    config = metrics["provenance"]["config"]
    rows = []
    for model, rob in metrics["robustness"].items():
        identity = metrics["provenance"]["classifiers"].get(model, {})
        pixel_eps = identity.get("pixel_eps")
        rows.append(
            {
                "Model": model,
                "split audited (n)": f"{config['split']} ({rob.get('n', 0)})",
                "clean acc % [95% CI]": _pct_ci(
                    {"mean": rob.get("clean_accuracy"), "ci95": rob.get("clean_accuracy_ci95")}
                ),
                "PGD acc % [95% CI]": _pct_ci(
                    {"mean": rob.get("pgd_accuracy"), "ci95": rob.get("pgd_accuracy_ci95")}
                ),
                "ε as set": f"{_as_given(config['eps'])} ({config['eps_space']})",
                "ε in pixels": "–" if pixel_eps is None else _in_255ths(float(pixel_eps)),
                "AUROC clean → PGD": " → ".join(
                    number_cell(rob.get(key)) for key in ("clean_auroc", "pgd_auroc")
                ),
            }
        )
    return rows


def table_i(metrics: Mapping[str, Any]) -> list[dict[str, str]]:
    """``model | SM-5 ... IG-50``: coverage on clean inputs in percent, the study's Table I."""
    schema = AuditSchema.from_metrics(metrics)
    rows = []
    for model, loc in metrics["localization"].items():
        row = {"Model": model}
        for code in schema.methods:
            entry = loc.get(schema.localization_key(code, "clean"), {})
            for p in schema.percentiles:
                row[schema.study_label(code, p)] = _pct(
                    (entry.get(schema.coverage(p).key) or {}).get("mean")
                )
        rows.append(row)
    return rows


def table_i_additions(metrics: Mapping[str, Any]) -> list[dict[str, str]]:
    """Beside Table I: CIs, the random map, energy in box against the box share, PGD inputs."""
    schema = AuditSchema.from_metrics(metrics)
    coverages = [schema.coverage(p) for p in schema.percentiles]
    rows = []
    for model, loc in metrics["localization"].items():
        base = metrics["baselines"].get(model, {})
        for code in schema.methods:
            for cond in CONDITIONS:
                entry = loc.get(schema.localization_key(code, cond), {})
                row = {"Model": model, "method": code, "input": cond}
                for p, metric in zip(schema.percentiles, coverages, strict=True):
                    row[f"cov@{p:g} % [95% CI]"] = _pct_ci(entry.get(metric.key))
                n = max(((entry.get(m.key) or {}).get("n", 0) for m in coverages), default=0)
                row |= {
                    "energy in box % [95% CI]": _pct_ci(entry.get(ENERGY.key)),
                    "random: box share %": _pct(base.get(ENERGY.key)),
                    "images with boxes": str(n),
                }
                rows.append(row)
    return rows


def study_sections(metrics: Mapping[str, Any]) -> list[Section]:
    """The study's tables and fracdet's additions, as report sections (Table I only with boxes)."""
    config = metrics["provenance"]["config"]
    sections = []
    if metrics["has_labels"]:
        sections.append(
            Section(
                "Table 1: clean vs PGD accuracy (the study's shape)",
                text=TABLE_1_TEXT,
                table=table_1(metrics),
            )
        )
        sections.append(
            Section(
                "Table 1, fracdet's additions",
                text=(
                    "The split the numbers come from and its size, Wilson 95% CIs, and the budget "
                    "each model actually got in grey levels of the [0, 1] image "
                    f"(ε is set in {config['eps_space']} space; in normalized space it is scaled "
                    "by each model's own normalisation std)."
                ),
                table=table_1_additions(metrics),
            )
        )
    if metrics["has_boxes"]:
        schema = AuditSchema.from_metrics(metrics)
        random_row = {
            "Model": "random map",
            **{
                schema.study_label(c, p): _pct(schema.coverage(p).baseline)
                for c in schema.methods
                for p in schema.percentiles
            },
        }
        sections.append(
            Section(
                "Table I: attribution coverage (the study's shape)",
                text=TABLE_I_TEXT,
                table=[*table_i(metrics), random_row],
            )
        )
        sections.append(
            Section(
                "Table I, fracdet's additions",
                text=(
                    "Bootstrap 95% CIs, energy in box against the share of the image the boxes "
                    "cover (a random map's score), and the same on PGD inputs; "
                    f"{config['split']} split, whole images, target class {config['target']}, "
                    f"channels {config['channels']}, IG steps {config['ig_steps']}."
                ),
                table=table_i_additions(metrics),
            )
        )
    return sections
