"""The demo's front page: the audit's answer first, then the numbers and a link to every stage."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fracdet.audit.schema import AuditSchema, coverage_metric
from fracdet.fsutil import atomic_write_json
from fracdet.report import number_cell
from fracdet.stages import PipelineSummary, read_stage_json

__all__ = ["DemoSummary", "write_demo_index", "demo_numbers"]


class DemoSummary(PipelineSummary):
    """The headline numbers and where every artifact is."""


def demo_numbers(folders: Mapping[str, Path]) -> dict[str, Any]:
    """The headline numbers of a finished demo, from the files its stages wrote."""
    audit = read_stage_json(folders["audit"] / "metrics.json")
    det = read_stage_json(folders["det"] / "eval" / "det_metrics.json")
    schema = AuditSchema.from_metrics(audit)
    coverage = schema.coverage()
    numbers: dict[str, Any] = {
        "classifiers": {},
        "detector": {
            "test_map_50": (det.get("coco") or {}).get("map_50"),
            "test_map_50_95": (det.get("coco") or {}).get("map_50_95"),
        },
    }
    for name in ("standard", "adversarial", "shortcut"):
        own = read_stage_json(folders[name] / "eval" / "cls_metrics.json")
        rob = (audit.get("robustness") or {}).get(name, {})
        loc = (audit.get("localization") or {}).get(name, {})
        means = {
            code: (
                (loc.get(schema.localization_key(code, "clean")) or {}).get(coverage.key) or {}
            ).get("mean")
            for code in schema.methods
        }
        numbers["classifiers"][name] = {
            "own_test_auroc": own.get("auroc"),
            "own_test_auroc_ci95": (own.get("ci95") or {}).get("auroc"),
            "own_test_n": own.get("n"),
            "audit_clean_accuracy": rob.get("clean_accuracy"),
            "audit_pgd_accuracy": rob.get("pgd_accuracy"),
            coverage.key: means,
        }
    tests = [
        t
        for t in audit.get("paired_tests", [])
        if {t["a"], t["b"]} == {"standard", "shortcut"} and t["input"] == "clean"
    ]
    numbers["shortcut_vs_standard"] = [
        {
            k: t.get(k)
            for k in (
                "method",
                "metric",
                "n",
                "mean_a",
                "mean_b",
                "mean_diff",
                "ci_low",
                "ci_high",
                "wilcoxon_p",
            )
        }
        for t in tests
    ]
    numbers["focus_percentile"] = schema.focus
    numbers["methods"] = list(schema.methods)
    return numbers


def _coverage_key(numbers: Mapping[str, Any]) -> str:
    return coverage_metric(numbers["focus_percentile"]).key


def _coverage_change(numbers: Mapping[str, Any]) -> list[tuple[str, float, float, float | None]]:
    """Per method: (method, standard's coverage, shortcut's coverage, paired Wilcoxon p)."""
    key = _coverage_key(numbers)
    std, cut = (numbers["classifiers"][n][key] for n in ("standard", "shortcut"))
    p_by_method = {
        t["method"]: t["wilcoxon_p"] for t in numbers["shortcut_vs_standard"] if t["metric"] == key
    }
    return [
        (m, std[m], cut[m], p_by_method.get(m))
        for m in std
        if std.get(m) is not None and cut.get(m) is not None
    ]


def _changes(rows: list[tuple[str, float, float, float | None]]) -> str:
    return ", ".join(
        f"{m} {a:.2f} → {b:.2f}" + ("" if p is None else f" (paired p {p:.1g})")
        for m, a, b, p in rows
    )


def _coverage_sentence(numbers: Mapping[str, Any]) -> str | None:
    """Where the shortcut classifier looks, judged per method: its coverage at most half the
    standard one's with paired p < 0.01 is "looks elsewhere"; the other methods are named too."""
    focus = numbers["focus_percentile"]
    rows = _coverage_change(numbers)
    if not rows:
        return None
    halved = [r for r in rows if r[2] <= 0.5 * r[1] and r[3] is not None and r[3] < 0.01]
    rest = [r for r in rows if r not in halved]
    share = (
        f"coverage@{focus:g} (the share of the fracture boxes inside the top {focus:g}% attributed "
        f"pixels; a random map: {focus / 100:.2f})"
    )
    if not halved:
        return (
            "The audit does not show the shortcut classifier looking elsewhere: "
            f"{share}, standard → shortcut classifier: {_changes(rows)}."
        )
    text = (
        f"They are not right for the same reason: {share} falls by half or more from the standard "
        "to the shortcut classifier with "
        f"{_changes(halved)}: the shortcut classifier looks at something other than the fracture."
    )
    return text + (f" With {_changes(rest)} it falls less." if rest else "")


def _answer(numbers: Mapping[str, Any]) -> str:
    """What the numbers say, worded by the numbers: no claim the audit did not find."""
    c = numbers["classifiers"]
    std, adv, cut = c["standard"], c["adversarial"], c["shortcut"]
    parts = [
        f"Test AUROC on their own test sets: standard {number_cell(std['own_test_auroc'])}, "
        f"adversarially trained {number_cell(adv['own_test_auroc'])}, "
        f"shortcut {number_cell(cut['own_test_auroc'])}."
    ]
    coverage = _coverage_sentence(numbers)
    if coverage:
        parts.append(coverage)
    a_std, a_adv = std["audit_pgd_accuracy"], adv["audit_pgd_accuracy"]
    if a_std is not None and a_adv is not None:
        verdict = (
            "adversarial training bought robustness"
            if a_adv - a_std >= 0.2
            else "adversarial training did not buy clear robustness here"
        )
        parts.append(
            f"Under ℓ∞ PGD at 4/255 the standard classifier keeps {a_std:.2f} accuracy and the "
            f"adversarially trained one {a_adv:.2f}: {verdict}."
        )
    parts.append(
        f"The detector reaches test mAP@0.5 {number_cell(numbers['detector']['test_map_50'])} "
        "(pycocotools)."
    )
    return " ".join(parts)


def _artifacts(out: Path, folders: Mapping[str, Path]) -> list[tuple[str, Path]]:
    """What a user opens next, in the order they would."""
    found = [("front page", out / "index.html"), ("audit report", folders["audit"] / "report.html")]
    found += [
        (f"{n} classifier", folders[n] / "best.safetensors")
        for n in ("standard", "adversarial", "shortcut")
    ]
    found += [
        ("detector", folders["det"] / "train" / "weights" / "best.pt"),
        ("predictions on new files", folders["predict"] / "out" / "predictions.csv"),
    ]
    return [(what, path) for what, path in found if path.is_file()]


def write_demo_index(
    out: Path, cfg: Any, folders: Mapping[str, Path], seconds: Mapping[str, float], *, quick: bool
) -> DemoSummary:
    """``index.html`` (+ ``index.md``, ``summary.json``) and the summary the CLI prints."""
    from fracdet.report import Section, write_report

    numbers = demo_numbers(folders)
    audit = folders["audit"]
    grids = [audit / "figures" / f"grid_{name}.png" for name in ("standard", "shortcut")]
    note = " (quick profile: fewer images and epochs, so weaker numbers)" if quick else ""
    sections = [
        Section(
            "The answer" + note, text=_answer(numbers), figures=[g for g in grids if g.is_file()]
        )
    ]
    rows = []
    for name, c in numbers["classifiers"].items():
        rows.append(
            {
                "classifier": name,
                "own test AUROC": c["own_test_auroc"],
                "95% CI": c["own_test_auroc_ci95"],
                "test images": c["own_test_n"],
                "audit acc (clean)": c["audit_clean_accuracy"],
                "audit acc (PGD 4/255)": c["audit_pgd_accuracy"],
                **{
                    f"{code} cov@{numbers['focus_percentile']:g}": v
                    for code, v in c[_coverage_key(numbers)].items()
                },
            }
        )
    sections.append(
        Section(
            "Classifiers",
            text=(
                "Own test AUROC: on the test split of the data each was trained on. Audit columns: "
                "on the shortcut set's test images."
            ),
            table=rows,
        )
    )
    if numbers["shortcut_vs_standard"]:
        sections.append(
            Section(
                "Shortcut vs standard: paired tests (clean inputs)",
                table=numbers["shortcut_vs_standard"],
            )
        )
    sections.append(Section("Detector", table=numbers["detector"]))
    figures = [audit / "figures" / name for name in ("robustness.png", "coverage.png")]
    overlays = sorted((folders["predict"] / "out" / "overlays").rglob("*.png"))[:3]
    sections.append(Section("Figures", figures=[f for f in figures if f.is_file()] + overlays))
    links = [("audit report", audit / "report.html")] + [
        (f"{n} classifier: eval-cls report", folders[n] / "eval" / "report.html")
        for n in ("standard", "adversarial", "shortcut")
    ]
    links += [
        ("detector: eval-det metrics", folders["det"] / "eval" / "det_metrics.json"),
        (
            "predict on new JPEG / 16-bit PNG / DICOM files",
            folders["predict"] / "out" / "predictions.csv",
        ),
    ]
    sections.append(
        Section(
            "Every stage",
            text="Seconds per stage (0: reused from an earlier run).",
            table=dict(seconds),
            links=links,
        )
    )
    index, _ = write_report(
        out / "index.html",
        title="fracdet demo: right for the right reason, under attack?",
        sections=sections,
    )
    atomic_write_json(
        out / "summary.json",
        {
            "numbers": numbers,
            "seconds": dict(seconds),
            "folders": {k: str(v) for k, v in folders.items()},
            "quick": quick,
        },
    )
    focus = numbers["focus_percentile"]
    lines = [f"demo{note}: {_answer(numbers)}"]
    for name, c in numbers["classifiers"].items():
        cov = ", ".join(
            f"{m} {v:.2f}" for m, v in c[_coverage_key(numbers)].items() if v is not None
        )
        lines.append(
            f"  {name}: own test AUROC {number_cell(c['own_test_auroc'])}, audit accuracy clean "
            f"{number_cell(c['audit_clean_accuracy'])} / PGD "
            f"{number_cell(c['audit_pgd_accuracy'])}, "
            f"coverage@{focus:g} {cov or '–'} (random {focus / 100:.2f})"
        )
    lines.append(
        "  stages (s): "
        + ", ".join(f"{k} {v:.0f}" if v else f"{k} reused" for k, v in seconds.items())
        + f"; {sum(seconds.values()) / 60:.1f} min this run"
    )
    lines += [f"  {what}: {path}" for what, path in _artifacts(out, folders)]
    lines.append(f"report: {index}")
    return DemoSummary(out, index, tuple(lines))
