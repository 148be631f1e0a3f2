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
    cfg = build_config(ConvertConfig, tmp_path / "c.yaml", source="a", output="b", seed=9, fractions="0.6,0.2,0.2")
    assert cfg.link is LinkMode.copy and cfg.seed == 9 and cfg.targets == ("coco",)
    assert cfg.source == Path("a") and cfg.fractions == (0.6, 0.2, 0.2)


def test_repository_configs_load(tmp_path):
    from data_tools.phantoms import PhantomConfig
    from fracdet.demo import DemoConfig

    root = Path(__file__).resolve().parents[1] / "configs"
    assert build_config(ConvertConfig, root / "convert.yaml", source="a", output="b").split == "auto"
    assert build_config(PhantomConfig, root / "phantoms.yaml", output="x").prevalence == 0.18
    assert build_config(DemoConfig, root / "demo.yaml").count > 0
    from fracdet.cls.train import ClsTrainConfig
    from fracdet.det.train import DetTrainConfig

    assert build_config(ClsTrainConfig, root / "cls.yaml", manifest="m.csv").adv_eps == pytest.approx(4 / 255)
    assert build_config(ClsTrainConfig, root / "cls_linear_probe.yaml", manifest="m.csv").mode == "linear"
    assert build_config(DetTrainConfig, root / "det.yaml", data="d").fliplr == 0.0


@pytest.mark.parametrize(
    ("text", "message"),
    [("[1, 2]", "must be a mapping"), ("seed: [", "not valid YAML"), ("sed: 1", "did you mean seed"), ("link: teleport", "not a valid LinkMode")],
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
    assert config_file(str(named), default) == named  # missing, yet returned: build_config refuses it
    with pytest.raises(ConfigError, match="typo.yaml: config file not found"):
        build_config(ConvertConfig, config_file(named, default), source="a", output="b")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("seed: 1\n  link: copy\n", "not valid YAML (line 2, column 7: mapping values are not allowed here)"),
        ("targets: [yolo\n", "not valid YAML (line 2, column 1: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence))"),
        ("seed: !!python/object:os.system x\n", "not valid YAML (line 1, column 7: could not determine a constructor"),
        ("1: 2\n", "config file keys must be names, got 1"),
    ],
)
def test_yaml_errors_are_one_line_with_the_position(tmp_path, text, message):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        build_config(ConvertConfig, tmp_path / "c.yaml", source="a", output="b")
    assert "\n" not in str(info.value) and str(info.value).startswith(f"{tmp_path / 'c.yaml'}: {message}")


def test_binary_or_folder_config_is_one_line(tmp_path):
    (tmp_path / "c.yaml").write_bytes(b"seed: 1\n\xff\xfe\x00")
    with pytest.raises(ConfigError, match=r"c.yaml: not valid YAML \(not UTF-8 text, byte 8\)"):
        build_config(ConvertConfig, tmp_path / "c.yaml", source="a", output="b")
    (tmp_path / "d.yaml").mkdir()
    with pytest.raises(ConfigError, match="d.yaml: config file is a folder"):
        build_config(ConvertConfig, tmp_path / "d.yaml", source="a", output="b")
