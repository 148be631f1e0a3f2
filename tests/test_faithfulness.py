"""The faithfulness check: ROAD deletion curves tell a map of what the model uses from its
inverse, agree with pytorch-grad-cam's ROAD classes where both apply, are seeded, and reach
the audit's metrics and report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pytorch_grad_cam.metrics import road
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from test_audit import _cfg, _classifier
from torch import nn

from fracdet.audit import run_audit
from fracdet.audit.check_faithfulness import summarise_curves
from fracdet.audit.checks import CHECKS
from fracdet.audit.config import AuditConfig
from fracdet.errors import ConfigError
from fracdet.explain.faithfulness import (
    RANDOM,
    deletion_curves,
    relevance_order,
    removal_masks,
)

#: ROAD's own range (pytorch-grad-cam's ROADCombined uses 10..90 by 10)
ROAD_STEPS = (10, 30, 50, 70, 90)


class RegionMean(nn.Module):
    """A one-logit model in pixel space: ``gain * (mean of x over region - 0.5)``."""

    def __init__(self, region: np.ndarray, gain: float = 12.0) -> None:
        super().__init__()
        self.register_buffer("region", torch.as_tensor(region, dtype=torch.float32))
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inside = (x[:, 0] * self.region).sum(dim=(1, 2)) / self.region.sum()
        return (self.gain * (inside - 0.5)).unsqueeze(1)


def _probability(model: nn.Module):
    def score(images: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return torch.sigmoid(model(images)[:, 0]).numpy().astype(np.float64)

    return score


def _region(size: int, top: int, left: int, side: int) -> np.ndarray:
    region = np.zeros((size, size), dtype=bool)
    region[top : top + side, left : left + side] = True
    return region


def _images(region: np.ndarray, n: int, seed: int, low=(0.0, 0.3), high=(0.7, 1.0)) -> torch.Tensor:
    """Dark textured images, bright inside ``region``: the model calls every one a fracture."""
    rng = np.random.default_rng(seed)
    pixels = np.where(
        region, rng.uniform(*high, (n, *region.shape)), rng.uniform(*low, (n, *region.shape))
    )
    return torch.as_tensor(pixels[:, None], dtype=torch.float32)


@pytest.fixture(scope="module")
def phantom():
    region = _region(32, 6, 18, 8)  # 64 of 1024 pixels
    model = RegionMean(region).eval()
    images = _images(region, 6, seed=0)
    maps = {
        "region": np.broadcast_to(region, (6, 32, 32)).astype(np.float32),
        "inverse": np.broadcast_to(~region, (6, 32, 32)).astype(np.float32),
    }
    curves = deletion_curves(_probability(model), images, maps, percentages=ROAD_STEPS, seed=0)
    return model, images, maps, curves


def test_a_map_of_the_region_the_model_reads_is_faithful_and_its_inverse_is_not(phantom):
    _, _, _, curves = phantom
    assert curves.percentages == (0.0, 10.0, 30.0, 50.0, 70.0, 90.0)
    start = curves.morf["region"][:, 0]
    assert (start > 0.95).all()
    # removing 10% most relevant takes the whole region: the call is gone at once
    assert (curves.morf["region"][:, 1:] < 0.05).all()
    # removing the least relevant never touches the region until the last step (90% of 1024
    # pixels leaves 102, the region's 64 among them): the call stays
    assert np.allclose(curves.lerf["region"], start[:, None])
    # the inverse map is the mirror image: MoRF keeps the call, LeRF removes it first
    assert np.allclose(curves.morf["inverse"], start[:, None])
    assert (curves.lerf["inverse"][:, 1:] < 0.05).all()
    region, inverse, random = (curves.area(m) for m in ("region", "inverse", RANDOM))
    assert (region > 0.9).all() and (inverse < -0.9).all()
    assert abs(random.mean()) < 0.1
    result = summarise_curves(curves, n_boot=500, seed=0)
    assert result["ranking"] == ["region", "inverse"] and result["above_random"] == ["region"]
    assert result["methods"]["region"]["area"]["ci95"][0] > result["random"]["area"]["mean"]
    assert result["methods"]["inverse"]["area"]["ci95"][1] < result["random"]["area"]["mean"]
    better = result["methods"]["region"]["vs_random"]
    assert better["ci_low"] > 0.8 and better["wilcoxon_p"] < 0.05
    assert result["methods"]["inverse"]["vs_random"]["ci_high"] < -0.8


def test_curves_are_seeded_per_image_and_independent_of_the_other_methods(phantom):
    model, images, maps, curves = phantom
    again = deletion_curves(_probability(model), images, maps, percentages=ROAD_STEPS, seed=0)
    for method in (*maps, RANDOM):
        assert np.array_equal(again.morf[method], curves.morf[method])
        assert np.array_equal(again.lerf[method], curves.lerf[method])
    alone = deletion_curves(
        _probability(model), images, {"region": maps["region"]}, percentages=ROAD_STEPS, seed=0
    )
    assert np.array_equal(alone.morf["region"], curves.morf["region"])
    assert np.array_equal(alone.morf[RANDOM], curves.morf[RANDOM])
    # the first three images alone: the same curves (no dependence on the batch)
    head = deletion_curves(
        _probability(model),
        images[:3],
        {k: v[:3] for k, v in maps.items()},
        percentages=ROAD_STEPS,
        seed=0,
    )
    assert np.array_equal(head.lerf[RANDOM], curves.lerf[RANDOM][:3])
    other = deletion_curves(_probability(model), images, maps, percentages=ROAD_STEPS, seed=1)
    assert not np.array_equal(other.morf[RANDOM], curves.morf[RANDOM])


def test_every_curve_starts_at_the_untouched_score_and_the_steps_are_exact():
    region = _region(16, 2, 2, 6)
    model = RegionMean(region).eval()
    images = _images(region, 3, seed=1)
    smooth = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    curves = deletion_curves(
        _probability(model), images, {"ramp": np.stack([smooth] * 3)}, percentages=(25, 50, 75)
    )
    untouched = _probability(model)(images)
    for method in ("ramp", RANDOM):
        assert np.array_equal(curves.morf[method][:, 0], untouched)
        assert np.array_equal(curves.lerf[method][:, 0], untouched)
    # the ramp ranks the bottom rows most relevant and the region fills rows 2-7: MoRF leaves
    # it whole (bit for bit) until 75% reaches row 4; LeRF eats it from the top, and once it
    # is gone (50%) only the imputation's noise moves the score
    assert np.array_equal(curves.morf["ramp"][:, 1:3], np.stack([untouched] * 2, axis=1))
    assert (curves.morf["ramp"][:, 3] < untouched).all()
    assert (np.diff(curves.lerf["ramp"], axis=1) <= 0.01).all()
    assert (curves.lerf["ramp"][:, 2:] < 0.05).all()
    assert curves.area("ramp").mean() < 0
    # exactly round(x% of H*W) pixels per step, MoRF and LeRF from opposite ends of the order
    order = relevance_order(smooth, np.random.default_rng(0))
    morf, lerf = removal_masks(order, (16, 16), (10, 50))
    assert morf.sum(axis=(1, 2)).tolist() == [26, 128] == lerf.sum(axis=(1, 2)).tolist()
    assert not (morf[1] & lerf[1]).any() and morf[0][15, 15] and lerf[0][0, 0]
    with pytest.raises(ValueError, match=r"percentages must be in \(0, 100\)"):
        deletion_curves(_probability(model), images, {}, percentages=(50, 100))
    with pytest.raises(ValueError, match="random baseline"):
        deletion_curves(_probability(model), images, {RANDOM: np.stack([smooth] * 3)})


def test_tied_pixels_are_removed_in_a_random_order_not_row_by_row():
    flat = np.zeros((20, 20))
    flat[0, 0] = 1.0
    order = relevance_order(flat, np.random.default_rng(0))
    assert order[0] == 0
    morf, _ = removal_masks(order, (20, 20), (50,))
    rows = morf[0].sum(axis=1)
    # row-major tie-breaking would remove the top ten rows whole; a random order spreads it
    assert 0 < rows[:10].sum() < 200 and rows[10:].sum() > 50
    assert not np.array_equal(order, relevance_order(flat, np.random.default_rng(1)))


def test_a_lerf_step_removes_its_share_where_the_librarys_percentile_cut_takes_every_tie():
    from pytorch_grad_cam.metrics.perturbation_confidence import RemoveLeastRelevantFirst

    class Capture:  # the library's imputer gets the mask of kept pixels; record it
        def __call__(self, image, keep):
            self.keep = keep
            return image

    cam = np.zeros((20, 20), dtype=np.float32)  # a Grad-CAM-like map: zero on 60% of the image
    cam[:8] = np.linspace(0.1, 1.0, 160, dtype=np.float32).reshape(8, 20)
    capture = Capture()
    RemoveLeastRelevantFirst(90, capture)(torch.zeros(1, 20, 20), torch.from_numpy(cam))
    assert float((capture.keep == 0).float().mean()) == pytest.approx(0.6)  # "10%" took 60%
    _, lerf = removal_masks(relevance_order(cam, np.random.default_rng(0)), (20, 20), (10,))
    assert lerf[0].sum() == 40 and not lerf[0][:8].any()  # 10%, all from the zero region


@pytest.mark.parametrize("seeded", [False, True])
def test_curves_equal_pytorch_grad_cams_road_classes_where_both_apply(monkeypatch, seeded):
    """On maps without ties and 100 pixels (the library's percentile cut then removes exactly
    x% too): noise-free imputation for a batch, or the library's noise under the same seed
    for one image. ROADCombined is half the area."""
    size, n = 10, 1 if seeded else 4
    region = _region(size, 2, 3, 4)
    model = RegionMean(region, gain=6.0).eval()
    images = _images(region, n, seed=2, low=(0.2, 0.4), high=(0.6, 0.8))  # no clipping
    rng = np.random.default_rng(3)
    maps = (rng.random((n, size, size)) + region).astype(np.float32) / 2
    noise = 0.01 if seeded else 0.0
    if not seeded:

        class Noiseless(road.NoisyLinearImputer):
            def __init__(self) -> None:
                super().__init__(noise=0.0)

        monkeypatch.setattr(road, "NoisyLinearImputer", Noiseless)
    percentages = ROAD_STEPS
    curves = deletion_curves(
        _probability(model), images, {"m": maps}, percentages=percentages, seed=5, noise=noise
    )
    probability = nn.Sequential(model, nn.Sigmoid())
    targets = [ClassifierOutputTarget(0)] * n
    for step, share in enumerate(percentages, start=1):
        for metric, ours in (
            (road.ROADMostRelevantFirst(100 - share), curves.morf["m"]),
            (road.ROADLeastRelevantFirst(100 - share), curves.lerf["m"]),
        ):
            torch.manual_seed(5)
            theirs = metric(images, maps, targets, probability, return_diff=False)
            np.testing.assert_allclose(ours[:, step], theirs, atol=1e-5)
    if not seeded:
        combined = road.ROADCombined([100 - p for p in percentages])
        theirs = combined(images, maps, targets, probability)
        np.testing.assert_allclose(curves.area("m") / 2, theirs, atol=1e-5)


def test_the_check_is_registered_on_by_default_and_checks_its_options(tmp_path):
    assert CHECKS["faithfulness"] == "fracdet.audit.check_faithfulness"
    assert "faithfulness" in AuditConfig(dataset=tmp_path).checks
    with pytest.raises(ConfigError, match="faithfulness_percentages"):
        AuditConfig(dataset=tmp_path, faithfulness_percentages=(50, 100))
    with pytest.raises(ConfigError, match="faithfulness_percentages"):
        AuditConfig(dataset=tmp_path, faithfulness_percentages=(50, 30))
    with pytest.raises(ConfigError, match="faithfulness_images"):
        AuditConfig(dataset=tmp_path, faithfulness_images=0)


def test_an_audit_runs_the_check_into_metrics_and_the_report(phantom_dataset, tmp_path):
    model = _classifier(tmp_path / "model_a", seed=0)
    out = tmp_path / "audit"
    cfg = _cfg(
        phantom_dataset,
        out,
        {"a": model, "b": model, "det": None},
        classifiers=(model,),
        checks=("faithfulness",),
        check_images=3,
        faithfulness_images=2,
        faithfulness_percentages=(25.0, 75.0),
    )
    run_audit(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    result = metrics["checks"]["faithfulness"]["model_a"]
    assert result["n"] == 2 and len(result["items"]) == 2
    assert sorted(result["ranking"]) == sorted(metrics["methods"])
    assert set(result["above_random"]) <= set(result["ranking"])
    assert result["percentages"] == [0.0, 25.0, 75.0]
    for entry in (*result["methods"].values(), result["random"]):
        assert len(entry["morf"]) == 3 and entry["morf"][0] == entry["lerf"][0]
        assert len(entry["area_per_image"]) == 2
    assert (out / result["figure"]).is_file()
    html = (out / "report.html").read_text()
    assert "Faithfulness: deleting pixels by attribution rank (ROAD)" in html
    assert "random order" in html
