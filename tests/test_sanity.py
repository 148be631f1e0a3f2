"""Cascading model-parameter randomisation (Adebayo et al., 2018) and the audit's sanity check.

The blocks run from the head down and cover every parameter once; step 0 is the model, bit for
bit; a step re-draws exactly its blocks from the initial distribution, reproducibly. The proof:
on phantoms whose fracture is a fixed 5x5 pattern hidden in noise of the same grey levels, a
matched-filter classifier's Saliency passes (its maps change and its coverage falls to chance
once the filter is random), while an edge detector of the image, which ignores the weights,
fails.
"""

from __future__ import annotations

import copy
import json
import math
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import structural_similarity
from test_audit import _cfg, _classifier
from torch import nn

from fracdet.audit import run_audit
from fracdet.audit.check_sanity import CHECK, SPEARMAN_MAX, verdict
from fracdet.audit.checks import CheckSubject
from fracdet.audit.config import AuditConfig
from fracdet.audit.engine import ClassifierUnderAudit
from fracdet.cls.model import create_classifier
from fracdet.data.formats import Box
from fracdet.explain.base import Explainer
from fracdet.explain.captum_methods import SaliencyExplainer
from fracdet.explain.randomization import (
    cascade_steps,
    cascading_randomization,
    map_similarity,
    normalize_map,
    parameter_blocks,
)

# ---------------------------------------------------------------- blocks


@pytest.mark.parametrize(
    ("backbone", "head", "stem", "n_blocks"),
    [
        ("resnet10t", "backbone.fc.weight", "backbone.conv1.0.weight", 6),
        ("tf_efficientnet_lite0", "backbone.classifier.weight", "backbone.conv_stem.weight", 18),
    ],
)
def test_blocks_run_from_the_head_down_and_cover_every_parameter_once(
    backbone, head, stem, n_blocks
):
    model = create_classifier(backbone, num_outputs=1)
    blocks = parameter_blocks(model)
    assert len(blocks) == n_blocks
    assert head in blocks[0].parameters and stem in blocks[-1].parameters
    listed = [p for b in blocks for p in b.parameters]
    every = [n for n, _ in model.named_parameters()]
    assert sorted(listed) == sorted(every) and len(listed) == len(set(listed))
    # reverse order: each block's parameters come before the previous block's in the forward
    position = {name: k for k, name in enumerate(every)}
    firsts = [min(position[p] for p in b.parameters) for b in blocks]
    assert firsts == sorted(firsts, reverse=True)


def test_a_vit_is_split_into_its_transformer_blocks():
    model = create_classifier("vit_tiny_patch16_224", num_outputs=1, image_size=32)
    names = [b.name for b in parameter_blocks(model)]
    assert names[0] == "head" and names[1] == "blocks.11+norm" and names[-2] == "blocks.0"
    assert "cls_token" in names[-1] and len(names) == 14


def test_a_plain_module_is_split_into_the_children_of_its_first_branching_module():
    inner = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3), nn.Flatten())
    model = nn.Sequential(nn.Identity(), nn.Sequential(inner))  # one parameterised child twice
    blocks = parameter_blocks(model)
    assert [b.name for b in blocks] == ["2", "0"]
    assert blocks[0].parameters == ("1.0.2.weight", "1.0.2.bias")
    with pytest.raises(ValueError, match="no parameters"):
        parameter_blocks(nn.ReLU())


# ---------------------------------------------------------------- the cascade


def _trained_resnet() -> nn.Module:
    """resnet10t with every weight and BatchNorm statistic moved off its initial values."""
    torch.manual_seed(0)
    model = create_classifier("resnet10t", num_outputs=1).eval()
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.1 + 0.05 * torch.rand_like(tensor))
    return model


def _equal(a: nn.Module, b: nn.Module, names) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[n], sb[n]) for n in names)


def test_step_zero_is_the_model_and_each_step_redraws_exactly_its_blocks():
    model = _trained_resnet()
    before = copy.deepcopy(model.state_dict())
    blocks = parameter_blocks(model)
    steps = list(cascading_randomization(model, seed=0))
    assert [s.step for s in steps] == list(range(len(blocks) + 1))
    assert steps[0].block == "original" and steps[1].block == "fc"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched
    assert all(torch.equal(before[k], v) for k, v in steps[0].model.state_dict().items())
    for j, step in enumerate(steps[1:], start=1):
        random = {p for b in blocks[:j] for p in b.parameters}
        kept = [n for n in before if n.rsplit(".", 1)[0] + ".weight" not in random]
        assert _equal(step.model, model, kept)
        for name in random:
            assert not torch.equal(step.model.state_dict()[name], before[name]), (j, name)
    # BatchNorm of a randomised block: weight 1, bias 0, running statistics reset
    bn = steps[-1].model.backbone.bn1
    assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and not bn.bias.any()
    assert not bn.running_mean.any() and torch.equal(bn.running_var, torch.ones_like(bn.weight))
    # a randomised convolution is drawn from PyTorch's Kaiming-uniform init: |w| <= 1/sqrt(fan_in)
    conv = steps[-1].model.backbone.layer4[0].conv1.weight
    assert conv.abs().max() <= 1 / math.sqrt(conv[0].numel()) + 1e-7 and conv.std() > 0


def test_the_cascade_is_reproducible_and_the_same_for_any_choice_of_steps():
    model = _trained_resnet()
    full = {s.step: s.model.state_dict() for s in cascading_randomization(model, seed=3)}
    again = {s.step: s.model.state_dict() for s in cascading_randomization(model, seed=3)}
    some = {s.step: s.model.state_dict() for s in cascading_randomization(model, seed=3, steps=[4])}
    other = next(iter(cascading_randomization(model, seed=4, steps=[4]))).model.state_dict()
    for step, state in full.items():
        assert all(torch.equal(state[k], again[step][k]) for k in state)
    assert all(torch.equal(full[4][k], v) for k, v in some[4].items())
    assert not all(torch.equal(full[4][k], v) for k, v in other.items())
    with pytest.raises(ValueError, match="steps must lie in 0..6"):
        next(iter(cascading_randomization(model, steps=[7])))


def test_parameters_without_reset_parameters_get_the_truncated_normal():
    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.token = nn.Parameter(torch.full((1000,), 5.0))
            self.fc = nn.Linear(3, 1)

    model = Tokens()
    last = list(cascading_randomization(model, seed=0))[-1].model
    assert last.token.abs().max() <= 0.04 and 0.01 < last.token.std() < 0.02


def test_the_steps_shown_are_spread_from_the_head_alone_to_the_whole_model():
    assert cascade_steps(6) == [0, 1, 2, 3, 4, 5, 6]
    assert cascade_steps(6, 6) == [0, 1, 2, 3, 4, 5, 6]
    assert cascade_steps(18, 6) == [0, 1, 4, 8, 11, 15, 18]
    assert cascade_steps(18, 1) == [0, 18]
    with pytest.raises(ValueError):
        cascade_steps(0)


# ---------------------------------------------------------------- similarity


def test_similarities_by_hand():
    a = np.arange(16, dtype=float).reshape(4, 4)
    same = map_similarity(a, -a)  # the sign does not count: |a|
    assert same["spearman"] == pytest.approx(1) and same["top25"] == 1 and same["ssim"] == 1
    b = a.copy()
    b.flat[[15, 14]] = [0.5, 0.25]  # two of a's top four pixels (15, 14, 13, 12) drop out
    assert map_similarity(a, b)["top25"] == 0.5
    assert map_similarity(a, np.zeros((4, 4)))["spearman"] == 0.0  # no ranking left in common
    assert math.isnan(map_similarity(np.ones((4, 4)), np.ones((4, 4)))["spearman"])
    assert normalize_map(np.array([[-2.0, 1.0], [0.0, 0.5]])).tolist() == [[1, 0.5], [0, 0.25]]
    # SSIM is scikit-image's on the normalised maps (data_range 1)
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 16)), rng.random((16, 16))
    expected = structural_similarity(normalize_map(x), normalize_map(y), data_range=1.0, win_size=7)
    assert map_similarity(x, y)["ssim"] == pytest.approx(expected)


def test_the_verdict_needs_changed_maps_and_chance_coverage():
    low = {"mean": 0.1, "ci95": [0.0, 0.3]}
    assert verdict(low, {"mean": 0.3, "ci95": [0.2, 0.4]}) == (
        True,
        "maps change and coverage falls to chance",
    )
    passed, why = verdict({"mean": 0.4, "ci95": [0.3, SPEARMAN_MAX]}, {"mean": 0.1, "ci95": None})
    assert not passed and "maps unchanged" in why
    passed, why = verdict(low, {"mean": 0.4, "ci95": [0.26, 0.5]})
    assert not passed and "coverage" in why
    assert verdict(low, {"mean": 0.25, "ci95": None})[0]  # no CI: the mean decides


# ---------------------------------------------------------------- the proof on phantoms

SIZE, LEVEL = 32, 0.25
#: the fracture: a fixed pattern of the same two grey levels as the noise around it
KEY = np.random.default_rng(12345).choice([-1.0, 1.0], size=(5, 5))


class MatchedFilter(nn.Module):
    """A classifier built by hand: the key pattern's matched filter, a soft maximum, a logit."""

    def __init__(self, tau: float = 0.1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 5, padding=2)
        self.fc = nn.Linear(1, 1)
        self.tau = tau
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(KEY, dtype=torch.float32)[None, None] / 25 / LEVEL)
            self.conv.bias.zero_()
            self.fc.weight.fill_(20.0)
            self.fc.bias.fill_(-30.0)  # the cut at 1.5: fracture ~1.58, noise ~1.45

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.conv(x).flatten(1)
        return self.fc(self.tau * torch.logsumexp(z / self.tau, 1, keepdim=True)).squeeze(1)


class EdgeExplainer(Explainer):
    """Adebayo et al.'s counter-example: the Sobel edges of the image, whatever the model."""

    name = "EDGE"

    def attribute(self, images, target=None):
        pixels = images.detach().cpu().double().numpy()[:, 0]
        edges = [np.hypot(ndimage.sobel(p, 0), ndimage.sobel(p, 1)) for p in pixels]
        return np.stack(edges).astype(np.float32)


def _phantoms(n: int, seed: int, fractured: bool = True) -> tuple[torch.Tensor, list[Box]]:
    rng = np.random.default_rng(seed)
    images, boxes = [], []
    for _ in range(n):
        image = 0.5 + LEVEL * rng.choice([-1.0, 1.0], size=(SIZE, SIZE))
        y, x = (int(v) for v in rng.integers(0, SIZE - 5, size=2))
        if fractured:
            image[y : y + 5, x : x + 5] = 0.5 + LEVEL * KEY
        images.append(image)
        boxes.append(Box(x, y, x + 5, y + 5, label=0))
    return torch.tensor(np.stack(images)[:, None], dtype=torch.float32), boxes


def _subject(model: nn.Module, out: Path, n: int = 8) -> CheckSubject:
    images, boxes = _phantoms(n, seed=0)
    masks = []
    for box in boxes:
        mask = np.zeros((SIZE, SIZE), dtype=bool)
        mask[int(box.y1) : int(box.y2), int(box.x1) : int(box.x2)] = True
        masks.append(mask)
    meta = types.SimpleNamespace(threshold=0.5, temperature=1.0)
    clf = ClassifierUnderAudit("matched", model, meta, {}, None, torch.device("cpu"), "fp32")
    return CheckSubject(
        clf=clf,
        items=[types.SimpleNamespace(key=f"phantom_{k}") for k in range(n)],
        images=images,
        labels=np.ones(n, dtype=np.int64),
        gt_boxes=[[b] for b in boxes],
        gt_masks=masks,
        det_boxes=None,
        make_explainers=lambda m: {"SM": SaliencyExplainer(m), "EDGE": EdgeExplainer(m)},
        audit_dir=out,
        seed=0,
    )


def test_saliency_of_a_matched_filter_passes_and_an_edge_detector_fails(tmp_path):
    from fracdet.report import Section

    model = MatchedFilter().eval()
    fractured, _ = _phantoms(8, seed=0)
    intact, _ = _phantoms(8, seed=1, fractured=False)
    with torch.no_grad():  # the hand-built classifier does find the pattern
        assert model(fractured).min() > 0 > model(intact).max()
    cfg = AuditConfig(dataset=tmp_path, n_boot=200, sanity_images=8)
    result = json.loads(json.dumps(CHECK.run(_subject(model, tmp_path), cfg)))
    assert result["passed"] == ["SM"] and result["failed"] == ["EDGE"]
    assert result["blocks"] == ["fc", "conv"] and result["steps"] == [0, 1, 2]
    sm, edge = result["methods"]["SM"]["steps"], result["methods"]["EDGE"]["steps"]
    assert sm[0]["coverage"]["mean"] == 1.0 and sm[0]["spearman"]["mean"] == pytest.approx(1)
    assert sm[-1]["spearman"]["ci95"][1] < SPEARMAN_MAX
    assert sm[-1]["coverage"]["ci95"][0] <= 0.25
    # the edge detector's maps are the same at every step, and it finds the fracture's edges
    assert all(e["spearman"]["mean"] == pytest.approx(1) for e in edge)
    assert "maps unchanged" in result["methods"]["EDGE"]["reason"]
    assert (tmp_path / result["figure"]).is_file()
    (section,) = CHECK.sections({"matched": result}, {"models": ["matched"]}, tmp_path)
    assert isinstance(section, Section) and "Pass: SM; fail: EDGE" in section.text
    assert [row["verdict"][:4] for row in section.table] == ["pass", "FAIL"]


def test_the_check_runs_in_an_audit_and_reaches_the_report(phantom_dataset, tmp_path):
    model = _classifier(tmp_path / "model_a", seed=0)
    out = tmp_path / "audit"
    cfg = _cfg(
        phantom_dataset,
        out,
        {"a": model, "b": model, "det": None},
        classifiers=(model,),
        checks=("sanity",),
        check_images=2,
        sanity_images=2,
        sanity_steps=2,
        methods=("saliency", "gradcam"),
    )
    run_audit(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    result = metrics["checks"]["sanity"]["model_a"]
    assert sorted(result["passed"] + result["failed"]) == ["GC", "SM"]
    assert result["steps"] == [0, 1, 6] and len(result["images"]) == 2
    assert (out / result["figure"]).is_file()
    assert "Sanity check of the attributions: model_a" in (out / "report.html").read_text()
