"""``fracdet audit`` end to end on phantoms: outputs, invariants, resume, shards, torchrun,
errors."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_same_rows, make_tiny_detector, read_rows, save_image
from typer.testing import CliRunner

from fracdet.audit import AuditConfig, merge_audits, run_audit
from fracdet.audit.inputs import load_inputs
from fracdet.audit.run import chunk_items
from fracdet.cli import app
from fracdet.cls.checkpoint import ClassifierMeta, save_classifier
from fracdet.cls.model import create_classifier
from fracdet.errors import ConfigError, DataError, OutputExistsError

SIZE = 64
FAST = {
    "checks": (),  # each check has its own tests (tests/test_audit_checks.py and beside)
    "steps": 2,
    "ig_steps": 4,
    "n_boot": 200,
    "batch_size": 4,
    "workers": 0,
    "device": "cpu",
    "det_imgsz": 64,
    "figure_samples": 2,
    "figure_worst": 1,
}


def _classifier(path: Path, *, seed: int, names=("not_fractured", "fractured")) -> Path:
    torch.manual_seed(seed)
    model = create_classifier("resnet10t", num_outputs=1 if len(names) == 2 else len(names))
    meta = ClassifierMeta(
        backbone="resnet10t",
        class_names=tuple(names),
        image_size=SIZE,
        mean=tuple(model.mean.flatten().tolist()),
        std=tuple(model.std.flatten().tolist()),
        threshold=0.5,
        temperature=1.0,
    )
    save_classifier(model, meta, path / "best.safetensors")
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Two random binary classifiers, a 3-class one, and a 1-class YOLOv8n that draws boxes."""
    root = tmp_path_factory.mktemp("audit_models")
    paths = {
        "a": _classifier(root / "model_a", seed=0),
        "b": _classifier(root / "model_b", seed=1),
        "three": _classifier(root / "three", seed=2, names=("hand", "leg", "hip")),
    }
    paths["det"] = make_tiny_detector(root)
    return paths


def _cfg(dataset: Path, out: Path, models: dict[str, Path], **options) -> AuditConfig:
    values = {
        "classifiers": (models["a"], models["b"]),
        "detector": models["det"],
        "split": "all",
        "max_images": 12,
        **FAST,
        **options,
    }
    return AuditConfig(dataset=dataset, output=out, **values)


@pytest.fixture(scope="module")
def full_audit(phantom_dataset, models, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("audit") / "full"
    run_audit(_cfg(phantom_dataset, out, models))
    return out


def test_audit_writes_every_table_and_keeps_the_attack_honest(full_audit, phantom_dataset):
    rows = read_rows(full_audit / "per_image.csv")
    assert len(rows) == 24 and {r["model"] for r in rows} == {"model_a", "model_b"}
    assert all(r["status"] == "ok" for r in rows)
    linf = np.array([float(r["linf"]) for r in rows])
    assert (
        linf.max() <= 4 / 255 + 1e-6 and linf.max() > 3.5 / 255
    )  # within eps, and the budget is used
    metrics = json.loads((full_audit / "metrics.json").read_text())
    assert metrics["methods"] == ["SM", "DL", "IG", "GC"]
    inputs = load_inputs(phantom_dataset, split="all", max_images=12)
    n_boxed = sum(bool(it.boxes) for it in inputs.items)
    assert n_boxed > 0
    cov = metrics["localization"]["model_a"]["SM/clean"]["coverage@25"]
    assert cov["n"] == n_boxed and 0.0 <= cov["mean"] <= 1.0
    # coverage rows exist exactly for images with boxes
    assert sum(r["SM_clean_cov25"] != "" for r in rows if r["model"] == "model_a") == n_boxed
    rob = metrics["robustness"]["model_a"]
    assert rob["n"] == 12 and rob["delta_accuracy"] == pytest.approx(
        rob["pgd_accuracy"] - rob["clean_accuracy"]
    )
    assert set(metrics["detector"]["model_a"]) == {"clean", "pgd"}
    assert metrics["paired_tests"] and {t["metric"] for t in metrics["paired_tests"]} == {
        "coverage@25",
        "energy_in_box",
    }
    html = (full_audit / "report.html").read_text()
    for heading in (
        "The answer",
        "Robustness",
        "Attribution coverage",
        "Energy in box",
        "Detector",
        "Map stability",
        "paired tests",
        "Figure grid",
        "Provenance",
    ):
        assert heading in html
    assert "random map" in html
    with np.load(next((full_audit / "maps" / "model_a").glob("*.npz"))) as saved:
        assert saved["SM_clean"].dtype == np.float16 and saved["SM_clean"].shape[1:] == (SIZE, SIZE)


def test_resume_after_an_interruption_equals_a_full_run(
    full_audit, phantom_dataset, models, tmp_path, monkeypatch
):
    import fracdet.audit.run as run_module

    real = run_module.audit_batch
    calls = {"n": 0}

    def dies_on_third_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "audit_batch", dies_on_third_chunk)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run_audit(_cfg(phantom_dataset, out, models))
    assert len(read_rows(out / "per_image.csv")) == 8  # two chunks committed
    monkeypatch.setattr(run_module, "audit_batch", real)
    with pytest.raises(OutputExistsError):
        run_audit(_cfg(phantom_dataset, out, models))
    run_audit(_cfg(phantom_dataset, out, models, resume=True))
    assert_same_rows(out / "per_image.csv", full_audit / "per_image.csv")


def test_shards_merged_equal_a_full_run(full_audit, phantom_dataset, models, tmp_path):
    shards = [tmp_path / f"s{k}" for k in (1, 2)]
    for k, out in enumerate(shards, start=1):
        summary = run_audit(_cfg(phantom_dataset, out, models, shard=f"{k}/2"))
        assert summary.report is None and "fracdet merge" in summary.line()
    merged = merge_audits(shards, tmp_path / "merged")
    assert_same_rows(tmp_path / "merged" / "per_image.csv", full_audit / "per_image.csv")
    assert merged.report is not None and merged.report.is_file()


@pytest.mark.slow
def test_torchrun_two_ranks_equal_one_process(full_audit, phantom_dataset, models, tmp_path):
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "fracdet",
        "--quiet",
        "audit",
        str(phantom_dataset),
        "--cls",
        str(models["a"]),
        "--cls",
        str(models["b"]),
        "--det",
        str(models["det"]),
        "--split",
        "all",
        "--max-images",
        "12",
        "--checks",
        "none",
        "--steps",
        "2",
        "--ig-steps",
        "4",
        "--det-imgsz",
        "64",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    # n_boot and figure counts only shape the report, not the per-image table
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_rows(out / "per_image.csv", full_audit / "per_image.csv")
    assert (out / "report.html").is_file()


def test_plain_folder_runs_what_needs_no_ground_truth(models, tmp_path):
    folder = tmp_path / "images"
    for k in range(5):
        save_image(folder / f"x{k}.png", 80, 60, seed=k)
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    summary = run_audit(
        AuditConfig(
            dataset=folder, output=out, classifiers=(models["a"],), detector=models["det"], **FAST
        )
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert not metrics["has_labels"] and not metrics["has_boxes"]
    assert 0.0 <= metrics["robustness"]["model_a"]["flip_rate"] <= 1.0
    assert "agreement" in metrics["agreement"]["model_a"]["clean"]
    assert "Prediction stability" in (out / "report.html").read_text()
    assert "the attack flips" in summary.line()


def test_bf16_reaches_the_attack_and_every_attribution(
    phantom_dataset, models, tmp_path, monkeypatch
):
    """precision: bf16 runs the shared pass, the attack, DeepLIFT and IG under autocast."""
    import fracdet.explain.batch as batch
    import fracdet.robust.attacks as attacks
    from fracdet.explain import DeepLiftExplainer, IntegratedGradientsExplainer

    seen: dict[str, set[bool]] = {}

    def spy(name, func):
        def wrapped(*args, **kwargs):
            seen.setdefault(name, set()).add(
                torch.is_autocast_enabled("cpu")
                and torch.get_autocast_dtype("cpu") == torch.bfloat16
            )
            return func(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(batch, "_gradient_pass", spy("shared", batch._gradient_pass))
    monkeypatch.setattr(batch, "deeplift_one_reference", spy("DL", batch.deeplift_one_reference))
    monkeypatch.setattr(attacks, "attack", spy("attack", attacks.attack))
    monkeypatch.setattr(
        IntegratedGradientsExplainer, "explain", spy("IG", IntegratedGradientsExplainer.explain)
    )
    monkeypatch.setattr(
        DeepLiftExplainer, "attribute", spy("captum DL", DeepLiftExplainer.attribute)
    )
    out = tmp_path / "bf16"
    run_audit(
        _cfg(
            phantom_dataset,
            out,
            models,
            classifiers=(models["a"],),
            detector=None,
            max_images=8,
            precision="bf16",
        )
    )
    # a ResNet's DeepLIFT takes the one-reference path, never captum's doubled batch
    assert seen == {"shared": {True}, "attack": {True}, "DL": {True}, "IG": {True}}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["provenance"]["precision"] == "bf16"
    assert {
        "decoding",
        "forward+SM+GC",
        "attack",
        "attr:DL",
        "attr:IG",
        "metrics",
        "saving",
        "summary",
        "figures",
        "total",
    } <= set(metrics["provenance"]["seconds"])


def test_the_audit_prepares_models_for_its_precision(models):
    from fracdet.audit.models import load_classifiers

    cfg = AuditConfig(dataset=Path("unused"), classifiers=(models["a"],), batch_size=3)
    (fp32,), _ = load_classifiers(cfg, torch.device("cpu"), "fp32")
    (bf16,), _ = load_classifiers(cfg, torch.device("cpu"), "bf16")
    conv = lambda clf: next(m for m in clf.model.modules() if isinstance(m, torch.nn.Conv2d)).weight  # noqa: E731
    assert not conv(fp32).is_contiguous(memory_format=torch.channels_last) and conv(
        bf16
    ).is_contiguous(memory_format=torch.channels_last)
    assert (
        fp32.explainers["IG"].internal_batch_size == 3
    )  # IG's memory bounded by the batch, not ig_steps x batch


def test_chunks_cover_every_image_once():
    items = list(range(10))
    chunks = chunk_items(items, 4)
    assert chunks == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"classifiers": ("three",)}, ConfigError, "fracture classifiers"),
        (
            {"classifiers": ("det",), "detector": None},
            ConfigError,
            "--cls takes a fracdet classifier",
        ),
        ({"detector": "a"}, ConfigError, "classifier checkpoint"),
        ({"eps": "-1/255"}, ConfigError, "eps"),
        ({"eps": "300/255"}, ConfigError, "eps"),
        ({"methods": ("saliency", "lime")}, ConfigError, "unknown attribution method"),
        ({"classifiers": ()}, ConfigError, "at least one classifier"),
    ],
)
def test_bad_options_give_one_clear_error(phantom_dataset, models, tmp_path, change, error, match):
    resolved = {
        k: (
            tuple(models[m] for m in v)
            if k == "classifiers"
            else models[v]
            if k == "detector" and v
            else v
        )
        for k, v in change.items()
    }
    with pytest.raises(error, match=match):
        run_audit(_cfg(phantom_dataset, tmp_path / "out", models, **resolved))


def test_dataset_errors(models, tmp_path, phantom_dataset):
    with pytest.raises(DataError, match="dataset not found"):
        run_audit(_cfg(tmp_path / "missing", tmp_path / "out", models))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        run_audit(_cfg(tmp_path / "empty", tmp_path / "out", models))
    with pytest.raises(DataError, match="no images in split"):
        run_audit(_cfg(phantom_dataset, tmp_path / "out", models, split="nosuchsplit"))


def test_dataset_without_boxes_is_refused(phantom_dataset, models, tmp_path):
    manifest = tmp_path / "manifest.csv"
    with open(phantom_dataset / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row.update(boxes="[]", n_boxes="0", path=str((phantom_dataset / row["path"]).resolve()))
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(DataError, match="no ground-truth boxes") as refused:
        run_audit(_cfg(manifest, tmp_path / "out", models, max_images=None))
    assert "--max-images" not in str(refused.value)
    with pytest.raises(
        DataError, match=r"among its first 2 images by id \(--max-images\)"
    ):  # a quick look can miss every box
        run_audit(_cfg(manifest, tmp_path / "out", models, max_images=2))


def test_cli_audit(phantom_dataset, models, tmp_path):
    out = tmp_path / "cli"
    args = [
        "audit",
        str(phantom_dataset),
        "--cls",
        str(models["a"]),
        "--det",
        str(models["det"]),
        "--split",
        "all",
        "--max-images",
        "12",
        "--checks",
        "none",
        "--steps",
        "1",
        "--ig-steps",
        "2",
        "--methods",
        "saliency,gradcam",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "audit of 1 classifier(s) on 12 images" in result.output
    result = CliRunner().invoke(app, [*args[:-2], "--out", str(out), "--eps", "nonsense"])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "error:" in result.output
