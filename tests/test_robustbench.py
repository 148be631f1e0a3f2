"""RobustBench backbones: zoo architectures built offline, their features, weights and checkpoints.

The zoo's own constructors build the models without weights (nothing downloads); the
WideResNet-28-10 ``Standard`` runs at its native 32 px, and the small PreAct-ResNet-18 of
Rebuffi et al. 2021 stands for the models that normalise inside.
"""

from __future__ import annotations

import copy
import importlib.util
import sys

import pytest
import torch

from fracdet.cls.robustbench import parse_spec, robustbench_spec
from fracdet.errors import ConfigError

SMALL = "robustbench:Rebuffi2021Fixing_R18_ddpm"  # DMPreActResNet-18 with CIFAR-10 mean/std inside
# : the optional package (the Makefile installs it); fracdet imports only its zoo, so find_spec, not
# import
needs_robustbench = pytest.mark.skipif(
    importlib.util.find_spec("robustbench") is None,
    reason="optional robustbench package not installed",
)


def _zoo_model(name: str, dataset: str = "cifar10", threat: str = "Linf") -> torch.nn.Module:
    from fracdet.cls.robustbench.zoo import zoo_entry

    return zoo_entry(parse_spec(f"robustbench:{name}", dataset, threat))["model"]()


# --- names, without the package --------------------------------------------------------------


def test_spec_names_dataset_threat_and_model():
    assert robustbench_spec("robustbench:Standard") == "robustbench:cifar10/Linf/Standard"
    assert (
        robustbench_spec("robustbench:Salman2020Do_R18", "imagenet")
        == "robustbench:imagenet/Linf/Salman2020Do_R18"
    )
    assert robustbench_spec("robustbench:cifar100/L2/X") == "robustbench:cifar100/L2/X"
    assert (
        robustbench_spec("robustbench:cifar100/L2/X", "cifar100", "L2")
        == "robustbench:cifar100/L2/X"
    )


@pytest.mark.parametrize(
    ("backbone", "dataset", "threat", "message"),
    [
        (
            "robustbench:cifar100/Linf/X",
            "cifar10",
            None,
            "names 'cifar100' but rb_dataset is 'cifar10'",
        ),
        ("robustbench:X", "mnist", None, "unknown RobustBench dataset 'mnist'"),
        ("robustbench:X", None, "Linf2", "unknown RobustBench threat model 'Linf2'"),
        ("robustbench:a/b", None, None, "expected robustbench:NAME or"),
        ("robustbench:", None, None, "names no model"),
        ("resnet18", None, None, "not a RobustBench backbone"),
    ],
)
def test_bad_specs_are_one_clear_error(backbone, dataset, threat, message):
    with pytest.raises(ConfigError, match=message):
        parse_spec(backbone, dataset, threat)


def test_train_config_checks_the_robustbench_options():
    from fracdet.cls.train import ClsTrainConfig

    cfg = ClsTrainConfig(
        "m.csv", backbone="robustbench:Standard", rb_dataset="cifar100", rb_threat="L2"
    )
    assert cfg.model_name == "robustbench:cifar100/L2/Standard"
    assert ClsTrainConfig("m.csv").model_name == "resnet18"
    with pytest.raises(ConfigError, match="need backbone robustbench:NAME"):
        ClsTrainConfig("m.csv", backbone="resnet18", rb_dataset="cifar10")
    with pytest.raises(ConfigError, match="unknown RobustBench threat"):
        ClsTrainConfig("m.csv", backbone="robustbench:Standard", rb_threat="linf")
    with pytest.raises(ConfigError, match="resize must be one of letterbox, stretch"):
        ClsTrainConfig("m.csv", resize="crop")


def test_missing_package_says_how_to_install(monkeypatch):
    from fracdet.cls.model import create_classifier

    monkeypatch.setitem(sys.modules, "robustbench", None)  # import fails as if not installed
    with pytest.raises(
        ConfigError,
        match=r"need the optional robustbench package: pip install 'fracdet\[robustbench\]'",
    ):
        create_classifier("robustbench:Standard")
    monkeypatch.setitem(
        sys.modules, "robustbench", type(sys)("robustbench")
    )  # installed, but the zoo's needs are not
    monkeypatch.setitem(sys.modules, "robustbench.model_zoo", None)
    with pytest.raises(ConfigError, match="model zoo cannot be imported"):
        create_classifier("robustbench:Standard")


# --- the zoo, offline ---------------------------------------------------------------------------


@needs_robustbench
def test_wrong_model_name_lists_close_matches():
    from fracdet.cls.model import create_classifier

    with pytest.raises(
        ConfigError,
        match=r"unknown RobustBench model 'Standrd' for cifar10/Linf \(close matches: Standard",
    ):
        create_classifier("robustbench:Standrd")
    with pytest.raises(ConfigError, match="it exists in imagenet/Linf"):
        create_classifier("robustbench:Salman2020Do_R18")
    with pytest.raises(ConfigError, match="RobustBench has no imagenet/L2 models"):
        create_classifier("robustbench:imagenet/L2/Standard")


@needs_robustbench
def test_features_are_exactly_what_the_zoo_head_reads_at_native_size():
    """With the zoo head's weights copied into the new head, the backbone is the zoo model."""
    from fracdet.cls.robustbench import create_robustbench_backbone

    torch.manual_seed(0)
    original = _zoo_model("Standard").eval()
    torch.manual_seed(0)
    ours = create_robustbench_backbone("robustbench:Standard", num_outputs=10).eval()
    ours.head.load_state_dict(original.fc.state_dict())
    pixels = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours(pixels), original(pixels), atol=1e-5)
        # at another size the zoo's fixed 8x8 pooling mixes images up; global pooling does not
        bigger = torch.rand(2, 3, 64, 64)
        assert original(bigger).shape == (8, 10) and ours(bigger).shape == (2, 10)
    info = ours.backbone_info
    assert (
        info["normalization"]["where"].startswith("none")
        and info["weights"] == "random initialisation"
    )
    assert info["features"] == "global avg pool of relu" and ours.feature_info[0] == {
        "module": "trunk.relu.inner",
        "num_chs": 640,
        "reduction": 4,
    }


@needs_robustbench
def test_models_that_normalise_inside_keep_it_and_fracdet_adds_none():
    from fracdet.cls.model import create_classifier
    from fracdet.cls.robustbench import create_robustbench_backbone

    torch.manual_seed(0)
    original = _zoo_model("Rebuffi2021Fixing_R18_ddpm").eval()
    torch.manual_seed(0)
    backbone = create_robustbench_backbone(SMALL, num_outputs=10).eval()
    backbone.head.load_state_dict(original.logits.state_dict())
    pixels = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(backbone(pixels), original(pixels), atol=1e-5)
    norm = backbone.backbone_info["normalization"]
    assert norm["where"] == "inside the model (mean/std)"
    assert norm["std"] == pytest.approx([0.2471, 0.2435, 0.2616], abs=1e-4)
    model = create_classifier(SMALL, num_outputs=1)
    assert model.mean.flatten().tolist() == [0, 0, 0] and model.std.flatten().tolist() == [1, 1, 1]


@needs_robustbench
def test_linear_probe_and_partial_training_of_the_trunk():
    from fracdet.cls.model import create_classifier, set_trainable

    model = create_classifier(SMALL, num_outputs=1)
    assert set_trainable(model, "linear") == 512 + 1
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        "backbone.head.weight",
        "backbone.head.bias",
    }
    n_partial = set_trainable(model, "partial", unfreeze_blocks=1)
    trained = {
        n.split(".")[2]
        for n, p in model.named_parameters()
        if p.requires_grad and n.startswith("backbone.trunk.")
    }
    assert (
        trained == {"batchnorm"} and n_partial > 513
    )  # the last stage with parameters: the final BatchNorm
    set_trainable(model, "partial", unfreeze_blocks=2)
    assert {
        n.split(".")[2]
        for n, p in model.named_parameters()
        if p.requires_grad and n.startswith("backbone.trunk.")
    } == {"batchnorm", "layer_3"}


@needs_robustbench
def test_checkpoint_reload_gives_identical_outputs(tmp_path):
    from fracdet.cls.checkpoint import ClassifierMeta, load_classifier, save_classifier
    from fracdet.cls.model import create_classifier

    torch.manual_seed(3)
    model = create_classifier(
        "robustbench:cifar10/Linf/Rebuffi2021Fixing_R18_ddpm", num_outputs=1
    ).eval()
    info = model.backbone.backbone_info
    meta = ClassifierMeta(
        backbone="robustbench:cifar10/Linf/Rebuffi2021Fixing_R18_ddpm",
        class_names=("not_fractured", "fractured"),
        image_size=48,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        resize="stretch",
        backbone_info=info,
    )
    save_classifier(model, meta, tmp_path / "best.safetensors")
    torch.manual_seed(99)  # another random init underneath: the weights must all come from the file
    loaded, loaded_meta = load_classifier(tmp_path)
    pixels = torch.rand(3, 1, 48, 48)
    with torch.no_grad():
        assert torch.equal(loaded(pixels), model(pixels))
    assert loaded_meta.resize == "stretch" and not loaded_meta.keep_aspect
    assert loaded_meta.backbone_info["normalization"]["where"] == "inside the model (mean/std)"
    # the study's normalized-space budget is taken in the model's own units: its CIFAR std
    assert loaded_meta.input_std == pytest.approx((0.2471, 0.2435, 0.2616), abs=1e-4)


@needs_robustbench
def test_explainers_and_the_attack_run_on_a_robustbench_classifier():
    """Grad-CAM finds the feature map; DeepLIFT's copy and IG run; PGD stays within its budget."""
    from fracdet.cls.model import create_classifier
    from fracdet.explain.registry import create_explainer
    from fracdet.robust.attacks import AttackConfig, attack

    torch.manual_seed(0)
    model = create_classifier(SMALL, num_outputs=1).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    images = torch.rand(2, 1, 32, 32)
    for method in ("saliency", "deeplift", "integrated_gradients", "gradcam"):
        explainer = create_explainer(
            method,
            model,
            image_size=32,
            backbone_name=SMALL,
            channels="abs_max",
            baseline=0.0,
            ig_steps=4,
        )
        maps = explainer.attribute(images, [1, 0])
        assert maps.shape == (2, 32, 32) and (maps >= 0).all() and maps.any()
    adv = attack(
        model,
        images,
        torch.tensor([1, 0]),
        AttackConfig(eps=4 / 255, steps=2, step_size=2 / 255),
        generator=torch.Generator().manual_seed(0),
    )
    assert (adv - images).abs().max() <= 4 / 255 + 1e-6 and adv.min() >= 0 and adv.max() <= 1


# --- weights ----------------------------------------------------------------------------------


def _zoo_checkpoint(model: torch.nn.Module, path) -> None:
    """A checkpoint as the zoo ships one: a torch file holding ``{"state_dict": ...}`` with
    DataParallel's prefix.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)


@needs_robustbench
def test_weights_from_a_zoo_checkpoint_a_model_dir_or_safetensors(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from fracdet.cls.robustbench import create_robustbench_backbone

    torch.manual_seed(5)
    trained = _zoo_model("Rebuffi2021Fixing_R18_ddpm").eval()
    pixels = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        reference = trained(pixels)
    file = tmp_path / "ckpt.pt"
    _zoo_checkpoint(trained, file)
    model_dir = tmp_path / "models"
    _zoo_checkpoint(trained, model_dir / "cifar10" / "Linf" / "Rebuffi2021Fixing_R18_ddpm.pt")
    save_file(
        {k: v.contiguous() for k, v in trained.state_dict().items()},
        str(tmp_path / "w.safetensors"),
    )
    monkeypatch.chdir(tmp_path)  # --pretrained looks in RobustBench's default ./models
    monkeypatch.setattr(
        "fracdet.cls.robustbench.zoo.hub_reachable", lambda *a, **k: False
    )  # and never downloads here
    sources = (
        {"weights": file},
        {"weights": model_dir},
        {"weights": tmp_path / "w.safetensors"},
        {"pretrained": True},
    )
    for how in sources:
        torch.manual_seed(
            77
        )  # a different random init underneath: every weight must come from the checkpoint
        backbone = create_robustbench_backbone(SMALL, num_outputs=10, **how).eval()
        backbone.head.load_state_dict(trained.logits.state_dict())
        with torch.no_grad():
            assert torch.allclose(backbone(pixels), reference, atol=1e-5), how
    assert (
        backbone.backbone_info["weights"]
        == "RobustBench zoo (models/cifar10/Linf/Rebuffi2021Fixing_R18_ddpm.pt)"
    )


@needs_robustbench
def test_weight_errors_are_one_line(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from fracdet.cls.robustbench import create_robustbench_backbone

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("fracdet.cls.robustbench.zoo.hub_reachable", lambda *a, **k: False)
    with pytest.raises(
        ConfigError,
        match=r"cannot download robustbench:cifar10/Linf/.*unreachable \(offline\?\) and "
        r"models/cifar10/Linf/.*\.pt does not exist",
    ):
        create_robustbench_backbone(SMALL, num_outputs=1, pretrained=True)
    with pytest.raises(ConfigError, match="weights not found"):
        create_robustbench_backbone(SMALL, num_outputs=1, weights=tmp_path / "missing")
    save_file({"conv.weight": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(
        ConfigError, match="weights do not fit robustbench:cifar10/Linf/Rebuffi2021Fixing_R18_ddpm"
    ):
        create_robustbench_backbone(SMALL, num_outputs=1, weights=tmp_path / "other.safetensors")
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(
        ConfigError, match="cannot load robustbench:cifar10/Linf/Rebuffi2021Fixing_R18_ddpm from"
    ):
        create_robustbench_backbone(SMALL, num_outputs=1, weights=tmp_path / "broken.pt")
    with pytest.raises(ConfigError, match="global_pool 'gem' is not available"):
        create_robustbench_backbone(SMALL, num_outputs=1, global_pool="gem")


@needs_robustbench
def test_a_model_that_is_not_a_trunk_and_a_linear_head_is_refused():
    from fracdet.cls.robustbench.probe import probe_head
    from fracdet.cls.robustbench.spec import RobustBenchSpec

    spec = RobustBenchSpec("cifar10", "Linf", "toy")
    with pytest.raises(ConfigError, match="no linear classifier layer"):
        probe_head(
            spec,
            torch.nn.Sequential(
                torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
            ),
        )
    with pytest.raises(ConfigError, match="is not its last linear layer's"):
        probe_head(
            spec,
            torch.nn.Sequential(
                torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 4), torch.nn.Softmax(dim=1)
            ),
        )
    # a head on flattened pixels: no feature map to pool, so the new head reads the old head's input
    probe = probe_head(
        spec,
        torch.nn.Sequential(
            torch.nn.Conv2d(3, 2, 1), torch.nn.Flatten(), torch.nn.Linear(2 * 32 * 32, 4)
        ),
    )
    assert probe.feature is None and probe.head_in == 2 * 32 * 32
    model = copy.deepcopy(
        torch.nn.Sequential(
            torch.nn.Conv2d(3, 2, 1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveMaxPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(2, 4),
        )
    )
    probe = probe_head(spec, model)  # max pooling is not a global average: the head's input is used
    assert probe.feature is None and probe.channels == 2
