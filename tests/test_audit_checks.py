"""The audit's checks framework: a registered check runs once per classifier on a fixed subset,
its result reaches ``checks/``, ``metrics.json`` and the report, a resume keeps it, a merge of
shards links it, and an unknown check is one clear error."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_detector
from test_audit import _cfg as _audit_cfg
from test_audit import _classifier

from fracdet.audit import merge_audits, run_audit
from fracdet.audit.checks import CHECKS, CheckSubject, select_check_items
from fracdet.audit.inputs import load_inputs
from fracdet.errors import ConfigError
from fracdet.report import Section


def _cfg(dataset: Path, out: Path, models: dict[str, Path], **options):
    """``test_audit``'s audit with the two attributions one forward pass gives (saliency and
    Grad-CAM): these tests are about the checks' framework, and DeepLift and IG were most of
    each audit's time."""
    return _audit_cfg(dataset, out, models, methods=("saliency", "gradcam"), **options)


class _CountingCheck:
    """Records what it was given; its result is the subset's mean fracture probability."""

    key = "dummy"

    def __init__(self) -> None:
        self.calls: list[CheckSubject] = []

    def settings(self, cfg):
        return {"seed": cfg.seed}

    def run(self, subject: CheckSubject, cfg):
        self.calls.append(subject)
        p = subject.fracture_probability(subject.images)
        return {"mean_p": float(p.mean()), "n": len(p), "with_boxes": subject.with_boxes()}

    def sections(self, results, metrics, audit_dir):
        rows = [{"model": m, "mean p": r["mean_p"]} for m, r in results.items()]
        return [Section("Dummy check of the instruments", table=rows)]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Two random binary classifiers and a tiny detector, as in ``test_audit``."""
    root = tmp_path_factory.mktemp("check_models")
    return {
        "a": _classifier(root / "model_a", seed=0),
        "b": _classifier(root / "model_b", seed=1),
        "det": make_tiny_detector(root),
    }


@pytest.fixture
def dummy_check(monkeypatch):
    check = _CountingCheck()
    module = types.ModuleType("fracdet_dummy_check")
    module.CHECK = check
    monkeypatch.setitem(sys.modules, "fracdet_dummy_check", module)
    monkeypatch.setitem(CHECKS, "dummy", "fracdet_dummy_check")
    return check


def test_a_check_runs_once_per_classifier_and_reaches_the_report(
    phantom_dataset, models, dummy_check, tmp_path
):
    out = tmp_path / "audit"
    cfg = _cfg(phantom_dataset, out, models, checks=("dummy",), check_images=3)
    run_audit(cfg)
    assert [s.name for s in dummy_check.calls] == ["model_a", "model_b"]
    subject = dummy_check.calls[0]
    items = load_inputs(phantom_dataset, split="all", max_images=12).items
    chosen = select_check_items(items, 3)
    assert [it.key for it in subject.items] == [it.key for it in chosen]
    assert sum(it.label == 1 for it in chosen) <= 3 and sum(it.label == 0 for it in chosen) <= 3
    assert subject.images.shape[1:] == (1, 64, 64) and subject.images.min() >= 0
    assert subject.det_boxes is not None and len(subject.det_boxes) == len(chosen)
    # every fractured image with a box in the frame has its mask; intact ones none
    assert all(subject.gt_masks[k].any() for k in subject.with_boxes())
    assert all(subject.gt_masks[k] is None for k, y in enumerate(subject.labels) if y == 0)
    explainers = subject.make_explainers(subject.clf.model)
    assert list(explainers) == list(subject.clf.explainers)

    saved = json.loads((out / "checks" / "dummy" / "model_a.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["checks"]["dummy"]["model_a"] == saved["result"]
    assert "check:dummy" in metrics["provenance"]["seconds"]
    assert "Dummy check of the instruments" in (out / "report.html").read_text()

    # a resumed audit keeps a result made with the same settings
    run_audit(_cfg(phantom_dataset, out, models, checks=("dummy",), check_images=3, resume=True))
    assert len(dummy_check.calls) == 2
    # with other settings it runs again
    run_audit(
        _cfg(
            phantom_dataset, out, models, checks=("dummy",), check_images=3, seed=1, overwrite=True
        )
    )
    assert len(dummy_check.calls) == 4


def test_shard_one_runs_the_checks_and_a_merge_keeps_them(
    phantom_dataset, models, dummy_check, tmp_path
):
    shards = []
    for k in (1, 2):
        out = tmp_path / f"shard{k}"
        run_audit(
            _cfg(phantom_dataset, out, models, checks=("dummy",), check_images=2, shard=f"{k}/2")
        )
        shards.append(out)
    assert len(dummy_check.calls) == 2  # shard 1 only, one per classifier
    assert not (tmp_path / "shard2" / "checks").exists()
    merge_audits(shards, tmp_path / "merged")
    metrics = json.loads((tmp_path / "merged" / "metrics.json").read_text())
    assert set(metrics["checks"]["dummy"]) == {"model_a", "model_b"}


def test_an_unknown_check_is_one_clear_error(phantom_dataset, models, tmp_path):
    with pytest.raises(ConfigError, match="unknown audit check 'nope'"):
        run_audit(_cfg(phantom_dataset, tmp_path / "a", models, checks=("nope",)))
    assert not (tmp_path / "a").exists()


def test_the_subset_is_the_first_fractured_with_boxes_and_the_first_intact(phantom_dataset):
    items = load_inputs(phantom_dataset, split="all").items
    chosen = select_check_items(items, 4)
    fractured = [it for it in chosen if it.label == 1]
    intact = [it for it in chosen if it.label == 0]
    assert len(fractured) == 4 and len(intact) == 4 and all(it.boxes for it in fractured)
    by_index = sorted(items, key=lambda it: it.index)
    assert fractured == [it for it in by_index if it.label == 1 and it.boxes][:4]
    assert intact == [it for it in by_index if it.label == 0][:4]
    assert torch.tensor([it.index for it in chosen]).diff().gt(0).all()


def test_no_checks_by_default_leaves_no_folder(phantom_dataset, models, tmp_path):
    out = tmp_path / "plain"
    run_audit(_cfg(phantom_dataset, out, models, checks=()))
    assert not (out / "checks").exists()
    assert json.loads((out / "metrics.json").read_text())["checks"] == {}


def test_saved_results_are_read_back_per_model_and_absent_checks_skipped(tmp_path: Path):
    from fracdet.audit.checks import load_check_results

    folder = tmp_path / "checks" / "dummy"
    folder.mkdir(parents=True)
    for name in ("zeta", "alpha"):
        (folder / f"{name}.json").write_text(json.dumps({"settings": {}, "result": {"m": name}}))
    assert load_check_results(tmp_path, ["dummy", "absent"]) == {
        "dummy": {"alpha": {"m": "alpha"}, "zeta": {"m": "zeta"}}
    }
