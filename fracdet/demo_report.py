"""The demo's front page: the audit's answer first, then the numbers and a link to every stage."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from data_tools.phantoms import SHORTCUT_REGION
from fracdet.audit.check_causal import GT
from fracdet.audit.schema import AuditSchema, coverage_metric
from fracdet.fsutil import atomic_write_json
from fracdet.report import ci_cell, number_cell
from fracdet.stages import PipelineSummary, read_stage_json

__all__ = ["DemoSummary", "write_demo_index", "demo_numbers"]


class DemoSummary(PipelineSummary):
    """The headline numbers and where every artifact is."""


#: The demo's classifiers: the masked one is the standard one behind an input quantisation
#: (shattered gradients), the attack checks' proof.
CLASSIFIERS = ("standard", "adversarial", "shortcut", "masked")


def check_numbers(audit: Mapping[str, Any], model: str) -> dict[str, Any]:
    """What the answer reads from one classifier's checks (``None`` where a check did not run)."""
    checks = audit.get("checks") or {}

    def result(key: str) -> Mapping[str, Any] | None:
        found = (checks.get(key) or {}).get(model)
        return None if not found or found.get("skipped") else found

    sanity, causal, attacks = result("sanity"), result("causal"), result("attacks")
    out: dict[str, Any] = {
        "sanity": None
        if sanity is None
        else {"passed": sanity.get("passed", []), "failed": sanity.get("failed", [])},
        "causal": None,
        "attacks": None,
    }
    if causal is not None:
        regions = causal.get("regions", {})
        gt = regions.get(GT, {})
        diff = gt.get("difference") or {}
        out["causal"] = {
            "mean_diff": diff.get("mean_diff"),
            "ci95": None
            if diff.get("ci_low") is None
            else [diff.get("ci_low"), diff.get("ci_high")],
            "p": diff.get("wilcoxon_p"),
            "flipped": gt.get("flipped"),
            "marker_flipped": (regions.get(SHORTCUT_REGION) or {}).get("flipped"),
        }
    if attacks is not None:
        out["attacks"] = {
            "trusted": attacks.get("trusted"),
            "failed": attacks.get("failed", []),
            "worst_accuracy": attacks.get("worst_at_eps"),
        }
    return out


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
    for name in CLASSIFIERS:
        if name not in folders:
            continue
        scored = folders[name] / "eval" / "cls_metrics.json"  # the masked copy is not rescored
        own = read_stage_json(scored) if scored.is_file() else {}
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
            "checks": check_numbers(audit, name),
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


def _coverage_change(
    numbers: Mapping[str, Any], methods: list[str] | None = None
) -> list[tuple[str, float, float, float | None]]:
    """Per method (``methods`` only, when given): (method, standard's coverage, shortcut's
    coverage, paired Wilcoxon p)."""
    key = _coverage_key(numbers)
    std, cut = (numbers["classifiers"][n][key] for n in ("standard", "shortcut"))
    p_by_method = {
        t["method"]: t["wilcoxon_p"] for t in numbers["shortcut_vs_standard"] if t["metric"] == key
    }
    return [
        (m, std[m], cut[m], p_by_method.get(m))
        for m in std
        if std.get(m) is not None and cut.get(m) is not None and (methods is None or m in methods)
    ]


def _changes(rows: list[tuple[str, float, float, float | None]]) -> str:
    return "; ".join(
        f"{m} {a:.2f} → {b:.2f}" + ("" if p is None else f", paired p {p:.1g}")
        for m, a, b, p in rows
    )


def _sane(numbers: Mapping[str, Any]) -> tuple[list[str], list[str]] | None:
    """Methods passing the randomisation check for both the standard and the shortcut
    classifier, and those failing it for either; ``None`` when the check did not run."""
    checks = [numbers["classifiers"][n]["checks"]["sanity"] for n in ("standard", "shortcut")]
    if any(c is None for c in checks):
        return None
    passed = [m for m in checks[0]["passed"] if m in checks[1]["passed"]]
    failed = sorted({m for c in checks for m in c["failed"]})
    return passed, failed


def _coverage_sentence(numbers: Mapping[str, Any]) -> str | None:
    """Where the shortcut classifier looks, judged per method that passes the randomisation
    check: its coverage at most half the standard one's with paired p < 0.01 is "looks
    elsewhere"; failing methods are named, never used."""
    focus = numbers["focus_percentile"]
    sane = _sane(numbers)
    rows = _coverage_change(numbers, None if sane is None else sane[0])
    lead = (
        "The attribution methods are not sanity-checked"
        if sane is None
        else f"Only {', '.join(sane[0]) or 'no method'} pass"
        + ("es" if len(sane[0]) == 1 else "")
        + " the randomisation check"
        + (f" ({', '.join(sane[1])} fail it)" if sane[1] else "")
    )
    if not rows:
        return lead + "."
    halved = [r for r in rows if r[2] <= 0.5 * r[1] and r[3] is not None and r[3] < 0.01]
    random = f"random map {focus / 100:.2f}"
    if halved:
        verdict = (
            ": the shortcut classifier looks at something other than the fracture"
            if sane is not None
            else ""
        )
        return (
            f"{lead}; its coverage@{focus:g} falls by half or more from the standard to the "
            f"shortcut classifier ({_changes(halved)}; {random}){verdict}."
        )
    return (
        f"{lead}; its coverage@{focus:g} from the standard to the shortcut classifier does not "
        f"halve ({_changes(rows)}; {random})."
    )


def _causal_sentence(numbers: Mapping[str, Any]) -> str | None:
    """Removing the fracture (and the marker): the explainer-free test, worded by its numbers."""
    c = numbers["classifiers"]
    std, cut = c["standard"]["checks"]["causal"], c["shortcut"]["checks"]["causal"]
    if std is None or cut is None or std["mean_diff"] is None:
        return None

    def effect(entry: Mapping[str, Any]) -> str:
        text = ci_cell(entry["mean_diff"], entry["ci95"])
        return text + ("" if entry["p"] is None else f" (p {entry['p']:.1g})")

    text = (
        f"Removing the fracture boxes lowers the standard classifier's fracture probability "
        f"{effect(std)} more than matched boxes elsewhere and the shortcut classifier's "
        + (effect(cut) if cut["mean_diff"] is not None else "by nothing measurable")
    )
    marker = cut.get("marker_flipped")
    if marker is not None:
        text += f", while removing the marker flips {marker:.0%} of the shortcut classifier's calls"
        right = std["p"] is not None and std["p"] < 0.01 and std["mean_diff"] > 0
        wrong = marker >= 0.5 and (cut["p"] is None or cut["p"] >= 0.01)
        if right and wrong:
            text += ": one is right for the right reason, the other for the wrong one"
    return text + "."


def _robustness_sentence(numbers: Mapping[str, Any]) -> str | None:
    c = numbers["classifiers"]
    a_std, a_adv = c["standard"]["audit_pgd_accuracy"], c["adversarial"]["audit_pgd_accuracy"]
    if a_std is None or a_adv is None:
        return None
    adv_checks = c["adversarial"]["checks"]["attacks"]
    if adv_checks is not None and not adv_checks["trusted"]:
        verdict = (
            "the attack checks warn for the adversarially trained one ("
            + ", ".join(adv_checks["failed"])
            + "), so its number is not evidence of robustness"
        )
    elif a_adv - a_std >= 0.2:
        verdict = "adversarial training bought robustness"
    else:
        verdict = "adversarial training did not buy clear robustness here"
    text = (
        f"Under ℓ∞ PGD at 4/255 the adversarially trained classifier keeps {a_adv:.2f} accuracy, "
        f"the standard one {a_std:.2f} ({verdict})"
    )
    masked = c.get("masked")
    checks = masked["checks"]["attacks"] if masked else None
    if masked and masked["audit_pgd_accuracy"] is not None and checks is not None:
        text += (
            f"; a gradient-masked copy of the standard one keeps "
            f"{masked['audit_pgd_accuracy']:.2f}, "
            + (
                f"but its attack checks warn ({', '.join(checks['failed'])}) and the strongest "
                f"attack (BPDA, the ensemble) takes it to {checks['worst_accuracy']:.2f}"
                if not checks["trusted"]
                else "and its attack checks pass"
            )
        )
    return text + "."


def _answer(numbers: Mapping[str, Any]) -> str:
    """At most three sentences, each worded by the numbers: the causal test, the attributions
    that pass their sanity check, robustness (with the attack checks' verdict)."""
    sentences = [
        _causal_sentence(numbers),
        _coverage_sentence(numbers),
        _robustness_sentence(numbers),
    ]
    return " ".join(s for s in sentences if s)


def _check_cells(checks: Mapping[str, Any]) -> dict[str, str]:
    """The reason checks' verdicts as table cells: passing methods, the causal effect."""
    sanity, causal = checks["sanity"], checks["causal"]
    cells = {}
    if sanity is not None:
        cells["passes sanity"] = ", ".join(sanity["passed"]) or "none"
    if causal is not None:
        cells["fracture removed: Δp vs controls"] = ci_cell(causal["mean_diff"], causal["ci95"])
        if causal.get("marker_flipped") is not None:
            cells["marker removed: calls flipped"] = f"{causal['marker_flipped']:.0%}"
    return cells


def _artifacts(out: Path, folders: Mapping[str, Path]) -> list[tuple[str, Path]]:
    """What a user opens next, in the order they would."""
    found = [("front page", out / "index.html"), ("audit report", folders["audit"] / "report.html")]
    found += [
        (f"{n} classifier", folders[n] / "best.safetensors") for n in CLASSIFIERS if n in folders
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
    rows, reasons = [], []
    for name, c in numbers["classifiers"].items():
        attacks = c["checks"]["attacks"]
        rows.append(
            {
                "classifier": name,
                "own test AUROC": ci_cell(c["own_test_auroc"], c["own_test_auroc_ci95"]),
                "test images": c["own_test_n"],
                "audit acc (clean)": c["audit_clean_accuracy"],
                "audit acc (PGD 4/255)": c["audit_pgd_accuracy"],
                "worst case (every attack)": None if attacks is None else attacks["worst_accuracy"],
                "attack checks": None
                if attacks is None
                else ("pass" if attacks["trusted"] else "warn: " + ", ".join(attacks["failed"])),
            }
        )
        reasons.append(
            {
                "classifier": name,
                **{
                    f"{code} cov@{numbers['focus_percentile']:g}": v
                    for code, v in c[_coverage_key(numbers)].items()
                },
                **_check_cells(c["checks"]),
            }
        )
    sections.append(
        Section(
            "Classifiers",
            text=(
                "Own test AUROC: on the test split of the data each was trained on (the masked "
                "copy is the standard classifier, not rescored). Audit columns: on the shortcut "
                "set's test images; the worst case over PGD, BPDA and the attack ensemble on the "
                "checks' subset."
            ),
            table=rows,
        )
    )
    sections.append(
        Section(
            "Right for the right reason?",
            text=(
                "Coverage per method (random map "
                f"{numbers['focus_percentile'] / 100:.2f}); the methods that pass the "
                "randomisation check; the causal box test: the drop of the fracture probability "
                "when the fracture boxes are removed minus the drop for matched boxes elsewhere, "
                "and the share of calls that removing the marker flips."
            ),
            table=reasons,
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
    checked = [
        audit / "checks" / "figures" / name
        for name in ("attacks_all.png", "sanity_standard.png", "causal_shortcut.png")
    ]
    if any(f.is_file() for f in checked):
        sections.append(
            Section(
                "The audit checks its own instruments",
                text=(
                    "Accuracy vs ε, worst case over every attack, per classifier: the masked "
                    "copy stays up under PGD alone, and its checks warn. The randomisation "
                    "cascade of the standard classifier: a method whose maps survive random "
                    "weights fails. The causal box test of the shortcut classifier: the "
                    "fracture, a matched control and the marker removed. Every check's table is "
                    "in the audit report."
                ),
                figures=[f for f in checked if f.is_file()],
            )
        )
    figures = [audit / "figures" / name for name in ("robustness.png", "coverage.png")]
    overlays = sorted((folders["predict"] / "out" / "overlays").rglob("*.png"))[:3]
    sections.append(Section("Figures", figures=[f for f in figures if f.is_file()] + overlays))
    links = [("audit report", audit / "report.html")] + [
        (f"{n} classifier: eval-cls report", folders[n] / "eval" / "report.html")
        for n in CLASSIFIERS
        if n in folders and (folders[n] / "eval" / "report.html").is_file()  # masked: none
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
