"""pretrain-mae, mae-show and the encoder as a timm backbone, on a tiny ViT-MAE (32 px, 8-px
patches).

Nothing downloads: models are built from a ViTMAEConfig; "local weights" are a folder written
by ``save_pretrained`` here.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import save_image
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from fracdet.cls.checkpoint import load_classifier
from fracdet.cls.model import create_classifier, weights_architecture
from fracdet.errors import ConfigError, DataError, OutputExistsError
from fracdet.log import setup_logging
from fracdet.mae.checkpoint import load_mae
from fracdet.mae.encoder_to_timm import encoder_state_dict, export_encoder, timm_args
from fracdet.mae.model import (
    LEGACY_NAMES,
    canonical_key,
    load_mae_state,
    mae_config,
    new_mae,
    sincos_position_embedding,
)
from fracdet.mae.reconstruction import fixed_noise
from fracdet.mae.show import MAEShowConfig, show_mae
from fracdet.mae.train import MAETrainConfig, pretrain_mae
from fracdet.mae.weights import build_mae

TINY_MODEL = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "decoder_hidden_size": 32,
    "decoder_num_hidden_layers": 1,
    "decoder_num_attention_heads": 2,
    "decoder_intermediate_size": 64,
}
TINY = {
    "image_size": 32,
    "patch_size": 8,
    "model_args": TINY_MODEL,
    "batch_size": 8,
    "workers": 0,
    "epochs": 2,
    "lr": 1e-3,
    "warmup_epochs": 0.0,
    "precision": "fp32",
}


def _cfg(data: Path, out: Path, **changes) -> MAETrainConfig:
    return MAETrainConfig(data=data, output=out, **{**TINY, **changes})


def _tiny_mae(seed: int = 0, *, mask_ratio: float = 0.75, image_size: int = 32):
    torch.manual_seed(seed)
    return new_mae(
        mae_config(
            {}, image_size=image_size, patch_size=8, mask_ratio=mask_ratio, model_args=TINY_MODEL
        )
    )


@pytest.fixture(scope="module")
def mae_run(phantom_dataset, tmp_path_factory) -> Path:
    """A tiny MAE pretrained for 3 epochs on the phantom manifest (read-only)."""
    setup_logging(quiet=True)  # module fixtures run before the autouse one that does this
    out = tmp_path_factory.mktemp("mae") / "run"
    pretrain_mae(_cfg(phantom_dataset / "manifest.csv", out, epochs=3))
    return out


# ----------------------------------------------------------------------------- model


@pytest.mark.parametrize("ratio", [0.75, 0.5])
def test_masking_ratio_is_honoured_and_fixed_masks_repeat(ratio):
    model = _tiny_mae(mask_ratio=ratio).eval()
    images = torch.rand(3, 1, 32, 32)
    noise = fixed_noise([0, 1, 2], model.num_patches, seed=0)
    with torch.no_grad():
        out = model(images, noise=noise)
        again = model(images, noise=fixed_noise([0, 1, 2], model.num_patches, seed=0))
    kept = int(model.num_patches * (1 - ratio))
    assert out.mask.shape == (3, 16) and out.mask.sum(dim=1).tolist() == [16 - kept] * 3
    assert torch.equal(out.mask, again.mask) and not torch.equal(out.mask[0], out.mask[1])
    assert not torch.equal(fixed_noise([0], 16, seed=0), fixed_noise([0], 16, seed=1))
    assert torch.equal(
        fixed_noise([5, 2], 16, seed=0)[1], fixed_noise([2], 16, seed=0)[0]
    )  # per image, not per batch


def test_grey_and_rgb_inputs_agree_and_bad_inputs_are_refused():
    model = _tiny_mae().eval()
    grey = torch.rand(2, 1, 32, 32)
    noise = fixed_noise([0, 1], 16, seed=0)
    with torch.no_grad():
        assert torch.allclose(
            model(grey, noise=noise).loss, model(grey.expand(-1, 3, -1, -1), noise=noise).loss
        )
    with pytest.raises(ValueError, match=r"pixels in \[0, 1\]"):
        model(grey * 255)
    with pytest.raises(ValueError, match="32x32"):
        model(torch.rand(1, 1, 40, 40))
    with pytest.raises(ValueError, match="shape"):
        model(torch.rand(1, 2, 32, 32))


def _randomise(model) -> None:
    """Every weight random, LayerNorm affine and biases included, so a wrong mapping cannot hide."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.backbone.named_parameters():
            if param.requires_grad:
                param.copy_(
                    torch.randn(param.shape, generator=generator)
                    * (0.2 if "weight" in name and param.ndim > 1 else 0.5)
                    + (1.0 if "layernorm" in name and name.endswith("weight") else 0.0)
                )


def test_encoder_matches_timm_within_1e5(tmp_path):
    model = _tiny_mae().eval()
    _randomise(model)
    path = export_encoder(
        model.backbone.state_dict(), model.config.to_dict(), tmp_path / "encoder.safetensors"
    )
    assert weights_architecture(path) == {
        "patch_size": 8,
        "embed_dim": 32,
        "depth": 2,
        "num_heads": 2,
        "mlp_ratio": 2.0,
        "qkv_bias": True,
    }
    assert (
        json.loads(path.with_suffix(".json").read_text())["backbone"] == "vit_base_patch16_224.mae"
    )
    clf = create_classifier("vit_base_patch16_224.mae", weights=path, image_size=32).eval()
    assert (
        clf.backbone_args["embed_dim"] == 32
        and torch.equal(clf.mean, model.mean)
        and torch.equal(clf.std, model.std)
    )
    pixels = torch.rand(4, 1, 32, 32)
    with torch.no_grad():
        hf = model.encode(pixels)
        timm_tokens = clf.backbone.forward_features(
            (pixels.expand(-1, 3, -1, -1) - clf.mean) / clf.std
        )
    assert hf.shape == timm_tokens.shape == (4, 17, 32)
    assert (hf - timm_tokens).abs().max() < 1e-5
    # and the mapping is the one documented: q, k, v stacked into timm's qkv, whatever the naming
    state = {canonical_key(k): v for k, v in model.backbone.state_dict().items()}
    mapped = encoder_state_dict(state, model.config.to_dict())
    q, k, v = (state[f"vit.layers.1.attention.{n}_proj.weight"] for n in "qkv")
    assert torch.equal(mapped["blocks.1.attn.qkv.weight"], torch.cat([q, k, v]))
    assert not any("decoder" in key for key in mapped)
    legacy = {_legacy(key): value for key, value in state.items()}
    assert (
        "vit.encoder.layer.1.attention.attention.query.weight" in legacy
        and "vit.encoder.layer.1.output.dense.bias" in legacy
    )
    from_legacy = encoder_state_dict(
        legacy, model.config.to_dict()
    )  # a transformers 4.x state dict
    assert from_legacy.keys() == mapped.keys() and all(
        torch.equal(from_legacy[k], mapped[k]) for k in mapped
    )
    fresh = _tiny_mae(seed=5)
    load_mae_state(fresh, legacy, "legacy.safetensors")
    assert torch.equal(fresh.encode(pixels), hf)


def _legacy(key: str) -> str:
    """A transformers 5 key in 4.x naming (the inverse of canonical_key)."""
    for old, new in reversed(LEGACY_NAMES):
        key = key.replace(new, old) if not (new == "layers." and "decoder_layers." in key) else key
    return key


def _meta_sincos(dim: int, grid: int) -> np.ndarray:
    """Meta's MAE reference (facebookresearch/mae, util/pos_embed.py: get_2d_sincos_pos_embed),
    transcribed.
    """

    def one_axis(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    g = np.stack(
        np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32)), axis=0
    )  # w goes first
    table = np.concatenate([one_axis(dim // 2, g[0]), one_axis(dim // 2, g[1])], axis=1)
    return np.concatenate([np.zeros([1, dim]), table], axis=0)


def test_sincos_table_is_meta_mae_s_and_is_set_in_encoder_and_decoder():
    ours = sincos_position_embedding(32, 4)
    assert ours.shape == (17, 32) and torch.equal(ours[0], torch.zeros(32))
    assert np.allclose(ours.numpy(), _meta_sincos(32, 4), atol=1e-6)
    model = _tiny_mae()
    assert torch.equal(model.backbone.vit.embeddings.position_embeddings[0], ours)
    assert torch.equal(
        model.backbone.decoder.decoder_pos_embed[0], ours
    )  # transformers 5 leaves both at zero from a config
    with pytest.raises(ConfigError, match="multiples of 4"):
        sincos_position_embedding(30, 4)


def test_encoder_loads_at_another_size_with_avg_pooling_and_reloads_from_the_checkpoint(tmp_path):
    model = _tiny_mae()
    path = export_encoder(
        model.backbone.state_dict(), model.config.to_dict(), tmp_path / "encoder.safetensors"
    )
    clf = create_classifier(
        "vit_base_patch16_224", weights=path, image_size=48, global_pool="avg", num_outputs=3
    )
    assert clf.backbone.pos_embed.shape == (1, 37, 32)  # resampled to a 6x6 grid
    assert torch.equal(
        clf.backbone.fc_norm.weight, model.backbone.vit.layernorm.weight
    )  # the final norm starts fc_norm
    assert clf(torch.rand(2, 1, 48, 48)).shape == (2, 3)


def test_mapping_and_loading_errors(tmp_path):
    model = _tiny_mae()
    state, config = model.backbone.state_dict(), model.config.to_dict()
    with pytest.raises(ConfigError, match="lacks 'layernorm.weight'"):
        encoder_state_dict({k: v for k, v in state.items() if k != "vit.layernorm.weight"}, config)
    with pytest.raises(ConfigError, match="no timm counterpart"):
        encoder_state_dict({**state, "vit.extra.weight": torch.zeros(1)}, config)
    with pytest.raises(ConfigError, match="exact GELU"):
        timm_args({**config, "hidden_act": "relu"})
    with pytest.raises(ConfigError, match="mlp_ratio"):
        timm_args(
            {**config, "hidden_size": 28, "intermediate_size": 61}
        )  # int(28 * (61 / 28)) == 60
    path = export_encoder(state, config, tmp_path / "encoder.safetensors")
    with pytest.raises(ConfigError, match="pass a ViT backbone"):
        create_classifier("resnet10t", weights=path)
    bad = tmp_path / "bad.safetensors"
    save_file({"x": torch.zeros(1)}, str(bad), metadata={"timm_args": "[1, 2"})
    with pytest.raises(ConfigError, match="not a JSON object"):
        create_classifier("vit_base_patch16_224", weights=bad)
    assert (
        weights_architecture(tmp_path / "missing.safetensors") == {}
        and weights_architecture(tmp_path / "encoder.json") == {}
    )


def test_build_mae_from_a_local_folder_and_its_errors(tmp_path, monkeypatch):
    model = _tiny_mae()
    model.backbone.save_pretrained(tmp_path / "hf")
    loaded, init = build_mae(
        weights=tmp_path / "hf", image_size=48
    )  # another size: position embeddings recomputed
    assert (
        init == str(tmp_path / "hf")
        and loaded.image_size == 48
        and loaded.config.layer_norm_eps == 1e-6
    )
    own = {canonical_key(k): v for k, v in loaded.backbone.state_dict().items()}
    saved = {canonical_key(k): v for k, v in model.backbone.state_dict().items()}
    assert torch.equal(own["vit.layers.0.mlp.fc2.weight"], saved["vit.layers.0.mlp.fc2.weight"])
    assert own["vit.embeddings.position_embeddings"].shape == (1, 37, 32)
    with pytest.raises(ConfigError, match="8-px patches"):
        build_mae(weights=tmp_path / "hf", patch_size=16)
    with pytest.raises(ConfigError, match="not found"):
        build_mae(weights=tmp_path / "nowhere")
    (tmp_path / "junk.bin").write_bytes(b"junk")
    with pytest.raises(ConfigError, match="not MAE weights"):
        build_mae(weights=tmp_path / "junk.bin")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ConfigError, match="not a ViT-MAE"):
        build_mae(weights=tmp_path / "bert")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="hub is unreachable.*--weights"):
        build_mae(pretrained=True)
    with pytest.raises(ConfigError, match="unknown MAE size"):
        build_mae(arch="giant")
    with pytest.raises(ConfigError, match="did you mean hidden_size"):
        mae_config({}, image_size=32, patch_size=8, mask_ratio=0.75, model_args={"hiden_size": 32})
    with pytest.raises(ConfigError, match="use --image-size"):
        mae_config({}, image_size=32, patch_size=8, mask_ratio=0.75, model_args={"image_size": 64})
    with pytest.raises(ConfigError, match="multiple of patch_size"):
        mae_config({}, image_size=36, patch_size=8, mask_ratio=0.75)
    with pytest.raises(ConfigError, match="num_attention_heads"):
        mae_config(
            {},
            image_size=32,
            patch_size=8,
            mask_ratio=0.75,
            model_args={**TINY_MODEL, "num_attention_heads": 3},
        )


# ----------------------------------------------------------------------------- training


def test_pretraining_lowers_the_masked_error_and_writes_the_run(mae_run):
    for name in ("initial", "best", "last", "encoder"):
        assert (mae_run / f"{name}.safetensors").is_file() and (
            mae_run / f"{name}.json"
        ).is_file(), name
    for name in ("last_state.pt", "metrics.csv", "metrics.json", "train_report.json"):
        assert (mae_run / name).is_file(), name
    history = json.loads((mae_run / "metrics.json").read_text())
    report = json.loads((mae_run / "train_report.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert min(row["val_loss"] for row in history) < report["initial_val"]["loss"]
    assert report["best_val"]["mse"] < report["initial_val"]["mse"] and report["init"] == "random"
    model, meta = load_mae(mae_run)
    assert (
        meta.epoch == report["best_epoch"]
        and meta.train_config["mask_ratio"] == 0.75
        and meta.data_hash
    )
    assert model.config.hidden_size == 32 and not model.training
    encoder = json.loads((mae_run / "encoder.json").read_text())
    assert (
        encoder["epoch"] == meta.epoch and "--backbone vit_base_patch16_224.mae" in encoder["usage"]
    )


def test_resume_after_interruption_gives_the_same_weights(phantom_dataset, tmp_path):
    manifest = phantom_dataset / "manifest.csv"
    straight = pretrain_mae(_cfg(manifest, tmp_path / "straight"))

    def interrupt(epoch, _row):
        if epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain_mae(_cfg(manifest, tmp_path / "broken"), on_epoch_end=interrupt)
    with pytest.raises(OutputExistsError, match="--resume"):
        pretrain_mae(_cfg(manifest, tmp_path / "broken"))
    resumed = pretrain_mae(_cfg(manifest, tmp_path / "broken", resume=True))
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    a, b = load_file(str(straight.last)), load_file(str(resumed.last))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.line() == straight.line().replace("straight", "broken")
    with pytest.raises(ConfigError, match="cannot resume"):
        pretrain_mae(
            _cfg(
                manifest,
                tmp_path / "broken",
                resume=True,
                epochs=3,
                model_args={**TINY_MODEL, "hidden_size": 64},
            )
        )


def test_bf16_on_the_cpu_and_continuing_from_a_checkpoint_at_another_size(mae_run, tmp_path):
    images = tmp_path / "images"
    for i in range(6):
        save_image(images / f"sub/{i}.png", 40 + i, 30, seed=i)
    (images / "notes.txt").write_text("not an image")
    result = pretrain_mae(
        _cfg(
            images,
            tmp_path / "run",
            epochs=1,
            weights=mae_run / "best.safetensors",
            image_size=48,
            precision="bf16",
            model_args={},
        )
    )
    report = json.loads((tmp_path / "run" / "train_report.json").read_text())
    assert (report["train_images"], report["val_images"]) == (5, 1) and report["init"].endswith(
        "best.safetensors"
    )
    assert [s["file"] for s in result.skipped] == [str(images / "notes.txt")]
    assert np.isfinite(result.best_val["loss"]) and load_mae(result.best)[0].image_size == 48


def test_unreadable_images_are_skipped_and_recorded(tmp_path):
    images = tmp_path / "images"
    for i in range(8):
        save_image(images / f"{i}.png", 32, 32, seed=i)
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    result = pretrain_mae(
        _cfg(images, tmp_path / "run", epochs=1, val_fraction=0.25)
    )  # 2 val images: one at least reads
    assert any(s["file"].endswith("broken.jpg") for s in result.skipped)


def test_bad_input_gives_clear_errors(phantom_dataset, tmp_path):
    manifest = phantom_dataset / "manifest.csv"
    with pytest.raises(DataError, match="not found"):
        pretrain_mae(_cfg(tmp_path / "nowhere", tmp_path / "a"))
    save_image(tmp_path / "one" / "a.png", 32, 32)
    with pytest.raises(DataError, match="at least 2"):
        pretrain_mae(_cfg(tmp_path / "one", tmp_path / "b"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="0 usable"):
        pretrain_mae(_cfg(tmp_path / "empty", tmp_path / "c"))
    with pytest.raises(ConfigError, match="nothing to resume"):
        pretrain_mae(_cfg(manifest, tmp_path / "d", resume=True))
    with pytest.raises(ConfigError, match="val_fraction"):
        pretrain_mae(_cfg(manifest, tmp_path / "e", val_fraction=1.5))
    broken = tmp_path / "all_broken"
    for i in range(3):
        (broken / f"{i}.png").parent.mkdir(exist_ok=True)
        (broken / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DataError, match="validation images could be read"):
        pretrain_mae(_cfg(broken, tmp_path / "f", epochs=1))
    assert (
        not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    )  # nothing made before data and model are good
    for changes, message in (
        ({"arch": "giant"}, "arch must be one of"),
        ({"scheduler": "plateau"}, "scheduler must be one of"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"mask_ratio": 1.0}, r"mask_ratio must be in \[0, 1\)"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"pretrained": True, "weights": tmp_path}, "exclude each other"),
    ):
        with pytest.raises(ConfigError, match=message):
            _cfg(manifest, tmp_path / "g", **changes)


# ----------------------------------------------------------------------------- mae-show


def test_mae_show_draws_both_models_and_scores_them(mae_run, phantom_dataset, tmp_path):
    cfg = MAEShowConfig(
        mae_run,
        phantom_dataset / "manifest.csv",
        output=tmp_path / "show",
        count=3,
        workers=0,
        precision="fp32",
    )
    summary = show_mae(cfg)
    doc = json.loads((tmp_path / "show" / "mae_show.json").read_text())
    assert (
        summary.figure == tmp_path / "show" / "mae_show.png"
        and summary.figure.stat().st_size > 5000
    )
    report = json.loads((mae_run / "train_report.json").read_text())
    assert doc["start"]["mse"] == pytest.approx(
        report["initial_val"]["mse"], rel=1e-5
    )  # same val images, same masks
    assert doc["adapted"]["mse"] == pytest.approx(report["best_val"]["mse"], rel=1e-5)
    assert (
        doc["adapted"]["mse"] < doc["start"]["mse"]
        and len(doc["figure_images"]) == 3
        and doc["start_weights"] == "random"
    )
    assert summary.line().startswith(
        f"masked-patch MSE on {doc['adapted']['images']} images (75% of patches hidden): start "
    )
    with pytest.raises(OutputExistsError):
        show_mae(cfg)
    again = show_mae(
        MAEShowConfig(
            mae_run / "last.safetensors",
            phantom_dataset,
            output=tmp_path / "show",
            split="test",
            count=2,
            max_images=2,
            workers=0,
            precision="fp32",
            overwrite=True,
        )
    )
    assert again.metrics["adapted"]["images"] == 2 and len(again.metrics["figure_images"]) == 2


def test_checkpoint_and_weights_errors(mae_run, phantom_dataset, tmp_path):
    with pytest.raises(ConfigError, match="a .safetensors file with a .json"):
        load_mae(tmp_path / "model.pt")
    copy = tmp_path / "copy"
    copy.mkdir()
    meta = json.loads((mae_run / "best.json").read_text())
    (copy / "best.safetensors").write_bytes(b"junk")
    (copy / "best.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="not a readable safetensors file"):
        load_mae(copy)
    (copy / "best.safetensors").write_bytes((mae_run / "best.safetensors").read_bytes())
    (copy / "best.json").write_text(
        json.dumps({**meta, "hf_config": {**meta["hf_config"], "hidden_size": "wide"}})
    )
    with pytest.raises(ConfigError, match="unusable ViTMAE config"):
        load_mae(copy)
    with pytest.raises(ConfigError, match="weights do not fit this ViT-MAE.*shape mismatch"):
        build_mae(weights=mae_run, model_args={"hidden_size": 64, "intermediate_size": 128})
    with pytest.raises(ConfigError, match="fracdet fixes it"):
        build_mae(model_args={"layer_norm_eps": 1e-12})
    hf = tmp_path / "hf_without_weights"
    _tiny_mae().backbone.config.save_pretrained(hf)
    with pytest.raises(ConfigError, match="cannot load ViT-MAE weights"):
        build_mae(weights=hf)
    val_only = tmp_path / "val_only.csv"
    with (
        open(phantom_dataset / "manifest.csv", newline="") as src,
        open(val_only, "w", newline="") as dst,
    ):
        reader = csv.DictReader(src)
        writer = csv.DictWriter(dst, fieldnames=reader.fieldnames)
        writer.writeheader()
        writer.writerows(
            {**row, "path": str(phantom_dataset / row["path"])}
            for row in reader
            if row["split"] == "val"
        )
    with pytest.raises(DataError, match="no training images"):
        pretrain_mae(_cfg(val_only, tmp_path / "run"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        show_mae(MAEShowConfig(mae_run, tmp_path / "empty", output=tmp_path / "show"))


def test_mae_show_errors(mae_run, phantom_dataset, tmp_path):
    manifest = phantom_dataset / "manifest.csv"
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    for suffix in (".safetensors", ".json"):
        (lonely / f"best{suffix}").write_bytes((mae_run / f"best{suffix}").read_bytes())
    with pytest.raises(ConfigError, match="no initial.safetensors"):
        show_mae(MAEShowConfig(lonely, manifest, output=tmp_path / "a"))
    with pytest.raises(ConfigError, match="checkpoint file not found"):
        show_mae(MAEShowConfig(tmp_path / "nowhere.safetensors", manifest, output=tmp_path / "b"))
    (lonely / "initial.safetensors").write_bytes(b"junk")
    (lonely / "initial.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        show_mae(MAEShowConfig(lonely, manifest, output=tmp_path / "c"))
    (lonely / "initial.json").write_text(
        json.dumps({"format": "fracdet-mae/1", "hf_config": [], "mean": [], "std": []})
    )
    with pytest.raises(ConfigError, match="incomplete"):
        show_mae(MAEShowConfig(lonely, manifest, output=tmp_path / "c"))
    with pytest.raises(DataError, match="no images in split 'holdout'"):
        show_mae(
            MAEShowConfig(mae_run, manifest, output=tmp_path / "d", split="holdout", workers=0)
        )
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DataError, match="none of the 1 images could be read"):
        show_mae(MAEShowConfig(mae_run, tmp_path / "bad", output=tmp_path / "e", workers=0))
    with pytest.raises(ConfigError, match="count must be"):
        MAEShowConfig(mae_run, manifest, count=0)
    assert not any((tmp_path / n).exists() for n in "abcde")


# ----------------------------------------------------------------------------- the three stages
# from the CLI


def test_three_stages_from_the_cli(phantom_dataset, tmp_path):
    from fracdet.cli import app

    runner = CliRunner()
    (tmp_path / "tiny.yaml").write_text(
        json.dumps({"model_args": TINY_MODEL, "patch_size": 8, "warmup_epochs": 0, "lr": 0.001})
    )
    common = ["--workers", "0", "--precision", "fp32"]
    result = runner.invoke(
        app,
        [
            "-q",
            "pretrain-mae",
            str(phantom_dataset),
            "--out",
            str(tmp_path / "mae"),
            "-c",
            str(tmp_path / "tiny.yaml"),
            "--image-size",
            "32",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            *common,
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        result.stdout.startswith("best epoch 1: val masked-patch MSE ")
        and str(tmp_path / "mae" / "encoder.safetensors") in result.stdout
    )
    result = runner.invoke(
        app,
        [
            "-q",
            "mae-show",
            str(tmp_path / "mae"),
            str(phantom_dataset),
            "--out",
            str(tmp_path / "show"),
            "--count",
            "2",
            *common,
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        result.stdout.startswith("masked-patch MSE on ")
        and (tmp_path / "show" / "mae_show.png").is_file()
    )
    result = runner.invoke(
        app,
        [
            "-q",
            "train-cls",
            str(phantom_dataset / "manifest.csv"),
            "--out",
            str(tmp_path / "cls"),
            "--backbone",
            "vit_base_patch16_224.mae",
            "--weights",
            str(tmp_path / "mae" / "encoder.safetensors"),
            "--freeze-backbone",
            "--image-size",
            "32",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            *common,
        ],
    )
    assert result.exit_code == 0, result.output
    model, meta = load_classifier(tmp_path / "cls")
    assert meta.backbone_args[
        "embed_dim"
    ] == 32 and model.backbone.patch_embed.proj.weight.shape == (32, 3, 8, 8)
    encoder = load_file(str(tmp_path / "mae" / "encoder.safetensors"))
    assert torch.equal(
        load_file(str(tmp_path / "cls" / "best.safetensors"))["blocks.1.mlp.fc2.weight"],
        encoder["blocks.1.mlp.fc2.weight"],
    )  # a probe keeps it
    result = runner.invoke(
        app,
        [
            "pretrain-mae",
            str(phantom_dataset),
            "--out",
            str(tmp_path / "mae2"),
            "--pretrained",
            "--weights",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 1 and result.stderr.startswith(
        "error: pretrained and weights exclude each other"
    )
