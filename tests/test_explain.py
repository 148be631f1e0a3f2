"""captum explainers, the method registry and explain_batch.

Hand-computed maps on a linear model, completeness on timm ResNets, shared passes equal to the
libraries' own maps, and the captum internals fracdet relies on.
"""

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
    TwoClassLogits,
    captum_internals,
    create_explainer,
    deeplift_ready_copy,
)
from fracdet.explain.batch import (
    _RescaleReLUs,
    deeplift_one_reference,
    explain_batch,
    one_reference_applies,
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
X = (
    torch.tensor([[[0.2, 0.4], [0.6, 0.8]], [[1.0, 0.5], [0.0, 0.25]], [[0.3, 0.9], [0.7, 0.1]]])
    .unsqueeze(0)
    .repeat(2, 1, 1, 1)
)
X[1] = 1 - X[1]


def _np(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().numpy().astype(np.float32)


def test_saliency_is_the_weight_on_a_linear_model():
    model = LinearLogit(WEIGHT).train()
    summed = SaliencyExplainer(model, channels="sum").attribute(X)
    np.testing.assert_allclose(summed, _np(WEIGHT.sum(1)).repeat(2, 0), atol=1e-6)
    abs_max = SaliencyExplainer(model).attribute(
        X
    )  # the reference study's |a| then max over channels
    np.testing.assert_allclose(abs_max, _np(WEIGHT.abs().amax(1)).repeat(2, 0), atol=1e-6)
    np.testing.assert_allclose(
        SaliencyExplainer(model, channels="abs_sum").attribute(X),
        _np(WEIGHT.abs().sum(1)).repeat(2, 0),
        atol=1e-6,
    )
    assert model.training and model.weight.grad is None  # mode restored, parameters untouched


def test_target_zero_flips_the_sign_per_image():
    model = LinearLogit(WEIGHT)
    fracture = SaliencyExplainer(model, channels="sum").attribute(X, target=1)
    healthy = SaliencyExplainer(model, channels="sum").attribute(X, target=0)
    np.testing.assert_allclose(healthy, -fracture, atol=1e-6)
    mixed = IntegratedGradientsExplainer(model, channels="sum").attribute(
        X, target=torch.tensor([1, 0])
    )
    np.testing.assert_allclose(mixed[0], _np((WEIGHT * X[:1]).sum(1))[0], atol=1e-5)
    np.testing.assert_allclose(mixed[1], -_np((WEIGHT * X[1:]).sum(1))[0], atol=1e-5)


def test_integrated_gradients_from_black_is_weight_times_input_with_zero_delta():
    explainer = IntegratedGradientsExplainer(LinearLogit(WEIGHT), channels="sum", n_steps=4)
    maps, extras = explainer.explain(X)
    np.testing.assert_allclose(maps, _np((WEIGHT * X).sum(1)), atol=1e-5)
    np.testing.assert_array_equal(explainer.attribute(X), maps)
    assert set(extras) == {"delta"} and extras["delta"].shape == (2,)
    assert np.abs(extras["delta"]).max() < 1e-5
    # a grey baseline attributes the difference from it
    grey = IntegratedGradientsExplainer(
        LinearLogit(WEIGHT), channels="sum", baseline=0.5, n_steps=4
    ).attribute(X)
    np.testing.assert_allclose(grey, _np((WEIGHT * (X - 0.5)).sum(1)), atol=1e-5)


def test_deeplift_on_a_linear_model_is_weight_times_input():
    model = LinearLogit(WEIGHT)
    maps = DeepLiftExplainer(model, channels="sum").attribute(X)
    np.testing.assert_allclose(maps, _np((WEIGHT * X).sum(1)), atol=1e-5)
    np.testing.assert_allclose(
        DeepLiftExplainer(model, channels="sum").attribute(X, target=0), -maps, atol=1e-5
    )


# --- timm backbones --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet10t() -> nn.Module:
    torch.manual_seed(0)
    return create_classifier("resnet10t", num_outputs=1).eval()


@pytest.fixture(scope="module")
def grey_batch() -> torch.Tensor:
    return torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("method", list(METHODS))
def test_every_registry_method_gives_float32_maps_at_input_resolution(
    method, resnet10t, grey_batch
):
    explainer = create_explainer(
        method, resnet10t, image_size=64, backbone_name="resnet10t", ig_steps=4
    )
    assert explainer.name == METHODS[method]
    maps = explainer.attribute(grey_batch)
    assert isinstance(maps, np.ndarray) and maps.shape == (2, 64, 64) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.any()


def _completeness(
    model: nn.Module, images: torch.Tensor, target: list[int], baseline: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Attribution totals (``sum`` over channels, then pixels) beside f(x) - f(baseline)."""
    maps = DeepLiftExplainer(model, channels="sum", baseline=baseline).attribute(
        images, target=target
    )
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
    assert any(
        getattr(m, "inplace", False) for m in model.modules()
    )  # the user's model is left as it was


def test_deeplift_completeness_for_a_multiclass_model_and_a_grey_baseline(grey_batch):
    torch.manual_seed(1)
    model = create_classifier("resnet10t", num_outputs=3).eval()
    totals, expected = _completeness(model, grey_batch[:, :, :32, :32], [2, 0], baseline=0.5)
    np.testing.assert_allclose(totals, expected, rtol=1e-3, atol=1e-5)


class ReusedReLU(nn.Module):
    """One ReLU module applied twice, as torchvision's BasicBlock does: captum cannot hook that."""

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


@pytest.mark.parametrize(
    ("kernel", "stride", "padding"),
    [(3, 2, 1), (3, 1, 1), (5, 2, 2), ((3, 2), (2, 1), (1, 0)), (3, 2, 0)],
)
def test_relu_max_pool_equals_max_pool(kernel, stride, padding):
    pool = nn.MaxPool2d(kernel, stride, padding)
    assert _ReluMaxPool2d.convertible(pool)
    x = torch.randn(2, 3, 11, 12)
    torch.testing.assert_close(_ReluMaxPool2d.from_pool(pool)(x), pool(x))


@pytest.mark.parametrize(
    "pool",
    [
        nn.MaxPool2d(2, 2),
        nn.MaxPool2d(3, 2, 1, dilation=2),
        nn.MaxPool2d(3, 2, 1, ceil_mode=True),
        nn.MaxPool2d(4, 2, 2),
    ],
    ids=["disjoint", "dilated", "ceil", "wide-padding"],
)
def test_max_pools_captum_handles_or_we_cannot_rewrite_are_left_alone(pool):
    assert not _ReluMaxPool2d.convertible(pool)


def test_integrated_gradients_delta_shrinks_with_more_steps(resnet10t, grey_batch):
    images = grey_batch[:, :, :32, :32]
    deltas = {}
    for steps in (2, 64):
        explainer = IntegratedGradientsExplainer(resnet10t, n_steps=steps, internal_batch_size=32)
        deltas[steps] = float(np.abs(explainer.explain(images)[1]["delta"]).mean())
    assert deltas[64] < deltas[2]


# --- explain_batch: many methods on one batch, passes shared (the audit's path) ---------------


def _count_forwards(model: nn.Module) -> tuple[list[int], object]:
    calls: list[int] = []
    return calls, model.register_forward_hook(lambda _m, _i, _o: calls.append(1))


@pytest.mark.parametrize("channels", ["abs_max", "sum"])
def test_one_pass_gives_the_separate_explainers_maps_and_the_models_logits(resnet10t, channels):
    images = torch.rand(3, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    explainers = {
        "SM": SaliencyExplainer(resnet10t, channels=channels),
        "GC": GradCAMExplainer(resnet10t, image_size=64),
        "GC++": GradCAMExplainer(resnet10t, image_size=64, plus=True),
    }
    with torch.no_grad():
        logits = resnet10t(images)
    for targets in ([1, 1, 1], [0, 1, 0]):
        calls, handle = _count_forwards(resnet10t)
        shared = explain_batch(explainers, resnet10t, images, targets)
        handle.remove()
        assert len(calls) == 1  # the decision, Saliency and both CAMs from one forward
        torch.testing.assert_close(shared.logits, logits)
        assert shared.targets == targets and list(shared.maps) == list(explainers)
        assert shared.extras == {code: {} for code in explainers}
        for code, explainer in explainers.items():
            expected = explainer.attribute(images, targets)
            assert shared.maps[code].dtype == np.float32 and shared.maps[code].shape == (3, 64, 64)
            np.testing.assert_allclose(
                shared.maps[code],
                expected,
                rtol=1e-5,
                atol=1e-6 * np.abs(expected).max(),
                err_msg=code,
            )
    # targets chosen from the pass's own logits (the predicted class)
    predicted = explain_batch(explainers, resnet10t, images, lambda z: (z > 0).long().tolist())
    assert predicted.targets == (logits > 0).long().tolist()
    np.testing.assert_allclose(
        predicted.maps["SM"],
        explainers["SM"].attribute(images, predicted.targets),
        rtol=1e-5,
        atol=1e-9,
    )
    assert resnet10t.training is False and all(p.grad is None for p in resnet10t.parameters())


def test_every_method_through_one_entry_equals_its_explainer(resnet10t, grey_batch):
    """DeepLIFT (one reference), IG (captum's delta), another model's explainer, the shared pass."""
    from captum.attr import IntegratedGradients

    other = create_classifier("resnet10t", num_outputs=1).eval()
    explainers = {
        "SM": SaliencyExplainer(resnet10t),
        "DL": DeepLiftExplainer(resnet10t),
        "IG": IntegratedGradientsExplainer(resnet10t, n_steps=4, baseline=0.25),
        "other": SaliencyExplainer(other),  # bound to another model: runs on its own
    }
    targets = [0, 1]
    done = explain_batch(explainers, resnet10t, grey_batch, targets)
    assert list(done.maps) == list(explainers) and done.targets == targets
    for code in ("SM", "DL", "other"):
        expected = explainers[code].attribute(grey_batch, targets)
        np.testing.assert_allclose(
            done.maps[code], expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max(), err_msg=code
        )
    np.testing.assert_allclose(done.maps["IG"], explainers["IG"].attribute(grey_batch, targets))
    _, captum_delta = IntegratedGradients(TwoClassLogits(resnet10t)).attribute(
        grey_batch.clone().requires_grad_(),
        baselines=torch.full_like(grey_batch, 0.25),
        target=targets,
        n_steps=4,
        return_convergence_delta=True,
    )
    assert set(done.extras["IG"]) == {"delta"} and done.extras["IG"]["delta"].dtype == np.float64
    np.testing.assert_allclose(done.extras["IG"]["delta"], captum_delta.numpy(), rtol=1e-6)
    assert done.extras["SM"] == done.extras["DL"] == done.extras["other"] == {}


def test_one_entry_without_explainers_is_the_forward_and_times_its_stages(resnet10t, grey_batch):
    bare = explain_batch({}, resnet10t, grey_batch)
    with torch.no_grad():
        torch.testing.assert_close(bare.logits, resnet10t(grey_batch))
    assert bare.maps == {} and bare.extras == {} and bare.targets == [1, 1]
    from contextlib import contextmanager

    stages: list[str] = []

    @contextmanager
    def stage(name):
        stages.append(name)
        yield

    explainers = {
        "SM": SaliencyExplainer(resnet10t),
        "DL": DeepLiftExplainer(resnet10t),
        "GC": GradCAMExplainer(resnet10t, image_size=64),
    }
    explain_batch(explainers, resnet10t, grey_batch, stage=stage)
    assert stages == ["forward+SM+GC", "attr:DL"]


def test_grad_cam_weights_come_from_pytorch_grad_cams_classes(resnet10t, grey_batch, monkeypatch):
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus

    seen = []
    for method in (GradCAM, GradCAMPlusPlus):
        original = method.get_cam_weights

        def spy(*args, _original=original, _name=method.__name__):
            seen.append(_name)
            return _original(*args)

        monkeypatch.setattr(method, "get_cam_weights", spy)
    explainers = {
        "GC": GradCAMExplainer(resnet10t, image_size=64),
        "GC++": GradCAMExplainer(resnet10t, image_size=64, plus=True),
    }
    explain_batch(explainers, resnet10t, grey_batch)
    assert seen == ["GradCAM", "GradCAMPlusPlus"]


def test_one_pass_keeps_a_multiclass_models_class_logit():
    torch.manual_seed(0)
    model = create_classifier("resnet10t", num_outputs=3).eval()
    images = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    explainers = {"SM": SaliencyExplainer(model), "GC": GradCAMExplainer(model, image_size=32)}
    shared = explain_batch(explainers, model, images, [2, 0])
    for code, explainer in explainers.items():
        np.testing.assert_allclose(
            shared.maps[code], explainer.attribute(images, [2, 0]), rtol=1e-5, atol=1e-7
        )


@pytest.mark.parametrize(
    ("backbone", "outputs", "baseline", "targets"),
    [
        ("resnet10t", 1, 0.0, [1, 0, 1]),
        ("resnet10t", 1, 0.3, [0, 0, 1]),
        ("resnet18", 1, 0.0, [1, 1, 0]),
        ("resnet10t", 3, 0.0, [2, 0, 1]),
    ],
)
def test_deeplift_with_one_reference_is_captums_deeplift(backbone, outputs, baseline, targets):
    torch.manual_seed(0)
    model = create_classifier(backbone, num_outputs=outputs).eval()
    images = torch.rand(3, 1, 64, 64, generator=torch.Generator().manual_seed(3))
    explainer = DeepLiftExplainer(model, baseline=baseline, channels="sum")
    assert one_reference_applies(explainer)
    expected = explainer.attribute(images, targets)
    fast = deeplift_one_reference(explainer, images, targets)
    np.testing.assert_allclose(fast, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    single = deeplift_one_reference(
        explainer, images[:1], targets[:1]
    )  # a batch of one, as a last chunk may be
    np.testing.assert_allclose(single, expected[:1], rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_deeplift_with_one_reference_only_where_relus_are_all_captum_rules(monkeypatch):
    assert not one_reference_applies(SaliencyExplainer(LinearLogit(WEIGHT)))
    squashed = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.Sigmoid(), nn.Flatten(), nn.LazyLinear(1), nn.Flatten(0)
    )
    squashed(torch.rand(1, 1, 8, 8))
    assert not one_reference_applies(
        DeepLiftExplainer(squashed)
    )  # captum's rule for Sigmoid: keep captum
    relu = nn.ReLU()
    twice = nn.Sequential(nn.Conv2d(1, 2, 3), relu, nn.Conv2d(2, 2, 3), relu)
    rules = _RescaleReLUs(twice)
    with pytest.raises(RuntimeError, match="runs twice per forward"):
        twice(torch.rand(1, 1, 8, 8))
    rules.remove()
    # should captum give ReLU another rule than Rescale, its own DeepLIFT runs again
    resnet = DeepLiftExplainer(create_classifier("resnet10t", num_outputs=1))
    assert one_reference_applies(resnet)
    changed = {**captum_internals.deeplift_rules(), nn.ReLU: lambda *a, **k: None}
    monkeypatch.setattr(captum_internals, "deeplift_rules", lambda: changed)
    assert not one_reference_applies(resnet)


def test_the_captum_internals_fracdet_relies_on_are_there():
    """Fails naming what is gone when a captum release renames its DeepLIFT internals."""
    rules = captum_internals.deeplift_rules()
    assert rules[nn.ReLU] is captum_internals.deeplift_rescale_rule()
    assert captum_internals.deeplift_hooks(nn.ReLU()) and not captum_internals.deeplift_hooks(
        nn.Conv2d(1, 1, 1)
    )
    assert captum_internals.deeplift_eps() == 1e-10


@pytest.mark.parametrize("name", ["SUPPORTED_NON_LINEAR", "nonlinear"])
def test_a_renamed_captum_internal_is_one_clear_error(monkeypatch, name):
    import captum.attr._core.deep_lift as deep_lift

    monkeypatch.delattr(deep_lift, name)
    with pytest.raises(
        captum_internals.CaptumInternalsError,
        match=rf"captum \S+ has no captum\.attr\._core\.deep_lift\.{name}, which fracdet",
    ):
        captum_internals.rescale_relus_only(nn.ReLU())


def test_captum_internals_are_imported_in_one_module_only():
    from pathlib import Path

    import fracdet

    root = Path(fracdet.__file__).parent
    users = sorted(
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if "captum.attr._" in path.read_text() or "SUPPORTED_NON_LINEAR" in path.read_text()
    )
    assert users == ["explain/captum_internals.py"]


def test_explainers_run_under_a_bf16_autocast(resnet10t, grey_batch):
    """The audit's precision reaches attributions: Grad-CAM falls back to float32 for numpy."""
    cam = GradCAMExplainer(resnet10t, image_size=64)
    ig = IntegratedGradientsExplainer(resnet10t, n_steps=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        maps = cam.attribute(grey_batch)
        shared = explain_batch(
            {"SM": SaliencyExplainer(resnet10t), "GC": cam, "IG": ig}, resnet10t, grey_batch
        )
    np.testing.assert_allclose(maps, cam.attribute(grey_batch), atol=1e-5)
    assert shared.logits.dtype == torch.float32 and all(
        m.dtype == np.float32 and np.isfinite(m).all() for m in shared.maps.values()
    )
    assert np.isfinite(shared.extras["IG"]["delta"]).all()


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda m: SaliencyExplainer(m, channels="max"), "unknown channel aggregation 'max'"),
        (
            lambda m: DeepLiftExplainer(m, baseline=1.5),
            r"baseline must be a pixel value in \[0, 1\]",
        ),
        (
            lambda m: IntegratedGradientsExplainer(m, baseline=float("nan")),
            "baseline must be a pixel value",
        ),
        (
            lambda m: IntegratedGradientsExplainer(m, baseline=True),
            "baseline must be a pixel value",
        ),
        (lambda m: IntegratedGradientsExplainer(m, n_steps=0), "n_steps must be an integer >= 1"),
        (
            lambda m: IntegratedGradientsExplainer(m, internal_batch_size=0),
            "internal_batch_size must be an integer >= 1",
        ),
    ],
)
def test_explainers_refuse_bad_settings(make, message):
    with pytest.raises(ConfigError, match=message):
        make(LinearLogit(WEIGHT))


def test_registry_refuses_unknown_methods_with_a_close_match():
    with pytest.raises(
        ConfigError,
        match="unknown attribution method 'integrated_gradient' "
        "\\(did you mean 'integrated_gradients'\\?\\); choose from saliency, deeplift",
    ):
        create_explainer("integrated_gradient", LinearLogit(WEIGHT), image_size=2)
    with pytest.raises(ConfigError, match="unknown attribution method 'lime'; choose from"):
        create_explainer("lime", LinearLogit(WEIGHT), image_size=2)


def test_registry_accepts_table_codes_and_passes_settings(resnet10t):
    ig = create_explainer(
        "IG",
        LinearLogit(WEIGHT),
        image_size=2,
        channels="sum",
        baseline=0.25,
        ig_steps=7,
        ig_internal_batch_size=4,
    )
    assert isinstance(ig, IntegratedGradientsExplainer) and (
        ig.channels,
        ig.baseline,
        ig.n_steps,
        ig.internal_batch_size,
    ) == ("sum", 0.25, 7, 4)
    dl = create_explainer("DeepLIFT", LinearLogit(WEIGHT), image_size=2, baseline=0.5)
    assert isinstance(dl, DeepLiftExplainer) and dl.baseline == 0.5
    cam = create_explainer("gc++", resnet10t, image_size=32)
    assert isinstance(cam, GradCAMExplainer) and cam.plus and cam.name == "GC++"


def test_relu_max_pool_keeps_gradients_of_max_pool():
    """Saliency and IG use the original model, but the copy's gradients stay those of a max pool."""
    pool = nn.MaxPool2d(3, 2, 1)
    x = torch.randn(1, 2, 7, 7, requires_grad=True)
    (grad_pool,) = torch.autograd.grad(pool(x).pow(2).sum(), x)
    (grad_relu,) = torch.autograd.grad(_ReluMaxPool2d.from_pool(pool)(x).pow(2).sum(), x)
    torch.testing.assert_close(grad_relu, grad_pool)
    assert F.max_pool2d(x, 3, 2, 1).shape == _ReluMaxPool2d.from_pool(pool)(x).shape
