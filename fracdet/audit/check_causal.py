"""The causal box test: does removing the fracture remove the call? No attribution needed.

For each fractured image of the checks' subset the fracture boxes are removed by ROAD's
noisy linear imputation and the classifier's fracture probability is measured again; so
are ``causal_controls`` matched controls (the same pixel set shifted elsewhere inside the
image content, off the fracture boxes and any named region, over pixels of a similar grey
level: :mod:`fracdet.explain.ablation`), the detector's confident boxes (with their own
controls), and every named region of ``causal_regions`` (a shortcut marker, say). Per
image, the drop under the region minus the mean drop under its controls pairs up; its
mean has a bootstrap CI and a Wilcoxon signed-rank p
(:func:`fracdet.audit.stats.paired_comparison`). A call flips when the probability crosses
the classifier's threshold.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fracdet.audit.checks import CheckSubject
from fracdet.audit.config import AuditConfig
from fracdet.audit.inputs import load_inputs
from fracdet.audit.stats import bootstrap_mean_ci, paired_comparison
from fracdet.data.formats import Box
from fracdet.data.geometry import box_to_model_frame, boxes_mask, content_region
from fracdet.data.regions import Regions, check_regions, read_regions
from fracdet.errors import DataError
from fracdet.explain.ablation import AblationResult, ablate_regions, shift_mask
from fracdet.fsutil import sha256_file
from fracdet.report import Section, ci_cell, estimate_cell, number_cell

__all__ = ["CHECK", "CausalCheck", "reading"]

logger = logging.getLogger(__name__)

GT, DETECTOR = "fracture boxes", "detector boxes"


def _mask(boxes: Sequence[Box], size: int) -> np.ndarray | None:
    mask = boxes_mask(boxes, size, size) if boxes else None
    return mask if mask is not None and mask.any() else None


def _regions(cfg: AuditConfig) -> Regions:
    """The named regions of ``cfg.causal_regions``, checked against the whole dataset."""
    path = Path(cfg.causal_regions)
    regions = read_regions(path)
    reserved = [n for named in regions.values() for n in named if n in (GT, DETECTOR)]
    if reserved:
        raise DataError(f"region name {reserved[0]!r} is reserved for the test's own rows", path)
    every = load_inputs(cfg.dataset, split="all").items
    check_regions(regions, {it.key: (it.width, it.height) for it in every}, path)
    return regions


def _named_masks(subject: CheckSubject, cfg: AuditConfig) -> list[dict[str, np.ndarray]]:
    """Each subset image's named regions (``cfg.causal_regions``) as masks in the model frame."""
    if cfg.causal_regions is None:
        return [{} for _ in subject.items]
    regions = _regions(cfg)
    size, keep = subject.clf.meta.image_size, subject.clf.meta.keep_aspect
    out = []
    for it in subject.items:
        named = {}
        for name, boxes in regions.get(it.key, {}).items():
            framed = [
                box_to_model_frame(b, it.height, it.width, size, keep_aspect=keep) for b in boxes
            ]
            mask = _mask(framed, size)
            if mask is not None:
                named[name] = mask
        out.append(named)
    return out


def _summary(
    res: AblationResult, keys: Sequence[str], threshold: float, cfg: AuditConfig
) -> dict[str, Any]:
    # below float32's resolution a difference is a tie, not evidence (Wilcoxon drops ties)
    drop, control = np.round(res.drop, 6), np.round(res.control_drop, 6)
    called = res.base >= threshold
    flips_c = (res.controls >= threshold) != called[:, None]
    valid = ~np.isnan(res.controls)
    ci = {"n_boot": cfg.n_boot, "seed": cfg.seed}
    return {
        "n": len(keys),
        "n_without_control": int(np.isnan(control).sum()),
        "p_before": float(res.base.mean()),
        "drop": {"mean": float(drop.mean()), "ci95": bootstrap_mean_ci(drop, **ci)},
        "control_drop": {
            "mean": float(np.nanmean(control)) if (~np.isnan(control)).any() else None,
            "ci95": bootstrap_mean_ci(control, **ci),
        },
        "difference": paired_comparison(drop, control, **ci),
        "flipped": float(np.mean((res.ablated >= threshold) != called)),
        "flipped_controls": float(flips_c[valid].mean()) if valid.any() else None,
        "images": [
            {
                "key": key,
                "p": round(float(res.base[i]), 5),
                "p_removed": round(float(res.ablated[i]), 5),
                "p_controls": [round(float(p), 5) for p in res.controls[i] if not np.isnan(p)],
            }
            for i, key in enumerate(keys)
        ],
    }


class CausalCheck:
    """Remove the fracture boxes, matched controls, the detector's boxes and named regions."""

    key = "causal"

    def validate(self, cfg: AuditConfig) -> None:
        """A bad regions CSV fails before any model loads, not after the per-image audit."""
        if cfg.causal_regions is not None:
            _regions(cfg)

    def settings(self, cfg: AuditConfig) -> dict[str, Any]:
        regions = cfg.causal_regions
        return {
            "causal_images": cfg.causal_images,
            "causal_controls": cfg.causal_controls,
            "causal_regions": None if regions is None else str(regions),
            "causal_regions_sha256": sha256_file(Path(regions))
            if regions is not None and Path(regions).is_file()
            else None,
            "det_conf": cfg.det_conf,
            "n_boot": cfg.n_boot,
            "seed": cfg.seed,
        }

    def run(self, subject: CheckSubject, cfg: AuditConfig) -> dict[str, Any]:
        size, keep = subject.clf.meta.image_size, subject.clf.meta.keep_aspect
        threshold = float(subject.clf.meta.threshold)
        named = _named_masks(subject, cfg)
        contents = [
            content_region(it.height, it.width, size, keep_aspect=keep) for it in subject.items
        ]
        avoid = []
        for k in range(len(subject.items)):
            blocked = np.zeros((size, size), dtype=bool)
            for mask in [subject.gt_masks[k], *named[k].values()]:
                if mask is not None:
                    blocked |= mask
            avoid.append(blocked)
        fractured = subject.with_boxes()[: cfg.causal_images]
        # (name, salt of its seeds, positions, masks): a region's numbers do not depend on
        # whether the audit had a detector or other named regions
        kinds: list[tuple[str, int, list[int], list[np.ndarray]]] = [
            (GT, 0, fractured, [subject.gt_masks[k] for k in fractured])
        ]
        if subject.det_boxes is not None:
            det = [(k, _mask(subject.det_boxes[k], size)) for k in fractured]
            kinds.append(
                (
                    DETECTOR,
                    1,
                    [k for k, m in det if m is not None],
                    [m for _, m in det if m is not None],
                )
            )
        names = sorted({name for regions in named for name in regions})
        for j, name in enumerate(names):
            where = [k for k, regions in enumerate(named) if name in regions][: cfg.causal_images]
            kinds.append((name, 2 + j, where, [named[k][name] for k in where]))

        result: dict[str, Any] = {
            "threshold": threshold,
            "n_controls": cfg.causal_controls,
            "detector": subject.det_boxes is not None,
            "regions": {},
        }
        for kind, salt, where, masks in kinds:
            if not where:
                result["regions"][kind] = {"n": 0}
                continue
            res = ablate_regions(
                subject.fracture_probability,
                subject.images[where],
                masks,
                contents=[contents[k] for k in where],
                avoid=[avoid[k] for k in where],
                n_controls=cfg.causal_controls,
                seeds=[(cfg.seed, subject.items[k].index, salt) for k in where],
            )
            result["regions"][kind] = _summary(
                res, [subject.items[k].key for k in where], threshold, cfg
            )
        result["figure"] = _figure(subject, cfg, kinds, contents, avoid)
        return result

    def sections(
        self,
        results: Mapping[str, Mapping[str, Any]],
        metrics: Mapping[str, Any],
        audit_dir: Path,
    ) -> list[Section]:
        sections = []
        for k, (model, result) in enumerate(results.items()):
            rows = [_row(kind, entry) for kind, entry in result["regions"].items() if entry["n"]]
            text = reading(result)
            if k == 0:
                text = (
                    "Each region is removed by ROAD's noisy linear imputation and the fracture "
                    f"probability measured again; {result['n_controls']} matched controls per "
                    "image remove the same pixel set shifted elsewhere in the image content (off "
                    "the fracture boxes and named regions). Difference: the region's drop minus "
                    "its controls' mean drop, per image (bootstrap 95% CI, Wilcoxon signed-rank "
                    "p). Flipped: calls crossing the classifier's threshold.\n\n" + text
                )
            figures = [Path(audit_dir) / result["figure"]] if result.get("figure") else []
            sections.append(
                Section(f"Causal box test: {model}", text=text, table=rows, figures=figures)
            )
        return sections


def _row(kind: str, entry: Mapping[str, Any]) -> dict[str, str]:
    diff = entry["difference"]
    ci = None if diff["ci_low"] is None else (diff["ci_low"], diff["ci_high"])
    return {
        "removed": kind,
        "n": str(entry["n"]),
        "p before": number_cell(entry["p_before"]),
        "drop": estimate_cell(entry["drop"]),
        "control drop": estimate_cell(entry["control_drop"]),
        "drop − controls": ci_cell(diff["mean_diff"], ci),
        "Wilcoxon p": _p(diff["wilcoxon_p"]),
        "calls flipped": number_cell(entry["flipped"], 0, scale=100) + "%",
        "controls flipped": number_cell(entry["flipped_controls"], 0, scale=100) + "%",
    }


def _p(p: float | None) -> str:
    if p is None:
        return "–"
    return f"{p:.2g}" if p >= 1e-4 else "< 0.0001"


def reading(result: Mapping[str, Any]) -> str:
    """One line per model: what removing the fracture boxes (and each named region) did."""
    gt = result["regions"].get(GT, {"n": 0})
    if not gt["n"]:
        return "No fractured image of the subset has a box in the classifier's frame."
    diff = gt["difference"]
    if diff["mean_diff"] is None:
        return "No fractured image had room for a control box: no comparison."
    d, lo, hi = diff["mean_diff"], diff["ci_low"], diff["ci_high"]
    if d >= 0:
        size, more = ci_cell(d, None if lo is None else (lo, hi)), "more"
    else:
        size, more = ci_cell(-d, None if lo is None else (-hi, -lo)), "less"
    test = (
        f"Wilcoxon p {'' if diff['wilcoxon_p'] < 1e-4 else '= '}{_p(diff['wilcoxon_p'])}"
        if diff["wilcoxon_p"] is not None
        else "no Wilcoxon test: " + (diff["note"] or "").replace(": no Wilcoxon test", "")
    )
    line = (
        f"Removing the fracture boxes lowers the fracture probability by {size} {more} than "
        f"removing matched boxes elsewhere ({test}, {diff['n']} images); it flips "
        f"{gt['flipped']:.0%} of the calls."
    )
    for kind, entry in result["regions"].items():
        if kind not in (GT, DETECTOR) and entry["n"]:
            line += (
                f" Removing the region “{kind}” flips {entry['flipped']:.0%} of the calls "
                f"(drop {entry['drop']['mean']:.3f}, {entry['n']} images)."
            )
    return line


def _figure(
    subject: CheckSubject,
    cfg: AuditConfig,
    kinds: Sequence[tuple[str, int, list[int], list[np.ndarray]]],
    contents: Sequence[tuple[int, int, int, int]],
    avoid: Sequence[np.ndarray],
) -> str | None:
    """One image: original, fracture boxes removed, a control removed, each named region
    removed (the same seeds as the numbers, so the titles are the table's probabilities)."""
    from fracdet.report.figures import new_grid, save_figure

    gt_where = kinds[0][2]
    if not gt_where:
        return None
    named = [where for kind, _, where, _ in kinds if kind not in (GT, DETECTOR)]
    # the first image whose named regions show too, else the first one
    k = next((k for k in gt_where if any(k in where for where in named)), gt_where[0])
    image = subject.images[k : k + 1]
    panels: list[tuple[str, np.ndarray, np.ndarray | None]] = []
    base = float(subject.fracture_probability(image)[0])
    panels.append(
        (
            f"{subject.items[k].key}\noriginal, p = {base:.3f}",
            image[0, 0].float().cpu().numpy(),
            None,
        )
    )
    for kind, salt, where, masks in kinds:
        if k not in where or kind == DETECTOR:
            continue
        mask = masks[where.index(k)]
        res = ablate_regions(
            subject.fracture_probability,
            image,
            [mask],
            contents=[contents[k]],
            avoid=[avoid[k]],
            n_controls=cfg.causal_controls,
            seeds=[(cfg.seed, subject.items[k].index, salt)],
            keep_images=True,
        )
        variants = res.images[0].float().cpu().numpy()
        panels.append((f"{kind} removed\np = {res.ablated[0]:.3f}", variants[0, 0], mask))
        if kind == GT and res.shifts[0]:
            moved = shift_mask(mask, *res.shifts[0][0])
            panels.append(
                (f"a control removed\np = {res.controls[0, 0]:.3f}", variants[1, 0], moved)
            )
    fig, axes = new_grid((2.6 * len(panels), 3.3), 1, len(panels))
    for ax, (title, pixels, mask) in zip(axes[0], panels, strict=True):
        ax.imshow(pixels, cmap="gray", vmin=0, vmax=1)
        if mask is not None:
            ax.contour(mask, levels=[0.5], colors="#e8590c", linewidths=0.8)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    path = subject.figure_path("causal")
    save_figure(fig, path)
    return subject.relative(path)


CHECK = CausalCheck()
