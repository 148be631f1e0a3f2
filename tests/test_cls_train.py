"""train-cls and eval-cls end to end on phantoms: modes, resume, DDP, bad input."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fracdet.cls.checkpoint import load_classifier
from fracdet.cls.evaluate import EvalClsConfig, evaluate_classifier
from fracdet.cls.model import create_classifier
from fracdet.cls.train import ClsTrainConfig, train_classifier
from fracdet.errors import ConfigError, DataError, OutputExistsError

TINY = {"backbone": "resnet10t", "image_size": 32, "batch_size": 8, "workers": 0, "epochs": 1}


def _cfg(dataset: Path, out: Path, **changes) -> ClsTrainConfig:
    return ClsTrainConfig(manifest=dataset / "manifest.csv", output=out, **{**TINY, **changes})


def _rewrite_manifest(src: Path, dst: Path, change) -> Path:
    """A copy of a manifest with rows changed (or dropped when ``change`` returns None)."""
    with open(src / "manifest.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = [r for r in (change(dict(row)) for row in reader) if r is not None]
        fields = reader.fieldnames
    dst.mkdir(parents=True, exist_ok=True)
    for row in rows:
        row["path"] = (
            str((src / row["path"]).resolve())
            if not Path(row["path"]).is_absolute()
            else row["path"]
        )
    with open(dst / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return dst


def test_full_training_writes_checkpoints_logs_and_evaluates(phantom_dataset, tmp_path):
    result = train_classifier(_cfg(phantom_dataset, tmp_path / "run", epochs=2))
    for name in (
        "best.safetensors",
        "best.json",
        "last.safetensors",
        "last_state.pt",
        "metrics.csv",
        "train_report.json",
    ):
        assert (tmp_path / "run" / name).is_file(), name
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert {"train_loss", "val_loss", "images_per_s", "data_wait_fraction"} <= set(
        result.history[0]
    )
    model, meta = load_classifier(result.best)
    assert (
        meta.backbone == "resnet10t"
        and meta.image_size == 32
        and meta.threshold == result.threshold
    )
    assert meta.temperature > 0 and meta.data_hash and meta.train_config["epochs"] == 2
    summary = evaluate_classifier(
        EvalClsConfig(
            result.run_dir,
            phantom_dataset / "manifest.csv",
            split="test",
            output=tmp_path / "eval",
            workers=0,
            n_boot=50,
        )
    )
    metrics = summary.metrics
    assert summary.report == tmp_path / "eval" / "report.html"
    assert json.loads((tmp_path / "eval" / "cls_metrics.json").read_text())["n"] == metrics["n"]
    line = summary.line()
    assert (
        line.startswith(f"{metrics['n']} images: AUROC ")
        and f"at threshold {meta.threshold:.3f}" in line
    )
    assert line.endswith(f"report: {tmp_path / 'eval' / 'report.html'}")
    assert result.line() == (
        f"best epoch {result.best_epoch}: val score {result.best_score:.4f}; threshold "
        f"{result.threshold:.3f}, "
        f"temperature {result.temperature:.3f} -> {result.best}"
    )
    with open(phantom_dataset / "manifest.csv", newline="") as fh:
        assert metrics["n"] == sum(1 for r in csv.DictReader(fh) if r["split"] == "test")
    assert metrics["threshold"] == pytest.approx(meta.threshold)
    assert set(metrics["ci95"]) >= {"auroc", "sensitivity", "specificity"}
    for name in (
        "report.html",
        "report.md",
        "roc.png",
        "pr.png",
        "confusion.png",
        "reliability.png",
        "predictions.csv",
        "cls_metrics.json",
    ):
        assert (tmp_path / "eval" / name).is_file(), name
    with pytest.raises(OutputExistsError):
        evaluate_classifier(
            EvalClsConfig(
                result.run_dir,
                phantom_dataset / "manifest.csv",
                output=tmp_path / "eval",
                workers=0,
            )
        )


def test_linear_probe_trains_the_head_only(phantom_dataset, tmp_path):
    result = train_classifier(
        _cfg(phantom_dataset, tmp_path / "probe", mode="linear", optimizer="adam", lr=1e-2)
    )
    torch.manual_seed(0)  # the same seed gives the same initial weights
    initial = create_classifier("resnet10t").backbone.state_dict()
    trained = load_file(str(result.last))
    head = {"fc.weight", "fc.bias"}
    assert all(
        torch.equal(trained[k], initial[k]) for k in trained if k not in head
    )  # BN statistics too
    assert not torch.equal(trained["fc.weight"], initial["fc.weight"])


@pytest.mark.parametrize("adv", ["pgd", "trades"])
def test_adversarial_training_runs(phantom_dataset, tmp_path, adv):
    result = train_classifier(_cfg(phantom_dataset, tmp_path / adv, adv=adv, adv_steps=2))
    assert result.best.is_file()
    assert json.loads((tmp_path / adv / "best.json").read_text())["train_config"]["adv"] == adv


def test_resume_after_interruption_gives_the_same_weights(phantom_dataset, tmp_path):
    settings = {"epochs": 2, "adv": "pgd", "adv_steps": 1, "workers": 1}
    train_classifier(_cfg(phantom_dataset, tmp_path / "straight", **settings))

    def interrupt(epoch, _row):
        if epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_classifier(
            _cfg(phantom_dataset, tmp_path / "broken", **settings), on_epoch_end=interrupt
        )
    assert len(json.loads((tmp_path / "broken" / "metrics.json").read_text())) == 1
    with pytest.raises(OutputExistsError, match="--resume"):
        train_classifier(_cfg(phantom_dataset, tmp_path / "broken", **settings))
    resumed = train_classifier(_cfg(phantom_dataset, tmp_path / "broken", resume=True, **settings))
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    a, b = (
        load_file(str(tmp_path / "straight" / "last.safetensors")),
        load_file(str(tmp_path / "broken" / "last.safetensors")),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_corrupt_image_is_skipped_and_recorded(phantom_dataset, tmp_path):
    data = tmp_path / "data"
    bad = {}

    def corrupt_first_train_image(row):
        if row["split"] == "train" and not bad:
            broken = tmp_path / "broken.jpg"
            broken.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
            bad["path"] = str(broken)
            row["path"] = str(broken)
        return row

    _rewrite_manifest(phantom_dataset, data, corrupt_first_train_image)
    result = train_classifier(_cfg(data, tmp_path / "run"))
    assert [s["file"] for s in result.skipped] == [bad["path"]]
    report = json.loads((tmp_path / "run" / "train_report.json").read_text())
    assert (
        report["skipped"][0]["file"] == bad["path"]
        and "broken.jpg" in report["skipped"][0]["reason"]
    )


def test_single_class_validation_and_test_do_not_crash(phantom_dataset, tmp_path):
    data = _rewrite_manifest(
        phantom_dataset,
        tmp_path / "data",
        lambda r: None if r["split"] != "train" and r["label"] == "1" else r,
    )
    result = train_classifier(_cfg(data, tmp_path / "run"))
    assert result.threshold == 0.5 and result.temperature == 1.0
    summary = evaluate_classifier(
        EvalClsConfig(
            result.run_dir,
            data / "manifest.csv",
            split="test",
            output=tmp_path / "eval",
            workers=0,
            n_boot=20,
        )
    )
    metrics = summary.metrics
    assert metrics["auroc"] is None and metrics["sensitivity"] is None  # no positive in the split
    assert "AUROC undefined (one class), sensitivity undefined, specificity " in summary.line()
    assert any("AUROC undefined" in note for note in metrics["notes"])
    assert (tmp_path / "eval" / "report.html").is_file()


def test_multiclass_target_from_the_manifest(phantom_dataset, tmp_path):
    result = train_classifier(_cfg(phantom_dataset, tmp_path / "parts", target="body_part"))
    _, meta = load_classifier(result.best)
    assert len(meta.class_names) > 2 and not meta.binary
    summary = evaluate_classifier(
        EvalClsConfig(
            result.run_dir,
            phantom_dataset / "manifest.csv",
            split="all",
            output=tmp_path / "eval",
            workers=0,
        )
    )
    assert "auroc_macro" in summary.metrics and (tmp_path / "eval" / "confusion.png").is_file()
    assert summary.line().startswith(f"accuracy {summary.metrics['accuracy']:.3f}, macro AUROC ")


def test_bad_input_gives_clear_errors(phantom_dataset, tmp_path):
    with pytest.raises(DataError, match="manifest not found"):
        train_classifier(_cfg(tmp_path / "nowhere", tmp_path / "a"))
    no_val = _rewrite_manifest(
        phantom_dataset, tmp_path / "noval", lambda r: None if r["split"] == "val" else r
    )
    with pytest.raises(DataError, match="no images in split 'val'"):
        train_classifier(_cfg(no_val, tmp_path / "b"))
    one_class = _rewrite_manifest(
        phantom_dataset, tmp_path / "oneclass", lambda r: None if r["label"] == "1" else r
    )
    with pytest.raises(DataError, match="one class only"):
        train_classifier(_cfg(one_class, tmp_path / "c"))
    with pytest.raises(ConfigError, match="nothing to resume"):
        train_classifier(_cfg(phantom_dataset, tmp_path / "d", resume=True))
    with pytest.raises(ConfigError, match="close matches"):
        train_classifier(_cfg(phantom_dataset, tmp_path / "e", backbone="resnet10x"))
    with pytest.raises(DataError, match="no column 'hospital'"):
        train_classifier(_cfg(phantom_dataset, tmp_path / "f", target="hospital"))
    with pytest.raises(ConfigError, match="adv must be one of"):
        _cfg(phantom_dataset, tmp_path / "g", adv="fgsm")
    with pytest.raises(ConfigError, match="threshold_target"):
        _cfg(phantom_dataset, tmp_path / "h", threshold_method="sensitivity")


@pytest.mark.parametrize("flags", [{}, {"overwrite": True}, {"resume": True}])
def test_output_that_is_a_file_is_refused_and_kept(phantom_dataset, tmp_path, flags):
    taken = tmp_path / "notes.txt"
    taken.write_text("keep me")
    with pytest.raises(ConfigError, match="is a file, not a run folder") as caught:
        train_classifier(_cfg(phantom_dataset, taken, **flags))
    assert caught.value.path == taken and taken.read_text() == "keep me"
    with pytest.raises(ConfigError, match="a part of its path is a file"):
        train_classifier(_cfg(phantom_dataset, taken / "run"))
    assert taken.read_text() == "keep me"


def _torchrun_train_cls(
    manifest: Path, out: Path, *, image_size: int, batch_size: int, epochs: int
) -> subprocess.CompletedProcess:
    """``train-cls`` (resnet10t) under torchrun with two gloo processes on the CPU; asserts it
    exits 0.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "YOLO_OFFLINE": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "fracdet",
        "-q",
        "train-cls",
        str(manifest),
        "--out",
        str(out),
        "--backbone",
        "resnet10t",
        "--image-size",
        str(image_size),
        "--batch-size",
        str(batch_size),
        "--epochs",
        str(epochs),
        "--workers",
        "0",
        "--precision",
        "fp32",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def torchrun_run(phantom_dataset, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One ``train-cls`` under torchrun (two gloo processes, 2 epochs, batches of one image, some
    unreadable), shared by the two torchrun tests: starting the processes is most of its time.
    """
    root = tmp_path_factory.mktemp("torchrun")
    with open(phantom_dataset / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    train = [r for r in rows if r["split"] == "train"]
    for k, row in enumerate(train[:: max(1, len(train) // 4)]):
        (root / f"junk{k}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
        row["path"] = str(root / f"junk{k}.jpg")
    for row in rows:
        row["path"] = (
            row["path"] if Path(row["path"]).is_absolute() else str(phantom_dataset / row["path"])
        )
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    # 64 px: batch norm's last stage keeps 2x2 values per channel with one image per batch
    done = _torchrun_train_cls(
        root / "manifest.csv", root / "ddp", image_size=64, batch_size=1, epochs=2
    )
    return root, done


@pytest.mark.slow
def test_torchrun_ddp_with_two_gloo_processes(torchrun_run):
    root, done = torchrun_run
    history = json.loads((root / "ddp" / "metrics.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    assert done.stdout.count("best epoch") == 1  # rank 0 alone reports and checkpoints
    model, _ = load_classifier(root / "ddp")
    assert model(torch.rand(1, 1, 64, 64)).shape == (1,)


@pytest.mark.slow
def test_torchrun_keeps_its_processes_in_step_past_unreadable_images(torchrun_run):
    """Batches of one image, some unreadable: a process with nothing to train must not leave the
    others waiting in DDP's all-reduce (two epochs: they stay in step past the first).
    """
    root, _ = torchrun_run
    report = json.loads((root / "ddp" / "train_report.json").read_text())
    junk = {path.name for path in root.glob("junk*.jpg")}
    assert (
        junk and {Path(s["file"]).name for s in report["skipped"]} == junk
    )  # both processes' skipped files, in rank 0's report


def test_resume_with_another_backbone_and_sampler_under_torchrun_are_refused(
    phantom_dataset, tmp_path
):
    import numpy as np

    from fracdet.cls.distributed import train_sampler
    from fracdet.runtime import Runtime

    train_classifier(_cfg(phantom_dataset, tmp_path / "run"))
    with pytest.raises(ConfigError, match="cannot resume"):
        train_classifier(
            _cfg(phantom_dataset, tmp_path / "run", backbone="resnet14t", resume=True, epochs=2)
        )
    labels = np.array([0, 0, 0, 1])
    with pytest.raises(ConfigError, match="torchrun"):
        train_sampler(
            labels,
            imbalance="sampler",
            runtime=Runtime(torch.device("cpu"), rank=0, world_size=2),
            num_classes=2,
            seed=0,
        )
    sharded = train_sampler(
        labels,
        imbalance="loss",
        runtime=Runtime(torch.device("cpu"), rank=1, world_size=2),
        num_classes=2,
        seed=0,
    )
    assert len(sharded) == 2  # rank 1 of 2 sees half of the 4 images
    weighted = train_sampler(
        labels, imbalance="sampler", runtime=Runtime(torch.device("cpu")), num_classes=2, seed=0
    )
    assert weighted.weights.tolist() == pytest.approx(
        [2 / 3, 2 / 3, 2 / 3, 2.0]
    )  # inverse class frequency
    assert (
        train_sampler(
            labels, imbalance="none", runtime=Runtime(torch.device("cpu")), num_classes=2, seed=0
        )
        is None
    )
