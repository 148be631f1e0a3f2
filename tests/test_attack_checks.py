"""The attack checks: the proof on phantoms (a gradient-masked classifier that PGD calls robust,
the checks flag, and the ensemble breaks about as far as the unmasked one), a randomised model
caught, and the check through the audit (table, figure, metrics, AutoAttack in the per-image
audit)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import read_rows
from test_audit import _cfg
from test_audit_checks import models  # noqa: F401 - the two random classifiers and a detector
from torch import nn

from fracdet.audit import run_audit
from fracdet.audit.config import AuditConfig
from fracdet.errors import ConfigError
from fracdet.robust.attack_checks import (
    ATTACK_CHECK_NAMES,
    AttackCheckConfig,
    run_attack_checks,
)
from fracdet.robust.attacks import AttackConfig
from fracdet.robust.ensemble import ENSEMBLE_ATTACKS
from fracdet.robust.masking import QuantizedInput

SIZE = 48
EPS = (0.0, 2 / 255, 8 / 255, 16 / 255, 64 / 255)


@pytest.fixture(scope="module")
def phantom_classifier(phantom_dataset):
    """A tiny CNN fitted to 48 phantom radiographs at 48 px, and the first 16 of them."""
    from fracdet.audit.inputs import load_inputs
    from fracdet.data.datasets import ClassificationDataset

    items = load_inputs(phantom_dataset, split="all").items
    data = ClassificationDataset([it.record() for it in items], SIZE, keep_aspect=True)
    images = torch.stack([data[k][0] for k in range(len(items))])
    labels = torch.tensor([it.label for it in items])
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(128, 1),
        nn.Flatten(0),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = nn.functional.binary_cross_entropy_with_logits(model(images), labels.float())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), images[:16], labels[:16]


@pytest.fixture(scope="module")
def proof(phantom_classifier):
    model, images, labels = phantom_classifier
    cfg = AttackCheckConfig(eps=EPS, pgd=AttackConfig(eps=8 / 255, step_size=2 / 255))
    masked = QuantizedInput(model, levels=16)
    return {
        "plain": run_attack_checks(model, images, labels, cfg),
        "masked": run_attack_checks(masked, images, labels, cfg),
    }


def test_the_unmasked_classifier_passes_every_check(proof):
    plain = proof["plain"]
    assert plain["accuracy"]["pgd"][0] >= 0.75  # it learned the phantoms
    assert [line["check"] for line in plain["lines"]] == list(ATTACK_CHECK_NAMES)
    assert plain["trusted"] and plain["failed"] == []
    assert plain["accuracy"]["pgd"][-1] == 0 and plain["accuracy"]["autoattack"][-1] == 0


def test_pgd_calls_the_masked_classifier_robust_and_the_checks_flag_it(proof):
    plain, masked = proof["plain"], proof["masked"]
    at = EPS.index(8 / 255)
    clean = masked["accuracy"]["pgd"][0]
    # PGD alone: hardly a dent, far above what the same weights allow without the masking
    assert masked["accuracy"]["pgd"][at] >= clean - 0.15
    assert masked["accuracy"]["pgd"][at] >= plain["accuracy"]["pgd"][at] + 0.4
    assert not masked["trusted"]
    assert {"zero-gradient", "pgd-vs-ensemble", "black-box", "large-eps"} <= set(masked["failed"])
    lines = {line["check"]: line for line in masked["lines"]}
    assert lines["zero-gradient"]["value"] == 1.0  # every input gradient is exactly zero
    assert lines["deterministic"]["status"] == "pass"


def test_the_ensemble_breaks_the_masked_classifier_about_as_far_as_the_unmasked_one(proof):
    plain, masked = proof["plain"], proof["masked"]
    for k, eps in enumerate(EPS):
        if eps >= 8 / 255:  # Square (black-box) does it: the gradient attacks stall with PGD
            assert masked["accuracy"]["autoattack"][k] <= plain["accuracy"]["autoattack"][k] + 0.25
            assert masked["accuracy"]["square"][k] == masked["accuracy"]["autoattack"][k]
    assert masked["accuracy"]["autoattack"][-1] == 0
    assert masked["accuracy"]["apgd-ce"][-1] >= 0.5  # APGD stalls on zero gradients too


def test_bpda_breaks_the_masked_classifier_as_pgd_breaks_the_unmasked_one(proof):
    plain, masked = proof["plain"], proof["masked"]
    tolerance = 2 / plain["n"]  # two images: the rounding moves a few decisions either way
    for k in range(1, len(EPS)):
        assert masked["accuracy"]["pgd-bpda"][k] <= plain["accuracy"]["pgd"][k] + tolerance
    assert "bpda" in masked["failed"] and "bpda" not in plain["failed"]
    # without input quantisation BPDA is plain PGD (its own random start)
    assert np.allclose(plain["accuracy"]["pgd-bpda"], plain["accuracy"]["pgd"], atol=tolerance)
    assert masked["worst_at_eps"] <= masked["accuracy"]["pgd-bpda"][EPS.index(8 / 255)]


class Noisy(nn.Module):
    """A randomised defence: noise added to the input at every pass."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x + 0.05 * torch.randn_like(x))


def test_a_randomised_model_is_not_deterministic(phantom_classifier):
    model, images, labels = phantom_classifier
    cfg = AttackCheckConfig(eps=(0.0, 64 / 255), pgd=AttackConfig(eps=8 / 255, steps=2))
    result = run_attack_checks(Noisy(model), images[:4], labels[:4], cfg)
    assert "deterministic" in result["failed"] and not result["trusted"]


def test_check_options_are_validated_in_one_line():
    with pytest.raises(ConfigError, match="two or more distinct budgets"):
        AuditConfig(dataset="d", attack_check_eps=("4/255",))
    with pytest.raises(ConfigError, match="attack_check_tolerance must be in"):
        AuditConfig(dataset="d", attack_check_tolerance=0)
    with pytest.raises(ConfigError, match="attack_check_budget must be one of"):
        AuditConfig(dataset="d", attack_check_budget="slow")
    with pytest.raises(ConfigError, match="eps must lie in"):
        AuditConfig(dataset="d", attack_check_eps=("0", "300/255"))
    assert "attacks" in AuditConfig(dataset="d").checks  # in every audit unless turned off


def test_the_check_and_autoattack_run_in_an_audit_and_reach_the_report(
    phantom_dataset,
    models,  # noqa: F811
    tmp_path,
):
    out = tmp_path / "audit"
    cfg = _cfg(
        phantom_dataset,
        out,
        models,
        classifiers=(models["a"],),
        attack="autoattack",
        checks=("attacks",),
        check_images=1,
        attack_check_eps=("0", "64/255"),
        max_images=8,
        detector=None,
        methods=("saliency",),  # the attributions are not what this test is about
    )
    run_audit(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    result = metrics["checks"]["attacks"]["model_a"]
    assert [line["check"] for line in result["lines"]] == list(ATTACK_CHECK_NAMES)
    assert result["trusted"] == (result["failed"] == [])
    assert set(result["accuracy"]) == {"pgd", "pgd-bpda", *ENSEMBLE_ATTACKS, "autoattack", "worst"}
    assert result["eps"] == [0, 64 / 255] and result["at_eps"] == pytest.approx(4 / 255)
    assert (out / result["figure"]).is_file()
    report = (out / "report.html").read_text()
    assert "Can the robustness numbers be trusted? (attack checks)" in report
    assert "Robustness: clean vs AutoAttack" in report and "apgd-margin" in report
    seconds = metrics["provenance"]["seconds"]
    assert {f"attack:{name}" for name in ENSEMBLE_ATTACKS} <= set(seconds)
    # per_image.csv: every image perturbed, the ensemble inside its budget
    linf = np.array([float(r["linf"]) for r in read_rows(out / "per_image.csv")])
    assert linf.max() <= 4 / 255 + 1e-6 and linf.min() > 0


def test_the_check_takes_the_first_images_of_each_label():
    import numpy as np

    from fracdet.audit.check_attacks import _first_of_each_label

    labels = np.array([1, 0, 0, 1, 1, 0, 1])
    assert _first_of_each_label(labels, 2) == [0, 1, 2, 3]
    assert _first_of_each_label(labels, None) == list(range(7))
    assert _first_of_each_label(labels, 9) == list(range(7))
