"""The faithfulness check: do the audit's maps rank pixels by what this classifier uses?

On the check subset's first ``faithfulness_images`` fractured images with boxes, each method's
fracture map (:func:`~fracdet.explain.batch.explain_batch`, target fracture) orders the
pixels; :func:`~fracdet.explain.faithfulness.deletion_curves` removes the most relevant
(MoRF) and the least relevant (LeRF) ``faithfulness_percentages`` of them by ROAD's noisy
linear imputation and records the fracture probability, beside a random order. A method's
score is the area between its curves (LeRF - MoRF, averaged over the steps; ROAD, Rong et
al. 2022), with a bootstrap CI over images and its paired difference from the random order.
A map that scores coverage of the boxes but no more than random here describes something
the model does not use.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fracdet.audit.checks import CheckSubject
from fracdet.audit.config import AuditConfig
from fracdet.audit.stats import bootstrap_mean_ci, paired_comparison
from fracdet.explain.batch import explain_batch
from fracdet.explain.faithfulness import RANDOM, FaithfulnessCurves, deletion_curves
from fracdet.explain.registry import METHODS
from fracdet.report import Section
from fracdet.report.figures import new_grid, save_figure
from fracdet.report.tables import MISSING, ci_cell, estimate_cell, number_cell
from fracdet.runtime import autocast

__all__ = ["ABOVE_RANDOM_P", "CHECK", "FaithfulnessCheck", "summarise_curves"]

_NAMES = {code: name for name, code in METHODS.items()}


def summarise_curves(curves: FaithfulnessCurves, *, n_boot: int, seed: int) -> dict[str, Any]:
    """The JSON result of a check's curves: per method (and the random order) the mean MoRF
    and LeRF curves, the area with its bootstrap CI over images and, for methods, the paired
    difference from the random order's area; methods ranked by area, largest first, and those
    above the random order (the paired difference's CI above 0 and Wilcoxon p < 0.05)."""

    def entry(method: str) -> dict[str, Any]:
        area = curves.area(method)
        return {
            "morf": curves.morf[method].mean(axis=0).tolist(),
            "lerf": curves.lerf[method].mean(axis=0).tolist(),
            "area": {
                "mean": float(area.mean()),
                "ci95": bootstrap_mean_ci(area, n_boot=n_boot, seed=seed),
            },
            "area_per_image": area.tolist(),
        }

    methods = {m: entry(m) for m in curves.methods if m != RANDOM}
    baseline = curves.area(RANDOM)
    for method, values in methods.items():
        values["vs_random"] = paired_comparison(
            curves.area(method), baseline, n_boot=n_boot, seed=seed
        )
    ranking = sorted(methods, key=lambda m: -methods[m]["area"]["mean"])
    return {
        "n": int(len(baseline)),
        "percentages": list(curves.percentages),
        "methods": methods,
        "random": entry(RANDOM),
        "ranking": ranking,
        "above_random": [m for m in ranking if _above_random(methods[m]["vs_random"])],
    }


#: a method is above the random order when its paired difference's CI lies above 0 and the
#: Wilcoxon test agrees at this level (a bootstrap CI of two or three images is too narrow)
ABOVE_RANDOM_P = 0.05


def _above_random(comparison: Mapping[str, Any]) -> bool:
    low, p = comparison["ci_low"], comparison["wilcoxon_p"]
    return low is not None and low > 0 and p is not None and p < ABOVE_RANDOM_P


def _maps(subject: CheckSubject, images: torch.Tensor, batch_size: int) -> dict[str, np.ndarray]:
    """Each method's fracture map of ``images``, as the audit computes it."""
    chunks: list[dict[str, np.ndarray]] = []
    for start in range(0, len(images), batch_size):
        with autocast(subject.clf.device, subject.clf.precision):
            explained = explain_batch(
                subject.clf.explainers, subject.clf.model, images[start : start + batch_size], 1
            )
        chunks.append(explained.maps)
    return {code: np.concatenate([c[code] for c in chunks]) for code in chunks[0]}


def _figure(result: Mapping[str, Any], name: str, path: Path) -> Path:
    """MoRF and LeRF mean curves side by side, one colour per method, the random order dashed."""
    fig, axes = new_grid((9.0, 3.8), 1, 2, sharey=True)
    x = result["percentages"]
    titles = {"morf": "most relevant removed first (MoRF)", "lerf": "least relevant first (LeRF)"}
    for ax, (side, title) in zip(axes[0], titles.items(), strict=True):
        for method, values in result["methods"].items():
            ax.plot(x, values[side], marker="o", ms=3, label=method)
        ax.plot(x, result["random"][side], "k--", label="random order")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("pixels removed (%)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{name}: mean fracture probability")
    axes[0][1].legend(fontsize=8, loc="lower left")
    return save_figure(fig, path)


class FaithfulnessCheck:
    """ROAD deletion curves of every audited method, against a random order."""

    key = "faithfulness"

    def settings(self, cfg: AuditConfig) -> dict[str, Any]:
        return {
            "images": cfg.faithfulness_images,
            "percentages": list(cfg.faithfulness_percentages),
            "methods": list(cfg.methods),
            "channels": cfg.channels,
            "baseline": cfg.baseline,
            "ig_steps": cfg.ig_steps,
            "n_boot": cfg.n_boot,
            "seed": cfg.seed,
        }

    def run(self, subject: CheckSubject, cfg: AuditConfig) -> dict[str, Any]:
        chosen = subject.with_boxes()[: cfg.faithfulness_images]
        if not chosen:
            return {"n": 0, "note": "no fractured image with a box in the check subset"}
        images = subject.images[chosen]
        curves = deletion_curves(
            subject.fracture_probability,
            images,
            _maps(subject, images, cfg.batch_size),
            percentages=cfg.faithfulness_percentages,
            seed=subject.seed,
        )
        result = summarise_curves(curves, n_boot=cfg.n_boot, seed=subject.seed)
        result["items"] = [subject.items[k].key for k in chosen]
        path = subject.figure_path("faithfulness")
        _figure(result, subject.name, path)
        result["figure"] = subject.relative(path)
        return result

    def sections(
        self,
        results: Mapping[str, Mapping[str, Any]],
        metrics: Mapping[str, Any],
        audit_dir: Path,
    ) -> list[Section]:
        rows: list[dict[str, Any]] = []
        for model, result in results.items():
            if not result.get("n"):
                rows.append({"model": model, "method": MISSING, "note": result.get("note", "")})
                continue
            for rank, method in enumerate(result["ranking"], start=1):
                rows.append(_row(model, f"{rank}. {method}", result["methods"][method], result))
            rows.append(_row(model, "random order", result["random"], result))
        text = (
            "Pixels are removed in the order each method ranks them (ROAD: noisy linear "
            "imputation, Rong et al. 2022), most relevant first (MoRF) and least relevant first "
            "(LeRF), on the first fractured images with boxes of the check subset; the cells "
            "are the fracture probability averaged over images and steps. The area is LeRF - "
            "MoRF averaged over the steps (95% bootstrap CI over images): larger is more "
            "faithful, and a random pixel order scores about 0. Methods are ranked by area per "
            "model; 'area - random' is the paired difference from the random order (its CI, "
            "and the Wilcoxon p; 'above random': that CI above 0 and p < 0.05). A method whose "
            "area is not above random ranks pixels by something this model does not use, "
            "whatever its box coverage."
        )
        figures = [audit_dir / r["figure"] for r in results.values() if r.get("figure")]
        return [
            Section("Faithfulness: deleting pixels by attribution rank (ROAD)", text, rows, figures)
        ]


def _row(
    model: str, label: str, entry: Mapping[str, Any], result: Mapping[str, Any]
) -> dict[str, Any]:
    code = label.split(". ", 1)[-1]
    vs = entry.get("vs_random")
    return {
        "model": model,
        "method": label + (f" ({_NAMES[code]})" if code in _NAMES else ""),
        "area (LeRF - MoRF)": estimate_cell(entry["area"]),
        "area - random": MISSING if vs is None else ci_cell(vs["mean_diff"], _ci(vs)),
        "above random": MISSING if vs is None else ("yes" if _above_random(vs) else "no"),
        "Wilcoxon p": MISSING if vs is None else number_cell(vs["wilcoxon_p"], 3),
        "MoRF": number_cell(float(np.mean(entry["morf"][1:]))),
        "LeRF": number_cell(float(np.mean(entry["lerf"][1:]))),
        "images": result["n"],
    }


def _ci(comparison: Mapping[str, Any]) -> list[float] | None:
    low, high = comparison.get("ci_low"), comparison.get("ci_high")
    return None if low is None else [low, high]


CHECK = FaithfulnessCheck()
