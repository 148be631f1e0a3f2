"""The CLI: help everywhere, one clear line and a non-zero exit for bad input, real runs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fracdet import __version__
from fracdet.cli import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


@pytest.mark.parametrize("command", ["phantoms", "convert", "demo"])
def test_every_command_has_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_phantoms_then_convert(tmp_path):
    result = runner.invoke(app, ["-q", "phantoms", str(tmp_path / "ph"), "--count", "16", "--size", "64", "--workers", "1", "--format", "png"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["-q", "convert", str(tmp_path / "ph"), str(tmp_path / "out"), "--to", "yolo,manifest", "--seed", "2", "--copy"])
    assert result.exit_code == 0, result.output
    assert "16 images" in result.output
    report = json.loads((tmp_path / "out" / "convert_report.json").read_text())
    assert report["config"]["link"] == "copy" and report["config"]["targets"] == ["yolo", "manifest"]
    assert not (tmp_path / "out" / "annotations").exists()


def test_convert_with_a_config_file(small_fracatlas, tmp_path):
    (tmp_path / "c.yaml").write_text("targets: [manifest]\nfractions: [0.5, 0.25, 0.25]\n")
    result = runner.invoke(app, ["-q", "convert", str(small_fracatlas), str(tmp_path / "out"), "--config", str(tmp_path / "c.yaml")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "convert_report.json").read_text())["split"]["fractions"]["train"] == 0.5


def one_line_error(result) -> str:
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return lines[0]


def test_bad_inputs_give_one_line(small_fracatlas, tmp_path):
    (tmp_path / "exists").mkdir()
    cases = {
        "already exists": ["convert", str(small_fracatlas), str(tmp_path / "exists")],
        "source not found": ["convert", str(tmp_path / "missing"), str(tmp_path / "o1")],
        "unknown target": ["convert", str(small_fracatlas), str(tmp_path / "o2"), "--to", "voc"],
        "not a valid float": ["convert", str(small_fracatlas), str(tmp_path / "o3"), "--fractions", "a,b,c"],
        "prevalence": ["phantoms", str(tmp_path / "o4"), "--prevalence", "2"],
    }
    for expected, args in cases.items():
        assert expected in one_line_error(runner.invoke(app, args)), expected


def test_unknown_config_key_names_the_close_match(small_fracatlas, tmp_path):
    (tmp_path / "c.yaml").write_text("fractons: [0.5, 0.25, 0.25]\n")
    line = one_line_error(runner.invoke(app, ["convert", str(small_fracatlas), str(tmp_path / "o"), "-c", str(tmp_path / "c.yaml")]))
    assert "c.yaml" in line and "did you mean fractions" in line


def test_demo(tmp_path, monkeypatch):
    (tmp_path / "demo.yaml").write_text(
        "count: 24\nsize: 96\nprevalence: 0.5\ncls_image_size: 32\ncls_epochs: 1\ndet_imgsz: 64\ndet_epochs: 1\nworkers: 0\n"
    )
    out = tmp_path / "demo"
    result = runner.invoke(app, ["-q", "demo", "--out", str(out), "--config", str(tmp_path / "demo.yaml")])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 24 and (out / "dataset" / "data.yaml").is_file()
    assert {"classifier", "detector", "predict"} <= set(summary)
    assert (out / "index.html").is_file() and (out / "eval-cls" / "report.html").is_file()
    assert (out / "predict" / "predictions.csv").is_file()
    assert "already exists" in one_line_error(runner.invoke(app, ["demo", "--out", str(out), "--config", str(tmp_path / "demo.yaml")]))
