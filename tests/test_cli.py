"""The CLI: help everywhere, options reach the library as typed configs, one clear error line.

Most tests follow fastapi-cli: the library function a command calls is patched, and the test
asserts the config object it receives, so the CLI is checked without running any model. A
few real runs (phantoms, convert, demo) check the wiring end to end.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from data_tools.fracatlas_download import VerifyReport
from data_tools.phantoms import PhantomConfig
from fracdet import __version__
from fracdet.cli import app
from fracdet.data.convert import ConvertConfig, ConvertResult, LinkMode
from fracdet.demo import DemoConfig
from fracdet.errors import DataError

runner = CliRunner()
STUDY_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "fracatlas.yaml"
COMMANDS = [
    c.name or typer.main.get_command_name(c.callback.__name__) for c in app.registered_commands
]

#: The library function each command calls ("module:function"), and the fewest arguments it
#: needs. Every command must be listed: a new one fails test_every_command_is_patched.
LIBRARY_CALLS: dict[str, tuple[str, list[str]]] = {
    "phantoms": ("data_tools.phantoms:generate_phantoms", ["out"]),
    "convert": ("fracdet.data.convert:convert", ["src", "out"]),
    "demo": ("fracdet.demo:run_demo", ["--out", "out"]),
    "run": ("fracdet.study:run_study", [str(STUDY_CONFIG)]),
    "fetch-fracatlas": ("data_tools.fracatlas_download:get_fracatlas", ["out"]),
    "train-cls": ("fracdet.cls.train:train_classifier", ["manifest.csv"]),
    "import-cls": ("fracdet.cls.importer:import_classifier", ["m.pth", "--arch", "torchscript"]),
    "pretrain-mae": ("fracdet.mae.train:pretrain_mae", ["manifest.csv"]),
    "mae-show": ("fracdet.mae.show:show_mae", ["run", "images"]),
    "train-det": ("fracdet.det.train:train_detector", ["data.yaml"]),
    "eval-det": ("fracdet.det.evaluate:evaluate_detector", ["best.pt", "data"]),
    "eval-cls": ("fracdet.cls.evaluate:evaluate_classifier", ["run", "manifest.csv"]),
    "predict": ("fracdet.predict:predict_folder", ["images", "--cls", "run"]),
    "merge": ("fracdet.predict:merge_outputs", ["out", "shard1", "shard2"]),
    "audit": ("fracdet.audit:run_audit", ["data", "--cls", "run"]),
    "export": ("fracdet.export:export_model", ["run"]),
}


class Calls:
    """Stands in for a library function: records each call, returns a canned result."""

    def __init__(self, result: Any = None, error: Exception | None = None) -> None:
        self.result, self.error = result, error
        self.args: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.args.append((args, kwargs))
        if self.error is not None:
            raise self.error
        return self.result

    @property
    def config(self) -> Any:
        ((args, _kwargs),) = self.args
        return args[0]


@pytest.fixture
def library(monkeypatch):
    """``library("convert", result)`` patches the function behind the ``convert`` command."""

    def patch(command: str, result: Any = None, *, error: Exception | None = None) -> Calls:
        module, name = LIBRARY_CALLS[command][0].split(":")
        fake = Calls(result, error)
        monkeypatch.setattr(importlib.import_module(module), name, fake)
        return fake

    return patch


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result) -> str:
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return lines[0]


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_every_command_is_patched():
    assert sorted(LIBRARY_CALLS) == sorted(COMMANDS), (
        "add the new command to LIBRARY_CALLS and give it a test"
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_library_error_becomes_one_line_and_exit_1(command, library, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the demo's default config file is looked up here
    fake = library(command, error=DataError("broken on purpose", "some/file.csv"))
    result = invoke(command, *LIBRARY_CALLS[command][1])
    assert len(fake.args) == 1, result.output
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == "error: some/file.csv: broken on purpose\n"


def test_phantoms_options_reach_the_config(library, tmp_path):
    fake = library("phantoms", tmp_path / "ph")
    result = invoke(
        "phantoms",
        tmp_path / "ph",
        "--count",
        "7",
        "--size",
        "96",
        "--seed",
        "3",
        "--prevalence",
        "0.5",
        "--max-fractures",
        "3",
        "--format",
        "png16",
        "--shortcut-rate",
        "0.9",
        "--crack-scale",
        "2.5",
        "--workers",
        "1",
        "--overwrite",
    )
    assert result.exit_code == 0, result.output
    cfg = fake.config
    assert isinstance(cfg, PhantomConfig) and cfg.output == tmp_path / "ph"
    assert (cfg.count, cfg.size, cfg.seed, cfg.max_fractures, cfg.workers) == (7, 96, 3, 3, 1)
    assert (cfg.prevalence, cfg.shortcut_rate, cfg.crack_scale) == (0.5, 0.9, 2.5)
    assert cfg.image_format == "png16" and cfg.overwrite is True
    assert f"phantoms written to {tmp_path / 'ph'}" in result.stdout


def test_convert_options_reach_the_config(library, tmp_path):
    fake = library(
        "convert", ConvertResult(tmp_path / "out", 3, 1, {"train": {"fractured": 2, "intact": 1}})
    )
    result = invoke(
        "convert",
        tmp_path / "src",
        tmp_path / "out",
        "--from",
        "yolo",
        "--to",
        "yolo,manifest",
        "--symlink",
        "--split",
        "random",
        "--fractions",
        "0.6,0.2,0.2",
        "--seed",
        "4",
        "--group-regex",
        "^(P\\d+)_",
        "--images-root",
        tmp_path / "img",
        "--full-check",
    )
    assert result.exit_code == 0, result.output
    cfg = fake.config
    assert isinstance(cfg, ConvertConfig) and (cfg.source, cfg.output) == (
        tmp_path / "src",
        tmp_path / "out",
    )
    assert (
        cfg.source_format == "yolo"
        and cfg.targets == ("yolo", "manifest")
        and cfg.link is LinkMode.symlink
    )
    assert cfg.split == "random" and cfg.fractions == (0.6, 0.2, 0.2) and cfg.seed == 4
    assert cfg.group_regex == "^(P\\d+)_" and cfg.images_root == tmp_path / "img"
    assert cfg.full_check is True and cfg.overwrite is False and cfg.official_only is False
    assert (
        result.stdout == f"3 images -> {tmp_path / 'out'} (train: 2 fractured, 1 intact); "
        "1 skipped, see convert_report.json\n"
    )


def test_convert_official_only(library, tmp_path):
    fake = library("convert", ConvertResult(tmp_path / "out", 0, 0, {}))
    assert invoke("convert", tmp_path / "src", tmp_path / "out", "--official-only").exit_code == 0
    assert fake.config.official_only is True
    line = one_line_error(
        invoke(
            "convert", tmp_path / "src", tmp_path / "out", "--official-only", "--split", "random"
        )
    )
    assert "official_only" in line and "not random" in line


@pytest.mark.parametrize(
    ("flags", "link"),
    [([], LinkMode.hardlink), (["--copy"], LinkMode.copy), (["--symlink"], LinkMode.symlink)],
)
def test_convert_link_flags(library, tmp_path, flags, link):
    fake = library("convert", ConvertResult(tmp_path / "out", 0, 0, {}))
    assert invoke("convert", tmp_path / "src", tmp_path / "out", *flags).exit_code == 0
    assert fake.config.link is link


def test_convert_refuses_copy_with_symlink(library, tmp_path):
    fake = library("convert")
    line = one_line_error(
        invoke("convert", tmp_path / "src", tmp_path / "out", "--copy", "--symlink")
    )
    assert "--copy and --symlink" in line and fake.args == []


def test_demo_options_reach_the_config(library, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/demo.yaml here: the dataclass defaults
    fake = library("demo", SimpleNamespace(line=lambda: "demo done"))
    result = invoke(
        "demo",
        "--out",
        tmp_path / "d",
        "--overwrite",
        "--quick",
        "--fresh",
        "--device",
        "cpu",
        "--seed",
        "4",
    )
    assert result.exit_code == 0, result.output
    assert fake.config == DemoConfig(
        output=tmp_path / "d", overwrite=True, profile="quick", fresh=True, device="cpu", seed=4
    )
    assert result.stdout == "demo done\n"


def test_demo_reads_its_default_config_when_present(library, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "demo.yaml").write_text("count: 120\ncls_epochs: 3\n")
    fake = library("demo", SimpleNamespace(line=lambda: ""))
    assert invoke("demo").exit_code == 0
    assert (fake.config.count, fake.config.cls_epochs, fake.config.output) == (
        120,
        3,
        Path("reports/demo"),
    )
    (tmp_path / "mine.yaml").write_text("count: 50\n")
    assert invoke("demo", "-c", "mine.yaml").exit_code == 0
    assert fake.args[-1][0][0].count == 50  # a named file replaces the default one


def test_demo_refuses_a_missing_config_file(library, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake = library("demo", SimpleNamespace(line=lambda: ""))
    line = one_line_error(invoke("demo", "--config", "missing.yaml"))
    assert "missing.yaml" in line and "not found" in line and fake.args == []


def test_fetch_fracatlas_calls_the_library_once(library, tmp_path):
    report = VerifyReport(
        tmp_path / "out" / "FracAtlas",
        {"fractured_images": 1, "non_fractured_images": 2},
        ["a count differs"],
    )
    fake = library("fetch-fracatlas", report)
    result = invoke(
        "fetch-fracatlas", tmp_path / "out", "--from-zip", tmp_path / "f.zip", "--overwrite"
    )
    assert result.exit_code == 0, result.output
    assert fake.args == [((tmp_path / "out",), {"from_zip": tmp_path / "f.zip", "overwrite": True})]
    assert result.stderr == "warning: a count differs\n" and result.stdout == report.line() + "\n"
    invoke("fetch-fracatlas", tmp_path / "out2")
    assert fake.args[-1] == ((tmp_path / "out2",), {"from_zip": None, "overwrite": False})


def test_train_cls_options_reach_the_config(library, tmp_path, monkeypatch):
    from fracdet.cls.train import ClsTrainConfig

    monkeypatch.delenv("RANK", raising=False)
    fake = library("train-cls", SimpleNamespace(line=lambda: "trained"))
    result = invoke(
        "train-cls",
        tmp_path / "m.csv",
        "--out",
        tmp_path / "run",
        "--backbone",
        "resnet10t",
        "--freeze-backbone",
        "--image-size",
        "64",
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--lr",
        "0.01",
        "--adv",
        "pgd",
        "--adv-eps",
        "0.01",
        "--adv-steps",
        "2",
        "--threshold-method",
        "sensitivity",
        "--threshold-target",
        "0.9",
        "--precision",
        "fp32",
        "--device",
        "cpu",
        "--workers",
        "0",
        "--seed",
        "5",
        "--weights",
        tmp_path / "w.safetensors",
        "--resume",
    )
    assert result.exit_code == 0, result.output
    cfg = fake.config
    assert isinstance(cfg, ClsTrainConfig) and (cfg.manifest, cfg.output) == (
        tmp_path / "m.csv",
        tmp_path / "run",
    )
    assert (cfg.backbone, cfg.mode, cfg.adv, cfg.threshold_method, cfg.precision, cfg.device) == (
        "resnet10t",
        "linear",
        "pgd",
        "sensitivity",
        "fp32",
        "cpu",
    )
    assert (cfg.image_size, cfg.epochs, cfg.batch_size, cfg.adv_steps, cfg.workers, cfg.seed) == (
        64,
        3,
        8,
        2,
        0,
        5,
    )
    assert isinstance(cfg.lr, float) and (cfg.lr, cfg.adv_eps, cfg.threshold_target) == (
        0.01,
        0.01,
        0.9,
    )
    assert (
        cfg.weights == tmp_path / "w.safetensors" and cfg.resume is True and cfg.pretrained is False
    )


def test_train_cls_robustbench_options_and_the_r2i_preset_reach_the_config(
    library, tmp_path, monkeypatch
):
    from fracdet.cls.train import ClsTrainConfig

    monkeypatch.delenv("RANK", raising=False)
    preset = Path(__file__).resolve().parents[1] / "configs" / "r2i.yaml"
    fake = library("train-cls", SimpleNamespace(line=lambda: "trained"))
    result = invoke(
        "train-cls",
        tmp_path / "m.csv",
        "--config",
        preset,
        "--backbone",
        "robustbench:Rebuffi2021Fixing_R18_ddpm",
        "--rb-dataset",
        "cifar100",
        "--rb-threat",
        "L2",
        "--resize",
        "letterbox",
        "--threshold-method",
        "f1",
    )
    assert result.exit_code == 0, result.output
    cfg = fake.config
    assert (
        isinstance(cfg, ClsTrainConfig)
        and cfg.model_name == "robustbench:cifar100/L2/Rebuffi2021Fixing_R18_ddpm"
    )
    assert (cfg.resize, cfg.threshold_method) == ("letterbox", "f1")  # the CLI wins over the preset
    assert (
        cfg.mode,
        cfg.optimizer,
        cfg.lr,
        cfg.batch_size,
        cfg.epochs,
        cfg.patience,
        cfg.image_size,
    ) == ("linear", "adam", 1e-3, 8, 25, 5, 224)


def test_train_cls_robustbench_options_need_a_robustbench_backbone(library):
    fake = library("train-cls", SimpleNamespace(line=lambda: "trained"))
    error = one_line_error(
        invoke("train-cls", "m.csv", "--backbone", "resnet18", "--rb-dataset", "cifar10")
    )
    assert "rb_dataset / rb_threat choose a RobustBench zoo" in error and not fake.args
    error = one_line_error(invoke("train-cls", "m.csv", "--resize", "crop"))
    assert "resize must be one of letterbox, stretch" in error


def test_audit_reads_the_r2i_preset(library, tmp_path):
    from fracdet.audit import AuditConfig

    preset = Path(__file__).resolve().parents[1] / "configs" / "r2i.yaml"
    fake = library("audit", SimpleNamespace(line=lambda: "audited"))
    result = invoke(
        "audit",
        tmp_path / "data",
        "--cls",
        tmp_path / "a",
        "--config",
        preset,
        "--eps-space",
        "pixel",
    )
    assert result.exit_code == 0, result.output
    cfg = fake.config
    assert (
        isinstance(cfg, AuditConfig)
        and cfg.study_tables
        and (cfg.eps_space, cfg.target, cfg.ig_steps) == ("pixel", "predicted", 10)
    )
    error = one_line_error(invoke("eval-cls", "run", "m.csv", "--config", preset))
    assert "preset 'r2i' has no section for this command" in error


def test_export_options_reach_the_config(library, tmp_path):
    from fracdet.export import ExportConfig

    fake = library("export", SimpleNamespace(line=lambda: "exported"))
    result = invoke(
        "export",
        tmp_path / "best.pt",
        "--out",
        tmp_path / "onnx",
        "--opset",
        "18",
        "--images",
        tmp_path / "imgs",
        "--n-random",
        "3",
        "--max-images",
        "5",
        "--imgsz",
        "320",
        "--det-conf",
        "0.1",
        "--det-iou",
        "0.5",
        "--cls-tolerance",
        "1e-5",
        "--seed",
        "7",
        "--trust-pickle",
        "--overwrite",
    )
    assert result.exit_code == 0, result.output
    cfg = fake.config
    assert isinstance(cfg, ExportConfig) and cfg.source == tmp_path / "best.pt"
    assert (cfg.output, cfg.images) == (tmp_path / "onnx", tmp_path / "imgs")
    assert (cfg.opset, cfg.n_random, cfg.max_images, cfg.imgsz, cfg.seed) == (18, 3, 5, 320, 7)
    assert (cfg.det_conf, cfg.det_iou, cfg.cls_tolerance) == (0.1, 0.5, 1e-5)
    assert cfg.trust_pickle and cfg.overwrite and result.stdout == "exported\n"
    default = ExportConfig(tmp_path / "runs" / "cls")
    assert (default.output_folder, default.opset) == (tmp_path / "runs" / "cls-onnx", 17)
    error = one_line_error(invoke("export", "run", "--opset", "3"))
    assert "opset must be in 11..20, got 3" in error


def test_pretrain_mae_options_reach_the_config(library, tmp_path, monkeypatch):
    from fracdet.mae.train import MAETrainConfig

    monkeypatch.delenv("RANK", raising=False)
    fake = library("pretrain-mae", SimpleNamespace(line=lambda: "pretrained"))
    (tmp_path / "c.yaml").write_text(
        "model_args: {hidden_size: 64, num_hidden_layers: 2}\nepochs: 9\n"
    )
    result = invoke(
        "pretrain-mae",
        tmp_path / "imgs",
        "--out",
        tmp_path / "mae",
        "--arch",
        "large",
        "--weights",
        tmp_path / "hf",
        "--image-size",
        "64",
        "--patch-size",
        "8",
        "--mask-ratio",
        "0.6",
        "--epochs",
        "3",
        "--batch-size",
        "4",
        "--lr",
        "0.001",
        "--weight-decay",
        "0.01",
        "--warmup-epochs",
        "0.5",
        "--val-fraction",
        "0.2",
        "--precision",
        "bf16",
        "--device",
        "cpu",
        "--workers",
        "0",
        "--seed",
        "7",
        "--resume",
        "-c",
        tmp_path / "c.yaml",
    )
    assert result.exit_code == 0, result.output
    cfg = fake.config
    assert isinstance(cfg, MAETrainConfig) and (cfg.data, cfg.output, cfg.weights) == (
        tmp_path / "imgs",
        tmp_path / "mae",
        tmp_path / "hf",
    )
    assert (
        cfg.arch,
        cfg.image_size,
        cfg.patch_size,
        cfg.mask_ratio,
        cfg.epochs,
        cfg.batch_size,
    ) == ("large", 64, 8, 0.6, 3, 4)
    assert (cfg.lr, cfg.weight_decay, cfg.warmup_epochs, cfg.val_fraction) == (
        0.001,
        0.01,
        0.5,
        0.2,
    )
    assert (cfg.precision, cfg.device, cfg.workers, cfg.seed, cfg.resume, cfg.pretrained) == (
        "bf16",
        "cpu",
        0,
        7,
        True,
        False,
    )
    assert (
        cfg.model_args == {"hidden_size": 64, "num_hidden_layers": 2}
        and result.stdout == "pretrained\n"
    )
    invoke("pretrain-mae", tmp_path / "imgs", "--pretrained")
    assert fake.args[-1][0][0].pretrained is True and fake.args[-1][0][0].output == Path("runs/mae")


def test_mae_show_options_reach_the_config(library, tmp_path):
    from fracdet.mae.show import MAEShowConfig

    fake = library("mae-show", SimpleNamespace(line=lambda: "shown"))
    result = invoke(
        "mae-show",
        tmp_path / "run",
        tmp_path / "m.csv",
        "--out",
        tmp_path / "fig",
        "--split",
        "test",
        "--count",
        "6",
        "--max-images",
        "50",
        "--batch-size",
        "4",
        "--precision",
        "fp32",
        "--device",
        "cpu",
        "--workers",
        "0",
        "--seed",
        "2",
        "--overwrite",
    )
    assert result.exit_code == 0, result.output
    cfg = fake.config
    assert isinstance(cfg, MAEShowConfig) and (cfg.checkpoint, cfg.images, cfg.output) == (
        tmp_path / "run",
        tmp_path / "m.csv",
        tmp_path / "fig",
    )
    assert (
        cfg.split,
        cfg.count,
        cfg.max_images,
        cfg.batch_size,
        cfg.precision,
        cfg.device,
        cfg.workers,
        cfg.seed,
        cfg.overwrite,
    ) == ("test", 6, 50, 4, "fp32", "cpu", 0, 2, True)
    assert result.stdout == "shown\n"


def test_train_det_options_reach_the_config(library, tmp_path):
    from fracdet.det.train import DetTrainConfig

    fake = library("train-det", SimpleNamespace(line=lambda: "trained"))
    result = invoke(
        "train-det",
        tmp_path / "data.yaml",
        "--model",
        "yolov8s.yaml",
        "--out",
        tmp_path / "runs",
        "--name",
        "r1",
        "--epochs",
        "2",
        "--imgsz",
        "128",
        "--batch",
        "4",
        "--lr0",
        "0.005",
        "--fliplr",
        "0.5",
        "--device",
        "cpu",
        "--workers",
        "0",
        "--seed",
        "7",
        "--extra",
        "cos_lr=True",
    )
    assert result.exit_code == 0, result.output
    cfg = fake.config
    assert isinstance(cfg, DetTrainConfig) and (cfg.data, cfg.output, cfg.name) == (
        tmp_path / "data.yaml",
        tmp_path / "runs",
        "r1",
    )
    assert (cfg.model, cfg.epochs, cfg.imgsz, cfg.batch, cfg.workers, cfg.seed) == (
        "yolov8s.yaml",
        2,
        128,
        4,
        0,
        7,
    )
    assert (cfg.lr0, cfg.fliplr, cfg.device) == (0.005, 0.5, "cpu") and cfg.extra == {
        "cos_lr": True
    }


def test_eval_det_options_reach_the_config(library, tmp_path):
    from fracdet.det.evaluate import DetEvalConfig

    fake = library("eval-det", SimpleNamespace(line=lambda: "scored"))
    result = invoke(
        "eval-det",
        tmp_path / "best.pt",
        tmp_path / "data",
        "--split",
        "val",
        "--out",
        tmp_path / "rep",
        "--imgsz",
        "320",
        "--conf",
        "0.01",
        "--iou",
        "0.5",
        "--image-threshold",
        "0.3",
        "--no-ultralytics-val",
        "--n-boot",
        "150",
        "--seed",
        "2",
    )
    assert result.exit_code == 0, result.output
    cfg = fake.config
    assert isinstance(cfg, DetEvalConfig) and (cfg.weights, cfg.data, cfg.output) == (
        tmp_path / "best.pt",
        tmp_path / "data",
        tmp_path / "rep",
    )
    assert (cfg.split, cfg.imgsz, cfg.conf, cfg.iou, cfg.image_threshold, cfg.seed) == (
        "val",
        320,
        0.01,
        0.5,
        0.3,
        2,
    )
    assert cfg.ultralytics_val is False and cfg.n_boot == 150


def test_eval_cls_options_reach_the_config(library, tmp_path):
    from fracdet.cls.evaluate import EvalClsConfig

    fake = library("eval-cls", SimpleNamespace(line=lambda: "scored"))
    result = invoke(
        "eval-cls",
        tmp_path / "run",
        tmp_path / "m.csv",
        "--split",
        "val",
        "--out",
        tmp_path / "rep",
        "--batch-size",
        "4",
        "--n-boot",
        "10",
        "--device",
        "cpu",
        "--workers",
        "0",
        "--seed",
        "1",
    )
    assert result.exit_code == 0, result.output
    cfg = fake.config
    assert isinstance(cfg, EvalClsConfig) and (cfg.checkpoint, cfg.manifest, cfg.output) == (
        tmp_path / "run",
        tmp_path / "m.csv",
        tmp_path / "rep",
    )
    assert (cfg.split, cfg.batch_size, cfg.n_boot, cfg.device, cfg.workers, cfg.seed) == (
        "val",
        4,
        10,
        "cpu",
        0,
        1,
    )


def test_predict_options_reach_the_config(library, tmp_path):
    from fracdet.predict import PredictConfig

    fake = library("predict", SimpleNamespace(line=lambda: "predicted"))
    result = invoke(
        "predict",
        tmp_path / "imgs",
        "--cls",
        tmp_path / "run",
        "--det",
        tmp_path / "best.pt",
        "--out",
        tmp_path / "p",
        "--batch-size",
        "2",
        "--det-imgsz",
        "320",
        "--det-conf",
        "0.4",
        "--no-recursive",
        "--gradcam",
        "--shard",
        "2/3",
        "--device",
        "cpu",
        "--workers",
        "0",
        "--seed",
        "9",
    )
    assert result.exit_code == 0, result.output
    cfg = fake.config
    assert isinstance(cfg, PredictConfig) and (cfg.folder, cfg.cls, cfg.det, cfg.output) == (
        tmp_path / "imgs",
        tmp_path / "run",
        tmp_path / "best.pt",
        tmp_path / "p",
    )
    assert (
        cfg.batch_size,
        cfg.det_imgsz,
        cfg.det_conf,
        cfg.shard,
        cfg.device,
        cfg.workers,
        cfg.seed,
    ) == (2, 320, 0.4, "2/3", "cpu", 0, 9)
    assert cfg.recursive is False and cfg.gradcam is True and cfg.resume is False


def test_run_options_reach_the_study_config(library, tmp_path):
    from fracdet.study import StudyConfig

    fake = library("run", SimpleNamespace(line=lambda: "studied"))
    result = invoke(
        "run",
        STUDY_CONFIG,
        "--profile",
        "gpu",
        "--source",
        tmp_path / "fa",
        "--out",
        tmp_path / "o",
        "--fresh",
        "--device",
        "cpu",
        "--seed",
        "5",
        "--overwrite",
    )
    assert result.exit_code == 0 and result.stdout == "studied\n", result.output
    cfg = fake.config
    assert isinstance(cfg, StudyConfig) and (cfg.profile, cfg.source, cfg.output) == (
        "gpu",
        tmp_path / "fa",
        tmp_path / "o",
    )
    assert (cfg.fresh, cfg.device, cfg.seed, cfg.overwrite) == (True, "cpu", 5, True)
    assert (
        cfg.profiles["gpu"]["det_model"] == "yolov8s.pt"
    )  # the profiles come from the file; run_study applies them


def test_run_refuses_an_unknown_profile_in_one_line(library):
    fake = library("run")
    line = one_line_error(invoke("run", STUDY_CONFIG, "--profile", "tpu"))
    assert "profile 'tpu' is not defined; profiles: cpu, gpu" in line and fake.args == []


def test_merge_passes_folders(library, tmp_path):
    fake = library("merge", SimpleNamespace(line=lambda: "merged"))
    result = invoke("merge", tmp_path / "all", tmp_path / "s1", tmp_path / "s2", "--overwrite")
    assert result.exit_code == 0, result.output
    ((args, kwargs),) = fake.args
    assert [Path(p) for p in args[0]] == [tmp_path / "s1", tmp_path / "s2"] and args[
        1
    ] == tmp_path / "all"
    assert kwargs == {"overwrite": True}


# ----------------------------------------------------------------------------- real runs


def test_phantoms_then_convert(tmp_path):
    result = runner.invoke(
        app,
        [
            "-q",
            "phantoms",
            str(tmp_path / "ph"),
            "--count",
            "16",
            "--size",
            "64",
            "--workers",
            "1",
            "--format",
            "png",
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        [
            "-q",
            "convert",
            str(tmp_path / "ph"),
            str(tmp_path / "out"),
            "--to",
            "yolo,manifest",
            "--seed",
            "2",
            "--copy",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "16 images" in result.output
    report = json.loads((tmp_path / "out" / "convert_report.json").read_text())
    assert report["config"]["link"] == "copy" and report["config"]["targets"] == [
        "yolo",
        "manifest",
    ]
    assert not (tmp_path / "out" / "annotations").exists()


def test_convert_with_a_config_file(small_fracatlas, tmp_path):
    (tmp_path / "c.yaml").write_text("targets: [manifest]\nfractions: [0.5, 0.25, 0.25]\n")
    result = runner.invoke(
        app,
        [
            "-q",
            "convert",
            str(small_fracatlas),
            str(tmp_path / "out"),
            "--config",
            str(tmp_path / "c.yaml"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        json.loads((tmp_path / "out" / "convert_report.json").read_text())["split"]["fractions"][
            "train"
        ]
        == 0.5
    )


def test_bad_inputs_give_one_line(small_fracatlas, tmp_path):
    (tmp_path / "exists").mkdir()
    cases = {
        "already exists": ["convert", str(small_fracatlas), str(tmp_path / "exists")],
        "source not found": ["convert", str(tmp_path / "missing"), str(tmp_path / "o1")],
        "unknown target": ["convert", str(small_fracatlas), str(tmp_path / "o2"), "--to", "voc"],
        "not a valid float": [
            "convert",
            str(small_fracatlas),
            str(tmp_path / "o3"),
            "--fractions",
            "a,b,c",
        ],
        "prevalence": ["phantoms", str(tmp_path / "o4"), "--prevalence", "2"],
    }
    for expected, args in cases.items():
        assert expected in one_line_error(runner.invoke(app, args)), expected


def test_unknown_config_key_names_the_close_match(small_fracatlas, tmp_path):
    (tmp_path / "c.yaml").write_text("fractons: [0.5, 0.25, 0.25]\n")
    line = one_line_error(
        runner.invoke(
            app,
            ["convert", str(small_fracatlas), str(tmp_path / "o"), "-c", str(tmp_path / "c.yaml")],
        )
    )
    assert "c.yaml" in line and "did you mean fractions" in line


def test_audit_options_reach_the_config(library, tmp_path):
    from fracdet.audit import AuditConfig

    fake = library("audit", SimpleNamespace(line=lambda: "audited"))
    result = invoke(
        "audit",
        tmp_path / "data",
        "--cls",
        tmp_path / "a",
        "--cls",
        tmp_path / "b",
        "--name",
        "std",
        "--name",
        "robust",
        "--det",
        tmp_path / "best.pt",
        "--det-imgsz",
        "256",
        "--det-conf",
        "0.3",
        "--split",
        "val",
        "--out",
        tmp_path / "o",
        "--eps",
        "8/255",
        "--steps",
        "3",
        "--step-size",
        "2/255",
        "--restarts",
        "2",
        "--eps-space",
        "normalized",
        "--methods",
        "saliency,gradcam++",
        "--target",
        "predicted",
        "--channels",
        "sum",
        "--ig-steps",
        "8",
        "--group-by",
        "hardware,body_part",
        "--max-images",
        "5",
        "--batch-size",
        "2",
        "--trust-pickle",
        "--shard",
        "1/2",
        "--device",
        "cpu",
        "--precision",
        "bf16",
        "--workers",
        "0",
        "--seed",
        "3",
    )
    assert result.exit_code == 0, result.output
    cfg = fake.config
    assert (
        isinstance(cfg, AuditConfig)
        and cfg.classifiers == (tmp_path / "a", tmp_path / "b")
        and cfg.names == ("std", "robust")
    )
    assert (cfg.dataset, cfg.detector, cfg.split, cfg.output) == (
        tmp_path / "data",
        tmp_path / "best.pt",
        "val",
        tmp_path / "o",
    )
    assert (cfg.det_imgsz, cfg.det_conf) == (256, 0.3)
    assert (cfg.eps, cfg.steps, cfg.step_size, cfg.restarts, cfg.eps_space) == (
        "8/255",
        3,
        "2/255",
        2,
        "normalized",
    )
    assert cfg.methods == ("saliency", "gradcam++") and (
        cfg.target,
        cfg.channels,
        cfg.ig_steps,
    ) == ("predicted", "sum", 8)
    assert cfg.group_by == ("hardware", "body_part")
    assert (
        cfg.max_images,
        cfg.batch_size,
        cfg.trust_pickle,
        cfg.shard,
        cfg.precision,
        cfg.seed,
    ) == (5, 2, True, "1/2", "bf16", 3)


def test_merge_of_audit_shards_goes_to_the_audit(tmp_path, monkeypatch):
    import fracdet.audit

    fake = Calls(SimpleNamespace(line=lambda: "merged audit"))
    monkeypatch.setattr(fracdet.audit, "merge_audits", fake)
    for name in ("s1", "s2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "audit_state.json").write_text('{"kind": "audit"}')
    result = invoke("merge", tmp_path / "all", tmp_path / "s1", tmp_path / "s2")
    assert result.exit_code == 0 and "merged audit" in result.output
    ((args, kwargs),) = fake.args
    assert [Path(p) for p in args[0]] == [tmp_path / "s1", tmp_path / "s2"] and kwargs == {
        "overwrite": False
    }
