"""The end of an audit: numbers from the per-image table, figures, ``metrics.json``, the report,
and the verdict on each audited model's card (:mod:`fracdet.audit.card`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fracdet.audit.card import update_audited_cards
from fracdet.audit.checks import load_check_results
from fracdet.audit.figures import GridRow, plot_coverage, plot_grid, plot_robustness
from fracdet.audit.inputs import AuditInputs, AuditItem
from fracdet.audit.result import AuditSummary
from fracdet.audit.schema import CONDITIONS, AuditSchema, values
from fracdet.audit.store import AuditStore
from fracdet.audit.summary import summarize
from fracdet.data.geometry import box_to_model_frame
from fracdet.fsutil import atomic_write_json
from fracdet.jobs import read_rows

__all__ = ["finalize_audit"]

logger = logging.getLogger(__name__)

METRICS = "metrics.json"
REPORT = "report.html"


def _mean_of_finite(table: np.ndarray) -> np.ndarray:
    """Column means over the finite values; NaN where there is none (no boxes: no coverage).

    Without nanmean's warning.
    """
    finite = np.isfinite(table)
    sums = np.where(finite, table, 0.0).sum(axis=0)
    counts = finite.sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _grid_indices(
    rows: Sequence[dict[str, str]],
    schema: AuditSchema,
    *,
    samples: int,
    worst: int,
    seed: int,
) -> list[tuple[int, str]]:
    """A seeded sample of images with boxes, then the worst-covered (mean over methods, clean)."""
    with_boxes = [r for r in rows if r["status"] == "ok" and int(r.get("n_gt_boxes") or 0) > 0]
    if not with_boxes:
        with_boxes = [r for r in rows if r["status"] == "ok"]
    rng = np.random.default_rng(seed)
    chosen = (
        sorted(
            rng.choice(len(with_boxes), size=min(samples, len(with_boxes)), replace=False).tolist()
        )
        if with_boxes
        else []
    )
    picked = [(int(with_boxes[k]["index"]), "sample") for k in chosen]
    coverage = schema.coverage()
    cover = (
        _mean_of_finite(
            np.stack(
                [values(with_boxes, schema.column(c, "clean", coverage)) for c in schema.methods]
            )
        )
        if schema.methods and with_boxes
        else np.array([])
    )
    order = [
        k
        for k in np.argsort(np.nan_to_num(cover, nan=np.inf), kind="stable")
        if k not in chosen and np.isfinite(cover[k])
    ]
    picked += [(int(with_boxes[k]["index"]), f"worst, cov {cover[k]:.2f}") for k in order[:worst]]
    return picked


def _grid_rows(
    store: AuditStore,
    model: str,
    picks: Sequence[tuple[int, str]],
    items: dict[int, AuditItem],
    schema: AuditSchema,
    detections: Sequence[dict[str, Any]],
    *,
    image_size: int,
    keep_aspect: bool,
    batch_size: int,
    det_conf: float,
) -> list[GridRow]:
    from fracdet.data.datasets import ClassificationDataset

    # one decoder for every picked image, and each chunk's maps read once however many picks
    # it holds
    pixels_of = ClassificationDataset(
        [items[index].record() for index, _ in picks], image_size, keep_aspect=keep_aspect
    )
    chunks: dict[Path, dict[str, np.ndarray]] = {}
    rows = []
    for k, (index, why) in enumerate(picks):
        item = items[index]
        chunk = (index - 1) // batch_size
        path = store.map_path(model, chunk)
        if not path.is_file():
            logger.warning("no saved maps for %s (%s): not in the figure grid", item.key, path)
            continue
        if path not in chunks:
            with np.load(path) as saved:
                chunks[path] = {name: saved[name] for name in saved.files}
        saved = chunks[path]
        position = int(np.flatnonzero(saved["index"] == index)[0])
        maps = [
            saved[schema.map_name(c, cond)][position] for c in schema.methods for cond in CONDITIONS
        ]
        pixels = pixels_of[k][0]
        if pixels is None:
            continue
        gt = (
            [
                box_to_model_frame(
                    b, item.height, item.width, image_size, keep_aspect=keep_aspect
                ).as_list()
                for b in item.boxes
            ]
            if item.width
            else []
        )
        det = [
            b[:4]
            for d in detections
            if d["model"] == model and d["index"] == index and d["cond"] == "clean"
            for b in d["boxes"]
            if b[5] >= det_conf
        ]
        rows.append(GridRow(pixels[0].numpy(), gt, det, maps, f"{item.key}\n({why})"))
    return rows


def _with_finalize_seconds(
    seconds: dict[str, float], *, summary: float, figures: float
) -> dict[str, float]:
    """The image loop's stages, then the summary's and the figures'; ``total`` covers them all."""
    stages = {k: v for k, v in seconds.items() if k != "total"}
    stages |= {"summary": round(summary, 3), "figures": round(figures, 3)}
    return stages | {"total": round(float(seconds.get("total", 0.0)) + summary + figures, 3)}


def finalize_audit(out: Path, inputs: AuditInputs, state: dict[str, Any]) -> AuditSummary:
    """Write ``metrics.json``, the figures and ``report.html``/``report.md`` into ``out``."""
    from fracdet.audit.answer import headline
    from fracdet.audit.report import write_audit_report

    out = Path(out)
    header, rows = read_rows(out / "per_image.csv")
    store = AuditStore(out, header)
    detections = store.detection_entries()
    started = time.perf_counter()
    metrics = summarize(rows, detections, inputs, state)
    summary_s = time.perf_counter() - started
    config = state["config"]
    schema = AuditSchema.from_metrics(metrics)
    codes = schema.methods
    figures: dict[str, Path] = {}
    figures_dir = out / "figures"
    if inputs.has_labels:
        figures["robustness"] = plot_robustness(
            metrics["robustness"], figures_dir / "robustness.png"
        )
    if inputs.has_boxes and codes:
        figures["coverage"] = plot_coverage(
            metrics["localization"], schema, figures_dir / "coverage.png"
        )
    items = {it.index: it for it in inputs.items}
    if config.get("save_maps", True) and codes:
        columns = [f"{c} {cond}" for c in codes for cond in CONDITIONS]
        for model in metrics["models"]:
            model_rows = [r for r in rows if r["model"] == model]
            picks = _grid_indices(
                model_rows,
                schema,
                samples=int(config["figure_samples"]),
                worst=int(config["figure_worst"]),
                seed=int(config["seed"]),
            )
            identity = state["identity"]["classifiers"][model]
            grid = _grid_rows(
                store,
                model,
                picks,
                items,
                schema,
                detections,
                image_size=int(identity["image_size"]),
                keep_aspect=identity.get("resize", "letterbox") != "stretch",
                batch_size=int(config["batch_size"]),
                det_conf=float(config["det_conf"]),
            )
            if grid:
                figures[f"grid:{model}"] = plot_grid(
                    grid,
                    columns,
                    figures_dir / f"grid_{model}.png",
                    title=f"{model}: attributions on clean and PGD inputs",
                )
    metrics["checks"] = load_check_results(out, config.get("checks") or ())
    metrics["figures"] = {k: str(v.relative_to(out)) for k, v in figures.items()}
    metrics["provenance"] = {
        k: state.get(k) for k in ("fracdet_version", "versions", "device", "precision", "shards")
    } | {
        "seconds": _with_finalize_seconds(
            state.get("seconds") or {},
            summary=summary_s,
            figures=time.perf_counter() - started - summary_s,
        ),
        "seed": config["seed"],
        "data_hash": inputs.data_hash,
        "config": config,
        "classifiers": state["identity"]["classifiers"],
        "detector": state["identity"]["detector"],
    }
    atomic_write_json(out / METRICS, metrics)
    report = write_audit_report(out / REPORT, metrics, figures)
    update_audited_cards(out, metrics)
    return AuditSummary(
        out, report, len(inputs.items), len(metrics["models"]), tuple(headline(metrics))
    )
