"""The demo's front page: the audit's answer first, then the numbers and a link to every stage."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fracdet.fsutil import atomic_write_json

__all__ = ["DemoSummary", "write_demo_index", "demo_numbers"]


@dataclass(frozen=True)
class DemoSummary:
    """The headline numbers and where every artifact is."""

    output: Path
    index: Path
    lines: tuple[str, ...]

    def line(self) -> str:
        return "\n".join(self.lines)


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def demo_numbers(folders: Mapping[str, Path]) -> dict[str, Any]:
    """The headline numbers of a finished demo, from the files its stages wrote."""
    audit = _read(folders["audit"] / "metrics.json")
    det = _read(folders["det"] / "eval" / "det_metrics.json")
    focus = audit.get("focus_percentile", 25.0)
    numbers: dict[str, Any] = {"classifiers": {}, "detector": {"test_map_50": (det.get("coco") or {}).get("map_50"), "test_map_50_95": (det.get("coco") or {}).get("map_50_95")}}
    for name in ("standard", "adversarial", "shortcut"):
        own = _read(folders[name] / "eval" / "cls_metrics.json")
        rob = (audit.get("robustness") or {}).get(name, {})
        loc = (audit.get("localization") or {}).get(name, {})
        coverage = {code: ((loc.get(f"{code}/clean") or {}).get(f"coverage@{focus:g}") or {}).get("mean") for code in audit.get("methods", [])}
        numbers["classifiers"][name] = {
            "own_test_auroc": own.get("auroc"), "own_test_auroc_ci95": (own.get("ci95") or {}).get("auroc"), "own_test_n": own.get("n"),
            "audit_clean_accuracy": rob.get("clean_accuracy"), "audit_pgd_accuracy": rob.get("pgd_accuracy"),
            f"coverage@{focus:g}": coverage,
        }  # fmt: skip
    tests = [t for t in audit.get("paired_tests", []) if {t["a"], t["b"]} == {"standard", "shortcut"} and t["input"] == "clean"]
    numbers["shortcut_vs_standard"] = [{k: t.get(k) for k in ("method", "metric", "n", "mean_a", "mean_b", "mean_diff", "ci_low", "ci_high", "wilcoxon_p")} for t in tests]
    numbers["focus_percentile"] = focus
    numbers["methods"] = audit.get("methods", [])
    return numbers


def _fmt(x: Any, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _mean_coverage(entry: Mapping[str, Any], focus: float) -> float | None:
    values = [v for v in entry[f"coverage@{focus:g}"].values() if v is not None]
    return sum(values) / len(values) if values else None


def _answer(numbers: Mapping[str, Any]) -> str:
    """What the numbers say, worded by the numbers: no claim the audit did not find."""
    c = numbers["classifiers"]
    focus = numbers["focus_percentile"]
    std, adv, cut = c["standard"], c["adversarial"], c["shortcut"]
    parts = [f"Test AUROC on their own test sets: standard {_fmt(std['own_test_auroc'])}, adversarially trained {_fmt(adv['own_test_auroc'])}, "
             f"shortcut {_fmt(cut['own_test_auroc'])}."]  # fmt: skip
    cov_std, cov_cut = _mean_coverage(std, focus), _mean_coverage(cut, focus)
    p_values = [t["wilcoxon_p"] for t in numbers["shortcut_vs_standard"] if t["metric"] == f"coverage@{focus:g}" and t["wilcoxon_p"] is not None]
    if cov_std is not None and cov_cut is not None:
        worst_p = max(p_values) if p_values else None
        where = f"the top {focus:g}% attributed pixels cover {cov_cut:.2f} of the fracture boxes for the shortcut classifier and {cov_std:.2f} for the standard one (a random map: {focus / 100:.2f}; largest paired Wilcoxon p over methods {_fmt(worst_p, 4)})"
        if cov_cut < cov_std and worst_p is not None and worst_p < 0.01:
            parts.append(f"They are not right for the same reason: {where}. The shortcut classifier looks at something other than the fracture.")
        else:
            parts.append(f"The audit does not separate where the two look: {where}.")
    a_std, a_adv = std["audit_pgd_accuracy"], adv["audit_pgd_accuracy"]
    if a_std is not None and a_adv is not None:
        verdict = "adversarial training bought robustness" if a_adv - a_std >= 0.2 else "adversarial training did not buy clear robustness here"
        parts.append(f"Under ℓ∞ PGD at 4/255 the standard classifier keeps {a_std:.2f} accuracy and the adversarially trained one {a_adv:.2f}: {verdict}.")
    parts.append(f"The detector reaches test mAP@0.5 {_fmt(numbers['detector']['test_map_50'])} (pycocotools).")
    return " ".join(parts)


def write_demo_index(out: Path, cfg: Any, folders: Mapping[str, Path], seconds: Mapping[str, float], *, quick: bool) -> DemoSummary:
    """``index.html`` (+ ``index.md``, ``summary.json``) and the summary the CLI prints."""
    from fracdet.report import Section, write_report

    numbers = demo_numbers(folders)
    audit = folders["audit"]
    grids = [audit / "figures" / f"grid_{name}.png" for name in ("standard", "shortcut")]
    note = " (quick profile: fewer images and epochs, so weaker numbers)" if quick else ""
    sections = [Section("The answer" + note, text=_answer(numbers), figures=[g for g in grids if g.is_file()])]
    rows = []
    for name, c in numbers["classifiers"].items():
        rows.append({"classifier": name, "own test AUROC": c["own_test_auroc"], "95% CI": c["own_test_auroc_ci95"], "test images": c["own_test_n"],
                     "audit acc (clean)": c["audit_clean_accuracy"], "audit acc (PGD 4/255)": c["audit_pgd_accuracy"],
                     **{f"{code} cov@{numbers['focus_percentile']:g}": v for code, v in c[f"coverage@{numbers['focus_percentile']:g}"].items()}})  # fmt: skip
    sections.append(Section("Classifiers", text="Own test AUROC: on the test split of the data each was trained on. Audit columns: on the shortcut set's test images.", table=rows))
    if numbers["shortcut_vs_standard"]:
        sections.append(Section("Shortcut vs standard: paired tests (clean inputs)", table=numbers["shortcut_vs_standard"]))
    sections.append(Section("Detector", table=numbers["detector"]))
    figures = [audit / "figures" / name for name in ("robustness.png", "coverage.png")]
    overlays = sorted((folders["predict"] / "out" / "overlays").rglob("*.png"))[:3]
    sections.append(Section("Figures", figures=[f for f in figures if f.is_file()] + overlays))
    links = [("audit report", audit / "report.html")] + [(f"{n} classifier: eval-cls report", folders[n] / "eval" / "report.html") for n in ("standard", "adversarial", "shortcut")]
    links += [("detector: eval-det metrics", folders["det"] / "eval" / "det_metrics.json"), ("predict on new JPEG / 16-bit PNG / DICOM files", folders["predict"] / "out" / "predictions.csv")]
    sections.append(Section("Every stage", text="Seconds per stage (0: reused from an earlier run).", table=dict(seconds), links=links))
    index, _ = write_report(out / "index.html", title="fracdet demo: right for the right reason, under attack?", sections=sections)
    atomic_write_json(out / "summary.json", {"numbers": numbers, "seconds": dict(seconds), "folders": {k: str(v) for k, v in folders.items()}, "quick": quick})
    lines = [f"demo{note}: {_answer(numbers)}", f"report: {index}"]
    return DemoSummary(out, index, tuple(lines))
