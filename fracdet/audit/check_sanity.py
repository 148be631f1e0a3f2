"""The audit's sanity check of its attribution methods: cascading model-parameter randomisation.

Adebayo et al. (2018, "Sanity checks for saliency maps") randomise a trained model from the
head down and watch the maps: a method that explains the model gives other maps once the
weights are random; one whose maps stay put (an edge detector does) shows the image. Here the
maps are also scored against the boxes, so the check asks the question the audit cares about:
does the method's coverage of the fracture come from the trained weights?

On the first ``sanity_images`` fractured images with a box of the checks' subset, for each
step of the cascade (:mod:`fracdet.explain.randomization`; at most ``sanity_steps`` steps
besides the original, spread from the head alone to the whole model), every audit method's
maps of the randomised copy are compared with its maps of the trained model (Spearman of
``|a|``, SSIM, top-25% intersection) and scored against the ground-truth boxes (coverage@25).
Each number is a mean over the images with a 95% bootstrap CI (``n_boot``, ``seed``).

A method **passes** when, with every block randomised, both hold:

1. its maps changed: the upper end of the CI of the mean Spearman correlation with the
   trained model's maps is below :data:`SPEARMAN_MAX` (0.5: the pixel ranking keeps less than a
   quarter of its variance, ρ² < 0.25, on the evidence of these images); and
2. its coverage fell to chance: the lower end of the CI of the mean coverage@25 is at or
   below 0.25, the coverage of a map that carries no information (within the CI, or below).

Without a CI (fewer than two images) the means decide. A method failing (1) draws the image,
not the model; one failing (2) finds the boxes without the trained weights, so its coverage
on the trained model says nothing about what the model learned. The numbers are reported
either way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fracdet.audit.checks import CheckSubject
from fracdet.audit.config import AuditConfig
from fracdet.audit.stats import bootstrap_mean_ci
from fracdet.explain.batch import explain_batch
from fracdet.explain.localization import coverage_at_percentile
from fracdet.explain.randomization import (
    SIMILARITIES,
    cascade_steps,
    cascading_randomization,
    map_similarity,
    normalize_map,
    parameter_blocks,
)
from fracdet.report.tables import MISSING, estimate_cell

__all__ = ["CHECK", "SanityCheck", "SPEARMAN_MAX", "COVERAGE_P", "verdict"]

logger = logging.getLogger(__name__)

#: a method's maps changed when the CI of its mean Spearman at full randomisation ends below this
SPEARMAN_MAX = 0.5
#: the coverage percentile scored against the boxes; a map without information covers p/100
COVERAGE_P = 25.0
#: images drawn in the cascade figure
FIGURE_IMAGES = 2


def _estimate(values: Sequence[float], cfg: AuditConfig) -> dict[str, Any]:
    array = np.asarray(values, dtype=np.float64)
    kept = array[~np.isnan(array)]
    ci = bootstrap_mean_ci(kept, n_boot=cfg.n_boot, seed=cfg.seed) if kept.size else None
    return {
        "mean": float(kept.mean()) if kept.size else None,
        "ci95": list(ci) if ci else None,
        "n": int(kept.size),
    }


def verdict(spearman: Mapping[str, Any], coverage: Mapping[str, Any]) -> tuple[bool, str]:
    """Pass or fail from the fully randomised model's Spearman and coverage estimates, and why."""
    baseline = COVERAGE_P / 100
    if spearman.get("mean") is None:
        changed, rho = False, "undefined"
    else:
        high = spearman["ci95"][1] if spearman.get("ci95") else spearman["mean"]
        changed, rho = high < SPEARMAN_MAX, f"{high:.2f}"
    if coverage.get("mean") is None:
        fell, cov = False, "undefined"
    else:
        low = coverage["ci95"][0] if coverage.get("ci95") else coverage["mean"]
        fell, cov = low <= baseline, f"{low:.2f}"
    reasons = []
    if not changed:
        reasons.append(f"maps unchanged (Spearman up to {rho}, needs < {SPEARMAN_MAX:g})")
    if not fell:
        reasons.append(f"coverage without the weights stays above chance (from {cov})")
    return changed and fell, "; ".join(reasons) or "maps change and coverage falls to chance"


class SanityCheck:
    """Cascading randomisation of the classifier, scored against the boxes (module docstring)."""

    key = "sanity"

    def settings(self, cfg: AuditConfig) -> dict[str, Any]:
        return {
            "sanity_images": cfg.sanity_images,
            "sanity_steps": cfg.sanity_steps,
            "methods": list(cfg.methods),
            "target": cfg.target,
            "channels": cfg.channels,
            "baseline": cfg.baseline,
            "ig_steps": cfg.ig_steps,
            "n_boot": cfg.n_boot,
            "seed": cfg.seed,
            "spearman_max": SPEARMAN_MAX,
            "coverage_p": COVERAGE_P,
        }

    def run(self, subject: CheckSubject, cfg: AuditConfig) -> dict[str, Any]:
        from fracdet.runtime import autocast

        chosen = subject.with_boxes()[: cfg.sanity_images]
        if not chosen:
            return {"skipped": "no fractured image with a box in the subset"}
        clf = subject.clf
        images = subject.images[chosen]
        masks = [subject.gt_masks[k] for k in chosen]
        if cfg.target == "fracture":
            targets = [1] * len(chosen)
        else:
            p = subject.fracture_probability(images)
            targets = (p >= clf.meta.threshold).astype(np.int64).tolist()
        blocks = parameter_blocks(clf.model)
        steps = cascade_steps(len(blocks), cfg.sanity_steps)
        per_step: dict[str, dict[str, list[dict[str, Any]]]] = {}
        shown: dict[str, list[np.ndarray]] = {}
        original: dict[str, np.ndarray] = {}
        labels = []
        for step in cascading_randomization(clf.model, seed=subject.seed, steps=steps):
            labels.append(step.block)
            explainers = subject.make_explainers(step.model)
            maps: dict[str, list[np.ndarray]] = {code: [] for code in explainers}
            for start in range(0, len(chosen), cfg.batch_size):
                batch = images[start : start + cfg.batch_size]
                with autocast(clf.device, clf.precision):
                    done = explain_batch(
                        explainers, step.model, batch, targets[start : start + cfg.batch_size]
                    )
                for code, values in done.maps.items():
                    maps[code].append(values)
            del step
            for code, parts in maps.items():
                stacked = np.concatenate(parts).astype(np.float64)
                if code not in original:
                    original[code] = stacked
                shown.setdefault(code, []).append(stacked[:FIGURE_IMAGES])
                sims = [map_similarity(a, b) for a, b in zip(original[code], stacked, strict=True)]
                entry = {s: _estimate([x[s] for x in sims], cfg) for s in SIMILARITIES}
                entry["coverage"] = _estimate(
                    [
                        coverage_at_percentile(m, mask, COVERAGE_P)
                        for m, mask in zip(stacked, masks, strict=True)
                    ],
                    cfg,
                )
                per_step.setdefault(code, []).append(entry)
        methods: dict[str, Any] = {}
        for code, entries in per_step.items():
            passed, reason = verdict(entries[-1]["spearman"], entries[-1]["coverage"])
            methods[code] = {"steps": entries, "passed": passed, "reason": reason}
        figure = _cascade_figure(
            subject, images[:FIGURE_IMAGES], masks[:FIGURE_IMAGES], shown, steps, labels
        )
        return {
            "images": [subject.items[k].key for k in chosen],
            "blocks": [b.name for b in blocks],
            "steps": steps,
            "step_labels": labels,
            "baseline": COVERAGE_P / 100,
            "spearman_max": SPEARMAN_MAX,
            "methods": methods,
            "passed": [c for c, m in methods.items() if m["passed"]],
            "failed": [c for c, m in methods.items() if not m["passed"]],
            "figure": subject.relative(figure),
        }

    def sections(
        self,
        results: Mapping[str, Mapping[str, Any]],
        metrics: Mapping[str, Any],
        audit_dir: Path,
    ) -> list[Any]:
        from fracdet.report import Section

        sections = []
        for model, result in results.items():
            heading = f"Sanity check of the attributions: {model}"
            if "skipped" in result:
                sections.append(Section(heading, text=f"Not run: {result['skipped']}."))
                continue
            rows = [_row(code, m, result["steps"]) for code, m in result["methods"].items()]
            passed = ", ".join(result["passed"]) or "none"
            failed = ", ".join(result["failed"]) or "none"
            text = (
                f"Cascading randomisation (Adebayo et al., 2018) of {len(result['blocks'])} blocks "
                f"from the head down, on {len(result['images'])} fractured images. Pass: "
                f"{passed}; fail: {failed}. A method passes when, with every block random, its "
                f"maps change (CI of Spearman |a| below {result['spearman_max']:g}) and its "
                f"coverage@25 falls to chance ({result['baseline']:g}, within the CI or below). "
                "Numbers at full randomisation, mean [95% CI]."
            )
            figures = [Path(audit_dir) / result["figure"]] if result.get("figure") else []
            sections.append(Section(heading, text=text, table=rows, figures=figures))
        return sections


def _row(code: str, method: Mapping[str, Any], steps: Sequence[int]) -> dict[str, str]:
    first, last = method["steps"][0], method["steps"][-1]
    trend = " → ".join(
        MISSING if e["spearman"]["mean"] is None else f"{e['spearman']['mean']:.2f}"
        for e in method["steps"]
    )
    return {
        "method": code,
        "Spearman |a|": estimate_cell(last["spearman"], digits=2),
        "SSIM": estimate_cell(last["ssim"], digits=2),
        "top-25% ∩": estimate_cell(last["top25"], digits=2),
        "coverage@25 trained": estimate_cell(first["coverage"], digits=2),
        "coverage@25 random": estimate_cell(last["coverage"], digits=2),
        f"Spearman by step ({', '.join(map(str, steps))} blocks)": trend,
        "verdict": ("pass" if method["passed"] else "FAIL: ")
        + ("" if method["passed"] else method["reason"]),
    }


def _cascade_figure(
    subject: CheckSubject,
    images: torch.Tensor,
    masks: Sequence[np.ndarray],
    shown: Mapping[str, Sequence[np.ndarray]],
    steps: Sequence[int],
    labels: Sequence[str],
) -> Path:
    """Rows: each image's methods; columns: the input, then each step's normalised ``|a|``."""
    from fracdet.report.figures import new_grid, save_figure

    codes = list(shown)
    n_images = len(images)
    rows, cols = n_images * len(codes), len(steps) + 1
    # fixed margins instead of tight_layout, which costs seconds on a grid of this many panels
    fig, axes = new_grid(
        (1.2 * cols + 0.5, 1.2 * rows + 0.6),
        rows,
        cols,
        gridspec_kw={"wspace": 0.04, "hspace": 0.04},
    )
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.01, top=1 - 0.55 / (1.2 * rows + 0.6))
    pixels = images.detach().float().cpu().numpy()[:, 0]
    for i in range(n_images):
        for r, code in enumerate(codes):
            row = i * len(codes) + r
            axes[row, 0].imshow(pixels[i], cmap="gray", vmin=0, vmax=1)
            axes[row, 0].contour(masks[i], levels=[0.5], colors="lime", linewidths=0.6)
            axes[row, 0].set_ylabel(f"{code}\nimage {i + 1}", fontsize=7)
            for c, per_step in enumerate(shown[code]):
                axes[row, c + 1].imshow(normalize_map(per_step[i]), cmap="inferno", vmin=0, vmax=1)
    for c, (step, label) in enumerate(zip(steps, labels, strict=True)):
        title = "original" if step == 0 else f"{step}: {label}"
        axes[0, c + 1].set_title(title if len(title) <= 16 else title[:15] + "…", fontsize=7)
    axes[0, 0].set_title("input + box", fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"{subject.name}: maps as the weights are randomised from the head down", fontsize=8
    )
    return save_figure(fig, subject.figure_path("sanity"), tight=False)


CHECK = SanityCheck()
