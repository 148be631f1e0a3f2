"""captum explainers and the method registry: hand-computed maps on a linear model, completeness on timm ResNets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fracdet.cls.model import create_classifier
from fracdet.errors import ConfigError
from fracdet.explain import (
    METHODS,
    DeepLiftExplainer,
    GradCAMExplainer,
    IntegratedGradientsExplainer,
    SaliencyExplainer,
    create_explainer,
    deeplift_ready_copy,
)
from fracdet.explain.captum_methods import _ReluMaxPool2d


class LinearLogit(nn.Module):
    """z = sum(w * x), one fracture logit per image: every attribution is known by hand."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weight).flatten(1).sum(1)


WEIGHT = torch.tensor(
    [
        [[1.0, -2.0], [0.5, 0.0]],
        [[-3.0, 1.0], [0.25, 2.0]],
        [[0.5, 0.5], [-1.0, -4.0]],
    ]
).unsqueeze(0)  # (1, 3, 2, 2)
X = torch.tensor([[[0.2, 0.4], [0.6, 0.8]], [[1.0, 0.5], [0.0, 0.25]], [[0.3, 0.9], [0.7, 0.1]]]).unsqueeze(0).repeat(2, 1, 1, 1)
X[1] = 1 - X[1]


def _np(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().numpy().astype(np.float32)


def test_saliency_is_the_weight_on_a_linear_model():
    model = LinearLogit(WEIGHT).train()
    summed = SaliencyExplainer(model, channels="sum").attribute(X)
    np.testing.assert_allclose(summed, _np(WEIGHT.sum(1)).repeat(2, 0), atol=1e-6)
    abs_max = SaliencyExplainer(model).attribute(X)  # the reference study's |a| then max over channels
    np.testing.assert_allclose(abs_max, _np(WEIGHT.abs().amax(1)).repeat(2, 0), atol=1e-6)
    np.testing.assert_allclose(SaliencyExplainer(model, channels="abs_sum").attribute(X), _np(WEIGHT.abs().sum(1)).repeat(2, 0), atol=1e-6)
    assert model.training and model.weight.grad is None  # mode restored, parameters untouched


def test_target_zero_flips_the_sign_per_image():
    model = LinearLogit(WEIGHT)
    fracture = SaliencyExplainer(model, channels="sum").attribute(X, target=1)
    healthy = SaliencyExplainer(model, channels="sum").attribute(X, target=0)
    np.testing.assert_allclose(healthy, -fracture, atol=1e-6)
    mixed = IntegratedGradientsExplainer(model, channels="sum").attribute(X, target=torch.tensor([1, 0]))
    np.testing.assert_allclose(mixed[0], _np((WEIGHT * X[:1]).sum(1))[0], atol=1e-5)
    np.testing.assert_allclose(mixed[1], -_np((WEIGHT * X[1:]).sum(1))[0], atol=1e-5)


def test_integrated_gradients_from_black_is_weight_times_input_with_zero_delta():
    explainer = IntegratedGradientsExplainer(LinearLogit(WEIGHT), channels="sum", n_steps=4)
    maps = explainer.attribute(X)
    np.testing.assert_allclose(maps, _np((WEIGHT * X).sum(1)), atol=1e-5)
    assert explainer.last_delta.shape == (2,) and np.abs(explainer.last_delta).max() < 1e-5
    # a grey baseline attributes the difference from it
    grey = IntegratedGradientsExplainer(LinearLogit(WEIGHT), channels="sum", baseline=0.5, n_steps=4).attribute(X)
    np.testing.assert_allclose(grey, _np((WEIGHT * (X - 0.5)).sum(1)), atol=1e-5)


def test_deeplift_on_a_linear_model_is_weight_times_input():
    model = LinearLogit(WEIGHT)
    maps = DeepLiftExplainer(model, channels="sum").attribute(X)
    np.testing.assert_allclose(maps, _np((WEIGHT * X).sum(1)), atol=1e-5)
    np.testing.assert_allclose(DeepLiftExplainer(model, channels="sum").attribute(X, target=0), -maps, atol=1e-5)


# --- timm backbones --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet10t() -> nn.Module:
    torch.manual_seed(0)
    return create_classifier("resnet10t", num_outputs=1).eval()


@pytest.fixture(scope="module")
def grey_batch() -> torch.Tensor:
    return torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("method", list(METHODS))
def test_every_registry_method_gives_float32_maps_at_input_resolution(method, resnet10t, grey_batch):
    explainer = create_explainer(method, resnet10t, image_size=64, backbone_name="resnet10t", ig_steps=4)
    assert explainer.name == METHODS[method]
    maps = explainer.attribute(grey_batch)
    assert isinstance(maps, np.ndarray) and maps.shape == (2, 64, 64) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.any()


def _completeness(model: nn.Module, images: torch.Tensor, target: list[int], baseline: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Attribution totals (``sum`` over channels, then pixels) beside f(x) - f(baseline) for ``target``."""
    maps = DeepLiftExplainer(model, channels="sum", baseline=baseline).attribute(images, target=target)
    with torch.no_grad():
        logits = model(images) - model(torch.full_like(images, baseline))
    if logits.ndim == 1:
        logits = torch.stack([-logits, logits], dim=1)
    expected = logits[torch.arange(len(images)), torch.tensor(target)].numpy()
    return maps.sum(axis=(1, 2)), expected


@pytest.mark.parametrize("backbone", ["resnet10t", "resnet18"])
def test_deeplift_attributions_sum_to_the_logit_change_on_timm_resnets(backbone, grey_batch):
    torch.manual_seed(0)
    model = create_classifier(backbone, num_outputs=1).eval()
    assert any(getattr(m, "inplace", False) for m in model.modules())  # timm builds in-place ReLUs
    totals, expected = _completeness(model, grey_batch[:, :, :32, :32], [1, 0])
    np.testing.assert_allclose(totals, expected, rtol=1e-3, atol=1e-5)
    assert any(getattr(m, "inplace", False) for m in model.modules())  # the user's model is left as it was


def test_deeplift_completeness_for_a_multiclass_model_and_a_grey_baseline(grey_batch):
    torch.manual_seed(1)
    model = create_classifier("resnet10t", num_outputs=3).eval()
    totals, expected = _completeness(model, grey_batch[:, :, :32, :32], [2, 0], baseline=0.5)
    np.testing.assert_allclose(totals, expected, rtol=1e-3, atol=1e-5)


class ReusedReLU(nn.Module):
    """One ReLU module applied twice, as torchvision's BasicBlock does: captum's DeepLIFT cannot hook that."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.relu(self.conv(x) - 0.1)
        return self.head(self.relu(hidden.mean((2, 3)) - 0.05)).squeeze(1)


def test_deeplift_splits_a_module_used_twice_per_forward():
    torch.manual_seed(0)
    model = ReusedReLU().eval()
    images = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    totals, expected = _completeness(model, images, [1, 1, 0])
    np.testing.assert_allclose(totals, expected, rtol=1e-3, atol=1e-5)
    assert isinstance(model.relu, nn.ReLU)  # split in the explainer's copy only


def test_deeplift_warns_about_activations_it_has_no_rule_for(caplog):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.SiLU(), nn.ReLU(), nn.Flatten(), nn.LazyLinear(1))
    model(torch.rand(1, 1, 5, 5))
    with caplog.at_level("WARNING", logger="fracdet.explain.captum_methods"):
        deeplift_ready_copy(model)
    assert "DeepLIFT has no rule for SiLU" in caplog.text and "ReLU" not in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="fracdet.explain.captum_methods"):
        deeplift_ready_copy(create_classifier("resnet10t", num_outputs=1))
    assert caplog.text == ""


def test_deeplift_snapshots_the_weights_at_construction():
    model = LinearLogit(WEIGHT.clone())
    explainer = DeepLiftExplainer(model, channels="sum")
    with torch.no_grad():
        model.weight.mul_(2)
    np.testing.assert_allclose(explainer.attribute(X), _np((WEIGHT * X).sum(1)), atol=1e-5)


def test_deeplift_ready_copy_turns_off_inplace_and_rewrites_overlapping_max_pools(resnet10t):
    ready = deeplift_ready_copy(resnet10t)
    assert not any(getattr(m, "inplace", False) for m in ready.modules())
    assert isinstance(ready.backbone.maxpool, _ReluMaxPool2d)
    assert not any(p.requires_grad for p in ready.parameters()) and not ready.training
    assert isinstance(resnet10t.backbone.maxpool, nn.MaxPool2d)
    x = torch.rand(2, 1, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(ready(x), resnet10t(x))


@pytest.mark.parametrize(("kernel", "stride", "padding"), [(3, 2, 1), (3, 1, 1), (5, 2, 2), ((3, 2), (2, 1), (1, 0)), (3, 2, 0)])
def test_relu_max_pool_equals_max_pool(kernel, stride, padding):
    pool = nn.MaxPool2d(kernel, stride, padding)
    assert _ReluMaxPool2d.convertible(pool)
    x = torch.randn(2, 3, 11, 12)
    torch.testing.assert_close(_ReluMaxPool2d.from_pool(pool)(x), pool(x))


@pytest.mark.parametrize(
    "pool",
    [nn.MaxPool2d(2, 2), nn.MaxPool2d(3, 2, 1, dilation=2), nn.MaxPool2d(3, 2, 1, ceil_mode=True), nn.MaxPool2d(4, 2, 2)],
    ids=["disjoint", "dilated", "ceil", "wide-padding"],
)
def test_max_pools_captum_handles_or_we_cannot_rewrite_are_left_alone(pool):
    assert not _ReluMaxPool2d.convertible(pool)


def test_integrated_gradients_delta_shrinks_with_more_steps(resnet10t, grey_batch):
    images = grey_batch[:, :, :32, :32]
    deltas = {}
    for steps in (2, 64):
        explainer = IntegratedGradientsExplainer(resnet10t, n_steps=steps, internal_batch_size=32)
        explainer.attribute(images)
        deltas[steps] = float(np.abs(explainer.last_delta).mean())
    assert deltas[64] < deltas[2]


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda m: SaliencyExplainer(m, channels="max"), "unknown channel aggregation 'max'"),
        (lambda m: DeepLiftExplainer(m, baseline=1.5), r"baseline must be a pixel value in \[0, 1\]"),
        (lambda m: IntegratedGradientsExplainer(m, baseline=float("nan")), "baseline must be a pixel value"),
        (lambda m: IntegratedGradientsExplainer(m, baseline=True), "baseline must be a pixel value"),
        (lambda m: IntegratedGradientsExplainer(m, n_steps=0), "n_steps must be an integer >= 1"),
        (lambda m: IntegratedGradientsExplainer(m, internal_batch_size=0), "internal_batch_size must be an integer >= 1"),
    ],
)
def test_explainers_refuse_bad_settings(make, message):
    with pytest.raises(ConfigError, match=message):
        make(LinearLogit(WEIGHT))


def test_registry_refuses_unknown_methods_with_a_close_match():
    with pytest.raises(ConfigError, match="unknown attribution method 'integrated_gradient' \\(did you mean 'integrated_gradients'\\?\\); choose from saliency, deeplift"):
        create_explainer("integrated_gradient", LinearLogit(WEIGHT), image_size=2)
    with pytest.raises(ConfigError, match="unknown attribution method 'lime'; choose from"):
        create_explainer("lime", LinearLogit(WEIGHT), image_size=2)


def test_registry_accepts_table_codes_and_passes_settings(resnet10t):
    ig = create_explainer("IG", LinearLogit(WEIGHT), image_size=2, channels="sum", baseline=0.25, ig_steps=7)
    assert isinstance(ig, IntegratedGradientsExplainer) and (ig.channels, ig.baseline, ig.n_steps) == ("sum", 0.25, 7)
    dl = create_explainer("DeepLIFT", LinearLogit(WEIGHT), image_size=2, baseline=0.5)
    assert isinstance(dl, DeepLiftExplainer) and dl.baseline == 0.5
    cam = create_explainer("gc++", resnet10t, image_size=32)
    assert isinstance(cam, GradCAMExplainer) and cam.plus and cam.name == "GC++"


def test_relu_max_pool_keeps_gradients_of_max_pool():
    """Saliency and IG go through the original model, but the copy's gradients stay those of a max pool."""
    pool = nn.MaxPool2d(3, 2, 1)
    x = torch.randn(1, 2, 7, 7, requires_grad=True)
    (grad_pool,) = torch.autograd.grad(pool(x).pow(2).sum(), x)
    (grad_relu,) = torch.autograd.grad(_ReluMaxPool2d.from_pool(pool)(x).pow(2).sum(), x)
    torch.testing.assert_close(grad_relu, grad_pool)
    assert F.max_pool2d(x, 3, 2, 1).shape == _ReluMaxPool2d.from_pool(pool)(x).shape
