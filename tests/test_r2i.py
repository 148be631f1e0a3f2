"""The robust-transfer study's preset end to end: convert -> train-cls robustbench:Standard ->
audit.

On phantoms in CI, on the real FracAtlas sample when it is present (marked ``fracatlas``).
Both run the preset as a user would, through the CLI, with the image size and epochs cut
down: the WideResNet-28-10 reads 16-px images for one epoch (its feature map is pooled globally,
so any size works; 32 px is native).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import re
from pathlib import Path

import pytest
from conftest import REAL_FRACATLAS
from typer.testing import CliRunner

from fracdet.audit.study_tables import table_1, table_i
from fracdet.cli import app

PRESET = Path(__file__).resolve().parents[1] / "configs" / "r2i.yaml"
#: the optional package (the Makefile installs it); fracdet imports only its zoo, so find_spec, not
#: import
needs_robustbench = pytest.mark.skipif(
    importlib.util.find_spec("robustbench") is None,
    reason="optional robustbench package not installed",
)
runner = CliRunner()


def _run(*args: object) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def _table_headers(markdown: str, first: str) -> list[list[str]]:
    """The column names of each Markdown table whose header starts with ``first``, in order."""
    lines = markdown.splitlines()
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for k, line in enumerate(lines)
        if line.startswith(f"| {first} |")
        and k + 1 < len(lines)
        and lines[k + 1].startswith("|")
        and set(lines[k + 1]) <= set("|-: ")
    ]


def _study_pipeline(dataset: Path, tmp_path: Path, *, max_images: int) -> tuple[dict, dict, str]:
    """train-cls and audit with the preset; returns the checkpoint JSON, metrics.json and
    report.md."""
    run = tmp_path / "run"
    _run(
        "train-cls",
        dataset / "manifest.csv",
        "--out",
        run,
        "--config",
        PRESET,
        "--backbone",
        "robustbench:Standard",
        "--image-size",
        "16",
        "--epochs",
        "1",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--precision",
        "fp32",
    )
    report = tmp_path / "report"
    _run(
        "audit",
        dataset,
        "--cls",
        run,
        "--name",
        "Standard",
        "--config",
        PRESET,
        "--out",
        report,
        "--max-images",
        max_images,
        "--checks",
        "none",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--device",
        "cpu",
    )
    meta = json.loads((run / "best.json").read_text())
    metrics = json.loads((report / "metrics.json").read_text())
    return meta, metrics, (report / "report.md").read_text()


def _check_study_shape(meta: dict, metrics: dict, markdown: str) -> None:
    # the checkpoint: the zoo model, its own (absent) normalisation, the study's resize
    assert meta["backbone"] == "robustbench:cifar10/Linf/Standard" and meta["resize"] == "stretch"
    assert meta["mean"] == [0.0, 0.0, 0.0] and meta["std"] == [1.0, 1.0, 1.0]
    assert (
        meta["backbone_info"]["normalization"]["where"].startswith("none")
        and meta["threshold"] == 0.5
    )
    assert meta["train_config"]["mode"] == "linear" and meta["train_config"]["optimizer"] == "adam"
    # Table 1 and Table I in the study's shape, then fracdet's additions
    codes = [f"{m}-{p}" for m in ("SM", "DL", "IG") for p in (5, 25, 50)]
    headers = _table_headers(markdown, "Model")
    assert headers[0] == ["Model", "Clean Acc (%)", "PGD Acc (%)", "ΔAcc (pp)"]
    assert ["Model", *codes] in headers
    order = [
        markdown.index(h)
        for h in (
            "## Table 1: clean vs PGD",
            "## Table 1, fracdet's additions",
            "## Table I: attribution coverage",
            "## Table I, fracdet's additions",
        )
    ]
    assert order == sorted(order)
    # the budget: normalized space, and Standard reads raw [0, 1] pixels, so 4/255 is four grey
    # levels
    config = metrics["provenance"]["config"]
    assert (config["eps_space"], config["target"], config["ig_steps"], config["split"]) == (
        "normalized",
        "predicted",
        10,
        "test",
    )
    assert metrics["provenance"]["classifiers"]["Standard"]["pixel_eps"] == pytest.approx(4 / 255)
    assert re.search(
        r"\| Standard \| test \(\d+\) \| .* \| 4/255 \(normalized\) \| 4/255 \|", markdown
    )
    rob = metrics["robustness"]["Standard"]
    row = table_1(metrics)[0]
    assert (
        row["Clean Acc (%)"] == f"{100 * rob['clean_accuracy']:.1f}"
        and row["PGD Acc (%)"] == f"{100 * rob['pgd_accuracy']:.1f}"
    )
    assert set(table_i(metrics)[0]) == {"Model", *codes}


@needs_robustbench
def test_r2i_preset_end_to_end_on_phantoms(tmp_path):
    phantoms = tmp_path / "phantoms"
    _run(
        "phantoms",
        phantoms,
        "--count",
        "40",
        "--size",
        "64",
        "--prevalence",
        "0.5",
        "--workers",
        "1",
        "--seed",
        "0",
    )
    dataset = tmp_path / "data"
    converted = _run("convert", phantoms, dataset, "--config", PRESET)
    report = json.loads((dataset / "convert_report.json").read_text())
    sample = report["split"]["study_sample"]
    assert sample["non_fractured_drawn"] == sample["fractured"] and "test:" in converted
    meta, metrics, markdown = _study_pipeline(dataset, tmp_path, max_images=4)
    _check_study_shape(meta, metrics, markdown)


@needs_robustbench
@pytest.mark.fracatlas
@pytest.mark.skipif(not REAL_FRACATLAS.is_dir(), reason="real FracAtlas sample not present")
def test_r2i_preset_on_the_fracatlas_sample_at_small_scale(tmp_path):
    """The real sample through the preset's split (717 + 717), then a small slice trained and
    audited."""
    dataset = tmp_path / "fa"
    _run("convert", REAL_FRACATLAS, dataset, "--config", PRESET, "--to", "manifest")
    report = json.loads((dataset / "convert_report.json").read_text())
    assert report["split"]["study_sample"] == {
        "fractured": 717,
        "non_fractured_drawn": 717,
        "non_fractured_available": 717,
        "negative_ratio": 1.0,
    }
    counts = report["split"]["counts_per_split_and_class"]
    assert (
        sum(c["fractured"] for c in counts.values()) == 717
        and abs(counts["train"]["fractured"] / 717 - 0.8) < 0.02
    )
    # small scale: 16 images per class in train, 4 in val and test
    with open(dataset / "manifest.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows, fields = list(reader), reader.fieldnames
    keep, seen = [], {}
    for row in rows:
        quota = 16 if row["split"] == "train" else 4
        key = (row["split"], row["label"])
        if seen.get(key, 0) < quota:
            seen[key] = seen.get(key, 0) + 1
            keep.append(row)
    small = tmp_path / "small"
    small.mkdir()
    with open(small / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(keep)
    meta, metrics, markdown = _study_pipeline(small, tmp_path, max_images=8)
    _check_study_shape(meta, metrics, markdown)
    assert metrics["robustness"]["Standard"]["n"] == 8


def _metrics(*, has_labels: bool = True, has_boxes: bool = True) -> dict:
    """A hand-made metrics.json: one model, SM at p = 5 and 25."""
    entry = {
        "coverage@5": {"mean": 0.123, "ci95": [0.1, 0.15], "n": 7},
        "coverage@25": {"mean": 0.5, "ci95": None, "n": 7},
        "energy_in_box": {"mean": 0.2, "ci95": [0.1, 0.3], "n": 7},
    }
    return {
        "has_labels": has_labels,
        "has_boxes": has_boxes,
        "methods": ["SM"],
        "percentiles": [5.0, 25.0],
        "robustness": {
            "m": {
                "n": 10,
                "clean_accuracy": 0.8,
                "clean_accuracy_ci95": [0.49, 0.94],
                "pgd_accuracy": 0.25,
                "pgd_accuracy_ci95": [0.07, 0.56],
                "clean_auroc": 0.9,
            }
        },
        "localization": {"m": {"SM/clean": entry, "SM/pgd": {}}},
        "baselines": {"m": {"energy_in_box": 0.05}},
        "provenance": {
            "config": {
                "split": "test",
                "eps": "4/255",
                "eps_space": "normalized",
                "target": "predicted",
                "channels": "abs_max",
                "ig_steps": 10,
            },
            "classifiers": {"m": {"pixel_eps": 4 / 255 * 0.2435}},
        },
    }


def test_study_tables_by_hand():
    from fracdet.audit.study_tables import study_sections, table_1_additions, table_i_additions

    metrics = _metrics()
    assert table_1(metrics) == [
        {"Model": "m", "Clean Acc (%)": "80.0", "PGD Acc (%)": "25.0", "ΔAcc (pp)": "-55.0"}
    ]
    assert table_i(metrics) == [{"Model": "m", "SM-5": "12.3", "SM-25": "50.0"}]
    extra = table_1_additions(metrics)[0]
    assert (
        extra["split audited (n)"] == "test (10)"
        and extra["clean acc % [95% CI]"] == "80.0 [49.0–94.0]"
    )
    assert (
        extra["ε as set"] == "4/255 (normalized)"
        and extra["ε in pixels"] == "0.97/255"
        and extra["AUROC clean → PGD"] == "0.900 → –"
    )
    clean, pgd = table_i_additions(metrics)
    assert (
        clean["cov@5 % [95% CI]"] == "12.3 [10.0–15.0]"
        and clean["cov@25 % [95% CI]"] == "50.0"
        and clean["random: box share %"] == "5.0"
    )
    assert (
        clean["images with boxes"] == "7"
        and pgd["cov@5 % [95% CI]"] == "–"
        and pgd["images with boxes"] == "0"
    )
    headings = [s.heading for s in study_sections(metrics)]
    assert [h.split(":")[0].split(",")[0] for h in headings] == [
        "Table 1",
        "Table 1",
        "Table I",
        "Table I",
    ]
    assert [s.heading[:7] for s in study_sections(_metrics(has_labels=False))] == [
        "Table I",
        "Table I",
    ]  # no labels: no accuracy
    assert [s.heading[:7] for s in study_sections(_metrics(has_boxes=False))] == [
        "Table 1",
        "Table 1",
    ]  # no boxes: no coverage
