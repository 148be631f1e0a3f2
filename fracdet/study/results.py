"""The study's results page: measured numbers with CIs, side by side with the published ones.

``index.html`` (+ its Markdown twin ``index.md``) and ``comparison.md``, whose tables have the
shape of ``reports/fracatlas/README.md`` so a real run's numbers can be pasted there as they
are. Every sentence about the hardware shortcut is worded from the numbers: the page claims
nothing the audit did not measure. The numbers are read by :mod:`~fracdet.study.numbers`,
tabled by :mod:`~fracdet.study.tables` and worded by :mod:`~fracdet.study.wording`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fracdet.fsutil import atomic_write_json, atomic_write_text
from fracdet.report import ci_cell
from fracdet.stages import PipelineSummary
from fracdet.study.numbers import study_numbers
from fracdet.study.tables import (
    classifier_rows,
    comparison_markdown,
    detector_rows,
    group_rows,
    run_label,
)
from fracdet.study.wording import answer, gap_text, gaps_text

__all__ = ["StudySummary", "write_study_page"]


class StudySummary(PipelineSummary):
    """Where the page is and its headline lines (what ``fracdet run`` prints)."""


def write_study_page(
    out: Path,
    cfg: Any,
    folders: Mapping[str, Path],
    seconds: Mapping[str, float],
    inits: Mapping[str, Any],
) -> StudySummary:
    """``index.html`` (+ ``index.md``), ``comparison.md``, ``summary.json``; what the CLI prints."""
    from fracdet.report import Section, write_report

    numbers = study_numbers(folders)
    label = run_label(cfg)
    audit = folders["audit"]
    sections = [
        Section(
            "The answer",
            text=answer(numbers, cfg, inits),
            figures=[f for f in [audit / "figures" / "grid_standard.png"] if f.is_file()],
        )
    ]
    sections.append(
        Section(
            "Detector against the published numbers",
            text=f"Official localization split; {cfg.det_model} → {inits['detector']}.",
            table=detector_rows(numbers, label),
        )
    )
    sections.append(
        Section(
            "Classifiers against the published numbers",
            text=f"Test split of all images; starting weights: {inits['classifier']}. "
            "Accuracies from the audit (Wilson CIs), AUROC from eval-cls (bootstrap CI).",
            table=classifier_rows(numbers, label),
        )
    )
    hardware = [text for name in numbers["classifiers"] if (text := gap_text(numbers, name))]
    if hardware:
        sections.append(Section("Hardware: a shortcut?", text=" ".join(hardware)))
    for column in numbers["heldout_groups"]:
        sections.append(
            Section(
                f"Shortcut check on every fractured val + test image: by {column}",
                text="Both classifiers on all fractured images the "
                "classifiers did not train on (val chose their epoch and threshold), no detector: "
                "the test split alone holds too few "
                "hardware images. Sensitivity, coverage and energy in box as below.",
                table=group_rows(numbers, column, "heldout_groups"),
            )
        )
    for column in numbers["groups"]:
        sections.append(
            Section(
                f"Shortcut check: by {column}",
                text=(
                    "Test split. Coverage and energy in box against the fracture boxes (fractured "
                    "images only); "
                    "sensitivity: accuracy on the fractured images; agreement: classifier decision "
                    "vs 'the detector finds a box'."
                ),
                table=group_rows(numbers, column),
            )
        )
    agreement = [
        {
            "classifier": m,
            "agreement (clean)": ci_cell(a["clean"]["agreement"], a["clean"]["agreement_ci95"]),
            "Cohen's κ": a["clean"]["cohen_kappa"],
            "detector image AUROC": a["clean"].get("det_image_auroc"),
        }
        for m, a in numbers["agreement"].items()
    ]
    if agreement:
        sections.append(
            Section(
                "Classifier–detector agreement",
                text="On the audit's test images (fractured and intact).",
                table=agreement,
            )
        )
    sections.append(Section("What the gaps come from", text=gaps_text(cfg, inits)))
    splits = [
        {"dataset": name, "split": split, **counts}
        for name, per in numbers["splits"].items()
        if per
        for split, counts in per.items()
    ]
    sections.append(
        Section(
            "Data",
            text=(
                "data: every image, for the classifiers; data-det: the official localization "
                "split, for the detector. "
                f"{len(numbers['notes'])} image(s) kept with a note (e.g. bytes after the JPEG end "
                "marker)."
            ),
            table=splits,
        )
    )
    links = [("audit report", audit / "report.html")]
    if "audit-heldout" in folders:
        links.append(
            (
                "audit report: every fractured val + test image",
                folders["audit-heldout"] / "report.html",
            )
        )
    links += [
        (f"{n} classifier: eval-cls report", folders[n] / "eval" / "report.html")
        for n in ("standard", "pgd")
    ]
    links += [
        ("detector: eval-det metrics", folders["det"] / "eval" / "det_metrics.json"),
        ("comparison tables (Markdown)", out / "comparison.md"),
    ]
    sections.append(
        Section(
            "Every stage",
            text="Seconds per stage (0: reused from an earlier run).",
            table=dict(seconds),
            links=[(t, p) for t, p in links if p.is_file() or p.name == "comparison.md"],
        )
    )
    sections.append(
        Section(
            "Settings",
            table={
                "profile": cfg.profile,
                "source": str(cfg.source),
                "seed": cfg.seed,
                "classifier weights": inits["classifier"],
                "detector weights": inits["detector"],
                "device": cfg.device or "auto",
            },
        )
    )
    atomic_write_text(out / "comparison.md", comparison_markdown(numbers, cfg, inits))
    index, _ = write_report(
        out / "index.html",
        title=f"fracdet on FracAtlas ({label}): measured, with CIs, against the published numbers",
        sections=sections,
    )
    atomic_write_json(
        out / "summary.json",
        {
            "numbers": numbers,
            "seconds": dict(seconds),
            "inits": dict(inits),
            "profile": cfg.profile,
            "folders": {k: str(v) for k, v in folders.items()},
        },
    )
    return StudySummary(
        out,
        index,
        (
            f"study ({label}): {answer(numbers, cfg, inits)}",
            f"report: {index}",
            f"tables to paste: {out / 'comparison.md'}",
        ),
    )
