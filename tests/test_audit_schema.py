"""One schema for the audit's results: names built in one place, a new metric added in one place."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import read_rows

import fracdet.audit.schema as schema_module
from fracdet.audit import AuditConfig, run_audit
from fracdet.audit.schema import AuditSchema, ImageRow, MapMetric
from fracdet.cls.checkpoint import ClassifierMeta, save_classifier
from fracdet.cls.model import create_classifier


def _legacy_columns() -> list[str]:
    """The header audits wrote before the schema existed (SM, GC++ and IG at 5/25/50), by hand,
    with the localization AUC and RRA (issue 22) after the pointing game."""
    columns = [
        "model",
        "index",
        "key",
        "path",
        "status",
        "reason",
        "label",
        "n_gt_boxes",
        "p_clean",
        "p_pgd",
        "pred_clean",
        "pred_pgd",
        "linf",
        "det_n_clean",
        "det_max_clean",
        "det_n_pgd",
        "det_max_pgd",
        "det_gt_iou",
        "box_share",
        "pointing_baseline",
        "det_box_share_clean",
        "det_box_share_pgd",
    ]
    for code in ("SM", "GCpp", "IG"):
        for cond in ("clean", "pgd"):
            columns += [
                f"{code}_{cond}_{m}"
                for m in (
                    *("cov5", "cov25", "cov50", "energy", "pointing", "auc", "rra"),
                    *("det_cov25", "det_energy"),
                )
            ]
        columns += [f"{code}_rho", f"{code}_top25"]
    return [*columns, "IG_clean_delta", "IG_pgd_delta"]


def test_the_header_is_the_one_audits_always_wrote_plus_auc_and_rra():
    schema = AuditSchema.of(["SM", "GC++", "IG"], [5, 25, 50])
    assert schema.methods == ("SM", "GCpp", "IG") and schema.focus == 25.0
    assert schema.columns() == _legacy_columns()
    assert AuditSchema.of(["SM"], [10, 30]).focus == 30  # no 25: the middle one


def test_methods_come_from_the_state_not_the_header():
    schema = AuditSchema.of(["SM", "IG"], [5.0, 25.0])
    assert AuditSchema.from_state({"schema": schema.state()}) == schema
    # an audit written before the schema was saved: its config names the methods
    old = {"config": {"methods": ["saliency", "gradcam++"], "percentiles": [25]}}
    assert AuditSchema.from_state(old) == AuditSchema(("SM", "GCpp"), (25.0,))


def test_a_row_flattens_per_input_values_and_leaves_missing_cells_empty():
    row = ImageRow("m", 3, "k", "k.png", p={"clean": 0.5, "pgd": 0.25}, det_n={"pgd": 2})
    assert row.as_row() == {
        "model": "m",
        "index": 3,
        "key": "k",
        "path": "k.png",
        "status": "ok",
        "reason": "",
        "p_clean": 0.5,
        "p_pgd": 0.25,
        "det_n_pgd": 2,
    }
    assert set(row.as_row()) <= set(schema_module.FIXED_COLUMNS)


def _energy_by_hand(s) -> float:
    """Energy in box computed again from the map: positive mass inside the mask over all of it."""
    positive = np.clip(s.ranked.values.astype(np.float64), 0.0, None)
    return float(positive[s.mask].sum() / positive.sum())


#: The dummy metric: a second computation of energy in box, with the box share as its baseline.
DUMMY = MapMetric(
    "dummy_energy",
    "dummy",
    "dummy energy",
    _energy_by_hand,
    baseline="box_share",
    baseline_label="random (dummy)",
)


def test_a_new_metric_reaches_the_csv_the_json_and_both_reports(
    phantom_dataset, tmp_path, monkeypatch
):
    monkeypatch.setattr(
        schema_module, "BOX_METRICS", (*schema_module.BOX_METRICS, DUMMY)
    )  # the one place a metric is added
    torch.manual_seed(0)
    model = create_classifier("resnet10t", num_outputs=1)
    meta = ClassifierMeta(
        backbone="resnet10t",
        class_names=("not_fractured", "fractured"),
        image_size=64,
        mean=tuple(model.mean.flatten().tolist()),
        std=tuple(model.std.flatten().tolist()),
        threshold=0.5,
        temperature=1.0,
    )
    save_classifier(model, meta, tmp_path / "m" / "best.safetensors")
    out = tmp_path / "audit"
    run_audit(
        AuditConfig(
            dataset=phantom_dataset,
            output=out,
            classifiers=(tmp_path / "m",),
            split="all",
            max_images=12,
            methods=("saliency",),
            checks=(),  # the checks have their own tests
            percentiles=(25.0,),
            steps=1,
            n_boot=100,
            batch_size=6,
            workers=0,
            device="cpu",
            save_maps=False,
        )
    )
    rows = read_rows(out / "per_image.csv")
    dummy = np.array([float(r["SM_clean_dummy"] or "nan") for r in rows])
    energy = np.array([float(r["SM_clean_energy"] or "nan") for r in rows])
    boxed = np.array([int(r["n_gt_boxes"]) > 0 for r in rows])
    assert boxed.any() and np.isfinite(dummy).tolist() == boxed.tolist()  # only images with boxes
    np.testing.assert_allclose(dummy[boxed], energy[boxed], rtol=1e-5)  # the maps it was given

    metrics = json.loads((out / "metrics.json").read_text())
    entry = metrics["localization"]["m"]["SM/pgd"]["dummy_energy"]
    pgd = np.array([float(r["SM_pgd_dummy"]) for r in rows if r["SM_pgd_dummy"]])
    assert entry["n"] == boxed.sum() and entry["mean"] == pytest.approx(pgd.mean())
    share = np.array([float(r["box_share"]) for r in rows if r["box_share"]])
    assert metrics["baselines"]["m"]["dummy_energy"] == pytest.approx(share.mean())

    # the schema's own AUC and RRA take the same road: filled where there are boxes, baselines
    # 0.5 and the box share
    for column in ("SM_clean_auc", "SM_pgd_rra"):
        scored = np.array([float(r[column] or "nan") for r in rows])
        assert np.isfinite(scored).tolist() == boxed.tolist()
        assert ((scored[boxed] >= 0) & (scored[boxed] <= 1)).all()
    assert metrics["baselines"]["m"]["localization_auc"] == 0.5
    assert metrics["baselines"]["m"]["relevance_rank_accuracy"] == pytest.approx(share.mean())
    assert metrics["localization"]["m"]["SM/clean"]["localization_auc"]["n"] == boxed.sum()
    # every image with a box falls in one size class
    assert sum(metrics["by_box_size"]["models"]["m"]["n"].values()) == boxed.sum()

    cell = f"{entry['mean']:.3f} [{entry['ci95'][0]:.3f}–{entry['ci95'][1]:.3f}]"
    html = (out / "report.html").read_text()
    markdown = (out / "report.md").read_text()
    for page in (html, markdown):
        assert "Energy in box, pointing game, localization AUC, RRA and dummy energy" in page
        assert "dummy energy" in page and "random (dummy)" in page and cell in page
        assert "Coverage by box size" in page
