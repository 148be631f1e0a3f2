"""Typed configs: YAML then CLI overrides, coercion, and the errors users meet."""

from __future__ import annotations

from pathlib import Path

import pytest

from fracdet.config import build_config, config_file
from fracdet.data.convert import ConvertConfig
from fracdet.errors import ConfigError
from fracdet.fsutil import LinkMode


def test_defaults_yaml_and_overrides(tmp_path):
    (tmp_path / "c.yaml").write_text("link: copy\nseed: 3\ntargets: [coco]\n")
    cfg = build_config(
        ConvertConfig, tmp_path / "c.yaml", source="a", output="b", seed=9, fractions="0.6,0.2,0.2"
    )
    assert cfg.link is LinkMode.copy and cfg.seed == 9 and cfg.targets == ("coco",)
    assert cfg.source == Path("a") and cfg.fractions == (0.6, 0.2, 0.2)


def test_repository_configs_load(tmp_path):
    from data_tools.phantoms import PhantomConfig
    from fracdet.demo import DemoConfig

    root = Path(__file__).resolve().parents[1] / "configs"
    assert (
        build_config(ConvertConfig, root / "convert.yaml", source="a", output="b").split == "auto"
    )
    assert build_config(PhantomConfig, root / "phantoms.yaml", output="x").prevalence == 0.18
    assert build_config(DemoConfig, root / "demo.yaml").count > 0
    from fracdet.cls.train import ClsTrainConfig
    from fracdet.det.train import DetTrainConfig

    assert build_config(
        ClsTrainConfig, root / "cls.yaml", manifest="m.csv"
    ).adv_eps == pytest.approx(4 / 255)
    assert (
        build_config(ClsTrainConfig, root / "cls_linear_probe.yaml", manifest="m.csv").mode
        == "linear"
    )
    assert build_config(DetTrainConfig, root / "det.yaml", data="d").fliplr == 0.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "must be a mapping"),
        ("seed: [", "not valid YAML"),
        ("sed: 1", "did you mean seed"),
        ("link: teleport", "not a valid LinkMode"),
    ],
)
def test_bad_config_files(tmp_path, text, message):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        build_config(ConvertConfig, tmp_path / "c.yaml", source="a", output="b")


def test_missing_file_and_required_option(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        build_config(ConvertConfig, tmp_path / "none.yaml", source="a", output="b")
    with pytest.raises(ConfigError, match="missing required option"):
        build_config(ConvertConfig, None, source="a")


def test_config_file_prefers_the_named_one_and_keeps_a_missing_one(tmp_path):
    default = tmp_path / "default.yaml"
    assert config_file(None, default) is None  # an absent default is optional
    default.write_text("seed: 1\n")
    assert config_file(None, default) == default
    assert config_file(None) is None
    named = tmp_path / "typo.yaml"
    assert (
        config_file(str(named), default) == named
    )  # missing, yet returned: build_config refuses it
    with pytest.raises(ConfigError, match="typo.yaml: config file not found"):
        build_config(ConvertConfig, config_file(named, default), source="a", output="b")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "seed: 1\n  link: copy\n",
            "not valid YAML (line 2, column 7: mapping values are not allowed here)",
        ),
        (
            "targets: [yolo\n",
            "not valid YAML (line 2, column 1: expected ',' or ']', but got '<stream end>' "
            "(while parsing a flow sequence))",
        ),
        (
            "seed: !!python/object:os.system x\n",
            "not valid YAML (line 1, column 7: could not determine a constructor",
        ),
        ("1: 2\n", "config file keys must be names, got 1"),
    ],
)
def test_yaml_errors_are_one_line_with_the_position(tmp_path, text, message):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        build_config(ConvertConfig, tmp_path / "c.yaml", source="a", output="b")
    assert "\n" not in str(info.value) and str(info.value).startswith(
        f"{tmp_path / 'c.yaml'}: {message}"
    )


def test_binary_or_folder_config_is_one_line(tmp_path):
    (tmp_path / "c.yaml").write_bytes(b"seed: 1\n\xff\xfe\x00")
    with pytest.raises(ConfigError, match=r"c.yaml: not valid YAML \(not UTF-8 text, byte 8\)"):
        build_config(ConvertConfig, tmp_path / "c.yaml", source="a", output="b")
    (tmp_path / "d.yaml").mkdir()
    with pytest.raises(ConfigError, match="d.yaml: config file is a folder"):
        build_config(ConvertConfig, tmp_path / "d.yaml", source="a", output="b")


def test_the_r2i_preset_gives_each_command_its_section():
    from fracdet.audit import AuditConfig
    from fracdet.cls.train import ClsTrainConfig

    preset = Path(__file__).resolve().parents[1] / "configs" / "r2i.yaml"
    convert = build_config(ConvertConfig, preset, source="a", output="b")
    assert (convert.split, convert.fractions, convert.negative_ratio) == (
        "study",
        (0.8, 0.1, 0.1),
        1.0,
    )
    train = build_config(ClsTrainConfig, preset, manifest="m.csv")
    assert (train.model_name, train.mode, train.optimizer, train.lr, train.batch_size) == (
        "robustbench:cifar10/Linf/Standard",
        "linear",
        "adam",
        1e-3,
        8,
    )
    assert (
        train.epochs,
        train.patience,
        train.image_size,
        train.resize,
        train.threshold_method,
    ) == (25, 5, 224, "stretch", "none")
    audit = build_config(AuditConfig, preset, dataset="d", eps_space="pixel")  # the CLI still wins
    assert (audit.eps, audit.steps, audit.step_size, audit.random_start, audit.eps_space) == (
        "4/255",
        10,
        "1/255",
        True,
        "pixel",
    )
    assert (audit.methods, audit.target, audit.channels, audit.ig_steps) == (
        ("saliency", "deeplift", "integrated_gradients"),
        "predicted",
        "abs_max",
        10,
    )
    assert audit.percentiles == (5.0, 25.0, 50.0) and audit.study_tables is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("preset: p\naudit: {}\n", r"preset 'p' has no 'convert' section \(sections: audit\)"),
        ("preset: p\nconvert: [1]\n", "section 'convert' must be a mapping"),
        ("preset: p\nconvert:\n  sed: 1\n", "did you mean seed"),
    ],
)
def test_preset_errors_name_the_section(tmp_path, text, message):
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        build_config(ConvertConfig, tmp_path / "p.yaml", source="a", output="b")


def test_an_empty_preset_section_keeps_the_defaults(tmp_path):
    (tmp_path / "p.yaml").write_text("preset: p\nconvert:\n")
    assert build_config(ConvertConfig, tmp_path / "p.yaml", source="a", output="b").split == "auto"


def test_a_preset_without_sections_for_a_command_is_refused(tmp_path):
    from dataclasses import dataclass

    @dataclass
    class Plain:
        seed: int = 0

    (tmp_path / "p.yaml").write_text("preset: p\nconvert: {}\n")
    with pytest.raises(ConfigError, match="has no section for this command"):
        build_config(Plain, tmp_path / "p.yaml")
