"""The audit's numbers split by an image attribute the manifest carries (``group_by``).

A shortcut shows as a gap between groups: FracAtlas' metal hardware appears on 97 of its 717
fractured images and on almost no intact one, so a classifier that learned "hardware means
fracture" is more accurate on hardware images and its attributions leave the fracture boxes
there. Per column, value and classifier: accuracy and sensitivity (Wilson CIs), coverage at
the focus percentile and energy in box against the fracture boxes (bootstrap CIs, clean inputs, one
entry per attribution method), and agreement with the detector. A column with exactly two
values also gets the gap between them, per method, tested with the Mann-Whitney U test
(images differ between groups, so the test is unpaired).

Pure aggregation over the per-image rows, like :mod:`fracdet.audit.summary`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from fracdet.audit.inputs import AuditInputs
from fracdet.audit.schema import (
    CONDITIONS,
    ENERGY,
    AuditSchema,
    coverage_metric,
    input_column,
    input_key,
    mean_estimate,
    values,
)
from fracdet.audit.stats import proportion_ci
from fracdet.report import Section, estimate_cell

__all__ = ["summarize_groups", "group_rows", "group_sections", "value_rows", "UNKNOWN"]

#: The value of an image whose manifest cell is empty.
UNKNOWN = "unknown"


def _share(hits: int, n: int) -> dict[str, Any]:
    return {
        "value": hits / n if n else None,
        "ci95": list(proportion_ci(hits, n)) if n else None,
        "n": n,
    }


def _one_group(
    rows: Sequence[Mapping[str, str]],
    schema: AuditSchema,
    *,
    threshold: float,
    det_conf: float | None,
    has_labels: bool,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(rows)}
    if has_labels:
        y = values(rows, "label").astype(int)
        out["n_positive"] = int(y.sum())
        called = {
            cond: (values(rows, input_column("p", cond)) >= threshold).astype(int)
            for cond in CONDITIONS
        }
        for cond in CONDITIONS:
            out[input_key(cond, "accuracy")] = _share(int(np.sum(called[cond] == y)), len(rows))
        # Accuracy mixes in each group's prevalence (hardware images are nearly all fractured);
        # sensitivity compares like with like: fractured images with and without the attribute.
        positive = y == 1
        out["clean_sensitivity"] = _share(
            int(np.sum(called["clean"][positive])), int(positive.sum())
        )
    out["localization"] = {
        code: {
            metric.key: mean_estimate(
                values(rows, schema.column(code, "clean", metric)), n_boot=n_boot, seed=seed
            )
            for metric in schema.focus_metrics()
        }
        for code in schema.methods
    }
    if det_conf is not None:
        det_called = (values(rows, input_column("det_max", "clean")) >= det_conf).astype(int)
        out["agreement"] = _share(
            int(np.sum(det_called == values(rows, input_column("pred", "clean")).astype(int))),
            len(rows),
        )
    return out


def _gap(
    a: Sequence[Mapping[str, str]],
    b: Sequence[Mapping[str, str]],
    column: str,
    *,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """Mean of ``a`` minus mean of ``b`` (unpaired bootstrap CI) and the Mann-Whitney U p-value."""
    from scipy.stats import mannwhitneyu

    from fracdet.cls.bootstrap import bootstrap_ci

    x, y = values(a, column), values(b, column)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    out: dict[str, Any] = {
        "n_a": int(x.size),
        "n_b": int(y.size),
        "mean_diff": None,
        "ci95": None,
        "mann_whitney_p": None,
    }
    if x.size == 0 or y.size == 0:
        return out
    out["mean_diff"] = float(x.mean() - y.mean())
    if x.size >= 2 and y.size >= 2:
        # unpaired: each group resampled within itself (a bootstrap stratified by group)
        group = np.r_[np.ones(x.size, dtype=int), np.zeros(y.size, dtype=int)]
        ci = bootstrap_ci(
            group,
            np.r_[x, y],
            lambda g, v: float(v[g == 1].mean() - v[g == 0].mean()),
            n_boot=n_boot,
            seed=seed,
            stratified=True,
        )
        out["ci95"] = None if ci is None else [ci[0], ci[1]]
        if np.ptp(np.concatenate([x, y])) > 0:
            out["mann_whitney_p"] = float(mannwhitneyu(x, y, alternative="two-sided").pvalue)
    return out


def summarize_groups(
    per_model: Mapping[str, Sequence[Mapping[str, str]]],
    inputs: AuditInputs,
    group_by: Sequence[str],
    schema: AuditSchema,
    *,
    thresholds: Mapping[str, float],
    det_conf: float | None,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """Numbers per value of each column, and the gap between two values.

    ``{column: {"values": [...], "models": {model: {value: numbers}},
    "gaps": {model: {method: gap}}}}``.

    ``thresholds`` is each classifier's operating point; ``det_conf`` is ``None`` without a
    detector. Values are sorted; an empty manifest cell is :data:`UNKNOWN`.
    """
    attribute = {item.index: item.attributes for item in inputs.items}
    out: dict[str, Any] = {}
    for column in group_by:
        value_of = {index: attrs.get(column) or UNKNOWN for index, attrs in attribute.items()}
        values = sorted(set(value_of.values()))
        entry: dict[str, Any] = {"values": values, "models": {}, "gaps": {}}
        for model, rows in per_model.items():
            split = {v: [r for r in rows if value_of.get(int(r["index"])) == v] for v in values}
            entry["models"][model] = {
                v: _one_group(
                    split[v],
                    schema,
                    threshold=thresholds[model],
                    det_conf=det_conf,
                    has_labels=inputs.has_labels,
                    n_boot=n_boot,
                    seed=seed,
                )
                for v in values
            }
            if len(values) == 2:
                a, b = values[1], values[0]  # e.g. hardware "1" minus "0"
                coverage = schema.coverage()
                entry["gaps"][model] = {
                    code: {
                        "a": a,
                        "b": b,
                        "metric": coverage.key,
                        **_gap(
                            split[a],
                            split[b],
                            schema.column(code, "clean", coverage),
                            n_boot=n_boot,
                            seed=seed,
                        ),
                    }
                    for code in schema.methods
                }
        out[column] = entry
    return out


def value_rows(
    column: str, entry: Mapping[str, Any]
) -> Iterator[tuple[dict[str, Any], Mapping[str, Any]]]:
    """A group table's rows, one per classifier and value of ``column`` (``entry``: its part
    of ``summarize_groups``): the row's first cells (classifier, value, images, fractured) and
    the numbers to fill the rest from."""
    for model, by_value in entry["models"].items():
        for value, g in by_value.items():
            row = {
                "classifier": model,
                column: value,
                "images": g["n"],
                "fractured": g.get("n_positive", "–"),
            }
            yield row, g


def group_rows(groups: Mapping[str, Any], focus: float) -> dict[str, list[dict[str, Any]]]:
    """One table per column: a row per classifier and value."""
    coverage = coverage_metric(focus)
    tables: dict[str, list[dict[str, Any]]] = {}
    for column, entry in groups.items():
        rows = []
        for row, g in value_rows(column, entry):
            row["accuracy (clean)"] = estimate_cell(g.get("clean_accuracy"), "value")
            row["sensitivity (clean)"] = estimate_cell(g.get("clean_sensitivity"), "value")
            row["accuracy (PGD)"] = estimate_cell(g.get("pgd_accuracy"), "value")
            for code, loc in g["localization"].items():
                row[f"{code} cov@{focus:g}"] = estimate_cell(loc[coverage.key])
                row[f"{code} energy"] = estimate_cell(loc[ENERGY.key])
            if "agreement" in g:
                row["agrees with detector"] = estimate_cell(g["agreement"], "value")
            rows.append(row)
        tables[column] = rows
    return tables


def group_sections(metrics: Mapping[str, Any]) -> list[Section]:
    """The report's sections for ``metrics["groups"]`` (none when the audit was not grouped)."""
    groups = metrics.get("groups") or {}
    focus = metrics["focus_percentile"]
    sections = []
    for column, rows in group_rows(groups, focus).items():
        text = (
            f"Numbers split by the manifest column {column!r}. Accuracy and sensitivity (accuracy "
            "on the fractured images): at each classifier's operating point, Wilson 95% CI. "
            f"cov@{focus:g} and energy: against the fracture boxes, clean inputs, images with "
            "boxes only, bootstrap 95% CI. "
            "Agreement: the classifier's decision vs 'the detector finds a box'."
        )
        sections.append(Section(f"By {column}", text=text, table=rows))
        gaps = [
            {
                "classifier": model,
                "method": code,
                "gap": f"{g['a']} − {g['b']}",
                "n": f"{g['n_a']} / {g['n_b']}",
                "mean difference": estimate_cell(g, "mean_diff"),
                "Mann-Whitney p": "–"
                if g["mann_whitney_p"] is None
                else f"{g['mann_whitney_p']:.3g}",
            }
            for model, by_code in groups[column]["gaps"].items()
            for code, g in by_code.items()
        ]
        if gaps:
            sections.append(
                Section(
                    f"By {column}: the gap in coverage@{focus:g}",
                    text="Unpaired: the two groups hold different images.",
                    table=gaps,
                )
            )
    return sections
