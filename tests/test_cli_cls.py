"""train-cls and eval-cls at the CLI edge: the command prints what the library returns, and a
bad --out is one line, not a traceback. The library calls are patched (their own tests train)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import fracdet.cls.evaluate
import fracdet.cls.train
from fracdet.cli import app
from fracdet.cls.evaluate import EvalClsSummary
from fracdet.cls.train import TrainResult

runner = CliRunner()


def _one_line_error(result) -> str:
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_train_cls_prints_the_result_line_with_the_options_passed(monkeypatch, tmp_path):
    seen = {}
    result = TrainResult(
        tmp_path,
        tmp_path / "best.safetensors",
        tmp_path / "last.safetensors",
        3,
        0.91234,
        0.4,
        1.5,
        [],
    )

    def fake_train(cfg):
        seen["cfg"] = cfg
        return result

    monkeypatch.setattr(fracdet.cls.train, "train_classifier", fake_train)
    out = runner.invoke(
        app,
        [
            "-q",
            "train-cls",
            str(tmp_path / "manifest.csv"),
            "--out",
            str(tmp_path / "run"),
            "--epochs",
            "2",
            "--freeze-backbone",
        ],
    )
    assert out.exit_code == 0, out.output
    assert out.output.strip() == result.line()
    assert (
        result.line() == "best epoch 3: val score 0.9123; threshold 0.400, temperature 1.500 -> "
        f"{tmp_path / 'best.safetensors'}"
    )
    cfg = seen["cfg"]
    assert cfg.output == tmp_path / "run" and cfg.epochs == 2 and cfg.mode == "linear"


def test_train_cls_prints_nothing_where_the_library_returns_none(monkeypatch, tmp_path):
    # torchrun's non-zero ranks: train_classifier returns None, the command stays silent.
    monkeypatch.setattr(fracdet.cls.train, "train_classifier", lambda cfg: None)
    out = runner.invoke(app, ["-q", "train-cls", str(tmp_path / "manifest.csv")])
    assert out.exit_code == 0 and out.output == ""


def test_train_cls_out_naming_a_file_is_one_line(phantom_dataset, tmp_path):
    taken = tmp_path / "taken.txt"
    taken.write_text("x")
    line = _one_line_error(
        runner.invoke(
            app,
            [
                "train-cls",
                str(phantom_dataset / "manifest.csv"),
                "--out",
                str(taken),
                "--epochs",
                "1",
            ],
        )
    )
    assert str(taken) in line and "is a file, not a run folder" in line
    assert taken.read_text() == "x"


@pytest.mark.parametrize(
    "metrics, expected",
    [
        (
            {"n": 40, "auroc": 0.8766, "sensitivity": 0.75, "specificity": 0.5, "threshold": 0.42},
            "40 images: AUROC 0.877, sensitivity 0.750, specificity 0.500 at threshold 0.420; "
            "report: {report}",
        ),
        (
            {"n": 5, "auroc": None, "sensitivity": None, "specificity": 0.8, "threshold": 0.5},
            "5 images: AUROC undefined (one class), sensitivity undefined, specificity 0.800 "
            "at threshold 0.500; report: {report}",
        ),
        (
            {"n": 9, "accuracy": 0.6667, "auroc_macro": 0.71234},
            "accuracy 0.667, macro AUROC 0.712; report: {report}",
        ),
        (
            {"n": 9, "accuracy": 0.5, "auroc_macro": None},
            "accuracy 0.500, macro AUROC undefined; report: {report}",
        ),
    ],
)
def test_eval_cls_prints_the_summary_line(monkeypatch, tmp_path, metrics, expected):
    seen = {}

    def fake_eval(cfg):
        seen["cfg"] = cfg
        return EvalClsSummary(Path(cfg.output), Path(cfg.output) / "report.html", metrics)

    monkeypatch.setattr(fracdet.cls.evaluate, "evaluate_classifier", fake_eval)
    out = runner.invoke(
        app,
        [
            "-q",
            "eval-cls",
            str(tmp_path / "run"),
            str(tmp_path / "m.csv"),
            "--out",
            str(tmp_path / "ev"),
            "--n-boot",
            "7",
        ],
    )
    assert out.exit_code == 0, out.output
    assert out.output.strip() == expected.format(report=tmp_path / "ev" / "report.html")
    assert seen["cfg"].n_boot == 7 and seen["cfg"].checkpoint == tmp_path / "run"
