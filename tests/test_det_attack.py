"""The detector attacked directly: the torch letterbox is Ultralytics' own, the gradient reaches
the input's pixels, the attack lowers fracture scores where noise of the same ε does not, stays
within ε and [0, 1], is seeded; in the audit it is a check that runs once per frame with a
detector and is skipped without one."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_detector
from test_audit import _cfg, _classifier

from fracdet.audit import AuditConfig, run_audit
from fracdet.data.formats import Box
from fracdet.det.attack import (
    DetAttackConfig,
    attack_detector,
    detector_objective,
    fracture_scores,
    letterbox,
)
from fracdet.det.inference import DetectOptions, detect
from fracdet.det.model import load_detector
from fracdet.errors import ConfigError

EPS = 4 / 255


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    return load_detector(make_tiny_detector(tmp_path_factory.mktemp("det_attack")))


def _images(n: int = 4, h: int = 64, w: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth random grey images on 8-bit levels (what the detector's uint8 input holds)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.avg_pool2d(torch.rand(n, 1, h, w, generator=g), 5, 1, 2)
    return (x * 255).round() / 255


def _vanishing_sum(scores: torch.Tensor, floor: float = 0.001) -> torch.Tensor:
    return (scores * (scores > floor)).sum(dim=1)


@pytest.mark.parametrize(("shape", "imgsz"), [((64, 64), 32), ((64, 64), 96), ((40, 64), 64)])
def test_the_torch_letterbox_gives_ultralytics_own_scores(detector, shape, imgsz):
    # down- and up-scaling, and a non-square input that needs grey padding
    x = _images(3, *shape)
    found = detect(detector, [im[0].numpy() for im in x], DetectOptions(imgsz=imgsz, conf=0.001))
    theirs = np.array([max(d.scores) for d in found])
    ours = fracture_scores(detector, x, imgsz).amax(dim=1).numpy()
    np.testing.assert_allclose(ours, theirs, atol=2e-3)
    assert letterbox(x, imgsz).shape == (3, 3, imgsz, imgsz)


def test_the_gradient_reaches_the_input_pixels_through_the_letterbox(detector):
    # a finite-difference check on a tiny input, in float64: autograd's directional derivative
    # of the attack's objective equals the objective's central difference
    net = copy.deepcopy(detector.model).double().eval()
    x = _images(1, 20, 28).double().requires_grad_(True)
    cfg = DetAttackConfig(imgsz=32, floor=0.0)
    value = detector_objective(net, x, cfg)
    (grad,) = torch.autograd.grad(value, x)
    assert grad.abs().sum() > 0
    direction = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    h = 1e-5
    with torch.no_grad():
        plus = detector_objective(net, x + h * direction, cfg)
        minus = detector_objective(net, x - h * direction, cfg)
    numeric = float((plus - minus).detach() / (2 * h))
    analytic = float((grad * direction).sum())
    assert numeric == pytest.approx(analytic, rel=1e-4)


def test_the_attack_lowers_fracture_scores_where_noise_does_not(detector):
    x = _images(4)
    cfg = DetAttackConfig(eps=EPS, steps=5, step_size=1 / 255, imgsz=64)
    adv = attack_detector(detector, x, cfg, generator=torch.Generator().manual_seed(0))
    assert (adv - x).abs().max() <= EPS + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    noise = x + (torch.rand(x.shape, generator=torch.Generator().manual_seed(3)) * 2 - 1) * EPS
    clean = _vanishing_sum(fracture_scores(detector, x, 64))
    noisy = _vanishing_sum(fracture_scores(detector, noise.clamp(0, 1), 64))
    attacked = _vanishing_sum(fracture_scores(detector, adv, 64))
    # noise of the same ε moves the summed fracture confidence by well under 1%; PGD by far more
    assert ((noisy - clean).abs() / clean).max() < 0.01
    assert ((clean - attacked) / clean).min() > 0.03
    # intact images (label 0) get the opposite push: their best score rises
    up = attack_detector(
        detector, x, cfg, labels=torch.zeros(4), generator=torch.Generator().manual_seed(0)
    )
    assert (
        fracture_scores(detector, up, 64).amax(1) > fracture_scores(detector, x, 64).amax(1)
    ).all()
    # seeded: the same generator seed gives the same images, another seed others
    again = attack_detector(detector, x, cfg, generator=torch.Generator().manual_seed(0))
    other = attack_detector(detector, x, cfg, generator=torch.Generator().manual_seed(1))
    assert torch.equal(adv, again) and not torch.equal(adv, other)
    assert not detector.model.training  # the detector's mode is restored


def test_the_detection_loss_variant_raises_ultralytics_loss_within_eps(detector):
    x = _images(2)
    boxes = [[Box(10, 12, 40, 44, label=0)], []]
    cfg = DetAttackConfig(eps=EPS, steps=3, imgsz=64, loss="detection")
    adv = attack_detector(detector, x, cfg, boxes=boxes, generator=torch.Generator().manual_seed(0))
    assert (adv - x).abs().max() <= EPS + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        before = detector_objective(detector, x, cfg, boxes=boxes)
        after = detector_objective(detector, adv, cfg, boxes=boxes)
    assert after > before
    assert isinstance(detector.model.args, dict)  # the loss gains were borrowed, not kept
    with pytest.raises(ConfigError, match="needs ground-truth boxes"):
        attack_detector(detector, x, cfg)


def test_bad_options_are_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="detector attack loss must be one of"):
        DetAttackConfig(loss="dlr")
    with pytest.raises(ConfigError, match="det_attack_loss must be scores or detection"):
        AuditConfig(dataset=tmp_path, det_attack_loss="dlr")


#: The audits here test the detector attack check, which reads no attribution: the two one
#: forward pass gives (DeepLift and IG were most of each audit's time).
METHODS = ("saliency", "gradcam")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("det_attack_models")
    return {
        "a": _classifier(root / "model_a", seed=0),
        "b": _classifier(root / "model_b", seed=1),
        "det": make_tiny_detector(root),
    }


def test_the_audit_check_reaches_metrics_and_report(phantom_dataset, models, tmp_path):
    out = tmp_path / "audit"
    cfg = _cfg(
        phantom_dataset,
        out,
        models,
        checks=("detector_attack",),
        check_images=3,
        det_attack_map_ci=True,
        det_attack_boot=100,
        methods=METHODS,
    )
    assert cfg.det_attack_steps == 10
    run_audit(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    results = metrics["checks"]["detector_attack"]
    a, b = results["model_a"], results["model_b"]
    for r in (a, b):
        assert r["own_linf"] <= EPS + 1e-6 and r["n_images"] == 6
        for cond in ("clean", "transfer", "own"):
            assert set(r[cond]) >= {"map_50", "recall", "auroc", "map_50_ci95", "auroc_ci95"}
    # the detector's own attack does not depend on the classifier: model_b reuses model_a's
    assert b["reused_from"] == "model_a" and b["own"] == a["own"] and b["clean"] == a["clean"]
    # on fractured images the own attack lowers the best box score below the clean one
    best = {c: a[c]["mean_best_score"]["fractured"] for c in ("clean", "own")}
    assert best["own"] < best["clean"]
    assert "check:detector_attack" in metrics["provenance"]["seconds"]
    html = (out / "report.html").read_text()
    assert "The detector attacked directly" in html and "vanishing attack" in html
    assert "transfer from model_b" in html


def test_without_a_detector_the_check_is_skipped(phantom_dataset, models, tmp_path):
    out = tmp_path / "no_det"
    assert "detector_attack" in AuditConfig(dataset=out).checks  # on by default
    cfg = _cfg(
        phantom_dataset,
        out,
        {**models, "det": None},
        check_images=3,
        checks=("detector_attack",),
        methods=METHODS,
    )
    run_audit(cfg)
    assert not (out / "checks").exists()
    assert json.loads((out / "metrics.json").read_text())["checks"] == {}


def test_an_l2_audit_attack_is_recorded_as_skipped_in_one_line(tmp_path):
    from fracdet.audit.check_detector_attack import CHECK

    reason = "the detector attack is ℓ∞; the audit's attack is pgd_l2"
    (section,) = CHECK.sections({"model_a": {"skipped": reason}}, {}, tmp_path)
    assert section.table is None and section.text == f"Skipped: model_a: {reason}."


def test_the_checks_numbers_by_hand():
    # a fractured image whose box is found at 0.2 (below det_conf 0.25) and an intact image
    # with a false alarm at 0.6: recall 0, AUROC 0 (the intact image scores higher), and
    # mAP@0.5 0.5 (ranked FP then TP: precision 1/2 at full recall)
    from fracdet.audit.check_detector_attack import detector_numbers
    from fracdet.data.formats import ImageRecord

    gt = [[Box(10, 10, 30, 30, label=0)], []]
    found = [([Box(10, 10, 30, 30, label=0)], [0.2]), ([Box(40, 40, 60, 60, label=0)], [0.6])]
    labels = np.array([1, 0])
    records = [
        ImageRecord(f"im{k}", Path(f"im{k}.png"), 64, 64, int(y), tuple(b))
        for k, (y, b) in enumerate(zip(labels, gt, strict=True))
    ]
    n = detector_numbers(found, gt, labels, records, ["fracture"], conf=0.25, n_boot=0, seed=0)
    assert n["recall"] == 0.0 and n["n_gt_boxes"] == 1 and n["auroc"] == 0.0
    assert n["map_50"] == pytest.approx(0.5, abs=0.01)
    assert n["mean_best_score"] == {"fractured": 0.2, "intact": 0.6}
    found[0] = ([Box(11, 10, 30, 30, label=0)], [0.9])  # now confident and ranked first
    n = detector_numbers(found, gt, labels, records, ["fracture"], conf=0.25, n_boot=0, seed=0)
    assert n["recall"] == 1.0 and n["auroc"] == 1.0 and n["map_50"] == pytest.approx(1.0)
