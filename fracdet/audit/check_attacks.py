"""The audit's check of its own attacks: can each classifier's robustness number be trusted?

Runs :func:`fracdet.robust.attack_checks.run_attack_checks` on the check subset (labels
known) with the audit's attack as ℓ∞ PGD, under the classifier's precision as the audit's
attack runs. The report gets a table (each line pass/warn with its numbers, and whether the
classifier's number is ``trusted``) and, per classifier, the accuracy-vs-ε figure with 95%
Wilson bands, one line per attack.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fracdet.audit.checks import CheckSubject
from fracdet.audit.config import AuditConfig
from fracdet.audit.stats import proportion_ci
from fracdet.audit.store import CHECKS_DIR
from fracdet.report import Section
from fracdet.report.figures import new_figure, save_figure

__all__ = ["CHECK", "AttacksCheck", "plot_eps_curve", "plot_models_eps_curve"]

_COLORS = {
    "pgd": "#f97316",
    "apgd-ce": "#3b82f6",
    "apgd-margin": "#8b5cf6",
    "fab": "#14b8a6",
    "square": "#ef4444",
    "autoattack": "#111827",
    "pgd-bpda": "#a16207",
    "worst": "#6b7280",
}
_LABELS = {
    "pgd": "ℓ∞ PGD",
    "autoattack": "ensemble (worst case)",
    "apgd-ce": "after APGD-CE",
    "apgd-margin": "+ APGD-margin",
    "fab": "+ FAB",
    "square": "+ Square",
    "pgd-bpda": "ℓ∞ PGD, BPDA",
    "worst": "worst case (every attack)",
}


def plot_eps_curve(result: Mapping[str, Any], path: Path, *, title: str) -> Path:
    """Accuracy vs ε (in grey levels, symlog axis): PGD and the ensemble's worst case wide, with
    their 95% Wilson bands, and the ensemble's accuracy after each of its attacks in turn."""
    fig, ax = new_figure((6.8, 3.8))
    x = np.asarray(result["eps"], dtype=float) * 255
    n = int(result["n"])
    # the two summary lines first and wide, each attack of the ensemble dashed on top of them
    names = sorted(result["correct"], key=lambda k: (k not in ("autoattack", "pgd"), k))
    for name in names:
        counts = result["correct"][name]
        acc = np.asarray(counts, dtype=float) / n
        bands = np.array([proportion_ci(int(c), n) for c in counts])
        color = _COLORS.get(name, "#6b7280")
        wide = name in ("pgd", "autoattack")
        ax.plot(
            x,
            acc,
            marker="o" if wide else "x",
            ms=4,
            lw=3.0 if wide else 1.1,
            ls="-" if wide else (0, (4, 2)),
            color=color,
            label=_LABELS.get(name, name),
            zorder=2 if wide else 3,
        )
        if wide:
            ax.fill_between(x, bands[:, 0], bands[:, 1], color=color, alpha=0.15, lw=0)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xticks(x, [f"{v:g}" for v in x], fontsize=7)
    ax.set_xlabel("ε (grey levels of 255, ℓ∞, pixel space)")
    ax.set_ylabel("accuracy under attack")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def plot_models_eps_curve(results: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    """The worst-case accuracy (PGD, PGD with BPDA, the ensemble) vs ε, one line per classifier
    with its 95% Wilson band: a line that stays up while the others fall needs the checks."""
    fig, ax = new_figure((8.2, 3.8))
    palette = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"]
    for k, (model, result) in enumerate(results.items()):
        x = np.asarray(result["eps"], dtype=float) * 255
        n = int(result["n"])
        counts = result["correct"]["worst"]
        bands = np.array([proportion_ci(int(c), n) for c in counts])
        color = palette[k % len(palette)]
        trusted = result["trusted"]
        # a model whose checks warn: dashed, over the others, with what PGD alone claimed
        style = {"lw": 2, "ls": "-"} if trusted else {"lw": 2.5, "ls": (0, (5, 2)), "zorder": 4}
        label = model + ("" if trusted else " (checks warn)")
        ax.plot(x, np.asarray(counts) / n, marker="o", ms=4, color=color, label=label, **style)
        ax.fill_between(x, bands[:, 0], bands[:, 1], color=color, alpha=0.12, lw=0)
        if not trusted:
            pgd = np.asarray(result["correct"]["pgd"]) / n
            ax.plot(x, pgd, marker="x", ms=5, lw=1.2, ls=":", color=color, zorder=4)
            ax.plot([], [], marker="x", ls=":", color=color, label=f"{model}: ℓ∞ PGD alone")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xticks(x, [f"{v:g}" for v in x], fontsize=7)
    ax.set_xlim(0, x.max() * 1.1)
    ax.set_xlabel("ε (grey levels of 255, ℓ∞, pixel space)")
    ax.set_ylabel("accuracy, worst case")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Accuracy vs ε, worst case over PGD, BPDA and the ensemble (95% CI)", fontsize=9)
    return save_figure(fig, path)


def _first_of_each_label(labels: np.ndarray, n: int | None) -> list[int]:
    """Positions of the first ``n`` images of each label (all of them when ``n`` is None)."""
    if n is None:
        return list(range(len(labels)))
    return sorted(k for y in np.unique(labels) for k in np.flatnonzero(labels == y)[:n])


class AttacksCheck:
    """``attacks``: the ε curve, black-box vs white-box, convergence, FGSM vs PGD, zero
    gradients and determinism, per classifier."""

    key = "attacks"

    def settings(self, cfg: AuditConfig) -> dict[str, Any]:
        return {
            "eps": list(cfg.attack_check_eps),
            "budget": cfg.attack_check_budget,
            "tolerance": cfg.attack_check_tolerance,
            "attack": [cfg.attack, cfg.eps, cfg.steps, cfg.step_size, cfg.restarts, cfg.eps_space],
            "random_start": cfg.random_start,
            "images": cfg.attack_check_images,
            "seed": cfg.seed,
        }

    def run(self, subject: CheckSubject, cfg: AuditConfig) -> dict[str, Any]:
        from fracdet.robust.attack_checks import run_attack_checks
        from fracdet.runtime import autocast

        clf = subject.clf
        options = cfg.attack_check_config(clf.attack)
        keep = _first_of_each_label(subject.labels, cfg.attack_check_images)
        labels = torch.as_tensor(subject.labels[keep], device=clf.device)
        with autocast(clf.device, clf.precision):
            result = run_attack_checks(clf.model, subject.images[keep], labels, options)
        path = subject.figure_path("attacks")
        plot_eps_curve(result, path, title=f"{subject.name}: accuracy vs ε (n={result['n']})")
        result["figure"] = subject.relative(path)
        return result

    def sections(
        self,
        results: Mapping[str, Mapping[str, Any]],
        metrics: Mapping[str, Any],
        audit_dir: Path,
    ) -> list[Section]:
        if not results:
            return []
        rows: list[dict[str, Any]] = []
        for model, result in results.items():
            for line in result["lines"]:
                rows.append(
                    {
                        "model": model,
                        "check": line["check"],
                        "status": line["status"],
                        "value": line["value"],
                        "limit": line["limit"],
                        "numbers": line["detail"],
                    }
                )
        verdicts = "; ".join(
            f"{m}: trusted"
            if r["trusted"]
            else f"{m}: NOT trusted ({', '.join(r['failed'])} warned)"
            for m, r in results.items()
        )
        first = next(iter(results.values()))
        text = (
            f"Each classifier attacked on the check subset ({first['n']} images) at every ε of "
            "the curve by ℓ∞ PGD (the audit's steps) and each attack of the ensemble "
            f"(budget {first['budget']}: APGD-CE, APGD on the logit margin, FAB, Square); the "
            f"single-ε lines at the audit's ε ({first['at_eps'] * 255:.0f}/255). A line warns "
            f"when a difference exceeds {first['tolerance']:.3f} of the images (noise). "
            "Symptoms of gradient masking follow Athalye et al. 2018 and Carlini et al. 2019. "
            + verdicts
            + "."
        )
        figures = [
            Path(audit_dir) / r["figure"] for r in results.values() if r.get("figure") is not None
        ]
        together = plot_models_eps_curve(
            results, Path(audit_dir) / CHECKS_DIR / "figures" / "attacks_all.png"
        )
        return [
            Section(
                "Can the robustness numbers be trusted? (attack checks)",
                text=text,
                table=rows,
                figures=[together],
            ),
            Section(
                "Accuracy vs ε, per attack (95% CI)",
                text="One figure per classifier; the worst case over the ensemble is black.",
                figures=figures,
            ),
        ]


CHECK = AttacksCheck()
