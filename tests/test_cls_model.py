"""The pixel-space classifier wrapper, local weights and safetensors checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from fracdet.cls.checkpoint import ClassifierMeta, load_classifier, save_classifier
from fracdet.cls.model import create_classifier, set_trainable
from fracdet.cls.state_files import load_state_dict_file
from fracdet.errors import ConfigError
from fracdet.runtime import resolve_precision


def _meta(model, backbone="resnet10t", **kw) -> ClassifierMeta:
    return ClassifierMeta(
        backbone=backbone,
        class_names=("not_fractured", "fractured"),
        image_size=32,
        mean=tuple(model.mean.flatten().tolist()),
        std=tuple(model.std.flatten().tolist()),
        **kw,
    )


def test_wrapper_normalises_inside_and_takes_grey_or_rgb():
    torch.manual_seed(0)
    model = create_classifier("resnet10t", num_outputs=1).eval()
    grey = torch.rand(2, 1, 32, 32)
    out_grey = model(grey)
    assert out_grey.shape == (2,)
    # a grey image is the same as its three-channel copy
    assert torch.allclose(out_grey, model(grey.expand(-1, 3, -1, -1)), atol=1e-5)
    # normalisation is the first layer: the backbone sees (x - mean) / std
    expected = model.backbone((grey.expand(-1, 3, -1, -1) - model.mean) / model.std).squeeze(1)
    assert torch.allclose(out_grey, expected, atol=1e-5)


def test_wrapper_rejects_pixels_outside_unit_range_and_bad_shapes():
    model = create_classifier("resnet10t", num_outputs=1).eval()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model(torch.full((1, 1, 32, 32), 255.0))
    with pytest.raises(ValueError, match="shape"):
        model(torch.rand(1, 2, 32, 32))


def test_multiclass_head_has_one_logit_per_class():
    model = create_classifier("resnet10t", num_outputs=4).eval()
    assert model(torch.rand(3, 1, 32, 32)).shape == (3, 4)


def test_unknown_backbone_lists_close_matches():
    with pytest.raises(ConfigError, match="close matches: .*resnet18"):
        create_classifier("resnet181")


def test_pretrained_offline_says_how_to_pass_local_weights(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="--weights FILE"):
        create_classifier("resnet10t", pretrained=True)


def test_local_weights_load_strictly_except_the_head(tmp_path):
    torch.manual_seed(1)
    source = create_classifier("resnet10t", num_outputs=1000)
    path = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in source.backbone.state_dict().items()}, str(path))
    model = create_classifier("resnet10t", num_outputs=1, weights=path)
    conv = "conv1.0.weight"
    assert torch.equal(model.backbone.state_dict()[conv], source.backbone.state_dict()[conv])
    # a torch file with a wrapper key, read without unpickling code
    torch.save({"state_dict": source.backbone.state_dict()}, tmp_path / "backbone.pth")
    model = create_classifier("resnet10t", num_outputs=1, weights=tmp_path / "backbone.pth")
    assert torch.equal(model.backbone.state_dict()[conv], source.backbone.state_dict()[conv])


def test_a_head_that_fits_is_kept_and_one_of_another_size_is_not(tmp_path):
    """Fine-tuning a fracdet classifier further (PGD-AT from the standard model) keeps its
    trained head; a 1000-class head cannot serve a one-logit task and is left to its init."""
    torch.manual_seed(2)
    trained = create_classifier("resnet10t", num_outputs=1)
    with torch.no_grad():
        trained.backbone.get_classifier().weight.fill_(0.125)
    path = tmp_path / "trained.safetensors"
    save_file({k: v.contiguous() for k, v in trained.backbone.state_dict().items()}, str(path))
    again = create_classifier("resnet10t", num_outputs=1, weights=path)
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(
            again.backbone.get_classifier().weight, trained.backbone.get_classifier().weight
        )
        assert torch.allclose(again.eval()(x), trained.eval()(x))
    other = create_classifier("resnet10t", num_outputs=2, weights=path)
    assert not torch.equal(
        other.backbone.get_classifier().weight[:1], trained.backbone.get_classifier().weight
    )


def test_weights_of_another_backbone_give_one_clear_line(tmp_path):
    other = create_classifier("resnet18", num_outputs=1)
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in other.backbone.state_dict().items()}, str(path))
    with pytest.raises(ConfigError, match="do not fit backbone 'resnet10t'") as info:
        create_classifier("resnet10t", weights=path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("content", [b"not a state dict", b""])
def test_unreadable_weights_file(tmp_path, content):
    path = tmp_path / "junk.pth"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="junk.pth"):
        load_state_dict_file(path)
    with pytest.raises(ConfigError, match="not found"):
        load_state_dict_file(tmp_path / "missing.safetensors")


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, path)
    with pytest.raises(ConfigError, match="evil.pth"):
        load_state_dict_file(path)


def test_checkpoint_round_trip_keeps_weights_and_metadata(tmp_path):
    torch.manual_seed(2)
    model = create_classifier("resnet10t").eval()
    path = save_classifier(model, _meta(model, threshold=0.37, temperature=1.8), tmp_path / "best")
    assert path.suffix == ".safetensors" and path.with_suffix(".json").is_file()
    loaded, meta = load_classifier(tmp_path)  # a run folder resolves to best.safetensors
    assert meta.threshold == 0.37 and meta.temperature == 1.8 and meta.binary
    x = torch.rand(2, 1, 32, 32)
    assert torch.allclose(loaded(x), model(x))
    assert not loaded.training


def test_checkpoint_of_another_backbone_is_one_clear_line(tmp_path):
    model = create_classifier("resnet10t")
    save_classifier(model, _meta(model), tmp_path / "best")
    doc = json.loads((tmp_path / "best.json").read_text())
    doc["backbone"] = "resnet18"
    (tmp_path / "best.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="do not match backbone 'resnet18'") as info:
        load_classifier(tmp_path / "best.safetensors")
    assert "\n" not in str(info.value)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_classifier(tmp_path / "nothing.safetensors")
    (tmp_path / "det.pt").write_bytes(b"x")
    with pytest.raises(ConfigError, match="--det"):
        load_classifier(tmp_path / "det.pt")
    model = create_classifier("resnet10t")
    save_classifier(model, _meta(model), tmp_path / "x")
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(ConfigError, match="not a fracdet classifier checkpoint"):
        load_classifier(tmp_path / "x.json")


def test_linear_mode_trains_the_head_only():
    model = create_classifier("resnet10t")
    n = set_trainable(model, "linear")
    head = model.backbone.get_classifier()
    assert n == sum(p.numel() for p in head.parameters())
    partial = set_trainable(model, "partial", unfreeze_blocks=1)
    assert n < partial < set_trainable(model, "full")
    with pytest.raises(ConfigError):
        set_trainable(model, "half")


def test_precision_choice():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("auto", cpu) in ("bf16", "fp32")
    with pytest.raises(ConfigError, match="CUDA"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ConfigError):
        resolve_precision("fp8", cpu)


def test_vision_transformer_is_built_for_the_training_size_and_reloads(tmp_path):
    torch.manual_seed(0)
    model = create_classifier("vit_tiny_patch16_224", image_size=32).eval()
    x = torch.rand(2, 1, 32, 32)
    meta = ClassifierMeta(
        backbone="vit_tiny_patch16_224",
        class_names=("not_fractured", "fractured"),
        image_size=32,
        mean=tuple(model.mean.flatten().tolist()),
        std=tuple(model.std.flatten().tolist()),
    )
    save_classifier(model, meta, tmp_path / "vit")
    loaded, _ = load_classifier(tmp_path / "vit.safetensors")
    assert torch.allclose(loaded(x), model(x), atol=1e-5)


def test_an_input_quantized_copy_rounds_its_inputs_and_has_no_input_gradient(tmp_path):
    from fracdet.cls.checkpoint import (
        ClassifierMeta,
        load_classifier,
        save_classifier,
        save_input_quantized,
    )
    from fracdet.errors import ConfigError
    from fracdet.robust.masking import QuantizedInput

    torch.manual_seed(0)
    model = create_classifier("resnet10t", num_outputs=1).eval()
    meta = ClassifierMeta(
        backbone="resnet10t",
        class_names=("not_fractured", "fractured"),
        image_size=32,
        mean=tuple(model.mean.flatten().tolist()),
        std=tuple(model.std.flatten().tolist()),
    )
    source = save_classifier(model, meta, tmp_path / "std" / "best.safetensors")
    path = save_input_quantized(source, tmp_path / "masked", levels=4)
    masked, masked_meta = load_classifier(path)
    plain, plain_meta = load_classifier(source)
    assert masked_meta.input_levels == 4 and plain_meta.input_levels is None
    x = torch.rand(3, 1, 32, 32, requires_grad=True)
    with torch.no_grad():  # the same decision as the plain model on the rounded image
        expected = QuantizedInput(plain, levels=4)(x)
        assert torch.allclose(masked(x), expected, atol=1e-6)
        assert not torch.allclose(plain(x), expected, atol=1e-3)
    masked(x).sum().backward()
    assert x.grad is not None and torch.count_nonzero(x.grad) == 0  # shattered gradients
    with pytest.raises(ConfigError, match="levels must be an integer >= 2"):
        save_input_quantized(source, tmp_path / "bad", levels=1)


def test_a_detector_is_named_even_after_ultralytics_loaded_one_in_this_process(tmp_path):
    # Ultralytics registers its classes as torch's safe globals, process-wide, when it loads a
    # model: weights_only then reads its .pt, and the refusal must still name the detector
    from conftest import make_tiny_detector

    from fracdet.det.model import load_detector
    from fracdet.errors import ConfigError

    path = make_tiny_detector(tmp_path)
    load_detector(path)
    with pytest.raises(ConfigError, match="an Ultralytics detector, not classifier weights"):
        load_state_dict_file(path)
