"""``fracdet import-cls``: foreign classifiers become fracdet classifiers that eval-cls, audit and
predict take; verified against the original; one clear error per bad input."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from conftest import read_rows
from typer.testing import CliRunner

from fracdet.audit import AuditConfig, run_audit
from fracdet.cli import app
from fracdet.cls.checkpoint import ClassifierMeta, load_classifier, save_classifier
from fracdet.cls.imported import clean_state_keys, fracture_logit
from fracdet.cls.importer import ImportClsConfig, import_classifier
from fracdet.cls.model import create_classifier
from fracdet.errors import ConfigError
from fracdet.explain import GradCAMExplainer
from fracdet.explain.registry import create_explainer

SIZE = 32
runner = CliRunner()
AUDIT_FAST = {
    "checks": (),
    "steps": 2,
    "ig_steps": 4,
    "n_boot": 100,
    "batch_size": 4,
    "workers": 0,
    "device": "cpu",
    "figure_samples": 1,
    "figure_worst": 1,
    "split": "all",
    "max_images": 12,
}


def _invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def twins(tmp_path_factory) -> dict[str, Path]:
    """A fracdet resnet18 (one logit, 32 px) and the same weights as a plain torchvision state
    dict saved by ``torch.save``, as a researcher would bring it."""
    root = tmp_path_factory.mktemp("twins")
    torch.manual_seed(0)
    model = create_classifier("resnet18", num_outputs=1)
    with torch.no_grad():  # a trained-looking network: BN statistics away from 0/1
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    mean = tuple(model.mean.flatten().tolist())
    std = tuple(model.std.flatten().tolist())
    meta = ClassifierMeta(
        backbone="resnet18",
        class_names=("not_fractured", "fractured"),
        image_size=SIZE,
        mean=mean,
        std=std,
    )
    save_classifier(model, meta, root / "fracdet" / "best.safetensors")
    plain = torchvision.models.resnet18(num_classes=1)
    plain.load_state_dict(model.backbone.state_dict())
    torch.save(plain.state_dict(), root / "resnet18.pth")
    return {"fracdet": root / "fracdet", "pth": root / "resnet18.pth", "root": root}


def test_torchvision_state_dict_audits_like_the_equivalent_fracdet_model(
    twins, phantom_dataset, tmp_path
):
    out = tmp_path / "imported"
    mean = ",".join(f"{v:.17g}" for v in (0.485, 0.456, 0.406))
    std = ",".join(f"{v:.17g}" for v in (0.229, 0.224, 0.225))
    result = _invoke(
        "import-cls",
        twins["pth"],
        "--arch",
        "torchvision:resnet18",
        "--input-size",
        SIZE,
        "--mean",
        mean,
        "--std",
        std,
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    line = result.stdout.strip()
    assert len(line.splitlines()) == 1 and line.startswith("imported torchvision:resnet18")
    assert "Grad-CAM layer layer4" in line
    meta = json.loads((out / "best.json").read_text())
    assert meta["source"] == "torchvision" and meta["imported"]["cam_layer"] == "layer4"
    assert meta["imported"]["verification"]["max_abs_diff_probability"] <= 1e-5

    summary = run_audit(
        AuditConfig(
            dataset=phantom_dataset,
            output=tmp_path / "audit",
            classifiers=(twins["fracdet"], out),
            names=("fracdet", "imported"),
            methods=("saliency", "gradcam"),
            **AUDIT_FAST,
        )
    )
    assert summary is not None
    rows = read_rows(tmp_path / "audit" / "per_image.csv")
    by_model: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_model.setdefault(row["model"], []).append(row)
    own, imported = by_model["fracdet"], by_model["imported"]
    assert len(own) == len(imported) == 12
    numeric = [k for k in own[0] if k not in ("model", "path")]
    compared = 0
    for a, b in zip(own, imported, strict=True):
        for key in numeric:
            try:
                x, y = float(a[key]), float(b[key])
            except ValueError:
                assert a[key] == b[key], key
                continue
            compared += 1
            assert (math.isnan(x) and math.isnan(y)) or abs(x - y) <= 1e-6, (key, x, y)
    assert compared > 12 * 10  # probabilities, attack results and both methods' metrics


def test_old_metadata_without_source_still_loads(twins, tmp_path):
    folder = tmp_path / "old"
    shutil.copytree(twins["fracdet"], folder)
    doc = json.loads((folder / "best.json").read_text())
    for key in ("source", "imported"):
        doc.pop(key)
    (folder / "best.json").write_text(json.dumps(doc))
    model, meta = load_classifier(folder)
    assert meta.source == "fracdet" and meta.imported == {}
    assert model(torch.rand(1, 1, SIZE, SIZE)).shape == (1,)


def test_softmax_head_is_the_logit_of_the_fracture_probability():
    out = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
    z = fracture_logit(out, "softmax", 2)
    # hand-computed: z_f - log(e^z_0 + e^z_1)
    assert z[0].item() == pytest.approx(3.0 - math.log(math.e + math.e**2), abs=1e-6)
    assert torch.allclose(torch.sigmoid(z), torch.softmax(out, 1)[:, 2], atol=1e-6)
    assert torch.equal(fracture_logit(out[:, :1], "sigmoid", 0), out[:, 0])


def test_key_clean_up_strips_prefixes_only_where_every_key_has_them():
    t = torch.zeros(1)
    state = {"module.model.a": t, "module.model.b": t}
    assert set(clean_state_keys(state, strip_prefixes=("module.", "model."))) == {"a", "b"}
    mixed = {"model.a": t, "fc.b": t}
    assert set(clean_state_keys(mixed, strip_prefixes=("model.",))) == {"model.a", "fc.b"}
    renamed = clean_state_keys({"head.w": t, "x": t}, rename={"head.": "fc.", "x": "y"})
    assert set(renamed) == {"fc.w", "y"}
    with pytest.raises(ConfigError, match="'nothing' matches no key"):
        clean_state_keys(state, rename={"nothing": "x"})


def _scripted_classifier(path: Path, classes: int = 2) -> Path:
    torch.manual_seed(1)
    net = torchvision.models.resnet18(num_classes=classes).eval()
    torch.jit.save(torch.jit.script(net), str(path))
    return path


def test_torchscript_imports_and_eval_audit_predict_take_it(tmp_path, phantom_dataset):
    source = _scripted_classifier(tmp_path / "colleague.pt", classes=3)
    out = tmp_path / "scripted"
    result = _invoke(
        "import-cls",
        source,
        "--arch",
        "torchscript",
        "--head",
        "softmax",
        "--class-names",
        "normal,fracture,implant",
        "--fracture-index",
        1,
        "--input-size",
        SIZE,
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    assert "no Grad-CAM layer" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "MODEL_CARD.md",
        "best.json",
        "best.torchscript",
        "model_card.json",
    ]
    model, meta = load_classifier(out)
    assert meta.source == "torchscript" and meta.imported["fracture_index"] == 1
    from fracdet.report.model_card import read_model_card

    card = read_model_card(out)  # import-cls writes the card: the file it came from, its parity
    assert card.model.framework == "torchscript" and card.model.files[0].name == "best.torchscript"
    pixels = torch.rand(2, 1, SIZE, SIZE, requires_grad=True)
    model(pixels).sum().backward()  # gradients reach the pixels: attacks and Saliency work
    assert pixels.grad is not None and pixels.grad.abs().sum() > 0

    result = _invoke(
        "eval-cls", out, phantom_dataset / "manifest.csv", "--split", "all", "--out",
        tmp_path / "eval", "--n-boot", 20, "--workers", 0, "--device", "cpu",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "images: AUROC" in result.stdout

    audit = [
        "audit", phantom_dataset, "--cls", out, "--split", "all", "--max-images", 12,
        "--checks", "none", "--steps", 1, "--ig-steps", 2, "--batch-size", 4,
        "--workers", 0, "--device", "cpu",
    ]  # fmt: skip
    result = _invoke(*audit, "--methods", "saliency,integrated_gradients", "--out", tmp_path / "a")
    assert result.exit_code == 0, result.output
    assert "audit of 1 classifier(s) on 12 images" in result.stdout
    result = _invoke(*audit, "--methods", "saliency,gradcam", "--out", tmp_path / "b")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "gradcam hooks the model's layers" in result.stderr and "TorchScript" in result.stderr

    images = tmp_path / "images"
    images.mkdir()
    for src in sorted((phantom_dataset / "images").rglob("*.jpg"))[:3]:
        shutil.copy(src, images / src.name)
    result = _invoke(
        "predict", images, "--cls", out, "--out", tmp_path / "pred", "--device", "cpu",
        "--workers", 0,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = read_rows(tmp_path / "pred" / "predictions.csv")
    assert len(rows) == 3 and all(0 < float(r["fracture_probability"]) < 1 for r in rows)


def test_cam_layer_is_taken_and_checked(twins, tmp_path):
    cfg = ImportClsConfig(
        source=twins["pth"],
        arch="torchvision:resnet18",
        input_size=SIZE,
        cam_layer="layer3",
        output=tmp_path / "l3",
    )
    assert import_classifier(cfg).cam_layer == "layer3"
    model, meta = load_classifier(tmp_path / "l3")
    maps = GradCAMExplainer(model, image_size=SIZE).attribute(torch.rand(2, 1, SIZE, SIZE))
    assert maps.shape == (2, SIZE, SIZE) and np.isfinite(maps).all()
    with pytest.raises(ConfigError, match="--cam-layer 'layer9' is not a layer"):
        import_classifier(
            ImportClsConfig(
                source=twins["pth"],
                arch="torchvision:resnet18",
                input_size=SIZE,
                cam_layer="layer9",
                output=tmp_path / "l9",
            )
        )
    with pytest.raises(ConfigError, match="gives \\(1, 1\\), not a \\(B, C, h, w\\)"):
        import_classifier(
            ImportClsConfig(
                source=twins["pth"],
                arch="torchvision:resnet18",
                input_size=SIZE,
                cam_layer="fc",
                samples=1,
                output=tmp_path / "fc",
            )
        )
    scripted = _scripted_classifier(tmp_path / "s.pt", classes=1)
    with pytest.raises(ConfigError, match="compiled graph, so Grad-CAM cannot hook"):
        import_classifier(
            ImportClsConfig(
                source=scripted,
                arch="torchscript",
                input_size=SIZE,
                cam_layer="layer4",
                output=tmp_path / "s",
            )
        )
    scripted_model, meta = load_classifier(
        import_classifier(
            ImportClsConfig(
                source=scripted, arch="torchscript", input_size=SIZE, output=tmp_path / "t"
            )
        ).checkpoint
    )
    with pytest.raises(ConfigError, match="deeplift hooks the model's layers"):
        create_explainer("deeplift", scripted_model, image_size=SIZE)
    assert not tmp_path.joinpath("l9").exists() and not tmp_path.joinpath("s").exists()


def test_grey_timm_model_that_normalises_itself(tmp_path):
    """channels=1, normalize=model: [0, 1] grey pixels reach the network untouched; the
    recorded mean/std only set ε's normalized units."""
    import timm

    torch.manual_seed(2)
    net = timm.create_model("resnet10t", num_classes=1, in_chans=1).eval()
    torch.save({f"inner.{k}": v for k, v in net.state_dict().items()}, tmp_path / "grey.pth")
    common = {
        "source": tmp_path / "grey.pth", "arch": "timm:resnet10t", "channels": 1,
        "input_size": SIZE, "normalize": "model", "mean": (0.5,), "std": (0.25,),
    }  # fmt: skip
    with pytest.raises(ConfigError, match="missing .* keys .* unexpected keys .*--strip-prefix"):
        import_classifier(ImportClsConfig(**common, output=tmp_path / "x"))
    summary = import_classifier(
        ImportClsConfig(**common, strip_prefixes=("inner.",), output=tmp_path / "grey")
    )
    assert summary.max_abs_diff <= 1e-5
    model, meta = load_classifier(tmp_path / "grey")
    x = torch.rand(3, 1, SIZE, SIZE)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x)[:, 0], atol=1e-6)
    assert meta.mean == (0.0, 0.0, 0.0) and meta.input_std == (0.25, 0.25, 0.25)


def _yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


class _Payload:
    """Unpickling this would leave a marker file: the importer must never get that far."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize(
    "case, match",
    [
        ("pickle", "refused: Python objects besides tensors"),
        ("not_tensors", "not a state dict of tensors"),
        ("shapes", "shapes do not fit torchvision:resnet18: 2 tensors, first fc.weight"),
        ("keys", "missing 2 keys \\(fc.bias, fc.weight; --allow-missing"),
        ("not_classifier", "not a classifier of the given head: it outputs \\(2, 5, 4\\)"),
        ("unknown_tv", "unknown torchvision architecture 'resnet19' \\(close matches: resnet18"),
        ("unknown_timm", "unknown timm architecture 'resnett18'"),
        ("missing_file", "model file not found"),
    ],
)
def test_bad_input_gives_one_clear_error(case, match, twins, tmp_path):
    source, arch, options = twins["pth"], "torchvision:resnet18", {}
    if case == "pickle":
        source = tmp_path / "evil.pth"
        torch.save({"fc.weight": _Payload(tmp_path / "ran")}, source)
    elif case == "not_tensors":
        source = tmp_path / "numbers.pth"
        torch.save({"fc.weight": [1, 2, 3]}, source)
    elif case == "shapes":
        options = {"head": "softmax", "class_names": ("a", "b", "c"), "fracture_index": 0}
    elif case == "keys":
        source = tmp_path / "renamed.pth"
        state = torch.load(twins["pth"], weights_only=True)
        torch.save({k.replace("fc.", "head."): v for k, v in state.items()}, source)
    elif case == "not_classifier":

        class Dense(torch.nn.Module):
            def forward(self, x):
                return torch.nn.functional.adaptive_avg_pool2d(x, (5, 4))[:, 0]

        source = tmp_path / "dense.pt"
        torch.jit.save(torch.jit.script(Dense()), str(source))
        arch = "torchscript"
        options = {"samples": 2}
    elif case == "unknown_tv":
        arch = "torchvision:resnet19"
    elif case == "unknown_timm":
        arch = "timm:resnett18"
    elif case == "missing_file":
        source = tmp_path / "nowhere.pth"
    cfg = ImportClsConfig(
        source=source, arch=arch, input_size=SIZE, output=tmp_path / "out", **options
    )
    with pytest.raises(ConfigError, match=match) as info:
        import_classifier(cfg)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "ran").exists()


@pytest.mark.parametrize(
    "options, match",
    [
        ({"head": "softmax", "class_names": ("a", "b"), "fracture_index": 2}, "out of range for 2"),
        ({"head": "softmax", "class_names": ("a", "b")}, "needs --fracture-index"),
        ({"class_names": ("a", "b")}, "are for --head softmax"),
        ({"arch": "keras:resnet"}, "unknown architecture 'keras:resnet'"),
        ({"channels": 2}, "channels must be 1 or 3"),
    ],
)
def test_bad_options_are_refused_before_any_work(options, match, tmp_path):
    values = {"source": tmp_path / "m.pth", "arch": "torchvision:resnet18", **options}
    with pytest.raises(ConfigError, match=match):
        ImportClsConfig(**values)


def test_cli_error_is_one_line(tmp_path):
    result = _invoke(
        "import-cls", tmp_path / "m.pth", "--arch", "torchvision:resnet18", "--head", "softmax",
        "--class-names", "a,b", "--fracture-index", 5, "--out", tmp_path / "o",
    )  # fmt: skip
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip() == (
        "error: fracture index 5 is out of range for 2 classes ['a', 'b'] (0 to 1)"
    )


def test_cli_options_reach_the_config(monkeypatch, tmp_path):
    import fracdet.cls.importer

    seen = []

    def fake(cfg):
        seen.append(cfg)
        return type("S", (), {"line": lambda self: "imported"})()

    monkeypatch.setattr(fracdet.cls.importer, "import_classifier", fake)
    (tmp_path / "map.yaml").write_text("'head.': 'fc.'\n")
    result = _invoke(
        "import-cls", tmp_path / "m.pth", "--arch", "timm:resnet18", "--input-size", 64,
        "--resize", "stretch", "--mean", "0.5", "--std", "0.25", "--normalize", "model",
        "--channels", 1, "--head", "softmax", "--class-names", "ok,broken", "--fracture-index", 1,
        "--threshold", 0.3, "--strip-prefix", "net.", "--rename-map", tmp_path / "map.yaml",
        "--allow-missing", "--allow-unexpected", "--cam-layer", "layer3", "--samples", 2,
        "--seed", 7, "--out", tmp_path / "o",
    )  # fmt: skip
    assert result.exit_code == 0 and result.stdout == "imported\n", result.output
    (cfg,) = seen
    assert (cfg.arch, cfg.input_size, cfg.resize, cfg.normalize, cfg.channels) == (
        "timm:resnet18",
        64,
        "stretch",
        "model",
        1,
    )
    assert (cfg.mean, cfg.std, cfg.class_names, cfg.fracture_index) == (
        (0.5,),
        (0.25,),
        ("ok", "broken"),
        1,
    )
    assert (cfg.strip_prefixes, cfg.allow_missing, cfg.allow_unexpected) == (("net.",), True, True)
    assert (cfg.cam_layer, cfg.samples, cfg.seed, cfg.threshold) == ("layer3", 2, 7, 0.3)
    assert cfg.rename_map == tmp_path / "map.yaml" and cfg.output == tmp_path / "o"
