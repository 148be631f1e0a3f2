"""The study's tables: published numbers beside this run's, and the per-group shortcut rows.

``comparison.md`` has the shape of ``reports/fracatlas/README.md`` so a real run's numbers can
be pasted there as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fracdet.audit.groups import value_rows
from fracdet.audit.schema import ENERGY, coverage_metric
from fracdet.report import ci_cell, estimate_cell, markdown_table

__all__ = [
    "DETECTOR_REFERENCES",
    "CLASSIFIER_REFERENCES",
    "DETECTOR_COLUMNS",
    "CLASSIFIER_COLUMNS",
    "detector_rows",
    "classifier_rows",
    "group_rows",
    "run_label",
    "comparison_markdown",
]


#: Published detection results on FracAtlas, as cited by the issue that set this study up;
#: ``None`` where we hold no number (test-set size: only the dataset paper's is known to be
#: the official 61-image split).
DETECTOR_REFERENCES: tuple[dict[str, Any], ...] = (
    {
        "detector": "YOLOv8s",
        "test images": "61",
        "source": "FracAtlas dataset paper (Abedeen et al., Sci. Data 2023)",
        "P": "0.807",
        "R": "0.473",
        "mAP@0.5": "0.562",
    },
    {
        "detector": "YOLOv8m",
        "test images": None,
        "source": "later work on FracAtlas",
        "P": None,
        "R": None,
        "mAP@0.5": "≈0.58",
    },
    {
        "detector": "YOLOv8s and others, retrained",
        "test images": None,
        "source": "2026 comparison study",
        "P": None,
        "R": None,
        "mAP@0.5": "0.40 (YOLOv8s) – 0.48",
    },
)
#: The robust-transfer study's range over its models (clean test accuracy, ℓ∞ PGD at 4/255).
CLASSIFIER_REFERENCES: tuple[dict[str, Any], ...] = (
    {
        "classifier": "range over its models",
        "source": "robust-transfer study on FracAtlas",
        "clean": "0.75–0.96",
        "pgd": "0–0.69",
        "auroc": None,
    },
)
DETECTOR_COLUMNS = ("detector", "test images", "P", "R", "mAP@0.5 [95% CI]", "source")
CLASSIFIER_COLUMNS = (
    "classifier",
    "test images",
    "clean accuracy [95% CI]",
    "PGD-4/255 accuracy [95% CI]",
    "AUROC [95% CI]",
    "source",
)


def detector_rows(numbers: Mapping[str, Any], run_label: str) -> list[dict[str, Any]]:
    d = numbers["detector"]
    measured = {
        "detector": f"fracdet: {run_label}",
        "test images": d["n_images"] if d["n_images"] is not None else "–",
        "P": ci_cell(d["precision"], None),
        "R": ci_cell(d["recall"], None),
        "mAP@0.5 [95% CI]": ci_cell(d["map_50"], d["map_50_ci95"]),
        "source": "measured (this run; P/R: Ultralytics val at best F1; mAP: pycocotools)",
    }
    published = [
        {
            "detector": r["detector"],
            "test images": r["test images"] or "–",
            "P": r["P"] or "–",
            "R": r["R"] or "–",
            "mAP@0.5 [95% CI]": r["mAP@0.5"],
            "source": r["source"],
        }
        for r in DETECTOR_REFERENCES
    ]
    return [*published, measured]


def classifier_rows(numbers: Mapping[str, Any], run_label: str) -> list[dict[str, Any]]:
    rows = [
        {
            "classifier": r["classifier"],
            "test images": "–",
            "clean accuracy [95% CI]": r["clean"],
            "PGD-4/255 accuracy [95% CI]": r["pgd"],
            "AUROC [95% CI]": r["auroc"] or "–",
            "source": r["source"],
        }
        for r in CLASSIFIER_REFERENCES
    ]
    for name, c in numbers["classifiers"].items():
        rows.append(
            {
                "classifier": f"fracdet {name}: {run_label}",
                "test images": c["n"] if c["n"] is not None else "–",
                "clean accuracy [95% CI]": ci_cell(c["clean_accuracy"], c["clean_accuracy_ci95"]),
                "PGD-4/255 accuracy [95% CI]": ci_cell(c["pgd_accuracy"], c["pgd_accuracy_ci95"]),
                "AUROC [95% CI]": ci_cell(c["auroc"], c["auroc_ci95"]),
                "source": "measured (this run)",
            }
        )
    return rows


def group_rows(
    numbers: Mapping[str, Any], column: str, key: str = "groups"
) -> list[dict[str, Any]]:
    """One row per classifier and value of ``column``.

    ``key``: ``groups`` (the test audit) or ``heldout_groups``.
    """
    entry = numbers.get(key, {}).get(column)
    if not entry:
        return []
    focus = numbers["focus_percentile"]
    coverage = coverage_metric(focus)
    rows = []
    for row, g in value_rows(column, entry):
        for measure, label in (
            ("clean_accuracy", "accuracy"),
            ("clean_sensitivity", "sensitivity"),
        ):
            row[f"{label} [95% CI]"] = estimate_cell(g.get(measure), "value")
        for code, loc in g["localization"].items():
            row[f"{code} coverage@{focus:g}"] = estimate_cell(loc[coverage.key])
            row[f"{code} energy in box"] = estimate_cell(loc[ENERGY.key])
        if key == "groups":  # the held-out audit runs without the detector
            row["agrees with detector"] = estimate_cell(g.get("agreement"), "value")
        rows.append(row)
    return rows


def _markdown(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A table of ``comparison.md``: its own paragraph ("" without rows)."""
    table = markdown_table(rows, columns)
    return f"{table}\n" if table else ""


def run_label(cfg: Any) -> str:
    """How the page names this run: by its profile."""
    return f"{cfg.profile} profile"


def comparison_markdown(numbers: Mapping[str, Any], cfg: Any, inits: Mapping[str, Any]) -> str:
    """The tables of ``reports/fracatlas/README.md``, with this run's measured rows filled in."""
    label = run_label(cfg)
    parts = [
        "### Detector on the official test split\n\n",
        _markdown(detector_rows(numbers, label), DETECTOR_COLUMNS),
        f"\nfracdet detector: {cfg.det_model} → {inits['detector']}; {cfg.det_imgsz} px, "
        f"{cfg.det_epochs} epochs.\n",
        "\n### Classifiers: clean and under ℓ∞ PGD at 4/255\n\n",
        _markdown(classifier_rows(numbers, label), CLASSIFIER_COLUMNS),
        f"\nfracdet classifiers: {cfg.cls_backbone} at {cfg.cls_image_size} px, {cfg.cls_epochs} "
        f"epochs, starting from {inits['classifier']}; "
        f"PGD: {cfg.adv} fine-tuning for {cfg.adv_epochs} epochs (ε {cfg.adv_eps:.4f}, "
        f"{cfg.adv_steps} steps). Audit PGD: ε {cfg.audit_eps}, {cfg.audit_steps} steps.\n",
    ]
    for column in numbers["groups"]:
        parts += [
            f"\n### By {column} (test split)\n\n",
            _markdown(group_rows(numbers, column)),
        ]
    for column in numbers.get("heldout_groups", {}):
        parts += [
            f"\n### By {column} (every fractured val + test image)\n\n",
            _markdown(group_rows(numbers, column, "heldout_groups")),
        ]
    return "".join(parts)
